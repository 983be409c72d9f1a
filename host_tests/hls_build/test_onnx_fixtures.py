"""Small ONNX models for the operators the bundles' references and the bring-your-own path use.

Built here with the ``onnx`` package (host environment only), checked against onnxruntime with the numpy
evaluator (``board.onnx_numpy``) in this environment (numpy 2), and left in ``<test-overlays>/onnx-fixtures`` with
their inputs so the board tests check the evaluator again on Python 3.10 + numpy 1.26
(``host_tests/board/test_onnx_numpy.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from board.onnx_numpy import OnnxNumpyModel, UnsupportedOperatorError  # noqa: E402

FIXTURES = "onnx-fixtures"
RTOL = 1e-4


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "fixture", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="host_tests")
    model.ir_version = 8  # what onnxruntime 1.2x reads
    return model


def _vi(name: str, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _single(op: str, x_shape, out_shape, inits=(), extra_inputs=(), opset=17, **attrs):
    node = helper.make_node(op, ["x", *extra_inputs], ["y"], name=op.lower(), **attrs)
    return _model([node], [_vi("x", x_shape)], [_vi("y", out_shape)], inits, opset)


def _small_cnn() -> onnx.ModelProto:
    """A bring-your-own-like CNN: Conv (strided, grouped, dilated) -> BN -> Relu -> MaxPool -> Pad -> Conv ->
    AveragePool -> Concat with a GlobalMaxPool branch -> Flatten -> Gemm -> Softmax."""
    r = _rng(1)
    inits = [
        _init("w1", r.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)),
        _init("b1", r.normal(0, 0.1, 8).astype(np.float32)),
        _init("bn_s", r.uniform(0.5, 1.5, 8).astype(np.float32)),
        _init("bn_b", r.normal(0, 0.1, 8).astype(np.float32)),
        _init("bn_m", r.normal(0, 0.1, 8).astype(np.float32)),
        _init("bn_v", r.uniform(0.5, 1.5, 8).astype(np.float32)),
        _init("w2", r.normal(0, 0.3, (8, 4, 3, 3)).astype(np.float32)),
        _init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)),
        _init("wd", r.normal(0, 0.3, (10, 8 * 4 * 4 + 8)).astype(np.float32)),
        _init("bd", r.normal(0, 0.1, 10).astype(np.float32)),
    ]
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w1", "b1"], ["c1"], strides=[1, 1], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"], epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Pad", ["p1", "pads"], ["pd"], mode="reflect"),
        helper.make_node("Conv", ["pd", "w2"], ["c2"], group=2, dilations=[1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node(
            "AveragePool", ["r2"], ["p2"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0
        ),  # fmt: skip
        helper.make_node("Flatten", ["p2"], ["f2"], axis=1),
        helper.make_node("GlobalMaxPool", ["r1"], ["g"]),
        helper.make_node("Flatten", ["g"], ["fg"], axis=1),
        helper.make_node("Concat", ["f2", "fg"], ["cat"], axis=1),
        helper.make_node("Gemm", ["cat", "wd", "bd"], ["logits"], transB=1, alpha=0.5, beta=1.0),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    return _model(nodes, [_vi("image", ["N", 32, 32, 3])], [_vi("probs", ["N", 10])], inits)


def _cases() -> dict[str, tuple[onnx.ModelProto, dict[str, np.ndarray]]]:
    r = _rng(0)
    x4 = r.normal(0, 1, (3, 4, 9, 11)).astype(np.float32)
    cases: dict[str, tuple[onnx.ModelProto, dict[str, np.ndarray]]] = {}

    def add(name: str, model: onnx.ModelProto, **feeds: np.ndarray) -> None:
        cases[name] = (model, feeds or {"x": x4})

    add("avgpool_ceil_pads", _single("AveragePool", x4.shape, None, kernel_shape=[3, 3], strides=[2, 2],
                                     pads=[1, 0, 1, 1], ceil_mode=1, count_include_pad=1))  # fmt: skip
    add("avgpool_exclude_pad", _single("AveragePool", x4.shape, None, kernel_shape=[3, 2], strides=[1, 2],
                                       pads=[1, 1, 1, 1], count_include_pad=0))  # fmt: skip
    add("avgpool_same_upper", _single("AveragePool", x4.shape, None, kernel_shape=[3, 3], strides=[2, 2],
                                      auto_pad="SAME_UPPER"))  # fmt: skip
    add("maxpool_ceil_dilated", _single("MaxPool", x4.shape, None, kernel_shape=[2, 3], strides=[2, 2],
                                        pads=[0, 1, 0, 1], dilations=[2, 1], ceil_mode=1))  # fmt: skip
    add("globalmaxpool", _single("GlobalMaxPool", x4.shape, None))
    add("globalaveragepool", _single("GlobalAveragePool", x4.shape, None))
    add("flatten_axis2", _single("Flatten", x4.shape, None, axis=2))
    add("reshape_zero_minus1", _single("Reshape", x4.shape, None, [_init("s", np.array([0, -1, 11], np.int64))], ["s"]))
    add("pad_constant", _single("Pad", x4.shape, None, [_init("p", np.array([0, 0, 1, 2, 0, 1, 0, 3], np.int64)),
                                _init("v", np.array(0.5, np.float32))], ["p", "v"], mode="constant"))  # fmt: skip
    add("pad_edge", _single("Pad", x4.shape, None, [_init("p", np.array([0, 0, 2, 1, 0, 0, 1, 2], np.int64))], ["p"],
                            mode="edge"))  # fmt: skip
    add("softmax_axis1", _single("Softmax", x4.shape, None, axis=1))
    add("clip", _single("Clip", x4.shape, None, [_init("lo", np.array(-0.5, np.float32)),
                        _init("hi", np.array(0.75, np.float32))], ["lo", "hi"]))  # fmt: skip
    add("reducemean_axes", _single("ReduceMean", x4.shape, None, [_init("a", np.array([2, 3], np.int64))], ["a"],
                                   opset=18, keepdims=0))  # fmt: skip
    a2 = r.normal(0, 1, (5, 7)).astype(np.float32)
    add("gemm_transA", _single("Gemm", a2.shape, None, [_init("b", r.normal(0, 1, (5, 3)).astype(np.float32)),
                               _init("c", r.normal(0, 1, (3,)).astype(np.float32))], ["b", "c"], transA=1, beta=0.25),
        x=a2)  # fmt: skip
    add("matmul_batched", _single("MatMul", x4.shape, None, [_init("b", r.normal(0, 1, (11, 6)).astype(np.float32))],
                                  ["b"]))  # fmt: skip
    cat = helper.make_node("Concat", ["x", "x2"], ["y"], axis=2)
    add("concat", _model([cat], [_vi("x", x4.shape), _vi("x2", [3, 4, 2, 11])], [_vi("y", None)]),
        x=x4, x2=r.normal(0, 1, (3, 4, 2, 11)).astype(np.float32))  # fmt: skip
    add("conv_same_upper_stride2_dilated",
        _single("Conv", x4.shape, None, [_init("w", r.normal(0, 0.3, (6, 2, 3, 3)).astype(np.float32))], ["w"],
                auto_pad="SAME_UPPER", strides=[2, 2], group=2))  # fmt: skip
    add("conv_dilation", _single("Conv", x4.shape, None, [_init("w", r.normal(0, 0.3, (5, 4, 2, 3)).astype(np.float32)),
                                 _init("b", r.normal(0, 1, 5).astype(np.float32))], ["w", "b"], dilations=[2, 2],
                                 pads=[1, 2, 0, 1]))  # fmt: skip
    # QDQ: per-tensor uint8 and int8, per-channel int8 weights (what onnxruntime's static quantization writes).
    qnodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zu"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "zu"], ["dq"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
        helper.make_node("Conv", ["dq", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "s2", "z2"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "s2", "z2"], ["y"]),
    ]
    qinits = [
        _init("s", np.array(0.02, np.float32)),
        _init("zu", np.array(128, np.uint8)),
        _init("wq", r.integers(-127, 128, (6, 4, 3, 3)).astype(np.int8)),
        _init("ws", r.uniform(0.001, 0.01, 6).astype(np.float32)),
        _init("wz", np.zeros(6, np.int8)),
        _init("s2", np.array(0.05, np.float32)),
        _init("z2", np.array(-3, np.int8)),
    ]
    add("qdq_conv", _model(qnodes, [_vi("x", x4.shape)], [_vi("y", None)], qinits))
    img = r.integers(0, 256, (6, 32, 32, 3)).astype(np.float32) / 256
    add("small_cnn", _small_cnn(), image=img)
    return cases


def _quantized_small_cnn(folder: Path, cases) -> None:
    """onnxruntime's static quantization (QDQ, per-channel) of the small CNN: the 8-bit path on pooling layers."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    model, feeds = cases["small_cnn"]
    src = folder / "small_cnn.onnx"
    calib = _rng(5).integers(0, 256, (32, 32, 32, 3)).astype(np.float32) / 256

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"image": calib[i : i + 8]} for i in range(0, len(calib), 8)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(src, folder / "small_cnn_int8.onnx", Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)  # fmt: skip
    np.savez(folder / "small_cnn_int8.inputs.npz", **feeds)


