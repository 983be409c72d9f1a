"""The driver of a sweep: :func:`run_tasks` runs every task without a record on a scheduler and keeps the manifest.

The driver (the process that runs :func:`run_tasks`) is the only writer of the manifest, ``sweep.json``: it lists
every task with its status (``pending``, ``running``, ``done``, ``failed``), attempts and last error, rewritten
atomically after every change. A sweep killed at any point (driver, worker or machine) and started again runs only
the tasks without a matching record, and a folder holding another sweep is refused before anything runs.

Failed tasks are retried up to ``retries`` times (by the driver, so inline and Ray behave alike), then reported
with their error; tasks that depend on a failed one (``after``) are reported as not run.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from training.sweep.records import (
    MANIFEST,
    MANIFEST_FORMAT,
    RECORD,
    SweepError,
    check_folder,
    read_record,
    utc_now,
    write_json_atomic,
)
from training.sweep.schedulers import Scheduler
from training.sweep.tasks import Outcome, SweepReport, Task

log = logging.getLogger(__name__)


class _Manifest:
    """The driver's view of ``sweep.json``: every change is written at once, atomically."""

    def __init__(self, folder: Path, identity: Any, header: dict, saved: dict | None):
        self.path = folder / MANIFEST
        self.data: dict[str, Any] = {"format": MANIFEST_FORMAT, **header, "identity": identity, "runs": {}}
        old_runs = (saved or {}).get("runs", {})
        self.old_runs = old_runs if isinstance(old_runs, dict) else {}

    def init_run(self, task: Task, status: str) -> None:
        old = self.old_runs.get(task.key, {})
        same = isinstance(old, dict) and old.get("fingerprint") == task.fingerprint
        old = old if same else {}
        self.data["runs"][task.key] = {
            **dict(task.meta), "status": status, "fingerprint": task.fingerprint,
            "attempts": old.get("attempts", 0), "error": None, "failures": old.get("failures", []),
        }  # fmt: skip

    def add_failure(self, key: str, error: str | None) -> None:
        """Keep the errors of failed attempts (the last ten), also once a retry succeeds."""
        failures = self.data["runs"][key].setdefault("failures", [])
        failures[:] = [*failures, {"error": error, "at": utc_now()}][-10:]

    def update(self, key: str, **fields: Any) -> None:
        self.data["runs"][key].update(fields)

    def save(self) -> None:
        self.data["updated"] = utc_now()
        write_json_atomic(self.path, self.data)


