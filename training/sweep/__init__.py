"""Sweeps as tasks: experiment runs and hls_build syntheses, inline or on Ray (a local instance or a cluster).

A sweep is a folder with a manifest, ``sweep.json``, and one record per finished task. The modules, from the bottom:

* :mod:`~training.sweep.records`: the files (manifest, records, fingerprints, atomic writes) and the errors;
* :mod:`~training.sweep.tasks`: :class:`Task`, :class:`Outcome`, :class:`SweepReport` and :func:`execute`, what
  runs on a worker;
* :mod:`~training.sweep.ray_sessions`: clean-up of local Ray instances whose driver was killed;
* :mod:`~training.sweep.schedulers`: :class:`InlineScheduler`, :class:`RayScheduler`, :func:`make_scheduler`;
* :mod:`~training.sweep.driver`: :func:`run_tasks`, retries, dependencies, the manifest;
* :mod:`~training.sweep.syntheses`: :func:`schedule_syntheses`, one hls_build synthesis per bundle.

The engine knows nothing of training: experiment runs are built on it by :mod:`training.experiments`
(:func:`~training.experiments.run_sweep`), which imports this package and never the other way round.
"""

from training.sweep.driver import run_tasks
from training.sweep.records import (
    MANIFEST,
    RECORD,
    SweepError,
    SweepMismatchError,
    check_folder,
    fingerprint,
    read_manifest,
    read_record,
    write_json_atomic,
)
from training.sweep.schedulers import (
    InlineScheduler,
    RayScheduler,
    Scheduler,
    make_scheduler,
    parse_address,
    probe_address,
)
from training.sweep.syntheses import schedule_syntheses, write_synthesis_summary
from training.sweep.tasks import Outcome, SweepReport, Task

__all__ = [
    "MANIFEST", "RECORD", "InlineScheduler", "Outcome", "RayScheduler", "Scheduler", "SweepError",
    "SweepMismatchError", "SweepReport", "Task", "check_folder", "fingerprint", "make_scheduler", "parse_address",
    "probe_address", "read_manifest", "read_record", "run_tasks", "schedule_syntheses", "write_json_atomic",
    "write_synthesis_summary",
]  # fmt: skip
