"""BatchNormalization folding and the derived exact fixed-point types, on toy layers with hand-checkable numbers."""

from __future__ import annotations

import numpy as np
import pytest

from hls_build.fold import FoldError, fold_batchnorm, integer_bits_for
from hls_build.precision import PrecisionError, derive_precisions
from training.keras_compat import keras


def _toy(kernel: np.ndarray, bn: tuple[float, float, float, float], side: int = 4, extra_consumer: bool = False):
    """image (side x side x 1) -> QConv2D 1x1 (<8,3>, no bias) -> BatchNormalization -> quantized ReLU <8,3>."""
    from qkeras import QActivation, QConv2D, quantized_bits, quantized_relu

    inp = keras.Input((side, side, kernel.shape[2]), name="image")
    conv = QConv2D(kernel.shape[3], kernel.shape[:2], padding="same", use_bias=False, name="conv",
                   kernel_quantizer=quantized_bits(8, 2, keep_negative=True, alpha=1))  # fmt: skip
    y = conv(inp)
    z = keras.layers.BatchNormalization(name="bn", epsilon=0.0)(y)
    out = QActivation(quantized_relu(8, 3), name="relu")(z)
    if extra_consumer:
        out = keras.layers.Add(name="add")([out, y])
    model = keras.Model(inp, out)
    conv.set_weights([kernel])
    gamma, beta, mean, var = bn
    model.get_layer("bn").set_weights([np.full(kernel.shape[3], v, np.float32) for v in (gamma, beta, mean, var)])
    return model


def test_fold_hand_checked_numbers():
    # W = 0.5, gamma = 2, var = 4 (sqrt 2, eps 0), mean = 0.25, beta = 0.125:
    # W' = 0.5 * 2 / 2 = 0.5 and b' = (0 - 0.25) * 1 + 0.125 = -0.125.
    model = _toy(np.full((1, 1, 1, 1), 0.5, np.float32), (2.0, 0.125, 0.25, 4.0))
    folded, info = fold_batchnorm(model)
    assert [type(lyr).__name__ for lyr in folded.layers] == ["InputLayer", "QConv2D", "QActivation"]
    assert [f.layer for f in info] == ["conv"] and info[0].batchnorm == "bn"
    w, b = folded.get_layer("conv").get_weights()
    assert w.ravel().tolist() == [0.5] and b.tolist() == [-0.125]
    # |W'| = 0.5 needs the sign bit only: ap_fixed<8,1> (7 fractional bits). The bias has the accumulator's
    # fractional bits: input ap_ufixed<8,0> (8) + kernel (7) = 15, and 1 integer bit.
    assert info[0].kernel_type == "ap_fixed<8,1>" and info[0].bias_type == "ap_fixed<16,1>" and info[0].bias_exact
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1) / 16
    expected = np.clip(np.round((x * 0.5 - 0.125) * 32) / 32, 0, 8 - 1 / 32)
    assert np.array_equal(folded.predict(x, verbose=0), expected)


def test_fold_keeps_outputs_within_the_rounding_of_the_folded_kernel():
    rng = np.random.default_rng(0)
    kernel = (np.round(rng.uniform(-2, 2, (3, 3, 3, 4)) * 32) / 32).astype(np.float32)
    model = _toy(kernel, (1.7, 0.3, 0.1, 0.8), side=8)
    model.get_layer("bn").set_weights([rng.uniform(0.5, 2, 4).astype(np.float32) for _ in range(4)])
    folded, info = fold_batchnorm(model)
    pre_trained = keras.Model(model.input, model.get_layer("bn").output)
    pre_folded = keras.Model(folded.input, folded.get_layer("conv").output)
    x = np.floor(rng.uniform(0, 256, (4, 8, 8, 3))).astype(np.float32) / 256
    diff = np.abs(pre_trained.predict(x, verbose=0) - pre_folded.predict(x, verbose=0))
    # Each of the 27 products moves by at most |x| * (half a kernel LSB); the bias by half its LSB.
    frac = 8 - int(info[0].kernel_type.split(",")[1].rstrip(">"))
    assert diff.max() <= 27 * 1.0 * 2.0 ** -(frac + 1) + 2.0**-16
    assert info[0].kernel_rounding_error <= 2.0 ** -(frac + 1) + 1e-12
    assert model.get_layer("bn") is not None  # the source model is left alone


def test_fold_refuses_a_conv_whose_output_is_also_used_elsewhere():
    model = _toy(np.full((1, 1, 1, 1), 0.5, np.float32), (1.0, 0.0, 0.0, 1.0), extra_consumer=True)
    with pytest.raises(FoldError, match="also feeds"):
        fold_batchnorm(model)


def test_integer_bits_for():
    assert integer_bits_for(0.5) == 1  # [-1, 1)
    assert integer_bits_for(0.49) == 0
    assert integer_bits_for(3.99) == 3  # [-4, 4)
    assert integer_bits_for(4.0) == 4
    assert integer_bits_for(0.99, signed=False) == 0


def test_derived_types_hold_the_exact_range_of_a_hand_checked_conv():
    # Folded: W' = [0.5, -0.25] over two input channels, b' = -0.125; input in [0, 255/256].
    model = _toy(np.array([0.5, -0.25], np.float32).reshape(1, 1, 2, 1), (1.0, 0.125, 0.25, 1.0))
    folded, _ = fold_batchnorm(model)
    p = derive_precisions(folded)
    acc, (lo, hi) = p.accums["conv"], p.ranges["conv"]
    # Largest sum 0.5 * 255/256 - 0.125, smallest -0.25 * 255/256 - 0.125 (and 0 from the padding).
    assert hi == pytest.approx(0.5 * 255 / 256 - 0.125) and lo == pytest.approx(-0.25 * 255 / 256 - 0.125)
    assert acc.frac_bits == 8 + 7 and acc.integer == 1 and acc.signed  # |sums| < 1
    assert str(p.results["relu"]) == "ap_ufixed<8,3>"


def test_unfolded_batchnorm_has_no_exact_type():
    model = _toy(np.full((1, 1, 1, 1), 0.5, np.float32), (1.0, 0.0, 0.0, 1.0))
    with pytest.raises(PrecisionError, match="BatchNormalization"):
        derive_precisions(model)
