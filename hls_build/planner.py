"""A fit planner: per-layer ReuseFactor, strategy, multiplier binding and FIFO depths: the fastest design that fits.

The planner works on the :class:`~hls_build.estimate.DesignGraph` of a converted model and re-estimates it
analytically for every candidate (no re-conversion): :func:`plan_design` returns a :class:`Plan` whose
``layer_config`` (``{layer: {"ReuseFactor": rf, "Strategy": "Resource", "Multiplier": "dsp"}}``) and
``fifo_depths`` (hls4ml output-variable name -> depth) are applied at conversion (``hls_build.config``; the
binding by ``hls_build.bind``; see ``hls_build/README.md``, "Planner").

Caps. Every resource (BRAM_18K, DSP, FF, LUT, URAM) of the estimate must stay within a cap. By default the cap
comes from the calibration's measured error band (:func:`calibrated_margins`, ``hls_build/calibration_fit.json``):
the estimate plus the published board wrapper, widened by the post-synthesis band of that resource, within the
board, which is the rule ``hls_build.calibration_fit.estimate_hls_project`` decides "fits" with. A number
(``margin=0.1``) keeps the same fraction free on every resource instead (not measured).

Search. Throughput is set by the slowest dataflow process, so the planner looks for the smallest per-image
interval T for which every layer can be made at least that fast and the whole design stays within the caps:

* for a target T each tunable layer (conv, dense, batch normalization) takes, among its valid settings
  (hls4ml's valid ReuseFactors for Resource; Latency only for matrix multiplies of at most
  ``LATENCY_MAX_MULTS`` products, hls4ml's unrolling limit), the one whose cycles are <= T with the smallest
  weighted resource cost with its products in LUT fabric; the weights are the current use of each resource's
  cap, re-balanced a few times, so that a scarce resource is spared;
* then layers move their products to DSP48 slices (``"Multiplier": "dsp"``), the most LUT/FF saved per slice
  first, while the DSP cap lasts (a DSP48 slice per product; conv/dense layers only);
* T is searched over the distinct cycle counts of all candidates (binary search; cost grows as T falls).

The plan names the binding resource: the one the next faster interval would overrun (or, when nothing fits,
the one most over its cap); ``limit`` says it in words, also when no resource binds. :data:`NOT_MODELED` lists
what the estimate does not cover.

FIFO depths. A stream between two processes of a chain never deadlocks, so it gets depth
``CHAIN_FIFO_DEPTH`` (an SRL, no BRAM). Where a ``Clone`` feeds both inputs of a merge (a residual skip), the
short branch must buffer everything the long branch takes in before its first output: the planner replays the
line-buffer index arithmetic of each layer on the long branch (how many input words a layer consumes before it
emits its first output) back to the clone, adds one image row plus ``SKIP_FIFO_SLACK`` words, and gives that
depth to the skip stream right after the clone. (hls4ml's default depth is the whole tensor, which is what makes
default io_stream ResNets overflow BRAM.)

Everything reported is an ESTIMATE (see :mod:`hls_build.estimate`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from board.errors import EXIT_BAD_INPUT, ProjectError
from hls_build.bind import MULTIPLIER_IMPLS
from hls_build.boards import RESOURCE_NAMES, BoardSpec, board_spec
from hls_build.estimate import (
    Coefficients,
    DesignGraph,
    Estimate,
    EstimateError,
    Layer,
    batchnorm_cost,
    batchnorm_ii,
    conv_cost,
    dense_cost,
    dsp_family,
    estimate_design,
    fifo_cost,
    finish_resources,
    load_coefficients,
    throughput_band,
    valid_reuse_factors,
)
from hls_build.estimate.design import TOTALS_MEANING

log = logging.getLogger(__name__)

__all__ = [
    "CHAIN_FIFO_DEPTH",
    "LATENCY_MAX_MULTS",
    "NOT_MODELED",
    "Margins",
    "Plan",
    "PlanError",
    "calibrated_margins",
    "plan_design",
    "plan_fifo_depths",
    "uniform_margins",
]

#: Depth of a FIFO between two processes of a chain (no reconvergence can deadlock it): 1 is a register stage
#: (1 FF per bit; a pixel-rate process behind it may stall every other cycle, harmless next to the RF-bound
#: convolutions); ``SRL_CHAIN_DEPTH`` puts it in SRLs (1 LUT per bit, no FFs) when FFs are scarcer than LUTs.
CHAIN_FIFO_DEPTH = 1
SRL_CHAIN_DEPTH = 3
#: Extra words on a skip FIFO beyond the computed start-up backlog and one image row.
SKIP_FIFO_SLACK = 8
#: Latency strategy is only proposed for matrix multiplies up to this many products (hls4ml warns beyond 4096
#: unrolled multiplications: synthesis time and routing explode).
LATENCY_MAX_MULTS = 4096
#: What the planner's estimate does not model (stated in every plan).
NOT_MODELED = (
    "two 8-bit products packed into one DSP48E2 (not emitted by hls_build.bind; one product per DSP48 is modeled)",
    "the multiply-accumulate merged into a DSP48 (the lane adders are modeled in LUTs whatever the binding)",
    "timing closure at the clock, routing congestion and placement (the estimate counts resources only)",
    "the HLS tool's own binding of layers the plan leaves unbound (batch normalization: its fitted rule)",
    "the board wrapper (PS glue, AXI DMA, interconnect) other than the one published PYNQ-Z2 figure it reserves",
)


class PlanError(EstimateError, ProjectError):
    """No setting fits the board with the margin, or the margin cannot be read (bad input: exit 2)."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class Margins:
    """Headroom per resource: the planner keeps ``estimate <= (1 - fraction[r]) * available[r] - reserved[r]``.

    Attributes:
        fraction: per resource, the share of the board kept free for the estimate's error.
        reserved: per resource, units taken by the rest of the block design (board wrapper), 0 when not known.
        band_pct: the calibration's error band per resource (percent) the fractions come from, or None.
        source: where the figures come from (printed and stored with the plan).
    """

    fraction: dict[str, float]
    reserved: dict[str, float]
    band_pct: dict[str, float] | None
    source: str

    def cap(self, available: Mapping[str, float]) -> dict[str, float]:
        """The most of each resource the estimate may use."""
        return {
            r: max(0.0, (1.0 - self.fraction.get(r, 0.0)) * available[r] - self.reserved.get(r, 0.0))
            for r in RESOURCE_NAMES
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "fraction": {r: round(v, 4) for r, v in self.fraction.items()},
            "reserved": self.reserved,
            "band_pct": self.band_pct,
            "source": self.source,
        }


