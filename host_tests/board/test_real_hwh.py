"""The runtime on real Vivado outputs: public hls4ml designs' ``.hwh`` (and a ``.bit`` header), read by pynq's own
parser and by :mod:`board.hwh`; the driver finds the DMA by the name Vivado gave it and streams through it; pynq's
metadata cache goes stale with real files; corrupt or foreign files fail with their name.

Fixtures and their sources: ``fixtures/hwh/SOURCES.md``.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
from board_fakes import write_pynq_cache
from board_hwh import REAL_HWH, hwh_bytes, make_hwh_device, pynq_parse, write_real_bit
from board_toys import N_IN, N_OUT, toy_raw

from board.bundle import Manifest, TensorSpec, load_bundle, write_manifest
from board.errors import BundleError
from board.hwh import (
    BOARD_PARTS,
    check_hardware_files,
    dma_config,
    find_accelerator,
    find_dma,
    read_bit_header,
    read_hwh,
)
from board.registry import check_hwh_cache, ensure_fresh_hwh_cache

#: What each real design is, as Vivado named it: DMA, accelerator (the IP the DMA's MM2S feeds), DMA base address.
EXPECTED = {
    "pynqz2_axis_dma": ("hier_0/axi_dma_0", "hier_0/myproject_axi_0", 0x4040_0000, "xc7z020clg400-1"),
    "pynqz2_tutorial": ("hier_0/axi_dma_0", "hier_0/myproject_axi_0", 0x4040_0000, "xc7z020clg400-1"),
    "kv260_axi_stream": ("axi_dma_0", "myproject_axi_stream_1", 0x8000_0000, "xck26sfvc784-2LV"),
}


REAL_BIT = Path("REAL")  # marker: write the real PYNQ-Z2 header padded to its announced length


@pytest.fixture(params=sorted(REAL_HWH))
def real_hwh(request, tmp_path) -> tuple[str, Path]:
    name = request.param
    path = tmp_path / f"{name}.hwh"
    path.write_bytes(hwh_bytes(name))
    return name, path


def _toy_kernel():
    from board.emulated_device import FunctionKernel

    return FunctionKernel(toy_raw, N_IN, N_OUT, "uint8", "int16")


def _hw_bundle(
    root: Path,
    board: str,
    hwh: bytes,
    bit: Path | bytes,
    ip_name: str = "hier_0/axi_dma_0",
    containers: tuple[str, str] = ("uint32", "int32"),
) -> Path:
    """A bitstream bundle holding a real .hwh (and a real or given .bit), for ``board``.

    The real designs stream 32-bit words, so the containers are 32 bits by default; the emulated-kernel tests use
    the toy kernel's 8/16-bit ones (the driver does not read the .hwh when it is handed an overlay).
    """
    folder = root / board / "real"
    folder.mkdir(parents=True)
    (folder / "real.hwh").write_bytes(hwh)
    if bit is REAL_BIT:
        write_real_bit(folder / "real.bit")
    elif isinstance(bit, Path):
        (folder / "real.bit").write_bytes(bit.read_bytes())
    else:
        (folder / "real.bit").write_bytes(bit)
    write_manifest(
        folder,
        Manifest(
            model_id="real",
            board=board,
            input=TensorSpec("image", [32, 32, 3], "ap_ufixed<8,0>", containers[0]),
            output=TensorSpec("logits", [10], "ap_fixed<16,6>", containers[1]),
            preprocessing={"input_scale": 0.00390625},
            emulated=False,
            bitstream="real.bit",
            hwh="real.hwh",
            dma={"ip_name": ip_name, "length_width_bits": 26},
        ),
    )
    return folder


# --------------------------------------------------------------------------------------------------- the files
def test_fixtures_are_the_published_files():
    for name, (_, sha) in REAL_HWH.items():
        assert hashlib.sha256(hwh_bytes(name)).hexdigest() == sha, name


def test_board_parts_match_hls_build():
    boards = pytest.importorskip("hls_build.boards")
    assert BOARD_PARTS == {name: spec.part for name, spec in boards.BOARDS.items()}


def test_read_hwh_finds_dma_and_accelerator_by_vivado_names(real_hwh):
    name, path = real_hwh
    dma_name, acc_name, base, part = EXPECTED[name]
    info = read_hwh(path)
    assert info.part == part
    dma = find_dma(info, "hier_0/axi_dma_0")
    assert dma.path == dma_name and dma.vlnv == "xilinx.com:ip:axi_dma:7.1"
    assert find_accelerator(info, dma).path == acc_name
    assert info.address_map["/" + dma_name][0] == base
    cfg = dma_config(dma)
    assert cfg["simple_mode"] and cfg["mm2s"] and cfg["s2mm"] and cfg["length_width_bits"] == 26
    assert cfg["mm2s_tlast"] and cfg["s2mm_tlast"]
    assert info.pl_clocks_mhz[0] == 100.0


def test_pynq_parser_reads_each_file_and_agrees(real_hwh):
    """pynq's own metadata parser (pynqmetadata, as ``pynq.Overlay`` uses it on a board) reads every real file."""
    name, path = real_hwh
    dma_name, _, base, _ = EXPECTED[name]
    parser = pynq_parse(path)
    ip = parser.ip_dict[dma_name]
    assert ip["type"] == "xilinx.com:ip:axi_dma:7.1" and ip["phys_addr"] == base
    assert ip["parameters"]["c_include_sg"] == "0" and ip["parameters"]["c_sg_length_width"] == "26"
    ours = read_hwh(path)
    for key, value in parser.ip_dict.items():  # every addressable IP pynq sees sits where board.hwh says
        if value.get("phys_addr") is not None and "/" + key in ours.address_map:
            assert ours.address_map["/" + key][0] == value["phys_addr"], key


