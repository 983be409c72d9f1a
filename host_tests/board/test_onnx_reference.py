"""board.onnx_reference.OnnxReference: same preprocessing as the accelerator, on onnxruntime or the numpy evaluator."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from board_toys import toy_raw, toy_weights

from board.bundle import load_bundle
from board.errors import BundleError, InputError, ToolMissingError
from board.onnx_reference import OnnxReference


@pytest.fixture
def onnx_path(tmp_path):
    from board_onnx import linear_image_model

    path = tmp_path / "reference.onnx"
    path.write_bytes(linear_image_model(*toy_weights()))
    return path


def test_predict_matches_toy_model(onnx_path, images):
    pytest.importorskip("onnxruntime")
    ref = OnnxReference(onnx_path, {"input_scale": 0.00390625, "input_offset": 0.0}, threads=1)
    logits = ref.predict(images, batch_size=5)
    assert logits.dtype == np.float32 and logits.shape == (12, 10)
    # Exact: sums of a few multiples of 2^-8 are exact in float32.
    np.testing.assert_array_equal(logits, toy_raw(images.reshape(12, -1)) / 1024.0)
    assert [t.images for t in ref.take_timings()] == [5, 5, 2]
    assert ref.predict(images[0]).shape == (10,)
    with pytest.raises(InputError):
        ref.predict(np.zeros((1, 3, 32, 32), np.uint8))


def test_from_bundle(make_bundle, images):
    pytest.importorskip("onnxruntime")
    ref = OnnxReference.from_bundle(load_bundle(make_bundle()))
    assert ref.input_name == "image"
    np.testing.assert_array_equal(ref.predict(images[:2]), toy_raw(images[:2].reshape(2, -1)) / 1024.0)
    with pytest.raises(BundleError, match="names no onnx_reference"):
        OnnxReference.from_bundle(load_bundle(make_bundle("no_onnx", onnx=False)))


def test_missing_onnxruntime_selects_the_numpy_evaluator(onnx_path, images, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(ToolMissingError, match="onnxruntime is not installed"):
        OnnxReference(onnx_path, engine="ort")
    ref = OnnxReference(onnx_path)  # auto
    assert ref.engine == "numpy" and "numpy evaluator" in ref.engine_description
    np.testing.assert_array_equal(ref.predict(images[:3]), toy_raw(images[:3].reshape(3, -1)) / 1024.0)
    assert ref.predict(images[:0]).shape == (0, 10)


@pytest.mark.parametrize("engine", ["ort", "numpy"])
def test_both_engines_give_the_same_logits(onnx_path, images, engine):
    if engine == "ort":
        pytest.importorskip("onnxruntime")
    ref = OnnxReference(onnx_path, engine=engine)
    assert ref.engine == engine
    np.testing.assert_array_equal(ref.predict(images, batch_size=5), toy_raw(images.reshape(12, -1)) / 1024.0)
    assert [t.images for t in ref.take_timings()] == [5, 5, 2]
    with pytest.raises(InputError, match="reference engine must be one of"):
        OnnxReference(onnx_path, engine="tvm")


def test_the_8_bit_reference_is_named_by_the_manifest(make_bundle):
    bundle = load_bundle(make_bundle())
    with pytest.raises(BundleError, match="names no onnx_reference_int8"):
        OnnxReference.from_bundle(bundle, precision="int8")
    with pytest.raises(InputError, match="precision"):
        OnnxReference.from_bundle(bundle, precision="int4")


def test_corrupt_model_is_a_bundle_error(tmp_path):
    pytest.importorskip("onnxruntime")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(BundleError, match="cannot load"):
        OnnxReference(bad, engine="ort")
    with pytest.raises(BundleError, match="bad.onnx"):
        OnnxReference(bad, engine="numpy")
    with pytest.raises(BundleError, match="does not exist"):
        OnnxReference(tmp_path / "missing.onnx")
