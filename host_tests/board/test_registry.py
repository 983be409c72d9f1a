"""board.registry: board detection, finding bundles, refusing another board's bundle, pynq's stale .hwh cache."""

from __future__ import annotations

import json
import os
import time

import pytest
from board_fakes import sha1_of, write_hw_bundle, write_pynq_cache

import board.registry as registry
from board.bundle import load_bundle
from board.errors import BoardError, BundleError
from board.registry import (
    HOST,
    check_board,
    check_hwh_cache,
    default_roots,
    detect_board,
    ensure_fresh_hwh_cache,
    find_bundles,
    first_bundle,
    normalise_board,
    open_bundle,
    resolve_bundle,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("Pynq-Z2", "pynq-z2", id="pynq-image"),
        pytest.param("pynqz2", "pynq-z2", id="pynqutils"),
        pytest.param("PYNQ_Z2", "pynq-z2", id="underscore"),
        pytest.param("ZCU104", "zcu104", id="zcu104"),
        pytest.param("zcu104-revc", "zcu104", id="revision"),
        pytest.param("Ultra96 V2", "ultra96-v2", id="unsupported"),
        pytest.param("host", HOST, id="host"),
        pytest.param("  ", None, id="blank"),
        pytest.param(None, None, id="none"),
    ],
)
def test_normalise_board(name, expected):
    assert normalise_board(name) == expected


def test_detect_board_order(tmp_path):
    none = tmp_path / "missing"
    assert detect_board({}, none, none) == HOST
    assert detect_board({"BOARD": "Pynq-Z2"}, none, none) == "pynq-z2"
    # The project's own override wins over PYNQ's $BOARD.
    assert detect_board({"BOARD": "Pynq-Z2", "ZYNQ_RESNET_BOARD": "host"}, none, none) == HOST
    chosen = tmp_path / "pynq_board"
    chosen.write_bytes(b"ZCU104\x00")
    assert detect_board({}, chosen, none) == "zcu104"
    model = tmp_path / "model"
    model.write_bytes(b"ZynqMP ZCU104 RevC\x00")
    assert detect_board({}, none, model) == "zcu104"
    model.write_bytes(b"xlnx,zynq-7000\x00")  # a device tree that does not name the board
    assert detect_board({}, none, model) == HOST


