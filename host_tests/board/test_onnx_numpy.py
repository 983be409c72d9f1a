"""board.onnx_numpy on Python 3.10 + numpy 1.x: the ONNX reference without onnxruntime.

Checked against onnxruntime on every model kind we build: the real bundle's float ``reference.onnx`` and its
8-bit ``reference_int8.onnx`` (on real CIFAR-10 test images), and the operator fixtures the host tests leave in
``<test-overlays>/onnx-fixtures`` (pooling, padding, Gemm, Concat, Softmax, QDQ, a small bring-your-own CNN and its
8-bit quantization). Float logits within 1e-4 relative, argmax identical.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from board_onnx import linear_image_model, model, node, tensor, value_info
from board_toys import ROOT, toy_raw, toy_weights

from board.bundle import MANIFEST, load_bundle, read_manifest
from board.cifar10 import load_split
from board.errors import BundleError, InputError
from board.onnx_numpy import (
    SUPPORTED_OPERATORS,
    OnnxFormatError,
    OnnxNumpyModel,
    UnsupportedOperatorError,
    parse_model,
)
from board.preprocess import Preprocessing

RTOL = 1e-4
N_IMAGES = 300
#: onnxruntime before 1.2x divides an AveragePool window that runs past the end padding (ceil_mode) by the whole
#: kernel; the ONNX reference implementation, onnxruntime 1.31 (host) and this evaluator count only the cells
#: inside input + pads. That fixture is compared with the host's onnxruntime output only.
ORT_VERSION_DEPENDENT = {"avgpool_ceil_pads"}


def _root(request) -> Path:
    try:
        return Path(request.config.getoption("--test-overlays"))
    except ValueError:
        return ROOT / "build" / "test-overlays"


def _missing(message: str) -> None:
    if os.environ.get("REQUIRE_TEST_BUNDLE"):  # `make test` sets it: there, missing host outputs are a failure
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def real_bundle(request) -> Path:
    root = _root(request)
    for path in sorted(root.glob(f"*/*/{MANIFEST}")):
        if read_manifest(path.parent).emulated:
            return path.parent
    _missing(f"no emulated bundle under {root}; the host tests leave one there (make test)")


@pytest.fixture(scope="module")
def fixture_dir(request) -> Path:
    folder = _root(request) / "onnx-fixtures"
    if not any(folder.glob("*.onnx")):
        _missing(f"no ONNX fixtures in {folder}; host_tests/hls_build/test_onnx_fixtures.py writes them")
    return folder


def _ort_session(path: Path, optimize: bool = True):
    ort = pytest.importorskip("onnxruntime")
    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype, what
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * float(np.max(np.abs(want))), err_msg=what)
    if got.ndim == 2 and got.shape[1] > 1:
        assert np.array_equal(got.argmax(1), want.argmax(1)), what


def _images(bundle_root: Path, cifar10_dir: Path, n: int = N_IMAGES) -> np.ndarray:
    m = load_bundle(bundle_root).manifest
    return Preprocessing.from_dict(m.preprocessing).to_float(load_split("test", cifar10_dir).head(n).images)


def test_float_reference_of_the_real_bundle_matches_onnxruntime(real_bundle, cifar10_dir):
    bundle = load_bundle(real_bundle)
    path = bundle.path(bundle.manifest.onnx_reference)
    x = _images(real_bundle, cifar10_dir)
    ev = OnnxNumpyModel.load(path)
    assert {"Conv", "Round", "Min", "Max", "MatMul", "Transpose"} <= set(ev.operators)
    got = np.concatenate([ev.run({ev.input_names[0]: x[i : i + 100]})[0] for i in range(0, len(x), 100)])
    sess = _ort_session(path)
    (want,) = sess.run(None, {sess.get_inputs()[0].name: x})
    _close(got, want, str(path))


def test_8_bit_reference_of_the_real_bundle_matches_onnxruntime(real_bundle, cifar10_dir):
    bundle = load_bundle(real_bundle)
    rel = bundle.manifest.onnx_reference_int8
    if not rel:
        _missing(f"{real_bundle} has no 8-bit reference (rebuild it with this hls_build)")
    path = bundle.path(rel)
    x = _images(real_bundle, cifar10_dir)
    ev = OnnxNumpyModel.load(path)
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= set(ev.operators)
    got = np.concatenate([ev.run({ev.input_names[0]: x[i : i + 100]})[0] for i in range(0, len(x), 100)])
    # As the ONNX standard defines QDQ (onnxruntime without its graph rewrites): the same logits within 1e-4.
    sess = _ort_session(path, optimize=False)
    (want,) = sess.run(None, {sess.get_inputs()[0].name: x})
    # Conv sums in another order can move a value across a rounding boundary of the next QuantizeLinear: one step
    # of one activation on an occasional image. Most images must match to 1e-4 and every argmax must agree.
    close = np.all(np.abs(got - want) <= RTOL * np.abs(want).max(), axis=1)
    assert close.mean() >= 0.95
    assert np.array_equal(got.argmax(1), want.argmax(1))
    # onnxruntime's default session runs fused integer kernels: the argmax still agrees on almost every image.
    sess = _ort_session(path)
    (fused,) = sess.run(None, {sess.get_inputs()[0].name: x})
    assert np.mean(got.argmax(1) == fused.argmax(1)) >= 0.98


def test_operator_fixtures_match_onnxruntime(fixture_dir):
    names = sorted(p.name[: -len(".onnx")] for p in fixture_dir.glob("*.onnx"))
    assert len(names) >= 20
    for name in names:
        feeds = dict(np.load(fixture_dir / f"{name}.inputs.npz"))
        (got,) = OnnxNumpyModel.load(fixture_dir / f"{name}.onnx").run(feeds)
        _close(got, np.load(fixture_dir / f"{name}.expected.npy"), f"{name} vs the host's onnxruntime")
        if name not in ORT_VERSION_DEPENDENT:
            (want,) = _ort_session(fixture_dir / f"{name}.onnx", optimize="int8" not in name).run(None, feeds)
            _close(got, want, f"{name} vs this environment's onnxruntime")


def test_toy_model_written_without_onnx_is_exact(images):
    ev = OnnxNumpyModel.from_bytes(linear_image_model(*toy_weights()))
    x = images.astype(np.float32) / 256
    (logits,) = ev.run({"image": x})
    np.testing.assert_array_equal(logits, toy_raw(images.reshape(len(images), -1)) / 1024.0)
    assert ev.input_names == ["image"] and ev.output_names == ["logits"]
    assert ev.graph.inputs[0].shape == ("N", 32, 32, 3) and ev.graph.inputs[0].dtype == np.float32


def test_unknown_operator_is_named_at_load(tmp_path):
    data = model(
        [node("Relu", ["x"], ["r"], "relu"), node("Hardmax", ["r"], ["y"], "hm"), node("Det", ["y"], ["z"], "det")],
        [],
        [value_info("x", np.float32, [2, 2])],
        [value_info("z", np.float32, [2])],
    )
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    with pytest.raises(UnsupportedOperatorError, match=r"operator\(s\) Det, Hardmax") as info:
        OnnxNumpyModel.load(path)
    assert info.value.operators == ["Det", "Hardmax"]
    assert isinstance(info.value, BundleError) and info.value.exit_code == 2
    assert "Relu" in SUPPORTED_OPERATORS and "Hardmax" not in SUPPORTED_OPERATORS


def test_bad_files_and_inputs_are_typed_errors(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x0a\xff\xff\xff")  # a length running past the end
    with pytest.raises(OnnxFormatError):
        OnnxNumpyModel.load(bad)
    bad.write_bytes(b"not a model at all")
    with pytest.raises(OnnxFormatError):
        OnnxNumpyModel.load(bad)
    with pytest.raises(BundleError, match="cannot read"):
        OnnxNumpyModel.load(tmp_path / "missing.onnx")
    ev = OnnxNumpyModel.from_bytes(linear_image_model(*toy_weights()))
    with pytest.raises(InputError, match="missing ONNX input"):
        ev.run({})
    with pytest.raises(InputError, match="Reshape"):
        ev.run({"image": np.zeros((1, 7), np.float32)})


def test_nodes_out_of_order_are_refused():
    data = model(
        [node("Relu", ["r"], ["y"], "second"), node("Relu", ["x"], ["r"], "first")],
        [],
        [value_info("x", np.float32, [2])],
        [value_info("y", np.float32, [2])],
    )
    with pytest.raises(OnnxFormatError, match="before any node writes it"):
        OnnxNumpyModel.from_bytes(data)


def test_tensor_encodings():
    # raw_data little-endian int64, and the packed float_data / int64_data fields (no raw_data).
    from board_onnx import _bytes, _int, _str

    packed_f = _int(1, 2) + _int(2, 1) + _str(8, "f") + _bytes(4, np.array([1.5, -2.0], "<f4").tobytes())
    packed_i = _int(1, 3) + _int(2, 7) + _str(8, "i") + _bytes(7, b"".join(bytes([v & 0x7F]) for v in (1, 2, 3)))
    data = model(
        [node("Identity", ["f"], ["y"], "id")],
        [tensor("r", np.array([[-1, 2]], np.int64)), packed_f, packed_i],
        [],
        [value_info("y", np.float32, [2])],
    )
    g = parse_model(data)
    assert g.initializers["r"].dtype == np.int64 and g.initializers["r"].tolist() == [[-1, 2]]
    assert g.initializers["f"].tolist() == [1.5, -2.0]
    assert g.initializers["i"].tolist() == [1, 2, 3]
    assert g.opset == 13 and g.inputs == []


def _bench(argv: list[str]) -> dict:
    import json

    from board.__main__ import main

    out = Path(argv[argv.index("--out") + 1])
    assert main(argv) == 0
    return json.loads((out / "report.json").read_text())


def test_bench_without_onnxruntime_reports_the_same_reference_top1(real_bundle, cifar10_dir, tmp_path, monkeypatch):
    """The issue's target: where onnxruntime is missing (as on a PYNQ-Z2), the numpy evaluator's top-1 is ORT's."""
    pytest.importorskip("onnxruntime")
    args = ["bench", "--bundle", str(real_bundle), "-n", "500", "--csim-check", "0", "--no-plots", "--no-progress"]
    args += ["--cifar10-dir", str(cifar10_dir), "--board", "host"]
    with_ort = _bench([*args, "--out", str(tmp_path / "ort")])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails, as on armv7l
    with_numpy = _bench([*args, "--out", str(tmp_path / "numpy")])
    assert with_ort["reference"]["engine"] == "ort" and with_numpy["reference"]["engine"] == "numpy"
    a, b = with_ort["accuracy"], with_numpy["accuracy"]
    assert a["onnx_top1"] is not None and a["onnx_top1"] == b["onnx_top1"]
    assert a["fpga_top1"] == b["fpga_top1"]
    assert with_ort["agreement"]["fpga_vs_onnx"] == with_numpy["agreement"]["fpga_vs_onnx"]
    if load_bundle(real_bundle).manifest.onnx_reference_int8:
        # 8-bit: onnxruntime's integer kernels vs the standard QDQ arithmetic: the same top-1 within an image or two.
        assert abs(a["onnx_int8_top1"] - b["onnx_int8_top1"]) <= 2 / 500
        assert with_numpy["agreement"]["onnx_int8_vs_onnx"]["agreement"] >= 0.9
    md = (tmp_path / "numpy" / "report.md").read_text()
    assert "ONNX reference, float, numpy evaluator on this host's CPU" in md


