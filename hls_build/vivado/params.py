"""What to build: the design parameters of a bundle (board, stream widths, DMA, clock), checked."""

from __future__ import annotations

import re
from dataclasses import dataclass

from board.bundle import Manifest
from board.errors import BundleError
from hls_build.boards import BoardSpec, board_spec

#: AXI DMA 7.1 memory-map data width: its minimum (PG021); the streams are narrower and the DMA packs them.
DMA_MM_DATA_WIDTH_BITS = 32
#: AXI DMA address width: 32 bits reach the DDR of both boards (PYNQ allocates below 4 GiB).
DMA_ADDR_WIDTH_BITS = 32
#: AXI4-Stream widths the AXI DMA accepts (PG021).
DMA_STREAM_WIDTHS = (8, 16, 32, 64, 128, 256, 512, 1024)
HLS_SOLUTION = "solution1"
BD_NAME = "design_1"
_CONTAINER_BITS = {"uint8": 8, "int8": 8, "uint16": 16, "int16": 16, "uint32": 32, "int32": 32, "float32": 32}


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
