"""The firmware graph a bundle carries for ``board.fast_engine``: layer order, weight layout, types."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from board.bundle import load_bundle
from hls_build.firmware_graph import FirmwareGraphError, kernel_index_map, parse_cpp_type


def _graph(bundle_dir):
    bundle = load_bundle(bundle_dir)
    hls = bundle.manifest.hls
    graph = json.loads(bundle.path(hls["firmware_graph"]).read_text())
    with np.load(bundle.path(hls["firmware_weights"])) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return bundle, graph, arrays


def test_bundle_carries_the_graph_in_call_order(bundle_dir):
    bundle, graph, arrays = _graph(bundle_dir)
    assert graph["format"] == "hls4ml-firmware-graph" and graph["unsupported_layers"] == []
    top = bundle.path("hls/firmware/myproject.cpp").read_text()
    calls = re.findall(r"^\s*nnet::\w+<.*;\s*//\s*(\w+)\s*$", top, re.MULTILINE)
    assert [la["name"] for la in graph["layers"] if la["function_cpp"]] == calls
    keys = {w["key"] for la in graph["layers"] for w in la["weights"].values()}
    assert keys == set(arrays)
    ops = {la["op"] for la in graph["layers"]}
    assert ops >= {"input", "zeropad2d", "conv2d", "clone", "add"} and "batchnorm" not in ops  # folded
    # Every ReLU went into the layer before it (hls_build.fuse); the graph says which Keras ReLU each one streams.
    assert "relu" not in ops
    fused = {la["name"]: la["fused_activation"] for la in graph["layers"] if la.get("fused_activation")}
    assert fused["stem_conv"] == "stem_relu" and fused["s1b1_add"] == "s1b1_relu2"


def test_conv_and_dense_weights_are_the_quantized_keras_kernels(bundle_dir, trained_model_dir):
    """The replayed kernel index map puts every weight where Keras has it (an independent check of the layout)."""
    from training.train import load_trained_model

    _, graph, arrays = _graph(bundle_dir)
    model = load_trained_model(bundle_dir / "model.h5")  # the model the firmware computes (BN folded)
    checked = 0
    for layer in graph["layers"]:
        if layer["op"] not in ("conv2d", "pointwise_conv2d", "dense"):
            continue
        w = layer["weights"]["weight"]
        keras_layer = model.get_layer(layer["name"])
        q = keras_layer.kernel_quantizer_internal(keras_layer.kernel).numpy()
        frac = w["type"]["width"] - w["type"]["integer"]
        np.testing.assert_array_equal(np.ldexp(arrays[w["key"]].astype(np.float64), -frac), q.reshape(-1, q.shape[-1]))
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize(
    ("n_in", "n_out", "rf", "kernel"),
    [(27, 16, 54, "DenseResource_rf_gt_nin_rem0"), (144, 16, 72, "DenseResource_rf_leq_nin"),
     (16, 32, 64, "DenseResource_rf_gt_nin_rem0"), (64, 10, 64, "DenseResource_rf_leq_nin"),
     (576, 64, 64, "DenseResource_rf_leq_nin"), (12, 5, 1, "DenseLatency")],
)  # fmt: skip
def test_kernel_index_maps(n_in, n_out, rf, kernel):
    i, o = kernel_index_map(kernel, n_in, n_out, rf)
    w = np.arange(n_in * n_out)
    if kernel == "DenseLatency":  # weights[i * n_out + o]
        np.testing.assert_array_equal((i, o), (w // n_out, w % n_out))
    else:  # hls4ml transposes for the resource kernels: weights[o * n_in + i]
        np.testing.assert_array_equal((i, o), (w % n_in, w // n_in))


def test_unknown_kernel_is_refused():
    with pytest.raises(FirmwareGraphError, match="not known"):
        kernel_index_map("DenseMystery", 4, 4, 1)


def test_parse_cpp_type():
    t = parse_cpp_type("nnet::array<ap_ufixed<8,3,AP_RND_CONV,AP_SAT,0>, 16*1>")
    assert (t["width"], t["integer"], t["signed"], t["rounding"], t["saturation"]) == (
        8,
        3,
        False,
        "AP_RND_CONV",
        "AP_SAT",
    )
    assert parse_cpp_type("ap_fixed<22,9>")["rounding"] == "AP_TRN"
    assert parse_cpp_type("ap_uint<1>")["kind"] == "int"
    with pytest.raises(FirmwareGraphError):
        parse_cpp_type("float")