def uniform_margins(margin: float) -> Margins:
    """The same fraction kept free on every resource, nothing reserved (``--margin``)."""
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    return Margins({r: float(margin) for r in RESOURCE_NAMES}, {r: 0.0 for r in RESOURCE_NAMES}, None,
                   f"uniform {margin:.0%} on every resource (given, not measured)")  # fmt: skip


def calibrated_margins(path: str | Path | None = None) -> Margins:
    """Margins from the calibration's measured error band (``hls_build/calibration_fit.json``).

    The rule is the calibration's own ``fits`` rule (``hls_build.calibration_fit.estimate_hls_project``): the
    estimate plus the board wrapper, widened by the post-synthesis band (90th percentile of the leave-one-out
    |error| per resource over the published designs), within the board: ``(est + wrapper) * (1 + band) <=
    available``, so ``fraction = 1 - 1 / (1 + band)`` and ``reserved = wrapper``.

    Raises:
        PlanError: no committed calibration fit (run ``python -m hls_build calibrate --write``).
    """
    from hls_build.calibration_fit import FIT_FILE, load_fit

    fit = load_fit(path)
    if not fit or not (fit.get("post_synthesis_band_pct") or fit.get("band_pct")):
        raise PlanError(f"no calibration band in {path or FIT_FILE}: run `python -m hls_build calibrate --write`, "
                        "or give --margin")  # fmt: skip
    band = {r: float(v) for r, v in (fit.get("post_synthesis_band_pct") or fit["band_pct"]).items() if v is not None}
    wrapper = (fit.get("board_wrapper") or {}).get("resources") or {}
    fraction = {r: (1.0 - 1.0 / (1.0 + band[r] / 100.0)) if r in band else 0.0 for r in RESOURCE_NAMES}
    reserved = {r: float(wrapper.get(r, 0)) for r in RESOURCE_NAMES}
    n = len(fit.get("designs", []))
    src = (f"calibration band (post-synthesis leave-one-out p90 |error| over {n} published designs, "
           f"{Path(path or FIT_FILE).name}) plus the board wrapper of "
           f"{(fit.get('board_wrapper') or {}).get('design', 'none')}")  # fmt: skip
    return Margins(fraction, reserved, band, src)


