"""The cost model: resources and cycles of one dataflow process or one FIFO, and hls4ml's rules it relies on.

Public for the planner (:mod:`hls_build.planner`), which re-costs single layers at candidate settings:
:func:`conv_cost`, :func:`dense_cost`, :func:`batchnorm_cost`, :func:`batchnorm_ii`, :func:`layer_cost`,
:func:`fifo_cost` and :func:`finish_resources`. The rules and constants are described in ``hls_build/README.md``
("What is estimated, and how"); the figures fitted to published designs are in ``hls_build/calibration_fit.json``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from board.fixed_point import FixedPoint
from hls_build.boards import RESOURCE_NAMES
from hls_build.estimate.graph import Layer, Stream

#: The calibration on published designs (``python -m hls_build calibrate --write``): the fitted LUT/FF factors, the
#: discrete constants, the csynth -> post-synthesis ratios, the error bands and the board wrapper. The one source of
#: every fitted figure the estimate uses (no hand-kept calibration elsewhere).
FIT_FILE = Path(__file__).resolve().parent.parent / "calibration_fit.json"
_BRAM18_SHAPES = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))
#: LUT/FF categories of the cost model: multiply-accumulate arithmetic (multipliers, adders), data selects (the
#: multiplexers of a Resource kernel's reuse loop), other datapath logic (element-wise operators, pooling,
#: conversions), control (per process and per FIFO: loop counters, FSM, handshakes; does not grow with the data
#: width), storage bits (registers, SRLs).
PART_KEYS = ("mac", "select", "logic", "control", "storage")
_UNIT_FACTORS = dict.fromkeys(PART_KEYS, 1.0)


# ------------------------------------------------------------------------------------------------- coefficients
@dataclass(frozen=True)
class Coefficients:
    """The model's constants: rules from public sources (defaults here) and the figures fitted on published designs.

    The defaults are the raw, uncalibrated model (factors 1, no post-synthesis ratio); :func:`load_coefficients`
    fills the fitted fields from ``calibration_fit.json``.

    Attributes:
        lut_factors: csynth LUT = sum over ``PART_KEYS`` of factor * that category's operator count (fitted).
        ff_factors: the same for FF (fitted).
        post_synthesis_ratio: per resource, Vivado's synthesized figure over the csynth figure (geometric mean of
            the published pairs); empty: none applied (the csynth-level figures).
        lut_per_mult_bit: LUTs of a fabric multiplier per operand bit product (``a*b``): an 18x18 LUT multiplier
            takes 365 or 401 LUTs in Vivado (hls4ml issue #99; mean 383 / 324 bit products = 1.18).
        dsp_min_operand_bits: a product uses DSP48 slices when both operands are at least this wide (used when
            ``dsp_min_sum_bits`` is 0).
        dsp_min_sum_bits: when > 0, replaces the rule above: a product uses DSP48 slices when its operands are
            together at least this wide (``a + b``; fitted on published csynth DSP counts).
        fifo_srl_max_bits: Vitis HLS ``config_storage fifo -auto_srl_max_bits`` (default 1024, UG1399).
        fifo_srl_max_depth: Vitis HLS ``-auto_srl_max_depth`` (default 2, UG1399).
        vivado_hls_fifo_srl_max_depth: Vivado HLS keeps FIFOs up to this depth in SRLs (published csynth FIFO tables
            of the hls4ml tutorial: depth 16 in SRLs, 36 and deeper in BRAM).
        conv_cycles_per_input: cycles of the (unpipelined) line-buffer pixel loop per input pixel, Resource (fitted
            per HLS tool).
        conv_latency_cycles_per_input: least cycles per input pixel of a Latency-strategy convolution (its pixel
            loop runs at II = max(RF, this); fitted per HLS tool).
        mac_pipeline_depth: extra cycles of one matrix-multiply call beyond its RF iterations (fitted per HLS tool).
        reuse_loop_ii: cycles per iteration of the Resource kernel's ``ReuseLoop`` (1 = pipelined at II=1 as the
            pragma asks; fitted per HLS tool).
        layer_control_lut: LUTs of one dataflow process's control (FSM, handshakes; structure of the templates).
        layer_control_ff: FFs of one dataflow process's control.
        conv_control_lut: extra LUTs of the line-buffer counters of a convolution.
        conv_control_ff: extra FFs of those counters.
        source: where the fitted fields come from (for labels).
    """

    lut_factors: dict[str, float] = field(default_factory=lambda: dict(_UNIT_FACTORS))
    ff_factors: dict[str, float] = field(default_factory=lambda: dict(_UNIT_FACTORS))
    post_synthesis_ratio: dict[str, float] = field(default_factory=dict)
    lut_per_mult_bit: float = 1.18
    dsp_min_operand_bits: int = 11
    dsp_min_sum_bits: int = 0
    fifo_srl_max_bits: int = 1024
    fifo_srl_max_depth: int = 2
    vivado_hls_fifo_srl_max_depth: int = 16
    conv_cycles_per_input: int = 3
    conv_latency_cycles_per_input: int = 1
    mac_pipeline_depth: int = 7
    reuse_loop_ii: int = 1
    layer_control_lut: int = 40
    layer_control_ff: int = 40
    conv_control_lut: int = 200
    conv_control_ff: int = 160
    source: str = "uncalibrated"

    def csynth_level(self) -> Coefficients:
        """The same constants without the post-synthesis ratios (figures as an HLS csynth report shows them)."""
        return replace(self, post_synthesis_ratio={})


def load_fit(path: str | Path | None = None) -> dict[str, Any] | None:
    """The committed calibration (``calibration_fit.json``), or None when there is none."""
    path = Path(path) if path is not None else FIT_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def coefficients_from_fit(fit: Mapping[str, Any], hls_tool: str | None = "vitis") -> Coefficients:
    """The coefficients a calibration fit (``calibration_fit.json``'s content) gives for ``hls_tool``.

    The interval constants are fitted per HLS tool (``vitis``, ``vivado_hls``); a tool the fit has none for takes
    the Vitis ones.
    """
    consts = fit.get("constants", {})
    intervals = consts.get("interval", {})
    tool = intervals.get(hls_tool or "vitis") or intervals.get("vitis") or {}
    known = set(Coefficients.__dataclass_fields__)
    ratios = (fit.get("post_synthesis") or {}).get("ratios") or {}
    coef = fit.get("coefficients", {})
    return Coefficients(
        lut_factors={k: float(coef.get("LUT", {}).get(k, 1.0)) for k in PART_KEYS},
        ff_factors={k: float(coef.get("FF", {}).get(k, 1.0)) for k in PART_KEYS},
        post_synthesis_ratio={r: float(v) for r, v in ratios.items() if v},
        dsp_min_sum_bits=int(consts.get("dsp_min_sum_bits", 0)),
        source=f"{FIT_FILE.name} ({len(fit.get('designs', []))} published designs)",
        **{k: v for k, v in tool.items() if k in known},
    )


def load_coefficients(hls_tool: str | None = "vitis", path: str | Path | None = None) -> Coefficients:
    """The calibrated coefficients (``calibration_fit.json``) for ``hls_tool``; the raw model's when there is none."""
    fit = load_fit(path)
    if fit is None:
        return Coefficients()
    return coefficients_from_fit(fit, hls_tool)


def calibration_bands(path: str | Path | None = None) -> dict[str, Any]:
    """The calibration's error bands and board wrapper, as every estimate states them.

    Returns:
        ``{"band_pct": csynth leave-one-out p90 |error| per resource, "post_synthesis_band_pct": the band of the
        post-synthesis prediction, "board_wrapper": resources of the published block design around the
        accelerator, "board_wrapper_source": its design, "n_designs"}``; empty dicts without a fit.
    """
    fit = load_fit(path) or {}
    wrapper = fit.get("board_wrapper") or {}
    return {
        "band_pct": dict(fit.get("band_pct") or {}),
        "post_synthesis_band_pct": dict(fit.get("post_synthesis_band_pct") or fit.get("band_pct") or {}),
        "board_wrapper": dict(wrapper.get("resources") or {}),
        "board_wrapper_source": wrapper.get("design"),
        "n_designs": len(fit.get("designs", [])),
    }


def calibration_summary(path: str | Path | None = None) -> str:
    """One line for the ESTIMATE label: what the model was calibrated on and its error band."""
    fit = load_fit(path)
    if not fit:
        return "uncalibrated (no hls_build/calibration_fit.json: run `python -m hls_build calibrate --write`)"
    loo = fit["summary"]["csynth_leave_one_out"]
    post = fit.get("post_synthesis_band_pct") or {}
    errs = ", ".join(f"{r} {loo[r]['median_abs_pct']}/{post.get(r)} %" for r in ("LUT", "FF", "BRAM_18K", "DSP"))
    return (f"calibrated on {len(fit['designs'])} published hls4ml designs (hls_build/calibration_fit.json); "
            f"leave-one-out median |error| / band used: {errs}")  # fmt: skip


# -------------------------------------------------------------------------------------------- hls4ml's rules
def valid_reuse_factors(n_in: int, n_out: int) -> list[int]:
    """hls4ml 1.3's valid ReuseFactors of an ``n_in x n_out`` matrix multiply (``FPGABackend``'s rule)."""
    out = []
    total = n_in * n_out
    for rf in range(1, total + 1):
        if total % rf:
            continue
        multfactor = min(n_in, rf)
        multiplier_limit = math.ceil(total / multfactor)
        ok = (multiplier_limit % n_out == 0) or (rf >= n_in)
        ok = ok and ((rf % n_in == 0) or (rf < n_in))
        if ok:
            out.append(rf)
    return out


def closest_reuse_factor(n_in: int, n_out: int, rf: int) -> int:
    """The ReuseFactor hls4ml uses when ``rf`` is not valid (the closest valid one, the smaller on a tie)."""
    valid = valid_reuse_factors(n_in, n_out)
    if rf in valid:
        return rf
    return min(valid, key=lambda v: (abs(v - rf), v))


def bram18_count(depth: int, width: int) -> int:
    """RAMB18 blocks for a memory of ``depth`` words of ``width`` bits (cheapest tiling of the RAMB18 shapes)."""
    if depth <= 0 or width <= 0:
        return 0
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in _BRAM18_SHAPES)


