"""Bring your own PyTorch model through ONNX: NCHW graphs in the PyTorch export layout, translated to Keras.

The fixtures are made by ``fixtures/onnx_byo/make_fixtures.py`` (no PyTorch here: they are built as a PyTorch
export writes them); the translated Keras model must compute what onnxruntime computes from the ONNX file, and then
it is an ordinary float Keras model for the import (its bit-exact bundle flow is tested in test_byo_layers.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from hls_build.onnx_import import OnnxImportError, onnx_to_keras

FIXTURES = Path(__file__).parent / "fixtures" / "onnx_byo"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def test_fixtures_are_what_the_committed_script_makes(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(str(tmp_path))
    for name in mod.FIXTURES:
        assert (tmp_path / name).read_bytes() == (FIXTURES / name).read_bytes(), name


@pytest.mark.parametrize("name", ["resnet_block.onnx", "flatten_head.onnx"])
def test_translation_computes_what_onnxruntime_computes(name):
    import onnxruntime as ort

    model = onnx_to_keras(FIXTURES / name)
    x = np.random.default_rng(0).uniform(-2, 2, (16, 3, 32, 32)).astype(np.float32)
    want = ort.InferenceSession(str(FIXTURES / name)).run(None, {"input": x})[0]
    got = model.predict(x.transpose(0, 2, 3, 1), verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_onnx_model_is_imported_with_torchvision_normalization(tmp_path, cifar10_dir):
    """The usual PyTorch input, (pixel / 255 - mean) / std, folded into the first convolution; PTQ as for Keras."""
    from hls_build.ptq import import_float_model

    report = import_float_model(FIXTURES / "resnet_block.onnx", tmp_path / "onnx_rn", input_scale=255.0,
                                input_mean=CIFAR_MEAN, input_std=CIFAR_STD, calibration_images=200,
                                test_images=200, cifar10_dir=str(cifar10_dir))  # fmt: skip
    assert (tmp_path / "onnx_rn" / "model.h5").is_file()
    assert report.input_folded_into == ["conv1_Conv"] and len(report.activations) == 3
    assert {k["folded"] for k in report.kernels.values() if k["folded"]} == {
        "bn1_BatchNormalization", "layer1_0_bn1_BatchNormalization", "layer1_0_bn2_BatchNormalization",
        "layer1_0_downsample_1_BatchNormalization"}  # fmt: skip
    # An untrained network: only that the 8-bit model follows the float one.
    assert report.agreement >= 0.8


def _graph_with(op: str, **attrs) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 32, 32])
    g = helper.make_graph([helper.make_node(op, ["input"], ["y"], name=f"/act/{op}", **attrs)], "g", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (lambda: _graph_with("Sigmoid"), r"node '/act/Sigmoid' \(Sigmoid\): operator Sigmoid is not supported"),
        (lambda: _graph_with("MaxPool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), "padded"),
    ],
)
def test_unsupported_nodes_are_refused_naming_them(tmp_path, model, match):
    path = tmp_path / "m.onnx"
    onnx.save(model(), str(path))
    with pytest.raises(OnnxImportError, match=match):
        onnx_to_keras(path)


def test_wrong_input_shape_is_refused(tmp_path):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, 28, 28])
    g = helper.make_graph([helper.make_node("Relu", ["input"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    with pytest.raises(OnnxImportError, match=r"expected NCHW \[N, 3, 32, 32\]"):
        onnx_to_keras(tmp_path / "m.onnx")
