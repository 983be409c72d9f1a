"""The overlay manifest round-trips, and a bundle whose files do not match it is refused."""

from __future__ import annotations

import json

import pytest

from board.bundle import Manifest, TensorSpec, load_bundle, read_manifest, write_manifest
from board.errors import BundleError


def _bundle(root, board="pynq-z2"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "reference.onnx").write_bytes(b"onnx bytes")
    (root / "hls").mkdir(exist_ok=True)
    (root / "hls" / "lib.so").write_bytes(b"\x7fELF...")
    manifest = Manifest(
        model_id="toy",
        board=board,
        input=TensorSpec("image", [32, 32, 3], "ap_ufixed<8,0>", "uint8"),
        output=TensorSpec("logits", [10], "ap_fixed<16,6>", "int16"),
        preprocessing={"input_scale": 1 / 256, "input_offset": 0.0},
        emulated=True,
        csim_library="hls/lib.so",
        csim_entry="myproject_float",
        onnx_reference="reference.onnx",
        metrics={"keras_top1": 0.5},
    )
    return write_manifest(root, manifest)


def test_manifest_round_trips_with_checksums(tmp_path):
    written = _bundle(tmp_path / "b")
    assert set(written.files) == {"reference.onnx", "hls/lib.so"}
    again = read_manifest(tmp_path / "b")
    assert again == written
    data = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert data["has_bitstream"] is False and data["emulated"] is True
    assert load_bundle(tmp_path / "b", board="pynq-z2").manifest == written


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "hls" / "lib.so").write_bytes(b"patched"), "modified hls/lib.so"),
        (lambda r: (r / "reference.onnx").unlink(), "missing reference.onnx"),
        (lambda r: (r / "extra.bin").write_bytes(b"x"), "unlisted extra.bin"),
    ],
    ids=["modified", "missing", "unlisted"],
)
def test_damaged_bundle_is_refused(tmp_path, damage, message):
    _bundle(tmp_path / "b")
    damage(tmp_path / "b")
    with pytest.raises(BundleError, match=message):
        load_bundle(tmp_path / "b")


def test_bundle_for_another_board_is_refused(tmp_path):
    _bundle(tmp_path / "b", board="zcu104")
    with pytest.raises(BundleError, match="built for zcu104"):
        load_bundle(tmp_path / "b", board="pynq-z2")


def test_manifest_from_a_newer_schema_or_with_unknown_keys_is_refused(tmp_path):
    _bundle(tmp_path / "b")
    path = tmp_path / "b" / "manifest.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "schema_version": 99}))
    with pytest.raises(BundleError, match="schema_version 99"):
        read_manifest(tmp_path / "b")
    path.write_text(json.dumps({**data, "surprise": 1}))
    with pytest.raises(BundleError, match="unknown keys"):
        read_manifest(tmp_path / "b")
    path.write_text("{not json")
    with pytest.raises(BundleError, match="unreadable manifest"):
        read_manifest(tmp_path / "b")


def test_folder_without_manifest_is_refused(tmp_path):
    with pytest.raises(BundleError, match="no manifest"):
        load_bundle(tmp_path)
