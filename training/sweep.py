"""Sweeps as tasks: experiment runs and hls_build syntheses, inline or on Ray (a local instance or a cluster).

A sweep is a folder with a manifest, ``sweep.json``, and one record per finished task. The driver (the process that
runs :func:`run_tasks`) is the only writer of the manifest: it lists every task with its status (``pending``,
``running``, ``done``, ``failed``), attempts and last error, rewritten atomically (temporary file + rename) after
every change. A task's record, ``<folder>/<record_dir>/result.json``, is written atomically by the worker as the
task's last step (and by the driver if the worker's copy is not visible to it) and carries the task's
*fingerprint* (a hash of its config): a record with another fingerprint is never taken as this task's. So a sweep
killed at any point (driver, worker or machine) and started again runs only the tasks without a matching record,
and a folder holding another sweep is refused before anything runs.

Schedulers (:class:`Scheduler`):

* :class:`InlineScheduler`: one task after the other in this process (no Ray needed).
* :class:`RayScheduler`: every task a Ray task, with its own resource request (CPUs, GPUs, memory, custom
  resources such as ``vivado``), in a fresh worker process (``max_calls=1``: TensorFlow state never leaks from one
  run to the next). Without an address it starts a private local instance (no dashboard, temp dir under
  ``$RAY_TMPDIR`` or ``/tmp``, shut down and cleaned up when the sweep ends); with ``address`` (or
  ``RAY_ADDRESS``) it joins an existing cluster, after checking that the address answers, so an unreachable
  cluster is a clear error before anything starts.

Failed tasks are retried up to ``retries`` times (by the driver, so inline and Ray behave alike), then reported
with their error; tasks that depend on a failed one (``after``) are reported as not run. Ray is imported only by
:class:`RayScheduler`.

Experiment runs (:func:`run_sweep`): every (config, trial) of a :class:`~training.experiments.Grid` is one task
calling :func:`training.train.train` with ``cpus_per_run`` TensorFlow threads and op determinism enabled, so a run
gives the same numbers inline and on any worker of the same software stack. Distilled runs (``teacher: auto``)
wait for their teacher's task. Syntheses (:func:`schedule_syntheses`): one task per overlay bundle calling an
injected ``run_one(bundle_dir) -> dict`` (hls_build's HLS + Vivado flow), single-threaded by default.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

MANIFEST = "sweep.json"
RECORD = "result.json"
MANIFEST_FORMAT = 2
#: Characters of a failed attempt's traceback kept in the manifest.
TRACEBACK_CHARS = 4000
#: Default Ray port of a cluster's head (GCS) and of the Ray Client server (``ray://``).
RAY_GCS_PORT = 6379
RAY_CLIENT_PORT = 10001
#: Age after which the folder of a local Ray instance whose driver is gone is removed (its logs were kept).
STALE_TEMP_DIR_S = 24 * 3600
#: The checkout (``training``'s parent): what a cluster's workers put on their PYTHONPATH.
REPO_ROOT = Path(__file__).resolve().parent.parent


class SweepError(RuntimeError):
    """A sweep that cannot start: no Ray, an unreachable cluster, resources no node has, a busy folder."""


class SweepMismatchError(SweepError):
    """The folder holds another sweep; running this one there would mix the results of two sweeps."""


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


# --- records and manifest ------------------------------------------------------------------------------------------


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable object (keys sorted, tuples as lists)."""
    text = json.dumps(obj, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, default=_jsonable)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_record(path: str | os.PathLike, expected_fingerprint: str) -> dict | None:
    """The record at ``path`` if it is there, readable and of ``expected_fingerprint``; else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("%s: unreadable record, the task runs again", path)
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != expected_fingerprint:
        log.warning("%s: record of another config (fingerprint %s, expected %s); not used", path,
                    record.get("fingerprint") if isinstance(record, dict) else None, expected_fingerprint)  # fmt: skip
        return None
    return record


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The sweep folder's manifest, or None when it has none.

    Raises:
        SweepError: the manifest exists but is not readable JSON.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SweepError(f"{path}: unreadable sweep manifest ({exc}); move it away or use another folder") from exc
    if not isinstance(data, dict):
        raise SweepError(f"{path}: not a sweep manifest")
    return data


def _saved_identity(saved: dict) -> Any:
    if "identity" in saved:
        return saved["identity"]
    if "grid" in saved:  # manifests written before the scheduler (format 1): an experiment grid
        from training.experiments import grid_identity

        return {"kind": "training", "grid": grid_identity(saved["grid"])}
    return None


def check_folder(folder: str | os.PathLike, identity: Any) -> dict | None:
    """Refuse a folder whose manifest belongs to another sweep; return the saved manifest (None if new).

    Raises:
        SweepMismatchError: the folder holds another sweep.
    """
    saved = read_manifest(folder)
    if saved is None:
        return None
    if _saved_identity(saved) != json.loads(json.dumps(identity, default=_jsonable)):
        name = saved.get("name") or saved.get("grid", {}).get("name")
        raise SweepMismatchError(f"{folder} holds another sweep ({name!r}); use another folder")
    return saved


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
        failures[:] = [*failures, {"error": error, "at": _now()}][-10:]

    def update(self, key: str, **fields: Any) -> None:
        self.data["runs"][key].update(fields)

    def save(self) -> None:
        self.data["updated"] = _now()
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


# --- what runs on a worker -----------------------------------------------------------------------------------------


def _resolve(fn: Callable[..., dict] | str) -> Callable[..., dict]:
    if callable(fn):
        return fn
    module, _, name = fn.partition(":")
    if not module or not name:
        raise ValueError(f"task function {fn!r}: use 'module:function'")
    return getattr(importlib.import_module(module), name)


def _execute(fn: Callable[..., dict] | str, args: tuple, key: str, fp: str, meta: Mapping[str, Any],
             record_path: str, attempt: int) -> dict:  # fmt: skip
    """Run one task where the scheduler put it and write its record (the task's last step).

    Returns:
        The record: the task's result with its key, fingerprint, duration, host and process.
    """
    t0 = time.perf_counter()
    result = _resolve(fn)(*args)
    record = {
        "key": key, "fingerprint": fp, **dict(meta), "result": result,
        "seconds": round(time.perf_counter() - t0, 3), "attempt": attempt,
        "host": socket.gethostname(), "pid": os.getpid(), "finished": _now(),
    }  # fmt: skip
    # Plain JSON from here on (numpy values become numbers); a result that cannot be recorded fails as the task's error.
    record = json.loads(json.dumps(record, default=_jsonable))
    try:
        write_json_atomic(record_path, record)
        record["recorded_by_worker"] = True
    except OSError as exc:  # e.g. a cluster node without the sweep's folder: the driver writes it
        log.warning("%s: cannot write the record here (%s); the driver writes it", record_path, exc)
        record["recorded_by_worker"] = False
    return record


# --- schedulers ----------------------------------------------------------------------------------------------------


class Scheduler(Protocol):
    """Where tasks run. The driver (:func:`run_tasks`) opens it, submits attempts, waits for outcomes, closes it.

    Attributes:
        max_in_flight: attempts submitted at once (None: as many as the resources allow).
    """

    max_in_flight: int | None

    def open(self, tasks: Sequence[Task]) -> None:
        """Get ready to run ``tasks`` (start or join a cluster, check resources); nothing runs yet."""

    def submit(self, task: Task, record_path: str, attempt: int) -> Hashable:
        """Start one attempt of ``task``; return a handle for :meth:`wait`."""

    def wait(self, handles: Sequence[Hashable]) -> list[tuple[Hashable, Outcome]]:
        """Block until at least one of ``handles`` has finished; return the finished ones."""

    def cancel(self, handles: Sequence[Hashable]) -> None:
        """Stop attempts still running (the driver is interrupted)."""

    def close(self) -> None:
        """Release what :meth:`open` took (a local Ray instance is shut down)."""

    def describe(self) -> dict:
        """A JSON summary recorded in the manifest."""


def _outcome_of_exception(key: str, exc: BaseException, tb: str | None = None) -> Outcome:
    cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the task's own exception
    message = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return Outcome(key, error=f"{type(cause).__name__}: {message}".rstrip(": "),
                   traceback=(tb or "".join(traceback.format_exception(exc)))[-TRACEBACK_CHARS:])  # fmt: skip


class InlineScheduler:
    """Runs each task in this process when it is submitted, one at a time (no Ray)."""

    max_in_flight: int | None = 1

    def __init__(self) -> None:
        self._done: dict[int, Outcome] = {}
        self._next = 0

    def open(self, tasks: Sequence[Task]) -> None:
        pass

    def submit(self, task: Task, record_path: str, attempt: int) -> Hashable:
        handle = self._next
        self._next += 1
        try:
            record = _execute(task.fn, task.args, task.key, task.fingerprint, task.meta, record_path, attempt)
            self._done[handle] = Outcome(task.key, record=record)
        except Exception as exc:  # a failed run is reported, not raised (Ctrl-C still is)
            self._done[handle] = _outcome_of_exception(task.key, exc)
        return handle

    def wait(self, handles: Sequence[Hashable]) -> list[tuple[Hashable, Outcome]]:
        return [(h, self._done.pop(h)) for h in handles if h in self._done]

    def cancel(self, handles: Sequence[Hashable]) -> None:
        pass

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"scheduler": "inline"}


def parse_address(address: str) -> tuple[str, int]:
    """``host:port``, ``ray://host:port``, ``[v6]:port`` or ``host`` -> (host, port) to probe.

    Raises:
        SweepError: not an address.
    """
    rest = address.strip()
    client = rest.startswith("ray://")
    rest = rest.removeprefix("ray://").rstrip("/")
    default = RAY_CLIENT_PORT if client else RAY_GCS_PORT
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port_text = tail.removeprefix(":")
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    else:
        host, port_text = rest, ""
    try:
        port = int(port_text) if port_text else default
    except ValueError:
        port = -1
    if not host or not 0 < port < 65536:
        raise SweepError(f"{address!r} is not a Ray address; use host:port (e.g. 10.0.0.5:6379) or ray://host:10001")
    return host, port


def probe_address(address: str, timeout_s: float = 5.0) -> None:
    """Check that something accepts connections at the Ray address the user gave (and nothing else).

    Raises:
        SweepError: the address does not parse or does not answer within ``timeout_s``.
    """
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise SweepError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); check the address and that the "
            "cluster is up (`ray status` on its head node), or leave out --address / RAY_ADDRESS to run on this "
            "machine. Nothing was started."
        ) from exc


_SESSION = re.compile(r"(/\S*?/ray-sweep-[^/\s]+)/session_[0-9_-]+_([0-9]+)")


def _ray_sessions(temp_root: str) -> dict[int, tuple[str, int]]:
    """Processes of private local Ray instances under ``temp_root``: ``{pid: (temp dir, driver pid)}``.

    Every process of a Ray node (GCS, raylet, agents, workers) keeps log files open in its session folder,
    ``<temp dir>/session_<date>_<driver pid>/logs``; that, not the process name (Ray renames its workers
    ``ray::IDLE`` and its agents ``ray::DashboardAgent``), says which instance it belongs to.
    """
    prefix = str(Path(temp_root) / "ray-sweep-")
    found: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        if int(entry.name) == os.getpid():
            continue
        try:
            names = [(entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")]
            names += [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:  # gone, or not ours to look at
            continue
        for name in names:
            match = _SESSION.search(name) if prefix in name else None
            if match and match.group(1).startswith(prefix):
                found[int(entry.name)] = (match.group(1), int(match.group(2)))
                break
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _kill(pids: Sequence[int]) -> int:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def reap_stale_sessions(temp_root: str) -> int:
    """Stop what is left of private local Ray instances whose driver is gone (e.g. killed with SIGKILL).

    Ray's agents and workers can outlive a driver that had no chance to shut Ray down; only processes of
    instances under ``temp_root`` whose driver process no longer exists are stopped.

    Returns:
        How many processes were stopped.
    """
    if not Path("/proc").is_dir():
        return 0
    sessions = _ray_sessions(temp_root)
    stale = [pid for pid, (_, driver) in sessions.items() if not _alive(driver)]
    if stale:
        log.info("stopping %d processes left by an earlier local Ray instance whose driver was killed", len(stale))
    _kill(stale)
    # Their folders (logs) go after a day, unless a live instance still uses them.
    in_use = {d for pid, (d, driver) in sessions.items() if _alive(driver)}
    for folder in Path(temp_root).glob("ray-sweep-*"):
        with contextlib.suppress(OSError):
            if str(folder) not in in_use and time.time() - folder.stat().st_mtime > STALE_TEMP_DIR_S:
                drivers = [int(m.group(1)) for p in folder.glob("session_*") if (m := re.search(r"_([0-9]+)$", p.name))]
                if not any(_alive(d) for d in drivers):
                    shutil.rmtree(folder, ignore_errors=True)
    return len(stale)


def _kill_session(temp_dir: str) -> int:
    """Kill what is left of the private local Ray instance in ``temp_dir``; return how many processes."""
    if not Path("/proc").is_dir():
        return 0
    return _kill([pid for pid, (d, _) in _ray_sessions(str(Path(temp_dir).parent)).items() if d == temp_dir])


class RayScheduler:
    """Runs every task as a Ray task, on a private local instance or on an existing cluster.

    Args:
        address: cluster address (``host:port`` of the head, ``ray://host:10001`` for Ray Client, or ``auto``);
            None: ``$RAY_ADDRESS`` when set, else a local instance on this machine.
        num_workers: tasks at once. Local instance: default ``CPUs // (CPUs per task)``; the instance gets
            ``num_workers x`` the largest task's CPUs. Cluster: default no limit (Ray's resources decide).
        connect_timeout_s: how long the address may take to accept a connection.
        start_attempts: tries to start a local instance (Ray's raylet gives up when its agents start slowly,
            as they do on a loaded machine).
        temp_root: where the local instance's private temp dir goes (default ``$RAY_TMPDIR`` or ``/tmp``).
        log_to_driver: show the workers' output (training progress) in this process.
    """

    def __init__(self, address: str | None = None, num_workers: int | None = None, connect_timeout_s: float = 5.0,
                 start_attempts: int = 2, temp_root: str | None = None, log_to_driver: bool = True):  # fmt: skip
        if num_workers is not None and num_workers < 1:
            raise SweepError(f"workers must be >= 1, got {num_workers}")
        self.address = address if address is not None else (os.environ.get("RAY_ADDRESS") or None)
        if self.address in ("", "local"):
            self.address = None
        self.num_workers = num_workers
        self.max_in_flight: int | None = num_workers
        self.connect_timeout_s = connect_timeout_s
        self.start_attempts = max(1, start_attempts)
        self.temp_root = str(Path(temp_root or os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()).resolve())
        self.log_to_driver = log_to_driver
        self._owns = False
        self._temp_dir: str | None = None
        self._remote = None
        self._refs: dict[Hashable, tuple[Any, str]] = {}
        self._next = 0
        self.failed_any = False

    # -- lifecycle
    def open(self, tasks: Sequence[Task]) -> None:
        try:
            import ray
        except ImportError as exc:
            raise SweepError("Ray is not installed here (pip install -r requirements/host.txt), "
                             "or run with --scheduler inline") from exc  # fmt: skip
        if ray.is_initialized():  # the caller's own Ray session: use it, leave it running
            self._owns = False
        elif self.address is None:
            self._start_local(ray, tasks)
        else:
            self._join(ray)
        self._check_feasible(ray, tasks)
        self._remote = ray.remote(max_calls=1, max_retries=0)(_execute)

    def _start_local(self, ray, tasks: Sequence[Task]) -> None:
        per_task = max((t.cpus for t in tasks), default=1.0) or 1.0
        if self.num_workers is None:
            self.num_workers = max(1, int((os.cpu_count() or 1) // per_task))
            self.max_in_flight = self.num_workers
        num_cpus = max(1, int(round(self.num_workers * per_task)))
        custom: dict[str, float] = {}
        for t in tasks:  # a local run grants the custom resources the tasks ask for (e.g. vivado: this machine)
            for name, amount in t.resources.items():
                custom[name] = max(custom.get(name, 0.0), amount * self.num_workers)
        last: Exception | None = None
        Path(self.temp_root).mkdir(parents=True, exist_ok=True)
        reap_stale_sessions(self.temp_root)
        for attempt in range(1, self.start_attempts + 1):
            temp_dir = tempfile.mkdtemp(prefix="ray-sweep-", dir=self.temp_root)
            try:
                ray.init(
                    address="local", num_cpus=num_cpus, resources=custom or None, include_dashboard=False,
                    _temp_dir=temp_dir, object_store_memory=128 * 1024**2, log_to_driver=self.log_to_driver,
                )  # fmt: skip
            except Exception as exc:  # Ray raises plain Exception when its node does not come up
                last = exc
                with contextlib.suppress(Exception):
                    ray.shutdown()
                killed = _kill_session(temp_dir)
                log.warning("local Ray instance did not start (try %d of %d): %s [%d leftover processes stopped; "
                            "logs in %s]", attempt, self.start_attempts, exc, killed, temp_dir)  # fmt: skip
                continue
            self._owns, self._temp_dir = True, temp_dir
            log.info("local Ray instance: %d CPUs, %d workers at once (temp dir %s)", num_cpus, self.num_workers,
                     temp_dir)  # fmt: skip
            return
        raise SweepError(f"could not start a local Ray instance ({last}); see the logs under {self.temp_root}/"
                         "ray-sweep-*, or run with --scheduler inline")  # fmt: skip

    def _join(self, ray) -> None:
        if self.address != "auto":
            probe_address(self.address, self.connect_timeout_s)
        env = {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        if os.environ.get("CIFAR10_DIR"):
            env["CIFAR10_DIR"] = str(Path(os.environ["CIFAR10_DIR"]).resolve())
        try:
            ray.init(address=self.address, runtime_env={"env_vars": env}, log_to_driver=self.log_to_driver)
        except Exception as exc:  # ConnectionError, RuntimeError, TimeoutError... depending on the failure
            raise SweepError(f"cannot join the Ray cluster at {self.address}: {exc}. Nothing was started.") from exc
        self._owns = True  # our connection; ray.shutdown() disconnects and leaves the cluster running
        log.info("joined the Ray cluster at %s: %s", self.address, ray.cluster_resources())

    @staticmethod
    def _needs(task: Task) -> dict[str, float]:
        need = {"CPU": task.cpus, "GPU": task.gpus, "memory": task.memory_gb * 1024**3, **dict(task.resources)}
        return {k: v for k, v in need.items() if v}

    def _check_feasible(self, ray, tasks: Sequence[Task]) -> None:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        for task in tasks:
            need = self._needs(task)
            if not any(all(node.get(k, 0) >= v for k, v in need.items()) for node in nodes):
                have = [{k: v for k, v in n.items() if not k.startswith("node:") and "object_store" not in k}
                        for n in nodes]  # fmt: skip
                raise SweepError(
                    f"task {task.key} asks for {need}, which no node of the cluster has ({have}). "
                    "Lower cpus_per_run / gpus_per_run, or add such a node. Nothing was started."
                )

    def close(self) -> None:
        if self._refs:
            self.cancel(list(self._refs))
        if self._owns:
            import ray

            with contextlib.suppress(Exception):
                ray.shutdown()
            self._owns = False
        if self._temp_dir:
            # ray.shutdown() stops the node's own processes; idle workers and agents can linger for a minute.
            killed = _kill_session(self._temp_dir)
            if killed:
                log.info("stopped %d Ray processes that outlived ray.shutdown()", killed)
            if not self.failed_any:
                shutil.rmtree(self._temp_dir, ignore_errors=True)
            else:
                log.info("Ray logs kept in %s", self._temp_dir)
            self._temp_dir = None

    # -- tasks
    def submit(self, task: Task, record_path: str, attempt: int) -> Hashable:
        options: dict[str, Any] = {"num_cpus": task.cpus, "num_gpus": task.gpus, "name": task.key}
        if task.memory_gb:
            options["memory"] = int(task.memory_gb * 1024**3)
        if task.resources:
            options["resources"] = dict(task.resources)
        ref = self._remote.options(**options).remote(task.fn, task.args, task.key, task.fingerprint,
                                                     dict(task.meta), record_path, attempt)  # fmt: skip
        handle = self._next
        self._next += 1
        self._refs[handle] = (ref, task.key)
        return handle

    def wait(self, handles: Sequence[Hashable]) -> list[tuple[Hashable, Outcome]]:
        import ray

        by_ref = {self._refs[h][0]: h for h in handles if h in self._refs}
        ready: list = []
        while not ready:  # short waits, so Ctrl-C is handled promptly
            ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=2.0)
        ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
        out = []
        for ref in ready:
            handle = by_ref[ref]
            _, key = self._refs.pop(handle)
            try:
                out.append((handle, Outcome(key, record=ray.get(ref))))
            except Exception as exc:  # RayTaskError (the task raised), WorkerCrashedError, OutOfMemoryError...
                self.failed_any = True
                out.append((handle, _outcome_of_exception(key, exc, str(exc))))
        return out

    def cancel(self, handles: Sequence[Hashable]) -> None:
        import ray

        for h in handles:
            ref, _ = self._refs.pop(h, (None, None))
            if ref is not None:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)

    def describe(self) -> dict:
        return {"scheduler": "ray", "address": self.address or "local", "workers": self.num_workers}


def make_scheduler(kind: str = "auto", address: str | None = None, workers: int | None = None) -> Scheduler:
    """The scheduler the command line asks for.

    Args:
        kind: ``ray``, ``inline`` or ``auto`` (Ray when it is installed, else inline).
        address: Ray cluster address (None: ``$RAY_ADDRESS``, else a local instance).
        workers: runs at once (Ray only).

    Raises:
        SweepError: an address or workers with the inline scheduler; Ray asked for but not installed.
    """
    if kind == "auto":
        try:
            import ray  # noqa: F401
        except ImportError:
            if address or os.environ.get("RAY_ADDRESS"):
                raise SweepError("--address needs Ray (pip install -r requirements/host.txt)") from None
            log.warning("Ray is not installed: running the sweep inline, one run after the other")
            kind = "inline"
        else:
            kind = "ray"
    if kind == "inline":
        if address:  # (RAY_ADDRESS in the environment is ignored here: inline was asked for)
            raise SweepError("--address needs --scheduler ray")
        if workers not in (None, 1):
            raise SweepError("the inline scheduler runs one task at a time; --workers needs --scheduler ray")
        return InlineScheduler()
    if kind == "ray":
        return RayScheduler(address=address, num_workers=workers)
    raise SweepError(f"unknown scheduler {kind!r}; use ray, inline or auto")


# --- the driver ----------------------------------------------------------------------------------------------------


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
                manifest.update(t.key, status="running", attempts=runs["attempts"] + 1, started=_now())
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


# --- experiment runs -----------------------------------------------------------------------------------------------


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


def _train_task(cfg: Any, run_dir: str, threads: int, train_fn: Callable | None = None) -> dict:
    """One experiment run on a worker: train ``cfg`` into ``run_dir``; return its metrics and history."""
    import training.keras_compat  # noqa: F401  (before TensorFlow, in a fresh worker)

    if not logging.getLogger().handlers:  # a fresh worker: show the run's progress, tagged with its folder
        logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s [{Path(run_dir).parent.name}/"
                            f"{Path(run_dir).name}] %(name)s: %(message)s", datefmt="%H:%M:%S")  # fmt: skip
        logging.getLogger("training").setLevel(logging.INFO)
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


def training_tasks(grid: Any, out_dir: str | os.PathLike, train_fn: Callable | None = None) -> list[Task]:
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
                record_dir=rel, fingerprint=fingerprint({"config": asdict(cfg)}),
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
    if saved != json.loads(json.dumps(asdict(cfg), default=_jsonable)):
        return None
    log.info("%s: finished by an earlier sweep; recorded", task.key)
    return {"key": task.key, "fingerprint": task.fingerprint, **dict(task.meta), "result": _run_result(run_dir, None),
            "seconds": None, "attempt": None, "host": None, "pid": None, "finished": None, "adopted": True}  # fmt: skip


def run_sweep(
    grid: Any,
    out_dir: str | os.PathLike,
    scheduler: Scheduler | None = None,
    train_fn: Callable | None = None,
    retries: int | None = None,
    on_outcome: Callable[[Task, Outcome], None] | None = None,
) -> SweepReport:
    """Run the missing runs of an experiment grid on ``scheduler``; write the tables and plots from the records.

    Args:
        grid: a validated :class:`~training.experiments.Grid` (unknown models and quantizations were refused
            when it was built, before anything runs).
        out_dir: the sweep folder.
        scheduler: default :class:`InlineScheduler`.
        train_fn: ``train(cfg, out_dir)`` (default :func:`training.train.train`); picklable for Ray.
        retries: attempts after a failure (default: the grid's ``retries``).
        on_outcome: see :func:`run_tasks`.

    Returns:
        The report; ``records`` holds every finished run of the sweep (this invocation's and earlier ones).

    Raises:
        GridError: ``out_dir`` holds another sweep.
        SweepError: the scheduler cannot start (unreachable cluster, resources no node has).
    """
    from training.experiments import GridError, collect, write_summary

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


# --- syntheses -----------------------------------------------------------------------------------------------------


def _synth_task(run_one: Callable[[str], dict] | str, bundle_dir: str) -> dict:
    """One synthesis on a worker: ``run_one(bundle_dir)``, whose dict is the record's result."""
    result = _resolve(run_one)(bundle_dir)
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
        on_outcome: see :func:`run_tasks`.

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
