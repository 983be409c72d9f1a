"""Bring your own model: every layer kind the float-Keras import takes, bit-exact through the whole bundle flow.

One tiny model holds every added kind (ZeroPadding2D, strided 'valid' and 'same' Conv2D, Concatenate on channels and
on vectors, MaxPooling2D, AveragePooling2D, 1x1 Conv2D, Flatten, Reshape, Dense with ReLU, GlobalMaxPooling2D,
GlobalAveragePooling2D, a final softmax) and takes raw pixels normalized per channel, so one C-simulation compile
covers them all: import -> bundle (exact types, firmware graph, fast engine, estimate, gate with the C-simulation).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hls_build.ptq import ByoModelError, InputPreprocessing, check_float_model, import_float_model, quantize_float_model
from training.keras_compat import keras

L = keras.layers
MEAN, STD = (125.3, 123.0, 113.9), (63.0, 62.1, 66.7)


def every_kind_model() -> keras.Model:
    """Tiny, untrained (random weights and BatchNormalization statistics): only bit-exactness is tested."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((32, 32, 3))
    x = L.ZeroPadding2D(1)(inp)
    x = L.Conv2D(6, 3, strides=2, padding="valid", activation="relu", name="stem")(x)  # 16x16
    a = L.Conv2D(4, 3, padding="same")(x)  # 10 channels into a 1x1 convolution: ReuseFactor 64 is invalid there
    a = L.BatchNormalization()(a)
    a = L.ReLU()(a)
    c = L.Concatenate()([x, a])  # 16x16x10
    p = L.MaxPooling2D(2)(c)  # 8x8
    q = L.AveragePooling2D(2)(p)  # 4x4
    r = L.Conv2D(8, 1, activation="relu")(q)
    g_max = L.GlobalMaxPooling2D()(r)
    g_avg = L.GlobalAveragePooling2D()(r)
    f = L.Flatten()(r)
    d = L.Dense(12, activation="relu")(f)
    rs = L.Reshape((8, 4, 4))(r)
    rs = L.Flatten()(L.Conv2D(2, 1, padding="valid")(rs))
    cc = L.Concatenate()([L.Concatenate()([d, L.Concatenate()([g_max, g_avg])]), rs])
    out = L.Dense(10)(L.Dropout(0.2)(cc))
    out = L.Softmax()(out)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    bn = next(lyr for lyr in model.layers if isinstance(lyr, L.BatchNormalization))
    bn.set_weights([w + rng.uniform(0.1, 0.5, w.shape).astype(np.float32) for w in bn.get_weights()])
    return model


@pytest.fixture(scope="module")
def every_kind_bundle(tmp_path_factory, cifar10_dir, test_split):
    from board.bundle import load_bundle
    from hls_build.build import BuildOptions, build_bundle

    tmp = tmp_path_factory.mktemp("byo_kinds")
    every_kind_model().save(tmp / "every_kind.h5")
    report = import_float_model(tmp / "every_kind.h5", tmp / "every_kind", input_scale=1.0, input_mean=MEAN,
                                input_std=STD, calibration_images=200, test_images=200,
                                cifar10_dir=str(cifar10_dir))  # fmt: skip
    options = BuildOptions(gate_images=100, csim_images=8, keras_prediction_images=100)
    bundle = build_bundle(tmp / "every_kind", tmp / "overlays", tmp / "work", options, test_split)
    return load_bundle(bundle), report


def test_every_kind_is_bit_exact_through_fast_engine_and_csim(every_kind_bundle):
    bundle, report = every_kind_bundle
    m = bundle.manifest.metrics
    # The gate: C-simulation == fast engine on 8 images, fast engine == Keras on 100, every layer.
    assert m["csim_vs_fast_engine_identical"] == m["csim_vs_keras_images"] == 8
    assert m["firmware_vs_keras_max_abs_logit_diff"] == 0.0 and m["firmware_vs_keras_agreement"] == 1.0
    assert m["first_layer_differing_from_keras"] is None
    assert all(row["max_abs_error"] == 0.0 for row in m["firmware_vs_keras_layers"])
    # Each added kind is in the firmware as the op the engine ran.
    graph = json.loads(bundle.path("firmware/graph.json").read_text())
    ops = [(e["op"], e["attributes"].get("pool_op")) for e in graph["layers"]]
    kinds = [("pooling2d", "Max"), ("pooling2d", "Average"), ("global_pooling2d", "Max")]
    kinds += [("global_pooling2d", "Average"), ("concatenate", None), ("reshape", None), ("zeropad2d", None)]
    for kind in kinds:
        assert kind in ops, kind
    assert not graph["unsupported_layers"]
    # The image is zero-padded before the stem: the mean is subtracted before the accelerator, per channel (a
    # 256 x 3 table on the board, exact codes of a signed 16-bit stream), and only the std folded into the stem.
    assert report.input_folded_into == ["stem"] and report.input_preprocessing["mean"] == list(MEAN)
    assert report.input_stream["mean_subtracted_before_accelerator"]
    assert bundle.manifest.input.fixed_point == "ap_fixed<16,1>" and bundle.manifest.input.container == "int16"
    prep = bundle.manifest.preprocessing
    assert prep["input_scale"] == 1 / 256
    np.testing.assert_allclose(prep["input_offset"], -np.asarray(MEAN) / 256, atol=2.0**-16)
    assert max(abs(e) for e in report.input_stream["mean_error"]) <= 2.0**-16 * 256  # scale 1: pixel units
    src = bundle.manifest.hls["source_input_preprocessing"]
    assert src["scale"] == 1.0 and src["std"] == list(STD) and src["folded_into"] == ["stem"]


