"""The boards this project builds overlays for: one table, data only.

Everything board-specific that the HLS and Vivado flows, the resource estimates and the runtime need lives in
:data:`BOARDS`: the FPGA part and Vivado board part, the processing system (Zynq-7000 ``processing_system7`` or
Zynq UltraScale+ ``zynq_ultra_ps_e``) with the ports and configuration the block design uses, the PL clock, the
resource budget (``docs/targets.md``) and the CPU. The Tcl that consumes it is in :mod:`hls_build.vivado`.

This module imports neither hls4ml nor TensorFlow: it is cheap to import from anywhere on the host.

hls4ml 1.3 knows ``pynq-z2`` but has no ZCU104 board; :func:`hls_overrides_for` says how to convert for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from board.errors import BoardError

#: Resource names used everywhere (HLS reports, Vivado utilization, estimates, manifest), in this order.
RESOURCE_NAMES = ("BRAM_18K", "DSP", "FF", "LUT", "URAM")


class UnknownBoardError(BoardError, ValueError):
    """A board name that is not in :data:`BOARDS`; the message lists the supported ones."""

    def __init__(self, name: object):
        self.name = name
        super().__init__(f"unknown board {name!r}; supported boards: {', '.join(BOARDS)}")


@dataclass(frozen=True)
class ResourceBudget:
    """What one FPGA offers, in the units the HLS and Vivado reports use.

    Attributes:
        bram_18k: 18 Kb block RAMs (a 36 Kb "Block RAM Tile" counts as two).
        dsp: DSP slices (DSP48E1 / DSP48E2).
        ff: flip-flops (slice / CLB registers).
        lut: look-up tables (slice / CLB LUTs).
        uram: UltraRAM blocks (0 on Zynq-7000).
    """

    bram_18k: int
    dsp: int
    ff: int
    lut: int
    uram: int

    def as_dict(self) -> dict[str, int]:
        """``{"BRAM_18K": ..., "DSP": ..., "FF": ..., "LUT": ..., "URAM": ...}``."""
        return dict(zip(RESOURCE_NAMES, (self.bram_18k, self.dsp, self.ff, self.lut, self.uram)))


@dataclass(frozen=True)
class BoardSpec:
    """One supported board.

    Attributes:
        name: the project's board name (``overlays/<name>/...``, the manifest's ``board``).
        display_name: human name.
        part: FPGA part for ``set_part`` / ``create_project -part``.
        board_part: Vivado board part (needs the board files installed).
        board_files_hint: where to get the board files when Vivado does not have them.
        hls4ml_board: the hls4ml VivadoAccelerator board used for conversion (see :func:`hls_overrides_for`).
        ps_ip: processing-system IP name (``processing_system7`` or ``zynq_ultra_ps_e``).
        ps_vlnv: its VLNV; without a version Vivado takes the one it ships.
        ps_cell: block-design cell name of the PS.
        ps_rule: ``apply_bd_automation`` rule that applies the board preset to the PS.
        ps_rule_config: the rule's ``-config`` value.
        ps_config: ``CONFIG.*`` properties set on the PS after the preset (without the ``CONFIG.`` prefix): which
            AXI ports are enabled.
        pl_clock_property: the PS property that sets the PL clock's frequency in MHz.
        pl_clock_pin: PS pin of the PL clock (clocks the DMA, the accelerator and the interconnects).
        pl_reset_pin: PS pin of the PL reset (active low).
        ctrl_master_port: PS master port that reaches the DMA's AXI-Lite registers.
        ctrl_master_clock_pin: the clock pin of that port.
        hp_port: PS high-performance slave port the DMA reads and writes DDR through.
        hp_clock_pin: the clock pin of that port.
        pl_clock_mhz: default PL (and HLS target) clock.
        budget: the FPGA's resources.
        cpu: the board's processor.
        cpu_arch: ``uname -m`` of the board's Linux.
    """

    name: str
    display_name: str
    part: str
    board_part: str
    board_files_hint: str
    hls4ml_board: str
    ps_ip: str
    ps_vlnv: str
    ps_cell: str
    ps_rule: str
    ps_rule_config: str
    ps_config: tuple[tuple[str, str], ...]
    pl_clock_property: str
    pl_clock_pin: str
    pl_reset_pin: str
    ctrl_master_port: str
    ctrl_master_clock_pin: str
    hp_port: str
    hp_clock_pin: str
    pl_clock_mhz: float
    budget: ResourceBudget
    cpu: str
    cpu_arch: str


PYNQ_Z2 = BoardSpec(
    name="pynq-z2",
    display_name="TUL PYNQ-Z2",
    part="xc7z020clg400-1",
    board_part="tul.com.tw:pynq-z2:part0:1.0",
    board_files_hint=(
        "Vivado does not ship the PYNQ-Z2 board files: copy TUL's pynq-z2 board folder (from the PYNQ-Z2 product "
        "page / the pynq-z2 board-files repository) into <Vivado>/data/boards/board_files/"
    ),
    hls4ml_board="pynq-z2",
    ps_ip="processing_system7",
    ps_vlnv="xilinx.com:ip:processing_system7:5.5",
    ps_cell="processing_system7_0",
    ps_rule="xilinx.com:bd_rule:processing_system7",
    ps_rule_config='make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"',
    ps_config=(
        ("PCW_USE_M_AXI_GP0", "1"),
        ("PCW_USE_S_AXI_HP0", "1"),
        ("PCW_EN_CLK0_PORT", "1"),
        ("PCW_EN_RST0_PORT", "1"),
    ),
    pl_clock_property="PCW_FPGA0_PERIPHERAL_FREQMHZ",
    pl_clock_pin="FCLK_CLK0",
    pl_reset_pin="FCLK_RESET0_N",
    ctrl_master_port="M_AXI_GP0",
    ctrl_master_clock_pin="M_AXI_GP0_ACLK",
    hp_port="S_AXI_HP0",
    hp_clock_pin="S_AXI_HP0_ACLK",
    pl_clock_mhz=100.0,
    budget=ResourceBudget(bram_18k=280, dsp=220, ff=106_400, lut=53_200, uram=0),
    cpu="2x ARM Cortex-A9 650 MHz",
    cpu_arch="armv7l",
)

ZCU104 = BoardSpec(
    name="zcu104",
    display_name="AMD Xilinx ZCU104",
    part="xczu7ev-ffvc1156-2-e",
    board_part="xilinx.com:zcu104:part0:1.1",
    board_files_hint=(
        "install the ZCU104 board files from Vivado's board store (Tools > Vivado Store > Boards, or in Tcl: "
        "xhub::refresh_catalog [xhub::get_xstores xilinx_board_store]; xhub::install [xhub::get_xitems *zcu104*])"
    ),
    # hls4ml 1.3 has no zcu104: zcu102 is its Zynq UltraScale+ board. The HLS C++ it writes does not depend on the
    # board; the part and block design come from this table (hls_build.vivado), not from hls4ml's templates.
    hls4ml_board="zcu102",
    ps_ip="zynq_ultra_ps_e",
    ps_vlnv="xilinx.com:ip:zynq_ultra_ps_e",
    ps_cell="zynq_ultra_ps_e_0",
    ps_rule="xilinx.com:bd_rule:zynq_ultra_ps_e",
    ps_rule_config='apply_board_preset "1"',
    # S_AXI_HP0_FPD is the PS's slave GP2; one FPD master (HPM0) for the registers. The preset also enables HPM1,
    # whose clock would be left unconnected (validate_bd_design error), so it and the LPD master are switched off.
    ps_config=(
        ("PSU__USE__M_AXI_GP0", "1"),
        ("PSU__USE__M_AXI_GP1", "0"),
        ("PSU__USE__M_AXI_GP2", "0"),
        ("PSU__USE__S_AXI_GP2", "1"),
        ("PSU__FPGA_PL0_ENABLE", "1"),
    ),
    pl_clock_property="PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ",
    pl_clock_pin="pl_clk0",
    pl_reset_pin="pl_resetn0",
    ctrl_master_port="M_AXI_HPM0_FPD",
    ctrl_master_clock_pin="maxihpm0_fpd_aclk",
    hp_port="S_AXI_HP0_FPD",
    hp_clock_pin="saxihp0_fpd_aclk",
    pl_clock_mhz=100.0,
    budget=ResourceBudget(bram_18k=624, dsp=1_728, ff=460_800, lut=230_400, uram=96),
    cpu="4x ARM Cortex-A53",
    cpu_arch="aarch64",
)

#: Supported boards by name.
BOARDS: Mapping[str, BoardSpec] = MappingProxyType({b.name: b for b in (PYNQ_Z2, ZCU104)})


def board_spec(name: str) -> BoardSpec:
    """The spec of board ``name``.

    Raises:
        UnknownBoardError: ``name`` is not a supported board.
    """
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise UnknownBoardError(name) from None


def hls_overrides_for(board: str) -> dict[str, str]:
    """Keyword arguments for ``hls4ml.converters.convert_from_keras_model`` that target ``board``.

    hls4ml 1.3's VivadoAccelerator backend only accepts boards from its own ``supported_boards.json`` and always
    resets the part to that board's part (a ``part=`` argument is ignored with a warning). The generated HLS C++
    does not depend on the board (only ``project.tcl``, ``design.tcl`` and the python driver do), so ZCU104 bundles
    are converted as hls4ml's ``zcu102`` and then corrected:

    * record ``board_spec(board).part`` as the manifest's ``hls.part`` (not hls4ml's ``Part``, which is the
      ZCU102's ``xczu9eg-ffvb1156-2-e`` for a ZCU104 conversion);
    * call :func:`hls_build.vivado.fix_generated_project`, which writes the right part and the un-swapped stream
      widths into ``project.tcl`` and replaces hls4ml's ``design.tcl`` with this project's block design.

    Args:
        board: a key of :data:`BOARDS`.

    Returns:
        ``{"board": <hls4ml board name>}``.

    Raises:
        UnknownBoardError: ``board`` is not supported.
    """
    return {"board": board_spec(board).hls4ml_board}
