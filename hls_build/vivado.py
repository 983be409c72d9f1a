"""The Vivado flow of an overlay bundle: HLS, block design, bitstream, and the results written into the bundle.

HLS synthesis of the hls4ml accelerator, this project's block design for the bundle's board, implementation to a
bitstream, and the ``.bit``/``.hwh`` and measured resources written back into the bundle.

``build_bitstream(bundle)`` runs, in ``build/vivado/<board>/<model_id>/`` (logs ``hls.log`` and ``vivado.log``):

1. checks that the tools are on PATH -- HLS: ``vitis_hls`` (preferred), ``vitis-run`` (Vitis 2024.2+) or the
   legacy ``vivado_hls``; implementation: ``vivado`` -- and raises :class:`~board.errors.ToolMissingError` before
   anything is written otherwise;
2. copies the bundle's HLS sources, writes ``hls.tcl`` and ``block_design.tcl`` (Tcl bodies in ``hls_build/tcl/``,
   settings from :mod:`hls_build.boards` and the manifest) and, for Vitis HLS, its own AXI-stream wrapper;
3. runs HLS (``csynth_design``, ``export_design -format ip_catalog``), parses ``csynth.xml`` and checks that both
   AXI streams carry TLAST and have the manifest's widths;
4. runs Vivado: PS with the board preset, AXI DMA 7.1 in simple mode (no scatter-gather, ``c_sg_length_width``
   from the manifest, 26), MM2S stream = input container width, S2MM stream = output container width, memory-map
   width 32 (the DMA's minimum), DMA and accelerator grouped as the manifest's ``dma.ip_name`` (``hier_0/axi_dma_0``),
   validation, implementation, ``report_utilization``, and the ``.bit`` + ``.hwh`` sharing the model id as stem;
5. updates the bundle through a staging copy (the old bundle stays until the new one is complete): adds
   ``<model_id>.bit``, ``<model_id>.hwh`` and ``vivado/`` (scripts, wrapper, reports), fixes hls4ml's generated
   ``project.tcl`` / ``design.tcl`` (:func:`fix_generated_project`), and rewrites the manifest (``bitstream``,
   ``hwh``, ``emulated: false``, ``resources`` from the reports with ``kind: measured``, tool versions).

Defects of hls4ml 1.3's generated files that this flow does not inherit (it uses none of hls4ml's Tcl):

* ``project.tcl`` swaps the stream widths (``bit_width_hls_output`` is the input's width and vice versa) and
  ``design.tcl`` then sizes the DMA's memory-map side to the stream width (8 bits is below the DMA's minimum of 32)
  and sets a parameter that does not exist (``c_s_axis_s2mm_data_width``);
* ``design.tcl`` hard-codes the wrapper's path under ``<project>.srcs`` (Vivado 2020.2 writes it under ``.gen``);
* the python driver hard-codes ``hier_0.axi_dma_0`` and ignores its arguments (``hls_build.build`` drops it);
* ``build()`` calls the legacy ``vivado_hls``; this flow prefers Vitis HLS;
* there is no ZCU104 board (see :func:`hls_build.boards.hls_overrides_for`).

TLAST: hls4ml's wrapper ``myproject_axi`` streams a struct ``{data, last}``. Vivado HLS maps struct members named
like AXI4-Stream side channels onto them (``last`` -> TLAST), but Vitis HLS does not: it packs the struct into TDATA
and the IP has no TLAST (hls4ml issue #1244; UG1399 "AXI4-Stream Interfaces with Side-Channels"), so the DMA's S2MM
would never complete. Under Vitis HLS this flow therefore synthesizes :func:`vitis_axi_wrapper` instead, the same
wrapper with ``ap_axiu`` streams (TDATA, TKEEP, TSTRB, TLAST) and the same TLAST rule (TLAST on the last output
element of an image whose input carried TLAST, so one DMA transfer can carry a batch of images).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from board.bundle import Manifest, load_bundle, write_manifest
from board.errors import BoardError, BundleError, ToolMissingError
from hls_build.boards import BoardSpec, UnknownBoardError, board_spec
from hls_build.reports import (
    HlsReport,
    ReportError,
    UtilizationReport,
    find_csynth_xml,
    parse_csynth_xml,
    parse_key_values,
    parse_utilization_report,
    timing_from_summary,
)

log = logging.getLogger(__name__)

TCL_DIR = Path(__file__).resolve().parent / "tcl"
#: AXI DMA 7.1 memory-map data width: its minimum (PG021); the streams are narrower and the DMA packs them.
DMA_MM_DATA_WIDTH_BITS = 32
#: AXI DMA address width: 32 bits reach the DDR of both boards (PYNQ allocates below 4 GiB).
DMA_ADDR_WIDTH_BITS = 32
#: AXI4-Stream widths the AXI DMA accepts (PG021).
DMA_STREAM_WIDTHS = (8, 16, 32, 64, 128, 256, 512, 1024)
HLS_SOLUTION = "solution1"
BD_NAME = "design_1"
#: Marker the Tcl scripts print before each step; the runner shows those lines as progress.
STEP_MARKER = "@@overlay:"
_CONTAINER_BITS = {"uint8": 8, "int8": 8, "uint16": 16, "int16": 16, "uint32": 32, "int32": 32, "float32": 32}
_TOOL_HELP = (
    "Install AMD Vivado with Vitis HLS (the AMD Unified Installer; Vivado/Vitis HLS 2020.2 or later) and make them "
    "visible in this shell: `source <install>/Vivado/<version>/settings64.sh` and, for HLS, "
    "`source <install>/Vitis_HLS/<version>/settings64.sh` (2020.2-2024.1) or "
    "`source <install>/Vitis/<version>/settings64.sh` (2024.2 and later)."
)


class VivadoFlowError(BoardError):
    """HLS or Vivado ran and failed, or produced something unusable; the message holds the log's tail."""