def test_every_kind_is_priced_by_the_estimate(every_kind_bundle):
    from hls_build.estimate import graph_from_project

    bundle, _ = every_kind_bundle
    graph = graph_from_project(bundle.path("hls"), "myproject")
    ops = {layer.name: layer.op for layer in graph.layers}
    assert "unknown" not in ops.values(), ops
    assert {"pool2d", "global_pool", "concat"} <= set(ops.values())
    assert bundle.manifest.resources["estimate"]["images_per_s"] > 0


def test_every_kind_logits_vary(every_kind_bundle):
    """Not a degenerate model (all-zero activations would make bit-exactness trivial)."""
    bundle, _ = every_kind_bundle
    pred = np.load(bundle.path("keras_predictions.npy"))  # the Keras model's class per test image
    assert len(set(pred.reshape(-1).tolist())) > 1


def test_folded_normalization_equals_the_source_model_on_a_valid_convolution():
    """Mean/std and any scale folded into a 'valid' first convolution: the same float function of the pixels."""
    from hls_build.ptq import PtqReport, _fold_input

    keras.utils.set_random_seed(1)
    inp = keras.Input((32, 32, 3))
    x = L.Conv2D(4, 3, padding="valid", use_bias=False)(inp)
    model = keras.Model(inp, L.Dense(10)(L.Flatten()(x)))
    pixels = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    for pre in (InputPreprocessing(1.0, MEAN, STD), InputPreprocessing(1.0), InputPreprocessing(127.5, (1, 1, 1))):
        folded = _fold_input(model, pre, PtqReport("", 0, 0, 0, 0))
        want = model.predict(pre.apply(pixels), verbose=0)
        got = folded.predict(pixels.astype(np.float32) / 256, verbose=0)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("first", ["same", "zero_padding"])
def test_mean_is_subtracted_before_a_zero_padding_first_convolution(first):
    """A zero-padding first convolution with mean/std: the imported float function is the user's, borders included.

    The user's model pads with its own zero (the mean pixel); folding the mean into the bias would pad with pixel 0.
    The stream subtracts the mean instead (exact codes of a signed 16-bit type) and only the std is folded.
    """
    from board.fixed_point import FixedPoint
    from board.preprocess import Preprocessing, pixel_lut
    from hls_build.ptq import PtqReport, _fold_input, input_stream

    keras.utils.set_random_seed(4)
    inp = keras.Input((32, 32, 3))
    if first == "same":
        x = L.Conv2D(4, 3, padding="same", bias_initializer="glorot_uniform")(inp)
    else:
        x = L.Conv2D(4, 3, padding="valid", bias_initializer="glorot_uniform")(L.ZeroPadding2D(1)(inp))
    model = keras.Model(inp, x)  # the feature map itself: every border position is compared
    pre = InputPreprocessing(255.0, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    pixels = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    want = model.predict(pre.apply(pixels), verbose=0)

    stream = input_stream(model, pre)
    assert stream.mean_subtracted and stream.fixed_point == "ap_fixed<16,1>"
    assert max(abs(e) for e in stream.mean_error) <= 2.0**-16 * 256 / 255  # half an LSB, in pixel / 255 units
    _, exact = pixel_lut(Preprocessing.from_dict(stream.preprocessing), FixedPoint.parse(stream.fixed_point), "int16")
    assert exact  # every pixel / 256 - mean is a code of the stream
    report = PtqReport("", 0, 0, 0, 0)
    got = _fold_input(model, pre, report, stream).predict(stream.apply(pixels), verbose=0)
    assert report.input_folded_into == [model.layers[-1].name]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-4)

    # The old fold (mean into the bias, stream pixel / 256): right inside, wrong on the border rows and columns.
    old = _fold_input(model, pre, PtqReport("", 0, 0, 0, 0)).predict(pixels.astype(np.float32) / 256, verbose=0)
    np.testing.assert_allclose(old[:, 1:-1, 1:-1], want[:, 1:-1, 1:-1], rtol=1e-4, atol=2e-4)
    assert np.max(np.abs(old[:, 0] - want[:, 0])) > 0.1


