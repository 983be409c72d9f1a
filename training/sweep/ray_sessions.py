"""Clean-up of private local Ray instances: find their processes by session folder, stop those of dead drivers.

Ray's agents and workers can outlive a driver that had no chance to shut Ray down (SIGKILL); the next sweep on the
machine stops them. Linux only (it reads ``/proc``); elsewhere nothing is found and nothing is stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

#: Age after which the folder of a local Ray instance whose driver is gone is removed (its logs were kept).
STALE_TEMP_DIR_S = 24 * 3600

_SESSION = re.compile(r"(/\S*?/ray-sweep-[^/\s]+)/session_[0-9_-]+_([0-9]+)")


def session_processes(temp_root: str) -> dict[int, tuple[str, int]]:
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
    sessions = session_processes(temp_root)
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


def kill_session(temp_dir: str) -> int:
    """Kill what is left of the private local Ray instance in ``temp_dir``; return how many processes."""
    if not Path("/proc").is_dir():
        return 0
    return _kill([pid for pid, (d, _) in session_processes(str(Path(temp_dir).parent)).items() if d == temp_dir])