@dataclass
class Plan:
    """The planner's choice.

    Attributes:
        board: the target board.
        margin: the largest headroom fraction kept on any resource (0.1 = use at most 90 %); per resource and
            with its source in ``margins``.
        layer_config: ``{layer: {"ReuseFactor": rf, "Strategy": "Resource"|"Latency"}}`` for conv and dense
            layers, ``{"ReuseFactor": rf}`` for batch normalization.
        fifo_depths: C++ stream name -> depth.
        fifo_depths_by_output: hls4ml output-variable name -> depth (to set ``var.pragma`` before ``write()``),
            when the graph came from a ModelGraph.
        estimate: the ESTIMATE of the planned design.
        fits: whether it fits the caps (``margins.cap``).
        notes: what limited the search.
        margins: the headroom per resource and where it comes from.
        binding: the resource that stops a faster plan (or, when nothing fits, the one most over its cap); None
            when the fastest settings of every layer fit (the interval is then set by a process the planner cannot
            speed up: ``limit``).
        limit: in words, what sets the planned interval.
        cap_use: per resource, the estimate over its cap (1.0 = at the cap).
    """

    board: BoardSpec
    margin: float
    layer_config: dict[str, dict[str, Any]]
    fifo_depths: dict[str, int]
    fifo_depths_by_output: dict[str, int]
    estimate: Estimate
    fits: bool
    notes: list[str] = field(default_factory=list)
    margins: Margins | None = None
    binding: str | None = None
    limit: str = ""
    cap_use: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        """Modeled throughput of the planned design (ESTIMATE)."""
        return self.estimate.images_per_s

    @property
    def latency_ms(self) -> float:
        """Modeled latency of one image in ms (ESTIMATE)."""
        return self.estimate.latency_ms

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "kind": "estimated",
            "board": self.board.name,
            "margin": self.margin,
            "fits": self.fits,
            "images_per_s": self.images_per_s,
            "latency_ms": self.latency_ms,
            "interval_cycles": self.estimate.interval_cycles,
            "totals": self.estimate.totals,
            "totals_meaning": TOTALS_MEANING,
            "csynth_totals": self.estimate.csynth_totals,
            "whole_design": self.estimate.whole_design,
            "band_pct": self.estimate.band_pct,
            "utilization_pct": self.estimate.utilization(),
            "margins": self.margins.to_dict() if self.margins else None,
            "cap": ({r: round(v, 1) for r, v in self.margins.cap(self.board.budget.as_dict()).items()}
                    if self.margins else None),
            "cap_use": {r: round(v, 3) for r, v in self.cap_use.items()},
            "binding_resource": self.binding,
            "limit": self.limit,
            "multipliers": _multiplier_summary(self.estimate),
            "layer_config": self.layer_config,
            "fifo_depths": self.fifo_depths,
            "fifo_depths_by_output": self.fifo_depths_by_output,
            "notes": self.notes,
            "not_modeled": list(NOT_MODELED),
            **throughput_band(),
        }  # fmt: skip