def test_mean_is_folded_into_the_bias_where_nothing_pads():
    """A 'valid' first convolution (or a 1x1 'same' one, which pads nothing) keeps the 8-bit pixel / 256 stream."""
    from hls_build.ptq import input_stream

    pre = InputPreprocessing(1.0, MEAN, STD)
    for layer in (L.Conv2D(4, 3, padding="valid"), L.Conv2D(4, 1, padding="same")):
        inp = keras.Input((32, 32, 3))
        stream = input_stream(keras.Model(inp, layer(inp)), pre)
        assert stream.fixed_point is None and not stream.mean_subtracted
        assert stream.preprocessing["input_offset"] == 0.0 and np.all(stream.offset != 0)
    inp = keras.Input((32, 32, 3))
    with pytest.raises(ByoModelError, match="no signed 16-bit stream"):
        input_stream(keras.Model(inp, L.Conv2D(4, 3, padding="same")(inp)), InputPreprocessing(1.0, (1e5, 0, 0)))


def test_percentile_calibration_narrows_ranges():
    keras.utils.set_random_seed(2)
    inp = keras.Input((32, 32, 3))
    x = L.Conv2D(4, 3, activation="relu")(inp)
    model = keras.Model(inp, L.Dense(10)(L.GlobalMaxPooling2D()(x)))
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    _, rep_max = quantize_float_model(model, pixels, calibration="max")
    _, rep_p = quantize_float_model(model, pixels, calibration="percentile", percentile=90.0)
    (a_max,), (a_p,) = rep_max.activations.values(), rep_p.activations.values()
    assert a_p["calibration_max"] < a_max["calibration_max"] and rep_p.percentile == 90.0


def _with(layer_fn):
    inp = keras.Input((32, 32, 3))
    x = layer_fn(L.Conv2D(4, 3, padding="same")(inp))
    return keras.Model(inp, L.Dense(10)(L.Flatten()(x)))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: _with(L.DepthwiseConv2D(3, depth_multiplier=2)), r"depthwise_conv2d(_\d+)?: .*depth_multiplier=1"),
        (lambda: _with(L.LeakyReLU()), r"leaky_re_lu(_\d+)?: LeakyReLU .*use ReLU"),
        (lambda: _with(lambda t: L.ReLU(max_value=6.0)(t)), r"max_value"),
        (lambda: _with(L.AveragePooling2D(3)), r"averages 9 values"),
        (lambda: _with(L.MaxPooling2D(3, strides=2, padding="same")), r"padding='valid'"),
        (lambda: _with(lambda t: L.BatchNormalization()(L.ReLU()(t))), r"must follow a Conv2D, DepthwiseConv2D"),
        (
            lambda: _with(lambda t: L.BatchNormalization()(L.Conv2D(4, 3, activation="relu")(t))),
            r"put the activation after",
        ),
        (lambda: _with(lambda t: L.Activation("sigmoid")(t)), r"activation 'sigmoid' is not supported"),
        (lambda: _with(lambda t: L.Conv2D(4, 3, dilation_rate=2)(t)), r"dilated"),
    ],
)
def test_unsupported_layers_are_refused_naming_layer_and_remedy(make, match):
    with pytest.raises(ByoModelError, match=match):
        check_float_model(make())


def test_input_preprocessing_is_checked():
    with pytest.raises(ByoModelError, match="positive"):
        InputPreprocessing(0.0)
    with pytest.raises(ByoModelError, match="std must be positive"):
        InputPreprocessing(1.0, MEAN, (1.0, 0.0, 1.0))


def test_cli_bad_mean_exits_2(tmp_path):
    res = subprocess.run([sys.executable, "-m", "hls_build", "import", "--model", "x.h5", "--out", str(tmp_path / "o"),
                          "--input-scale", "1", "--input-mean", "1,2"], capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 2 and "R,G,B" in res.stderr and not (tmp_path / "o").exists()


def test_best_calibration_and_finetuning_are_reported(tmp_path, cifar10_dir):
    keras.utils.set_random_seed(5)
    inp = keras.Input((32, 32, 3))
    x = L.MaxPooling2D(2)(L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp))
    keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x))).save(tmp_path / "small.h5")
    report = import_float_model(tmp_path / "small.h5", tmp_path / "small", calibration="best", percentile=99.0,
                                finetune_epochs=1, finetune_images=512, calibration_images=200, test_images=200,
                                cifar10_dir=str(cifar10_dir))  # fmt: skip
    saved = json.loads((tmp_path / "small" / "ptq_report.json").read_text())
    assert [o["calibration"] for o in saved["options"]][:2] == ["max", "percentile"]
    assert saved["options"][2]["finetune_epochs"] == 1  # the chosen option after fine-tuning: before/after
    assert saved["calibration"] in ("max", "percentile") and saved["finetune_epochs"] == 1
    assert saved["top1_before_finetune"] is not None and saved["top1_quantized"] == report.top1_quantized
    # The fine-tuned model keeps its formats: it still folds and derives exact types.
    from hls_build.config import prepare_model
    from hls_build.precision import derive_precisions
    from training.train import load_trained_model

    folded, _ = prepare_model(load_trained_model(tmp_path / "small" / "model.h5"))
    assert not derive_precisions(folded).inexact