# --- Tcl helpers ----------------------------------------------------------------------------------------------------


class TclExpr(str):
    """A string that goes into a Tcl script as it is (a Tcl expression), not quoted as a literal."""


def tcl_quote(value: object) -> str:
    """``value`` as one Tcl word: bare when it is plain, else double-quoted with Tcl's special characters escaped."""
    if isinstance(value, TclExpr):
        return str(value)
    if isinstance(value, bool):
        value = int(value)
    s = str(value)
    if s and re.fullmatch(r"[A-Za-z0-9_.:/+\-=%@,*]+", s):
        return s
    escaped = re.sub(r'([\\$\[\]"{}])', r"\\\1", s).replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def tcl_list(values: Iterable[object]) -> str:
    """``[list ...]`` of the values, each quoted."""
    return "[list " + " ".join(tcl_quote(v) for v in values) + "]"


def _preamble(title: str, settings: Mapping[str, object]) -> str:
    lines = [
        f"# {title}",
        "# Generated by hls_build.vivado; the body below is hls_build/tcl/. Do not edit by hand.",
        "",
    ]
    for key, value in settings.items():
        if isinstance(value, (list, tuple)):
            lines.append(f"set {key} {tcl_list(value)}")
        else:
            lines.append(f"set {key} {tcl_quote(value)}")
    return "\n".join(lines) + "\n\n"


# --- what to build --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DesignParams:
    """Everything the scripts need about one overlay.

    Attributes:
        board: the target board.
        model_id: bundle name; stem of the ``.bit``/``.hwh``.
        project_name: hls4ml project name (``myproject``); the HLS top is ``<project_name>_axi``.
        input_bits: input stream (MM2S) width: the manifest's input container.
        output_bits: output stream (S2MM) width: the manifest's output container.
        length_width_bits: the DMA's buffer length register width (``c_sg_length_width``).
        clock_mhz: PL clock and HLS target clock.
        hier_name: block-design hierarchy holding the DMA and the accelerator.
        dma_cell: the DMA's cell name inside it.
        ip_cell: the accelerator's cell name inside it.
    """

    board: BoardSpec
    model_id: str
    project_name: str
    input_bits: int
    output_bits: int
    length_width_bits: int
    clock_mhz: float
    hier_name: str
    dma_cell: str
    ip_cell: str

    @property
    def top(self) -> str:
        """The HLS top function (hls4ml's AXI wrapper)."""
        return f"{self.project_name}_axi"

    @property
    def clock_period_ns(self) -> float:
        """HLS target clock period."""
        return round(1000.0 / self.clock_mhz, 6)

    @property
    def mm_bits(self) -> int:
        """The DMA's memory-map data width."""
        return max(DMA_MM_DATA_WIDTH_BITS, self.input_bits, self.output_bits)

    @property
    def dma_ip_name(self) -> str:
        """The DMA's path in the block design and the ``.hwh`` (the manifest's ``dma.ip_name``)."""
        return f"{self.hier_name}/{self.dma_cell}"


def make_design_params(
    board: str,
    model_id: str,
    input_bits: int,
    output_bits: int,
    clock_mhz: float | None = None,
    project_name: str = "myproject",
    dma_ip_name: str = "hier_0/axi_dma_0",
    length_width_bits: int = 26,
) -> DesignParams:
    """Check and assemble :class:`DesignParams`.

    Raises:
        UnknownBoardError: the board is not supported.
        BundleError: a width, name or clock that the DMA or the block design cannot take.
    """
    spec = board_spec(board)
    for what, bits in (("input", input_bits), ("output", output_bits)):
        if bits not in DMA_STREAM_WIDTHS:
            raise BundleError(f"{what} stream width {bits} bits: the AXI DMA takes {DMA_STREAM_WIDTHS}")
    if not 8 <= int(length_width_bits) <= 26:
        raise BundleError(f"DMA length width {length_width_bits} bits: the AXI DMA takes 8 to 26")
    parts = dma_ip_name.split("/")
    if len(parts) != 2 or not all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", p) for p in parts):
        raise BundleError(f"dma.ip_name {dma_ip_name!r} must be '<hierarchy>/<cell>' (e.g. hier_0/axi_dma_0)")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", project_name) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", model_id):
        raise BundleError(f"unusable project name {project_name!r} or model id {model_id!r}")
    clock = float(clock_mhz if clock_mhz is not None else spec.pl_clock_mhz)
    if not 10.0 <= clock <= 500.0:
        raise BundleError(f"clock {clock} MHz is outside 10-500 MHz")
    return DesignParams(
        board=spec,
        model_id=model_id,
        project_name=project_name,
        input_bits=int(input_bits),
        output_bits=int(output_bits),
        length_width_bits=int(length_width_bits),
        clock_mhz=clock,
        hier_name=parts[0],
        dma_cell=parts[1],
        ip_cell=f"{project_name}_axi_0",
    )


def _container_bits(container: str, what: str) -> int:
    try:
        return _CONTAINER_BITS[container]
    except KeyError:
        raise BundleError(f"{what} container {container!r} is not one the DMA streams can carry") from None