@pytest.mark.parametrize("name", sorted(REAL_HWH))
def test_overlay_over_emulated_device_and_driver(name, tmp_path, caplog):
    """``pynq.Overlay`` of a real design over an emulated device; the driver streams images through its DMA."""
    import pynq
    from pynq.lib.dma import DMA

    from board.driver import Accelerator

    dma_name, _, base, _ = EXPECTED[name]
    board = "zcu104" if name.startswith("kv260") else "pynq-z2"
    # The manifest names hls4ml's default; the KV260 design calls its DMA axi_dma_0 and the driver must find it.
    folder = _hw_bundle(tmp_path, board, hwh_bytes(name), b"header: not downloaded", containers=("uint8", "int16"))
    bundle = load_bundle(folder)
    dev = make_hwh_device(_toy_kernel(), {**bundle.manifest.dma, "phys_addr": base})
    overlay = pynq.Overlay(str(bundle.path("real.bit")), download=False, device=dev)
    assert dma_name in overlay.ip_dict and isinstance(overlay.ip_dict[dma_name], dict)
    images = np.random.default_rng(7).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="board.driver"):
        with Accelerator(bundle, overlay=overlay, batch_size=2, timeout_s=10.0) as acc:
            assert isinstance(acc.dma, DMA) and acc.dma.mmio.base_addr == base
            np.testing.assert_array_equal(acc.predict_raw(images), toy_raw(images.reshape(5, -1)))
    assert ("using its AXI DMA 'axi_dma_0'" in caplog.text) == (dma_name == "axi_dma_0")
    dev.close()


# --------------------------------------------------------------------------------------------- bundle checks
def test_check_hardware_files_on_real_pynqz2_design(tmp_path):
    folder = _hw_bundle(tmp_path, "pynq-z2", hwh_bytes("pynqz2_tutorial"), REAL_BIT)
    summary = check_hardware_files(load_bundle(folder))
    assert summary["dma"] == "hier_0/axi_dma_0" and summary["accelerator"] == "hier_0/myproject_axi_0"
    assert summary["bit"]["part"] == "7z020clg400" and summary["bit"]["version"] == "2019.2"
    assert summary["pl_clocks_mhz"] == {0: 100.0}


def test_stream_widths_must_match_the_containers(tmp_path):
    folder = _hw_bundle(tmp_path, "pynq-z2", hwh_bytes("pynqz2_tutorial"), REAL_BIT, containers=("uint8", "int32"))
    with pytest.raises(BundleError, match=r"MM2S stream is 32 bits wide but the manifest's image container \(uint8\)"):
        check_hardware_files(load_bundle(folder))


def test_bitstream_for_another_part_is_refused(tmp_path):
    folder = _hw_bundle(tmp_path, "zcu104", hwh_bytes("kv260_axi_stream"), REAL_BIT)
    with pytest.raises(BundleError, match=r"real\.bit: bitstream built for part 7z020clg400 \(a pynq-z2 bitstream\)"):
        check_hardware_files(load_bundle(folder))


def test_foreign_hwh_is_refused(tmp_path):
    """A PYNQ-Z2 bitstream with the KV260 design's .hwh: the handoff is for another part."""
    folder = _hw_bundle(tmp_path, "pynq-z2", hwh_bytes("kv260_axi_stream"), REAL_BIT)
    with pytest.raises(BundleError, match=r"real\.hwh: hardware handoff of a design for xck26sfvc784-2LV"):
        check_hardware_files(load_bundle(folder))