@pytest.fixture(scope="module")
def fixture_dir(test_overlays: Path) -> Path:
    folder = test_overlays / FIXTURES
    folder.mkdir(parents=True, exist_ok=True)
    cases = _cases()
    for name, (model, feeds) in cases.items():
        onnx.save(model, folder / f"{name}.onnx")
        np.savez(folder / f"{name}.inputs.npz", **feeds)
    _quantized_small_cnn(folder, cases)
    return folder


def _ort(path: Path, feeds, optimize: bool = True) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, feeds)


def test_every_fixture_matches_onnxruntime(fixture_dir):
    names = sorted(p.name[: -len(".onnx")] for p in fixture_dir.glob("*.onnx"))
    assert len(names) >= 20
    for name in names:
        feeds = dict(np.load(fixture_dir / f"{name}.inputs.npz"))
        model = OnnxNumpyModel.load(fixture_dir / f"{name}.onnx")
        (got,) = model.run(feeds)
        # The 8-bit graph against onnxruntime's plain QDQ evaluation (its fused integer kernels round differently).
        (want,) = _ort(fixture_dir / f"{name}.onnx", feeds, optimize="int8" not in name and "qdq" not in name)
        # What the board tests compare with too (their onnxruntime is older: see test_onnx_numpy.py there).
        np.save(fixture_dir / f"{name}.expected.npy", want)
        assert got.shape == want.shape and got.dtype == want.dtype, name
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * float(np.max(np.abs(want))), err_msg=name)
        if got.ndim == 2 and got.shape[1] > 1:
            assert np.array_equal(got.argmax(1), want.argmax(1)), name


def test_the_quantized_cnn_is_really_8_bit(fixture_dir):
    model = OnnxNumpyModel.load(fixture_dir / "small_cnn_int8.onnx")
    assert {"QuantizeLinear", "DequantizeLinear", "MaxPool", "AveragePool", "Gemm"} <= set(model.operators)


def test_an_unknown_operator_is_named(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Hardmax", ["r"], ["h"]),
             helper.make_node("Det", ["h"], ["y"])]  # fmt: skip
    model = _model(nodes, [_vi("x", [2, 2])], [_vi("y", None)])
    path = tmp_path / "unknown.onnx"
    onnx.save(model, path)
    with pytest.raises(UnsupportedOperatorError, match="Det, Hardmax") as info:
        OnnxNumpyModel.load(path)
    assert info.value.operators == ["Det", "Hardmax"] and info.value.exit_code == 2