def design_params(manifest: Manifest, clock_mhz: float | None = None) -> DesignParams:
    """The :class:`DesignParams` of a bundle, from its manifest.

    The stream widths are the input/output containers' widths; where the manifest's ``dma`` also records them
    (``mm2s_data_width_bits``, ``s2mm_data_width_bits``) they must agree.

    Args:
        manifest: the bundle's manifest.
        clock_mhz: override of the clock (default: the manifest's ``hls.clock_mhz``, else the board's).

    Raises:
        UnknownBoardError: the manifest's board is not supported.
        BundleError: the manifest is inconsistent or asks for something the DMA cannot do.
    """
    in_bits = _container_bits(manifest.input.container, "input")
    out_bits = _container_bits(manifest.output.container, "output")
    for key, bits in (("mm2s_data_width_bits", in_bits), ("s2mm_data_width_bits", out_bits)):
        recorded = manifest.dma.get(key)
        if recorded is not None and int(recorded) != bits:
            raise BundleError(f"manifest dma.{key} is {recorded} but the container is {bits} bits wide")
    return make_design_params(
        board=manifest.board,
        model_id=manifest.model_id,
        input_bits=in_bits,
        output_bits=out_bits,
        clock_mhz=clock_mhz if clock_mhz is not None else manifest.hls.get("clock_mhz"),
        project_name=str(manifest.hls.get("project_name", "myproject")),
        dma_ip_name=str(manifest.dma.get("ip_name", "hier_0/axi_dma_0")),
        length_width_bits=int(manifest.dma.get("length_width_bits", 26)),
    )


# --- scripts --------------------------------------------------------------------------------------------------------


def hls_script(params: DesignParams, flavor: str, work_dir: str | os.PathLike, sources: Sequence[os.PathLike]) -> str:
    """The HLS Tcl script: create the project in ``work_dir``, synthesize ``params.top``, export the IP.

    Args:
        params: the design.
        flavor: ``vitis`` (Vitis HLS, also through ``vitis-run``) or ``vivado_hls``.
        work_dir: the HLS project is created in ``<work_dir>/<project>_prj``.
        sources: the network's C++ and the AXI wrapper (absolute paths).
    """
    if flavor not in ("vitis", "vivado_hls"):
        raise ValueError(f"unknown HLS flavor {flavor!r}")
    settings = {
        "hls_flavor": flavor,
        "work_dir": str(Path(work_dir).resolve()),
        "hls_project_name": f"{params.project_name}_prj",
        "solution": HLS_SOLUTION,
        "top": params.top,
        "sources": [str(Path(s).resolve()) for s in sources],
        "cflags": "-std=c++0x",
        "part": params.board.part,
        "clock_period_ns": params.clock_period_ns,
        "clock_uncertainty": "12.5%",
    }
    title = f"HLS synthesis of {params.model_id} for {params.board.display_name} ({params.board.part})"
    return _preamble(title, settings) + (TCL_DIR / "hls.tcl").read_text()


def block_design_script(
    params: DesignParams,
    ip_repo: str | os.PathLike | TclExpr,
    proj_dir: str | os.PathLike | TclExpr,
    out_dir: str | os.PathLike | TclExpr,
    jobs: int = 2,
    proj_name: str = "overlay",
) -> str:
    """The Vivado Tcl script: block design for ``params.board``, implementation, reports, ``.bit`` and ``.hwh``.

    Args:
        params: the design.
        ip_repo: folder of the exported HLS IP (``<hls project>/solution1/impl/ip``).
        proj_dir: where the Vivado project is created.
        out_dir: receives ``<model_id>.bit``, ``<model_id>.hwh``, ``utilization.rpt``, ``timing_summary.rpt`` and
            ``vivado_summary.txt``.
        jobs: parallel synthesis/implementation jobs (also Vivado's thread limit, at most 8).
        proj_name: Vivado project name.

    Paths may be :class:`TclExpr` (e.g. relative to ``[info script]``); others are made absolute.
    """
    b = params.board

    def path(p: str | os.PathLike | TclExpr) -> str | TclExpr:
        return p if isinstance(p, TclExpr) else str(Path(p).resolve())

    settings: dict[str, object] = {
        "part": b.part,
        "board_part": b.board_part,
        "board_files_hint": b.board_files_hint,
        "ps_ip": b.ps_ip,
        "ps_vlnv": b.ps_vlnv,
        "ps_cell": b.ps_cell,
        "ps_rule": b.ps_rule,
        "ps_rule_config": b.ps_rule_config,
        "ps_config": [item for key, value in b.ps_config for item in (f"CONFIG.{key}", value)],
        "pl_clock_property": b.pl_clock_property,
        "pl_clock_mhz": _fmt_number(params.clock_mhz),
        "pl_clock_pin": b.pl_clock_pin,
        "pl_reset_pin": b.pl_reset_pin,
        "ctrl_master_port": b.ctrl_master_port,
        "ctrl_master_clock_pin": b.ctrl_master_clock_pin,
        "hp_port": b.hp_port,
        "hp_clock_pin": b.hp_clock_pin,
        "ip_repo": path(ip_repo),
        "hls_top": params.top,
        "hier_name": params.hier_name,
        "dma_cell": params.dma_cell,
        "ip_cell": params.ip_cell,
        "in_bits": params.input_bits,
        "out_bits": params.output_bits,
        "mm_bits": params.mm_bits,
        "length_width": params.length_width_bits,
        "addr_width": DMA_ADDR_WIDTH_BITS,
        "proj_name": proj_name,
        "proj_dir": path(proj_dir),
        "bd_name": BD_NAME,
        "out_dir": path(out_dir),
        "out_stem": params.model_id,
        "jobs": int(jobs),
        "max_threads": max(1, min(int(jobs), 8)),
    }
    title = f"Vivado block design and bitstream of {params.model_id} for {b.display_name} ({b.part})"
    return _preamble(title, settings) + (TCL_DIR / "block_design.tcl").read_text()


def _fmt_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


# --- the AXI-stream wrapper for Vitis HLS ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AxiWrapperInfo:
    """What hls4ml's generated AXI wrapper says about the streams (``<project>_axi.h`` / ``.cpp``).

    Attributes:
        n_in: input elements per image.
        n_out: output elements per image.
        t_in: C++ type of one input element on the stream (``ap_ufixed<8,0,AP_TRN,AP_WRAP,0>``).
        t_out: C++ type of one output element.
        in_bits: width of ``t_in``.
        out_bits: width of ``t_out``.
        in_depth: depth of the FIFO between the input loop and the network.
        out_depth: depth of the FIFO between the network and the output loop.
    """

    n_in: int
    n_out: int
    t_in: str
    t_out: str
    in_bits: int
    out_bits: int
    in_depth: int
    out_depth: int


