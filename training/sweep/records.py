"""A sweep's files: the manifest (``sweep.json``), one record (``result.json``) per finished task, fingerprints.

A task's record carries the task's *fingerprint* (a hash of what it computes): a record with another fingerprint is
never taken as this task's. Both files are written atomically (temporary file + rename), so a sweep killed at any
point leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from board.errors import ProjectError

log = logging.getLogger(__name__)

MANIFEST = "sweep.json"
RECORD = "result.json"
MANIFEST_FORMAT = 2


class SweepError(ProjectError, RuntimeError):
    """A sweep that cannot start: no Ray, an unreachable cluster, resources no node has, a busy folder."""


class SweepMismatchError(SweepError):
    """The folder holds another sweep; running this one there would mix the results of two sweeps."""


# --- records and manifest ------------------------------------------------------------------------------------------


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable object (keys sorted, tuples as lists)."""
    text = json.dumps(obj, sort_keys=True, default=jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def jsonable(obj: Any) -> Any:
    """``json.dump``'s ``default``: tuples and sets as lists, paths as strings, numpy values as numbers."""
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
            json.dump(obj, f, indent=2, default=jsonable)
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


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (the manifest's and records' timestamps)."""
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
        from training.grid import grid_identity

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
    if _saved_identity(saved) != json.loads(json.dumps(identity, default=jsonable)):
        name = saved.get("name") or saved.get("grid", {}).get("name")
        raise SweepMismatchError(f"{folder} holds another sweep ({name!r}); use another folder")
    return saved