def _multiplier_summary(est: Estimate) -> dict[str, int]:
    """How many multipliers of the design are in DSP48 slices and how many in LUT fabric (ESTIMATE)."""
    out = {"DSP48": 0, "LUT": 0}
    for row in est.rows:
        kind, n = row.detail.get("multiplier_kind"), row.detail.get("multipliers")
        if kind in out and n:
            out[kind] += int(n)
    return out


# ------------------------------------------------------------------------------------------------- FIFO depths
def _consumed(layer: Layer, n_out: int) -> int:
    """Input words ``layer`` must have read before it has written ``n_out`` output words (row-major pixels)."""
    a = layer.attrs
    if n_out <= 0:
        return 0
    if layer.op == "zeropad":
        w_out, w_in = a["out_width"], a["in_width"]
        pos = n_out - 1
        r, c = divmod(pos, w_out)
        r_in = min(max(r - a["pad_top"], -1), a["in_height"] - 1)
        c_in = min(max(c - a["pad_left"], -1), w_in - 1)
        if r_in < 0:
            return 0
        return r_in * w_in + c_in + 1
    if layer.op in ("conv2d", "pool2d"):
        fh = a.get("filt_height", a.get("pool_height", 1))
        fw = a.get("filt_width", a.get("pool_width", 1))
        sh = a.get("stride_height", fh if layer.op == "pool2d" else 1)
        sw = a.get("stride_width", fw if layer.op == "pool2d" else 1)
        r, c = divmod(n_out - 1, a["out_width"])
        return min((r * sh + fh - 1) * a["in_width"] + (c * sw + fw - 1) + 1, a["in_height"] * a["in_width"])
    if layer.op in ("global_pool", "dense"):
        return a.get("in_height", 1) * a.get("in_width", 1) if layer.op == "global_pool" else 1
    return n_out  # 1:1 pixel processes (batchnorm, activations, merge, clone, passthrough)


def _branch_to_clone(graph: DesignGraph, stream: str) -> list[Layer] | None:
    """Layers from ``stream`` upstream to (excluding) the Clone that produced the branch, nearest first."""
    path: list[Layer] = []
    by_name = {layer.name: layer for layer in graph.layers}
    s = stream
    while True:
        producer = graph.streams[s].producer
        if producer is None:
            return None
        layer = by_name[producer]
        if layer.op == "clone":
            path.append(layer)
            return path
        if len(layer.inputs) != 1:
            return None
        path.append(layer)
        s = layer.inputs[0]


def plan_fifo_depths(graph: DesignGraph) -> tuple[dict[str, int], list[str]]:
    """FIFO depths: ``CHAIN_FIFO_DEPTH`` on chains, the computed backlog on the skip stream of every residual.

    Returns:
        (C++ stream name -> depth for every internal stream, notes).
    """
    depths = {s.name: CHAIN_FIFO_DEPTH for s in graph.streams.values() if s.kind == "internal"}
    notes: list[str] = []
    for layer in graph.layers:
        if layer.op != "merge" or len(layer.inputs) != 2:
            continue
        branches = [_branch_to_clone(graph, s) for s in layer.inputs]
        if any(b is None for b in branches) or branches[0][-1] is not branches[1][-1]:  # type: ignore[index]
            notes.append(f"{layer.name}: inputs do not meet at one Clone; its FIFOs keep hls4ml's depths")
            for s in layer.inputs:
                depths[s] = graph.streams[s].depth
            continue
        clone = branches[0][-1]  # type: ignore[index]
        need = []
        for branch in branches:
            n = 1
            for lay in branch[:-1]:  # nearest first: outputs needed -> inputs consumed
                n = _consumed(lay, n)
            need.append(n)
        long_i = 0 if need[0] >= need[1] else 1
        short_branch = branches[1 - long_i]
        # The stream right after the clone on the short branch holds the backlog.
        first_layer_inputs = short_branch[-2].inputs if len(short_branch) > 1 else [layer.inputs[1 - long_i]]
        skip_stream = first_layer_inputs[0]
        row = _row_words(graph, clone)
        depth = need[long_i] + row + SKIP_FIFO_SLACK
        depths[skip_stream] = max(depths.get(skip_stream, CHAIN_FIFO_DEPTH), depth)
        notes.append(
            f"{layer.name}: skip FIFO {skip_stream} depth {depth} (long branch takes {need[long_i]} words in before "
            f"its first output, + one row {row} + {SKIP_FIFO_SLACK})"
        )
    return depths, notes


