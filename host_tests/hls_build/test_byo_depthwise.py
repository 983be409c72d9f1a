"""Bring your own model: DepthwiseConv2D and SeparableConv2D, bit-exact through the whole bundle flow.

hls4ml 1.3's io_stream backend computes a depthwise convolution with ``nnet::depthwise_conv_2d_cl`` (one filter
per channel) and splits a separable one into that and a 1x1 convolution; the import makes the same split in Keras
(so the exact-type derivation and the gate see both halves). One tiny float model holds every variant (a
SeparableConv2D reading raw pixels normalized per channel, DepthwiseConv2D + BatchNormalization, a strided
SeparableConv2D + BatchNormalization, a strided 'valid' DepthwiseConv2D with a fused ReLU), so one C-simulation
compile covers them: import -> bundle (exact types, firmware graph, fast engine, estimate, gate with the
C-simulation). A QKeras model with QDepthwiseConv2D/QSeparableConv2D is imported as trained, bit for bit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hls_build.firmware_graph import FirmwareGraphError, UnsupportedLayer, depthwise_index_map
from hls_build.ptq import ByoModelError, check_float_model, check_qkeras_model, import_float_model
from training.keras_compat import keras

L = keras.layers
MEAN, STD = (125.3, 123.0, 113.9), (63.0, 62.1, 66.7)


def _perturb_batchnorms(model: keras.Model, seed: int) -> None:
    """Statistics away from the identity, so a wrong fold shows."""
    rng = np.random.default_rng(seed)
    for bn in [lyr for lyr in model.layers if isinstance(lyr, L.BatchNormalization)]:
        bn.set_weights([w + rng.uniform(0.1, 0.5, w.shape).astype(np.float32) for w in bn.get_weights()])


def depthwise_model() -> keras.Model:
    """Tiny, untrained (random weights and BatchNormalization statistics): only bit-exactness is tested."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((32, 32, 3))
    x = L.SeparableConv2D(8, 3, strides=2, padding="same", activation="relu", name="sep_stem")(inp)  # 16x16
    x = L.DepthwiseConv2D(3, padding="same", name="dw1")(x)
    x = L.ReLU()(L.BatchNormalization(name="dw1_bn")(x))
    x = L.SeparableConv2D(12, 3, strides=2, padding="same", name="sep2")(x)  # 8x8
    x = L.ReLU()(L.BatchNormalization(name="sep2_bn")(x))
    x = L.ZeroPadding2D(1)(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="valid", activation="relu", name="dw3")(x)  # 4x4
    out = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    _perturb_batchnorms(model, 0)
    return model


@pytest.fixture(scope="module")
def depthwise_bundle(tmp_path_factory, cifar10_dir, test_split):
    from board.bundle import load_bundle
    from hls_build.build import BuildOptions, build_bundle

    tmp = tmp_path_factory.mktemp("byo_depthwise")
    depthwise_model().save(tmp / "dw.h5")
    report = import_float_model(tmp / "dw.h5", tmp / "dw", input_scale=1.0, input_mean=MEAN, input_std=STD,
                                calibration_images=200, test_images=200, cifar10_dir=str(cifar10_dir))  # fmt: skip
    options = BuildOptions(gate_images=100, csim_images=8, keras_prediction_images=100)
    bundle = build_bundle(tmp / "dw", tmp / "overlays", tmp / "work", options, test_split)
    return load_bundle(bundle), report


def test_depthwise_and_separable_are_bit_exact_through_fast_engine_and_csim(depthwise_bundle):
    bundle, report = depthwise_bundle
    m = bundle.manifest.metrics
    # The gate: C-simulation == fast engine on 8 images, fast engine == Keras on 100, every layer.
    assert m["csim_vs_fast_engine_identical"] == m["csim_vs_keras_images"] == 8
    assert m["firmware_vs_keras_max_abs_logit_diff"] == 0.0 and m["firmware_vs_keras_agreement"] == 1.0
    assert m["first_layer_differing_from_keras"] is None
    assert all(row["max_abs_error"] == 0.0 for row in m["firmware_vs_keras_layers"])
    graph = json.loads(bundle.path("firmware/graph.json").read_text())
    ops = {e["name"]: e["op"] for e in graph["layers"]}
    # Each SeparableConv2D became a depthwise and a 1x1 convolution; the DepthwiseConv2D layers stayed depthwise.
    assert report.split == {"sep_stem": ["sep_stem_depthwise", "sep_stem"], "sep2": ["sep2_depthwise", "sep2"]}
    for name in ("sep_stem_depthwise", "dw1", "sep2_depthwise", "dw3"):
        assert ops[name] == "depthwise_conv2d", (name, ops)
    assert ops["sep_stem"] == ops["sep2"] == "pointwise_conv2d"
    assert not graph["unsupported_layers"]
    # BatchNormalization folded into the depthwise and the separable convolution; the normalization into the
    # depthwise half that reads the image.
    assert report.kernels["dw1"]["folded"] == "dw1_bn" and report.kernels["sep2"]["folded"] == "sep2_bn"
    assert report.input_folded_into == ["sep_stem_depthwise"]


