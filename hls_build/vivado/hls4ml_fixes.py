"""Fixes to hls4ml's generated project files that a bundle carries (see the package docstring)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from hls_build.vivado.params import HLS_SOLUTION, DesignParams, make_design_params
from hls_build.vivado.tcl import TclExpr, block_design_script

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
