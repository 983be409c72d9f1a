"""The Vivado flow: board table, generated Tcl (run under tclsh with recording stubs), report parsers, the CLI with
missing and fake tools, the Vitis AXI wrapper, and the HLS C++ of a ZCU104 conversion compiling with g++.

Nothing here needs Xilinx tools except the test marked ``vivado``. The generated scripts run under plain ``tclsh``
through ``fixtures/fake_xilinx.tcl``, which stubs every Xilinx command they use, records the calls and writes the
files the tools would; small ``vitis_hls``/``vivado_hls``/``vitis-run``/``vivado`` executables on PATH run it, so
the whole ``python -m hls_build bitstream`` flow is exercised end to end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from board.bundle import BOARDS as BUNDLE_BOARDS
from board.bundle import Manifest, TensorSpec, load_bundle, read_manifest, write_manifest
from board.errors import BundleError, ToolMissingError
from hls_build.__main__ import main
from hls_build.boards import BOARDS, RESOURCE_NAMES, UnknownBoardError, board_spec, hls_overrides_for
from hls_build.reports import (
    ReportError,
    parse_csynth_xml,
    parse_key_values,
    parse_utilization_report,
    timing_from_summary,
)
from hls_build.vivado import (
    BitstreamOptions,
    VivadoFlowError,
    block_design_script,
    build_bitstream,
    design_params,
    find_tools,
    fix_generated_project,
    hls_script,
    make_design_params,
    parse_axi_wrapper,
    run_tool,
    tcl_quote,
    vitis_axi_wrapper,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TCLSH = shutil.which("tclsh")
needs_tclsh = pytest.mark.skipif(TCLSH is None, reason="tclsh is not installed (apt install tcl)")
BOARD_IDS = [pytest.param("pynq-z2", id="pynq-z2"), pytest.param("zcu104", id="zcu104")]
MODEL_ID = "tiny_q8_3"


# --- helpers --------------------------------------------------------------------------------------------------------


def make_bundle(root: Path, board: str, model_id: str = MODEL_ID) -> Path:
    """A small but well-formed bundle around hls4ml 1.3's real generated wrapper files (fixtures/hls4ml_project)."""
    bundle = root / "overlays" / board / model_id
    fw = bundle / "hls" / "firmware"
    (fw / "weights").mkdir(parents=True)
    for name in ("myproject_axi.h", "myproject_axi.cpp"):
        shutil.copy(FIXTURES / "hls4ml_project" / name, fw / name)
    for name in ("project.tcl", "design.tcl"):
        shutil.copy(FIXTURES / "hls4ml_project" / name, bundle / "hls" / name)
    (fw / "myproject.cpp").write_text('#include "myproject.h"\n// the network (placeholder)\n')
    (fw / "myproject.h").write_text("// placeholder\n")
    (fw / "weights" / "w2.h").write_text("// weights\n")
    (fw / "weights" / "w2.txt").write_text("0 1 2\n")
    (fw / "libmyproject_csim.so").write_bytes(b"\x7fELF (placeholder)")
    (bundle / "reference.onnx").write_bytes(b"onnx (placeholder)")
    manifest = Manifest(
        model_id=model_id,
        board=board,
        input=TensorSpec("image", [32, 32, 3], "ap_ufixed<8,0>", "uint8"),
        output=TensorSpec("logits", [10], "ap_fixed<16,6>", "int16"),
        preprocessing={"input_scale": 1 / 256},
        emulated=True,
        csim_library="hls/firmware/libmyproject_csim.so",
        csim_entry="myproject_float",
        onnx_reference="reference.onnx",
        dma={
            "ip_name": "hier_0/axi_dma_0",
            "max_transfer_bytes": (1 << 26) - 1,
            "length_width_bits": 26,
            "mm2s_data_width_bits": 8,
            "s2mm_data_width_bits": 16,
        },
        hls={
            "project_name": "myproject",
            "clock_mhz": 100.0,
            "part": "xczu9eg-ffvb1156-2-e",
            "generated_file_fixes": [],
        },
        resources={"estimate": {"kind": "estimated", "LUT": 123}},
        classes=[str(i) for i in range(10)],
    )
    write_manifest(bundle, manifest)
    return bundle


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every file under root: proof that nothing was touched."""
    return {
        p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _unescape(field: str) -> str:
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 1 < len(field):
            out.append({"t": "\t", "n": "\n", "\\": "\\"}.get(field[i + 1], field[i + 1]))
            i += 2
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def read_calls(record: Path) -> list[list[str]]:
    if not record.exists():
        return []
    return [[_unescape(f) for f in line.split("\t")] for line in record.read_text().splitlines()]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Fake Xilinx tools: ``fake.install("vitis_hls", "vivado")`` puts them on PATH; ``fake.calls()`` reads the log."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    record = tmp_path / "xilinx_calls.tsv"

    def install(*names: str) -> None:
        for name in names:
            exe = bin_dir / name
            exe.write_text(f'#!/bin/sh\nexec "{TCLSH}" "{FIXTURES / "fake_xilinx.tcl"}" {name} "$@"\n')
            exe.chmod(0o755)

    def run(tool: str, *args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess:
        cmd = [TCLSH, str(FIXTURES / "fake_xilinx.tcl"), tool, *map(str, args)]
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=os.environ.copy())

    # Only the fake tools and the system's (tclsh, sh): no real Xilinx installation can leak in.
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("FAKE_XILINX_RECORD", str(record))
    monkeypatch.setenv("FAKE_XILINX_FIXTURES", str(FIXTURES))
    for knob in ("FAIL", "NO_TLAST", "IN_BYTES", "OUT_BYTES", "WNS", "NO_BOARD_FILES"):
        monkeypatch.delenv(f"FAKE_XILINX_{knob}", raising=False)
    return SimpleNamespace(install=install, run=run, calls=lambda: read_calls(record), record=record)


def calls_named(calls: list[list[str]], name: str) -> list[list[str]]:
    return [c[1:] for c in calls if c[0] == name]


def properties(calls: list[list[str]]) -> dict[tuple[str, str], str]:
    return {(obj, key): value for obj, key, value in calls_named(calls, "property")}


# --- boards ---------------------------------------------------------------------------------------------------------


def test_board_table_matches_the_targets_and_the_bundle_format():
    assert set(BOARDS) == set(BUNDLE_BOARDS)
    z2, zcu = BOARDS["pynq-z2"], BOARDS["zcu104"]
    assert (z2.part, z2.board_part, z2.ps_ip, z2.hp_port, z2.cpu_arch) == (
        "xc7z020clg400-1", "tul.com.tw:pynq-z2:part0:1.0", "processing_system7", "S_AXI_HP0", "armv7l")  # fmt: skip
    assert (zcu.part, zcu.board_part, zcu.ps_ip, zcu.hp_port, zcu.cpu_arch) == (
        "xczu7ev-ffvc1156-2-e", "xilinx.com:zcu104:part0:1.1", "zynq_ultra_ps_e", "S_AXI_HP0_FPD", "aarch64",
    )  # fmt: skip
    assert z2.budget.as_dict() == {"BRAM_18K": 280, "DSP": 220, "FF": 106_400, "LUT": 53_200, "URAM": 0}
    assert zcu.budget.as_dict() == {"BRAM_18K": 624, "DSP": 1_728, "FF": 460_800, "LUT": 230_400, "URAM": 96}
    assert tuple(z2.budget.as_dict()) == RESOURCE_NAMES
    assert z2.pl_clock_mhz == zcu.pl_clock_mhz == 100.0
    # HP0_FPD is the UltraScale+ PS's slave GP2; the PS7's HP0 has its own switch.
    assert ("PSU__USE__S_AXI_GP2", "1") in zcu.ps_config and ("PCW_USE_S_AXI_HP0", "1") in z2.ps_config


@pytest.mark.parametrize("call", [board_spec, hls_overrides_for, lambda b: make_design_params(b, "m", 8, 16)])
def test_unknown_board_is_a_typed_error_listing_the_supported_ones(call):
    with pytest.raises(UnknownBoardError, match=r"unknown board 'zedboard'; supported boards: pynq-z2, zcu104"):
        call("zedboard")


def test_hls_overrides_name_boards_that_hls4ml_knows():
    import importlib.util

    assert hls_overrides_for("pynq-z2") == {"board": "pynq-z2"}
    assert hls_overrides_for("zcu104") == {"board": "zcu102"}  # hls4ml 1.3 has no zcu104
    spec = importlib.util.find_spec("hls4ml")
    supported = json.loads(
        (Path(spec.origin).parent / "backends" / "vivado_accelerator" / "supported_boards.json").read_text()
    )
    assert {o["board"] for o in map(hls_overrides_for, BOARDS)} <= set(supported)
    assert "zcu104" not in supported


def test_boards_vivado_and_reports_import_neither_hls4ml_nor_tensorflow():
    code = (
        "import sys, hls_build.boards, hls_build.reports, hls_build.vivado; "
        "bad = [m for m in ('hls4ml', 'tensorflow', 'keras', 'qkeras') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout


# --- design parameters: widths from the manifest, not hls4ml's swapped ones -----------------------------------------


@pytest.mark.parametrize("board", BOARD_IDS)
def test_stream_widths_come_from_the_manifest_containers(tmp_path, board):
    bundle = make_bundle(tmp_path, board)
    # hls4ml's own project.tcl in that bundle says the opposite (the known defect).
    text = (bundle / "hls" / "project.tcl").read_text()
    assert "set bit_width_hls_input 16" in text and "set bit_width_hls_output 8" in text
    p = design_params(read_manifest(bundle))
    assert (p.input_bits, p.output_bits, p.mm_bits, p.length_width_bits) == (8, 16, 32, 26)
    assert (p.board.name, p.top, p.dma_ip_name, p.clock_period_ns) == (board, "myproject_axi", "hier_0/axi_dma_0", 10.0)


def test_inconsistent_or_impossible_manifests_are_refused(tmp_path):
    import dataclasses

    m = read_manifest(make_bundle(tmp_path, "pynq-z2"))
    with pytest.raises(BundleError, match="mm2s_data_width_bits is 16"):
        design_params(dataclasses.replace(m, dma={**m.dma, "mm2s_data_width_bits": 16}))
    with pytest.raises(BundleError, match="container 'float64'"):
        design_params(dataclasses.replace(m, output=TensorSpec("logits", [10], "float", "float64")))
    with pytest.raises(BundleError, match="8 to 26"):
        design_params(dataclasses.replace(m, dma={**m.dma, "length_width_bits": 32}))
    with pytest.raises(BundleError, match="<hierarchy>/<cell>"):
        design_params(dataclasses.replace(m, dma={**m.dma, "ip_name": "axi_dma_0"}))
    with pytest.raises(BundleError, match="takes"):
        make_design_params("pynq-z2", "m", 12, 16)


def test_tcl_quoting():
    assert tcl_quote("xc7z020clg400-1") == "xc7z020clg400-1"
    assert tcl_quote("/a b/$x[y]") == '"/a b/\\$x\\[y\\]"'
    assert tcl_quote('say "hi" {now}') == '"say \\"hi\\" \\{now\\}"'


# --- the HLS script -------------------------------------------------------------------------------------------------


@needs_tclsh
@pytest.mark.parametrize("board", BOARD_IDS)
@pytest.mark.parametrize("tool", ["vitis_hls", "vitis-run", "vivado_hls"])
def test_hls_script_synthesizes_the_axi_top_for_the_board_part(fake, tmp_path, board, tool):
    params = make_design_params(board, MODEL_ID, 8, 16)
    sources = [tmp_path / "myproject.cpp", tmp_path / "myproject_axi_vitis.cpp"]
    for s in sources:
        s.write_text("// source\n")
    flavor = "vivado_hls" if tool == "vivado_hls" else "vitis"
    script = tmp_path / "hls.tcl"
    script.write_text(hls_script(params, flavor, tmp_path / "work", sources))
    (tmp_path / "work").mkdir()
    args = ["--mode", "hls", "--tcl", script] if tool == "vitis-run" else ["-f", script]
    res = fake.run(tool, *args)
    assert res.returncode == 0, res.stdout + res.stderr
    calls = fake.calls()
    assert [c[0] for c in calls] == [
        "TOOL", "open_project", "set_top", "add_files", "add_files", "open_solution", "set_part", "create_clock",
        "set_clock_uncertainty", "config_array_partition", "config_compile", "config_schedule", "csynth_design",
        "export_design",
    ]  # fmt: skip
    assert calls_named(calls, "set_part") == [[params.board.part]]
    assert calls_named(calls, "set_top") == [["myproject_axi"]]
    assert calls_named(calls, "open_project") == [["-reset", "myproject_prj"]]
    assert [c[0] for c in calls_named(calls, "add_files")] == [str(s) for s in sources]
    assert calls_named(calls, "create_clock") == [["-period", "10.0", "-name", "default"]]
    solution = calls_named(calls, "open_solution")[0]
    assert ("-flow_target" in solution) == (flavor == "vitis") and "solution1" in solution
    assert calls_named(calls, "export_design") == [["-format", "ip_catalog"]]
    prj = tmp_path / "work" / "myproject_prj" / "solution1"
    assert (prj / "syn" / "report" / "myproject_axi_csynth.xml").is_file()
    assert (prj / "impl" / "ip" / "component.xml").is_file()
    assert "@@overlay: csynth_design" in res.stdout


# --- the block design -----------------------------------------------------------------------------------------------


def _run_block_design(fake, tmp_path: Path, board: str) -> tuple[subprocess.CompletedProcess, list, Path]:
    params = make_design_params(board, MODEL_ID, 8, 16)
    ip_repo = tmp_path / "ip"
    ip_repo.mkdir(exist_ok=True)
    (ip_repo / "component.xml").write_text("<component/>")
    script = tmp_path / "block_design.tcl"
    script.write_text(block_design_script(params, ip_repo, tmp_path / "vivado_project", tmp_path / "out"))
    res = fake.run("vivado", "-mode", "batch", "-nojournal", "-source", script)
    return res, fake.calls(), tmp_path / "out"


@needs_tclsh
@pytest.mark.parametrize("board", BOARD_IDS)
def test_block_design_wires_ps_dma_and_accelerator_for_the_board(fake, tmp_path, board):
    spec = board_spec(board)
    res, calls, out = _run_block_design(fake, tmp_path, board)
    assert res.returncode == 0, res.stdout + res.stderr
    props = properties(calls)
    names = [c[0] for c in calls]

    # Part, board files, PS with the board preset and its HP/master ports switched on, PL clock.
    assert calls_named(calls, "create_project")[0][-2:] == ["-part", spec.part]
    assert props[("overlay", "board_part")] == spec.board_part
    assert ["-type", "ip", "-vlnv", spec.ps_vlnv, spec.ps_cell] in calls_named(calls, "create_bd_cell")
    assert ["-rule", spec.ps_rule, "-config", spec.ps_rule_config, spec.ps_cell] in calls_named(
        calls, "apply_bd_automation"
    )
    for key, value in spec.ps_config:
        assert props[(spec.ps_cell, f"CONFIG.{key}")] == value
    assert props[(spec.ps_cell, f"CONFIG.{spec.pl_clock_property}")] == "100"

    # AXI DMA 7.1: simple mode, 26-bit length, MM2S/S2MM stream widths 8/16 (not swapped), memory map 32.
    dma = "axi_dma_0"
    assert ["-type", "ip", "-vlnv", "xilinx.com:ip:axi_dma:7.1", dma] in calls_named(calls, "create_bd_cell")
    expected = {
        "c_include_sg": "0", "c_sg_include_stscntrl_strm": "0", "c_sg_length_width": "26", "c_include_mm2s": "1",
        "c_include_s2mm": "1", "c_m_axis_mm2s_tdata_width": "8", "c_s_axis_s2mm_tdata_width": "16",
        "c_m_axi_mm2s_data_width": "32", "c_m_axi_s2mm_data_width": "32", "c_addr_width": "32",
    }  # fmt: skip
    assert {k: props[(dma, f"CONFIG.{k}")] for k in expected} == expected

    # Streams: DMA MM2S -> accelerator -> DMA S2MM, after checking TLAST and the width of each.
    intf = calls_named(calls, "connect_bd_intf_net")
    assert [f"{dma}/M_AXIS_MM2S", "myproject_axi_0/in_r"] in intf
    assert ["myproject_axi_0/out_r", f"{dma}/S_AXIS_S2MM"] in intf
    checked = calls_named(calls, "get_property")
    for pin in ("myproject_axi_0/in_r", "myproject_axi_0/out_r"):
        assert ["CONFIG.HAS_TLAST", pin] in checked and ["CONFIG.TDATA_NUM_BYTES", pin] in checked
    # Registers from the PS's master port, DDR through the board's HP port.
    assert [f"{spec.ps_cell}/{spec.ctrl_master_port}", "axi_smc_ctrl/S00_AXI"] in intf
    assert ["axi_smc_ctrl/M00_AXI", f"{dma}/S_AXI_LITE"] in intf
    assert [f"{dma}/M_AXI_MM2S", "axi_smc_mem/S00_AXI"] in intf and [f"{dma}/M_AXI_S2MM", "axi_smc_mem/S01_AXI"] in intf
    assert ["axi_smc_mem/M00_AXI", f"{spec.ps_cell}/{spec.hp_port}"] in intf
    # One clock for everything, from the PS's PL clock; resets from one reset block.
    clock_net = next(c for c in calls_named(calls, "connect_bd_net") if f"{spec.ps_cell}/{spec.pl_clock_pin}" == c[0]
                     and len(c) > 2)  # fmt: skip
    for pin in (spec.ctrl_master_clock_pin, spec.hp_clock_pin):
        assert f"{spec.ps_cell}/{pin}" in clock_net
    assert {"myproject_axi_0/ap_clk", f"{dma}/s_axi_lite_aclk", f"{dma}/m_axi_mm2s_aclk"} <= set(clock_net)
    assert ["rst_pl/peripheral_aresetn", f"{dma}/axi_resetn", "myproject_axi_0/ap_rst_n"] in calls_named(
        calls, "connect_bd_net"
    )

    # The runtime looks the DMA up as the manifest's dma.ip_name.
    assert calls_named(calls, "group_bd_cells") == [["hier_0", dma, "myproject_axi_0"]]
    # Order: validate, wrapper, implementation, reports.
    order = [names.index(n) for n in ("group_bd_cells", "assign_bd_address", "validate_bd_design", "make_wrapper",
                                      "launch_runs", "wait_on_run", "report_utilization")]  # fmt: skip
    assert order == sorted(order)
    assert ["impl_1", "-to_step", "write_bitstream", "-jobs", "2"] in calls_named(calls, "launch_runs")

    # Outputs: .bit and .hwh sharing the model id as stem, reports and the summary.
    bit, hwh = out / f"{MODEL_ID}.bit", out / f"{MODEL_ID}.hwh"
    assert bit.is_file() and hwh.is_file() and bit.stem == hwh.stem == MODEL_ID
    summary = parse_key_values(out / "vivado_summary.txt")
    assert summary["bit"] == bit.name and summary["hwh"] == hwh.name and summary["part"] == spec.part
    assert timing_from_summary(summary) == {"wns_ns": 0.512, "tns_ns": 0.0, "whs_ns": 0.021, "ths_ns": 0.0,
                                            "met": True}  # fmt: skip
    assert parse_utilization_report(out / "utilization.rpt").device is not None


@needs_tclsh
@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"NO_TLAST": "1"}, "has no TLAST", id="no-tlast"),
        pytest.param({"OUT_BYTES": "1"}, "output stream myproject_axi_0/out_r is 8 bits wide", id="swapped-width"),
        pytest.param({"NO_BOARD_FILES": "1"}, "no board files for", id="no-board-files"),
    ],
)
def test_block_design_stops_with_a_clear_error(fake, tmp_path, monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(f"FAKE_XILINX_{key}", value)
    res, calls, out = _run_block_design(fake, tmp_path, "pynq-z2")
    assert res.returncode == 1
    assert message in res.stdout
    assert "launch_runs" not in [c[0] for c in calls]


# --- fixing hls4ml's generated project ------------------------------------------------------------------------------


@needs_tclsh
@pytest.mark.parametrize("board", BOARD_IDS)
def test_fix_generated_project_unswaps_widths_sets_part_and_replaces_design_tcl(fake, tmp_path, board):
    hls = tmp_path / "hls"
    hls.mkdir()
    for name in ("project.tcl", "design.tcl"):
        shutil.copy(FIXTURES / "hls4ml_project" / name, hls / name)
    fixes = fix_generated_project(hls, board=board, model_id=MODEL_ID, input_bits=8, output_bits=16)
    assert len(fixes) == 2
    text = (hls / "project.tcl").read_text()
    assert f'set part "{board_spec(board).part}"' in text
    assert "set bit_width_hls_input 8" in text and "set bit_width_hls_output 16" in text
    design = (hls / "design.tcl").read_text()
    assert "c_s_axis_s2mm_data_width" not in design and "set in_bits 8" in design and "set out_bits 16" in design
    assert fix_generated_project(hls, board=board, model_id=MODEL_ID, input_bits=8, output_bits=16) == []
    # The new design.tcl works where hls4ml's build() runs it: from the project folder, IP in myproject_prj.
    ip = hls / "myproject_prj" / "solution1" / "impl" / "ip"
    ip.mkdir(parents=True)
    (ip / "component.xml").write_text("<component/>")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    res = fake.run("vivado", "-mode", "batch", "-source", hls / "design.tcl", cwd=elsewhere)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (hls / f"{MODEL_ID}.bit").is_file() and (hls / f"{MODEL_ID}.hwh").is_file()
    assert calls_named(fake.calls(), "create_project")[0][:3] == [
        "-force", "project_1", str(hls.resolve() / "myproject_vivado_accelerator")]  # fmt: skip


# --- report parsers -------------------------------------------------------------------------------------------------


def test_vitis_hls_report():
    r = parse_csynth_xml(FIXTURES / "csynth_vitis_pynq-z2.xml")
    assert (r.tool_version, r.top, r.part) == ("2023.1", "myproject_axi", "xc7z020-clg400-1")
    assert (r.target_clock_ns, r.estimated_clock_ns) == (10.0, 8.142)
    assert (r.latency_best_cycles, r.latency_worst_cycles, r.interval_min_cycles, r.interval_max_cycles) == (
        207853, 207853, 200711, 200711)  # fmt: skip
    assert r.resources == {"BRAM_18K": 196, "DSP": 42, "FF": 38154, "LUT": 44617, "URAM": 0}
    assert r.available == BOARDS["pynq-z2"].budget.as_dict()
    streams = r.axi_streams()
    assert {s.prefix: (s.direction, s.tdata_bits, s.has_tlast) for s in streams.values()} == {
        "in_r": ("in", 8, True), "out_r": ("out", 16, True)}  # fmt: skip
    entry = r.to_manifest_entry("Vitis HLS 2023.1 csynth report")
    assert entry["kind"] == "measured" and entry["stage"] == "hls_synthesis" and entry["LUT"] == 44617
    assert entry["latency_cycles"] == {"best": 207853, "worst": 207853}


def test_vivado_hls_report_names_dsps_dsp48e_and_may_not_know_its_latency():
    r = parse_csynth_xml(FIXTURES / "csynth_vivado_hls.xml")
    assert r.tool_version == "2019.2" and r.resources["DSP"] == 42 and r.available["DSP"] == 220
    assert r.latency_best_cycles is None and r.interval_max_cycles is None
    # hls4ml's {data, last} struct under Vivado HLS: TLAST, but no TKEEP/TSTRB.
    assert r.axi_streams()["in_r"].signals == {"TDATA", "TVALID", "TREADY", "TLAST"}


@pytest.mark.parametrize(
    ("board", "used"),
    [
        pytest.param("pynq-z2", {"BRAM_18K": 203, "DSP": 42, "FF": 42907, "LUT": 31245, "URAM": 0}, id="pynq-z2"),
        pytest.param("zcu104", {"BRAM_18K": 196, "DSP": 42, "FF": 41650, "LUT": 29876, "URAM": 0}, id="zcu104"),
    ],
)
def test_vivado_utilization_report(board, used):
    r = parse_utilization_report(FIXTURES / f"utilization_{board}.rpt")
    assert r.used == used  # 101.5 Block RAM Tiles are 203 BRAM_18K
    assert r.available == BOARDS[board].budget.as_dict()
    assert (r.tool_version, r.design_state) == ("2023.1", "Routed")
    assert r.site_types["Block RAM Tile"][0] in (101.5, 98.0)
    entry = r.to_manifest_entry("Vivado 2023.1 report_utilization", timing={"wns_ns": 0.5, "met": True})
    assert entry["kind"] == "measured" and entry["stage"] == "implementation" and entry["timing"]["met"]
    assert all(entry[name] == used[name] for name in RESOURCE_NAMES)


def test_hls_report_check_catches_missing_tlast_and_swapped_widths():
    from hls_build.vivado import check_hls_report

    report = parse_csynth_xml(FIXTURES / "csynth_vitis_zcu104.xml")
    check_hls_report(report, make_design_params("zcu104", MODEL_ID, 8, 16))
    with pytest.raises(VivadoFlowError, match="input stream in_r_TDATA is 8 bits wide"):
        check_hls_report(report, make_design_params("zcu104", MODEL_ID, 16, 8))
    import dataclasses

    no_tlast = dataclasses.replace(report, ports=tuple(p for p in report.ports if p.name != "out_r_TLAST"))
    with pytest.raises(VivadoFlowError, match="output stream out_r has no TLAST"):
        check_hls_report(no_tlast, make_design_params("zcu104", MODEL_ID, 8, 16))


def test_report_parsers_refuse_other_files(tmp_path):
    bad = tmp_path / "bad.rpt"
    bad.write_text("not a report\n")
    with pytest.raises(ReportError):
        parse_utilization_report(bad)
    with pytest.raises(ReportError):
        parse_csynth_xml(bad)
    with pytest.raises(ReportError):
        parse_csynth_xml(tmp_path / "missing.xml")


def test_timing_summary_flags_negative_slack():
    assert timing_from_summary({"wns": "-0.25", "whs": "0.01"})["met"] is False
    assert timing_from_summary({})["met"] is None


# --- the CLI without tools, with bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("present", [pytest.param((), id="none"), pytest.param(("vitis_hls",), id="hls-only")])
def test_missing_tools_exit_2_with_instructions_and_leave_the_bundle_alone(fake, tmp_path, capsys, present):
    bundle = make_bundle(tmp_path, "pynq-z2")
    fake.install(*present)
    before = tree_digest(tmp_path / "overlays")
    work = tmp_path / "work"
    assert main(["bitstream", "--bundle", str(bundle), "--work-dir", str(work)]) == 2
    err = capsys.readouterr().err
    assert "vivado" in err and "settings64.sh" in err and "unchanged" in err
    if not present:
        assert "vitis_hls" in err and "vivado_hls" in err
    assert tree_digest(tmp_path / "overlays") == before
    assert not work.exists()
    with pytest.raises(ToolMissingError, match="vivado"):
        find_tools()


def test_unknown_board_and_missing_bundle_exit_2(tmp_path, capsys):
    bundle = make_bundle(tmp_path, "pynq-z2")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["board"] = "zedboard"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert main(["bitstream", "--bundle", str(bundle), "--work-dir", str(tmp_path / "w")]) == 2
    assert "unknown board 'zedboard'; supported boards: pynq-z2, zcu104" in capsys.readouterr().err
    assert main(["bitstream", "--bundle", str(tmp_path / "nowhere"), "--work-dir", str(tmp_path / "w")]) == 2
    assert "no manifest" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown HLS tool"):
        find_tools("quartus")


def test_scripts_only_needs_no_tools(fake, tmp_path):
    bundle = make_bundle(tmp_path, "zcu104")
    before = tree_digest(bundle)
    work = build_bitstream(bundle, BitstreamOptions(work_dir=tmp_path / "work", scripts_only=True))
    assert work == (tmp_path / "work" / "zcu104" / MODEL_ID).resolve()
    assert "set part xczu7ev-ffvc1156-2-e" in (work / "block_design.tcl").read_text()
    assert (work / "src" / "firmware" / "myproject_axi_vitis.cpp").is_file()
    assert not list((work / "src").rglob("*.so")) and not list((work / "src").rglob("*.txt"))
    assert tree_digest(bundle) == before


def test_scripts_for_logits_narrower_than_their_container(fake, tmp_path):
    """24-bit logits (as hls_build derives them) in a 32-bit container: the AXI DMA streams 32-bit words, so the
    Vitis wrapper widens each logit to its container; Vivado HLS (hls4ml's own wrapper) cannot, and says so."""
    from dataclasses import replace

    from board.bundle import read_manifest, write_manifest

    bundle = make_bundle(tmp_path, "pynq-z2")
    header = bundle / "hls" / "firmware" / "myproject_axi.h"
    header.write_text(header.read_text().replace("fixed<16,6,", "fixed<24,7,"))
    m = read_manifest(bundle)
    dma = {**m.dma, "s2mm_data_width_bits": 32}
    out = replace(m.output, fixed_point="ap_fixed<24,7>", container="int32")
    write_manifest(bundle, replace(m, output=out, dma=dma))
    work = build_bitstream(bundle, BitstreamOptions(work_dir=tmp_path / "work", scripts_only=True))
    cpp = (work / "src" / "firmware" / "myproject_axi_vitis.cpp").read_text()
    assert "typedef ap_axiu<32, 0, 0, 0> axis_out_t;" in cpp and "ap_int<24> code = value.range(23, 0);" in cpp
    assert "set out_bits 32" in (work / "block_design.tcl").read_text()
    with pytest.raises(BundleError, match="24-bit output elements, which the AXI DMA cannot take.*use Vitis HLS"):
        build_bitstream(bundle, BitstreamOptions(work_dir=tmp_path / "w2", scripts_only=True, hls_tool="vivado_hls"))


def test_run_tool_streams_to_the_log_and_stops_a_silent_hang(tmp_path):
    script = "echo '@@overlay: step one'; echo 'ERROR: [Common 17-39] something'; exit 3"
    with pytest.raises(VivadoFlowError, match=r"(?s)exited with status 3.*ERROR: \[Common 17-39\]"):
        run_tool(["sh", "-c", script], tmp_path, tmp_path / "a.log", "tool")
    assert "@@overlay: step one" in (tmp_path / "a.log").read_text()
    with pytest.raises(VivadoFlowError, match="ran past 0.5 s"):
        run_tool(["sh", "-c", "echo started; sleep 30"], tmp_path, tmp_path / "b.log", "tool", timeout_s=0.5)
    run_tool(["sh", "-c", "echo fine"], tmp_path, tmp_path / "c.log", "tool", timeout_s=30)


# --- the whole flow with fake tools ---------------------------------------------------------------------------------


@needs_tclsh
@pytest.mark.parametrize(
    ("board", "tool"),
    [
        pytest.param("pynq-z2", "vitis_hls", id="pynq-z2-vitis_hls"),
        pytest.param("zcu104", "vitis_hls", id="zcu104-vitis_hls"),
        pytest.param("pynq-z2", "vivado_hls", id="pynq-z2-vivado_hls"),
        pytest.param("zcu104", "vitis-run", id="zcu104-vitis-run"),
    ],
)
def test_bitstream_flow_with_fake_tools_updates_the_bundle(fake, tmp_path, capsys, board, tool):
    bundle = make_bundle(tmp_path, board)
    fake.install(tool, "vivado")
    work = tmp_path / "work"
    assert main(["bitstream", "--bundle", str(bundle), "--work-dir", str(work)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == str(bundle.resolve())

    b = load_bundle(bundle, board=board)  # verifies every hash
    m = b.manifest
    assert not m.emulated and m.has_bitstream
    assert (m.bitstream, m.hwh) == (f"{MODEL_ID}.bit", f"{MODEL_ID}.hwh")
    assert Path(m.bitstream).stem == Path(m.hwh).stem == m.model_id
    assert (bundle / m.bitstream).read_bytes() == b"fake bitstream"
    hls_res, impl = m.resources["hls_synthesis"], m.resources["implementation"]
    assert hls_res["kind"] == impl["kind"] == "measured"
    assert m.resources["estimate"] == {"kind": "estimated", "LUT": 123}  # other entries are kept
    expected_impl = parse_utilization_report(FIXTURES / f"utilization_{board}.rpt").used
    assert {k: impl[k] for k in RESOURCE_NAMES} == expected_impl and impl["timing"]["met"] is True
    vitis = tool != "vivado_hls"
    csynth = FIXTURES / ("csynth_vivado_hls.xml" if not vitis else f"csynth_vitis_{board}.xml")
    assert hls_res["LUT"] == parse_csynth_xml(csynth).resources["LUT"]
    assert ("Vitis HLS" if vitis else "Vivado HLS") in hls_res["source"]
    assert m.tool_versions["vivado"] == "2023.1" and tool in m.tool_versions
    assert m.hls["part"] == board_spec(board).part
    assert any("project.tcl" in f for f in m.hls["generated_file_fixes"])
    assert m.hls["vivado_flow"]["hls_tool"] == tool and m.hls["vivado_flow"]["dma_ip_name"] == "hier_0/axi_dma_0"
    for rel in ("vivado/hls.tcl", "vivado/block_design.tcl", "vivado/reports/csynth.xml",
                "vivado/reports/utilization.rpt", "vivado/reports/vivado_summary.txt"):  # fmt: skip
        assert rel in m.files, rel
    assert ("vivado/myproject_axi_vitis.cpp" in m.files) == vitis
    assert "set bit_width_hls_input 8" in (bundle / "hls" / "project.tcl").read_text()
    assert (
        not bundle.with_name(bundle.name + ".partial").exists() and not bundle.with_name(bundle.name + ".old").exists()
    )
    # The HLS run synthesized the Vitis wrapper under Vitis HLS, hls4ml's own under Vivado HLS.
    sources = [c[0] for c in calls_named(fake.calls(), "add_files") if c[0].endswith(".cpp")]
    assert [Path(s).name for s in sources] == [
        "myproject.cpp",
        "myproject_axi_vitis.cpp" if vitis else "myproject_axi.cpp",
    ]
    assert (work / board / MODEL_ID / "hls.log").is_file() and (work / board / MODEL_ID / "vivado.log").is_file()


@needs_tclsh
@pytest.mark.parametrize(
    ("env", "message", "vivado_ran"),
    [
        pytest.param({"FAIL": "launch_runs"}, "launch_runs failed", True, id="implementation-fails"),
        pytest.param({"FAIL": "csynth_design"}, "csynth_design failed", False, id="hls-fails"),
        pytest.param({"NO_TLAST": "1"}, "has no TLAST", False, id="hls-ip-without-tlast"),
        pytest.param({"WNS": "-0.731"}, "--allow-timing-violation", True, id="timing-violation"),
    ],
)
def test_a_failed_flow_exits_1_and_leaves_the_bundle_alone(fake, tmp_path, capsys, monkeypatch, env, message,
                                                           vivado_ran):  # fmt: skip
    bundle = make_bundle(tmp_path, "pynq-z2")
    fake.install("vitis_hls", "vivado")
    for key, value in env.items():
        monkeypatch.setenv(f"FAKE_XILINX_{key}", value)
    before = tree_digest(tmp_path / "overlays")
    assert main(["bitstream", "--bundle", str(bundle), "--work-dir", str(tmp_path / "work")]) == 1
    err = capsys.readouterr().err
    assert message in err and "unchanged" in err
    assert tree_digest(tmp_path / "overlays") == before
    assert ("vivado" in [c[1] for c in fake.calls() if c[0] == "TOOL"]) == vivado_ran


@needs_tclsh
def test_timing_violation_can_be_accepted(fake, tmp_path, monkeypatch, capsys):
    bundle = make_bundle(tmp_path, "zcu104")
    fake.install("vitis_hls", "vivado")
    monkeypatch.setenv("FAKE_XILINX_WNS", "-0.731")
    args = ["bitstream", "--bundle", str(bundle), "--work-dir", str(tmp_path / "work"), "--allow-timing-violation"]
    assert main(args) == 0, capsys.readouterr().err
    timing = read_manifest(bundle).resources["implementation"]["timing"]
    assert timing["met"] is False and timing["wns_ns"] == -0.731


# --- the Vitis wrapper and the HLS C++ of each board ----------------------------------------------------------------


def test_vitis_wrapper_uses_ap_axiu_streams_with_hls4ml_types(tmp_path):
    from hls_build.csim import fix_generated_sources

    fw = tmp_path / "firmware"
    fw.mkdir()
    for name in ("myproject_axi.h", "myproject_axi.cpp"):
        shutil.copy(FIXTURES / "hls4ml_project" / name, fw / name)
    with pytest.raises(BundleError, match="fix_generated_sources"):
        parse_axi_wrapper(fw)  # hls4ml's generic ufixed<...> types are not C++ yet
    fix_generated_sources(tmp_path)
    info = parse_axi_wrapper(fw)
    assert (info.n_in, info.n_out, info.in_bits, info.out_bits, info.in_depth, info.out_depth) == (
        3072, 10, 8, 16, 1024, 1)  # fmt: skip
    cpp = vitis_axi_wrapper(info)
    assert "typedef ap_axiu<8, 0, 0, 0> axis_in_t;" in cpp and "typedef ap_axiu<16, 0, 0, 0> axis_out_t;" in cpp
    assert "void myproject_axi(hls::stream<axis_in_t> &in, hls::stream<axis_out_t> &out)" in cpp
    assert "#pragma HLS INTERFACE ap_ctrl_none port=return" in cpp and "DATA_PACK" not in cpp


def _tiny_model():
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    from training.keras_compat import keras

    q = dict(kernel_quantizer=quantized_bits(8, 3, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1))
    inp = keras.Input((32, 32, 3), name="image")  # an Input named "input" is refused by hls4ml
    x = QConv2D(4, 3, padding="same", name="conv", **q)(inp)
    x = QActivation(quantized_relu(8, 3), name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = QDense(10, name="logits", **q)(x)
    return keras.Model(inp, x)


def _convert(model, board: str, out: Path) -> Path:
    import hls4ml

    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="VivadoAccelerator")
    cfg["LayerName"]["image"]["Precision"] = {"result": "ap_ufixed<8,0>"}
    cfg["LayerName"]["gap"]["Precision"] = {"accum": "ap_fixed<32,16>", "result": "ap_fixed<32,16>"}
    cfg["LayerName"]["logits"]["Precision"]["result"] = "ap_fixed<16,6>"
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=str(out), project_name="myproject", backend="VivadoAccelerator",
        io_type="io_stream", interface="axi_stream", input_type="ap_ufixed<8,0>", output_type="ap_fixed<16,6>",
        clock_period=10.0, **hls_overrides_for(board),
    )  # fmt: skip
    hls_model.write()
    return out


_HARNESS = r"""
// Runs hls4ml's AXI wrapper (array of {data, last}) and the Vitis one (ap_axiu streams) on the same images.
#include <cstdio>
#include <cstdlib>
#include <ap_axi_sdata.h>
#include <hls_stream.h>
#include "myproject_axi.h"

typedef ap_axiu<8, 0, 0, 0> axis_in_t;
typedef ap_axiu<16, 0, 0, 0> axis_out_t;
void myproject_axi(hls::stream<axis_in_t> &in, hls::stream<axis_out_t> &out);

int main() {
    static input_axi_t in[N_IN];
    static output_axi_t out[N_OUT];
    hls::stream<axis_in_t> s_in;
    hls::stream<axis_out_t> s_out;
    const bool tlast[3] = {false, true, true};  // a 2-image "batch" (TLAST on its end), then a single image
    int mismatches = 0, zeros = 0;
    srand(7);
    for (int img = 0; img < 3; img++) {
        for (unsigned i = 0; i < N_IN; i++) {
            unsigned bits = rand() & 0xff;
            bool last = tlast[img] && i == N_IN - 1;
            T_in v;
            v.range(7, 0) = bits;
            in[i] = input_axi_t(v, last);
            axis_in_t pkt;
            pkt.data = bits;
            pkt.keep = 1;
            pkt.strb = 1;
            pkt.last = last;
            s_in.write(pkt);
        }
        myproject_axi(in, out);
        myproject_axi(s_in, s_out);
        for (unsigned j = 0; j < N_OUT; j++) {
            axis_out_t pkt = s_out.read();
            T_out v;
            v.range(15, 0) = pkt.data;
            if (v != out[j].data || pkt.last != out[j].last || pkt.keep != 3 || pkt.strb != 3) mismatches++;
            if (v == 0) zeros++;
            printf("%d", (int)pkt.last);
        }
        printf("\n");
    }
    printf("mismatches=%d zeros=%d left=%d\n", mismatches, zeros, (int)(s_in.size() + s_out.size()));
    return mismatches != 0;
}
"""


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The tiny model converted for each board (no compile)."""
    pytest.importorskip("hls4ml")
    model = _tiny_model()
    root = tmp_path_factory.mktemp("hls4ml")
    return {board: _convert(model, board, root / board) for board in BOARDS}


def test_hls_cpp_does_not_depend_on_the_board(converted):
    a, b = converted["pynq-z2"] / "firmware", converted["zcu104"] / "firmware"
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_zcu104_hls_cpp_compiles_and_the_vitis_wrapper_matches_hls4mls(converted, tmp_path):
    """The zcu104 conversion compiles with g++; the Vitis wrapper gives hls4ml's wrapper's outputs and TLAST."""
    from hls_build.csim import compile_library, fix_generated_sources

    project = converted["zcu104"]
    fix_generated_sources(project)
    fixes = fix_generated_project(project, board="zcu104", model_id="tiny", input_bits=8, output_bits=16)
    assert any("xczu7ev-ffvc1156-2-e" in f for f in fixes)
    lib = compile_library(project, tmp_path / "lib", build_dir=tmp_path / "obj")
    wrapper = tmp_path / "myproject_axi_vitis.cpp"
    wrapper.write_text(vitis_axi_wrapper(parse_axi_wrapper(project / "firmware")))
    (tmp_path / "harness.cpp").write_text(_HARNESS)
    fw = project / "firmware"
    exe = tmp_path / "harness"
    cmd = ["g++", "-std=c++14", "-O1", f"-I{FIXTURES / 'vitis_include'}", f"-I{fw / 'ap_types'}", f"-I{fw}",
           str(tmp_path / "harness.cpp"), str(wrapper), str(lib),
           f"-Wl,-rpath,{lib.parent}", "-o", str(exe)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.strip().splitlines()
    # TLAST only on the last logit of an image whose input carried TLAST; nothing left in the streams.
    assert lines[-4:-1] == ["0" * 10, "0" * 9 + "1", "0" * 9 + "1"]
    assert lines[-1].startswith("mismatches=0 ") and lines[-1].endswith("left=0")
    assert not lines[-1].startswith("mismatches=0 zeros=30")  # the network computed something


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_vitis_wrapper_widens_elements_to_the_containers(converted, tmp_path):
    """A 16-bit logit in a 32-bit container: the word is the logit's code sign-extended (what the runtime reads),
    and the input word's low 8 bits are the pixel. hls4ml's exactly derived logits are often 24 bits wide, which the
    AXI DMA cannot stream as they are."""
    from hls_build.csim import compile_library, fix_generated_sources

    project = converted["zcu104"]
    fix_generated_sources(project)
    fix_generated_project(project, board="zcu104", model_id="tiny", input_bits=8, output_bits=16)
    lib = compile_library(project, tmp_path / "lib", build_dir=tmp_path / "obj")
    info = parse_axi_wrapper(project / "firmware")
    with pytest.raises(ValueError, match="narrower than the elements"):
        vitis_axi_wrapper(info, in_bits=8, out_bits=8)
    cpp = vitis_axi_wrapper(info, in_bits=32, out_bits=32)
    assert "typedef ap_axiu<32, 0, 0, 0> axis_out_t;" in cpp and "ap_int<16> code = value.range(15, 0);" in cpp
    (tmp_path / "w.cpp").write_text(cpp)
    harness = (
        _HARNESS.replace("typedef ap_axiu<8, 0, 0, 0> axis_in_t;", "typedef ap_axiu<32, 0, 0, 0> axis_in_t;")
        .replace("typedef ap_axiu<16, 0, 0, 0> axis_out_t;", "typedef ap_axiu<32, 0, 0, 0> axis_out_t;")
        .replace("pkt.data = bits;", "pkt.data = bits | 0xabcd0000u;  // high bits of the word are ignored")
        .replace(
            "v.range(15, 0) = pkt.data;",
            "v.range(15, 0) = pkt.data.range(15, 0);\n"
            "            if ((ap_int<32>)pkt.data != (ap_int<16>)v.range(15, 0)) mismatches++;  // sign-extended",
        )
        .replace("pkt.keep != 3 || pkt.strb != 3", "pkt.keep != 15 || pkt.strb != 15")
    )
    (tmp_path / "h.cpp").write_text(harness)
    fw = project / "firmware"
    exe = tmp_path / "h"
    cmd = ["g++", "-std=c++14", "-O1", f"-I{FIXTURES / 'vitis_include'}", f"-I{fw / 'ap_types'}", f"-I{fw}",
           str(tmp_path / "h.cpp"), str(tmp_path / "w.cpp"), str(lib),
           f"-Wl,-rpath,{lib.parent}", "-o", str(exe)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("mismatches=0 ") and last.endswith("left=0") and "zeros=30" not in last


# --- with the real tools --------------------------------------------------------------------------------------------


@pytest.mark.vivado
@pytest.mark.skipif(shutil.which("vivado") is None, reason="needs Vivado and Vitis HLS on PATH")
@pytest.mark.parametrize("board", BOARD_IDS)
def test_real_vivado_flow_on_a_tiny_model(converted, tmp_path, board):
    """The whole flow with the real tools on the tiny model (tens of minutes)."""
    from hls_build.csim import fix_generated_sources

    bundle = make_bundle(tmp_path, board, "tiny_real")
    shutil.rmtree(bundle / "hls")
    shutil.copytree(converted[board], bundle / "hls")
    fix_generated_sources(bundle / "hls")
    m = read_manifest(bundle)
    (bundle / "hls" / "firmware" / "libmyproject_csim.so").write_bytes(b"\x7fELF (placeholder)")
    write_manifest(bundle, m)
    build_bitstream(bundle, BitstreamOptions(work_dir=tmp_path / "work", jobs=2))
    m = load_bundle(bundle, board=board).manifest
    assert m.has_bitstream and not m.emulated and (bundle / m.bitstream).stat().st_size > 100_000
    assert m.resources["implementation"]["kind"] == "measured"
    assert m.resources["implementation"]["LUT"] <= board_spec(board).budget.lut
