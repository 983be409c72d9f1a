"""The bundle's 8-bit ONNX reference (hls_build.int8_reference), made by the bundle build on the test bundle."""

from __future__ import annotations

import numpy as np
import pytest

from board.bundle import load_bundle, sha256_file


def test_the_bundle_carries_an_8_bit_reference_listed_with_its_sha256(bundle_dir):
    m = load_bundle(bundle_dir).manifest
    assert m.onnx_reference_int8 == "reference_int8.onnx"
    assert m.files["reference_int8.onnx"] == sha256_file(bundle_dir / "reference_int8.onnx")
    info = m.metrics["onnx_references"]
    # Calibrated on training images, never test images.
    assert info["calibration"]["split"] == "train" and info["calibration"]["images"] == 1000
    assert info["test_images"] == 1000 and 0 < info["int8_top1"] <= 1 and 0 < info["float_top1"] <= 1
    # The float reference computes what the firmware computes: its top-1 is the Keras model's on those images.
    assert info["float_top1"] == pytest.approx(m.metrics["keras_top1"], abs=0.002)
    # The target: the 8-bit reference within 1 point of the float one (a 2-epoch model here).
    assert abs(info["int8_top1"] - info["float_top1"]) <= 0.01
    assert info["int8_vs_float_agreement"] >= 0.9


def test_the_8_bit_reference_is_8_bit_and_runs_integer_kernels(bundle_dir, test_split):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = onnx.load(bundle_dir / "reference_int8.onnx")
    ops = [n.op_type for n in model.graph.node]
    # No fake-quantization ops of the QKeras export: the plain network between QuantizeLinear/DequantizeLinear.
    assert "Round" not in ops and ops.count("Conv") == 9 and "QuantizeLinear" in ops
    weights = {t.name: t for t in model.graph.initializer}
    conv_weights = [n.input[1] for n in model.graph.node if n.op_type == "Conv"]
    producers = {o: n for n in model.graph.node for o in n.output}
    assert all(producers[w].op_type == "DequantizeLinear" for w in conv_weights)
    assert all(weights[producers[w].input[0]].data_type == onnx.TensorProto.INT8 for w in conv_weights)
    # onnxruntime fuses every convolution into its integer kernel.
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(bundle_dir.parent / "int8_optimized.onnx")
    sess = ort.InferenceSession(str(bundle_dir / "reference_int8.onnx"), opts, providers=["CPUExecutionProvider"])
    fused = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
    (bundle_dir.parent / "int8_optimized.onnx").unlink()
    assert fused.count("QLinearConv") == 9 and "Conv" not in fused
    x = test_split.head(8).images.astype(np.float32) / 256
    assert sess.run(None, {"image": x})[0].shape == (8, 10)


def test_a_qkeras_layer_without_a_plain_equivalent_is_named():
    from qkeras import QConv2DBatchnorm

    from hls_build.int8_reference import Int8ReferenceError, cpu_float_model
    from training.keras_compat import keras

    inp = keras.Input((8, 8, 3))
    out = QConv2DBatchnorm(4, 3, name="qbn", kernel_quantizer="quantized_bits(8,0,1)")(inp)
    with pytest.raises(Int8ReferenceError, match=r"layer qbn \(QConv2DBatchnorm\) has no plain Keras equivalent"):
        cpu_float_model(keras.Model(inp, out))
