"""Where a sweep's tasks run: :class:`InlineScheduler` (this process) or :class:`RayScheduler` (Ray).

* :class:`InlineScheduler`: one task after the other in this process (no Ray needed).
* :class:`RayScheduler`: every task a Ray task, with its own resource request (CPUs, GPUs, memory, custom
  resources such as ``vivado``), in a fresh worker process (``max_calls=1``: TensorFlow state never leaks from one
  run to the next). Without an address it starts a private local instance (no dashboard, temp dir under
  ``$RAY_TMPDIR`` or ``/tmp``, shut down and cleaned up when the sweep ends); with ``address`` (or
  ``RAY_ADDRESS``) it joins an existing cluster, after checking that the address answers, so an unreachable
  cluster is a clear error before anything starts.

Ray is imported only by :class:`RayScheduler`. :func:`make_scheduler` picks one from command-line options.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, Protocol

from training.sweep.ray_sessions import kill_session, reap_stale_sessions
from training.sweep.records import SweepError
from training.sweep.tasks import Outcome, Task, execute, outcome_of_exception

log = logging.getLogger(__name__)

#: Default Ray port of a cluster's head (GCS) and of the Ray Client server (``ray://``).
RAY_GCS_PORT = 6379
RAY_CLIENT_PORT = 10001
#: The checkout (``training``'s parent): what a cluster's workers put on their PYTHONPATH.
REPO_ROOT = Path(__file__).resolve().parents[2]


class Scheduler(Protocol):
    """Where tasks run. The driver (:func:`~training.sweep.driver.run_tasks`) opens it, submits, waits, closes it.

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
            record = execute(task.fn, task.args, task.key, task.fingerprint, task.meta, record_path, attempt)
            self._done[handle] = Outcome(task.key, record=record)
        except Exception as exc:  # a failed run is reported, not raised (Ctrl-C still is)
            self._done[handle] = outcome_of_exception(task.key, exc)
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
        self._remote = ray.remote(max_calls=1, max_retries=0)(execute)

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
                killed = kill_session(temp_dir)
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
            killed = kill_session(self._temp_dir)
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
                out.append((handle, outcome_of_exception(key, exc, str(exc))))
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