@pytest.mark.parametrize(
    "content, message",
    [
        (lambda real: real[: len(real) // 2], r"real\.hwh: not a Vivado hardware handoff .*: the XML is malformed"),
        (lambda real: b"<project name='x'/>", r"real\.hwh: .*document is <project>, expected <EDKSYSTEM>"),
        (lambda real: b"\xff\xfe\x00garbage", r"real\.hwh: not a Vivado hardware handoff \(\.hwh\): not UTF-8"),
        (lambda real: b"<EDKSYSTEM/>", r"real\.hwh: not a usable hardware handoff .*no IP"),
    ],
)  # fmt: skip
def test_corrupt_hwh_names_the_file(tmp_path, content, message):
    folder = _hw_bundle(tmp_path, "pynq-z2", content(hwh_bytes("pynqz2_tutorial")), REAL_BIT)
    with pytest.raises(BundleError, match=message):
        check_hardware_files(load_bundle(folder))


def test_corrupt_or_truncated_bit_names_the_file(tmp_path):
    folder = _hw_bundle(tmp_path, "pynq-z2", hwh_bytes("pynqz2_tutorial"), b"\x00\x09not a bitstream at all")
    with pytest.raises(BundleError, match=r"real\.bit: not a Xilinx \.bit file"):
        check_hardware_files(load_bundle(folder))
    header = read_bit_header(Path(__file__).parent / "fixtures" / "hwh" / "pynqz2_hls4ml_axis.bit.header")
    assert header.part == "7z020clg400" and not header.complete
    folder2 = _hw_bundle(tmp_path / "b", "pynq-z2", hwh_bytes("pynqz2_tutorial"), header.path)
    with pytest.raises(BundleError, match=r"real\.bit: the header announces 4045564 bytes.*truncated"):
        check_hardware_files(load_bundle(folder2))


def test_driver_refuses_foreign_files_before_pynq(tmp_path):
    from board.driver import Accelerator

    folder = _hw_bundle(tmp_path, "zcu104", hwh_bytes("kv260_axi_stream"), REAL_BIT)
    with pytest.raises(BundleError, match=r"cannot load overlay .*real\.bit.*built for part 7z020clg400"):
        Accelerator(load_bundle(folder))


def test_validate_cli_names_the_bad_file(tmp_path, capsys):
    from board.__main__ import main

    folder = _hw_bundle(tmp_path, "pynq-z2", hwh_bytes("pynqz2_tutorial")[:5000], REAL_BIT)
    assert main(["validate", str(folder), "--board", "host"]) == 2
    assert "real.hwh: not a Vivado hardware handoff" in capsys.readouterr().err
    good = _hw_bundle(tmp_path / "ok", "pynq-z2", hwh_bytes("pynqz2_tutorial"), REAL_BIT)
    assert main(["validate", str(good), "--board", "host"]) == 0
    out = capsys.readouterr().out
    assert "DMA hier_0/axi_dma_0" in out and "accelerator hier_0/myproject_axi_0" in out and "7z020clg400" in out


# ------------------------------------------------------------------------------------------- stale metadata cache
def test_stale_cache_with_real_files(tmp_path):
    """pynq's cache holds the KV260 design's metadata for this very bitstream (sha1): pynq would use it and never
    read the bundle's .hwh, so the overlay has no hier_0/axi_dma_0. Clearing the stale cache fixes it."""
    import pynq

    folder = _hw_bundle(tmp_path, "pynq-z2", hwh_bytes("pynqz2_tutorial"), REAL_BIT)
    bundle = load_bundle(folder)
    # The same bitstream was loaded before from another folder whose .hwh was the KV260 design's.
    other = tmp_path / "old"
    other.mkdir()
    write_real_bit(other / "real.bit")
    (other / "real.hwh").write_bytes(hwh_bytes("kv260_axi_stream"))
    state = tmp_path / "pl_server"
    write_pynq_cache(state, other / "real.bit")
    (state / "_current_metadata.pkl").write_bytes(pickle.dumps(pynq_parse(other / "real.hwh")))

    status = check_hwh_cache(bundle, state)
    assert status.stale and "differs from this bundle's" in status.detail
    dev = make_hwh_device(_toy_kernel(), bundle.manifest.dma, state_dir=state)
    stale = pynq.Overlay(str(bundle.path("real.bit")), download=False, device=dev)
    assert "hier_0/axi_dma_0" not in stale.ip_dict and "axi_dma_0" in stale.ip_dict  # the wrong design's names

    assert ensure_fresh_hwh_cache(bundle, state, action="clear").state == "cleared"
    fresh = pynq.Overlay(str(bundle.path("real.bit")), download=False, device=dev)
    assert "hier_0/axi_dma_0" in fresh.ip_dict and fresh.ip_dict["hier_0/axi_dma_0"]["phys_addr"] == 0x4040_0000
    dev.close()


def test_same_bitstream_new_hwh_is_stale(tmp_path):
    """Same folder, same bitstream, the .hwh replaced by another real design after pynq cached the old one."""
    import os

    folder = _hw_bundle(tmp_path, "pynq-z2", hwh_bytes("pynqz2_axis_dma"), REAL_BIT)
    bundle = load_bundle(folder)
    state = tmp_path / "pl_server"
    write_pynq_cache(state, bundle.path("real.bit"))
    (state / "_current_metadata.pkl").write_bytes(pickle.dumps(pynq_parse(bundle.path("real.hwh"))))
    old = bundle.path("real.hwh").stat().st_mtime - 60
    os.utime(state / "_current_metadata.pkl", (old, old))
    bundle.path("real.hwh").write_bytes(hwh_bytes("pynqz2_tutorial"))
    m = load_bundle(folder, verify=False).manifest
    write_manifest(folder, m)  # re-hash the new .hwh
    assert check_hwh_cache(load_bundle(folder), state).stale
