"""The manifest's estimate carries its throughput error band, from the calibration's measured errors
(``calibration_fit.json``: the interval's leave-one-out p90 over the csynth reports and the errors against the
throughputs measured on a board), for the board's reports."""

from __future__ import annotations

import json

from hls_build.estimate.design import throughput_band


def _fit(tmp_path, interval_p90, measured):
    path = tmp_path / "calibration_fit.json"
    path.write_text(
        json.dumps(
            {
                "summary": {"interval_cycles": {"n": 9, "p90_abs_pct": interval_p90}},
                "throughput": [{"name": n, "error_pct": e} for n, e in measured.items()],
            }
        )
    )
    return path


def test_band_is_the_larger_of_interval_p90_and_board_errors(tmp_path):
    band = throughput_band(_fit(tmp_path, 50.0, {"rn07": -2.6, "rn08": 8.1}))
    assert band["throughput_band_pct"] == 50.0
    src = band["throughput_band_source"]
    assert "rn07 -2.6 %" in src and "rn08 +8.1 %" in src and "9 published csynth reports" in src
    # a board error larger than the csynth p90 sets the band
    assert throughput_band(_fit(tmp_path, 5.0, {"rn07": -12.5}))["throughput_band_pct"] == 12.5


def test_no_calibration_no_band(tmp_path):
    assert throughput_band(tmp_path / "missing.json") == {}
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"summary": {}, "throughput": []}))
    assert throughput_band(empty) == {}


def test_committed_calibration_gives_the_band_of_its_own_errors():
    from hls_build.estimate import load_fit

    fit = load_fit()
    band = throughput_band()
    expected = max(
        [fit["summary"]["interval_cycles"]["p90_abs_pct"]] + [abs(t["error_pct"]) for t in fit["throughput"]]
    )
    assert band["throughput_band_pct"] == round(expected, 1) > 0
    assert "hls_build/calibration_fit.json" in band["throughput_band_source"]
