"""hls_build syntheses as sweep tasks: one task per overlay bundle, calling an injected ``run_one(bundle_dir)``.

The flow itself (HLS + Vivado) is hls_build's; it is named by a ``"module:function"`` string and imported where the
task runs, so training never imports hls_build.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from training.sweep.driver import run_tasks
from training.sweep.records import RECORD, fingerprint, read_record
from training.sweep.schedulers import InlineScheduler, Scheduler
from training.sweep.tasks import Outcome, SweepReport, Task, resolve_function


def _synth_task(run_one: Callable[[str], dict] | str, bundle_dir: str) -> dict:
    """One synthesis on a worker: ``run_one(bundle_dir)``, whose dict is the record's result."""
    result = resolve_function(run_one)(bundle_dir)
    if not isinstance(result, dict):
        raise TypeError(f"run_one({bundle_dir!r}) returned {type(result).__name__}, not a dict")
    return result


def _bundle_key(bundle: Path) -> str:
    return f"{bundle.parent.name}/{bundle.name}" if bundle.parent.name else bundle.name


def _bundle_fingerprint(bundle: Path) -> str:
    manifest = bundle / "manifest.json"
    content = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else ""
    return fingerprint({"bundle": str(bundle), "manifest_sha256": content})


def schedule_syntheses(
    bundles: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    run_one: Callable[[str], dict] | str,
    scheduler: Scheduler | None = None,
    cpus: float = 1.0,
    memory_gb: float = 0.0,
    resources: Mapping[str, float] | None = None,
    retries: int = 0,
    on_outcome: Callable[[Task, Outcome], None] | None = None,
) -> SweepReport:
    """Synthesize a grid of overlay bundles, one task per bundle, and tabulate their results.

    Args:
        bundles: bundle folders (``overlays/<board>/<model_id>``); keys are ``<board>/<model_id>``.
        out_dir: the synthesis sweep folder (manifest, ``syntheses/<key>/result.json``, ``syntheses.md/csv``).
        run_one: ``run_one(bundle_dir) -> dict`` (e.g. ``"hls_build.vivado:run_one"``): the HLS + Vivado flow
            of one bundle, returning what to tabulate (utilisation, timing, paths of the bitstream...).
        scheduler: default :class:`InlineScheduler`.
        cpus: CPUs per synthesis (the tools run mostly single-threaded).
        memory_gb: memory to reserve per synthesis on Ray (Vivado needs several GB).
        resources: custom Ray resources per synthesis, e.g. ``{"vivado": 1}`` to land on nodes with Vivado.
        retries: attempts after a failure.
        on_outcome: see :func:`training.sweep.driver.run_tasks`.

    Returns:
        The report; ``records`` holds the record of every synthesized bundle.

    Raises:
        SweepMismatchError: ``out_dir`` holds another sweep.
        SweepError: the scheduler cannot run the syntheses (e.g. no node has the ``vivado`` resource).
        ValueError: a bundle folder is missing or two bundles share a key.
    """
    paths = [Path(b).resolve() for b in bundles]
    for p in paths:
        if not p.is_dir():
            raise ValueError(f"{p}: no such bundle folder")
    tasks = [
        Task(key=_bundle_key(p), fn=_synth_task, args=(run_one, str(p)), record_dir=f"syntheses/{_bundle_key(p)}",
             fingerprint=_bundle_fingerprint(p), cpus=cpus, memory_gb=memory_gb, resources=dict(resources or {}),
             meta={"bundle": str(p)})
        for p in paths
    ]  # fmt: skip
    identity = {"kind": "synthesis", "bundles": sorted(str(p) for p in paths)}
    out = Path(out_dir)
    header = {"kind": "synthesis", "name": out.name}
    report = run_tasks(tasks, out, scheduler or InlineScheduler(), identity, retries, header, None, on_outcome)
    report.records = [r for t in tasks if (r := read_record(out / t.record_dir / RECORD, t.fingerprint))]
    write_synthesis_summary(report.records, out, report.failed)
    return report


def write_synthesis_summary(records: Sequence[dict], out_dir: str | os.PathLike,
                            failed: Mapping[str, str] | None = None) -> None:  # fmt: skip
    """Write ``syntheses.csv`` and ``syntheses.md``: one row per bundle, the scalar fields of its result."""
    out = Path(out_dir)
    rows = []
    for r in records:
        scalars = {k: v for k, v in (r.get("result") or {}).items() if isinstance(v, int | float | str | bool)}
        rows.append({"bundle": r["key"], "status": "done", "seconds": r.get("seconds"), **scalars})
    rows += [{"bundle": k, "status": f"failed: {e}"} for k, e in (failed or {}).items()]
    columns = list(dict.fromkeys(c for row in rows for c in row)) or ["bundle", "status"]
    with (out / "syntheses.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if row.get(c) is None else str(row.get(c)) for c in columns) + " |" for row in rows]
    (out / "syntheses.md").write_text("# Syntheses\n\n" + "\n".join(lines) + "\n")
