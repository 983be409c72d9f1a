"""Bring your own PyTorch model: files written by the real ``torch.onnx.export`` and Brevitas ``export_qonnx``.

``results/byo/torch_resnet8/`` holds the ResNet-8 of ``byo/pytorch/resnet8.py`` as torch 2.13 and Brevitas 0.13.4
exported it after training (``metrics.json``), with the logits torch computed on the first test images
(``logits.npz``). The default tests need no torch: they import those files and check the translation against torch's
logits, then the firmware against the imported Keras model bit for bit (hls4ml conversion and the fast engine, which
the bundle tests prove equal to the C-simulation). The tests marked ``torch`` re-export with ``.venv-torch``
(``make env-torch``) and skip without it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hls_build.onnx_import import OnnxImportError, exact_format, onnx_to_keras, quant_values

ROOT = Path(__file__).resolve().parents[2]
EXPORTS = ROOT / "results" / "byo" / "torch_resnet8"
FLOAT, BREVITAS = EXPORTS / "resnet8_float.onnx", EXPORTS / "resnet8_brevitas.onnx"
TORCH_PY = ROOT / ".venv-torch" / "bin" / "python"
SCRIPT = ROOT / "byo" / "pytorch" / "resnet8.py"
FIRMWARE_IMAGES = 20


def _nchw(pixels: np.ndarray, scale: float) -> np.ndarray:
    return pixels.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(scale)


def _firmware_and_keras(model, pixels: np.ndarray, tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The firmware's logits (hls4ml conversion + fast engine, no compile) and the deployed Keras model's."""
    from board.fast_engine import FastEngine
    from board.fixed_point import FixedPoint
    from hls_build.config import HlsSettings, convert, output_fixed_point, prepare_model, write_project
    from hls_build.csim import fix_generated_sources
    from hls_build.firmware_graph import write_firmware_graph
    from training.data import INPUT_FIXED_POINT, preprocess

    deployed, _ = prepare_model(model)
    x = preprocess(pixels)
    hls_model = convert(deployed, HlsSettings(), tmp_path / "hls", project_name="myproject")
    write_project(hls_model)
    fix_generated_sources(tmp_path / "hls", "myproject")
    graph = write_firmware_graph(hls_model, tmp_path / "firmware")
    engine = FastEngine.from_files(graph["graph"], graph["weights"])
    raw = FixedPoint.parse(INPUT_FIXED_POINT).encode(x.reshape(len(x), -1))
    y_fw = FixedPoint.parse(output_fixed_point(deployed)).decode(engine.predict_raw(raw))
    return y_fw, deployed.predict(x, verbose=0).astype(np.float64)


@pytest.fixture(scope="module")
def torch_logits():
    with np.load(EXPORTS / "logits.npz") as z:
        return {k: z[k] for k in z.files}


