"""Calibrate the pre-synthesis ESTIMATE on every public hls4ml synthesis result in ``hls_build/calibration_designs/``.

Each design folder holds what the estimate reads (the firmware headers and config files of an hls4ml project, no
weights), the reports its authors committed (HLS ``*_csynth.rpt``; Vivado ``report_utilization`` after synthesis
where published; C/RTL co-simulation where published) and ``design.json``: the repository, commit and paths every
file was copied from, where the firmware came from, and the HLS tool. Every reported figure is read from those
files by :func:`reported`; none is typed in.

The fit (:func:`calibrate`):

* **LUT, FF (csynth)**: the estimate's bit-level operator counts come in the cost model's categories
  (``hls_build.estimate.cost.PART_KEYS``: multiply-accumulate arithmetic, reuse-loop selects, other datapath logic,
  per-process control, storage bits); the csynth figure is modelled as a sum of non-negative factors times those
  counts, one factor per group of :data:`FIT_GROUPS` (datapath arithmetic and storage share one, selects and
  control have their own), fitted by least squares on the *relative* error over all designs. The grouping is
  physical (see :data:`FIT_GROUPS`), not chosen by its leave-one-out error: a free factor per category has the
  lower leave-one-out error on these 9 designs but fits nonsense factors (element-wise logic x12, control x0)
  that put a logic-heavy design (the project's ResNets, with their Adds) at several times its bit-level cost.
  The leave-one-out (LOO) estimate of a design is the same fit without it.
* **Post-synthesis**: Vivado's synthesized LUT/FF/BRAM/DSP over the csynth figure, per resource, from every
  published pair (geometric mean); the post-synthesis prediction is the csynth prediction times that ratio.
* **DSP, interval**: the binding rule and cycle model of :mod:`hls_build.estimate` with their discrete constants
  chosen by grid search (the DSP rule's operand width; per HLS tool the interval constants), again in every
  leave-one-out run. **BRAM_18K**: the binding rules, nothing fitted.
* **Board wrapper**: the block design around the accelerator (PS glue, AXI DMA, interconnect) from a published
  PYNQ-Z2 design (:func:`board_wrapper`).

Error band of a resource: the 90th percentile of the LOO |error| over the designs (the median is reported too);
the post-synthesis band is never below it. The measured throughputs (:mod:`hls_build.throughput_check`) are a
check of the interval model, not part of the fit.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hls_build.boards import RESOURCE_NAMES
from hls_build.estimate.cost import FIT_FILE, PART_KEYS
from hls_build.estimate.cost import load_fit as _load_fit
from hls_build.hls_project import DESIGNS_DIR, HlsProjectError, read_project

FIT_RESOURCES = ("LUT", "FF")
CHECK_RESOURCES = ("BRAM_18K", "DSP", "FF", "LUT")


class CalibrationError(HlsProjectError):
    """A calibration design or its reports are missing or unreadable."""


# ------------------------------------------------------------------------------------------------------ reports
def _table_row(text: str, section: str, row: str) -> list[str] | None:
    """Cells of the first ``|row ...|`` line after ``section`` (HLS text reports)."""
    start = text.find(section)
    if start < 0:
        return None
    m = re.search(rf"^\|{re.escape(row)}\s*\|(.*)$", text[start:], re.MULTILINE)
    return [c.strip() for c in m.group(1).split("|")] if m else None


def _cell_int(cell: str) -> int:
    cell = cell.strip().rstrip("~").strip()
    return int(cell) if re.fullmatch(r"\d+", cell) else 0


def parse_csynth_rpt(text: str) -> dict[str, Any]:
    """The top-level figures of an HLS ``<top>_csynth.rpt`` (Vivado HLS 2019-2020, Vitis HLS 2020-2024).

    Returns:
        ``tool`` (``Vivado HLS``/``Vitis HLS``), ``version``, ``part``, ``clock_ns``, ``totals`` and ``available``
        (``BRAM_18K``, ``DSP``, ``FF``, ``LUT``, ``URAM``), ``fifo`` (the FIFO row), ``latency_cycles``,
        ``interval_cycles`` (max of the summary).

    Raises:
        CalibrationError: the utilization summary is not found.
    """
    out: dict[str, Any] = {}
    m = re.search(r"==\s+(Vivado HLS|Vitis HLS) Report for '(\w+)'", text)
    out["tool"], out["top"] = (m.group(1), m.group(2)) if m else (None, None)
    for key, pat in (("version", r"\* Version:\s+(\S+)"), ("part", r"\* Target device:\s+(\S+)")):
        m = re.search(pat, text)
        out[key] = m.group(1) if m else None
    m = re.search(r"\|ap_clk\s*\|\s*([\d.]+)\s*ns", text)
    out["clock_ns"] = float(m.group(1)) if m else None
    header = re.search(r"== Utilization Estimates.*?\n\|\s*Name\s*\|(.*?)\|\s*\n", text, re.DOTALL)
    if not header:
        raise CalibrationError("csynth report: no 'Utilization Estimates' summary")
    cols = [c.strip().replace("DSP48E", "DSP") for c in header.group(1).split("|")]
    sec = text[header.start() :]

    def row(name: str) -> dict[str, int] | None:
        cells = _table_row(sec, "", name)
        if cells is None:
            return None
        return {c: _cell_int(v) for c, v in zip(cols, cells) if c in RESOURCE_NAMES}

    out["totals"] = row("Total")
    out["available"] = row("Available")
    out["fifo"] = row("FIFO")
    if out["totals"] is None:
        raise CalibrationError("csynth report: no Total row in the utilization summary")
    lat = re.search(r"\+ Latency:.*?\n\s*\|\s*([\d?]+)\|\s*([\d?]+)\|[^|]*\|[^|]*\|\s*([\d?]+)\|\s*([\d?]+)\|", text,
                    re.DOTALL)  # fmt: skip
    if lat:
        vals = [int(v) if v.isdigit() else None for v in lat.groups()]
        out["latency_cycles"], out["interval_cycles"] = vals[1], vals[3]
    return out


def parse_cosim_rpt(text: str) -> dict[str, Any] | None:
    """Latency and interval (max) of the Verilog row of a ``<top>_cosim.rpt``; None without a passing row."""
    m = re.search(r"\|\s*Verilog\|\s*Pass\|\s*(\d+)\|\s*(\d+)\|\s*(\d+)\|\s*(\d+)\|\s*(\d+)\|\s*(\d+)\|", text)
    if not m:
        return None
    v = [int(x) for x in m.groups()]
    return {"latency_cycles": v[2], "interval_cycles": v[5]}


# ------------------------------------------------------------------------------------------------------ designs
@dataclass
class CalibrationDesign:
    """One published design of the calibration set.

    Attributes:
        name: folder name.
        folder: the design folder.
        meta: ``design.json``.
        has_firmware: whether the folder holds a readable hls4ml project (else: reports only, for the
            csynth -> post-synthesis ratios).
    """

    name: str
    folder: Path
    meta: dict[str, Any]
    has_firmware: bool = field(default=False)

    @property
    def part(self) -> str | None:
        """The part of its csynth report (None without one)."""
        if "csynth" not in self.meta.get("reports", {}):
            return None
        return reported(self)["csynth"].get("part")

    @property
    def source(self) -> dict[str, Any]:
        """Repository, commit and paths."""
        return self.meta["source"]


def load_designs(folder: str | Path | None = None) -> list[CalibrationDesign]:
    """Every design folder (with a ``design.json``) under ``folder``, sorted by name."""
    folder = Path(folder) if folder is not None else DESIGNS_DIR
    out = []
    for meta_path in sorted(folder.glob("*/design.json")):
        meta = json.loads(meta_path.read_text())
        d = meta_path.parent
        out.append(CalibrationDesign(meta["name"], d, meta, (d / "firmware" / "parameters.h").is_file()))
    return out


def reported(design: CalibrationDesign) -> dict[str, Any]:
    """The published figures of a design, read from its committed reports."""
    reps = design.meta.get("reports", {})
    out: dict[str, Any] = {}
    if "csynth" in reps:
        out["csynth"] = parse_csynth_rpt((design.folder / reps["csynth"]).read_text(errors="replace"))
    for key in ("synth", "whole_design_placed", "dma_synth"):  # Vivado report_utilization files
        if key in reps:
            from hls_build.reports import parse_utilization_report

            util = parse_utilization_report(design.folder / reps[key])
            out[key] = {**{r: util.used.get(r) for r in RESOURCE_NAMES}, "device": util.device,
                        "tool_version": util.tool_version, "design_state": util.design_state}  # fmt: skip
    if "cosim" in reps:
        out["cosim"] = parse_cosim_rpt((design.folder / reps["cosim"]).read_text(errors="replace"))
    return out


def csynth_available(design: CalibrationDesign) -> dict[str, int] | None:
    """The part's resources as the csynth report's ``Available`` row states them."""
    rep = reported(design).get("csynth") or {}
    return rep.get("available")


# -------------------------------------------------------------------------------------------------- raw features
#: Discrete constants chosen on the calibration set (grid search; the leave-one-out runs choose them again).
DSP_SUM_BITS_GRID = tuple(range(12, 37))
CONV_CYCLES_GRID = (1, 2, 3, 4)
MAC_DEPTH_GRID = tuple(range(0, 11))  # a multiply-accumulate pipeline of up to 10 stages
LATENCY_CONV_CYCLES_GRID = (1, 2, 3, 4)
REUSE_II_GRID = (1, 2)
INTERVAL_GRID = tuple(
    (c, m, lc, ii)
    for c in CONV_CYCLES_GRID
    for m in MAC_DEPTH_GRID
    for lc in LATENCY_CONV_CYCLES_GRID
    for ii in REUSE_II_GRID
)
INTERVAL_KEYS = ("conv_cycles_per_input", "mac_pipeline_depth", "conv_latency_cycles_per_input", "reuse_loop_ii")


def design_graph(design: CalibrationDesign) -> Any:
    """The design graph of a calibration design, for the part of its csynth report."""
    graph, _ = read_project(design.folder, part=design.part, hls_tool=design.meta.get("hls_tool"))
    return graph


def raw_estimate(graph: Any, **coefficients: Any) -> dict[str, Any]:
    """The raw model's estimate (no fitted factor, no ratio): LUT/FF parts, BRAM, DSP, interval.

    Args:
        graph: the design graph.
        **coefficients: :class:`hls_build.estimate.Coefficients` fields to set (the discrete constants).
    """
    from hls_build import estimate as est

    k = est.Coefficients(**coefficients)
    e = est.estimate_design(graph, None, coefficients=k, check=False)
    return {
        "LUT": dict(e.parts["LUT"]),
        "FF": dict(e.parts["FF"]),
        "BRAM_18K": e.totals["BRAM_18K"],
        "DSP": e.totals["DSP"],
        "URAM": e.totals["URAM"],
        "interval_cycles": e.interval_cycles,
        "latency_cycles": e.latency_cycles,
    }


def _log_err(pred: float, ref: float) -> float:
    return abs(math.log((pred + 1.0) / (ref + 1.0)))


def _predict(parts: dict[str, float], coef: tuple[float, ...]) -> float:
    return sum(c * parts[k] for c, k in zip(coef, PART_KEYS))


#: The fitted factors, each shared by the cost model's categories (``PART_KEYS``) it names: three physically
#: distinct kinds of logic that an HLS report counts at different multiples of their bit-level cost. Datapath: the
#: operators whose size grows with the data width on carry chains and registers (multipliers, adders, element-wise
#: logic, registers, SRLs), one factor for all, since they are the same LUT/carry/register primitives; select: the
#: multiplexers of a Resource kernel's reuse loop (a csynth report sizes multiplexers in its own "Multiplexer"
#: tables); control: the per-process and per-FIFO loop counters, FSM and handshakes, a fixed cost per process that
#: does not grow with the data width (a one-channel ZeroPadding2D takes about 440 csynth LUTs, a 13-channel one
#: about the same).
FIT_GROUPS = {"datapath": ("mac", "logic", "storage"), "select": ("select",), "control": ("control",)}


def fit_logic(rows: list[tuple[dict[str, float], float]]) -> tuple[float, ...]:
    """Factors ``>= 0`` per category minimizing ``sum((sum(c_k * part_k) / target - 1)^2)`` (relative error).

    One factor per group of :data:`FIT_GROUPS`, returned per category of ``PART_KEYS``.
    """
    from scipy.optimize import nnls

    groups = list(FIT_GROUPS.values())
    a = np.array([[sum(p[k] for k in g) / t for g in groups] for p, t in rows], dtype=float)
    coef, _ = nnls(a, np.ones(len(rows)))
    per = {k: round(float(c), 4) for c, g in zip(coef, groups) for k in g}  # as stored in calibration_fit.json
    return tuple(per[k] for k in PART_KEYS)


def _pct(pred: float | None, ref: float | None) -> float | None:
    if pred is None or not ref:
        return None
    return round(100.0 * (pred - ref) / ref, 1)


def _stats(errors: list[float]) -> dict[str, Any]:
    vals = sorted(abs(e) for e in errors if e is not None)
    if not vals:
        return {"n": 0, "median_abs_pct": None, "p90_abs_pct": None, "max_abs_pct": None}
    return {"n": len(vals), "median_abs_pct": round(float(np.median(vals)), 1),
            "p90_abs_pct": round(float(np.percentile(vals, 90)), 1), "max_abs_pct": round(vals[-1], 1)}  # fmt: skip


def post_synthesis_ratios(designs: list[CalibrationDesign], leave_out: str | None = None) -> dict[str, Any]:
    """Synthesized / csynth per resource from every design that publishes both (geometric mean), and the pairs."""
    pairs: dict[str, list[float]] = {r: [] for r in CHECK_RESOURCES}
    names = []
    for d in designs:
        if d.name == leave_out:
            continue
        rep = reported(d)
        if "synth" not in rep or "csynth" not in rep:
            continue
        names.append(d.name)
        for r in CHECK_RESOURCES:
            c, s = rep["csynth"]["totals"].get(r), rep["synth"].get(r)
            if c and s is not None:
                pairs[r].append(s / c)
    ratios = {r: (round(float(math.exp(np.mean(np.log(v)))), 3) if v else None) for r, v in pairs.items()}
    return {"ratios": ratios, "pairs": {r: [round(x, 3) for x in v] for r, v in pairs.items()}, "designs": names}


def board_wrapper(designs: list[CalibrationDesign]) -> dict[str, Any] | None:
    """The block design around the accelerator (PS glue, AXI DMA, interconnect), from a design that publishes both.

    Returns:
        ``{"design", "part", "resources": whole placed design minus the synthesized accelerator IP, "whole_design",
        "accelerator", "dma_alone"}``, or None when no design publishes a whole block design.
    """
    for d in designs:
        rep = reported(d)
        if "whole_design_placed" in rep and "synth" in rep:
            whole, acc = rep["whole_design_placed"], rep["synth"]
            return {
                "design": d.name,
                "part": d.part,
                "note": d.meta.get("board_wrapper_note"),
                "resources": {r: max(0, (whole[r] or 0) - (acc[r] or 0)) for r in RESOURCE_NAMES},
                "whole_design": {r: whole[r] for r in RESOURCE_NAMES},
                "accelerator": {r: acc[r] for r in RESOURCE_NAMES},
                "dma_alone": {r: rep["dma_synth"][r] for r in RESOURCE_NAMES} if "dma_synth" in rep else None,
            }
    return None


def calibrate(folder: str | Path | None = None) -> dict[str, Any]:
    """Re-read every design, fit, and compute in-sample and leave-one-out errors (see the module docstring).

    Fitted on the designs (and refitted without each one, or without its group of designs that share one
    firmware, for its leave-one-out estimate): the DSP binding rule (``dsp_min_sum_bits``: a product goes to
    DSP48 when its operands are together at least that wide), the interval constants per HLS tool
    (``conv_cycles_per_input``, ``mac_pipeline_depth``, ``conv_latency_cycles_per_input``, ``reuse_loop_ii``), each
    by grid search on the summed |log error| of the csynth DSP count / interval;
    then the LUT and FF factors (least squares on the relative csynth error).

    Returns:
        ``{"designs": [{"name", "source", "part", "firmware_origin", "reported", "estimated", "held_out_estimate",
        "error_pct", "held_out_error_pct"}, ...], "coefficients", "post_synthesis", "summary", "band_pct"}``.
    """
    designs = load_designs(folder)
    # Designs with firmware AND a csynth report are fitted; a report-only design gives csynth -> synthesis
    # ratios, a firmware-only one (measured throughput) is checked by hls_build.throughput_check.
    est_designs = [d for d in designs if d.has_firmware and "csynth" in d.meta.get("reports", {})]
    if not est_designs:
        raise CalibrationError(f"no calibration design with firmware under {folder or DESIGNS_DIR}")
    rep = {d.name: reported(d) for d in designs}
    graphs = {d.name: design_graph(d) for d in est_designs}
    by_dsp = {(d.name, t): raw_estimate(graphs[d.name], dsp_min_sum_bits=t) for d in est_designs
              for t in DSP_SUM_BITS_GRID}  # fmt: skip
    intervals = {
        (d.name, g): raw_estimate(graphs[d.name], **dict(zip(INTERVAL_KEYS, g)))["interval_cycles"]
        for d in est_designs
        for g in INTERVAL_GRID
    }
    tool = {d.name: d.meta.get("hls_tool", "vitis") for d in est_designs}

    def group(d: CalibrationDesign) -> str:
        return d.meta.get("group", d.name)

    def choose(skip: str | None) -> dict[str, Any]:
        """The discrete constants and the LUT/FF factors fitted without group ``skip``."""
        use = [d for d in est_designs if group(d) != skip]
        dsp_use = [d for d in use if d.meta.get("independent", {}).get("DSP", True)]
        t = min(
            DSP_SUM_BITS_GRID,
            key=lambda t: sum(
                _log_err(by_dsp[(d.name, t)]["DSP"], rep[d.name]["csynth"]["totals"]["DSP"]) for d in dsp_use
            ),
        )
        iv_use = [d for d in use if rep[d.name]["csynth"].get("interval_cycles")
                  and d.meta.get("independent", {}).get("interval_cycles", True)]  # fmt: skip

        def best(ds: list[CalibrationDesign]) -> dict[str, int]:
            def cost(g: tuple[int, ...]) -> float:
                return sum(_log_err(intervals[(d.name, g)], rep[d.name]["csynth"]["interval_cycles"]) for d in ds)

            return dict(zip(INTERVAL_KEYS, min(INTERVAL_GRID, key=cost)))

        # The two tools schedule the same C++ differently: constants per tool (all designs' where a tool has none).
        every = best(iv_use)
        per_tool = {}
        for name in ("vitis", "vivado_hls"):
            mine = [d for d in iv_use if tool[d.name] == name]
            per_tool[name] = best(mine) if mine else every
        logic = {res: fit_logic([(by_dsp[(d.name, t)][res], rep[d.name]["csynth"]["totals"][res]) for d in use])
                 for res in FIT_RESOURCES}  # fmt: skip
        return {"dsp_min_sum_bits": t, "interval": per_tool, "logic": logic}

    def prediction(name: str, p: dict[str, Any], ratios: dict[str, float | None]) -> dict[str, Any]:
        r = by_dsp[(name, p["dsp_min_sum_bits"])]
        # rounded up like every estimate's totals (hls_build.estimate.Estimate.csynth_totals)
        csynth = {res: math.ceil(_predict(r[res], p["logic"][res]) - 1e-9) for res in FIT_RESOURCES}
        csynth.update({res: r[res] for res in ("BRAM_18K", "DSP", "URAM")})
        synth = {res: (round(csynth[res] * ratios[res]) if ratios.get(res) else None) for res in CHECK_RESOURCES}
        consts = p["interval"][tool[name]]
        interval = intervals[(name, tuple(consts[k] for k in INTERVAL_KEYS))]
        return {"csynth": csynth, "synth": synth, "interval_cycles": interval}

    params = choose(None)
    ratios_all = post_synthesis_ratios(designs)
    out_designs = []
    errs: dict[str, dict[str, list[float]]] = {k: {r: [] for r in CHECK_RESOURCES} for k in ("in", "loo", "synth")}
    interval_errs: dict[str, list[float]] = {"in": [], "loo": []}
    for d in est_designs:
        held_params = choose(group(d))
        ratios_loo = post_synthesis_ratios(designs, leave_out=d.name)["ratios"]
        inside = prediction(d.name, params, ratios_all["ratios"])
        held = prediction(d.name, held_params, ratios_loo)
        csyn = rep[d.name]["csynth"]
        independent = d.meta.get("independent", {})
        e_in = {r: _pct(inside["csynth"][r], csyn["totals"][r]) for r in CHECK_RESOURCES}
        e_loo = {r: _pct(held["csynth"][r], csyn["totals"][r]) for r in CHECK_RESOURCES}
        e_syn = {}
        if "synth" in rep[d.name]:
            e_syn = {r: _pct(held["synth"][r], rep[d.name]["synth"][r]) for r in CHECK_RESOURCES}
        for r in CHECK_RESOURCES:
            if independent.get(r, True):
                errs["in"][r].append(e_in[r])
                errs["loo"][r].append(e_loo[r])
                if e_syn.get(r) is not None:
                    errs["synth"][r].append(e_syn[r])
        iv_in = _pct(inside["interval_cycles"], csyn.get("interval_cycles"))
        iv_loo = _pct(held["interval_cycles"], csyn.get("interval_cycles"))
        if iv_loo is not None and independent.get("interval_cycles", True):
            interval_errs["in"].append(iv_in)
            interval_errs["loo"].append(iv_loo)
        out_designs.append({
            "name": d.name,
            "title": d.meta.get("title"),
            "source": {**d.source, "files": d.meta.get("files", {})},
            "part": d.part,
            "hls_tool": f"{csyn.get('tool')} {csyn.get('version')}",
            "firmware_origin": d.meta.get("firmware_origin"),
            "group": group(d),
            "reported": dict(rep[d.name]),
            "estimated": inside,
            "held_out_estimate": held,
            "held_out_constants": {k: v for k, v in held_params.items() if k != "logic"},
            "error_pct": {"csynth": e_in, "interval_cycles": iv_in},
            "held_out_error_pct": {"csynth": e_loo, "synth": e_syn or None, "interval_cycles": iv_loo},
            "not_independent": sorted(r for r, v in independent.items() if not v),
        })  # fmt: skip
    summary = {
        "csynth_in_sample": {r: _stats(errs["in"][r]) for r in CHECK_RESOURCES},
        "csynth_leave_one_out": {r: _stats(errs["loo"][r]) for r in CHECK_RESOURCES},
        "synth_leave_one_out": {r: _stats(errs["synth"][r]) for r in CHECK_RESOURCES},
        "interval_cycles": _stats(interval_errs["loo"]),
        "interval_cycles_in_sample": _stats(interval_errs["in"]),
    }
    band = {r: summary["csynth_leave_one_out"][r]["p90_abs_pct"] for r in CHECK_RESOURCES}
    # Post-synthesis band: the post-synthesis leave-one-out p90 where two or more designs publish both figures,
    # else (and never below) the csynth band.
    band_post = {}
    for r in CHECK_RESOURCES:
        post = summary["synth_leave_one_out"][r]
        band_post[r] = max(x for x in (band[r], post["p90_abs_pct"] if post["n"] >= 2 else None) if x is not None)
    return {
        "format": "hls_build-calibration-fit",
        "about": "ESTIMATE calibration on published hls4ml designs (hls_build/calibration_designs); "
        "refresh with `python -m hls_build calibrate --write`. Errors in percent, positive = estimate too high.",
        "coefficients": {res: dict(zip(PART_KEYS, params["logic"][res])) for res in FIT_RESOURCES},
        "constants": {k: v for k, v in params.items() if k != "logic"},
        "post_synthesis": ratios_all,
        "summary": summary,
        "band_pct": band,
        "post_synthesis_band_pct": band_post,
        "board_wrapper": board_wrapper(designs),
        "designs": out_designs,
        "reports_only": [d.name for d in designs if not d.has_firmware],
        "not_fitted": [d.name for d in designs if d.has_firmware and d not in est_designs],
    }


def load_fit(path: str | Path | None = None) -> dict[str, Any] | None:
    """The committed fit (``calibration_fit.json``), or None when there is none."""
    return _load_fit(path)


def format_summary(fit: dict[str, Any]) -> str:
    """The calibration as a short text table (per design LOO errors, then median / p90 per resource)."""
    lines = [f"CALIBRATION of the ESTIMATE on {len(fit['designs'])} published hls4ml designs "
             f"(+{len(fit['reports_only'])} report-only pairs for csynth -> post-synthesis)"]  # fmt: skip
    head = f"{'design':24s} {'part':22s} " + " ".join(f"{r + ' csyn/LOO %':>20s}" for r in CHECK_RESOURCES)
    lines.append(head)
    for d in fit["designs"]:
        cells = []
        for r in CHECK_RESOURCES:
            rep = d["reported"]["csynth"]["totals"][r]
            e = d["held_out_error_pct"]["csynth"][r]
            mark = "*" if r in d["not_independent"] else ""
            cells.append(f"{rep:>10d} {('-' if e is None else f'{e:+.0f}') + mark:>9s}")
        lines.append(f"{d['name']:24s} {str(d['part']):22s} " + " ".join(cells))
    s = fit["summary"]
    for key, label in (("csynth_in_sample", "csynth in-sample"), ("csynth_leave_one_out", "csynth leave-one-out"),
                       ("synth_leave_one_out", "post-synthesis LOO")):  # fmt: skip
        lines.append(
            f"{label:24s} |error| median / p90 (n): "
            + "; ".join(f"{r} {v['median_abs_pct']} / {v['p90_abs_pct']} ({v['n']})" for r, v in s[key].items())
        )
    iv = s["interval_cycles"]
    lines.append(
        f"interval vs csynth: |error| median {iv['median_abs_pct']} %, p90 {iv['p90_abs_pct']} % (n={iv['n']})"
    )
    ps = fit["post_synthesis"]
    lines.append(f"post-synthesis / csynth (geometric mean of {len(ps['designs'])} pairs): {ps['ratios']}")
    lines.append("* = not an independent check for that design (see its design.json)")
    return "\n".join(lines)


def rebuild_firmware(design: CalibrationDesign, work_dir: str | Path | None = None) -> list[str]:
    """Write ``firmware/`` of a 'rebuilt' design from its description (needs TensorFlow and hls4ml 1.3).

    Returns:
        The files written, relative to the design folder (headers only, no weights).
    """
    from hls_build import estimate as est

    spec = design.meta.get("rebuild")
    if not spec:
        raise CalibrationError(f"{design.name}: design.json has no 'rebuild' description")
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        est.build_calibration_graph({**spec, "id": "prj"}, tmp)
        # No AXI wrapper: these designs are the bare accelerator.
        return copy_project_headers(Path(tmp) / "prj", design, [f for f in PROJECT_HEADERS if "_axi" not in f])


# The files of a generated hls4ml project that a calibration design keeps: headers and scripts, never weights.
PROJECT_HEADERS = (
    "firmware/myproject.cpp",
    "firmware/parameters.h",
    "firmware/defines.h",
    "firmware/myproject_axi.cpp",
    "firmware/myproject_axi.h",
    "project.tcl",
    "build_prj.tcl",
)


def copy_project_headers(project: Path, design: CalibrationDesign, files: Sequence[str] = PROJECT_HEADERS) -> list[str]:
    """Copy those of ``files`` (default :data:`PROJECT_HEADERS`) that a generated project has into the design's folder.

    Returns:
        The files written, relative to the design folder.
    """
    written = []
    for rel in files:
        src = project / rel
        if src.is_file():
            dst = design.folder / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            written.append(rel)
    return written


# --------------------------------------------------------------------------------------------- any hls4ml project
def estimate_hls_project(
    path: str | Path, part: str | None = None, hls_tool: str | None = None, fit: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The calibrated ESTIMATE of an hls4ml project folder, as the JSON ``estimate --hls-project`` writes.

    The same estimator as every other estimate (:func:`hls_build.estimate.estimate_design` with the coefficients of
    the fit): ``totals`` is the csynth-level prediction (the figures an HLS report would show), ``post_synthesis``
    the predicted Vivado figures after synthesis (the fitted ratios), ``band_pct`` the calibration's 90th-percentile
    leave-one-out |error| per resource, ``range`` the totals widened by that band; "fits" is decided on the whole
    design (post-synthesis prediction plus the board wrapper) widened by the post-synthesis band. Per-layer rows
    are at csynth level.

    Raises:
        HlsProjectError: see :func:`hls_build.hls_project.read_project`.
        CalibrationError: no committed fit (run ``python -m hls_build calibrate --write``).
    """
    from hls_build import estimate as est
    from hls_build.hls_project import part_resources

    fit = fit or load_fit()
    if fit is None:
        raise CalibrationError(f"{FIT_FILE} not found: run `python -m hls_build calibrate --write` first")
    graph, info = read_project(path, part=part, hls_tool=hls_tool)
    k = est.coefficients_from_fit(fit, info.hls_tool)
    try:
        e = est.estimate_design(graph, None, coefficients=k, check=False)
    except (est.EstimateError, KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        # an hls4ml layer or setting the cost model does not know: say so instead of a traceback
        raise HlsProjectError(f"{info.root}: the estimator cannot cost this firmware ({exc!r})") from exc
    totals: dict[str, Any] = e.csynth_totals
    post: dict[str, Any] = e.totals
    band = fit["band_pct"]
    band_post = fit.get("post_synthesis_band_pct", band)
    used_part = graph.part
    available = part_resources(used_part) if used_part else None

    def util(values: dict[str, Any]) -> dict[str, float | None] | None:
        if not available:
            return None
        return {r: (round(100.0 * values[r] / available[r], 1) if available.get(r) else None) for r in RESOURCE_NAMES}

    wrapper = (fit.get("board_wrapper") or {}).get("resources")
    whole = {r: post[r] + (wrapper or {}).get(r, 0) for r in RESOURCE_NAMES}
    fits = None
    if available:
        # "fits" on the post-synthesis prediction of the whole block design, widened by its error band.
        fits = all(whole[r] * (1 + (band_post.get(r) or 0) / 100) <= available[r] for r in RESOURCE_NAMES
                   if r in band_post and available.get(r))  # fmt: skip
    rows = []
    for row in e.rows:
        res = {r: round(row.csynth[r], 1) for r in RESOURCE_NAMES}
        rows.append({"name": row.name, "op": row.op, "label": row.label, "cycles": row.cycles, "resources": res})
    fifo = {r: round(e.csynth_fifo[r], 1) for r in RESOURCE_NAMES}
    return {
        "kind": "estimated",
        "stage": "pre_synthesis",
        "project": str(info.root),
        "project_name": info.name,
        "part": used_part,
        "backend": info.backend,
        "hls_tool": info.hls_tool,
        "clock_mhz": graph.clock_mhz,
        "totals": totals,
        "totals_meaning": "csynth-level ESTIMATE (what the HLS report would show), calibrated on the published "
        "designs of hls_build/calibration_designs",
        "post_synthesis": post,
        "band_pct": band,
        "range": {
            r: [
                math.floor(totals[r] * (1 - (band.get(r) or 0) / 100)),
                math.ceil(totals[r] * (1 + (band.get(r) or 0) / 100)),
            ]
            for r in RESOURCE_NAMES
            if r in band
        },  # fmt: skip
        "post_synthesis_band_pct": band_post,
        "board_wrapper": wrapper,
        "board_wrapper_source": (fit.get("board_wrapper") or {}).get("design"),
        "whole_design_post_synthesis": whole,
        "available": available,
        "utilization_pct": util(totals),
        "post_synthesis_utilization_pct": util(post),
        "whole_design_utilization_pct": util(whole),
        "fits": fits,
        "fits_rule": est.FITS_RULE,
        "interval_cycles": e.interval_cycles,
        "latency_cycles": e.latency_cycles,
        "bottleneck": e.bottleneck,
        "images_per_s": round(e.images_per_s, 1),
        "interval_error_pct": fit["summary"]["interval_cycles"],
        **est.throughput_band(),
        "layers": rows,
        "unmodelled_layers": [f"{layer.name} ({layer.function})" for layer in graph.layers if layer.op == "unknown"],
        "fifo": fifo,
        "calibration": f"{len(fit['designs'])} designs; leave-one-out |error| p90 per resource {band}",
    }


def format_project_estimate(result: dict[str, Any]) -> str:
    """The ``estimate --hls-project`` result as text."""
    lines = [f"== ESTIMATE (pre-synthesis) of {result['project']} ({result['project_name']}), part {result['part']}, "
             f"{result['clock_mhz']:g} MHz, {result['hls_tool']}"]  # fmt: skip
    lines.append(f"{'layer':36s} {'cycles':>8s} " + " ".join(f"{r:>9s}" for r in RESOURCE_NAMES))
    for row in result["layers"]:
        lines.append(f"{(row['name'] + ' (' + row['label'] + ')')[:36]:36s} {row['cycles']:>8d} "
                     + " ".join(f"{row['resources'][r]:>9.0f}" for r in RESOURCE_NAMES))  # fmt: skip
    lines.append(f"{'FIFOs':36s} {'':>8s} " + " ".join(f"{result['fifo'][r]:>9.0f}" for r in RESOURCE_NAMES))
    lines.append(f"{'Total (csynth-level)':36s} {result['interval_cycles']:>8d} "
                 + " ".join(f"{result['totals'][r]:>9d}" for r in RESOURCE_NAMES))  # fmt: skip
    lines.append(f"{'  +- band % (LOO p90)':36s} {'':>8s} "
                 + " ".join(f"{result['band_pct'].get(r) or 0:>9.0f}" for r in RESOURCE_NAMES))  # fmt: skip
    lines.append(f"{'Post-synthesis (predicted)':36s} {'':>8s} "
                 + " ".join(f"{result['post_synthesis'][r]:>9d}" for r in RESOURCE_NAMES))  # fmt: skip
    lines.append(f"{'Whole design incl. board wrapper':36s} {'':>8s} "
                 + " ".join(f"{result['whole_design_post_synthesis'][r]:>9d}" for r in RESOURCE_NAMES))  # fmt: skip
    if result["available"]:
        lines.append(f"{'Available':36s} {'':>8s} " + " ".join(f"{result['available'][r]:>9d}" for r in RESOURCE_NAMES))
    if result["unmodelled_layers"]:
        names = ", ".join(result["unmodelled_layers"])
        lines.append(f"WARNING: {len(result['unmodelled_layers'])} layer(s) the estimator does not model, costed "
                     f"as a plain pass-through (the totals are too low): {names}")  # fmt: skip
    if result["fits"] is not None:
        verdict = "FITS" if result["fits"] else "DOES NOT FIT"
        lines.append(f"{verdict} {result['part']} by the estimate: {result['fits_rule']} "
                     f"(post-synthesis band % {result['post_synthesis_band_pct']})")  # fmt: skip
    iv = result["interval_error_pct"]
    lines.append(
        f"Interval {result['interval_cycles']} cycles (bottleneck {result['bottleneck']}), latency "
        f"~{result['latency_cycles']} cycles, {result['images_per_s']} images/s at the clock; interval "
        f"|error| on the calibration set: median {iv['median_abs_pct']} %, p90 {iv['p90_abs_pct']} %"
    )
    if result.get("throughput_band_pct") is not None:
        lines.append(f"images/s band +-{result['throughput_band_pct']} % ({result['throughput_band_source']})")
    return "\n".join(lines)


def run_estimate_cli(path: str, part: str | None, hls_tool: str | None, json_path: str | None) -> int:
    """``python -m hls_build estimate --hls-project DIR``: print the estimate, optionally write its JSON."""
    result = estimate_hls_project(path, part=part, hls_tool=hls_tool)
    print(format_project_estimate(result))
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def run_calibrate_cli(json_path: str | None, write: bool, rebuild: str | None = None) -> int:
    """``python -m hls_build calibrate``: refit, print the table, optionally write the JSON / the fit file."""
    from hls_build import throughput_check

    if rebuild:
        designs = {d.name: d for d in load_designs()}
        if rebuild not in designs:
            raise CalibrationError(f"unknown calibration design {rebuild!r}; known: {', '.join(sorted(designs))}")
        if "rebuild_mlperf" in designs[rebuild].meta:
            print("\n".join(throughput_check.rebuild_firmware(designs[rebuild])))
        else:
            print("\n".join(rebuild_firmware(designs[rebuild])))
    fit = calibrate()
    # The measured throughputs check the interval model with the constants just fitted (not fitted on them).
    fit["throughput"] = [throughput_check.throughput_check(d, fit) for d in throughput_check.throughput_designs()]
    print(format_summary(fit))
    for t in fit["throughput"]:
        print(
            f"throughput {t['name']}: estimated {t['estimated_images_per_s']} images/s (accelerator alone, interval "
            f"{t['interval_cycles']} cycles at {t['clock_mhz']} MHz), measured {t['measured_images_per_s']} "
            f"inferences/s on the board: error {t['error_pct']:+.1f} %; {t['unmodelled_ms_per_image']} ms per "
            "image not covered by the interval model (transfers, driver, harness, interval error)"
        )
    text = json.dumps(fit, indent=1) + "\n"
    if json_path:
        Path(json_path).write_text(text)
    if write:
        FIT_FILE.write_text(text)
    return 0


def format_markdown(fit: dict[str, Any]) -> str:
    """The calibration's error tables in Markdown, as the README section "How far to trust the estimate" shows them."""
    s = fit["summary"]
    out = [
        f"Calibration set: {len(fit['designs'])} published hls4ml `io_stream` designs with firmware and csynth "
        f"report; {len(fit['post_synthesis']['designs'])} published csynth/post-synthesis pairs "
        f"({len(fit['reports_only'])} of them reports only). |error| in percent of the published figure; "
        "LOO = leave-one-out (the fit without that design).",
        "",
        "| Resource | csynth in-sample median / p90 | csynth LOO median / p90 / max "
        "| post-synthesis LOO median / p90 (n) | band used (LOO p90) |",
        "|---|---|---|---|---|",
    ]
    for r in CHECK_RESOURCES:
        i, lo, sy = s["csynth_in_sample"][r], s["csynth_leave_one_out"][r], s["synth_leave_one_out"][r]
        out.append(
            f"| {r} | {i['median_abs_pct']} / {i['p90_abs_pct']} | {lo['median_abs_pct']} / {lo['p90_abs_pct']} / "
            f"{lo['max_abs_pct']} | {sy['median_abs_pct']} / {sy['p90_abs_pct']} ({sy['n']}) | "
            f"{fit['band_pct'][r]} (post-synthesis {fit['post_synthesis_band_pct'][r]}) |"
        )
    iv, ivi = s["interval_cycles"], s["interval_cycles_in_sample"]
    out.append(
        f"| interval (cycles) | {ivi['median_abs_pct']} / {ivi['p90_abs_pct']} | {iv['median_abs_pct']} / "
        f"{iv['p90_abs_pct']} / {iv['max_abs_pct']} | - | - |"
    )
    out += ["", "| Design | part | HLS | LUT | LUT LOO | FF | FF LOO | BRAM_18K | BRAM LOO | DSP | DSP LOO |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for d in fit["designs"]:
        rep, e = d["reported"]["csynth"]["totals"], d["held_out_error_pct"]["csynth"]
        cells = []
        for r in ("LUT", "FF", "BRAM_18K", "DSP"):
            mark = " (input)" if r in d["not_independent"] else ""
            cells += [str(rep[r]), f"{e[r]:+.0f} %{mark}"]
        out.append(f"| `{d['name']}` | {d['part']} | {d['hls_tool']} | " + " | ".join(cells) + " |")
    coef = fit["coefficients"]
    out += [
        "",
        "Fitted csynth factors per category of the bit-level model (`PART_KEYS`; tied as `FIT_GROUPS` says): "
        + "; ".join(f"{r} " + ", ".join(f"{k} {v:g}" for k, v in coef[r].items()) for r in FIT_RESOURCES)
        + ".",
    ]
    ratios = fit["post_synthesis"]["ratios"]
    n_pairs = len(fit["post_synthesis"]["designs"])
    out += [f"Post-synthesis / csynth (geometric mean of {n_pairs} published pairs): LUT {ratios['LUT']}, "
            f"FF {ratios['FF']}, BRAM_18K {ratios['BRAM_18K']}, DSP {ratios['DSP']}."]  # fmt: skip
    w = fit.get("board_wrapper")
    if w:
        res = w["resources"]
        out.append(
            f"Board wrapper (PS glue, AXI DMA, interconnect; `{w['design']}`, {w['part']}): LUT {res['LUT']}, "
            f"FF {res['FF']}, BRAM_18K {res['BRAM_18K']}, DSP {res['DSP']} (whole placed design minus the "
            "synthesized accelerator)."
        )
    for t in fit.get("throughput", []):
        out.append(
            f"Throughput `{t['name']}`: {t['estimated_images_per_s']} images/s estimated (accelerator alone) vs "
            f"{t['measured_images_per_s']} measured on the board ({t['error_pct']:+.1f} %)."
        )
    return "\n".join(out)


if __name__ == "__main__":  # python -m hls_build.calibration_fit --markdown: the README's tables
    import sys

    data = load_fit()
    if data is None:
        sys.exit(f"error: {FIT_FILE} not found")
    print(format_markdown(data) if "--markdown" in sys.argv[1:] else format_summary(data))