def parse_axi_wrapper(firmware_dir: str | os.PathLike, project_name: str = "myproject") -> AxiWrapperInfo:
    """Read the stream sizes and element types from hls4ml's ``<project>_axi.h`` and ``<project>_axi.cpp``.

    Raises:
        BundleError: the files are missing or not in the form hls4ml 1.3 writes for ``axi_stream``.
    """
    fw = Path(firmware_dir)
    try:
        header = (fw / f"{project_name}_axi.h").read_text()
        source = (fw / f"{project_name}_axi.cpp").read_text()
    except OSError as exc:
        raise BundleError(f"hls4ml's AXI wrapper is missing: {exc}") from exc

    def find(pattern: str, text: str, what: str) -> str:
        m = re.search(pattern, text)
        if not m:
            raise BundleError(f"{fw}: cannot find {what} in hls4ml's AXI wrapper")
        return m.group(1).strip()

    t_in = find(r"typedef\s+(.+?)\s+T_in\s*;", header, "T_in")
    t_out = find(r"typedef\s+(.+?)\s+T_out\s*;", header, "T_out")
    for t in (t_in, t_out):
        if not t.startswith("ap_"):
            raise BundleError(f"{fw}: {t!r} is not an ap_ type; run hls_build.csim.fix_generated_sources first")

    def width(t: str) -> int:
        return int(find(r"<\s*(\d+)", t, f"the width of {t}"))

    def depth(var: str, default: int) -> int:
        m = re.search(rf"#pragma\s+HLS\s+STREAM\s+variable={var}\s+depth=(\d+)", source)
        return int(m.group(1)) if m else default

    return AxiWrapperInfo(
        n_in=int(find(r"N_IN\s*=\s*(\d+)", header, "N_IN")),
        n_out=int(find(r"N_OUT\s*=\s*(\d+)", header, "N_OUT")),
        t_in=t_in,
        t_out=t_out,
        in_bits=width(t_in),
        out_bits=width(t_out),
        in_depth=depth("in_local", 1024),
        out_depth=depth("out_local", 1),
    )


def vitis_axi_wrapper(info: AxiWrapperInfo, project_name: str = "myproject") -> str:
    """C++ of the accelerator's top function for Vitis HLS: hls4ml's wrapper with ``ap_axiu`` streams.

    Same name (``<project>_axi``), same element types and conversions, same TLAST rule as hls4ml's wrapper, but
    the streams are ``hls::stream<ap_axiu<W,0,0,0>>`` so that Vitis HLS gives them TLAST (and TKEEP/TSTRB, driven
    all-ones), and the "this image carried TLAST" flag goes from the input process to the output process through a
    small FIFO instead of a variable shared across the dataflow region.
    """
    p = project_name
    return f"""\
// Top function of the accelerator for Vitis HLS; generated by hls_build.vivado from hls4ml's {p}_axi.h/.cpp.
// Vitis HLS gives an AXI4-Stream a TLAST only for ap_axiu/hls::axis element types, not for hls4ml's
// struct {{data, last}} (which Vivado HLS maps by member name), so the streams are ap_axiu here. Behaviour is
// hls4ml's: each image is N_IN elements in and N_OUT out; TLAST is asserted on an image's last output element
// when any of its input elements carried TLAST (a batch sent as one DMA transfer comes back as one packet).
#include <ap_axi_sdata.h>
#include <hls_stream.h>

#include "{p}.h"

static const unsigned N_IN = {info.n_in};
static const unsigned N_OUT = {info.n_out};
typedef {info.t_in} T_in;
typedef {info.t_out} T_out;
typedef ap_axiu<{info.in_bits}, 0, 0, 0> axis_in_t;
typedef ap_axiu<{info.out_bits}, 0, 0, 0> axis_out_t;

static void {p}_axi_read(hls::stream<axis_in_t> &in, hls::stream<input_t> &in_local, hls::stream<bool> &last_q) {{
    bool is_last = false;
read_input:
    for (unsigned i = 0; i < N_IN / input_t::size; ++i) {{
        #pragma HLS PIPELINE
        input_t ctype;
        for (unsigned j = 0; j < input_t::size; j++) {{
            axis_in_t pkt = in.read();
            T_in value;
            value.range({info.in_bits - 1}, 0) = pkt.data;
            ctype[j] = typename input_t::value_type(value);
            is_last |= (pkt.last == 1);
        }}
        in_local.write(ctype);
    }}
    last_q.write(is_last);
}}

static void {p}_axi_write(hls::stream<result_t> &out_local, hls::stream<bool> &last_q, hls::stream<axis_out_t> &out) {{
    const bool is_last = last_q.read();
write_output:
    for (unsigned i = 0; i < N_OUT / result_t::size; ++i) {{
        #pragma HLS PIPELINE
        result_t ctype = out_local.read();
        for (unsigned j = 0; j < result_t::size; j++) {{
            T_out value = T_out(ctype[j]);
            axis_out_t pkt;
            pkt.data = value.range({info.out_bits - 1}, 0);
            pkt.keep = -1;
            pkt.strb = -1;
            pkt.last = (is_last && (i * result_t::size + j == N_OUT - 1)) ? 1 : 0;
            out.write(pkt);
        }}
    }}
}}

void {p}_axi(hls::stream<axis_in_t> &in, hls::stream<axis_out_t> &out) {{
    #pragma HLS INTERFACE axis port=in
    #pragma HLS INTERFACE axis port=out
    #pragma HLS INTERFACE ap_ctrl_none port=return
    #pragma HLS DATAFLOW

    hls::stream<input_t> in_local("input_1");
    hls::stream<result_t> out_local("output_1");
    hls::stream<bool> last_q("last_q");
    #pragma HLS STREAM variable=in_local depth={info.in_depth}
    #pragma HLS STREAM variable=out_local depth={info.out_depth}
    #pragma HLS STREAM variable=last_q depth=4

    {p}_axi_read(in, in_local, last_q);
    {p}(in_local, out_local);
    {p}_axi_write(out_local, last_q, out);
}}
"""


