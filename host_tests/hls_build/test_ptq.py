"""Bring your own model: a float Keras CNN made here with plain Keras (no training/ code) goes through
post-training quantization, the same conversion and the bit-accuracy gate."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hls_build.ptq import ByoModelError, check_float_model, import_float_model
from training.keras_compat import keras


def _float_cnn(extra: str | None = None) -> keras.Model:
    """A small residual CNN the way a user writes one: BN, fused and separate ReLUs, Dropout, softmax."""
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inp)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    if extra == "depthwise":
        x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    x2 = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x2 = keras.layers.Dropout(0.1)(x2)
    y = keras.layers.Conv2D(16, 3, padding="same")(x2)
    y = keras.layers.BatchNormalization(momentum=0.9)(y)
    y = keras.layers.Add()([y, x2])
    y = keras.layers.Activation("relu")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(inp, keras.layers.Dense(10, activation="softmax")(y))


@pytest.fixture(scope="module")
def float_model_file(tmp_path_factory, cifar10_dir):
    from board.cifar10 import load_split

    keras.utils.set_random_seed(0)
    model = _float_cnn()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    train = load_split("train", cifar10_dir).head(5000)
    model.fit(train.images.astype("float32") / 255, train.labels, batch_size=64, epochs=3, verbose=0)
    path = tmp_path_factory.mktemp("byo") / "user_cnn.h5"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def imported(float_model_file, tmp_path_factory, cifar10_dir):
    out = tmp_path_factory.mktemp("imported") / "user_cnn"
    report = import_float_model(float_model_file, out, calibration_images=500, test_images=1000,
                                cifar10_dir=str(cifar10_dir))  # fmt: skip
    return out, report


def test_import_reports_formats_and_top1_before_and_after(imported):
    out, report = imported
    assert (out / "model.h5").is_file() and (out / "config.json").is_file()
    saved = json.loads((out / "ptq_report.json").read_text())
    assert saved["top1_float"] == report.top1_float and saved["test_images"] == 1000
    # One quantized ReLU per ReLU of the source (the fused one split off), integer bits from calibration.
    assert len(report.activations) == 3
    for a in report.activations.values():
        integer = int(a["type"].split(",")[1].rstrip(">"))
        assert a["calibration_max"] < 2.0**integer
    # Both BatchNormalizations folded; the two other layers quantized as they are.
    # (Keras numbers layer names per session: other tests' models shift the suffixes.)
    folded = [k["folded"] for k in report.kernels.values() if k["folded"]]
    assert len(folded) == 2 and all(f.startswith("batch_normalization") for f in folded)
    assert len(report.kernels) == 4
    assert any("dropout" in r for r in report.removed) and any("softmax" in r for r in report.removed)
    # 8-bit post-training quantization costs little on this model (a weak one: ties make the argmax fragile).
    assert abs(report.top1_float - report.top1_quantized) <= 0.05 and report.agreement >= 0.8
    assert report.top1_float > 0.2  # the model learned something, so the comparison means something


def test_imported_model_builds_and_the_firmware_is_bit_exact(imported, tmp_path, test_split):
    from board.bundle import load_bundle
    from hls_build.build import BuildOptions, build_bundle

    out, _ = imported
    options = BuildOptions(gate_images=200, csim_images=10, keras_prediction_images=200)
    bundle = build_bundle(out, tmp_path / "overlays", tmp_path / "work", options, test_split)
    m = load_bundle(bundle).manifest
    assert m.metrics["firmware_vs_keras_agreement"] == 1.0
    assert m.metrics["firmware_vs_keras_max_abs_logit_diff"] == 0.0
    assert m.metrics["first_layer_differing_from_keras"] is None


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: _float_cnn("depthwise"), r"depthwise_conv2d(_\d+)?: DepthwiseConv2D with depth_multiplier 2"),
        (lambda: keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]),
         "32x32x3"),
    ],
)  # fmt: skip
def test_unsupported_models_are_refused_with_the_layer_named(make, match):
    with pytest.raises(ByoModelError, match=match):
        check_float_model(make())


def test_qkeras_model_is_sent_to_bundle():
    from training.models import create_model

    with pytest.raises(ByoModelError, match="QKeras layer"):
        check_float_model(create_model("resnet8", quant="<8,3>"))


def test_cli_bad_file_exits_2(tmp_path):
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"not a model")
    res = subprocess.run([sys.executable, "-m", "hls_build", "import", "--model", str(bad), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 2 and res.stderr.splitlines()[-1].startswith("error:")
    assert "not a readable Keras model" in res.stderr and not (tmp_path / "out").exists()
