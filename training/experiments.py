"""Multi-trial experiments over a grid of configs, with the mean +- std table and plots the field reports.

Every (config, trial) of a :class:`~training.grid.Grid` is one training run in ``<out>/runs/<config_id>/trial<k>/``
with its own resolved config, seed (``seed + k``), versions, history and checkpoints, run as a task of the sweep
engine (:mod:`training.sweep`: inline, or on Ray, a local instance or a cluster). Each task calls
:func:`training.train.train` with ``cpus_per_run`` TensorFlow threads and op determinism enabled, so a run gives the
same numbers inline and on any worker of the same software stack. Distilled runs (``teacher: auto``) wait for their
teacher's task.

A finished run (its ``result.json`` record, of the same config) is never redone, and an unfinished one resumes from
its checkpoint, so a sweep killed at any point is finished by running the same command again. ``<out>/sweep.json``
records the grid and every run's status; a folder holding another grid is refused.

Outputs (:mod:`training.experiment_tables`): ``summary.csv`` and ``summary.md`` (per config: trials, mean and std of
the max and final test top-1), ``accuracy_per_epoch.png`` and, for skip methods, ``accuracy_vs_skips.png``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from training.experiment_tables import RunRecord, collect, summarize, write_summary
from training.grid import Grid, GridError
from training.sweep.driver import run_tasks
from training.sweep.records import SweepMismatchError, fingerprint
from training.sweep.schedulers import InlineScheduler, Scheduler
from training.sweep.tasks import Outcome, SweepReport, Task

__all__ = ["Grid", "GridError", "RunRecord", "collect", "configure_tensorflow", "run_grid", "run_sweep",
           "summarize", "training_tasks"]  # fmt: skip

log = logging.getLogger(__name__)


_warned_threads: list[int] = []


def _is_deterministic() -> bool:
    from tensorflow.python.framework import config as tf_config

    return bool(tf_config.is_op_determinism_enabled())


def configure_tensorflow(threads: int, deterministic: bool = True) -> bool:
    """Set TensorFlow's thread pools to ``threads`` and enable op determinism, for reproducible runs.

    TensorFlow fixes its thread pools when it first runs an op; in a process where that happened with another
    count (an inline run after other work), the existing pools are used and a warning says so.

    Returns:
        Whether op determinism was enabled before (so an inline caller can restore it).
    """
    from training.keras_compat import tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        current = tf.config.threading.get_intra_op_parallelism_threads()
        if not _warned_threads:  # once per process
            _warned_threads.append(current)
            log.warning("TensorFlow already runs with %s threads in this process, not %d: results can differ in "
                        "the last digits from a run in a fresh worker", current or "all", threads)  # fmt: skip
    was = _is_deterministic()
    if deterministic:
        # The input pipeline's random crops and flips run in a parallel map: without this, which image gets
        # which random draw depends on thread timing, and two runs of one seed differ.
        tf.config.experimental.enable_op_determinism()
    return was


def _tag_worker_logging(run: str) -> None:
    """Log as the command line does (:func:`board.cli.setup_logging`), with the run's name in every line.

    A Ray worker is a process of its own that no CLI set up; its lines reach the driver's terminal mixed with the
    other workers', hence the tag.
    """
    from board.cli import LOG_FORMAT, setup_logging

    setup_logging()
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT.replace("%(name)s", f"[{run}] %(name)s"), "%H:%M:%S"))


def _train_task(cfg: Any, run_dir: str, threads: int, train_fn: Callable | None = None) -> dict:
    """One experiment run on a worker: train ``cfg`` into ``run_dir``; return its metrics and history."""
    import training.keras_compat  # noqa: F401  (before TensorFlow, in a fresh worker)

    if not logging.getLogger().handlers:  # a fresh Ray worker: the CLIs' set-up, each line tagged with the run
        _tag_worker_logging(f"{Path(run_dir).parent.name}/{Path(run_dir).name}")
    was_deterministic = configure_tensorflow(threads)
    try:
        if train_fn is None:
            from training.train import train as train_fn
        train_fn(cfg, run_dir)
    finally:
        if not was_deterministic:  # inline: leave the process as it was
            from tensorflow.python.framework import config as tf_config

            tf_config.disable_op_determinism()  # no public API for this in TF 2.21
    return _run_result(Path(run_dir), threads)


def _run_result(run_dir: Path, threads: int | None) -> dict:
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{run_dir}: the run ended without metrics.json")
    history_path = run_dir / "history_partial.json"
    return {
        "metrics": json.loads(metrics_path.read_text()),
        "history": json.loads(history_path.read_text()) if history_path.is_file() else {},
        "threads": threads,
        "deterministic": threads is not None,
    }


def training_tasks(grid: Grid, out_dir: str | os.PathLike, train_fn: Callable | None = None) -> list[Task]:
    """One task per (config, trial) of ``grid``; distilled runs wait for their teacher (``teacher: auto``).

    The record of ``runs/<config_id>/trial<k>`` is fingerprinted with the run's config as the grid defines it
    (the teacher named by its sweep key, so the fingerprint does not depend on where the folder is).
    """
    out = Path(out_dir)
    tasks = []
    for cfg_id, cfgs in grid.runs().items():
        for trial, cfg in enumerate(cfgs):
            after: tuple[str, ...] = ()
            resolved = cfg
            if cfg.teacher and cfg.teacher.startswith("@"):
                after = (cfg.teacher[1:],)
                # As the sweep always resolved it (relative when the folder was given relative): resuming an
                # older sweep finds the same config in each run's config.json.
                resolved = replace(cfg, teacher=str(out / "runs" / cfg.teacher[1:] / "model.h5"))
            rel = f"runs/{cfg_id}/trial{trial}"
            tasks.append(Task(
                key=f"{cfg_id}/trial{trial}", fn=_train_task,
                args=(resolved, str((out / rel).resolve()), int(grid.cpus_per_run), train_fn),
                record_dir=rel, fingerprint=fingerprint({"config": cfg.record()}),
                cpus=float(grid.cpus_per_run), gpus=float(grid.gpus_per_run), after=after,
                meta={"config_id": cfg_id, "trial": trial, "seed": cfg.seed, "model_id": cfg.model_id},
            ))  # fmt: skip
    return tasks


def _adopt_finished_run(task: Task) -> dict | None:
    """A record for a run finished by an older sweep (metrics.json, model.h5 and the same config, no record)."""
    cfg, run_dir = task.args[0], Path(task.args[1])
    if not ((run_dir / "metrics.json").is_file() and (run_dir / "model.h5").is_file()):
        return None
    try:
        saved = json.loads((run_dir / "config.json").read_text()).get("config")
    except (OSError, ValueError):
        return None
    from training.train import same_config

    if not same_config(saved, cfg):
        return None
    log.info("%s: finished by an earlier sweep; recorded", task.key)
    return {"key": task.key, "fingerprint": task.fingerprint, **dict(task.meta), "result": _run_result(run_dir, None),
            "seconds": None, "attempt": None, "host": None, "pid": None, "finished": None, "adopted": True}  # fmt: skip


def run_sweep(
    grid: Grid,
    out_dir: str | os.PathLike,
    scheduler: Scheduler | None = None,
    train_fn: Callable | None = None,
    retries: int | None = None,
    on_outcome: Callable[[Task, Outcome], None] | None = None,
) -> SweepReport:
    """Run the missing runs of an experiment grid on ``scheduler``; write the tables and plots from the records.

    Args:
        grid: a validated :class:`~training.grid.Grid` (unknown models and quantizations were refused
            when it was built, before anything runs).
        out_dir: the sweep folder.
        scheduler: default :class:`~training.sweep.schedulers.InlineScheduler`.
        train_fn: ``train(cfg, out_dir)`` (default :func:`training.train.train`); picklable for Ray.
        retries: attempts after a failure (default: the grid's ``retries``).
        on_outcome: see :func:`training.sweep.driver.run_tasks`.

    Returns:
        The report; ``records`` holds every finished run of the sweep (this invocation's and earlier ones).

    Raises:
        GridError: ``out_dir`` holds another sweep.
        training.sweep.SweepError: the scheduler cannot start (unreachable cluster, resources no node has).
    """
    out = Path(out_dir)
    tasks = training_tasks(grid, out, train_fn)
    identity = {"kind": "training", "grid": grid.identity()}
    header = {"kind": "training", "name": grid.name, "grid": asdict(grid),
              "configs": list(dict.fromkeys(t.meta["config_id"] for t in tasks))}  # fmt: skip
    try:
        report = run_tasks(tasks, out, scheduler or InlineScheduler(), identity,
                           grid.retries if retries is None else retries, header, _adopt_finished_run,
                           on_outcome)  # fmt: skip
    except SweepMismatchError as exc:
        raise GridError(str(exc)) from exc
    report.records = collect(out)
    write_summary(report.records, out, grid.name)
    return report


def run_grid(grid: Grid, out_dir: str | os.PathLike, train_fn: Callable | None = None,
             scheduler: Scheduler | None = None, retries: int | None = None) -> list[RunRecord]:  # fmt: skip
    """Run every missing (config, trial) of ``grid`` under ``out_dir`` and write the tables and plots.

    Args:
        grid: the sweep.
        out_dir: the sweep folder.
        train_fn: ``train(cfg, out_dir)`` to call (default ``training.train.train``).
        scheduler: a :class:`~training.sweep.schedulers.Scheduler` (default: inline, one run after the other here).
        retries: attempts after a failed run (default: the grid's ``retries``).

    Returns:
        The records of every finished run of the grid (failed runs are in ``sweep.json`` with their error).

    Raises:
        GridError: ``out_dir`` holds another grid.
        training.sweep.SweepError: the scheduler cannot start.
    """
    return run_sweep(grid, out_dir, scheduler, train_fn, retries).records