def _row_words(graph: DesignGraph, clone: Layer) -> int:
    """Stream words of one image row at the clone's resolution (its producer's output width)."""
    s = graph.streams[clone.inputs[0]]
    producer = next((lay for lay in graph.layers if lay.name == s.producer), None)
    if producer is not None:
        for key in ("out_width", "in_width"):
            if key in producer.attrs:
                return int(producer.attrs[key])
    return 32


# -------------------------------------------------------------------------------------------------- the search
@dataclass(frozen=True)
class _Candidate:
    config: dict[str, Any]
    cycles: int
    resources: dict[str, float]


def _candidates(layer: Layer, k: Coefficients, family: str, bind: bool = True) -> list[_Candidate]:
    """Every setting worth considering for one tunable layer, with its cycles and resources.

    With ``bind``, each conv/dense setting comes twice, its multipliers bound to DSP48 slices and to LUT fabric
    (``"Multiplier"``, applied by :mod:`hls_build.bind`); without, the HLS tool's own binding rule.
    """
    out: list[_Candidate] = []
    if layer.op in ("conv2d", "dense"):
        n_in, n_out = layer.mult_size  # type: ignore[misc]
        cost = conv_cost if layer.op == "conv2d" else dense_cost
        impls: tuple[str | None, ...] = MULTIPLIER_IMPLS if bind else (None,)
        settings = [(rf, "resource") for rf in valid_reuse_factors(n_in, n_out)]
        if n_in * n_out <= LATENCY_MAX_MULTS:
            settings += [(rf, "latency") for rf in (1, 2, 4, 8, 16, 32, 64) if rf <= n_in * n_out]
        for rf, strategy in settings:
            for impl in impls:
                c = cost(layer, rf, strategy, k, family, impl)
                config: dict[str, Any] = {"ReuseFactor": rf, "Strategy": strategy.capitalize()}
                if impl is not None:
                    config["Multiplier"] = impl
                out.append(_Candidate(config, c.cycles, c.resources))
    elif layer.op == "batchnorm":
        n_in = layer.attrs["n_in"]
        chans = layer.attrs.get("in_elems") or layer.attrs.get("n_filt") or 1
        seen = set()
        for rf in sorted({d for d in range(1, chans * 64 + 1) if n_in % d == 0}):
            ii = batchnorm_ii(n_in, rf)
            if ii in seen:
                continue
            seen.add(ii)
            c = batchnorm_cost(layer, rf, k, family)
            out.append(_Candidate({"ReuseFactor": rf}, c.cycles, c.resources))
    return out


def _weighted(resources: Mapping[str, float], weights: Mapping[str, float]) -> float:
    return sum(weights[r] * resources.get(r, 0.0) for r in RESOURCE_NAMES)