# --- fixing hls4ml's generated project ------------------------------------------------------------------------------


def bundle_design_tcl(params: DesignParams) -> str:
    """The block-design script that replaces hls4ml's ``design.tcl`` in a bundle's ``hls/`` folder.

    Paths are relative to the script: the IP is the one hls4ml's ``build_prj.tcl`` exports
    (``<project>_prj/solution1/impl/ip``), the Vivado project goes to ``<project>_vivado_accelerator/`` and the
    ``.bit``/``.hwh``/reports next to the script.
    """
    here = "[file dirname [file normalize [info script]]]"
    return block_design_script(
        params,
        ip_repo=TclExpr(f"[file join {here} {params.project_name}_prj {HLS_SOLUTION} impl ip]"),
        proj_dir=TclExpr(f"[file join {here} {params.project_name}_vivado_accelerator]"),
        out_dir=TclExpr(here),
        proj_name="project_1",
    )


def fix_generated_project(
    hls_dir: str | os.PathLike,
    *,
    board: str,
    model_id: str,
    input_bits: int,
    output_bits: int,
    clock_mhz: float | None = None,
    project_name: str = "myproject",
    dma_ip_name: str = "hier_0/axi_dma_0",
    length_width_bits: int = 26,
) -> list[str]:
    """Fix the board-level files hls4ml 1.3 generates, in place; returns what was changed (idempotent).

    * ``project.tcl``: the part becomes the board's (hls4ml writes the ZCU102's for a ZCU104 conversion) and the
      stream widths are un-swapped (hls4ml writes the input's width as ``bit_width_hls_output`` and vice versa).
    * ``design.tcl``: replaced by this project's block design (:func:`bundle_design_tcl`): the board's PS, DMA
      widths from the containers, a DMA memory-map width the DMA accepts, the wrapper found under ``.gen`` or
      ``.srcs``, TLAST and width checks on the accelerator's streams.

    Call it from ``build_bundle`` right after ``hls_model.write()``; ``input_bits``/``output_bits`` are the
    manifest's container widths (8 and 16 for ``ap_ufixed<8,0>`` in, ``ap_fixed<16,6>`` out).

    Raises:
        UnknownBoardError: unknown board.
        BundleError: widths or names the design cannot take.
    """
    params = make_design_params(
        board, model_id, input_bits, output_bits, clock_mhz, project_name, dma_ip_name, length_width_bits
    )
    hls_dir = Path(hls_dir)
    fixes = []
    project_tcl = hls_dir / "project.tcl"
    if project_tcl.is_file():
        text = project_tcl.read_text()
        new = re.sub(r'(?m)^set part ".*"$', f'set part "{params.board.part}"', text)
        new = re.sub(r"(?m)^set bit_width_hls_input .*$", f"set bit_width_hls_input {params.input_bits}", new)
        new = re.sub(r"(?m)^set bit_width_hls_output .*$", f"set bit_width_hls_output {params.output_bits}", new)
        if new != text:
            project_tcl.write_text(new)
            fixes.append(
                f"project.tcl: part {params.board.part}; stream widths un-swapped "
                f"(input {params.input_bits} bits, output {params.output_bits} bits)"
            )
    design_tcl = hls_dir / "design.tcl"
    if design_tcl.is_file():
        new = bundle_design_tcl(params)
        if design_tcl.read_text() != new:
            design_tcl.write_text(new)
            fixes.append(f"design.tcl: replaced by this project's {params.board.name} block design (hls_build.vivado)")
    return fixes


# --- tools ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class XilinxTools:
    """The tools found on PATH.

    Attributes:
        hls_name: ``vitis_hls``, ``vitis-run`` or ``vivado_hls``.
        hls_path: its path.
        hls_flavor: ``vitis`` or ``vivado_hls`` (which wrapper and Tcl variant to use).
        vivado_path: path of ``vivado``.
    """

    hls_name: str
    hls_path: str
    hls_flavor: str
    vivado_path: str

    def hls_command(self, script: Path) -> list[str]:
        """Command line that runs an HLS Tcl script."""
        if self.hls_name == "vitis-run":
            return [self.hls_path, "--mode", "hls", "--tcl", str(script)]
        return [self.hls_path, "-f", str(script)]

    def vivado_command(self, script: Path) -> list[str]:
        """Command line that runs a Vivado Tcl script in batch mode."""
        return [self.vivado_path, "-mode", "batch", "-nojournal", "-notrace", "-source", str(script)]


#: HLS front ends in order of preference: (executable, flavor).
HLS_TOOLS = (("vitis_hls", "vitis"), ("vitis-run", "vitis"), ("vivado_hls", "vivado_hls"))


