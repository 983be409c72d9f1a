"""Overlay bundles: one folder per board and model, described by ``manifest.json``.

A bundle is what ``hls_build`` hands to the board: ``overlays/<board>/<model_id>/`` with the bitstream and .hwh
(when Vivado made them), the weights, the ONNX reference, the generated HLS project and, for the emulated overlay,
the compiled C-simulation library. The manifest records shapes, fixed-point formats, preprocessing, metrics, tool
versions and the sha256 of every file, and the loader refuses a bundle whose files are missing or modified.

Standard library only (plus nothing): the manifest is the one type every stage shares.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from board.errors import BundleError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
BOARDS = ("pynq-z2", "zcu104")


@dataclass(frozen=True)
class TensorSpec:
    """One stream end of the accelerator.

    Attributes:
        name: tensor name (``image`` or ``logits``).
        shape: shape of one example, e.g. ``[32, 32, 3]``.
        fixed_point: hls4ml/Vivado type of each element, e.g. ``ap_ufixed<8,0>``.
        container: numpy dtype that carries one element's raw bits over DMA, e.g. ``uint8``.
    """

    name: str
    shape: list[int]
    fixed_point: str
    container: str


@dataclass(frozen=True)
class Manifest:
    """Everything the board needs to know about one overlay.

    Attributes:
        model_id: folder name and identifier, e.g. ``resnet8_w8a8``.
        board: ``pynq-z2`` or ``zcu104``.
        input: the input stream's spec.
        output: the output stream's spec.
        preprocessing: how uint8 pixels become the input stream (see ``board.preprocess``).
        emulated: True when the overlay has no bitstream and runs on the emulated device.
        bitstream: bundle-relative path of the ``.bit`` (None when emulated).
        hwh: bundle-relative path of the ``.hwh`` (None when emulated).
        csim_library: bundle-relative path of the compiled C-simulation library (emulated kernel).
        csim_entry: the library's ``extern "C"`` entry point taking ``float*`` in and out.
        onnx_reference: bundle-relative path of the float ONNX export of the quantized Keras model.
        onnx_reference_int8: bundle-relative path of its 8-bit version (onnxruntime static quantization, QDQ,
            calibrated on training images; see ``hls_build.int8_reference``), or None in older bundles.
        dma: DMA parameters (``max_transfer_bytes``, ``length_width_bits``).
        hls: hls4ml settings used (backend, io_type, clock, reuse factor, strategy, precisions).
        metrics: figures measured while building (Keras top-1, C-sim agreement, ...), each labelled.
        resources: resource figures; each entry says whether it is ``estimated`` or ``measured``.
        tool_versions: versions of the tools that made the bundle.
        classes: class names in output order.
        created_utc: ISO time of the build.
        files: sha256 of every file in the bundle except the manifest, keyed by bundle-relative POSIX path.
        build: how the bundle was made: the build's steps and each one's wall time in seconds (``steps``).
        schema_version: manifest schema version.
    """

    model_id: str
    board: str
    input: TensorSpec
    output: TensorSpec
    preprocessing: dict[str, Any]
    emulated: bool
    bitstream: str | None = None
    hwh: str | None = None
    csim_library: str | None = None
    csim_entry: str | None = None
    onnx_reference: str | None = None
    onnx_reference_int8: str | None = None
    dma: dict[str, Any] = field(default_factory=dict)
    hls: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    tool_versions: dict[str, str] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    created_utc: str = ""
    files: dict[str, str] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def has_bitstream(self) -> bool:
        """Whether a real bitstream is part of this bundle."""
        return self.bitstream is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, with the derived ``has_bitstream`` flag spelled out for readers of the file."""
        d = asdict(self)
        d["has_bitstream"] = self.has_bitstream
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Build from a parsed ``manifest.json``; unknown keys and wrong versions are refused.

        Raises:
            BundleError: the schema version is not supported, or a key is missing or unknown.
        """
        data = dict(data)
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BundleError(
                f"manifest schema_version {version!r} is not supported (this runtime reads {SCHEMA_VERSION})"
            )
        data.pop("has_bitstream", None)
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise BundleError(f"manifest has unknown keys: {sorted(unknown)}")
        try:
            data["input"] = TensorSpec(**data["input"])
            data["output"] = TensorSpec(**data["output"])
            return cls(**data)
        except (KeyError, TypeError) as exc:
            raise BundleError(f"manifest is incomplete or malformed: {exc}") from exc


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _bundle_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name != MANIFEST and "__pycache__" not in p.parts
    )


def write_manifest(root: str | os.PathLike, manifest: Manifest) -> Manifest:
    """Hash every file under ``root`` into the manifest and write ``manifest.json`` atomically.

    Args:
        root: the bundle folder, already holding every file the manifest points to.
        manifest: the manifest without (or with stale) ``files``.

    Returns:
        The manifest as written, with ``files`` filled in.

    Raises:
        BundleError: a path named in the manifest is not in the bundle, or the board is unknown.
    """
    root = Path(root)
    if manifest.board not in BOARDS:
        raise BundleError(f"unknown board {manifest.board!r}; supported: {', '.join(BOARDS)}")
    files = {rel: sha256_file(root / rel) for rel in _bundle_files(root)}
    refs = (manifest.bitstream, manifest.hwh, manifest.csim_library, manifest.onnx_reference)
    for ref in (*refs, manifest.onnx_reference_int8):
        if ref is not None and ref not in files:
            raise BundleError(f"manifest names {ref!r} but {root / ref} does not exist")
    done = Manifest(**{**manifest.__dict__, "files": files})
    text = json.dumps(done.to_dict(), indent=2, sort_keys=True) + "\n"
    # Write next to the target and rename, so an interrupted build never leaves half a manifest.
    with tempfile.NamedTemporaryFile("w", dir=root, delete=False, suffix=".tmp") as tmp:
        tmp.write(text)
    os.replace(tmp.name, root / MANIFEST)
    return done


def read_manifest(root: str | os.PathLike) -> Manifest:
    """Parse ``manifest.json`` without checking the files (see :func:`load_bundle`)."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: no manifest; is {root} an overlay bundle?")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: unreadable manifest ({exc})") from exc
    return Manifest.from_dict(data)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    root: Path
    manifest: Manifest

    def path(self, rel: str) -> Path:
        """Absolute path of a bundle-relative file."""
        return self.root / rel


