"""Bring your own QKeras model: imported as trained (quantizers kept, no post-training quantization).

The default suite checks that the imported model computes what the trained one does (raw-pixel input folded into
the first layer exactly) and that what cannot be computed exactly is refused; the full bundle with its gate
(C-simulation and fast engine against Keras) is a slow test.
"""

from __future__ import annotations

import numpy as np
import pytest

from hls_build.ptq import ByoModelError, check_qkeras_model, import_float_model, import_qkeras_model
from training.keras_compat import keras

L = keras.layers


def qkeras_cnn(first: str = "QConv2DBatchnorm", batchnorm: bool = True) -> keras.Model:
    """A small QKeras CNN as a QKeras user writes one (BN folded in training, then a QConv2D + BatchNormalization)."""
    from qkeras import QActivation, QConv2D, QConv2DBatchnorm, QDense

    keras.utils.set_random_seed(4)
    q8 = "quantized_bits(8,0,alpha=1)"
    inp = keras.Input((32, 32, 3))
    if first == "QConv2DBatchnorm":
        x = QConv2DBatchnorm(8, 3, strides=2, padding="same", kernel_quantizer=q8, bias_quantizer=q8, name="stem")(inp)
    else:
        x = QConv2D(8, 3, strides=2, padding="same", kernel_quantizer=q8, bias_quantizer=q8)(inp)
    x = QActivation("quantized_relu(8,3)")(x)
    x = QConv2D(8, 3, padding="same", kernel_quantizer=q8, bias_quantizer="quantized_bits(12,2,alpha=1)")(x)
    if batchnorm:  # folded on import or bundle, and rounded again there: not bit for bit the trained model
        x = L.BatchNormalization()(x)
    x = QActivation("quantized_relu(8,3)")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(L.Dropout(0.1)(x))
    x = QDense(10, kernel_quantizer=q8, bias_quantizer=q8)(x)
    model = keras.Model(inp, L.Activation("softmax")(x))
    rng = np.random.default_rng(1)
    for bn in [lyr for lyr in model.layers if isinstance(lyr, L.BatchNormalization)]:
        bn.set_weights([w + rng.uniform(0.1, 0.5, w.shape).astype(np.float32) for w in bn.get_weights()])
    return model


@pytest.fixture(scope="module")
def qkeras_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("qk") / "qkeras_cnn.h5"
    qkeras_cnn().save(path)
    return path


@pytest.fixture(scope="module")
def qkeras_file_folded_bn(tmp_path_factory):
    """Every BatchNormalization trained folded (QConv2DBatchnorm): the import is the trained model bit for bit."""
    path = tmp_path_factory.mktemp("qk") / "qkeras_cnn_no_bn.h5"
    qkeras_cnn(batchnorm=False).save(path)
    return path


def test_qkeras_model_is_imported_as_trained_with_raw_pixels(qkeras_file_folded_bn, tmp_path, cifar10_dir):
    from board.cifar10 import load_split
    from hls_build.ptq import load_model_file
    from training.data import preprocess

    # import_float_model sees the QKeras layers and takes this route by itself.
    qkeras_file = qkeras_file_folded_bn
    report = import_float_model(qkeras_file, tmp_path / "qk", input_scale=1.0, test_images=300,
                                cifar10_dir=str(cifar10_dir))  # fmt: skip
    # The stem (a QConv2DBatchnorm, folded into a QConv2D first) holds the 2^8 of the raw-pixel input.
    assert report.calibration.startswith("none") and report.input_folded_into == ["stem"]
    assert report.agreement == 1.0 and report.top1_float == report.top1_quantized
    # Bit for bit: raw pixels through the trained model = pixel / 256 through the imported one (2^8 folded exactly).
    pixels = load_split("test", cifar10_dir).head(64).images
    source = load_model_file(qkeras_file)
    logits = keras.Model(source.input, source.layers[-2].output)  # before the softmax the import removed
    imported = load_model_file(tmp_path / "qk" / "model.h5")
    np.testing.assert_array_equal(imported.predict(preprocess(pixels), verbose=0),
                                  logits.predict(pixels.astype(np.float32), verbose=0))  # fmt: skip
    assert any("activation" in r for r in report.removed) and any("dropout" in r for r in report.removed)


def test_separate_batchnorm_is_folded_and_measured(qkeras_file, tmp_path, cifar10_dir):
    """A QConv2D + BatchNormalization pair is folded (rounded again): the import says what that cost."""
    report = import_qkeras_model(qkeras_file, tmp_path / "qk", 1.0, 300, str(cifar10_dir))
    assert report.agreement >= 0.9 and report.test_images == 300


@pytest.mark.parametrize(
    ("scale", "mean", "match"),
    [(255.0, None, "not pixel / 256 times a power of two"), (1.0, (1.0, 2.0, 3.0), "mean/std cannot be folded")],
)
def test_inexact_input_folding_is_refused(qkeras_file, tmp_path, cifar10_dir, scale, mean, match):
    with pytest.raises(ByoModelError, match=match):
        import_qkeras_model(
            qkeras_file, tmp_path / "x", scale, 10, str(cifar10_dir), mean, (1.0, 1.0, 1.0) if mean else None
        )
    assert not (tmp_path / "x").exists()


def test_float_layers_and_formatless_quantizers_are_refused():
    from qkeras import QActivation, QDense

    inp = keras.Input((32, 32, 3))
    x = L.Flatten()(L.Conv2D(4, 3)(inp))
    with pytest.raises(ByoModelError, match=r"conv2d(_\d+)?: a float Conv2D in a QKeras model"):
        check_qkeras_model(keras.Model(inp, QDense(10, kernel_quantizer="quantized_bits(8,0,alpha=1)",
                                                   bias_quantizer="quantized_bits(8,0,alpha=1)")(x)))  # fmt: skip
    inp = keras.Input((32, 32, 3))
    x = QActivation("quantized_tanh(8)")(L.Flatten()(inp))
    with pytest.raises(ByoModelError, match="no fixed-point format"):
        check_qkeras_model(keras.Model(inp, QDense(10, kernel_quantizer="quantized_bits(8,0,alpha=1)",
                                                   bias_quantizer="quantized_bits(8,0,alpha=1)")(x)))  # fmt: skip


@pytest.mark.slow
def test_qkeras_bundle_is_bit_exact(qkeras_file, tmp_path, cifar10_dir, test_split):
    from board.bundle import load_bundle
    from hls_build.build import BuildOptions, build_bundle

    import_float_model(qkeras_file, tmp_path / "qk", input_scale=1.0, test_images=200, cifar10_dir=str(cifar10_dir))
    options = BuildOptions(gate_images=200, csim_images=8, keras_prediction_images=100)
    m = load_bundle(
        build_bundle(tmp_path / "qk", tmp_path / "overlays", tmp_path / "work", options, test_split)
    ).manifest
    assert m.metrics["csim_vs_fast_engine_identical"] == 8
    assert (
        m.metrics["firmware_vs_keras_max_abs_logit_diff"] == 0.0
        and m.metrics["first_layer_differing_from_keras"] is None
    )
