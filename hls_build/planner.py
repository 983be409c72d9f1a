"""A fit planner: per-layer ReuseFactor, strategy and FIFO depths so that a design fits a board by the ESTIMATE.

The planner works on the :class:`~hls_build.estimate.DesignGraph` of a converted model and re-estimates it
analytically for every candidate (no re-conversion): :func:`plan_design` returns a :class:`Plan` whose
``layer_config`` (``{layer: {"ReuseFactor": rf, "Strategy": "Resource"}}``) and ``fifo_depths`` (hls4ml
output-variable name -> depth) are applied at conversion (see ``hls_build/README.md``, "Estimates").

Search. Throughput is set by the slowest dataflow process, so the planner looks for the smallest per-image
interval T for which every layer can be made at least that fast and the whole design still fits
``(1 - margin)`` of every board resource:

* for a target T each tunable layer (conv, dense, batch normalization) takes, among its valid settings
  (hls4ml's valid ReuseFactors for Resource; Latency only for matrix multiplies of at most
  ``LATENCY_MAX_MULTS`` products, hls4ml's unrolling limit), the one whose cycles are <= T with the smallest
  weighted resource cost; the weights are the current utilization of each resource, re-balanced a few times,
  so that a scarce resource (BRAM on PYNQ-Z2) is spared;
* T is searched over the distinct cycle counts of all candidates (binary search; cost grows as T falls).

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
from typing import Any

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
    valid_reuse_factors,
)

log = logging.getLogger(__name__)

__all__ = ["CHAIN_FIFO_DEPTH", "LATENCY_MAX_MULTS", "Plan", "PlanError", "plan_design", "plan_fifo_depths"]

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
#: Default headroom kept free on every resource.
DEFAULT_MARGIN = 0.10


class PlanError(EstimateError):
    """No setting fits the board with the requested margin."""


@dataclass
class Plan:
    """The planner's choice.

    Attributes:
        board: the target board.
        margin: headroom kept on every resource (0.1 = use at most 90 %).
        layer_config: ``{layer: {"ReuseFactor": rf, "Strategy": "Resource"|"Latency"}}`` for conv and dense
            layers, ``{"ReuseFactor": rf}`` for batch normalization.
        fifo_depths: C++ stream name -> depth.
        fifo_depths_by_output: hls4ml output-variable name -> depth (to set ``var.pragma`` before ``write()``),
            when the graph came from a ModelGraph.
        estimate: the ESTIMATE of the planned design.
        fits: whether it fits ``(1 - margin)`` of the board.
        notes: what limited the search.
    """

    board: BoardSpec
    margin: float
    layer_config: dict[str, dict[str, Any]]
    fifo_depths: dict[str, int]
    fifo_depths_by_output: dict[str, int]
    estimate: Estimate
    fits: bool
    notes: list[str] = field(default_factory=list)

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
            "utilization_pct": self.estimate.utilization(),
            "layer_config": self.layer_config,
            "fifo_depths": self.fifo_depths,
            "fifo_depths_by_output": self.fifo_depths_by_output,
            "notes": self.notes,
        }


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


def _candidates(layer: Layer, k: Coefficients, family: str) -> list[_Candidate]:
    """Every setting worth considering for one tunable layer, with its cycles and resources."""
    out: list[_Candidate] = []
    if layer.op in ("conv2d", "dense"):
        n_in, n_out = layer.mult_size  # type: ignore[misc]
        cost = conv_cost if layer.op == "conv2d" else dense_cost
        for rf in valid_reuse_factors(n_in, n_out):
            c = cost(layer, rf, "resource", k, family)
            out.append(_Candidate({"ReuseFactor": rf, "Strategy": "Resource"}, c.cycles, c.resources))
        if n_in * n_out <= LATENCY_MAX_MULTS:
            for rf in (1, 2, 4, 8, 16, 32, 64):
                if rf <= n_in * n_out:
                    c = cost(layer, rf, "latency", k, family)
                    out.append(_Candidate({"ReuseFactor": rf, "Strategy": "Latency"}, c.cycles, c.resources))
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
    margin: float = DEFAULT_MARGIN,
    coefficients: Coefficients | None = None,
    clock_mhz: float | None = None,
) -> Plan:
    """Choose ReuseFactor, strategy and FIFO depths that fit ``board`` with ``margin`` headroom, fastest first.

    The modeled throughput (clock / slowest process) is maximized subject to every resource of the ESTIMATE
    staying within ``(1 - margin)`` of the board's.

    Args:
        graph: the converted design.
        board: board name or spec (``UnknownBoardError`` for an unknown name).
        margin: fraction of every resource kept free (0 <= margin < 1).
        coefficients: model constants (default ``calibration.json``).
        clock_mhz: clock for rates (default the design's).

    Returns:
        The :class:`Plan` (``fits`` False, with a note, when even the slowest settings do not fit).

    Raises:
        UnknownBoardError: unknown board name.
        ValueError: margin outside [0, 1).
    """
    spec = board_spec(board) if isinstance(board, str) else board
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    k = coefficients or load_coefficients()
    family = dsp_family(spec.part)
    fifo_depths, notes = plan_fifo_depths(graph)
    avail = spec.budget.as_dict()
    cap = {r: (1.0 - margin) * avail[r] for r in RESOURCE_NAMES}

    tunable = [layer for layer in graph.layers if layer.tunable]
    cands = {layer.name: _candidates(layer, k, family) for layer in tunable}
    slowest_config = {name: dict(max(options, key=lambda c: c.cycles).config) for name, options in cands.items()}
    fifo_depths = _balance_chain_fifos(graph, spec, slowest_config, fifo_depths, k, margin, [])
    base = estimate_design(graph, spec, layer_config={}, fifo_depths=fifo_depths, coefficients=k, check=False)
    fixed = {r: float(base.totals[r]) for r in RESOURCE_NAMES}
    tuned_rows = {row.name: row for row in base.rows if row.name in cands}
    for row in tuned_rows.values():  # rows are already scaled by lut_scale / ff_scale
        for r in RESOURCE_NAMES:
            fixed[r] -= row.resources[r]
    floor_cycles = max((row.cycles for row in base.rows if row.name not in cands), default=0)

    def scaled(res: Mapping[str, float]) -> dict[str, float]:
        return finish_resources(dict(res), k)

    def choose(target: int) -> tuple[dict[str, _Candidate], dict[str, float]] | None:
        weights = {r: (1.0 / avail[r] if avail[r] else 1e9) for r in RESOURCE_NAMES}
        best: tuple[dict[str, _Candidate], dict[str, float]] | None = None
        for _ in range(6):
            pick: dict[str, _Candidate] = {}
            for name, options in cands.items():
                ok = [c for c in options if c.cycles <= target]
                if not ok:
                    return None
                pick[name] = min(ok, key=lambda c: (_weighted(scaled(c.resources), weights), c.cycles))
            total = dict(fixed)
            for c in pick.values():
                for r, v in scaled(c.resources).items():
                    total[r] += v
            if best is None or _overshoot(total, cap) < _overshoot(best[1], cap):
                best = (pick, total)
            if _overshoot(total, cap) <= 0:
                return pick, total
            # Re-weight: resources near or over their cap get dearer.
            weights = {
                r: (1.0 / avail[r]) * (1.0 + 8.0 * max(0.0, total[r] / cap[r] - 0.7)) ** 2 if avail[r] else 1e9
                for r in RESOURCE_NAMES
            }
        return best

    targets = sorted({c.cycles for options in cands.values() for c in options if c.cycles >= floor_cycles})
    if not targets:
        targets = [floor_cycles]
    lo, hi = 0, len(targets) - 1
    found: tuple[int, dict[str, _Candidate]] | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        res = choose(targets[mid])
        if res is not None and _overshoot(res[1], cap) <= 0:
            found = (targets[mid], res[0])
            hi = mid - 1
        else:
            lo = mid + 1
    fits = found is not None
    if found is None:
        slowest = choose(targets[-1])
        picks = slowest[0] if slowest else {}
        notes.append(
            f"even the slowest settings (interval {targets[-1]} cycles) do not fit {spec.name} with "
            f"{margin:.0%} margin by the estimate"
        )
    else:
        picks = found[1]
    layer_config = {name: dict(c.config) for name, c in picks.items()}
    fifo_depths = _balance_chain_fifos(graph, spec, layer_config, fifo_depths, k, margin, notes)
    est = estimate_design(graph, spec, layer_config=layer_config, fifo_depths=fifo_depths, coefficients=k,
                          clock_mhz=clock_mhz, check=True)  # fmt: skip
    fits = fits and est.fits(margin)
    if not fits and found is not None:
        notes.append("the final estimate exceeds the margin (rounding); treat as not fitting")
    by_output = {graph.keys[s]: d for s, d in fifo_depths.items() if s in graph.keys}
    log.info(
        "plan for %s: interval %d cycles -> %.1f images/s (ESTIMATE), fits=%s", spec.name, est.interval_cycles,
        est.images_per_s, fits,
    )  # fmt: skip
    return Plan(spec, margin, layer_config, fifo_depths, by_output, est, fits, notes)


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