def load_bundle(root: str | os.PathLike, board: str | None = None, verify: bool = True) -> Bundle:
    """Read a bundle and check it is whole and unmodified.

    Args:
        root: the bundle folder.
        board: when given, the board this runtime drives; a bundle built for another board is refused.
        verify: check the sha256 of every file (leave on; off only for tools that repair bundles).

    Raises:
        BundleError: the manifest is missing or malformed, a file is missing, modified or unlisted, the
            .bit/.hwh do not share a stem, or the bundle targets another board.
    """
    root = Path(root)
    manifest = read_manifest(root)
    if board is not None and manifest.board != board:
        raise BundleError(f"{root}: bundle is built for {manifest.board}, but this is a {board}")
    if manifest.bitstream and manifest.hwh and Path(manifest.bitstream).stem != Path(manifest.hwh).stem:
        raise BundleError(
            f"{root}: {manifest.bitstream} and {manifest.hwh} do not share a stem; "
            "PYNQ finds the .hwh by the .bit's name"
        )
    if verify:
        problems = []
        for rel, expected in sorted(manifest.files.items()):
            path = root / rel
            if not path.is_file():
                problems.append(f"missing {rel}")
            elif sha256_file(path) != expected:
                problems.append(f"modified {rel}")
        present = set(_bundle_files(root))
        problems += [f"unlisted {rel}" for rel in sorted(present - set(manifest.files))]
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise BundleError(f"{root}: bundle does not match its manifest: {shown}")
    return Bundle(root, manifest)