def plan_design(
    graph: DesignGraph,
    board: str | BoardSpec,
    margin: float | Margins | None = None,
    coefficients: Coefficients | None = None,
    clock_mhz: float | None = None,
    bind_multipliers: bool = True,
) -> Plan:
    """Choose ReuseFactor, strategy, multiplier binding and FIFO depths: the fastest design that fits ``board``.

    The modeled throughput (clock / slowest process) is maximized over the whole budget (BRAM_18K, DSP, FF, LUT,
    URAM) subject to every resource of the ESTIMATE staying within its cap (:class:`Margins`).

    Args:
        graph: the converted design.
        board: board name or spec (``UnknownBoardError`` for an unknown name).
        margin: None (default) for the calibration's measured band per resource (:func:`calibrated_margins`); a
            number for the same fraction kept free on every resource (0 <= margin < 1); or :class:`Margins`.
        coefficients: model constants (default: the calibration, ``calibration_fit.json``, for the graph's HLS tool).
        clock_mhz: clock for rates (default the design's).
        bind_multipliers: let the plan bind each conv/dense layer's products to DSP48 or LUT fabric (else the
            HLS tool's rule decides, as hls4ml leaves it).

    Returns:
        The :class:`Plan` (``fits`` False, with a note and the resources over their caps, when even the slowest
        settings do not fit).

    Raises:
        UnknownBoardError: unknown board name.
        ValueError: margin outside [0, 1).
        PlanError: ``margin`` None and no calibration band is committed.
    """
    spec = board_spec(board) if isinstance(board, str) else board
    if isinstance(margin, Margins):
        margins = margin
    elif margin is None:
        margins = calibrated_margins()
    else:
        margins = uniform_margins(float(margin))
    k = coefficients or load_coefficients(graph.hls_tool)
    family = dsp_family(spec.part)
    fifo_depths, notes = plan_fifo_depths(graph)
    avail = spec.budget.as_dict()
    cap = margins.cap(avail)

    tunable = [layer for layer in graph.layers if layer.tunable]
    cands = {layer.name: _candidates(layer, k, family, bind_multipliers) for layer in tunable}
    slowest_config = {name: dict(max(options, key=lambda c: c.cycles).config) for name, options in cands.items()}
    fifo_depths = _balance_chain_fifos(graph, spec, slowest_config, fifo_depths, k, 0.0, [])
    base = estimate_design(graph, spec, layer_config={}, fifo_depths=fifo_depths, coefficients=k, check=False)
    fixed = {r: float(base.totals[r]) for r in RESOURCE_NAMES}
    tuned_rows = {row.name: row for row in base.rows if row.name in cands}
    for row in tuned_rows.values():  # rows are already calibrated (finish_resources: post-synthesis prediction)
        for r in RESOURCE_NAMES:
            fixed[r] -= row.resources[r]
    floor_rows = [row for row in base.rows if row.name not in cands]
    floor_cycles = max((row.cycles for row in floor_rows), default=0)

    def scaled(res: Mapping[str, float]) -> dict[str, float]:
        return finish_resources(dict(res), k)

    def config_key(c: _Candidate) -> tuple[Any, ...]:
        return (c.config.get("ReuseFactor"), c.config.get("Strategy"))

    dsp_variant = {
        name: {config_key(c): c for c in options if c.config.get("Multiplier") == "dsp"}
        for name, options in cands.items()
    }

    def fill_dsp(pick: dict[str, _Candidate], total: dict[str, float], weights: Mapping[str, float]) -> None:
        """Move layers' multipliers to DSP48 slices, most fabric saved per slice first, while the DSPs last."""
        moves = []
        for name, c in pick.items():
            alt = dsp_variant[name].get(config_key(c))
            if alt is None or alt is c:
                continue
            a, b = scaled(c.resources), scaled(alt.resources)
            slices = b["DSP"] - a["DSP"]
            saved = sum(weights[r] * (a[r] - b[r]) for r in RESOURCE_NAMES if r != "DSP")
            if slices > 0 and saved > 0:
                moves.append((saved / slices, name, alt, a, b))
        for _, name, alt, a, b in sorted(moves, key=lambda m: -m[0]):
            if total["DSP"] + b["DSP"] - a["DSP"] > cap["DSP"]:
                continue
            pick[name] = alt
            for r in RESOURCE_NAMES:
                total[r] += b[r] - a[r]

    def choose(target: int) -> tuple[dict[str, _Candidate], dict[str, float]] | None:
        """The cheapest settings at most ``target`` cycles: fabric settings by weighted cost, then DSPs filled."""
        weights = {r: (1.0 / avail[r] if avail[r] else 1e9) for r in RESOURCE_NAMES}
        best: tuple[dict[str, _Candidate], dict[str, float]] | None = None
        for _ in range(8):
            pick: dict[str, _Candidate] = {}
            for name, options in cands.items():
                ok = [c for c in options if c.cycles <= target and c.config.get("Multiplier") != "dsp"]
                if not ok:
                    return None
                pick[name] = min(ok, key=lambda c: (_weighted(scaled(c.resources), weights), c.cycles))
            total = dict(fixed)
            for c in pick.values():
                for r, v in scaled(c.resources).items():
                    total[r] += v
            if bind_multipliers:
                fill_dsp(pick, total, weights)
            if best is None or _overshoot(total, cap) < _overshoot(best[1], cap):
                best = (pick, total)
            if _overshoot(total, cap) <= 0:
                return pick, total
            # Re-weight: resources near or over their cap get dearer, so the next pass spares them.
            weights = {
                r: (1.0 / cap[r]) * (1.0 + 8.0 * max(0.0, total[r] / cap[r] - 0.7)) ** 2 if cap[r] > 0 else 1e9
                for r in RESOURCE_NAMES
            }
        return best

    targets = sorted({c.cycles for options in cands.values() for c in options if c.cycles >= floor_cycles})
    if not targets:
        targets = [floor_cycles]
    lo, hi = 0, len(targets) - 1
    found: tuple[int, dict[str, _Candidate]] | None = None
    found_i = -1
    while lo <= hi:
        mid = (lo + hi) // 2
        res = choose(targets[mid])
        if res is not None and _overshoot(res[1], cap) <= 0:
            found, found_i = (targets[mid], res[0]), mid
            hi = mid - 1
        else:
            lo = mid + 1
    fits = found is not None
    binding: str | None = None
    limit = ""
    if found is None:
        slowest = choose(targets[-1])
        picks = slowest[0] if slowest else {}
        over = _over_cap(slowest[1], cap) if slowest else {}
        binding = max(over, key=lambda r: over[r]) if over else None
        notes.append(
            f"even the slowest settings (interval {targets[-1]} cycles) do not fit {spec.name} within the caps "
            f"({margins.source}); over: "
            + ", ".join(f"{r} {100 * v:.0f} % of its cap" for r, v in sorted(over.items(), key=lambda x: -x[1]))
        )
        limit = f"nothing fits: {binding} binds"
    else:
        picks = found[1]
        if found_i > 0:
            faster = choose(targets[found_i - 1])
            if faster is None:
                limit = f"the fastest setting of a layer ({targets[found_i]} cycles)"
            else:
                use = {r: faster[1][r] / cap[r] for r in RESOURCE_NAMES if cap[r] > 0}
                over = {r: u for r, u in use.items() if u > 1.0}
                binding = max(over or use, key=lambda r: (over or use)[r])
                limit = (f"{binding}: the next faster interval ({targets[found_i - 1]} cycles) would need "
                         f"{100 * use[binding]:.0f} % of its cap")  # fmt: skip
        else:
            slow = max(floor_rows, key=lambda row: row.cycles, default=None)
            limit = (f"no resource: the fastest settings fit; the interval is set by {slow.name} ({slow.cycles} "
                     "cycles), which the planner cannot speed up" if slow and slow.cycles >= targets[0]
                     else "no resource: every layer at its fastest setting fits")  # fmt: skip
    layer_config = {name: dict(c.config) for name, c in picks.items()}
    fifo_depths = _balance_chain_fifos(graph, spec, layer_config, fifo_depths, k, 0.0, notes)
    est = estimate_design(graph, spec, layer_config=layer_config, fifo_depths=fifo_depths, coefficients=k,
                          clock_mhz=clock_mhz, check=True)  # fmt: skip
    cap_use = {r: (est.totals[r] / cap[r] if cap[r] > 0 else (0.0 if est.totals[r] == 0 else math.inf))
               for r in RESOURCE_NAMES}  # fmt: skip
    final_fits = all(u <= 1.0 + 1e-9 for u in cap_use.values())
    if fits and not final_fits:
        notes.append("the final estimate exceeds a cap (rounding); treat as not fitting")
    fits = fits and final_fits
    by_output = {graph.keys[s]: d for s, d in fifo_depths.items() if s in graph.keys}
    log.info(
        "plan for %s: interval %d cycles -> %.1f images/s (ESTIMATE), fits=%s, binding %s", spec.name,
        est.interval_cycles, est.images_per_s, fits, binding,
    )  # fmt: skip
    return Plan(spec, max(margins.fraction.values()), layer_config, fifo_depths, by_output, est, fits, notes,
                margins, binding, limit, cap_use)  # fmt: skip


