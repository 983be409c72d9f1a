"""The fast engine's depthwise convolution on the board's Python (no TensorFlow, no hls4ml), against plain loops.

A hand-written firmware graph (what ``hls_build.firmware_graph`` writes for ``nnet::depthwise_conv_2d_cl``: the
weights as an ``[n_in, n_out]`` matrix, one weight per window element on its channel's column) is run by the
engine and compared with the fixed-point sum written out tap by tap. The bundle-level check (engine = hls4ml
C-simulation, bit for bit) is ``host_tests/hls_build/test_byo_depthwise.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from board.errors import BundleError
from board.fast_engine import GRAPH_FORMAT, FastEngine


def _t(width: int, integer: int, signed: bool = True) -> dict:
    cpp = f"ap_{'' if signed else 'u'}fixed<{width},{integer}>"
    return {"cpp": cpp, "kind": "fixed", "width": width, "integer": integer, "signed": signed,
            "rounding": "AP_TRN", "saturation": "AP_WRAP", "saturation_bits": 0}  # fmt: skip


T_IN, T_W, T_B, T_ACC = _t(8, 0, False), _t(8, 2), _t(16, 4), _t(26, 10)
H = W = 7
C, K = 3, 3


def _graph(stride: int, matrix: np.ndarray, bias: np.ndarray) -> tuple[dict, dict]:
    oh = (H - K) // stride + 1
    attrs = {"in_height": H, "in_width": W, "n_chan": C, "filt_height": K, "filt_width": K, "n_filt": C,
             "stride_height": stride, "stride_width": stride, "out_height": oh, "out_width": oh, "pad_top": 0,
             "pad_bottom": 0, "pad_left": 0, "pad_right": 0, "implementation": "linebuffer"}  # fmt: skip
    layers = [
        {"name": "x", "op": "input", "inputs": [], "outputs": [{"name": "x", "shape": [H, W, C], "type": T_IN}],
         "types": {}, "weights": {}, "attributes": {}},
        {"name": "dw", "op": "depthwise_conv2d", "class": "DepthwiseConv2D", "inputs": ["x"],
         "outputs": [{"name": "dw", "shape": [oh, oh, C], "type": T_ACC}], "types": {"accum": T_ACC},
         "weights": {"weight": {"key": "dw/weight", "type": T_W}, "bias": {"key": "dw/bias", "type": T_B}},
         "attributes": attrs},
    ]  # fmt: skip
    graph = {"format": GRAPH_FORMAT, "version": 1, "io_type": "io_stream", "inputs": ["x"], "outputs": ["dw"],
             "axi": {"in": T_IN, "out": T_ACC, "n_in": H * W * C, "n_out": oh * oh * C}, "layers": layers}  # fmt: skip
    return graph, {"dw/weight": matrix, "dw/bias": bias}


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_equals_the_tap_by_tap_fixed_point_sum(stride):
    rng = np.random.default_rng(stride)
    taps = rng.integers(-128, 128, (K * K, C))  # raw codes of ap_fixed<8,2> (6 fractional bits)
    bias = rng.integers(-(1 << 15), 1 << 15, C)  # raw codes of ap_fixed<16,4> (12 fractional bits)
    matrix = np.zeros((K * K * C, C), np.int64)
    idx = np.arange(K * K * C)
    matrix[idx, idx % C] = taps.reshape(-1)  # window element (row, column, channel) -> its channel
    engine = FastEngine(*_graph(stride, matrix, bias))
    x = rng.integers(0, 256, (5, H, W, C))  # raw pixels, 8 fractional bits
    got = engine.predict_raw(x.reshape(5, -1).astype(np.uint8)).astype(np.int64)
    oh = (H - K) // stride + 1
    want = np.zeros((5, oh, oh, C), np.int64)
    for i in range(oh):
        for j in range(oh):
            win = x[:, i * stride : i * stride + K, j * stride : j * stride + K, :].reshape(5, K * K, C)
            # products: 8 + 6 = 14 fractional bits, accumulator 16: << 2; bias 12 fractional bits: << 4
            want[:, i, j, :] = (win * taps[None]).sum(axis=1) * 4 + bias * 16
    lo = -(1 << 25)
    want = ((want - lo) % (1 << 26)) + lo  # ap_fixed<26,10> wraps (it cannot here: the check is exact)
    np.testing.assert_array_equal(got.reshape(5, oh, oh, C), want)


def test_depthwise_matrix_with_cross_channel_weights_is_refused():
    matrix = np.zeros((K * K * C, C), np.int64)
    matrix[0, 1] = 5  # window element 0 is channel 0's, not channel 1's
    with pytest.raises(BundleError, match="depthwise weights"):
        FastEngine(*_graph(1, matrix, np.zeros(C, np.int64)))
