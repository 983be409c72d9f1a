"""Our block designs (the Vivado Tcl ``make bitstream --scripts-only`` writes) against real hls4ml designs' ``.hwh``.

The real designs are public hls4ml accelerator designs whose hardware handoff Vivado wrote (sources:
``host_tests/board/fixtures/hwh/SOURCES.md``): hls4ml's own VivadoAccelerator design for the PYNQ-Z2 and another
PYNQ-Z2 one (same board and PS), and a Zynq UltraScale+ one (Kria KV260: same PS IP as the ZCU104, another part).
This test asserts the fields that must agree; the differences that remain are listed and explained in
``hls_build/README.md`` ("Our block design against real hls4ml designs"), and asserted here as they are, so the README
cannot drift from the code.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from board.hwh import dma_config, find_accelerator, find_dma, read_hwh
from hls_build.boards import BOARDS
from hls_build.vivado import DMA_MM_DATA_WIDTH_BITS, DMA_STREAM_WIDTHS, block_design_script, make_design_params

FIXTURES = Path(__file__).resolve().parents[1] / "board" / "fixtures" / "hwh"
REAL = {  # our board -> real designs of the same board (or the same PS family)
    "pynq-z2": ("pynqz2_hls4ml_tutorial.hwh.gz", "pynqz2_hls4ml_axis_dma.hwh.gz"),
    "zcu104": ("kv260_hls4ml_axi_stream.hwh.gz",),
}


def _ours(board: str, tmp_path: Path) -> tuple[dict[str, str], str]:
    """Our block-design script for ``board`` (8-bit input stream, 32-bit output stream): settings and body."""
    params = make_design_params(board, "m", 8, 32)
    text = block_design_script(params, tmp_path / "ip", tmp_path / "proj", tmp_path / "out")
    settings = {}
    for line in text.splitlines():
        m = re.fullmatch(r"set (\w+) (.*)", line)
        if m and m.group(1) not in settings:
            settings[m.group(1)] = m.group(2).strip('"')
    return settings, text


def _dma_properties(body: str) -> dict[str, str]:
    """``CONFIG.<name> <value>`` pairs set on the DMA cell, values resolved against the settings."""
    block = body[body.index("create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma") :]
    block = block[: block.index("] [get_bd_cells $dma_cell]\n\n")]
    return dict(re.findall(r"CONFIG\.(c_\w+) (\{[^}]*\}|\$\w+)", block))


def _real(name: str, tmp_path: Path):
    path = tmp_path / name.removesuffix(".gz")
    path.write_bytes(gzip.decompress((FIXTURES / name).read_bytes()))
    return read_hwh(path)


@pytest.mark.parametrize("board, fixture", [(b, f) for b, fs in REAL.items() for f in fs])
def test_block_design_agrees_with_real_design(board, fixture, tmp_path):
    settings, body = _ours(board, tmp_path)
    real = _real(fixture, tmp_path)
    spec = BOARDS[board]
    ps = real.processing_system
    assert ps is not None

    # The same processing-system IP, and every PS property we set is one that IP has.
    assert settings["ps_ip"] == ps.modtype
    for key, _value in spec.ps_config:
        assert ps.param(key) is not None, f"{key} is not a parameter of {ps.vlnv}"
    # The PL clock: the property we set is the one the real PS reads, and both are 100 MHz.
    assert ps.param(settings["pl_clock_property"]) is not None
    assert float(settings["pl_clock_mhz"]) == real.pl_clocks_mhz[0] == 100.0

    # The DMA: same IP and version, simple mode, both channels, 26-bit length, 32-bit memory side, TLAST.
    dma = find_dma(real, "hier_0/axi_dma_0")
    cfg = dma_config(dma)
    assert "create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma:7.1 $dma_cell" in body
    assert dma.vlnv == "xilinx.com:ip:axi_dma:7.1"
    ours = _dma_properties(body)
    assert ours["c_include_sg"] == "{0}" and cfg["simple_mode"]
    assert ours["c_include_mm2s"] == ours["c_include_s2mm"] == "{1}" and cfg["mm2s"] and cfg["s2mm"]
    assert ours["c_sg_length_width"] == "$length_width" and int(settings["length_width"]) == cfg["length_width_bits"]
    assert ours["c_m_axi_mm2s_data_width"] == ours["c_m_axi_s2mm_data_width"] == "$mm_bits"
    assert int(settings["mm_bits"]) == DMA_MM_DATA_WIDTH_BITS == cfg["mm2s_mm_data_width_bits"]
    assert cfg["s2mm_mm_data_width_bits"] == DMA_MM_DATA_WIDTH_BITS
    assert cfg["mm2s_tlast"] and cfg["s2mm_tlast"] and "CONFIG.HAS_TLAST" in body  # ours refuses an IP without
    # Bursts: 256 beats, as hls4ml's own PYNQ-Z2 design (the other designs use 128 and Vivado's default 16).
    assert ours["c_mm2s_burst_size"] == ours["c_s2mm_burst_size"] == "{256}"
    assert dma.param("c_mm2s_burst_size") in ("256", "128", "16")
    if fixture == "pynqz2_hls4ml_tutorial.hwh.gz":
        assert dma.param("c_mm2s_burst_size") == dma.param("c_s2mm_burst_size") == "256"
    # Stream widths: ours are the manifest's containers (8-bit pixels in here); the real designs stream 32-bit words.
    assert (cfg["mm2s_stream_width_bits"], cfg["s2mm_stream_width_bits"]) == (32, 32)
    assert int(settings["in_bits"]) in DMA_STREAM_WIDTHS and int(settings["out_bits"]) in DMA_STREAM_WIDTHS

    # The accelerator: an HLS IP fed by the DMA's MM2S stream; hls4ml's top function is <project>_axi.
    acc = find_accelerator(real, dma)
    assert acc.modtype.startswith("myproject_axi") and settings["hls_top"] == "myproject_axi"

    if board == "pynq-z2":
        # Same board part and part, and the names the driver looks up: /hier_0/axi_dma_0 and the IP next to it.
        assert settings["board_part"] == real.system["BOARD"]
        assert settings["part"] == real.part
        assert f"{settings['hier_name']}/{settings['dma_cell']}" == dma.path == "hier_0/axi_dma_0"
        assert f"{settings['hier_name']}/{settings['ip_cell']}" == acc.path
        assert settings["ps_vlnv"] == ps.vlnv
        # The ports we use are the ones the real design enables: GP0 for the registers, HP0 for DDR.
        assert ps.param("PCW_USE_M_AXI_GP0") == ps.param("PCW_USE_S_AXI_HP0") == "1"
        assert (settings["ctrl_master_port"], settings["hp_port"]) == ("M_AXI_GP0", "S_AXI_HP0")
        # Address map: the DMA at 0x4040_0000 (where Vivado's assign_bd_address puts an axi_dma on GP0, and where
        # the emulated device maps it), 64 KB of registers.
        assert real.address_map[dma.fullname] == (0x4040_0000, 0x4040_FFFF)
    else:
        # Zynq UltraScale+: ours names no PS version (Vivado's own), the real one is 3.5; ours is a ZCU104, theirs
        # a KV260 (README: differences). The DMA sits at the top level there, in hier_0 in ours.
        assert settings["ps_vlnv"] == "xilinx.com:ip:zynq_ultra_ps_e" and ps.version == "3.5"
        assert real.arch == "zynquplus" and settings["part"].startswith("xczu")
        assert dma.path == "axi_dma_0" and settings["dma_cell"] == "axi_dma_0" and settings["hier_name"] == "hier_0"
        base, high = real.address_map[dma.fullname]
        assert high - base + 1 == 0x1_0000


def test_hls4ml_pynqz2_design_interconnects_are_axi_interconnect(tmp_path):
    """A documented difference: hls4ml's PYNQ-Z2 design uses axi_interconnect 2.1, ours SmartConnect."""
    real = _real("pynqz2_hls4ml_tutorial.hwh.gz", tmp_path)
    assert {m.vlnv for m in real.of_type("axi_interconnect")} == {"xilinx.com:ip:axi_interconnect:2.1"}
    assert not real.of_type("smartconnect")
    _, body = _ours("pynq-z2", tmp_path)
    assert body.count("create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect") == 2
    assert "axi_interconnect" not in body
