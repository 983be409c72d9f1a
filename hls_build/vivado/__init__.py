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

The package, one module per job; each imports only modules listed before it (no import circle):

* :mod:`~hls_build.vivado.params`: what to build, checked (:class:`DesignParams`);
* :mod:`~hls_build.vivado.tools`: finding and running the Xilinx tools (:func:`find_tools`, :func:`run_tool`);
* :mod:`~hls_build.vivado.tcl`: the Tcl scripts (:func:`hls_script`, :func:`block_design_script`);
* :mod:`~hls_build.vivado.axi_wrapper`: the Vitis HLS AXI-stream wrapper (:func:`vitis_axi_wrapper`);
* :mod:`~hls_build.vivado.hls4ml_fixes`: fixes to hls4ml's generated project (:func:`fix_generated_project`);
* :mod:`~hls_build.vivado.flow`: the whole flow (:func:`build_bitstream`).
"""

from hls_build.boards import UnknownBoardError
from hls_build.vivado.axi_wrapper import AxiWrapperInfo, parse_axi_wrapper, vitis_axi_wrapper
from hls_build.vivado.flow import BitstreamOptions, FlowFiles, build_bitstream, check_hls_report, prepare_flow
from hls_build.vivado.hls4ml_fixes import bundle_design_tcl, fix_generated_project
from hls_build.vivado.params import (
    BD_NAME,
    DMA_ADDR_WIDTH_BITS,
    DMA_MM_DATA_WIDTH_BITS,
    DMA_STREAM_WIDTHS,
    HLS_SOLUTION,
    DesignParams,
    design_params,
    make_design_params,
)
from hls_build.vivado.tcl import TCL_DIR, TclExpr, block_design_script, hls_script, tcl_list, tcl_quote
from hls_build.vivado.tools import HLS_TOOLS, STEP_MARKER, VivadoFlowError, XilinxTools, find_tools, run_tool

__all__ = [
    "BD_NAME",
    "DMA_ADDR_WIDTH_BITS",
    "DMA_MM_DATA_WIDTH_BITS",
    "DMA_STREAM_WIDTHS",
    "HLS_SOLUTION",
    "HLS_TOOLS",
    "STEP_MARKER",
    "TCL_DIR",
    "AxiWrapperInfo",
    "BitstreamOptions",
    "DesignParams",
    "FlowFiles",
    "TclExpr",
    "UnknownBoardError",
    "VivadoFlowError",
    "XilinxTools",
    "block_design_script",
    "build_bitstream",
    "bundle_design_tcl",
    "check_hls_report",
    "design_params",
    "find_tools",
    "fix_generated_project",
    "hls_script",
    "make_design_params",
    "parse_axi_wrapper",
    "prepare_flow",
    "run_tool",
    "tcl_list",
    "tcl_quote",
    "vitis_axi_wrapper",
]
