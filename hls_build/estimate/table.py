"""The ESTIMATE as an HLS-report-style table."""

from __future__ import annotations

import math
from collections.abc import Iterable

from hls_build.boards import RESOURCE_NAMES
from hls_build.estimate.design import FITS_RULE, Estimate, throughput_band

#: The table's column names, in the order HLS reports print them.
TABLE_COLUMNS = ("BRAM_18K", "DSP48E", "FF", "LUT", "URAM")


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{int(math.ceil(v - 1e-9)):d}"


def format_table(est: Estimate, title: str | None = None) -> str:
    """The estimate as an HLS-report-style table.

    Columns Name / BRAM_18K / DSP48E / FF / LUT / URAM (and cycles per image), one row per layer and the FIFOs
    (predicted post-synthesis figures), the accelerator's total, the csynth-level total (what the HLS report would
    show), the board wrapper, the whole design, its post-synthesis error band and upper end, Available and the
    whole design's utilization (%), under an ESTIMATE banner, followed by the calibrated "fits" verdict, interval,
    latency and throughput (with its band).
    """
    label = title or f"ESTIMATE (pre-synthesis, {est.summary})"
    name_w = max(28, *(len(f"{r.name} ({r.label})") for r in est.rows)) + 1
    cols = (*TABLE_COLUMNS, "Cycles/img")
    widths = (9, 7, 9, 9, 6, 11)
    sep = "+" + "-" * name_w + "+" + "+".join("-" * w for w in widths) + "+"

    def line(name: str, values: Iterable[str]) -> str:
        cells = "|".join(v.rjust(w) for v, w in zip(values, widths))
        return f"|{name.ljust(name_w)}|{cells}|"

    out = [f"== {label}", f"== project {est.project}; clock {est.clock_mhz:g} MHz"]
    if est.calibration:
        out.insert(1, "== rows and Total: predicted post-synthesis usage of the accelerator; csynth-level: what "
                   "the HLS report would show")  # fmt: skip
    if est.board:
        out[-1] += f"; board {est.board.name} ({est.board.part})"
    out += [sep, line("Name".center(name_w), [c.center(w) for c, w in zip(cols, widths)]), sep]
    for r in est.rows:
        res = r.resources
        out.append(line(f"{r.name} ({r.label})", [*(_fmt(res[k]) for k in RESOURCE_NAMES), str(r.cycles)]))
    n_fifo = len(est.fifo_detail)
    n_bram = sum(1 for f in est.fifo_detail if f["storage"] == "BRAM")
    out.append(line(f"FIFO ({n_fifo} streams, {n_bram} in BRAM)", [*(_fmt(est.fifo[k]) for k in RESOURCE_NAMES), ""]))
    out.append(sep)
    tot = est.totals
    out.append(line("Total", [*(str(tot[k]) for k in RESOURCE_NAMES), str(est.interval_cycles)]))
    csyn = est.csynth_totals
    out.append(line("  csynth-level (HLS report)", [*(str(csyn[k]) for k in RESOURCE_NAMES), ""]))
    if est.calibration:
        wrapper, whole, band = est.board_wrapper, est.whole_design, est.band_pct
        out.append(line("+ board wrapper", [*(_fmt(wrapper[k]) for k in RESOURCE_NAMES), ""]))
        out.append(line("Whole design", [*(str(whole[k]) for k in RESOURCE_NAMES), ""]))
        out.append(
            line("  band +-% (LOO p90)", [*("-" if k not in band else f"{band[k]:.0f}" for k in RESOURCE_NAMES), ""])
        )
        upper = est.whole_design_upper()
        out.append(line("  whole design + band", [*(_fmt(upper[k]) for k in RESOURCE_NAMES), ""]))
    if est.board:
        avail = est.board.budget.as_dict()
        out.append(sep)
        out.append(line("Available", [*(str(avail[k]) for k in RESOURCE_NAMES), ""]))
        out.append(sep)
        util = est.utilization()
        out.append(
            line("Utilization (%)", [*("-" if util[k] is None else f"{util[k]:.0f}" for k in RESOURCE_NAMES), ""])
        )
        if est.calibration:
            whole = est.whole_design
            out.append(line("  whole design (%)", [*(f"{100 * whole[k] / avail[k]:.0f}" if avail[k] else "-"
                                                     for k in RESOURCE_NAMES), ""]))  # fmt: skip
    out.append(sep)
    out.append(
        f"Interval: {est.interval_cycles} cycles = {est.interval_ms:.3f} ms at {est.clock_mhz:g} MHz "
        f"(bottleneck {est.bottleneck}) -> {est.images_per_s:.1f} images/s; latency ~{est.latency_cycles} cycles "
        f"= {est.latency_ms:.3f} ms (ESTIMATE; accelerator only, without DMA and driver time)"
        + (f"; throughput band +-{band['throughput_band_pct']} %" if (band := throughput_band()) else "")
    )
    by_op = sorted(est.totals_by_op().items(), key=lambda kv: -(kv[1]["LUT"] + kv[1]["FF"]))
    out.append(
        "By kind of layer (count: FF / LUT): "
        + "; ".join(f"{op} ({int(v['count'])}): {v['FF']:.0f} / {v['LUT']:.0f}" for op, v in by_op)
    )
    if est.board:
        verdict = "FITS" if est.fits() else f"DOES NOT FIT ({', '.join(est.over_budget())} over)"
        out.append(f"{verdict} {est.board.name} by the estimate: {FITS_RULE}")
    for w in est.warnings:
        out.append(f"WARNING: {w.message}")
    return "\n".join(out)
