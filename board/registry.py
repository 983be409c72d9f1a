"""Overlay registry: which board this is, where the bundles are, and whether pynq's metadata cache is stale.

**Board detection** (:func:`detect_board`), first match wins:

1. ``$ZYNQ_RESNET_BOARD`` (an explicit override: ``pynq-z2``, ``zcu104`` or ``host``);
2. ``$BOARD``, which PYNQ images set system-wide (``Pynq-Z2``, ``ZCU104``; pynqutils' ``get_board`` reads it too);
3. ``/proc/device-tree/chosen/pynq_board``, written by PYNQ images (pynq's remote device reads the same file);
4. ``/proc/device-tree/model`` when it names the board (the ZCU104's says ``ZynqMP ZCU104 RevC``);
5. otherwise ``host``: a machine without a board, where only emulated bundles run.

On a board, a bundle built for another board is refused (a ZCU104 overlay on a PYNQ-Z2 would load a bitstream
for another part). On the host no bundle is refused for its board: emulated bundles run anywhere.

**Bundle search** (:func:`default_roots`): ``$ZYNQ_RESNET_OVERLAYS`` (``os.pathsep``-separated folders) when
set, otherwise ``./overlays``, the ``overlays/`` folder of the source checkout this package lives in, and
``~/jupyter_notebooks/zynq_resnet/overlays`` (where ``pynq get-notebooks`` delivers this project's notebooks;
copy bundles there on a board). Each root holds ``<board>/<model_id>/manifest.json``.

**Stale .hwh metadata**: pynq 3/4 keeps the metadata it parsed from the last downloaded overlay's ``.hwh`` in
``pynq/pl_server/_current_metadata.pkl`` (``/home/xilinx/pynq/pl_server/`` on PYNQ images, a link to the installed
package), next to ``global_pl_state_.json`` (``global_pl_state.json`` in pynq 3.0) that records that bitstream's
path and sha1. When a ``.bit`` with the *same sha1* is loaded again, ``pynq.Overlay`` takes the pickled metadata and
never reads the ``.hwh``: the cache is keyed by the bitstream only. A bundle whose ``.hwh`` was rebuilt or
replaced (same bitstream, new addresses or IP names) would then be driven with the old metadata.
:func:`check_hwh_cache` detects that case (the cache was parsed from another copy of the bitstream whose
``.hwh`` differs from this bundle's sha256, or is older than this bundle's ``.hwh``), and
:func:`ensure_fresh_hwh_cache` clears it (the two files pynq itself deletes when its cache is unusable) or
refuses with the command to clear it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from board.bundle import BOARDS, MANIFEST, Bundle, Manifest, load_bundle, read_manifest, sha256_file
from board.errors import BoardError, BundleError

__all__ = [
    "BOARD_ENV",
    "HOST",
    "OVERLAYS_ENV",
    "BundleEntry",
    "HwhCacheStatus",
    "check_board",
    "check_hwh_cache",
    "default_roots",
    "detect_board",
    "ensure_fresh_hwh_cache",
    "find_bundles",
    "first_bundle",
    "normalise_board",
    "open_bundle",
    "pynq_state_dir",
    "resolve_bundle",
]

log = logging.getLogger(__name__)

HOST = "host"
BOARD_ENV = "ZYNQ_RESNET_BOARD"
OVERLAYS_ENV = "ZYNQ_RESNET_OVERLAYS"
NOTEBOOKS_OVERLAYS = Path("~/jupyter_notebooks/zynq_resnet/overlays")
DEVICE_TREE_BOARD = Path("/proc/device-tree/chosen/pynq_board")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
#: The files pynq (3.x, 4.x) keeps in ``pynq/pl_server/`` for the last downloaded overlay.
PYNQ_METADATA_PICKLE = "_current_metadata.pkl"
#: ``global_pl_state_<device tag>.json`` (pynq 3.1, 4.x); pynq 3.0 wrote ``global_pl_state.json``.
PYNQ_STATE_GLOB = "global_pl_state*.json"


# --------------------------------------------------------------------------------------------------------- boards
def normalise_board(name: str | None) -> str | None:
    """``Pynq-Z2``, ``pynqz2``, ``PYNQ_Z2`` -> ``pynq-z2``; ``ZCU104``, ``zcu104-revc`` -> ``zcu104``.

    Other names are lower-cased with ``-`` separators and returned as they are (an unsupported board);
    empty names give None.
    """
    if name is None:
        return None
    text = str(name).strip().strip("\x00").strip().lower().replace("_", "-").replace(" ", "-")
    if not text:
        return None
    squashed = text.replace("-", "")
    if squashed == HOST:
        return HOST
    if "zcu104" in squashed:
        return "zcu104"
    if squashed.startswith("pynqz2"):
        return "pynq-z2"
    return text


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", "replace").strip("\x00").strip()
    except OSError:
        return None


def detect_board(
    environ: Mapping[str, str] | None = None,
    device_tree_board: Path = DEVICE_TREE_BOARD,
    device_tree_model: Path = DEVICE_TREE_MODEL,
) -> str:
    """The board this runtime runs on (``pynq-z2``, ``zcu104``, another board's name) or ``host``.

    Args:
        environ: environment to read (default ``os.environ``).
        device_tree_board: PYNQ's board-name file (a parameter for tests).
        device_tree_model: the device tree's model string (a parameter for tests).
    """
    env = os.environ if environ is None else environ
    for key in (BOARD_ENV, "BOARD"):
        board = normalise_board(env.get(key))
        if board:
            log.debug("board %s from $%s", board, key)
            return board
    board = normalise_board(_read_text(device_tree_board))
    if board:
        return board
    model = (_read_text(device_tree_model) or "").lower()
    if "zcu104" in model:
        return "zcu104"
    if "pynq-z2" in model or "pynq z2" in model or "pynqz2" in model:
        return "pynq-z2"
    return HOST


def check_board(manifest: Manifest, running_on: str, where: str | os.PathLike = "") -> None:
    """Refuse a bundle built for another board than the one this runs on (no check on the host).

    Raises:
        BundleError: running on a board, and the bundle is for another one (or the board is unsupported).
    """
    if running_on == HOST:
        return
    prefix = f"{where}: " if where else ""
    if running_on not in BOARDS:
        raise BundleError(
            f"{prefix}this board ({running_on}) is not supported; bundles exist for {', '.join(BOARDS)} "
            f"(override the detection with ${BOARD_ENV} if it is wrong)"
        )
    if manifest.board != running_on:
        raise BundleError(
            f"{prefix}bundle is built for {manifest.board}, but this is a {running_on}: its bitstream targets "
            f"another part. Use a bundle from overlays/{running_on}/ (board detected from $BOARD or the device "
            f"tree; override with ${BOARD_ENV})"
        )


# -------------------------------------------------------------------------------------------------------- bundles
@dataclass(frozen=True)
class BundleEntry:
    """One bundle found under a root (its manifest read, its files not yet verified).

    Attributes:
        board: the manifest's board (or the folder name when unreadable).
        model_id: the manifest's model id (or the folder name).
        path: the bundle folder.
        emulated: whether it runs on the emulated device (None when unreadable).
        has_bitstream: whether it holds a bitstream (None when unreadable).
        error: why the manifest could not be read, or None.
    """

    board: str
    model_id: str
    path: Path
    emulated: bool | None
    has_bitstream: bool | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the manifest could be read."""
        return self.error is None


def default_roots(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Folders searched for bundles, in order (see the module docstring); only existing ones."""
    env = os.environ if environ is None else environ
    explicit = env.get(OVERLAYS_ENV)
    if explicit:
        candidates = [Path(p).expanduser() for p in explicit.split(os.pathsep) if p.strip()]
    else:
        candidates = [
            Path.cwd() / "overlays",
            Path(__file__).resolve().parents[1] / "overlays",
            NOTEBOOKS_OVERLAYS.expanduser(),
        ]
    roots: list[Path] = []
    for c in candidates:
        try:
            resolved = c.resolve()
        except OSError:
            continue
        if resolved.is_dir() and resolved not in roots:
            roots.append(resolved)
    return roots


def _as_roots(roots: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[Path]:
    if roots is None:
        return default_roots()
    if isinstance(roots, (str, os.PathLike)):
        return [Path(roots)]
    return [Path(r) for r in roots]


def find_bundles(
    roots: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    board: str | None = None,
    model_id: str | None = None,
) -> list[BundleEntry]:
    """Bundles under ``roots`` (default :func:`default_roots`), optionally only one board's or one model's.

    Returns entries sorted by root order, then board, then model id. Unreadable manifests are listed with their
    ``error`` (and never match a ``board``/``model_id`` filter).
    """
    board = normalise_board(board) if board else None
    found: list[BundleEntry] = []
    seen: set[Path] = set()
    for root in _as_roots(roots):
        for manifest_path in sorted(root.glob(f"*/*/{MANIFEST}")):
            folder = manifest_path.parent
            key = folder.resolve()
            if key in seen:
                continue
            seen.add(key)
            try:
                m = read_manifest(folder)
                entry = BundleEntry(m.board, m.model_id, folder, bool(m.emulated), m.has_bitstream)
            except BoardError as exc:
                entry = BundleEntry(folder.parent.name, folder.name, folder, None, None, str(exc))
            if board is not None and (not entry.ok or entry.board != board):
                continue
            if model_id is not None and (not entry.ok or entry.model_id != model_id):
                continue
            found.append(entry)
    return found


def resolve_bundle(
    spec: str | os.PathLike,
    board: str | None = None,
    roots: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
) -> Path:
    """A bundle folder from a path, a ``<board>/<model_id>`` or a bare ``<model_id>``.

    A bare model id is looked up among ``board``'s bundles (all boards' on the ``host``); a model id that matches
    several bundles is ambiguous.

    Raises:
        BundleError: nothing matches, or a bare model id matches several bundles.
    """
    path = Path(spec)
    if (path / MANIFEST).is_file():
        return path
    text = str(spec).strip("/")
    parts = text.split("/")
    searched = ", ".join(str(r) for r in _as_roots(roots)) or "none exist"
    if len(parts) == 2:
        hits = find_bundles(roots, board=parts[0], model_id=parts[1])
    elif len(parts) == 1:
        filt = board if board and board != HOST else None
        hits = find_bundles(roots, board=filt, model_id=parts[0])
    else:
        hits = []
    if not hits:
        raise BundleError(
            f"no bundle {text!r}: not a bundle folder, and no <board>/<model_id> of that name under the overlay "
            f"roots ({searched}; set ${OVERLAYS_ENV} or pass a folder). `python -m board list` shows what exists"
        )
    if len(hits) > 1:
        names = ", ".join(f"{h.board}/{h.model_id} ({h.path})" for h in hits)
        raise BundleError(f"{text!r} is ambiguous: {names}; pass <board>/<model_id> or a folder")
    return hits[0].path


def open_bundle(
    spec: str | os.PathLike,
    board: str | None = None,
    roots: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    verify: bool = True,
) -> Bundle:
    """Resolve, load and verify a bundle, refusing one built for another board than ``board``.

    Args:
        spec: a folder, ``<board>/<model_id>`` or ``<model_id>`` (see :func:`resolve_bundle`).
        board: the board this runs on (default :func:`detect_board`); ``host`` checks no board.
        roots: overlay roots for name lookups (default :func:`default_roots`).
        verify: check every file's sha256.

    Raises:
        BundleError: not found, modified, or for another board.
    """
    running_on = normalise_board(board) if board else detect_board()
    bundle = load_bundle(resolve_bundle(spec, running_on, roots), verify=verify)
    check_board(bundle.manifest, running_on or HOST, bundle.root)
    return bundle


def first_bundle(
    board: str | None = None,
    roots: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
) -> Bundle:
    """The first bundle this machine can run, loaded and verified.

    On the host: the first emulated bundle of any board (only emulated bundles run off-board). On a board: the
    first of that board's bundles, those with a bitstream before emulated ones.

    Args:
        board: the board this runs on (default :func:`detect_board`).
        roots: overlay roots (default :func:`default_roots`).

    Raises:
        BundleError: none found, or the one found does not verify.
    """
    running_on = normalise_board(board) if board else detect_board()
    entries = [e for e in find_bundles(roots, board=None if running_on == HOST else running_on) if e.ok]
    if running_on == HOST:
        entries = [e for e in entries if e.emulated]
    else:
        entries.sort(key=lambda e: bool(e.emulated))  # stable: root order otherwise
    if not entries:
        searched = ", ".join(str(r) for r in _as_roots(roots)) or "none exist"
        kind = "emulated bundle" if running_on == HOST else f"bundle for the {running_on}"
        raise BundleError(
            f"no {kind} under the overlay roots ({searched}); set ${OVERLAYS_ENV} to the folder holding "
            "<board>/<model_id>/manifest.json, or pass a bundle explicitly"
        )
    return open_bundle(entries[0].path, running_on, roots)


# -------------------------------------------------------------------------------------------- pynq's .hwh cache
@dataclass(frozen=True)
class HwhCacheStatus:
    """What pynq's metadata cache means for one bundle.

    Attributes:
        state: ``not-applicable`` (no bitstream/.hwh), ``none`` (nothing cached: pynq parses the .hwh),
            ``other-bitstream`` (cached for another bitstream: pynq parses this .hwh), ``fresh`` (cached for this
            bitstream, parsed from this .hwh), ``stale`` (cached for this bitstream but not from this .hwh), or
            ``cleared`` (was stale, removed).
        detail: a sentence for the user.
        files: the cache files involved.
    """

    state: str
    detail: str
    files: tuple[Path, ...] = ()

    @property
    def stale(self) -> bool:
        """Whether pynq would use metadata that does not match the bundle's .hwh."""
        return self.state == "stale"


def pynq_state_dir() -> Path | None:
    """``pynq/pl_server/`` of the installed pynq (found without importing pynq), or None without pynq."""
    try:
        spec = importlib.util.find_spec("pynq")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "pl_server"


def _sha1(path: Path) -> str:
    """Sha1 of the whole file, as pynq's ``bitstream_hash``."""
    digest = hashlib.sha1()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_hwh_cache(bundle: Bundle, state_dir: str | os.PathLike | None = None) -> HwhCacheStatus:
    """Whether loading this bundle's bitstream would make pynq use metadata from another (or older) .hwh.

    Args:
        bundle: a verified bundle.
        state_dir: pynq's state folder (default :func:`pynq_state_dir`; a parameter for tests).
    """
    m = bundle.manifest
    if not m.bitstream or not m.hwh:
        return HwhCacheStatus("not-applicable", "the bundle has no bitstream/.hwh (emulated): pynq caches nothing")
    folder = Path(state_dir) if state_dir is not None else pynq_state_dir()
    if folder is None or not folder.is_dir():
        return HwhCacheStatus("none", "pynq is not installed here: no metadata cache")
    pickle_path = folder / PYNQ_METADATA_PICKLE
    states = sorted(folder.glob(PYNQ_STATE_GLOB))
    files = tuple([*states, pickle_path] if pickle_path.exists() else states)
    if not states or not pickle_path.exists():
        return HwhCacheStatus("none", f"no cached overlay metadata in {folder}: pynq parses {m.hwh}", files)
    bit, hwh = bundle.path(m.bitstream), bundle.path(m.hwh)
    bit_sha1 = _sha1(bit)
    for state_path in states:
        try:
            state = json.loads(state_path.read_text())
            cached_bit = Path(str(state["bitfile_name"]))
            cached_sha1 = str(state.get("bitfile_hash", ""))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return HwhCacheStatus("stale", f"pynq's state file {state_path} is unreadable ({exc})", files)
        if cached_sha1 != bit_sha1:
            continue
        # pynq will take the pickled metadata for this bitstream without reading any .hwh.
        try:
            same_file = cached_bit.resolve() == bit.resolve()
        except OSError:
            same_file = False
        if same_file:
            if pickle_path.stat().st_mtime < hwh.stat().st_mtime:
                return HwhCacheStatus(
                    "stale",
                    f"pynq's cached metadata {pickle_path} is older than {hwh} (the .hwh changed after the bitstream "
                    "was last loaded); pynq would use the old metadata",
                    files,
                )
            return HwhCacheStatus("fresh", f"pynq's cached metadata was parsed from this bundle's {m.hwh}", files)
        cached_hwh = cached_bit.with_suffix(".hwh")
        expected = m.files.get(m.hwh)
        if cached_hwh.is_file() and expected is not None and sha256_file(cached_hwh) == expected:
            return HwhCacheStatus(
                "fresh", f"pynq's cached metadata comes from {cached_hwh}, identical to this bundle's {m.hwh}", files
            )
        why = "does not exist any more" if not cached_hwh.is_file() else "differs from this bundle's (sha256)"
        return HwhCacheStatus(
            "stale",
            f"pynq's cached metadata {pickle_path} was parsed from {cached_hwh}, which {why}; the bitstream is the "
            f"same, so pynq would use that metadata instead of {hwh}",
            files,
        )
    return HwhCacheStatus("other-bitstream", f"pynq's cache is for another bitstream: pynq parses {m.hwh}", files)


def ensure_fresh_hwh_cache(
    bundle: Bundle, state_dir: str | os.PathLike | None = None, action: str = "clear"
) -> HwhCacheStatus:
    """Check pynq's metadata cache before loading the bundle's overlay; clear it or refuse when stale.

    Args:
        bundle: a verified bundle.
        state_dir: pynq's state folder (default :func:`pynq_state_dir`).
        action: ``clear`` (remove pynq's two cache files, as pynq does itself when its cache is unusable; pynq then
            parses the bundle's .hwh) or ``refuse``.

    Returns:
        The status (``cleared`` when the stale cache was removed).

    Raises:
        BundleError: the cache is stale and ``action`` is ``refuse``, or it cannot be removed (permissions).
        ValueError: unknown ``action``.
    """
    if action not in ("clear", "refuse"):
        raise ValueError(f"action must be 'clear' or 'refuse', got {action!r}")
    status = check_hwh_cache(bundle, state_dir)
    if not status.stale:
        return status
    command = "sudo rm -f " + " ".join(str(f) for f in status.files)
    if action == "refuse":
        raise BundleError(f"{bundle.root}: stale .hwh metadata: {status.detail}. Clear it with: {command}")
    try:
        for f in status.files:
            f.unlink(missing_ok=True)
    except OSError as exc:
        raise BundleError(
            f"{bundle.root}: stale .hwh metadata: {status.detail}; removing it failed ({exc}). Run: {command}"
        ) from exc
    log.warning("cleared pynq's stale overlay metadata cache: %s", status.detail)
    return HwhCacheStatus("cleared", f"cleared: {status.detail}", status.files)
