"""Every bench report shows, next to host timings, what the bundle's estimate models for the board (ESTIMATE)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from board.board_estimate import ESTIMATE_LABEL, board_estimate, estimate_lines
from board.bundle import load_bundle, read_manifest, write_manifest

ESTIMATE = {
    "kind": "estimated",
    "stage": "pre_synthesis",
    "source": "hls_build.estimate",
    "clock_mhz": 100.0,
    "interval_cycles": 2362060,
    "images_per_s": 42.3,
    "latency_ms": 71.586,
    "calibration": "calibrated on 1 published hls4ml design",
}


def _with_estimate(make_bundle, **extra):
    root = make_bundle()
    write_manifest(root, replace(read_manifest(root), resources={"estimate": {**ESTIMATE, **extra}}))
    return load_bundle(root)


def test_estimate_with_band(make_bundle):
    b = _with_estimate(make_bundle, throughput_band_pct=45.7, throughput_band_source="2 published designs")
    est = board_estimate(b.manifest)
    assert est["images_per_s"] == 42.3 and est["band_pct"] == 45.7
    assert est["images_per_s_range"] == pytest.approx([42.3 * (1 - 0.457), 42.3 * 1.457])
    assert est["latency_ms_range"] == pytest.approx([71.586 / 1.457, 71.586 / (1 - 0.457)])
    text = "\n".join(estimate_lines(est))
    assert "ESTIMATE" in text and "42.3 (range 23.0 to 61.6)" in text and "+-45.7 % (2 published designs)" in text
    assert "What to expect on the pynq-z2: ESTIMATE" in text


def test_estimate_without_band_or_without_estimate(make_bundle):
    b = _with_estimate(make_bundle)
    est = board_estimate(b.manifest)
    assert est["band_pct"] is None and est["images_per_s_range"] is None
    assert "error band not recorded in this bundle" in "\n".join(estimate_lines(est))
    plain = load_bundle(make_bundle("plain"))
    assert board_estimate(plain.manifest) is None
    assert "holds no estimate" in "\n".join(estimate_lines(None, "pynq-z2"))


def test_band_over_100_percent_leaves_latency_unbounded():
    class M:
        board = "pynq-z2"
        resources = {"estimate": {**ESTIMATE, "throughput_band_pct": 131.7}}

    est = board_estimate(M())
    assert est["images_per_s_range"][0] == 0.0 and est["latency_ms_range"][1] is None
    assert "to unbounded" in "\n".join(estimate_lines(est))


def test_signed_range_factors_replace_the_symmetric_band():
    class M:
        board = "pynq-z2"
        resources = {"estimate": {**ESTIMATE, "throughput_band_pct": 131.7, "throughput_range_factors": [0.382, 2.323]}}

    est = board_estimate(M())
    assert est["images_per_s_range"] == pytest.approx([42.3 * 0.382, 42.3 * 2.323])
    assert est["latency_ms_range"] == pytest.approx([71.586 / 2.323, 71.586 / 0.382])
    text = "\n".join(estimate_lines(est))
    assert "range 16.2 to 98.3" in text and "x0.382 to x2.323" in text and "unbounded" not in text


def test_a_pipe_in_the_band_source_does_not_split_the_table_row():
    class M:
        board = "pynq-z2"
        resources = {"estimate": {**ESTIMATE, "throughput_band_pct": 50.0, "throughput_band_source": "p90 |error|"}}

    row = [line for line in estimate_lines(board_estimate(M())) if line.startswith("| pynq-z2")][0]
    assert row.replace("\\|", "").count("|") == 5 and "p90 \\|error\\|" in row


def test_every_bench_report_shows_the_estimate(make_bundle, images):
    from board.bench import benchmark, render_markdown

    b = _with_estimate(make_bundle, throughput_band_pct=45.7, throughput_band_source="2 published designs")
    report = benchmark(b, images[:4], np.zeros(4, np.int64), batch_size=2, reference="off")
    assert report["board_estimate"]["images_per_s"] == 42.3 and report["emulated"]
    md = render_markdown(report)
    host = md.index("## Latency and throughput")
    est = md.index("What to expect on the pynq-z2: ESTIMATE")
    assert host < est and ESTIMATE_LABEL in md and "NOT board timings" in md[host:est]