def test_find_and_resolve(make_bundle, tmp_path, monkeypatch):
    make_bundle("toy_a")
    make_bundle("toy_b")
    root = tmp_path / "overlays"
    write_hw_bundle(root, "zcu104", "toy_a")
    broken = root / "zcu104" / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{")
    monkeypatch.setenv("ZYNQ_RESNET_OVERLAYS", str(root))
    assert default_roots() == [root.resolve()]

    entries = find_bundles()
    assert [(e.board, e.model_id, e.ok) for e in entries] == [
        ("pynq-z2", "toy_a", True),
        ("pynq-z2", "toy_b", True),
        ("zcu104", "broken", False),
        ("zcu104", "toy_a", True),
    ]
    assert [e.model_id for e in find_bundles(board="Pynq-Z2")] == ["toy_a", "toy_b"]
    assert [e.board for e in find_bundles(model_id="toy_a")] == ["pynq-z2", "zcu104"]

    assert resolve_bundle(root / "pynq-z2" / "toy_b") == root / "pynq-z2" / "toy_b"
    assert resolve_bundle("zcu104/toy_a") == root / "zcu104" / "toy_a"
    assert resolve_bundle("toy_b") == root / "pynq-z2" / "toy_b"
    assert resolve_bundle("toy_a", board="zcu104") == root / "zcu104" / "toy_a"
    with pytest.raises(BundleError, match="ambiguous"):
        resolve_bundle("toy_a", board=HOST)
    with pytest.raises(BundleError, match="no bundle 'nope'.*ZYNQ_RESNET_OVERLAYS"):
        resolve_bundle("nope")


def test_another_boards_bundle_is_refused_on_a_board(make_bundle, tmp_path):
    z2 = load_bundle(make_bundle("toy"))
    zcu = write_hw_bundle(tmp_path / "overlays", "zcu104", "hw")
    with pytest.raises(BundleError, match="built for zcu104, but this is a pynq-z2"):
        open_bundle(zcu, board="pynq-z2")
    with pytest.raises(BundleError, match="built for pynq-z2, but this is a zcu104"):
        check_board(z2.manifest, "zcu104", z2.root)
    with pytest.raises(BundleError, match="not supported"):
        check_board(z2.manifest, "ultra96-v2")
    # Off-board nothing is refused for its board (emulated bundles run anywhere).
    assert open_bundle(zcu, board=HOST).manifest.board == "zcu104"
    check_board(z2.manifest, HOST)
    assert open_bundle(z2.root, board="pynq-z2").manifest.model_id == "toy"


def test_first_bundle(make_bundle, tmp_path):
    root = tmp_path / "overlays"
    make_bundle("toy")
    write_hw_bundle(root, "pynq-z2", "a_hw")  # sorts first, but the host cannot run a bitstream
    assert first_bundle(HOST, roots=root).manifest.model_id == "toy"
    assert first_bundle("pynq-z2", roots=root).manifest.model_id == "a_hw"  # a board prefers its bitstreams
    with pytest.raises(BundleError, match="no bundle for the zcu104"):
        first_bundle("zcu104", roots=root)


# ------------------------------------------------------------------------------------------------ stale .hwh cache
@pytest.fixture
def hw(tmp_path):
    return load_bundle(write_hw_bundle(tmp_path / "overlays", "zcu104", "hw"))


def test_cache_states(hw, tmp_path):
    state = tmp_path / "pl_server"
    state.mkdir()
    assert check_hwh_cache(hw, state).state == "none"
    write_pynq_cache(state, tmp_path / "elsewhere.bit", bit_sha1="0" * 40)
    assert check_hwh_cache(hw, state).state == "other-bitstream"
    bit = hw.path("hw.bit")
    write_pynq_cache(state, bit)
    status = check_hwh_cache(hw, state)
    assert status.state == "fresh" and not status.stale
    write_pynq_cache(state, bit, pickle=False)
    (state / "_current_metadata.pkl").unlink()
    assert check_hwh_cache(hw, state).state == "none"  # pynq parses the .hwh when the pickle is gone
    assert check_hwh_cache(hw, tmp_path / "no_such_dir").state == "none"  # no pynq: nothing cached


def test_cache_older_than_hwh_is_stale_and_cleared(hw, tmp_path):
    state = tmp_path / "pl_server"
    files = write_pynq_cache(state, hw.path("hw.bit"))
    old = time.time() - 3600
    os.utime(state / "_current_metadata.pkl", (old, old))  # parsed before the .hwh was replaced
    status = check_hwh_cache(hw, state)
    assert status.stale and "older than" in status.detail
    with pytest.raises(BundleError, match=r"stale \.hwh metadata.*sudo rm -f"):
        ensure_fresh_hwh_cache(hw, state, action="refuse")
    assert all(f.exists() for f in files)
    cleared = ensure_fresh_hwh_cache(hw, state, action="clear")
    assert cleared.state == "cleared" and not any(f.exists() for f in files)
    assert check_hwh_cache(hw, state).state == "none"


def test_cache_from_another_copy(hw, tmp_path):
    """Same bitstream elsewhere: fresh only if the .hwh next to it is byte-identical to the bundle's."""
    state = tmp_path / "pl_server"
    other = tmp_path / "copy"
    other.mkdir()
    (other / "hw.bit").write_bytes(hw.path("hw.bit").read_bytes())
    write_pynq_cache(state, other / "hw.bit")
    assert check_hwh_cache(hw, state).state == "stale"  # its .hwh is gone: unknown origin
    (other / "hw.hwh").write_text("<hwh v0, other addresses/>")
    status = check_hwh_cache(hw, state)
    assert status.stale and "differs" in status.detail
    (other / "hw.hwh").write_text(hw.path("hw.hwh").read_text())
    assert check_hwh_cache(hw, state).state == "fresh"


def test_corrupt_state_is_stale(hw, tmp_path):
    state = tmp_path / "pl_server"
    write_pynq_cache(state, hw.path("hw.bit"))
    (state / "global_pl_state_.json").write_text("{not json")
    assert check_hwh_cache(hw, state).stale


def test_clear_failure_says_what_to_run(hw, tmp_path, monkeypatch):
    state = tmp_path / "pl_server"
    write_pynq_cache(state, hw.path("hw.bit"))
    old = time.time() - 3600
    os.utime(state / "_current_metadata.pkl", (old, old))

    def denied(self, missing_ok=False):
        raise PermissionError("read-only")

    monkeypatch.setattr(type(state), "unlink", denied)
    with pytest.raises(BundleError, match="removing it failed.*Run: sudo rm -f"):
        ensure_fresh_hwh_cache(hw, state)


def test_emulated_bundle_has_no_cache(make_bundle):
    assert check_hwh_cache(load_bundle(make_bundle())).state == "not-applicable"


def test_pynq_state_dir_is_pynqs_pl_server():
    pytest.importorskip("pynq")
    d = registry.pynq_state_dir()
    assert d is not None and d.name == "pl_server" and (d / "global_state.py").is_file()


def test_accelerator_clears_stale_cache_before_loading_the_overlay(hw, tmp_path, monkeypatch):
    pynq = pytest.importorskip("pynq")
    from board.driver import Accelerator

    state = tmp_path / "pl_server"
    files = write_pynq_cache(state, hw.path("hw.bit"))
    old = time.time() - 3600
    os.utime(files[1], (old, old))
    monkeypatch.setattr(registry, "pynq_state_dir", lambda: state)
    seen = {}

    def fake_overlay(path, download=True):
        seen["cache_present"] = any(f.exists() for f in files)
        seen["path"] = path
        raise RuntimeError("no FPGA here")

    monkeypatch.setattr(pynq, "Overlay", fake_overlay)
    with pytest.raises(BoardError, match="cannot load overlay"):
        Accelerator(hw)
    assert seen == {"cache_present": False, "path": str(hw.path("hw.bit"))}


def test_validate_cli_reports_board_and_cache(hw, tmp_path, monkeypatch, capsys):
    from board.__main__ import main

    state = tmp_path / "pl_server"
    files = write_pynq_cache(state, hw.path("hw.bit"))
    monkeypatch.setattr(registry, "pynq_state_dir", lambda: state)
    assert main(["validate", str(hw.root), "--board", "zcu104"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK ") and "metadata cache: fresh" in out

    assert main(["validate", str(hw.root), "--board", "pynq-z2"]) == 2
    assert "built for zcu104, but this is a pynq-z2" in capsys.readouterr().err

    old = time.time() - 3600
    os.utime(files[1], (old, old))
    assert main(["validate", str(hw.root), "--board", "zcu104"]) == 2
    err = capsys.readouterr().err
    assert "stale .hwh metadata" in err and "sudo rm -f" in err
    assert main(["validate", str(hw.root), "--board", "zcu104", "--clear-stale-cache"]) == 0
    assert "metadata cache: cleared" in capsys.readouterr().out
    assert not any(f.exists() for f in files)


def test_validate_by_model_id(make_bundle, tmp_path, monkeypatch, capsys):
    from board.__main__ import main

    make_bundle("toy")
    monkeypatch.setenv("ZYNQ_RESNET_OVERLAYS", str(tmp_path / "overlays"))
    assert main(["validate", "toy", "--board", "host"]) == 0
    assert "pynq-z2/toy (emulated)" in capsys.readouterr().out


def test_state_file_format_matches_pynq(tmp_path):
    """Our fake cache is what pynq's own GlobalState writes (same keys, sha1 of the bitfile)."""
    pytest.importorskip("pynq")
    from pynq.pl_server.global_state import GlobalState, bitstream_hash

    bit = tmp_path / "x.bit"
    bit.write_bytes(b"abc" * 1000)
    assert bitstream_hash(str(bit)) == sha1_of(bit)
    ours = json.loads(write_pynq_cache(tmp_path / "s", bit)[0].read_text())
    theirs = json.loads(GlobalState(bitfile_name=str(bit), active_name="fake", timestamp="t").model_dump_json())
    assert set(ours) == set(theirs)