def test_depthwise_is_priced_by_the_estimate(depthwise_bundle):
    from hls_build.estimate import estimate_design, graph_from_project

    bundle, _ = depthwise_bundle
    graph = graph_from_project(bundle.path("hls"), "myproject")
    dw = [layer for layer in graph.layers if layer.detail.get("depthwise")]
    assert {layer.name for layer in dw} == {"sep_stem_depthwise", "dw1", "sep2_depthwise", "dw3"}
    assert "unknown" not in {layer.op for layer in graph.layers}
    est = estimate_design(graph)
    rows = {row.name: row for row in est.rows}
    assert rows["dw1"].label.startswith("DepthwiseConv2D 3x3") and rows["dw1"].cycles > 0
    # One product per window element: 9 * 8 of them for dw1 (a Conv2D 3x3 8->8 would have 9 * 8 * 8).
    rf = rows["dw1"].detail["reuse_factor"]
    assert rows["dw1"].detail["multipliers"] == -(-9 * 8 // rf)


def test_depthwise_outputs_vary(depthwise_bundle, test_split):
    """Not a degenerate model (all-zero activations would make bit-exactness trivial)."""
    from board.fast_engine import FastEngine

    bundle, _ = depthwise_bundle
    engine = FastEngine.from_bundle(bundle)
    logits = engine.predict(test_split.images[:16])
    assert len({tuple(row) for row in logits.tolist()}) == 16
    from board.preprocess import Preprocessing, encode_pixels, pixel_lut

    lut, _ = pixel_lut(Preprocessing.from_dict(bundle.manifest.preprocessing), engine.in_type, engine.in_dtype)
    trace = engine.trace(encode_pixels(lut, test_split.images[:4]))  # per channel: the stem pads ('same')
    for name in ("sep_stem_depthwise", "dw1", "sep2_depthwise", "dw3"):
        out = next(v for k, v in trace.items() if k.startswith(f"{name}") or k == f"layer_{name}")
        assert np.count_nonzero(out) > out.size // 4, name


@pytest.mark.parametrize(
    ("kernel", "n_in", "n_out", "rf"),
    [
        ("DepthwiseDenseLatency", 27, 3, 1),
        ("DepthwiseDenseResource_rf_leq_nout", 72, 8, 4),
        ("DepthwiseDenseResource_rf_gt_nout_rem0", 72, 8, 24),
        ("DepthwiseDenseResource_rf_gt_nout_rem0", 72, 8, 144),
        ("DepthwiseDenseResource_rf_gt_nout", 108, 12, 18),
    ],
)
def test_depthwise_kernel_replay_adds_each_window_element_to_its_channel(kernel, n_in, n_out, rf):
    out = depthwise_index_map(kernel, n_in, n_out, rf)
    np.testing.assert_array_equal(out, np.arange(n_in) % n_out)


def test_depthwise_kernel_replay_refuses_what_the_firmware_would_get_wrong():
    # ReuseFactor 64 on 144 inputs: the C loops would read past the weight array (hls4ml never picks it).
    with pytest.raises(FirmwareGraphError, match="out of range"):
        depthwise_index_map("DepthwiseDenseResource_rf_gt_nout_rem0", 144, 16, 64)
    with pytest.raises(UnsupportedLayer, match="not known"):
        depthwise_index_map("DepthwiseDenseMystery", 9, 1, 1)


def test_batchnorm_folds_into_a_depthwise_convolution_per_channel():
    """The fold scales each channel's taps by its own gamma / sigma (a depthwise kernel is (fh, fw, C, 1))."""
    from qkeras import QDepthwiseConv2D

    from hls_build.fold import fold_batchnorm

    keras.utils.set_random_seed(7)
    inp = keras.Input((8, 8, 4))
    q = "quantized_bits(8,0,alpha=1)"
    x = QDepthwiseConv2D(3, padding="same", depthwise_quantizer=q, bias_quantizer=q, name="dw")(inp)
    model = keras.Model(inp, L.BatchNormalization(name="bn")(x))
    _perturb_batchnorms(model, 3)
    folded, info = fold_batchnorm(model)
    assert [f.layer for f in info] == ["dw"] and type(folded.get_layer("dw")).__name__ == "QDepthwiseConv2D"
    x = (np.random.default_rng(0).integers(0, 256, (4, 8, 8, 4)) / 256).astype(np.float32)
    want, got = model.predict(x, verbose=0), folded.predict(x, verbose=0)
    # The folded kernel is rounded again (8 bits): 9 taps of inputs below 1 move by at most 9 rounding errors; a
    # channel scaled by another channel's gamma / sigma (0.1 to 0.5 apart here) would move by far more.
    bound = 9 * info[0].kernel_rounding_error + 2.0**-15
    assert 0 < np.max(np.abs(got - want)) <= bound


def _with(layer_fn):
    inp = keras.Input((32, 32, 3))
    x = layer_fn(L.Conv2D(4, 3, padding="same")(inp))
    return keras.Model(inp, L.Dense(10)(L.Flatten()(x)))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: _with(L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")), r"dw: DepthwiseConv2D with depth_mul"),
        (lambda: _with(L.SeparableConv2D(4, 3, depth_multiplier=2, name="sep")), r"sep: .*depth_multiplier=1"),
        (lambda: _with(L.DepthwiseConv2D(3, dilation_rate=2, name="dw")), r"dw: dilated"),
        (lambda: _with(L.SeparableConv2D(4, 3, activation="tanh", name="sep")), r"sep: activation 'tanh'"),
    ],
)
def test_unsupported_depthwise_variants_are_refused_naming_layer_and_remedy(make, match):
    with pytest.raises(ByoModelError, match=match):
        check_float_model(make())


