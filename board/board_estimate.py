"""What the bundle's pre-synthesis ESTIMATE models for the board, for reports that also hold host timings.

An emulated bundle's timings are host timings: they say nothing about the board. The bundle's manifest carries
the estimate ``hls_build`` made when it built the bundle (``resources.estimate``: the accelerator's initiation
interval and latency in cycles at the design clock, hence images/s and ms), and, from bundles built since the
calibration on published designs, an error band: ``throughput_band_pct``, the 90th percentile of the
leave-one-out |error| of the interval over those designs. This module turns that into figures labelled ESTIMATE
next to the host's, with a range: the signed ``throughput_range_factors`` the calibration measured (true /
estimated images/s, smallest and largest) where the manifest has them, else ``images/s x (1 -/+ band)``. A bundle
without an estimate says so; a bundle without a band says the band was not recorded. Nothing is computed here
that the manifest does not hold.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ESTIMATE_LABEL", "board_estimate", "estimate_lines"]

ESTIMATE_LABEL = "ESTIMATE (pre-synthesis model of the accelerator, not a measurement)"


def board_estimate(manifest: Any) -> dict[str, Any] | None:
    """The board figures the bundle's estimate models, or None when the manifest holds no estimate.

    Returns:
        ``{"label", "board", "clock_mhz", "images_per_s", "latency_ms", "band_pct", "images_per_s_range",
        "latency_ms_range", "band_source", "range_factors", "calibration", "source", "bottleneck"}``; ranges are
        None without a band (and, without range factors, a latency range's upper end is None when the band
        reaches 100 %).
    """
    est = (getattr(manifest, "resources", None) or {}).get("estimate")
    if not isinstance(est, dict) or est.get("images_per_s") is None:
        return None
    ips = float(est["images_per_s"])
    lat = est.get("latency_ms")
    lat = None if lat is None else float(lat)
    band = est.get("throughput_band_pct")
    band = None if band is None else float(band)
    ips_range = lat_range = None
    factors = est.get("throughput_range_factors")
    if band is not None and isinstance(factors, (list, tuple)) and len(factors) == 2 and float(factors[0]) > 0:
        # The signed range the calibration measured (true / estimated images/s, smallest and largest seen):
        # a symmetric band over 100 % would reach 0 images/s, which no check came near.
        lo, hi = float(factors[0]), float(factors[1])
        ips_range = [ips * lo, ips * hi]
        if lat is not None:
            lat_range = [lat / hi, lat / lo]
    elif band is not None:
        b = band / 100.0
        ips_range = [max(0.0, ips * (1.0 - b)), ips * (1.0 + b)]
        if lat is not None:
            lat_range = [lat / (1.0 + b), lat / (1.0 - b) if b < 1.0 else None]
    return {
        "label": ESTIMATE_LABEL,
        "board": getattr(manifest, "board", None),
        "clock_mhz": est.get("clock_mhz"),
        "images_per_s": ips,
        "latency_ms": lat,
        "band_pct": band,
        "images_per_s_range": ips_range,
        "latency_ms_range": lat_range,
        "band_source": est.get("throughput_band_source"),
        "range_factors": factors if ips_range is not None and factors is not None else None,
        "calibration": est.get("calibration"),
        "source": est.get("source"),
        "bottleneck": est.get("bottleneck"),
    }


def _fmt(x: float | None, fmt: str) -> str:
    return "unbounded" if x is None else f"{x:{fmt}}"


def estimate_lines(est: dict[str, Any] | None, board: str | None = None) -> list[str]:
    """Markdown lines: the ESTIMATE for the board, with its band, or why there is none."""
    where = f"the {est['board']}" if est and est.get("board") else f"the {board}" if board else "the board"
    lines = [f"### What to expect on {where}: ESTIMATE", ""]
    if est is None:
        return lines + ["The bundle's manifest holds no estimate (`resources.estimate`): nothing to show.", ""]
    clock = f" at {est['clock_mhz']:g} MHz" if est.get("clock_mhz") else ""
    if est["band_pct"] is None:
        ips = f"{est['images_per_s']:.1f}"
        lat = _fmt(est["latency_ms"], ".3f")
        band = "error band not recorded in this bundle (built before the calibration recorded one)"
    else:
        lo, hi = est["images_per_s_range"]
        ips = f"{est['images_per_s']:.1f} (range {lo:.1f} to {hi:.1f})"
        if est["latency_ms"] is None:
            lat = "n/a"
        else:
            llo, lhi = est["latency_ms_range"]
            lat = f"{est['latency_ms']:.3f} (range {llo:.3f} to {_fmt(lhi, '.3f')})"
        band = f"+-{est['band_pct']:g} % ({est.get('band_source') or 'calibration band'})"
        if est.get("range_factors"):
            lo_f, hi_f = est["range_factors"]
            band += f"; range: x{lo_f:g} to x{hi_f:g}, the smallest and largest true/estimated ratio measured"
    # The band's source text says "|error|": a bare pipe would split the markdown table's cell.
    band = band.replace("|", "\\|")
    lines += [
        f"{ESTIMATE_LABEL}{clock}, from the bundle's manifest:",
        "",
        "| board (ESTIMATE) | images/s | latency per image, ms | error band |",
        "|---|---:|---:|---|",
        f"| {est['board'] or board or 'board'} | {ips} | {lat} | {band} |",
        "",
    ]
    if est.get("calibration"):
        lines += [f"Calibration: {est['calibration']}", ""]
    return lines