def dsp_family(part: str | None) -> str:
    """``DSP48E1`` (7-series, Zynq-7000) or ``DSP48E2`` (UltraScale(+))."""
    p = (part or "").lower()
    return "DSP48E1" if re.match(r"xc7", p) else "DSP48E2"


def dsp_per_product(a_bits: int, b_bits: int, family: str = "DSP48E1") -> int:
    """DSP slices of one ``a x b`` multiplication (DSP48E1 25x18, DSP48E2 27x18 signed multipliers)."""
    big, small = (25, 18) if family == "DSP48E1" else (27, 18)
    return min(
        math.ceil(a_bits / big) * math.ceil(b_bits / small),
        math.ceil(b_bits / big) * math.ceil(a_bits / small),
    )


# ------------------------------------------------------------------------------------------------- the model
@dataclass
class LayerCost:
    """Estimated cost of one dataflow process.

    Attributes:
        name: layer name.
        op: its kind.
        label: what the table prints after the name (class, RF, strategy).
        resources: ``{"BRAM_18K", "DSP", "FF", "LUT", "URAM"}``.
        cycles: cycles per image (the process's interval).
        fill_cycles: cycles from its first input to its first output (for the latency).
        detail: how the figures were obtained (multipliers, kernel, weight ROM shape, ...).
        csynth: the same process's figures at csynth level (what an HLS report would show), set by
            :func:`hls_build.estimate.estimate_design`; ``resources`` then holds the post-synthesis prediction.
    """

    name: str
    op: str
    label: str
    resources: dict[str, float]
    cycles: int
    fill_cycles: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    csynth: dict[str, float] = field(default_factory=dict)