def test_committed_exports_are_what_the_real_exporters_write():
    """The graph forms the tests rely on: torch.export's (BatchNormalization folded, ReduceMean) and QONNX's."""
    f = onnx.load(str(FLOAT))
    assert f.producer_name == "pytorch" and f.producer_version.startswith("2.13")
    ops = [n.op_type for n in f.graph.node]
    assert "ReduceMean" in ops and "BatchNormalization" not in ops and ops.count("Conv") == 9
    q = onnx.load(str(BREVITAS))
    quants = {n.output[0]: n for n in q.graph.node if n.op_type == "Quant"}
    assert {n.domain for n in quants.values()} == {"qonnx.custom_op.general"}
    layers = [n for n in q.graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(layers) == 10 and all(n.input[1] in quants and n.input[2] in quants for n in layers)
    relus = [n for n in q.graph.node if n.op_type == "Relu"]
    assert len(relus) == 7 and all(r.output[0] in {n.input[0] for n in quants.values()} for r in relus)
    assert all(f.stat().st_size < 1_000_000 for f in (FLOAT, BREVITAS))


def test_float_export_translates_to_what_torch_computed(test_split, torch_logits):
    n = len(torch_logits["float"])
    model = onnx_to_keras(FLOAT)
    got = model.predict(test_split.head(n).images.astype(np.float32) / 255.0, verbose=0)
    np.testing.assert_allclose(got, torch_logits["float"], rtol=1e-4, atol=1e-4)
    assert np.array_equal(got.argmax(1), torch_logits["float"].argmax(1))


def test_float_export_imports_and_its_firmware_is_bit_exact(tmp_path, cifar10_dir, test_split):
    from hls_build.ptq import import_float_model
    from training.train import load_trained_model

    report = import_float_model(FLOAT, tmp_path / "torch_float", input_scale=255.0, calibration_images=200,
                                test_images=200, cifar10_dir=str(cifar10_dir))  # fmt: skip
    assert report.calibration == "max" and len(report.input_folded_into) == 1  # 256 / 255 into the stem
    assert report.top1_float > 0.3 and report.agreement >= 0.9  # a trained model, followed by its 8-bit version
    model = load_trained_model(tmp_path / "torch_float" / "model.h5")
    y_fw, y_keras = _firmware_and_keras(model, test_split.head(FIRMWARE_IMAGES).images, tmp_path)
    assert np.array_equal(y_fw, y_keras)
    assert len(set(y_keras.argmax(1).tolist())) > 1  # not a degenerate model


def test_brevitas_export_is_imported_with_its_quantizers(tmp_path, cifar10_dir, test_split, torch_logits):
    """No post-training quantization: Brevitas's values in QKeras quantizers; Keras = Brevitas, firmware = Keras."""
    from hls_build.ptq import import_float_model
    from training.train import load_trained_model

    report = import_float_model(BREVITAS, tmp_path / "brevitas", test_images=200, cifar10_dir=str(cifar10_dir))
    assert report.calibration.startswith("none") and report.input_scale == 256.0
    model = load_trained_model(tmp_path / "brevitas" / "model.h5")
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"QConv2D", "QActivation", "QDense"} <= kinds and not kinds & {"Conv2D", "Dense", "ReLU"}
    # The imported model computes what Brevitas computed (float32 sums in another order: tiny differences).
    n = len(torch_logits["brevitas"])
    pixels = test_split.head(n).images
    y_imp = model.predict(pixels.astype(np.float32) / 256.0, verbose=0)
    np.testing.assert_allclose(y_imp, torch_logits["brevitas"], atol=1e-3)
    assert np.array_equal(y_imp.argmax(1), torch_logits["brevitas"].argmax(1))
    y_fw, y_keras = _firmware_and_keras(model, pixels[:FIRMWARE_IMAGES], tmp_path)
    assert np.array_equal(y_fw, y_keras)
    assert np.array_equal(y_fw.argmax(1), torch_logits["brevitas"][:FIRMWARE_IMAGES].argmax(1))


# ----------------------------------------------------------------------------------------- QONNX Quant semantics
def test_quant_values_round_half_to_even_and_saturate():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 200.0, -200.0], np.float32)
    np.testing.assert_array_equal(quant_values(x, 1.0, 0, 8, True, False), [0, 2, 2, -0, -2, 127, -128])
    np.testing.assert_array_equal(quant_values(x, 1.0, 0, 8, True, True), [0, 2, 2, -0, -2, 127, -127])
    np.testing.assert_array_equal(quant_values(x, 0.5, 0, 4, False, False), [0.5, 1.5, 2.5, 0, 0, 7.5, 0])


@pytest.mark.parametrize(
    ("values", "fmt"),
    [
        ([0.0], (2, 1)),
        ([0.25, -0.5], (3, 1)),
        ([3.0, -1.0], (4, 3)),
        ([127 / 128, -1.0], (8, 1)),
        ([4.0], (5, 4)),
        ([-4.0], (4, 3)),
        ([1.5, -2.0], (3, 2)),
    ],
)
def test_exact_format_is_the_narrowest_that_holds_the_values(values, fmt):
    from hls_build.fold import _quantize

    assert exact_format(np.array(values)) == fmt
    np.testing.assert_array_equal(_quantize(np.array(values, np.float32), *fmt), values)


