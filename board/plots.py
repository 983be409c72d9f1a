"""PNG plots of a benchmark report: latency histogram, throughput vs batch size, FPGA vs CPU, power trace.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no display, no global backend change, so it works
headless on the board and inside notebooks alike). Each plot reads only the report dict, and says in its title
when the FPGA figures are host emulation. Missing data means no plot (e.g. no power trace off the ZCU104), never
an empty or invented one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PLOT_FILES", "write_plots"]

log = logging.getLogger(__name__)

#: Plot name -> file name in the report folder.
PLOT_FILES = {
    "latency_histogram": "latency_hist.png",
    "throughput_vs_batch": "throughput_vs_batch.png",
    "fpga_vs_cpu": "fpga_vs_cpu.png",
    "power_trace": "power_trace.png",
}
_FPGA_COLOR, _CPU_COLOR, _KERAS_COLOR = "#1f77b4", "#ff7f0e", "#2ca02c"
_CPU8_COLOR = "#d62728"


def _figure(width: float = 7.0, height: float = 4.2, ncols: int = 1) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _fpga_name(report: dict[str, Any]) -> str:
    return "FPGA (host emulation)" if report.get("emulated") else f"FPGA ({report['bundle']['board']})"


def _title(report: dict[str, Any], what: str) -> str:
    b = report["bundle"]
    engine = (report.get("engine") or {}).get("name")
    how = "bit-exact numpy emulation" if engine == "fast" else "C-simulation"
    suffix = f"\nFPGA figures: host {how}, NOT board timings" if report.get("emulated") else ""
    return f"{what}: {b['model_id']} on {b['board']}{suffix}"


def _per_image_ms(stats: dict[str, Any] | None) -> np.ndarray | None:
    if not stats or not stats.get("batch_ms"):
        return None
    return np.asarray(stats["batch_ms"], float) / np.asarray(stats["batch_images"], float)


def latency_histogram(report: dict[str, Any], path: Path) -> bool:
    """Histogram of per-image latency (batch time / batch size) of the FPGA and ONNX passes."""
    series = [
        (name, color, _per_image_ms(report["timing"].get(key)), report["timing"].get(key))
        for name, color, key in (
            (_fpga_name(report), _FPGA_COLOR, "fpga"),
            ("ONNX float (CPU)", _CPU_COLOR, "onnx"),
            ("ONNX 8-bit (CPU)", _CPU8_COLOR, "onnx_int8"),
        )
    ]
    series = [s for s in series if s[2] is not None and len(s[2])]
    if not series:
        return False
    fig, (ax,) = _figure()
    values = np.concatenate([s[2] for s in series])
    lo, hi = max(values.min(), 1e-6), max(values.max(), 1e-6)
    log_x = hi / lo > 20
    bins = np.geomspace(lo * 0.95, hi * 1.05, 40) if log_x else 40
    for name, color, ms, stats in series:
        ax.hist(ms, bins=bins, alpha=0.6, color=color, label=f"{name}: p50 {stats['image_ms_p50']:.3g} ms")
        ax.axvline(stats["image_ms_p50"], color=color, linestyle="-", linewidth=1.2)
        ax.axvline(stats["image_ms_p99"], color=color, linestyle="--", linewidth=1.2)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("latency per image (ms) = batch time / batch size;  solid p50, dashed p99")
    ax.set_ylabel("batches")
    ax.set_title(_title(report, "Latency per image"), fontsize=10)
    ax.legend(fontsize=8)
    fig.savefig(path)
    return True


def throughput_vs_batch(report: dict[str, Any], path: Path) -> bool:
    """Throughput and per-image latency (p50) against batch size, from the batch-size sweep."""
    from matplotlib.ticker import NullLocator

    sweep = report.get("sweep")
    rows = (sweep or {}).get("rows") or []
    if not rows:
        return False
    fig, (ax_t, ax_l) = _figure(9.0, 4.2, ncols=2)
    for key, name, color in (
        ("fpga", _fpga_name(report), _FPGA_COLOR),
        ("onnx", "ONNX float (CPU)", _CPU_COLOR),
        ("onnx_int8", "ONNX 8-bit (CPU)", _CPU8_COLOR),
    ):
        pts = [(r["batch_size"], r[key]) for r in rows if r.get(key)]
        if not pts:
            continue
        bs = [p[0] for p in pts]
        ax_t.plot(bs, [p[1]["images_per_s"] for p in pts], "o-", color=color, label=name)
        ax_l.plot(bs, [p[1]["image_ms_p50"] for p in pts], "o-", color=color, label=name)
    sizes = sorted({r["batch_size"] for r in rows})
    for ax in (ax_t, ax_l):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(s) for s in sizes])  # the swept sizes themselves, not 2x10^0
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("batch size (images per DMA transfer / ONNX call)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax_t.set_ylabel("throughput (images/s)")
    ax_l.set_ylabel("latency per image, p50 (ms)")
    fig.suptitle(_title(report, "Batch-size sweep"), fontsize=10)
    fig.savefig(path)
    return True


def fpga_vs_cpu(report: dict[str, Any], path: Path) -> bool:
    """Bars: top-1 of FPGA, the ONNX references and Keras on the same images; latency p50 (p99 whisker)."""
    acc, tim = report["accuracy"], report["timing"]
    bars = [
        (_fpga_name(report), acc.get("fpga_top1"), _FPGA_COLOR),
        ("ONNX float (CPU)", acc.get("onnx_top1"), _CPU_COLOR),
        ("ONNX 8-bit (CPU)", acc.get("onnx_int8_top1"), _CPU8_COLOR),
        ("Keras (same images)", acc.get("keras_top1_same_images"), _KERAS_COLOR),
    ]
    bars = [b for b in bars if b[1] is not None and np.isfinite(b[1])]
    paths = (
        (_fpga_name(report), "fpga", _FPGA_COLOR),
        ("ONNX float (CPU)", "onnx", _CPU_COLOR),
        ("ONNX 8-bit (CPU)", "onnx_int8", _CPU8_COLOR),
    )
    lat = [(name, tim.get(key), color) for name, key, color in paths if tim.get(key)]
    if not bars and not lat:
        return False
    fig, (ax_a, ax_l) = _figure(9.0, 4.2, ncols=2)
    if bars:
        xs = np.arange(len(bars))
        vals = [100 * b[1] for b in bars]
        ax_a.bar(xs, vals, color=[b[2] for b in bars])
        for x, v in zip(xs, vals):
            ax_a.text(x, v, f"{v:.1f} %", ha="center", va="bottom", fontsize=9)
        ax_a.set_xticks(xs, [b[0] for b in bars], fontsize=8, rotation=10)
        ax_a.set_ylim(0, 105)
    ax_a.set_ylabel(f"top-1 (%) on {report['images']} test images")
    ax_a.set_title("accuracy", fontsize=10)
    if lat:
        xs = np.arange(len(lat))
        p50 = np.array([x[1]["image_ms_p50"] for x in lat])
        p99 = np.array([x[1]["image_ms_p99"] for x in lat])
        ax_l.bar(xs, p50, color=[x[2] for x in lat])
        ax_l.vlines(xs, p50, p99, color="black", linewidth=1)  # whisker to p99 (drawn by hand: matplotlib's
        ax_l.hlines(p99, xs - 0.08, xs + 0.08, color="black", linewidth=1)  # yerr warns on one-bar numpy input)
        for x, v, s in zip(xs, p50, lat):
            ax_l.text(x, v, f"{v:.3g} ms\n{s[1]['images_per_s']:.0f} img/s", ha="center", va="bottom", fontsize=8)
        ax_l.set_xticks(xs, [x[0] for x in lat], fontsize=8)
        ax_l.set_ylim(0, max(p99.max(), p50.max()) * 1.35 or 1.0)
    ax_l.set_ylabel("latency per image, p50 (ms); whisker to p99")
    ax_l.set_title(f"latency at batch {report['batch_size']['requested']}", fontsize=10)
    fig.suptitle(_title(report, "FPGA vs CPU"), fontsize=10)
    fig.savefig(path)
    return True


def power_trace(report: dict[str, Any], path: Path) -> bool:
    """Power samples over time (idle baseline, then the FPGA run), with the two means."""
    power = report.get("power") or {}
    trace = power.get("trace")
    if not power.get("available") or not trace or not trace.get("t_s"):
        return False
    t, w, phase = np.asarray(trace["t_s"]), np.asarray(trace["w"]), np.asarray(trace["phase"])
    fig, (ax,) = _figure()
    for ph, color in (("idle", "#7f7f7f"), ("run", "#d62728")):
        sel = phase == ph
        if sel.any():
            ax.plot(t[sel], w[sel], ".-", color=color, markersize=3, linewidth=0.8, label=ph)
    if power.get("idle_w") is not None:
        ax.axhline(power["idle_w"], color="#7f7f7f", linestyle="--", label=f"idle mean {power['idle_w']:.3f} W")
    ax.axhline(power["run_w"], color="#d62728", linestyle="--", label=f"run mean {power['run_w']:.3f} W")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"power (W), rails {'+'.join(power.get('rails') or [])}")
    energy = power.get("energy_per_inference_mj")
    extra = f"; {energy:.3g} mJ/inference above idle" if energy is not None else ""
    ax.set_title(_title(report, f"Power ({power.get('source')}{extra})"), fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.savefig(path)
    return True


_PLOTTERS = {
    "latency_histogram": latency_histogram,
    "throughput_vs_batch": throughput_vs_batch,
    "fpga_vs_cpu": fpga_vs_cpu,
    "power_trace": power_trace,
}


def write_plots(report: dict[str, Any], out_dir: str | os.PathLike) -> tuple[dict[str, str], list[str]]:
    """Write every plot the report has data for into ``out_dir``.

    Returns:
        ``(plots, notes)``: ``{plot name: file name}`` of the PNGs written, and why any were not (matplotlib
        missing, no data).
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return {}, [f"plots not written: matplotlib is not installed ({exc})"]
    out = Path(out_dir)
    written: dict[str, str] = {}
    notes: list[str] = []
    for name, plot in _PLOTTERS.items():
        path = out / PLOT_FILES[name]
        try:
            if plot(report, path):
                written[name] = PLOT_FILES[name]
            elif path.exists():
                path.unlink()  # an old plot of a previous run must not pass for this one's
        except (ValueError, KeyError, TypeError, OSError) as exc:
            log.warning("plot %s failed: %s", name, exc)
            notes.append(f"plot {name} not written: {exc}")
    return written, notes