#: Internal keys of a process's raw cost: LUT/FF of multiply-accumulate logic (multipliers, lane adders, adder
#: trees, their pipeline registers), of control (per process and FIFO) and of storage (registers, SRLs) kept apart
#: from the rest (``LUT``/``FF``: element-wise datapath logic), so that each category takes its own fitted factor
#: (:func:`finish_resources`).
FF_STORAGE, LUT_STORAGE, FF_MAC, LUT_MAC = "FF_storage", "LUT_storage", "FF_mac", "LUT_mac"
FF_CTRL, LUT_CTRL, LUT_SELECT = "FF_control", "LUT_control", "LUT_select"
PARTS = (FF_STORAGE, LUT_STORAGE, FF_MAC, LUT_MAC, FF_CTRL, LUT_CTRL, LUT_SELECT)


def zero_resources() -> dict[str, float]:
    """A resource dict of zeros, with the internal LUT/FF parts (storage, MAC logic) kept apart."""
    return {r: 0.0 for r in (*RESOURCE_NAMES, *PARTS)}


def raw_parts(r: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """LUT and FF of a raw cost split into the categories of ``PART_KEYS``."""
    return {
        "LUT": {
            "mac": r.get(LUT_MAC, 0.0),
            "logic": r.get("LUT", 0.0),
            "control": r.get(LUT_CTRL, 0.0),
            "storage": r.get(LUT_STORAGE, 0.0),
        },
        "FF": {
            "mac": r.get(FF_MAC, 0.0),
            "logic": r.get("FF", 0.0),
            "control": r.get(FF_CTRL, 0.0),
            "storage": r.get(FF_STORAGE, 0.0),
        },
    }


def finish_resources(r: Mapping[str, float], k: Coefficients) -> dict[str, float]:
    """Resource names only, calibrated: LUT = ratio * sum(factor * category), FF likewise; BRAM/DSP times their ratio.

    The factors give the csynth-level figure; ``k.post_synthesis_ratio`` (empty for :meth:`Coefficients.csynth_level`)
    turns it into the predicted post-synthesis figure. Linear in ``r``, so per-process figures add up to the total.
    """
    out = {name: r.get(name, 0.0) for name in RESOURCE_NAMES}
    parts = raw_parts(r)
    for res, factors in (("LUT", k.lut_factors), ("FF", k.ff_factors)):
        out[res] = sum(factors.get(c, 1.0) * v for c, v in parts[res].items())
    for res, ratio in k.post_synthesis_ratio.items():
        if res in out:
            out[res] *= ratio
    return out


def uses_dsp(a_bits: int, b_bits: int, k: Coefficients) -> bool:
    """Whether HLS binds an ``a x b`` product to DSP48 slices (else LUT fabric), by the coefficients' rule."""
    if k.dsp_min_sum_bits > 0:
        return a_bits + b_bits >= k.dsp_min_sum_bits
    return min(a_bits, b_bits) >= k.dsp_min_operand_bits


def binds_to_dsp(a_bits: int, b_bits: int, k: Coefficients, impl: str | None = None) -> bool:
    """Whether an ``a x b`` product is in DSP48 slices.

    As bound (``hls_build.bind``: ``dsp`` or ``fabric``), else by the HLS tool's own rule (:func:`uses_dsp`).
    """
    if impl is None:
        return uses_dsp(a_bits, b_bits, k)
    if impl not in ("dsp", "fabric"):
        raise ValueError(f"multiplier binding {impl!r} is not dsp or fabric")
    return impl == "dsp"


def _mults(
    n: int, a_bits: int, b_bits: int, k: Coefficients, family: str, constant: bool = False, impl: str | None = None
) -> dict[str, float]:
    """``n`` multipliers of ``a x b`` bits.

    DSP48 slices (their registers are inside the slice) or fabric with a product register. A constant operand
    (the ``b_bits`` weight, :func:`const_mult_lut`) makes a fabric multiplier a few shifted adds. ``impl`` is a
    binding (``dsp``/``fabric``, :mod:`hls_build.bind`); None leaves it to
    the HLS tool's rule. One product per DSP48: two 8-bit products packed into one DSP48E2 are not emitted by
    ``hls_build``, so not modeled.
    """
    r = zero_resources()
    if n <= 0:
        return r
    if binds_to_dsp(a_bits, b_bits, k, impl):
        r["DSP"] = n * dsp_per_product(a_bits, b_bits, family)
    else:
        r[LUT_MAC] = n * (const_mult_lut(a_bits, b_bits) if constant else k.lut_per_mult_bit * a_bits * b_bits)
        r[FF_MAC] = n * (a_bits + b_bits)
    return r


def const_mult_lut(a_bits: int, b_bits: int) -> float:
    """LUTs of an ``a``-bit variable times a ``b``-bit constant in fabric: shifted copies of the variable added.

    A constant written in canonical signed digits has about ``(b + 1) / 3`` non-zero digits on average (a random
    ``b``-bit constant), so the product is that many shifted copies of the ``a``-bit input summed: one fewer adder,
    each about ``a + b/2`` bits wide (one LUT per bit on a carry chain). A power of two costs nothing.
    """
    adders = max(0, math.ceil((b_bits + 1) / 3) - 1)
    return float(adders * (a_bits + math.ceil(b_bits / 2)))


def adder_tree_bits(n_terms: float, n_trees: int, product_bits: int, accum_bits: int) -> float:
    """Adder bits of ``n_trees`` trees that each sum ``n_terms`` products: LUTs on carry chains, one per bit.

    Level ``l`` of a tree has ``ceil(n / 2^l)`` adders whose operands carry ``product_bits + l`` significant bits
    (the sum of ``2^l`` products), never more than the accumulator: the HLS tool sizes each adder by the range of
    its operands, so the leaves are narrower than the accumulator type they are declared with.
    """
    n = max(1.0, n_terms)
    bits, level, width = 0.0, 1, float(n)
    while width > 1.0:
        width = math.ceil(width / 2)
        bits += width * min(accum_bits, product_bits + level)
        level += 1
    return n_trees * bits


def add_resources(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """The element-wise sum of two resource dicts."""
    keys = set(a) | set(b)
    return {r: a.get(r, 0.0) + b.get(r, 0.0) for r in keys}


def _matmul_cost(
    layer: Layer,
    n_in: int,
    n_out: int,
    rf: int,
    strategy: str,
    k: Coefficients,
    family: str,
    multiplier: str | None = None,
) -> tuple[dict[str, float], int, dict[str, Any]]:
    """A ``dense_resource`` / ``dense_latency`` kernel and its result conversion: resources, call cycles, detail.

    ``multiplier``: the products' binding (``dsp``/``fabric``); None keeps the firmware's (``layer.detail``).
    """
    impl = multiplier if multiplier is not None else layer.detail.get("multiplier")
    wa = layer.types["in"].width
    ww = layer.types.get("weight", FixedPoint(16, 6, True)).width
    aw = layer.types.get("accum", FixedPoint(max(wa + ww, 16), 8, True)).width
    # A depthwise kernel (nnet_depthwise_product.h) multiplies each of its n_in window elements once.
    total = n_in if layer.detail.get("depthwise") else n_in * n_out
    r = zero_resources()
    detail: dict[str, Any] = {"n_in": n_in, "n_out": n_out, "reuse_factor": rf, "strategy": strategy}
    tree_levels = max(1, math.ceil(math.log2(max(n_in, 2))))
    if rf == 1:
        # Fully unrolled (either strategy): every weight is a compile-time constant, so the zero weights vanish
        # (``n_zeros`` of the config), the fabric multipliers are constant-coefficient ones and each output is an
        # adder tree over its non-zero products.
        nonzero = max(1, total - layer.n_zeros)
        r = add_resources(r, _mults(nonzero, wa, ww, k, family, constant=True, impl=impl))
        r[LUT_MAC] += adder_tree_bits(nonzero / n_out, n_out, wa + ww, aw)
        r[FF_MAC] += n_out * aw * math.ceil(tree_levels / 4)  # pipeline registers every few adder-tree levels
        if strategy == "resource":
            r[FF_STORAGE] += n_out * aw  # accumulators
            cycles = k.reuse_loop_ii + k.mac_pipeline_depth
            detail.update(kernel="rf_leq_nin", multipliers=nonzero)
        else:
            cycles = 1 + k.mac_pipeline_depth + tree_levels
            detail.update(kernel="latency", multipliers=nonzero)
    elif strategy == "resource":
        rf_eff = min(rf, total)
        lanes = math.ceil(total / rf)
        r = add_resources(r, _mults(lanes, wa, ww, k, family, impl=impl))
        rom_bram = bram18_count(rf_eff, lanes * ww)
        r["BRAM_18K"] += rom_bram
        r[FF_STORAGE] += lanes * ww  # ROM output register
        detail["weight_rom"] = {"depth": rf_eff, "width_bits": lanes * ww, "BRAM_18K": rom_bram}
        mux_bits = n_in * wa + (n_out * aw if rf > n_in else 0)
        r[LUT_MAC] += lanes * aw  # lane adders
        r[LUT_SELECT] += mux_bits / 4.0  # data/accumulator select (4:1 per LUT6)
        r[FF_MAC] += lanes * aw  # product-to-adder pipeline registers
        r[FF_STORAGE] += n_out * aw  # accumulators
        cycles = rf_eff * k.reuse_loop_ii + k.mac_pipeline_depth
        detail.update(kernel="rf_leq_nin" if rf <= n_in else "rf_gt_nin_rem0", multipliers=lanes)
    else:
        nonzero = total - layer.n_zeros
        lanes = max(1, math.ceil(total / rf) - layer.n_zeros // rf)
        r = add_resources(r, _mults(min(lanes, max(nonzero, 1)), wa, ww, k, family, impl=impl))
        r[LUT_MAC] += math.ceil(rf / 64) * lanes * ww  # weights indexed by the pipelined loop: a ROM in LUTs
        r[LUT_MAC] += lanes * aw  # adder tree
        r[FF_MAC] += n_out * aw * math.ceil(tree_levels / 4)  # pipeline registers every few adder-tree levels
        cycles = rf + k.mac_pipeline_depth + tree_levels
        detail.update(kernel="latency", multipliers=lanes)
    detail["multiplier_kind"] = "DSP48" if binds_to_dsp(wa, ww, k, impl) else "LUT"
    detail["multiplier_binding"] = impl or "HLS default"
    detail["product_bits"] = [wa, ww]
    cast_lut, cast_ff = _result_cast(layer, n_in, n_out, rf, strategy)
    r[LUT_MAC] += cast_lut
    r[FF_STORAGE] += cast_ff
    detail["result_conversion"] = "in the reuse loop" if cast_ff else "after the loop, all outputs at once"
    return r, cycles, detail


def conv_cost(
    layer: Layer, rf: int, strategy: str, k: Coefficients, family: str, multiplier: str | None = None
) -> LayerCost:
    """A Conv2D / PointwiseConv2D process (line buffer, window, kernel) at ReuseFactor ``rf`` and ``strategy``.

    Resources are before :func:`finish_resources` (internal LUT/FF parts kept apart). ``multiplier`` binds the
    products (``dsp``/``fabric``; None: the firmware's binding).
    """
    a = layer.attrs
    n_in, n_out = layer.mult_size  # type: ignore[misc]
    r, call_cycles, detail = _matmul_cost(layer, n_in, n_out, rf, strategy, k, family, multiplier)
    wa = layer.types["in"].width
    fh, fw, c = a["filt_height"], a["filt_width"], a["n_chan"]
    in_w, in_px, out_px = a["in_width"], a["in_height"] * a["in_width"], a["out_height"] * a["out_width"]
    if fh > 1:  # ap_shift_reg line buffers -> SRL32
        r[LUT_STORAGE] += (fh - 1) * c * wa * math.ceil(in_w / 32)
    r[FF_STORAGE] += fh * fw * c * wa  # kernel window (registers); the output pack feeds the FIFO directly
    r[LUT_CTRL] += k.conv_control_lut + k.layer_control_lut
    r[FF_CTRL] += k.conv_control_ff + k.layer_control_ff
    if strategy == "resource":
        cycles = in_px * k.conv_cycles_per_input + out_px * call_cycles
        per_in = cycles / max(in_px, 1)
    else:
        per_in = max(rf, k.conv_latency_cycles_per_input)
        cycles = in_px * per_in + call_cycles
    first = ((fh - 1) * in_w + fw) * per_in + call_cycles
    kind = "DepthwiseConv2D" if layer.detail.get("depthwise") else "Conv2D"
    label = f"{kind} {fh}x{fw} RF {rf} {strategy.capitalize()}{_bound_label(detail)}"
    return LayerCost(layer.name, layer.op, label, r, int(cycles), int(first), detail)


def _bound_label(detail: dict[str, Any]) -> str:
    """`` mult DSP48`` / `` mult LUT`` for a layer whose products are bound (``hls_build.bind``), else nothing."""
    if detail.get("multiplier_binding") in ("dsp", "fabric"):
        return f" mult {detail['multiplier_kind']}"
    return ""


def _result_cast(layer: Layer, n_in: int, n_out: int, rf: int, strategy: str) -> tuple[float, float]:
    """LUTs and FFs of the accumulator -> result conversions of a conv/dense call.

    hls4ml converts all ``n_out`` at once: ``n_out`` converters, free when the result is the accumulator's own type
    and about 20 LUTs each when it rounds and clips (a fused ReLU's). In a project with in-loop result conversion
    (``hls_build.fuse.serialize_result_casts``) the fully serial Resource kernel (RF > n_in, a multiple of it)
    converts a rounding result in each multiplier lane as its last input arrives: one converter per lane, the
    enables of ``n_out`` result registers, no extra cycles.
    """
    acc, out = layer.types.get("accum"), layer.types.get("out")
    if acc is None or out is None:
        return 0.0, 0.0
    one = _cast_lut(acc, out)
    same = (acc.width, acc.integer, acc.signed, acc.rounding, acc.saturation) == (
        out.width, out.integer, out.signed, out.rounding, out.saturation
    )  # fmt: skip
    in_loop = layer.detail.get("serial_result_cast") and strategy == "resource" and rf > n_in and rf % n_in == 0
    in_loop = in_loop and not layer.detail.get("depthwise")  # the serial cast rewrites the dense kernels only
    if not in_loop or same:
        return n_out * one, 0.0
    lanes = math.ceil(n_in * n_out / rf)
    return lanes * one + n_out, float(n_out * out.width)


def dense_cost(
    layer: Layer, rf: int, strategy: str, k: Coefficients, family: str, multiplier: str | None = None
) -> LayerCost:
    """A Dense process (input vector, kernel) at ``rf`` and ``strategy``, before :func:`finish_resources`."""
    n_in, n_out = layer.mult_size  # type: ignore[misc]
    r, call_cycles, detail = _matmul_cost(layer, n_in, n_out, rf, strategy, k, family, multiplier)
    r[FF_STORAGE] += n_in * layer.types["in"].width  # the input vector
    r[LUT_CTRL] += k.layer_control_lut
    r[FF_CTRL] += k.layer_control_ff
    words_in = math.ceil(n_in / max(1, layer.attrs.get("in_elems", 1)))
    words_out = math.ceil(n_out / max(1, layer.attrs.get("out_elems", 1)))
    cycles = words_in + call_cycles + words_out
    label = f"Dense RF {rf} {strategy.capitalize()}{_bound_label(detail)}"
    return LayerCost(layer.name, layer.op, label, r, int(cycles), int(cycles), detail)


def batchnorm_ii(n_in: int, rf: int) -> int:
    """Cycles per pixel of an unfolded BatchNormalization of ``n_in`` values at ReuseFactor ``rf``."""
    return max(1, n_in // math.ceil(n_in / max(rf, 1)))


def batchnorm_cost(layer: Layer, rf: int, k: Coefficients, family: str) -> LayerCost:
    """An unfolded BatchNormalization process at ReuseFactor ``rf``, before :func:`finish_resources`."""
    n_in = layer.attrs["n_in"]
    c = layer.attrs.get("in_elems") or layer.attrs.get("n_filt") or 1
    pixels = max(1, n_in // c)
    ii = batchnorm_ii(n_in, rf)
    wa, ws, wo = layer.types["in"].width, layer.types["scale"].width, layer.types["out"].width
    mults = math.ceil(c / ii)
    r = _mults(mults, wa, ws, k, family)
    r[LUT_MAC] += mults * wo  # bias adders
    r[FF_MAC] += mults * wo
    r["FF"] += c * wo  # output word register
    if ii > 1:  # shared multipliers: select data and scale per cycle
        r[LUT_MAC] += mults * (wa + ws) * (min(ii, c) / 4.0)
    r[LUT_CTRL] += k.layer_control_lut
    r[FF_CTRL] += k.layer_control_ff
    cycles = pixels * ii + 4
    detail = {"reuse_factor": rf, "ii_per_pixel": ii, "multipliers": mults, "product_bits": [wa, ws],
              "multiplier_kind": "DSP48" if uses_dsp(wa, ws, k) else "LUT"}  # fmt: skip
    return LayerCost(layer.name, layer.op, f"BatchNorm RF {rf} (II {ii}/px)", r, cycles, ii + 4, detail)


def _cast_lut(t_in: FixedPoint, t_out: FixedPoint) -> float:
    """LUTs of one scalar conversion ``t_in -> t_out`` (rounding adder, saturation detect and mux)."""
    lut = 0.0
    frac_in, frac_out = t_in.width - t_in.integer, t_out.width - t_out.integer
    if t_out.rounds and frac_in > frac_out:
        lut += t_out.width + 2
    if t_out.saturating and t_in.integer > t_out.integer:
        lut += math.ceil((t_in.integer - t_out.integer + 1) / 6) + t_out.width
    return lut


def _elementwise_cost(layer: Layer, k: Coefficients) -> LayerCost:
    """Activation, merge, clone, zero padding, passthrough: one pipelined pass over the pixels."""
    t_out = layer.types.get("out") or layer.types["in"]
    t_in = layer.types.get("in") or t_out
    out_stream_elems = layer.attrs.get("out_elems") or layer.attrs.get("in_elems") or 1
    r = zero_resources()
    op = layer.op
    if op == "activation":
        n = layer.attrs.get("n_in", 0)
        act = layer.detail.get("activation", "")
        per = t_out.width + _cast_lut(t_in, t_out)  # zero/select mux + conversion
        if act not in ("relu", "linear"):
            r["BRAM_18K"] += 1  # lookup table of a non-linear activation
            per += 8
        chans = out_stream_elems or 1
        r["LUT"] += per * chans
        r["FF"] += t_out.width * chans
        label = f"Activation {act}"
        px = n // max(chans, 1)
    elif op == "merge":
        t2 = layer.types.get("in2", t_in)
        chans = out_stream_elems or 1
        # ``out = in1 + in2``: C++ adds in the full-precision sum type, then casts once to the result type (a fused
        # ReLU's rounding and clipping happen in that cast).
        frac = max(t_in.width - t_in.integer, t2.width - t2.integer)
        # An unsigned input added to a signed one needs a sign bit more.
        i1 = t_in.integer + int(not t_in.signed and t2.signed)
        i2 = t2.integer + int(not t2.signed and t_in.signed)
        integer = max(i1, i2)
        t_sum = FixedPoint(integer + 1 + frac, integer + 1, t_in.signed or t2.signed)
        r["LUT"] += chans * (t_sum.width + _cast_lut(t_sum, t_out))
        r["FF"] += chans * t_out.width
        n = layer.attrs.get("n_elem", 0)
        px = n // max(chans, 1)
        label = f"Merge {layer.detail.get('merge_op', '')}"
    elif op == "concat":
        # concatenate1d/3d: each input word copied (and converted) into the output word, one word per cycle.
        chans = out_stream_elems or 1
        t2 = layer.types.get("in2", t_in)
        r["LUT"] += chans / 2 * (_cast_lut(t_in, t_out) + _cast_lut(t2, t_out))
        r["FF"] += chans * t_out.width
        h, w = layer.attrs.get("n_elem1_0", 1) or 1, layer.attrs.get("n_elem1_1", 1) or 1
        px = h * w if layer.attrs.get("n_elem1_1") else 2  # 3-D: one word per pixel; 1-D: one word per input
        label = "Concatenate"
    elif op == "clone":
        chans = out_stream_elems or 1
        r["FF"] += chans * t_out.width
        px = layer.attrs.get("n_elem", 0) // max(chans, 1)
        label = "Clone"
    elif op == "zeropad":
        chans = layer.attrs.get("n_chan", 1)
        r["LUT"] += chans * t_out.width
        r["FF"] += chans * t_out.width
        px = layer.attrs.get("out_height", 1) * layer.attrs.get("out_width", 1)
        label = "ZeroPadding2D"
    else:
        chans = out_stream_elems or 1
        r["FF"] += chans * t_out.width
        px = layer.attrs.get("n_elem", 0) // max(chans, 1)
        label = layer.function
    r[LUT_CTRL] += k.layer_control_lut
    r[FF_CTRL] += k.layer_control_ff
    return LayerCost(layer.name, op, label, r, int(px + 3), 3, {})


def _pool_cost(layer: Layer, k: Coefficients) -> LayerCost:
    a = layer.attrs
    t_in, t_out = layer.types["in"], layer.types["out"]
    acc = layer.types.get("accum", t_out)
    c = a.get("n_filt", 1)
    r = zero_resources()
    if layer.op == "global_pool":
        r["LUT"] += c * acc.width  # adders
        r[FF_STORAGE] += c * acc.width  # accumulators
        px = a.get("in_height", 1) * a.get("in_width", 1)
        if "Average" in str(layer.detail.get("pool_op")) and px & (px - 1):
            r["LUT"] += c * acc.width * 4  # division by a non power of two
        cycles, fill, label = px + c + 4, px + 4, "GlobalPooling2D"
    else:
        ph, pw, in_w = a.get("pool_height", 2), a.get("pool_width", 2), a.get("in_width", 1)
        r[LUT_STORAGE] += (ph - 1) * c * t_in.width * math.ceil(in_w / 32)  # line buffer
        r[FF_STORAGE] += ph * pw * c * t_in.width
        r["LUT"] += c * (ph * pw - 1) * t_in.width  # comparators / adders
        px = a.get("in_height", 1) * in_w
        cycles, fill, label = px + 4, (ph - 1) * in_w + pw + 4, f"Pooling2D {ph}x{pw}"
    r[LUT_CTRL] += k.layer_control_lut + k.conv_control_lut / 2
    r[FF_CTRL] += k.layer_control_ff + k.conv_control_ff / 2
    return LayerCost(layer.name, layer.op, label, r, int(cycles), int(fill), {})


def _softmax_cost(layer: Layer, k: Coefficients, family: str) -> LayerCost:
    n = layer.attrs.get("n_in", 10)
    t_in = layer.types["in"]
    r = _mults(n, 18, 18, k, family)  # exp(x) * 1/sum
    r["BRAM_18K"] += 2  # exp and inverse tables (1024 x 18 each)
    r["LUT"] += n * t_in.width * 2
    r["FF"] += n * 18 * 2
    r[LUT_CTRL] += k.layer_control_lut
    r[FF_CTRL] += k.layer_control_ff
    return LayerCost(layer.name, layer.op, "Softmax", r, n + 12, n + 12, {})


def layer_cost(
    layer: Layer, rf: int, strategy: str | None, k: Coefficients, family: str, multiplier: str | None = None
) -> LayerCost:
    """The cost of any dataflow process at the given setting.

    ``strategy`` and ``multiplier`` only matter for conv and dense. Resources are before
    :func:`finish_resources` (internal LUT/FF parts kept apart).
    """
    if layer.op == "conv2d":
        return conv_cost(layer, rf, strategy or "resource", k, family, multiplier)
    if layer.op == "dense":
        return dense_cost(layer, rf, strategy or "resource", k, family, multiplier)
    if layer.op == "batchnorm":
        return batchnorm_cost(layer, rf, k, family)
    if layer.op in ("global_pool", "pool2d"):
        return _pool_cost(layer, k)
    if layer.op == "softmax":
        return _softmax_cost(layer, k, family)
    return _elementwise_cost(layer, k)


def fifo_cost(stream: Stream, hls_tool: str, k: Coefficients) -> dict[str, float]:
    """Resources of one stream's FIFO(s) (Vitis: one aggregated FIFO; Vivado HLS: one per array element).

    Storage per bit of width, after Vivado synthesis: depth 1 is a register (1 FF); depth 2 two registers and a
    2:1 read mux (2 FF, 0.5 LUT: Vivado infers SRLs only from 3 stages on, ``synth_design -shreg_min_size 3``);
    depth 3 to 32 one SRL16E/SRLC32E LUT (1 LUT); deeper SRLs one LUT per 32 words; BRAM FIFOs the RAMB18 tiling.
    The published Vivado 2020.1 synthesis of the hls4ml-tutorial pruned CNN has exactly as many SRL16E (2816) as
    its depth-4 and depth-16 FIFO bits plus its line-buffer bits (calibration design ``tutorial_pruned_cnn``).
    """
    r = zero_resources()
    if stream.depth <= 0:
        return r
    fifos = [stream.width_bits] if hls_tool == "vitis" else [stream.elem.width] * stream.n_elem
    d = stream.depth
    ptr = max(1, math.ceil(math.log2(d + 1)))
    for width in fifos:
        if hls_tool == "vitis":
            srl = d <= k.fifo_srl_max_depth or d * width <= k.fifo_srl_max_bits
        else:
            srl = d <= k.vivado_hls_fifo_srl_max_depth
        if not srl:
            r["BRAM_18K"] += bram18_count(d, width)
            r[LUT_CTRL] += 2 * ptr + 12
            r[FF_CTRL] += 2 * ptr + 16
        elif d == 1:
            r[FF_STORAGE] += width
            r[FF_CTRL] += 2
            r[LUT_CTRL] += 2
        elif d == 2:
            r[FF_STORAGE] += 2 * width
            r[LUT_STORAGE] += 0.5 * width
            r[FF_CTRL] += 3
            r[LUT_CTRL] += 3
        else:
            r[LUT_STORAGE] += width * math.ceil(d / 32)
            r[LUT_CTRL] += ptr + 4
            r[FF_CTRL] += ptr + 4
    return r