def _balance_chain_fifos(
    graph: DesignGraph,
    spec: BoardSpec,
    layer_config: Mapping[str, Mapping[str, Any]],
    fifo_depths: dict[str, int],
    k: Coefficients,
    margin: float,
    notes: list[str],
) -> dict[str, int]:
    """Move chain FIFOs from registers (depth 1) to SRLs (depth ``SRL_CHAIN_DEPTH``) to spare FFs.

    Widest first, while FFs are scarcer than LUTs and the move lowers the highest utilization. Streams too wide for
    SRLs under the HLS tool's rule (they would take BRAM) stay registers.
    """
    depths = dict(fifo_depths)
    est = estimate_design(graph, spec, layer_config=layer_config, fifo_depths=depths, coefficients=k, check=False)
    avail = spec.budget.as_dict()

    def worst(e: Estimate) -> float:
        return max(e.totals[r] / avail[r] for r in RESOURCE_NAMES if avail[r])

    chain = sorted(
        (s for s in graph.streams.values() if s.kind == "internal" and depths.get(s.name) == CHAIN_FIFO_DEPTH),
        key=lambda s: -s.width_bits,
    )
    moved = 0
    for s in chain:
        if est.totals["FF"] / avail["FF"] <= est.totals["LUT"] / avail["LUT"]:
            break
        if fifo_cost(replace(s, depth=SRL_CHAIN_DEPTH), graph.hls_tool, k)["BRAM_18K"]:
            continue  # too wide for SRLs under the tool's rule: it would take BRAM
        trial = {**depths, s.name: SRL_CHAIN_DEPTH}
        e2 = estimate_design(graph, spec, layer_config=layer_config, fifo_depths=trial, coefficients=k, check=False)
        if worst(e2) < worst(est):
            depths, est, moved = trial, e2, moved + 1
    if moved:
        notes.append(f"{moved} chain FIFOs moved from registers (depth {CHAIN_FIFO_DEPTH}) to SRLs (depth "
                     f"{SRL_CHAIN_DEPTH}) to balance FF against LUT")  # fmt: skip
    return depths


def _over_cap(total: Mapping[str, float], cap: Mapping[str, float]) -> dict[str, float]:
    """Resources over their caps: resource -> total / cap (inf where the cap is 0)."""
    out = {}
    for r in RESOURCE_NAMES:
        if cap[r] <= 0:
            if total[r] > 0.5:
                out[r] = math.inf
        elif total[r] > cap[r]:
            out[r] = total[r] / cap[r]
    return out


def _overshoot(total: Mapping[str, float], cap: Mapping[str, float]) -> float:
    """How far over the caps the totals are (0 when within), as the largest relative excess."""
    worst = 0.0
    for r in RESOURCE_NAMES:
        if cap[r] <= 0:
            if total[r] > 0.5:
                worst = max(worst, math.inf)
            continue
        worst = max(worst, total[r] / cap[r] - 1.0)
    return worst