def find_tools(hls_tool: str = "auto") -> XilinxTools:
    """Find the HLS tool and Vivado on PATH.

    Args:
        hls_tool: ``auto`` (the first of ``vitis_hls``, ``vitis-run``, ``vivado_hls``) or one of those names.

    Raises:
        ToolMissingError: a needed tool is not on PATH; the message says what to install and source.
        ValueError: ``hls_tool`` is not a known name.
    """
    names = [n for n, _ in HLS_TOOLS]
    if hls_tool != "auto" and hls_tool not in names:
        raise ValueError(f"unknown HLS tool {hls_tool!r}; choose auto or one of {', '.join(names)}")
    candidates = [(n, f) for n, f in HLS_TOOLS if hls_tool in ("auto", n)]
    hls = next(((n, shutil.which(n), f) for n, f in candidates if shutil.which(n)), None)
    vivado = shutil.which("vivado")
    missing = []
    if hls is None:
        missing.append("an HLS tool (" + " or ".join(n for n, _ in candidates) + ")")
    if vivado is None:
        missing.append("vivado")
    if missing:
        raise ToolMissingError(
            f"the Vivado flow needs Xilinx tools on PATH and did not find {' and '.join(missing)}. {_TOOL_HELP}"
        )
    assert hls is not None and vivado is not None
    return XilinxTools(hls_name=hls[0], hls_path=str(hls[1]), hls_flavor=hls[2], vivado_path=vivado)


