"""Every registered model builds and runs; the quantization convention maps to QKeras correctly."""

from __future__ import annotations

import numpy as np
import pytest

from training.keras_compat import keras  # noqa: F401  (first: prepares tf-keras for QKeras)
from training.models import UnknownModelError, create_model, list_models
from training.quant import QuantSpec, QuantSpecError


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("quant", [None, "<8,3>"], ids=["float", "q8_3"])
def test_every_registered_model_builds_and_runs(name, quant):
    model = create_model(name, quant=quant)
    depth = int(name.removeprefix("resnet"))
    convs = [lyr for lyr in model.layers if "conv" in type(lyr).__name__.lower()]
    # He et al.: 6k+2 layers with weights = 6k convs in blocks + stem + dense; plus the two projection shortcuts.
    assert len(convs) == depth - 1 + 2
    out = model(np.zeros((2, 32, 32, 3), np.float32))
    assert out.shape == (2, 10)


def test_removing_skips_removes_add_layers():
    full, none = create_model("resnet20"), create_model("resnet20", skips="none")
    adds = lambda m: [lyr for lyr in m.layers if type(lyr).__name__ == "Add"]  # noqa: E731
    assert len(adds(full)) == 9 and len(adds(none)) == 0
    partial = create_model("resnet20", skips=[True, False] * 4 + [True])
    assert len(adds(partial)) == 5


def test_unknown_model_is_refused_with_the_list():
    with pytest.raises(UnknownModelError, match="resnet20"):
        create_model("resnet21")


def test_wrong_number_of_skip_flags_is_refused():
    with pytest.raises(ValueError, match="9 residual blocks"):
        create_model("resnet20", skips=[True] * 3)


@pytest.mark.parametrize(
    ("text", "total", "integer", "qkeras_integer"),
    [("<8,3>", 8, 3, 2), ("8,3", 8, 3, 2), ("ap_fixed<16,6>", 16, 6, 5), ("<2,1>", 2, 1, 0)],
)
def test_quant_convention_counts_the_sign_and_maps_to_qkeras(text, total, integer, qkeras_integer):
    spec = QuantSpec.parse(text)
    assert (spec.total_bits, spec.integer_bits) == (total, integer)
    q = spec.weight_quantizer()
    # QKeras does not count the sign bit among the integer bits.
    assert (q.bits, q.integer, q.keep_negative) == (total, qkeras_integer, True)
    assert spec.hls_weight_type() == f"ap_fixed<{total},{integer}>"


def test_qkeras_weight_quantizer_hits_the_ap_fixed_grid():
    spec = QuantSpec(8, 3)
    values = np.linspace(-5, 5, 1001).astype(np.float32)
    q = spec.weight_quantizer()(values).numpy()
    step = 2.0**-spec.frac_bits
    assert np.allclose(q / step, np.round(q / step))  # on the 2^-5 grid
    assert q.min() >= -4.0 and q.max() <= 4.0 - step


@pytest.mark.parametrize("text", ["<1,1>", "<8,0>", "<8,9>", "<40,8>", "eight", "<8.5,3>"])
def test_unrepresentable_quant_specs_are_refused(text):
    with pytest.raises(QuantSpecError):
        QuantSpec.parse(text)


def test_folded_batchnorm_model_has_one_layer_per_pair_and_needs_a_quant_spec():
    folded = create_model("resnet8", quant="<8,3>", fold_bn=True)
    kinds = [type(layer).__name__ for layer in folded.layers]
    assert kinds.count("QConv2DBatchnorm") == 9 and "BatchNormalization" not in kinds
    # Folded kernels: 8 bits, one integer bit behind a ReLU, two more than the spec's where the layer reads pixels.
    # The folded bias: the accumulator's fractional bits (input + kernel) and 6 integer bits (5 + sign).
    formats = {}
    for name in ("stem_conv", "s2b1_conv1"):
        layer = folded.get_layer(name)
        k, b = layer.kernel_quantizer_internal, layer.bias_quantizer_internal
        formats[name] = (k.bits, k.integer, b.bits, b.integer)
    assert formats["stem_conv"] == (8, 4, 6 + 8 + 3, 5)  # input ap_ufixed<8,0>: 8 fractional bits
    assert formats["s2b1_conv1"] == (8, 0, 6 + 5 + 7, 5)  # input ap_ufixed<8,3>: 5 fractional bits
    with pytest.raises(ValueError, match="quantiz"):
        create_model("resnet8", fold_bn=True)


def test_weights_copy_between_folded_and_unfolded_models_both_ways():
    from training.models import copy_weights_by_name

    rng = np.random.default_rng(0)
    plain = create_model("resnet8", quant="<8,3>")
    for layer in plain.layers:
        layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    folded = create_model("resnet8", quant="<8,3>", fold_bn=True)
    assert copy_weights_by_name(plain, folded) == 9 + 1  # 9 conv+BN pairs and the dense layer
    stem = folded.get_layer("stem_conv")
    np.testing.assert_array_equal(stem.kernel.numpy(), plain.get_layer("stem_conv").kernel.numpy())
    np.testing.assert_array_equal(
        stem.batchnorm.moving_variance.numpy(), plain.get_layer("stem_bn").moving_variance.numpy()
    )
    back = create_model("resnet8", quant="<8,3>")
    copy_weights_by_name(folded, back)
    for a, b in zip(plain.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(a, b)