def test_bench_goes_on_when_the_evaluator_lacks_an_operator(make_bundle, images, monkeypatch, cifar10_dir, capsys):
    from board.__main__ import main
    from board.bench import benchmark, render_markdown
    from board.bundle import read_manifest, write_manifest

    root = make_bundle()
    (root / "reference_int8.onnx").write_bytes((root / "reference.onnx").read_bytes())
    (root / "reference.onnx").write_bytes(
        model(
            [node("Hardmax", ["image"], ["logits"], "hm")],
            [],
            [value_info("image", np.float32, ["N", 32, 32, 3])],
            [value_info("logits", np.float32, ["N", 10])],
        )
    )
    m = read_manifest(root)
    write_manifest(root, type(m)(**{**m.__dict__, "onnx_reference_int8": "reference_int8.onnx"}))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    report = benchmark(load_bundle(root), images, np.zeros(len(images), np.int64), batch_size=6)
    assert report["accuracy"]["onnx_top1"] is None and "Hardmax" in report["onnx_unavailable"]
    assert report["accuracy"]["fpga_top1"] is not None and report["timing"]["fpga"] is not None
    # The 8-bit file here is the toy linear model: it runs, and equals the FPGA (the toy is exact).
    assert report["accuracy"]["onnx_int8_top1"] == report["accuracy"]["fpga_top1"]
    assert report["agreement"]["fpga_vs_onnx_int8"]["agreement"] == 1.0
    md = render_markdown(report)
    assert "ONNX reference (float) not available" in md and "operator(s) Hardmax" in md
    # With --reference-only the float reference is the whole run: its failure is the error (exit 2, one line).
    argv = ["bench", "--bundle", str(root), "-n", "2", "--reference-only", "--cifar10-dir", str(cifar10_dir)]
    assert main(argv) == 2
    assert "Hardmax" in capsys.readouterr().err.strip().splitlines()[-1]