def _qonnx(w_scale=2.0**-7, bias="quant", act="relu", input_quant=False, rounding="ROUND", extra=None):
    """A one-convolution QONNX graph as Brevitas writes it (Quant nodes on weight, bias and the ReLU's output)."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def quant(name, src, scale, bits, signed, narrow):
        nodes.append(helper.make_node("Quant", [src, const(f"{name}_s", scale), const(f"{name}_z", 0.0),
                                               const(f"{name}_b", bits)], [f"{name}_out"], name=name,
                                      domain="qonnx.custom_op.general", rounding_mode=rounding, signed=signed,
                                      narrow=narrow))  # fmt: skip
        return f"{name}_out"

    src = quant("Quant_in", "input", 2.0**-8, 8, 0, 0) if input_quant else "input"
    w = quant("Quant_w", const("w", rng.normal(0, 0.2, (4, 3, 3, 3))), w_scale, 8, 1, 1)
    conv_in = [src, w]
    if bias == "quant":
        conv_in.append(quant("Quant_b", const("b", rng.normal(0, 0.1, 4)), 2.0**-12, 16, 1, 0))
    elif bias == "float":
        conv_in.append(const("b", rng.normal(0, 0.1, 4)))
    nodes.append(helper.make_node("Conv", conv_in, ["c"], name="Conv_0", pads=[1, 1, 1, 1], kernel_shape=[3, 3]))
    if act == "relu":
        nodes.append(helper.make_node("Relu", ["c"], ["r"], name="Relu_0"))
        y = quant("Quant_act", "r", 2.0**-5, 8, 0, 0)
    else:  # a signed activation quantizer on the convolution's output (Brevitas QuantIdentity)
        y = quant("Quant_act", "c", 2.0**-5, 8, 1, 0)
    if extra:
        nodes.append(helper.make_node(extra, [y], ["t"], name=f"{extra}_0", domain="qonnx.custom_op.general"))
        y = "t"
    nodes.append(helper.make_node("GlobalAveragePool", [y], ["g"], name="Pool_0"))
    nodes.append(helper.make_node("Flatten", ["g"], ["f"], name="Flatten_0"))
    wd = quant("Quant_wd", const("wd", rng.normal(0, 0.3, (10, 4))), 2.0**-7, 8, 1, 1)
    bd = quant("Quant_bd", const("bd", rng.normal(0, 0.1, 10)), 2.0**-12, 16, 1, 0)
    nodes.append(helper.make_node("Gemm", ["f", wd, bd], ["logits"], name="Gemm_0", transB=1))
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])
    graph = helper.make_graph(nodes, "qonnx", [x], [out], initializer=inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("qonnx.custom_op.general", 2)]
    return helper.make_model(graph, opset_imports=opsets)


def test_small_qonnx_graph_becomes_qkeras_computing_the_quant_nodes(tmp_path):
    """The QONNX definition evaluated in numpy on the same graph equals the translated QKeras model."""
    import onnxruntime as ort

    model = _qonnx()
    onnx.save(model, str(tmp_path / "q.onnx"))
    km = onnx_to_keras(tmp_path / "q.onnx")
    assert [type(layer).__name__ for layer in km.layers if type(layer).__name__.startswith("Q")] == [
        "QConv2D", "QActivation", "QDense"]  # fmt: skip
    assert str(km.get_layer("Quant_act").quantizer) == "quantized_relu(8,3)"  # scale 2^-5 at 8 bits
    # Reference: the same graph with every Quant computed by quant_values (weights) and the ReLU's Quant applied
    # between two onnxruntime halves.
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    x = np.random.default_rng(1).uniform(0, 1, (4, 3, 32, 32)).astype(np.float32)
    w = quant_values(inits["w"], 2.0**-7, 0, 8, True, True)
    b = quant_values(inits["b"], 2.0**-12, 0, 16, True, False)
    conv = helper.make_graph([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1])], "c",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 32, 32])],
                             [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)],
                             [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])  # fmt: skip
    conv_model = helper.make_model(conv, opset_imports=[helper.make_opsetid("", 17)])
    conv_model.ir_version = 10
    c = ort.InferenceSession(conv_model.SerializeToString()).run(None, {"x": x})[0]
    a = quant_values(np.maximum(c, 0), 2.0**-5, 0, 8, False, False).mean((2, 3))
    wd = quant_values(inits["wd"], 2.0**-7, 0, 8, True, True)
    bd = quant_values(inits["bd"], 2.0**-12, 0, 16, True, False)
    want = a @ wd.T + bd
    np.testing.assert_allclose(km.predict(x.transpose(0, 2, 3, 1), verbose=0), want, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"w_scale": 0.0123}, r"node 'Quant_w' \(Quant\): scale 0.01229.* not a power of two"),
        ({"w_scale": [2.0**-7] * 4}, r"node 'Quant_w' \(Quant\): a per-channel scale"),
        ({"bias": "float"}, r"node 'Conv_0' \(Conv\): its bias is not quantized"),
        ({"input_quant": True}, r"node 'Quant_in' \(Quant\): a quantizer on the image"),
        ({"act": "identity"}, r"node 'Quant_act' \(Quant\): quantizes the output of 'Conv'.*QuantIdentity"),
        ({"rounding": "FLOOR"}, r"rounding_mode FLOOR; only ROUND"),
        ({"extra": "Trunc"}, r"node 'Trunc_0' \(qonnx.custom_op.general.Trunc\): operator Trunc is not supported"),
    ],
)
def test_qonnx_graphs_without_an_exact_fixed_point_form_are_refused_naming_the_node(tmp_path, kwargs, match):
    onnx.save(_qonnx(**kwargs), str(tmp_path / "q.onnx"))
    with pytest.raises(OnnxImportError, match=match):
        onnx_to_keras(tmp_path / "q.onnx")


def test_cli_refuses_a_float_scale_qonnx_with_one_line_and_exit_2(tmp_path):
    import sys

    onnx.save(_qonnx(w_scale=0.0123), str(tmp_path / "q.onnx"))
    r = subprocess.run([sys.executable, "-m", "hls_build", "import", "--model", str(tmp_path / "q.onnx"), "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "not a power of two" in r.stderr and "Traceback" not in r.stderr


def test_export_script_without_torch_is_one_error_line_and_exit_2(tmp_path):
    import importlib.util
    import sys

    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed in this environment")
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "make env-torch" in r.stderr and not (tmp_path / "out").exists()


@pytest.mark.torch
@pytest.mark.parametrize("flag, value", [("--float-epochs", "-1"), ("--test-images", "0"), ("--threads", "0")])
def test_export_script_refuses_bad_counts_with_one_line_and_exit_2(tmp_path, flag, value):
    if not TORCH_PY.is_file():
        pytest.skip(f"no {TORCH_PY.parent.parent.name}: `make env-torch` creates the optional PyTorch environment")
    cmd = [str(TORCH_PY), str(SCRIPT), "--out", str(tmp_path / "out"), flag, value]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"error: {flag} {value}: must be") and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------- with the real exporters
@pytest.fixture(scope="module")
def fresh_exports(tmp_path_factory, cifar10_dir):
    """Untrained (seeded) models exported now by torch and Brevitas in .venv-torch, both float exporters."""
    if not TORCH_PY.is_file():
        pytest.skip(f"no {TORCH_PY.parent.parent.name}: `make env-torch` creates the optional PyTorch environment")
    out = tmp_path_factory.mktemp("torch_exports")
    cmd = [str(TORCH_PY), str(SCRIPT), "--out", str(out), "--float-epochs", "0", "--qat-epochs", "0",
           "--test-images", "200", "--check-images", "4", "--reference-images", "50", "--also-torchscript",
           "--threads", "1", "--cifar10-dir", str(cifar10_dir)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.torch
def test_reexport_has_the_committed_graph_form(fresh_exports):
    def form(model):
        """The operators in order, and the Quant nodes of computed tensors (an untrained model's all-zero biases are
        one shared initializer after qonnx's cleanup, so weight and bias Quant nodes are not counted)."""
        consts = {t.name for t in model.graph.initializer}
        ops = [(n.op_type, n.domain) for n in model.graph.node if n.op_type != "Quant"]
        return ops, sum(n.op_type == "Quant" and n.input[0] not in consts for n in model.graph.node)

    for name in (FLOAT.name, BREVITAS.name):
        assert form(onnx.load(str(fresh_exports / name))) == form(onnx.load(str(EXPORTS / name))), name


@pytest.mark.torch
def test_reexports_translate_to_what_torch_computes(fresh_exports, test_split):
    import json

    with np.load(fresh_exports / "logits.npz") as z:
        ref = {k: z[k] for k in z.files}
    metrics = json.loads((fresh_exports / "metrics.json").read_text())
    assert metrics["max_abs_diff_onnx_vs_torch"] < 1e-4 and metrics["max_abs_diff_qonnx_vs_brevitas"] < 1e-4
    pixels = test_split.head(len(ref["float"])).images
    for name in (FLOAT.name, "resnet8_float_torchscript.onnx"):  # both exporters' forms
        got = onnx_to_keras(fresh_exports / name).predict(pixels.astype(np.float32) / 255.0, verbose=0)
        np.testing.assert_allclose(got, ref["float"], rtol=1e-4, atol=1e-4, err_msg=name)
    got = onnx_to_keras(fresh_exports / BREVITAS.name).predict(pixels.astype(np.float32) / 256.0, verbose=0)
    np.testing.assert_allclose(got, ref["brevitas"], atol=1e-3)
