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


def test_range_is_signed_from_held_out_intervals_and_board_measurements(tmp_path):
    """True/estimated images/s: 1 + e for an interval error e, 1 / (1 + e) for a board's images/s error."""
    path = tmp_path / "calibration_fit.json"
    designs = [
        {"name": "fast", "held_out_error_pct": {"interval_cycles": 132.3}},  # ran 2.323x faster than estimated
        {"name": "slow", "held_out_error_pct": {"interval_cycles": -61.8}},  # ran at 0.382x
        # an interval the calibration does not count must not widen the range
        {"name": "excluded", "held_out_error_pct": {"interval_cycles": -81.2}, "not_independent": ["interval_cycles"]},
    ]
    path.write_text(json.dumps({
        "summary": {"interval_cycles": {"n": 2, "p90_abs_pct": 131.7}},
        "throughput": [{"name": "rn08", "error_pct": 8.1}],
        "designs": designs,
    }))  # fmt: skip
    band = throughput_band(path)
    assert band["throughput_range_factors"] == [0.382, 2.323] and band["throughput_range_n"] == 3
    designs[1]["held_out_error_pct"]["interval_cycles"] = 5.0
    path.write_text(json.dumps({"summary": {"interval_cycles": {"n": 2, "p90_abs_pct": 131.7}},
                                "throughput": [{"name": "rn08", "error_pct": 8.1}], "designs": designs}))  # fmt: skip
    # the board's +8.1 % (estimate above the measurement) is now the lowest factor: 1 / 1.081
    assert throughput_band(path)["throughput_range_factors"] == [round(1 / 1.081, 3), 2.323]
