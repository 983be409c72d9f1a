"""A sweep's unit of work (:class:`Task`), what an attempt returns (:class:`Outcome`), and what runs on a worker.

:func:`execute` is the function every scheduler runs where it puts a task (this process, or a Ray worker): it calls
the task's function and writes the task's record as its last step.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.sweep.records import jsonable, utc_now, write_json_atomic

log = logging.getLogger(__name__)

#: Characters of a failed attempt's traceback kept in the manifest.
TRACEBACK_CHARS = 4000


@dataclass(frozen=True)
class Task:
    """One unit of work of a sweep.

    Attributes:
        key: unique name in the sweep (the manifest's key), e.g. ``resnet8_q8_3_plain/trial0``.
        fn: ``fn(*args) -> dict`` (JSON-serialisable), or ``"module:function"`` imported where the task runs.
            For Ray it must be picklable: a module-level function, not a lambda or a closure.
        args: its arguments.
        record_dir: folder of the task's ``result.json``, relative to the sweep folder.
        fingerprint: hash of what the task computes; a record with another fingerprint is not this task's.
        cpus: CPUs the task asks for (Ray's ``num_cpus``).
        gpus: GPUs it asks for (Ray's ``num_gpus``).
        memory_gb: memory it reserves (Ray's ``memory``; 0: no reservation).
        resources: custom resources, e.g. ``{"vivado": 1}`` for nodes started with ``--resources='{"vivado": 1}'``.
        after: keys of tasks that must finish first (a distilled run waits for its teacher).
        meta: JSON fields copied into the record and the manifest (config id, trial, seed...).
    """

    key: str
    fn: Callable[..., dict] | str
    args: tuple = ()
    record_dir: str = ""
    fingerprint: str = ""
    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float = 0.0
    resources: Mapping[str, float] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """The end of one attempt of a task, as a scheduler reports it to the driver."""

    key: str
    record: dict | None = None
    error: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        """True when the attempt finished and returned its record."""
        return self.record is not None


@dataclass
class SweepReport:
    """What one invocation of a sweep did.

    Attributes:
        folder: the sweep folder.
        ran: keys finished by this invocation.
        reused: keys already finished before it (their records were kept).
        failed: key -> last error, for tasks that failed after all their attempts or could not run.
        records: what the caller built from the records (experiments: one ``RunRecord`` per finished run).
    """

    folder: Path
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    records: list[Any] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every task of the sweep has a record."""
        return not self.failed


def resolve_function(fn: Callable[..., dict] | str) -> Callable[..., dict]:
    """``fn`` itself, or the function a ``"module:function"`` string names (imported here, where the task runs)."""
    if callable(fn):
        return fn
    module, _, name = fn.partition(":")
    if not module or not name:
        raise ValueError(f"task function {fn!r}: use 'module:function'")
    return getattr(importlib.import_module(module), name)


def execute(fn: Callable[..., dict] | str, args: tuple, key: str, fp: str, meta: Mapping[str, Any],
            record_path: str, attempt: int) -> dict:  # fmt: skip
    """Run one task where the scheduler put it and write its record (the task's last step).

    Returns:
        The record: the task's result with its key, fingerprint, duration, host and process.
    """
    t0 = time.perf_counter()
    result = resolve_function(fn)(*args)
    record = {
        "key": key, "fingerprint": fp, **dict(meta), "result": result,
        "seconds": round(time.perf_counter() - t0, 3), "attempt": attempt,
        "host": socket.gethostname(), "pid": os.getpid(), "finished": utc_now(),
    }  # fmt: skip
    # Plain JSON from here on (numpy values become numbers); a result that cannot be recorded fails as the task's error.
    record = json.loads(json.dumps(record, default=jsonable))
    try:
        write_json_atomic(record_path, record)
        record["recorded_by_worker"] = True
    except OSError as exc:  # e.g. a cluster node without the sweep's folder: the driver writes it
        log.warning("%s: cannot write the record here (%s); the driver writes it", record_path, exc)
        record["recorded_by_worker"] = False
    return record


def outcome_of_exception(key: str, exc: BaseException, tb: str | None = None) -> Outcome:
    """The failed attempt of task ``key``: the exception's type and first line, and the end of its traceback."""
    cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the task's own exception
    message = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return Outcome(key, error=f"{type(cause).__name__}: {message}".rstrip(": "),
                   traceback=(tb or "".join(traceback.format_exception(exc)))[-TRACEBACK_CHARS:])  # fmt: skip