@contextlib.contextmanager
def _folder_lock(folder: Path):
    """One driver per sweep folder (an advisory lock, released by the OS even when the driver is killed)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".sweep.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise SweepError(f"{folder}: another driver is running this sweep; wait for it or stop it") from exc
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_tasks(
    tasks: Sequence[Task],
    folder: str | os.PathLike,
    scheduler: Scheduler,
    identity: Any,
    retries: int = 0,
    header: Mapping[str, Any] | None = None,
    adopt: Callable[[Task], dict | None] | None = None,
    on_outcome: Callable[[Task, Outcome], None] | None = None,
) -> SweepReport:
    """Run every task of ``tasks`` that has no record in ``folder`` yet; record results and failures.

    Args:
        tasks: the sweep's tasks (keys unique; ``after`` names keys of this list).
        folder: the sweep folder.
        scheduler: where tasks run.
        identity: what makes two sweeps the same (JSON); a folder whose manifest has another is refused.
        retries: attempts after a failure, per task and invocation.
        header: extra manifest fields (name, grid...).
        adopt: ``adopt(task)`` may return a record for a task finished without one (older sweeps); it is written.
        on_outcome: called by the driver after each attempt is recorded (progress, tests).

    Returns:
        What ran, what was finished before, what failed.

    Raises:
        SweepMismatchError: ``folder`` holds another sweep (nothing is written).
        SweepError: the scheduler cannot run these tasks (nothing is started).
        KeyboardInterrupt: the driver was interrupted; running attempts are stopped, the manifest says pending.
    """
    folder = Path(folder)
    by_key = {t.key: t for t in tasks}
    if len(by_key) != len(tasks):
        raise ValueError("task keys must be unique")
    for t in tasks:
        missing = [d for d in t.after if d not in by_key]
        if missing:
            raise ValueError(f"task {t.key} waits for unknown tasks {missing}")
    saved = check_folder(folder, identity)
    report = SweepReport(folder)
    records: dict[str, dict] = {}
    for t in tasks:
        rec = read_record(folder / t.record_dir / RECORD, t.fingerprint)
        if rec is None and adopt is not None:
            rec = adopt(t)
            if rec is not None:
                write_json_atomic(folder / t.record_dir / RECORD, rec)
        if rec is not None:
            records[t.key] = rec
            report.reused.append(t.key)
    todo = [t for t in tasks if t.key not in records]
    try:
        if todo:
            scheduler.open(todo)  # joins/starts Ray and checks resources before anything is written
        with _folder_lock(folder):
            manifest = _Manifest(folder, identity, {**(header or {}), **scheduler.describe()}, saved)
            for t in tasks:
                manifest.init_run(t, "done" if t.key in records else "pending")
                if t.key in records:
                    rec = records[t.key]
                    manifest.update(t.key, seconds=rec.get("seconds"), host=rec.get("host"))
            manifest.save()
            if todo:
                _drive(todo, folder, scheduler, manifest, records, report, retries, on_outcome)
    finally:
        scheduler.close()
    return report


def _drive(todo: list[Task], folder: Path, scheduler: Scheduler, manifest: _Manifest, records: dict[str, dict],
           report: SweepReport, retries: int, on_outcome) -> None:  # fmt: skip
    by_key = {t.key: t for t in todo}
    pending = dict(by_key)
    attempts: dict[str, int] = dict.fromkeys(pending, 0)
    inflight: dict[Hashable, str] = {}
    total, finished = len(todo), 0
    try:
        while pending or inflight:
            # Tasks whose prerequisite failed for good cannot run in this invocation.
            for key, t in list(pending.items()):
                dead = [d for d in t.after if d in report.failed]
                if dead:
                    del pending[key]
                    report.failed[key] = f"not run: {dead[0]} failed"
                    manifest.update(key, status="failed", error=report.failed[key])
                    finished += 1
                    log.error("[%d/%d] %s: not run, %s failed", finished, total, key, dead[0])
            ready = [t for t in pending.values() if all(d in records for d in t.after)]
            for t in ready:
                if scheduler.max_in_flight is not None and len(inflight) >= scheduler.max_in_flight:
                    break
                attempts[t.key] += 1
                handle = scheduler.submit(t, str((folder / t.record_dir / RECORD).resolve()), attempts[t.key])
                inflight[handle] = t.key
                del pending[t.key]
                runs = manifest.data["runs"][t.key]
                manifest.update(t.key, status="running", attempts=runs["attempts"] + 1, started=utc_now())
                log.info("%s: started (attempt %d of %d)", t.key, attempts[t.key], retries + 1)
            manifest.save()
            if not inflight:
                if pending:  # cannot happen with validated `after` keys; guard against a silent hang
                    raise SweepError(f"tasks wait for each other: {sorted(pending)}")
                break
            for handle, outcome in scheduler.wait(list(inflight)):
                key = inflight.pop(handle)
                task = by_key[key]
                if outcome.ok:
                    rec = outcome.record
                    path = folder / task.record_dir / RECORD
                    if not rec.pop("recorded_by_worker", False) or read_record(path, task.fingerprint) is None:
                        write_json_atomic(path, rec)
                    records[key] = rec
                    report.ran.append(key)
                    finished += 1
                    manifest.update(key, status="done", error=None, traceback=None, seconds=rec.get("seconds"),
                                    host=rec.get("host"), finished=rec.get("finished"))  # fmt: skip
                    log.info("[%d/%d] %s: done in %.0f s%s", finished, total, key, rec.get("seconds", 0),
                             _brief(rec.get("result")))  # fmt: skip
                elif attempts[key] <= retries:
                    manifest.add_failure(key, outcome.error)
                    manifest.update(key, status="pending", error=outcome.error, traceback=outcome.traceback)
                    pending[key] = task
                    log.warning("%s: attempt %d failed (%s); retrying", key, attempts[key], outcome.error)
                else:
                    report.failed[key] = outcome.error or "failed"
                    finished += 1
                    manifest.add_failure(key, outcome.error)
                    manifest.update(key, status="failed", error=outcome.error, traceback=outcome.traceback)
                    log.error("[%d/%d] %s: failed after %d attempts: %s", finished, total, key, attempts[key],
                              outcome.error)  # fmt: skip
                manifest.save()
                if on_outcome is not None:
                    on_outcome(task, outcome)
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM, a callback): stop what runs; it is pending for the next invocation.
        scheduler.cancel(list(inflight))
        for key in inflight.values():
            manifest.update(key, status="pending")
        with contextlib.suppress(OSError):
            manifest.save()
        raise


def _brief(result: Any) -> str:
    metrics = result.get("metrics") if isinstance(result, dict) else None
    if isinstance(metrics, dict) and "test_top1_max" in metrics:
        return f", test top-1 max {metrics['test_top1_max']:.4f}"
    return ""
