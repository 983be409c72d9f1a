"""``bench --mlperf``: MLPerf Tiny's 200-image subset, median of batch-1 windows, energy, the published result."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
from board_fakes import write_hw_bundle

from board.bundle import load_bundle
from board.mlperf import (
    EMULATED_LABEL,
    load_perf_samples,
    load_published,
    mlperf_benchmark,
    render_mlperf,
)
from board.power import PowerOptions


def test_perf_subset_is_mlperfs(cifar10_dir):
    from board.cifar10 import load_split

    idx, source = load_perf_samples()
    assert source["repository"] == "mlcommons/tiny" and source["path"].endswith("perf_samples_idxs.npy")
    assert len(idx) == 200 and len(set(idx.tolist())) == 200
    labels = load_split("test", directory=cifar10_dir).labels
    assert np.bincount(labels[idx], minlength=10).tolist() == [20] * 10  # get_perf_samples_idxs.py: 20 per class
    assert idx[:5].tolist() == [7657, 8959, 3596, 327, 2783]


def test_published_figures_come_from_the_quoted_lines():
    (rn08,) = load_published()
    assert (rn08["top1_pct"], rn08["images_per_s"], rn08["energy_uj"]) == (83.5, 130.834, 12266.036)
    assert all("mlcommons/tiny_results_v1.0@30a944256cff" in s for s in rn08["sources"].values())


def test_bad_published_line_is_refused(tmp_path):
    from board.errors import DatasetError

    bad = json.loads(open(load_published.__defaults__[0]).read())
    bad["results"][0]["throughput"]["line"] = "no figure here"
    (tmp_path / "p.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match="throughput: no figure"):
        load_published(tmp_path / "p.json")


def test_emulated_run(make_bundle, cifar10_dir):
    from board.cifar10 import load_split
    from board.driver import Accelerator

    bundle = load_bundle(make_bundle())
    test = load_split("test", directory=cifar10_dir)
    with Accelerator(bundle, batch_size=100, timeout_s=30) as acc:
        report = mlperf_benchmark(bundle, test.images, test.labels, accelerator=acc, duration_s=0.05, windows=3)
        raw = acc.predict_raw(test.images[:4])
    perf = report["performance"]
    assert report["label"] == EMULATED_LABEL and len(perf["windows"]) == 3 and perf["batch"] == 1
    assert [w["test_index"] for w in perf["windows"]] == [7657, 8959, 3596]
    assert all(w["seconds"] >= 0.05 and w["inferences"] >= 1 for w in perf["windows"])
    assert perf["median_images_per_s"] == statistics.median(w["images_per_s"] for w in perf["windows"])
    assert not perf["meets_mlperf_minimum"]
    assert report["energy"]["median_energy_uj"] is None and "host emulation" in report["energy"]["reason"]
    # Top-1 over the subset is the accelerator's own predictions on those 200 images.
    idx, _ = load_perf_samples()
    preds = np.argmax(acc_decode(bundle, test.images[idx]), axis=1)
    assert report["accuracy"]["top1_perf_subset"] == pytest.approx(np.mean(preds == test.labels[idx]))
    assert raw.shape == (4, 10)
    md = render_mlperf(report)
    assert "EMULATED ON THE HOST" in md and "shorter than MLPerf Tiny's 10 s minimum" in md
    assert "| 130.8 | 12,266 |" in md and "83.5 %" in md and "tiny_results_v1.0@30a944256cff" in md
    # The ESTIMATE row shows the calibration's signed range when the manifest has it, else images/s x (1 -/+ band).
    from board.board_estimate import board_estimate

    class M:
        board = "pynq-z2"
        resources = {"estimate": {"images_per_s": 1350.0, "latency_ms": 1.157, "clock_mhz": 100.0,
                                  "throughput_band_pct": 131.7}}  # fmt: skip

    report["board_estimate"] = board_estimate(M())
    assert "| 1350.0 (range 0.0 to 3128.0) |" in render_mlperf(report)  # an older manifest: band only
    M.resources["estimate"]["throughput_range_factors"] = [0.382, 2.323]
    report["board_estimate"] = board_estimate(M())
    assert "| 1350.0 (range 515.7 to 3136.0) |" in render_mlperf(report)


def acc_decode(bundle, images):
    from board.driver import Accelerator

    with Accelerator(bundle, batch_size=100, timeout_s=30) as acc:
        return acc.predict(images).reshape(len(images), -1)


class _FakeAccelerator:
    """Batch-1 inference in a fixed time, for the energy arithmetic."""

    def __init__(self, seconds):
        self.seconds = seconds

    def predict_raw(self, image):
        import time

        time.sleep(self.seconds)
        return np.zeros(10, np.int16)

    def classify(self, images):
        return np.zeros(len(images), np.int64)

    def take_timings(self):
        return []


def test_energy_per_inference_from_an_external_meter(tmp_path):
    bundle = load_bundle(write_hw_bundle(tmp_path, "pynq-z2", "hw"))
    images = np.zeros((10_000, 32, 32, 3), np.uint8)
    labels = np.zeros(10_000, np.int64)
    report = mlperf_benchmark(
        bundle,
        images,
        labels,
        accelerator=_FakeAccelerator(0.002),
        duration_s=0.05,
        windows=3,
        power=PowerOptions(external_watts=1.6),
        running_on="pynq-z2",
    )
    windows = report["performance"]["windows"]
    for w in windows:  # gross energy per inference = mean power x window time / inferences
        assert w["energy_uj"] == pytest.approx(1.6 * w["seconds"] / w["inferences"] * 1e6)
    assert report["energy"]["median_energy_uj"] == statistics.median(w["energy_uj"] for w in windows)
    assert report["label"] == "measured on the pynq-z2" and report["accuracy"]["top1_perf_subset"] == 1.0
    assert "EMULATED" not in render_mlperf(report)


def test_cli(make_bundle, cifar10_dir, tmp_path, capsys):
    from board.__main__ import main

    root = make_bundle()
    out = tmp_path / "mlperf"
    args = ["bench", "--bundle", str(root), "--mlperf", "--board", "host", "--cifar10-dir", str(cifar10_dir)]
    assert main([*args, "--mlperf-duration", "0.02", "--mlperf-windows", "2", "--out", str(out)]) == 0
    assert "MLPerf Tiny image classification" in capsys.readouterr().out
    assert json.loads((out / "mlperf.json").read_text())["performance"]["windows"][1]["test_index"] == 8959
    assert (out / "mlperf.md").read_text().startswith("# MLPerf Tiny")
    assert main([*args, "-n", "100", "--mlperf-duration", "0.02", "--mlperf-windows", "1", "--out", str(out)]) == 0
    report = json.loads((out / "mlperf.json").read_text())
    assert report["accuracy"]["test_images"] == 100 and len(report["performance"]["windows"]) == 1
    assert main([*args, "-n", "0", "--out", str(out)]) == 2
    assert "-n must be >= 1" in capsys.readouterr().err


def test_too_few_test_images_for_the_subset(make_bundle):
    from board.errors import InputError

    bundle = load_bundle(make_bundle())
    few = np.zeros((100, 32, 32, 3), np.uint8)
    with pytest.raises(InputError, match="only 100 test images"):
        mlperf_benchmark(bundle, few, np.zeros(100, np.int64), accelerator=_FakeAccelerator(0.0), duration_s=0.01)
