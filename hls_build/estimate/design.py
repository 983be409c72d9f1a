"""The ESTIMATE of a whole design: every process and FIFO costed, totals against a board, interval and latency."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hls_build.boards import RESOURCE_NAMES, BoardSpec, board_spec
from hls_build.estimate.cost import (
    FF_CTRL,
    LUT_CTRL,
    PART_KEYS,
    Coefficients,
    LayerCost,
    add_resources,
    calibration_bands,
    calibration_summary,
    closest_reuse_factor,
    dsp_family,
    fifo_cost,
    finish_resources,
    layer_cost,
    load_coefficients,
    load_fit,
    raw_parts,
    zero_resources,
)
from hls_build.estimate.graph import DesignGraph, EstimateError, Layer
from hls_build.estimate.precision_check import PrecisionWarning, check_precision

log = logging.getLogger(__name__)


@dataclass
class Estimate:
    """The ESTIMATE of a design: per-layer rows, FIFOs, totals, interval and latency.

    One estimator: ``totals`` (and every row's ``resources``) is the predicted post-synthesis usage of the
    accelerator, ``csynth_totals`` what an HLS csynth report would show, both from the calibration of
    ``hls_build/calibration_fit.json``; ``whole_design`` adds the published board wrapper, and
    :meth:`fits` decides on that whole design widened by the post-synthesis error band.

    Attributes:
        project: the hls4ml project.
        board: the board it is compared with (None for a bare estimate).
        clock_mhz: the clock used for times and rates.
        rows: one :class:`LayerCost` per dataflow process (AXI wrapper loops included when present).
        fifo: resources of all stream FIFOs together.
        fifo_detail: per stream: depth, width, storage, resources.
        interval_cycles: the dataflow pipeline's initiation interval (its slowest process).
        bottleneck: the slowest process.
        latency_cycles: approximate cycles from the first input word to the last output word of one image.
        layer_config: the ReuseFactor/Strategy each conv/dense/batchnorm layer was estimated with.
        fifo_depths: the FIFO depths it was estimated with (C++ stream name -> depth).
        warnings: precision warnings (:func:`check_precision`).
        summary: what the model was calibrated against and its typical error.
        parts: LUT and FF before the fitted factors, split into ``mac`` (multiply-accumulate logic), ``other``
            (other logic) and ``storage`` (registers, SRLs), for calibration.
        csynth_fifo: the FIFOs' figures at csynth level.
        calibration: the error bands and board wrapper (:func:`hls_build.estimate.cost.calibration_bands`).
    """

    project: str
    board: BoardSpec | None
    clock_mhz: float
    rows: list[LayerCost]
    fifo: dict[str, float]
    fifo_detail: list[dict[str, Any]]
    interval_cycles: int
    bottleneck: str
    latency_cycles: int
    layer_config: dict[str, dict[str, Any]]
    fifo_depths: dict[str, int]
    warnings: list[PrecisionWarning] = field(default_factory=list)
    summary: str = ""
    parts: dict[str, dict[str, float]] = field(default_factory=dict)
    csynth_fifo: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, int]:
        """Total resources, the predicted post-synthesis usage of the accelerator (rounded up to whole units)."""
        tot = zero_resources()
        for row in self.rows:
            tot = add_resources(tot, row.resources)
        tot = add_resources(tot, self.fifo)
        return {r: int(math.ceil(tot.get(r, 0.0) - 1e-9)) for r in RESOURCE_NAMES}

    @property
    def csynth_totals(self) -> dict[str, int]:
        """Total resources as an HLS csynth report would show them (the calibration's csynth-level prediction)."""
        tot = zero_resources()
        for row in self.rows:
            tot = add_resources(tot, row.csynth or row.resources)
        tot = add_resources(tot, self.csynth_fifo or self.fifo)
        return {r: int(math.ceil(tot.get(r, 0.0) - 1e-9)) for r in RESOURCE_NAMES}

    @property
    def board_wrapper(self) -> dict[str, float]:
        """The block design around the accelerator (PS glue, AXI DMA, interconnect): the published PYNQ-Z2 one."""
        wrapper = self.calibration.get("board_wrapper") or {}
        return {r: float(wrapper.get(r, 0)) for r in RESOURCE_NAMES}

    @property
    def whole_design(self) -> dict[str, int]:
        """Predicted post-synthesis usage of the whole block design: the accelerator plus the board wrapper."""
        w = self.board_wrapper
        return {r: int(self.totals[r] + w[r]) for r in RESOURCE_NAMES}

    @property
    def band_pct(self) -> dict[str, float]:
        """The post-synthesis error band per resource (percent; leave-one-out p90 |error| of the calibration)."""
        band = self.calibration.get("post_synthesis_band_pct") or {}
        return {r: float(v) for r, v in band.items() if v is not None}

    def whole_design_upper(self) -> dict[str, float]:
        """The whole design widened by the band: what must stay within the board for "fits"."""
        band = self.band_pct
        return {r: self.whole_design[r] * (1.0 + band.get(r, 0.0) / 100.0) for r in RESOURCE_NAMES}

    def totals_by_op(self) -> dict[str, dict[str, float]]:
        """Resources summed per kind of layer: where a design's budget goes.

        Returns:
            ``op`` (``conv2d``, ``activation``, ...; ``fifo`` for the streams) -> resources and ``count``.
        """
        out: dict[str, dict[str, float]] = {}
        for row in self.rows:
            agg = out.setdefault(row.op, {**zero_resources(), "count": 0})
            for k in RESOURCE_NAMES:
                agg[k] += row.resources.get(k, 0.0)
            agg["count"] += 1
        out["fifo"] = {**{k: self.fifo.get(k, 0.0) for k in RESOURCE_NAMES}, "count": len(self.fifo_detail)}
        return out

    @property
    def available(self) -> dict[str, int] | None:
        """The board's resources (None without a board)."""
        return self.board.budget.as_dict() if self.board else None

    def utilization(self) -> dict[str, float | None]:
        """Percent of the board per resource (None where the board has none of it)."""
        avail = self.available or {}
        return {r: (100.0 * self.totals[r] / avail[r] if avail.get(r) else None) for r in RESOURCE_NAMES}

    def fits(self, margin: float | None = None) -> bool:
        """Whether the design fits the board.

        Args:
            margin: None (default) for the calibrated rule: the whole design (accelerator + board wrapper) widened
                by the post-synthesis band, ``(totals + wrapper) * (1 + band) <= available``, every resource (the
                rule of the planner's default caps and of ``estimate --hls-project``); a number for the
                accelerator's totals within ``(1 - margin)`` of the board (no wrapper, no band).
        """
        if self.board is None:
            raise EstimateError("no board to fit")
        avail = self.board.budget.as_dict()
        if margin is None:
            upper = self.whole_design_upper()
            return all(upper[r] <= avail[r] + 1e-9 for r in RESOURCE_NAMES)
        return all(self.totals[r] <= (1.0 - margin) * avail[r] for r in RESOURCE_NAMES)

    def over_budget(self) -> list[str]:
        """The resources that break the calibrated rule of :meth:`fits`."""
        if self.board is None:
            return []
        avail, upper = self.board.budget.as_dict(), self.whole_design_upper()
        return [r for r in RESOURCE_NAMES if upper[r] > avail[r] + 1e-9]

    @property
    def images_per_s(self) -> float:
        """Modeled throughput: clock / interval (the accelerator alone, no DMA or driver overhead)."""
        return self.clock_mhz * 1e6 / max(self.interval_cycles, 1)

    @property
    def latency_ms(self) -> float:
        """Approximate latency of one image in ms at the clock."""
        return self.latency_cycles / (self.clock_mhz * 1e3)

    @property
    def interval_ms(self) -> float:
        """The initiation interval in ms at the clock."""
        return self.interval_cycles / (self.clock_mhz * 1e3)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (per-layer rows included)."""
        return {
            "kind": "estimated",
            "project": self.project,
            "board": self.board.name if self.board else None,
            "clock_mhz": self.clock_mhz,
            "totals": self.totals,
            "totals_meaning": TOTALS_MEANING,
            **self._calibrated_fields(),
            "available": self.available,
            "utilization_pct": self.utilization() if self.board else None,
            "interval_cycles": self.interval_cycles,
            "bottleneck": self.bottleneck,
            "latency_cycles": self.latency_cycles,
            "latency_ms": self.latency_ms,
            "images_per_s": self.images_per_s,
            "layers": [
                {
                    "name": r.name,
                    "op": r.op,
                    "label": r.label,
                    "cycles": r.cycles,
                    "resources": {k: round(v, 1) for k, v in r.resources.items()},
                    "csynth": {k: round(v, 1) for k, v in r.csynth.items()},
                    "detail": r.detail,
                }
                for r in self.rows
            ],  # fmt: skip
            "fifo": {k: round(v, 1) for k, v in self.fifo.items()},
            "fifos": self.fifo_detail,
            "layer_config": self.layer_config,
            "fifo_depths": self.fifo_depths,
            "precision_warnings": [w.message for w in self.warnings],
            "calibration": self.summary,
            **throughput_band(),
        }

    def _calibrated_fields(self) -> dict[str, Any]:
        """The csynth-level totals, the band, the board wrapper, the whole design and the calibrated "fits"."""
        avail = self.available
        whole = self.whole_design
        return {
            "csynth_totals": self.csynth_totals,
            "band_pct": self.band_pct,
            "band_meaning": "post-synthesis error band per resource, percent: the calibration's leave-one-out 90th "
            "percentile |error| over the published designs (hls_build/calibration_fit.json)",
            "board_wrapper": self.board_wrapper,
            "board_wrapper_source": self.calibration.get("board_wrapper_source"),
            "whole_design": whole,
            "whole_design_range": {
                r: [
                    math.floor(whole[r] / (1.0 + self.band_pct.get(r, 0.0) / 100.0)),
                    math.ceil(self.whole_design_upper()[r]),
                ]
                for r in RESOURCE_NAMES
            },  # fmt: skip
            "whole_design_utilization_pct": (
                {r: (round(100.0 * whole[r] / avail[r], 1) if avail.get(r) else None) for r in RESOURCE_NAMES}
                if avail
                else None
            ),
            "fits": self.fits() if self.board else None,
            "fits_rule": FITS_RULE,
            "over_budget": self.over_budget(),
        }

    def to_manifest_entry(self) -> dict[str, Any]:
        """The manifest ``resources`` entry: ``kind: estimated`` (this model, before any synthesis)."""
        return {
            "kind": "estimated",
            "stage": "pre_synthesis",
            "source": "hls_build.estimate (analytical model of the hls4ml firmware, calibrated on published designs: "
            "hls_build/calibration_fit.json; see hls_build/README.md)",
            "scope": "the accelerator IP alone, predicted post-synthesis usage; the whole block design (with the "
            "board wrapper) is in 'whole_design'",
            **self.totals,
            **self._calibrated_fields(),
            "available": self.available,
            "utilization_pct": {k: (round(v, 1) if v is not None else None) for k, v in self.utilization().items()}
            if self.board
            else None,
            "interval_cycles": self.interval_cycles,
            "latency_cycles": self.latency_cycles,
            "clock_mhz": self.clock_mhz,
            "images_per_s": round(self.images_per_s, 1),
            "latency_ms": round(self.latency_ms, 3),
            "bottleneck": self.bottleneck,
            "layer_config": self.layer_config,
            "calibration": self.summary,
            **throughput_band(),
        }


#: What ``totals`` means in every estimate's JSON.
TOTALS_MEANING = ("predicted post-synthesis usage of the accelerator IP (csynth-level prediction times the published "
                  "post-synthesis / csynth ratio); csynth_totals: what the HLS report would show")  # fmt: skip
#: The rule "fits" is decided with, everywhere (estimate, plan, manifest, ``estimate --hls-project``).
FITS_RULE = ("whole design (accelerator post-synthesis prediction + board wrapper) times (1 + post-synthesis band) "
             "within the board's resources, every resource")  # fmt: skip


def throughput_band(path: str | Path | None = None) -> dict[str, Any]:
    """The error band of the estimated throughput, from the calibration's measured errors, for the manifest.

    The band is the larger of the interval's leave-one-out p90 |error| over the published csynth reports and the
    largest |error| of the estimated images/s against the throughputs measured on a board (MLPerf Tiny on a
    PYNQ-Z2), both in ``calibration_fit.json``.

    Returns:
        ``{"throughput_band_pct": float, "throughput_band_source": str}``, or ``{}`` without a calibration. The
        board runtime shows the estimate's images/s and latency with this band (``board/board_estimate.py``).
    """
    fit = load_fit(path)
    if not fit:
        return {}
    interval = (fit.get("summary") or {}).get("interval_cycles") or {}
    measured = {t["name"]: float(t["error_pct"]) for t in fit.get("throughput", []) if t.get("error_pct") is not None}
    candidates = []
    if interval.get("p90_abs_pct") is not None:
        candidates.append(float(interval["p90_abs_pct"]))
    candidates += [abs(e) for e in measured.values()]
    if not candidates:
        return {}
    listed = ", ".join(f"{name} {e:+g} %" for name, e in sorted(measured.items()))
    return {
        "throughput_band_pct": round(max(candidates), 1),
        **_throughput_range(fit, measured),
        "throughput_band_source": (
            f"larger of the interval's leave-one-out p90 |error| over {interval.get('n', 0)} published csynth reports "
            f"({interval.get('p90_abs_pct')} %) and the |error| against the throughput measured on a board"
            + (f" ({listed})" if listed else "")
            + "; hls_build/calibration_fit.json"
        ),
    }


def _throughput_range(fit: Mapping[str, Any], measured: Mapping[str, float]) -> dict[str, Any]:
    """The signed range of (true images/s) / (estimated images/s) over every check the calibration made.

    The symmetric band says how large the error was, not which way: an interval over-estimated by 132 % means the
    design ran 2.3x faster than estimated, while an interval under-estimated by 62 % means it ran at 0.38x. So
    ``images/s x (1 -/+ band)`` reaches zero once the band passes 100 % although no check came close to that.
    From each design's held-out interval error ``e = (estimate - csynth) / csynth`` the true images/s is the
    estimate times ``1 + e``; from each board's ``error_pct = (estimate - measured) / measured`` it is the
    estimate divided by ``1 + error_pct``. The range is the smallest and largest factor seen (not a percentile).

    Returns:
        ``{"throughput_range_factors": [low, high], "throughput_range_n": n}``, or ``{}`` without checks.
    """
    factors = []
    for d in fit.get("designs", []):
        e = (d.get("held_out_error_pct") or {}).get("interval_cycles")
        if e is not None and "interval_cycles" not in (d.get("not_independent") or []):
            factors.append(1.0 + float(e) / 100.0)
    factors += [1.0 / (1.0 + e / 100.0) for e in measured.values()]
    if not factors:
        return {}
    return {"throughput_range_factors": [round(min(factors), 3), round(max(factors), 3)],
            "throughput_range_n": len(factors)}  # fmt: skip


def _layer_multiplier(layer: Layer, overrides: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The binding of a conv/dense layer's products: the override's ``Multiplier``, else the firmware's."""
    o = overrides.get(layer.name) or {}
    impl = o.get("Multiplier", layer.detail.get("multiplier"))
    if impl is not None and impl not in ("dsp", "fabric"):
        raise EstimateError(f"{layer.name}: Multiplier {impl!r} is not dsp or fabric")
    return impl


def _layer_setting(layer: Layer, overrides: Mapping[str, Mapping[str, Any]]) -> tuple[int, str | None]:
    """The (ReuseFactor, strategy) a layer is estimated with.

    Without an override, the firmware's own values (as hls4ml wrote them, even an RF it did not validate, e.g. on a
    PointwiseConv2D). With one, a Resource ReuseFactor is made valid the way hls4ml does for Conv2D/Dense.
    """
    rf = int(layer.reuse_factor or 1)
    strategy = layer.strategy
    o = overrides.get(layer.name)
    if not o:
        return rf, strategy
    if "Strategy" in o and layer.op in ("conv2d", "dense"):
        strategy = str(o["Strategy"]).lower()
        if strategy not in ("resource", "latency"):
            raise EstimateError(f"{layer.name}: strategy {o['Strategy']!r} is not Resource or Latency")
    if "ReuseFactor" in o:
        rf = int(o["ReuseFactor"])
        if rf < 1:
            raise EstimateError(f"{layer.name}: ReuseFactor {rf} < 1")
        if layer.op in ("conv2d", "dense") and strategy == "resource":
            n_in, n_out = layer.mult_size  # type: ignore[misc]
            rf = closest_reuse_factor(n_in, n_out, rf)
    return rf, strategy


def estimate_design(
    graph: DesignGraph,
    board: str | BoardSpec | None = None,
    layer_config: Mapping[str, Mapping[str, Any]] | None = None,
    fifo_depths: Mapping[str, int] | None = None,
    coefficients: Coefficients | None = None,
    clock_mhz: float | None = None,
    check: bool = True,
) -> Estimate:
    """ESTIMATE the resources, interval and latency of ``graph``, optionally with other settings.

    Args:
        graph: the design (:func:`graph_from_project` and friends).
        board: a board name or spec to compare with (``UnknownBoardError`` for an unknown name).
        layer_config: per-layer ``{"ReuseFactor": rf, "Strategy": "Resource"|"Latency"}`` replacing the
            firmware's (a Resource ReuseFactor is made valid the way hls4ml does); ``"Multiplier": "dsp"|"fabric"``
            binds a conv/dense layer's products (``hls_build.bind``).
        fifo_depths: C++ stream name -> depth, replacing the firmware's depths.
        coefficients: the model's constants (default: the calibration ``calibration_fit.json`` for the graph's HLS
            tool; :meth:`Coefficients.csynth_level` for figures at csynth level, ``Coefficients()`` for the raw model).
        clock_mhz: clock for times and rates (default: the design's).
        check: run :func:`check_precision` and keep its warnings (logged as warnings).

    Returns:
        The :class:`Estimate`.
    """
    spec = board_spec(board) if isinstance(board, str) else board
    k = coefficients or load_coefficients(graph.hls_tool)
    k_csynth = k.csynth_level()
    family = dsp_family(spec.part if spec else graph.part)
    overrides = dict(layer_config or {})
    unknown = set(overrides) - {layer.name for layer in graph.layers}
    if unknown:
        raise EstimateError(f"layer_config names unknown layers: {sorted(unknown)}")
    rows: list[LayerCost] = []
    used_config: dict[str, dict[str, Any]] = {}
    for layer in graph.layers:
        rf, strategy = _layer_setting(layer, overrides)
        impl = _layer_multiplier(layer, overrides) if layer.op in ("conv2d", "dense") else None
        row = layer_cost(layer, rf, strategy, k, family, impl)
        if layer.tunable:
            used_config[layer.name] = {"ReuseFactor": rf}
            if layer.op in ("conv2d", "dense"):
                used_config[layer.name]["Strategy"] = (strategy or "resource").capitalize()
                if impl is not None:
                    used_config[layer.name]["Multiplier"] = impl
        rows.append(row)
    if graph.axi:
        in_s, out_s = graph.streams.get("in_local"), graph.streams.get("out_local")
        wrapper = zero_resources()
        widths = (in_s.width_bits if in_s else 0) + (out_s.width_bits if out_s else 0)
        wrapper["LUT"] += widths
        wrapper["FF"] += widths
        wrapper[LUT_CTRL] += 2 * k.layer_control_lut
        wrapper[FF_CTRL] += 2 * k.layer_control_ff
        n_in, n_out = graph.axi.get("n_in", 0), graph.axi.get("n_out", 0)
        rows.insert(0, LayerCost("axi_in", "axi", "AXI-Stream input loop", wrapper, n_in + 2, 2))
        rows.append(LayerCost("axi_out", "axi", "AXI-Stream output loop", zero_resources(), n_out + 2, 2))
    depths = {s.name: s.depth for s in graph.fifo_streams()}
    for name, d in (fifo_depths or {}).items():
        if name not in graph.streams:
            raise EstimateError(f"fifo_depths names unknown stream {name!r}")
        if int(d) < 1:
            raise EstimateError(f"FIFO depth of {name} must be >= 1 (got {d})")
        depths[name] = int(d)
    fifo_total = zero_resources()
    fifo_detail = []
    for s in graph.fifo_streams():
        sized = replace(s, depth=depths[s.name])
        cost = fifo_cost(sized, graph.hls_tool, k)
        fifo_total = add_resources(fifo_total, cost)
        kind = "BRAM" if cost["BRAM_18K"] else ("registers" if sized.depth <= 2 else "SRL")
        fifo_detail.append({
            "stream": s.name, "key": graph.keys.get(s.name), "depth": sized.depth, "width_bits": s.width_bits,
            "storage": kind, **{r: round(v, 1) for r, v in finish_resources(cost, k).items()},
        })  # fmt: skip
    parts = {r: dict.fromkeys(PART_KEYS, 0.0) for r in ("LUT", "FF")}
    for res in [row.resources for row in rows] + [fifo_total]:
        for r, split in raw_parts(res).items():
            for c, v in split.items():
                parts[r][c] += v
    for row in rows:
        row.csynth = finish_resources(row.resources, k_csynth)
        row.resources = finish_resources(row.resources, k)
    csynth_fifo = finish_resources(fifo_total, k_csynth)
    fifo_total = finish_resources(fifo_total, k)
    slowest = max(rows, key=lambda r: r.cycles)
    latency = slowest.cycles + sum(r.fill_cycles for r in rows if r is not slowest)
    est = Estimate(
        project=graph.project,
        board=spec,
        clock_mhz=float(clock_mhz or graph.clock_mhz),
        rows=rows,
        fifo=fifo_total,
        fifo_detail=fifo_detail,
        interval_cycles=int(slowest.cycles),
        bottleneck=slowest.name,
        latency_cycles=int(latency),
        layer_config=used_config,
        fifo_depths=depths,
        summary=calibration_summary() if k.source != "uncalibrated" else "raw model, uncalibrated coefficients",
        parts=parts,
        csynth_fifo=csynth_fifo,
        calibration=calibration_bands(),
    )
    if check:
        est.warnings = check_precision(graph)
        for w in est.warnings:
            log.warning("%s", w.message)
    return est
