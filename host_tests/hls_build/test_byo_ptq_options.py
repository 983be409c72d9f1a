"""Post-training quantization options: per-layer weight ranges (max / least squared error), automatic fine-tuning.

hls4ml 1.3 gives every layer's weights one fixed-point type, so per-channel formats are not offered; the report
says so, and the per-layer choice of integer bits is the alternative (``--weight-range``). ``--finetune-epochs auto``
fine-tunes only a model that the quantization costs more than 1 point on held-out training images.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hls_build.fold import FoldError, kernel_integer_bits
from hls_build.ptq import AUTO_FINETUNE_EPOCHS, ByoModelError, import_float_model
from training.keras_compat import keras

L = keras.layers


def test_weight_range_max_holds_the_largest_weight_and_mse_clips_a_lone_outlier():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, 20_000)
    assert kernel_integer_bits(w, 8, "max") == 1  # the sign bit alone (|w| < 1), never fewer
    # One weight of 3 among 20,000 small ones: max keeps it (3 integer bits); the least squared error clips it
    # to 2 - 2^-5 and halves every other weight's rounding step.
    outlier = np.append(w, 3.0)
    assert kernel_integer_bits(outlier, 8, "max") == 3
    assert kernel_integer_bits(outlier, 8, "mse") == 2
    # Uniform weights up to the range's edge: clipping costs more than the finer grid saves.
    flat = rng.uniform(-3.9, 3.9, 2000)
    assert kernel_integer_bits(flat, 8, "mse") == kernel_integer_bits(flat, 8, "max") == 3
    with pytest.raises(FoldError, match="weight range"):
        kernel_integer_bits(w, 8, "percentile")


@pytest.fixture(scope="module")
def trained_small(tmp_path_factory, cifar10_dir):
    """A tiny CNN trained for a few seconds: far from chance, so quantization losses are measurable."""
    from board.cifar10 import load_split

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.MaxPooling2D(2)(L.Conv2D(16, 1, activation="relu")(x))
    model = keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x)))
    train = load_split("train", cifar10_dir)
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train.images[:8000] / 255.0, train.labels[:8000], epochs=2, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("small") / "small.h5"
    model.save(path)
    return path


def _import(path, out, cifar10_dir, **kw):
    return import_float_model(path, out, calibration_images=200, test_images=500, finetune_images=1000,
                              cifar10_dir=str(cifar10_dir), **kw)  # fmt: skip


def test_auto_finetune_runs_only_when_the_quantization_loses_more_than_a_point(trained_small, tmp_path, cifar10_dir):
    # 16 bits: nothing to recover, no fine-tuning.
    kept = _import(trained_small, tmp_path / "wide", cifar10_dir, weight_bits=16, activation_bits=16,
                   finetune_epochs="auto")  # fmt: skip
    assert kept.finetune["ran"] is False and kept.finetune["loss_points_heldout_before"] <= 1.0
    assert kept.finetune_epochs == 0 and "not more than 1" in kept.finetune["reason"]
    # 3 bits: the quantization costs many points; fine-tuning runs and the report has before and after.
    tuned = _import(trained_small, tmp_path / "narrow", cifar10_dir, weight_bits=3, activation_bits=3,
                    finetune_epochs="auto")  # fmt: skip
    saved = json.loads((tmp_path / "narrow" / "ptq_report.json").read_text())
    assert tuned.finetune["loss_points_heldout_before"] > 1.0 and saved["finetune"]["ran"] is True
    assert saved["finetune_epochs"] == AUTO_FINETUNE_EPOCHS == saved["options"][-1]["finetune_epochs"]
    before, after = saved["finetune"]["before"], saved["finetune"]["after"]
    assert after["top1_heldout_train"] == saved["options"][-1]["top1_heldout_train"]
    assert before["top1_test"] == saved["top1_before_finetune"] and after["top1_test"] == saved["top1_quantized"]
    assert saved["finetune"]["images"] == 1000  # the held-out images are never fine-tuned on
    assert "per-channel" in saved["per_channel"] or "one fixed-point type" in saved["per_channel"]


def test_best_tries_every_calibration_and_weight_range(trained_small, tmp_path, cifar10_dir):
    report = _import(trained_small, tmp_path / "best", cifar10_dir, calibration="best", weight_range="best",
                     weight_bits=4, activation_bits=4)  # fmt: skip
    combos = [(o["calibration"], o["weight_range"]) for o in report.options]
    assert combos == [("max", "max"), ("max", "mse"), ("percentile", "max"), ("percentile", "mse")]
    best = max(o["top1_heldout_train"] for o in report.options)
    chosen = next(o for o in report.options if o["top1_heldout_train"] == best)
    assert (report.calibration, report.weight_range) == (chosen["calibration"], chosen["weight_range"])
    for o in report.options:
        assert o["loss_points_heldout"] == round(100 * (report.top1_float_heldout_train - o["top1_heldout_train"]), 2)
    # Each kernel's type is the one the chosen weight range gives.
    assert all(k["kernel"].startswith("ap_fixed<4,") for k in report.kernels.values())


def test_bad_finetune_and_weight_range_are_refused(trained_small, tmp_path, cifar10_dir):
    with pytest.raises(ByoModelError, match="finetune_epochs"):
        _import(trained_small, tmp_path / "x", cifar10_dir, finetune_epochs="sometimes")
    with pytest.raises(ByoModelError, match="weight range"):
        _import(trained_small, tmp_path / "x", cifar10_dir, weight_range="percentile")
    cmd = [sys.executable, "-m", "hls_build", "import", "--model", str(trained_small), "--out", str(tmp_path / "o")]
    res = subprocess.run([*cmd, "--finetune-epochs", "often"], capture_output=True, text=True)
    assert res.returncode == 2 and "'auto'" in res.stderr and not (tmp_path / "o").exists()
