"""The manifest's estimate carries its throughput error band (from calibration.json), for the board's reports."""

from __future__ import annotations

import json

from hls_build.estimate.design import throughput_band


def test_band_is_the_largest_throughput_error(tmp_path):
    cal = tmp_path / "calibration.json"
    cal.write_text(
        json.dumps(
            {"errors": {"per_point_pct": {"a": {"LUT": 80.0, "interval_cycles": 0.9}, "b": {"images_per_s": -45.7}}}}
        )
    )
    band = throughput_band(cal)
    assert band["throughput_band_pct"] == 45.7
    assert "a +0.9 %" in band["throughput_band_source"] and "b -45.7 %" in band["throughput_band_source"]
    assert "2 published designs" in band["throughput_band_source"]


def test_no_throughput_point_no_band(tmp_path):
    cal = tmp_path / "calibration.json"
    cal.write_text(json.dumps({"errors": {"per_point_pct": {"a": {"LUT": 80.0}}}}))
    assert throughput_band(cal) == {} and throughput_band(tmp_path / "missing.json") == {}


def test_committed_calibration_gives_a_band():
    band = throughput_band()
    assert band["throughput_band_pct"] > 0 and "hls_build/calibration.json" in band["throughput_band_source"]