_PROGRESS = re.compile(
    r"^(ERROR|CRITICAL WARNING)|Waiting for \w+ to finish|\b\w+_1 finished|launch_runs|write_bitstream completed"
    r"|Finished (C synthesis|synthesizing|Generating)|HLS 200-111",
)


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop a tool started by :func:`run_tool` and everything it started (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def run_tool(
    argv: Sequence[str], cwd: Path, log_path: Path, what: str, verbose: bool = False, timeout_s: float | None = None
) -> None:
    """Run a Xilinx tool, writing its output to ``log_path`` and showing progress lines as it goes.

    Lines the scripts mark with :data:`STEP_MARKER`, errors, critical warnings and the run launcher's messages are
    logged at INFO/WARNING; with ``verbose`` every line is.

    Raises:
        VivadoFlowError: the tool exited non-zero or ran past ``timeout_s``; the message quotes its errors and the
            tail of the log.
    """
    log.info("%s: %s (log: %s)", what, " ".join(argv), log_path)
    tail: deque[str] = deque(maxlen=30)
    errors: list[str] = []
    start = time.monotonic()
    with log_path.open("w") as out:
        # Its own process group: the tools are shell wrappers around the real binaries, and a stop must reach those.
        proc = subprocess.Popen(
            list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            start_new_session=True,
        )  # fmt: skip
        assert proc.stdout is not None
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            _kill_group(proc)

        # A watchdog, so that a tool that hangs without printing is stopped too.
        watchdog = threading.Timer(timeout_s, stop) if timeout_s is not None else None
        if watchdog is not None:
            watchdog.daemon = True
            watchdog.start()
        try:
            for line in proc.stdout:
                out.write(line)
                line = line.rstrip("\n")
                tail.append(line)
                if line.startswith("ERROR") and len(errors) < 10:
                    errors.append(line)
                if STEP_MARKER in line:
                    log.info("%s: %s", what, line.split(STEP_MARKER, 1)[1].strip())
                elif verbose or _PROGRESS.search(line):
                    level = logging.WARNING if line.startswith(("ERROR", "CRITICAL")) else logging.INFO
                    log.log(level, "%s: %s", what, line)
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            rc = proc.wait()
            if watchdog is not None:
                watchdog.cancel()
    elapsed = time.monotonic() - start
    if timed_out.is_set() or rc != 0:
        why = f"ran past {timeout_s:g} s and was stopped" if timed_out.is_set() else f"exited with status {rc}"
        shown = "\n".join([*errors, "--- last lines of the log ---", *tail] if errors else tail)
        raise VivadoFlowError(f"{what} {why} after {elapsed:.0f} s; full log: {log_path}\n{shown}")
    log.info("%s finished in %.0f s", what, elapsed)


# --- the flow -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BitstreamOptions:
    """How to run the Vivado flow.

    Attributes:
        work_dir: root of the work folders (``<work_dir>/<board>/<model_id>/``).
        jobs: parallel Vivado jobs (and thread limit); keep low on shared machines.
        hls_tool: ``auto``, ``vitis_hls``, ``vitis-run`` or ``vivado_hls``.
        clock_mhz: clock override (default: the manifest's ``hls.clock_mhz``).
        allow_timing_violation: accept a design whose worst slack is negative (default: fail).
        scripts_only: write the scripts and sources, run nothing (no tools needed).
        verbose: show every line of the tools' output.
        timeout_s: stop a tool that runs longer (None: no limit).
    """

    work_dir: str | os.PathLike = "build/vivado"
    jobs: int = 2
    hls_tool: str = "auto"
    clock_mhz: float | None = None
    allow_timing_violation: bool = False
    scripts_only: bool = False
    verbose: bool = False
    timeout_s: float | None = None


@dataclass(frozen=True)
class FlowFiles:
    """The work folder of one run and the files in it."""

    root: Path
    sources: Path
    hls_tcl: Path
    vivado_tcl: Path
    wrapper: Path
    hls_project: Path
    vivado_project: Path
    out: Path

    @property
    def ip_repo(self) -> Path:
        """Where HLS exports the IP."""
        return self.hls_project / HLS_SOLUTION / "impl" / "ip"


def prepare_flow(bundle_root: Path, params: DesignParams, flavor: str, options: BitstreamOptions) -> FlowFiles:
    """Write the work folder: the HLS sources (copied from the bundle), the wrapper, ``hls.tcl``, ``block_design.tcl``.

    The bundle is only read.
    """
    root = (Path(options.work_dir) / params.board.name / params.model_id).resolve()
    src = root / "src"
    for old in (src, root / "out"):
        if old.exists():
            shutil.rmtree(old)
    root.mkdir(parents=True, exist_ok=True)
    firmware = src / "firmware"
    # The sources only: not the compiled C-simulation library nor its text weights.
    shutil.copytree(bundle_root / "hls" / "firmware", firmware, ignore=shutil.ignore_patterns("*.so", "*.o", "*.txt"))
    from hls_build.csim import fix_generated_sources  # numpy + ctypes only; kept out of import time

    fix_generated_sources(src, params.project_name)
    info = parse_axi_wrapper(firmware, params.project_name)
    for what, bits, expected in (
        ("input", info.in_bits, params.input_bits),
        ("output", info.out_bits, params.output_bits),
    ):
        if bits != expected:
            raise BundleError(
                f"hls4ml's wrapper streams {bits}-bit {what} elements but the manifest's {what} container is "
                f"{expected} bits"
            )
    if flavor == "vitis":
        wrapper = firmware / f"{params.project_name}_axi_vitis.cpp"
        wrapper.write_text(vitis_axi_wrapper(info, params.project_name))
    else:
        wrapper = firmware / f"{params.project_name}_axi.cpp"
    files = FlowFiles(
        root=root,
        sources=src,
        hls_tcl=root / "hls.tcl",
        vivado_tcl=root / "block_design.tcl",
        wrapper=wrapper,
        hls_project=root / f"{params.project_name}_prj",
        vivado_project=root / "vivado_project",
        out=root / "out",
    )
    files.hls_tcl.write_text(hls_script(params, flavor, root, [firmware / f"{params.project_name}.cpp", wrapper]))
    files.vivado_tcl.write_text(
        block_design_script(params, files.ip_repo, files.vivado_project, files.out, jobs=options.jobs)
    )
    return files


def check_hls_report(report: HlsReport, params: DesignParams) -> None:
    """The synthesized IP must stream one input and one output, each with TLAST and the manifest's width.

    Ports are matched by direction and suffix (``*_TDATA``, ``*_TLAST``), not by full name, which differs between
    HLS releases and between hls4ml's struct and ``ap_axiu`` streams.

    Raises:
        VivadoFlowError: it does not (e.g. Vitis HLS on hls4ml's own wrapper: no TLAST).
    """
    axis = [p for p in report.ports if p.protocol.lower() == "axis"]
    if not axis:
        log.warning("%s lists no AXI-stream ports; the block design will check the streams instead", report.path)
        return
    for direction, bits, what in (("in", params.input_bits, "input"), ("out", params.output_bits, "output")):
        tdata = [p for p in axis if p.direction == direction and p.name.endswith("_TDATA")]
        tlast = [p for p in axis if p.direction == direction and p.name.endswith("_TLAST")]
        if len(tdata) != 1:
            raise VivadoFlowError(
                f"{report.path}: expected one {what} AXI stream, found TDATA ports {[p.name for p in tdata]}"
            )
        if not tlast:
            raise VivadoFlowError(
                f"{report.path}: the {what} stream {tdata[0].name[: -len('_TDATA')]} has no TLAST; the DMA's S2MM "
                "would never complete"
            )
        if tdata[0].bits != bits:
            raise VivadoFlowError(
                f"{report.path}: the {what} stream {tdata[0].name} is {tdata[0].bits} bits wide, the manifest's "
                f"{what} container {bits} bits"
            )


def _hls_tool_label(tools: XilinxTools, report: HlsReport) -> str:
    name = "Vivado HLS" if tools.hls_flavor == "vivado_hls" else "Vitis HLS"
    return f"{name} {report.tool_version or '(unknown version)'}"


def build_bitstream(bundle_root: str | os.PathLike, options: BitstreamOptions | None = None) -> Path:
    """Run the Vivado flow for a bundle and write the bitstream and measured resources into it.

    Args:
        bundle_root: ``overlays/<board>/<model_id>``.
        options: how to run.

    Returns:
        The bundle folder (updated), or with ``scripts_only`` the work folder holding the scripts.

    Raises:
        BundleError: the bundle is missing, modified or inconsistent.
        UnknownBoardError: the bundle's board is not supported.
        ToolMissingError: HLS or Vivado is not on PATH (nothing written anywhere).
        VivadoFlowError: a tool failed, or the result is unusable (no TLAST, timing not met, ...); the bundle is
            left as it was.
    """
    options = options or BitstreamOptions()
    bundle_root = Path(bundle_root).resolve()
    manifest = load_bundle(bundle_root).manifest
    params = design_params(manifest, options.clock_mhz)
    if options.scripts_only:
        flavor = "vivado_hls" if options.hls_tool == "vivado_hls" else "vitis"
        files = prepare_flow(bundle_root, params, flavor, options)
        log.info("scripts written to %s: run `vitis_hls -f %s` then `vivado -mode batch -source %s` there",
                 files.root, files.hls_tcl.name, files.vivado_tcl.name)  # fmt: skip
        return files.root
    tools = find_tools(options.hls_tool)
    log.info(
        "Vivado flow for %s on %s (%s): HLS %s, Vivado %s",
        params.model_id, params.board.display_name, params.board.part, tools.hls_path, tools.vivado_path,
    )  # fmt: skip
    files = prepare_flow(bundle_root, params, tools.hls_flavor, options)
    times: dict[str, float] = {}

    t = time.perf_counter()
    run_tool(tools.hls_command(files.hls_tcl), files.root, files.root / "hls.log", tools.hls_name,
             options.verbose, options.timeout_s)  # fmt: skip
    times["hls"] = time.perf_counter() - t
    try:
        csynth = find_csynth_xml(files.hls_project / HLS_SOLUTION, params.top)
        hls_report = parse_csynth_xml(csynth)
    except ReportError as exc:
        raise VivadoFlowError(f"HLS finished but its report is unusable: {exc}") from exc
    check_hls_report(hls_report, params)
    if not (files.ip_repo / "component.xml").is_file():
        raise VivadoFlowError(f"HLS finished but exported no IP ({files.ip_repo / 'component.xml'} is missing)")

    t = time.perf_counter()
    run_tool(tools.vivado_command(files.vivado_tcl), files.root, files.root / "vivado.log", "vivado",
             options.verbose, options.timeout_s)  # fmt: skip
    times["vivado"] = time.perf_counter() - t
    try:
        summary = parse_key_values(files.out / "vivado_summary.txt")
        utilization = parse_utilization_report(files.out / "utilization.rpt")
    except ReportError as exc:
        raise VivadoFlowError(f"Vivado finished but its reports are unusable: {exc}") from exc
    bit, hwh = files.out / f"{params.model_id}.bit", files.out / f"{params.model_id}.hwh"
    for f in (bit, hwh):
        if not f.is_file() or f.stat().st_size == 0:
            raise VivadoFlowError(f"Vivado finished but {f} is missing or empty")
    timing = timing_from_summary(summary)
    if timing["met"] is False and not options.allow_timing_violation:
        raise VivadoFlowError(
            f"the design misses timing at {params.clock_mhz:g} MHz (WNS {timing['wns_ns']} ns, WHS "
            f"{timing['whs_ns']} ns; {files.out / 'timing_summary.rpt'}): lower the clock (--clock-mhz) or accept "
            "it with --allow-timing-violation"
        )
    return _update_bundle(bundle_root, manifest, params, tools, files, hls_report, utilization, summary, timing, times)


def _update_bundle(
    bundle_root: Path,
    manifest: Manifest,
    params: DesignParams,
    tools: XilinxTools,
    files: FlowFiles,
    hls_report: HlsReport,
    utilization: UtilizationReport,
    summary: dict[str, str],
    timing: dict[str, Any],
    times: dict[str, float],
) -> Path:
    """Write the results into a staging copy of the bundle, verify it, and swap it in."""
    staging = bundle_root.with_name(bundle_root.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(bundle_root, staging, ignore=shutil.ignore_patterns("__pycache__"))
    try:
        bit_rel, hwh_rel = f"{params.model_id}.bit", f"{params.model_id}.hwh"
        shutil.copy2(files.out / bit_rel, staging / bit_rel)
        shutil.copy2(files.out / hwh_rel, staging / hwh_rel)
        vivado_dir = staging / "vivado"
        if vivado_dir.exists():
            shutil.rmtree(vivado_dir)
        (vivado_dir / "reports").mkdir(parents=True)
        shutil.copy2(files.hls_tcl, vivado_dir / "hls.tcl")
        shutil.copy2(files.vivado_tcl, vivado_dir / "block_design.tcl")
        if files.wrapper.name.endswith("_vitis.cpp"):
            shutil.copy2(files.wrapper, vivado_dir / files.wrapper.name)
        reports = {
            "csynth.xml": Path(hls_report.path),
            "utilization.rpt": files.out / "utilization.rpt",
            "timing_summary.rpt": files.out / "timing_summary.rpt",
            "vivado_summary.txt": files.out / "vivado_summary.txt",
        }
        for name, src in reports.items():
            if src.is_file():
                shutil.copy2(src, vivado_dir / "reports" / name)
        fixes = fix_generated_project(
            staging / "hls",
            board=params.board.name,
            model_id=params.model_id,
            input_bits=params.input_bits,
            output_bits=params.output_bits,
            clock_mhz=params.clock_mhz,
            project_name=params.project_name,
            dma_ip_name=params.dma_ip_name,
            length_width_bits=params.length_width_bits,
        )
        hls_label = _hls_tool_label(tools, hls_report)
        vivado_version = summary.get("vivado_version") or utilization.tool_version or "unknown"
        resources = dict(manifest.resources)
        resources["hls_synthesis"] = hls_report.to_manifest_entry(
            f"{hls_label} csynth report (vivado/reports/csynth.xml)"
        )
        resources["implementation"] = utilization.to_manifest_entry(
            f"Vivado {vivado_version} report_utilization, {utilization.design_state or 'implemented'} design "
            "(vivado/reports/utilization.rpt)",
            timing={**timing, "clock_mhz": params.clock_mhz},
        )
        previous_fixes = list(manifest.hls.get("generated_file_fixes", []))
        hls = {
            **manifest.hls,
            "part": params.board.part,
            "generated_file_fixes": previous_fixes + [f for f in fixes if f not in previous_fixes],
            "vivado_flow": {
                "hls_tool": tools.hls_name,
                "hls_top_source": f"vivado/{files.wrapper.name}"
                if files.wrapper.name.endswith("_vitis.cpp")
                else f"hls/firmware/{files.wrapper.name}",
                "clock_mhz": params.clock_mhz,
                "board_part": summary.get("board_part", params.board.board_part),
                "hls_ip": summary.get("hls_ip"),
                "dma_ip_name": params.dma_ip_name,
                "seconds": {k: round(v, 1) for k, v in times.items()},
                "built_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            },
        }
        tool_versions = {**manifest.tool_versions, tools.hls_name: hls_report.tool_version or "unknown",
                         "vivado": vivado_version}  # fmt: skip
        updated = dataclasses.replace(
            manifest,
            bitstream=bit_rel,
            hwh=hwh_rel,
            emulated=False,
            resources=resources,
            hls=hls,
            tool_versions=tool_versions,
        )
        write_manifest(staging, updated)
        load_bundle(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = bundle_root.with_name(bundle_root.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    os.replace(bundle_root, old)
    os.replace(staging, bundle_root)
    shutil.rmtree(old)
    log.info("bundle %s now carries %s and %s", bundle_root, bit_rel, hwh_rel)
    return bundle_root


__all__ = [
    "BitstreamOptions",
    "DesignParams",
    "TclExpr",
    "UnknownBoardError",
    "VivadoFlowError",
    "XilinxTools",
    "block_design_script",
    "build_bitstream",
    "bundle_design_tcl",
    "design_params",
    "find_tools",
    "fix_generated_project",
    "hls_script",
    "make_design_params",
    "parse_axi_wrapper",
    "vitis_axi_wrapper",
]