def qkeras_depthwise_model() -> keras.Model:
    from qkeras import QActivation, QConv2D, QDense, QDepthwiseConv2D, QSeparableConv2D

    keras.utils.set_random_seed(6)
    q8 = "quantized_bits(8,0,alpha=1)"
    inp = keras.Input((32, 32, 3))
    x = QDepthwiseConv2D(3, strides=2, padding="same", depthwise_quantizer=q8, bias_quantizer=q8, name="dw_stem")(inp)
    x = QActivation("quantized_relu(8,3)")(x)
    x = QActivation("quantized_relu(8,3)")(QConv2D(8, 1, kernel_quantizer=q8, bias_quantizer=q8, name="pw")(x))
    x = QSeparableConv2D(12, 3, strides=2, padding="same", depthwise_quantizer=q8, pointwise_quantizer=q8,
                         bias_quantizer="quantized_bits(12,2,alpha=1)", name="sep")(x)  # fmt: skip
    x = QActivation("quantized_relu(8,3)")(x)
    x = QDepthwiseConv2D(3, padding="valid", depthwise_quantizer=q8, bias_quantizer=q8, name="dw2")(x)
    x = L.Flatten()(QActivation("quantized_relu(8,3)")(x))
    return keras.Model(inp, L.Activation("softmax")(QDense(10, kernel_quantizer=q8, bias_quantizer=q8)(x)))


def test_qkeras_depthwise_and_separable_are_imported_as_trained(tmp_path, cifar10_dir):
    from board.cifar10 import load_split
    from hls_build.ptq import load_model_file
    from training.data import preprocess

    qkeras_depthwise_model().save(tmp_path / "q.h5")
    report = import_float_model(tmp_path / "q.h5", tmp_path / "q", input_scale=1.0, test_images=100,
                                cifar10_dir=str(cifar10_dir))  # fmt: skip
    assert report.split == {"sep": ["sep_depthwise", "sep"]} and report.input_folded_into == ["dw_stem"]
    imported = load_model_file(tmp_path / "q" / "model.h5")
    kinds = {lyr.name: type(lyr).__name__ for lyr in imported.layers}
    assert kinds["sep_depthwise"] == kinds["dw_stem"] == "QDepthwiseConv2D" and kinds["sep"] == "QConv2D"
    # Bit for bit: raw pixels through the trained model = pixel / 256 through the imported one.
    pixels = load_split("test", cifar10_dir).head(32).images
    source = load_model_file(tmp_path / "q.h5")
    logits = keras.Model(source.input, source.layers[-2].output)
    np.testing.assert_array_equal(imported.predict(preprocess(pixels), verbose=0),
                                  logits.predict(pixels.astype(np.float32), verbose=0))  # fmt: skip


@pytest.mark.slow
def test_qkeras_depthwise_bundle_is_bit_exact(tmp_path, cifar10_dir, test_split):
    from board.bundle import load_bundle
    from hls_build.build import BuildOptions, build_bundle

    qkeras_depthwise_model().save(tmp_path / "q.h5")
    import_float_model(tmp_path / "q.h5", tmp_path / "q", input_scale=1.0, test_images=100,
                       cifar10_dir=str(cifar10_dir))  # fmt: skip
    options = BuildOptions(gate_images=100, csim_images=8, keras_prediction_images=100)
    m = load_bundle(build_bundle(tmp_path / "q", tmp_path / "o", tmp_path / "w", options, test_split)).manifest.metrics
    assert m["csim_vs_fast_engine_identical"] == m["csim_vs_keras_images"] == 8
    assert m["firmware_vs_keras_max_abs_logit_diff"] == 0.0


def test_qkeras_depth_multiplier_is_refused():
    from qkeras import QDepthwiseConv2D

    inp = keras.Input((32, 32, 3))
    q = "quantized_bits(8,0,alpha=1)"
    x = QDepthwiseConv2D(3, depth_multiplier=2, depthwise_quantizer=q, bias_quantizer=q, name="qdw")(inp)
    with pytest.raises(ByoModelError, match="qdw: QDepthwiseConv2D with depth_multiplier 2"):
        check_qkeras_model(keras.Model(inp, L.Dense(10)(L.Flatten()(x))))
