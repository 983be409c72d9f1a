"""The precision check: static value bounds through the network, and a warning for every wrapping type they exceed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from board.fixed_point import FixedPoint
from hls_build.estimate.graph import DesignGraph, Layer
from hls_build.firmware_graph import FirmwareGraphError


@dataclass(frozen=True)
class PrecisionWarning:
    """A type that static value bounds say can overflow.

    Attributes:
        layer: the layer.
        what: ``result`` or ``accumulator``.
        type: the C++ type.
        type_range: what the type holds.
        bound: the static bound of the values it may receive.
        message: the warning text.
    """

    layer: str
    what: str
    type: str
    type_range: tuple[float, float]
    bound: tuple[float, float]
    message: str


def _interval_matmul(layer: Layer, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-output bounds of ``sum_i w[i, j] * x_i`` for ``x_i in [lo, hi]`` (without the bias).

    The flat C weight array is placed at its (input, output) positions by replaying the kernel's loops
    (:func:`hls_build.firmware_graph.kernel_index_map`), as the C-simulation reads it. For a kernel whose loops are
    not replayed, a layout-free bound is used for every output: the ``n_in`` largest ``|w|`` times ``max |x|``.
    """
    from hls_build.firmware_graph import kernel_index_map

    n_in, n_out = layer.mult_size  # type: ignore[misc]
    w = layer.weights["weight"]
    kernel = layer.detail.get("kernel") or ("DenseLatency" if layer.strategy == "latency" else None)
    try:
        if kernel is None or w.size != n_in * n_out:
            raise FirmwareGraphError("layout unknown")
        _, out_idx = kernel_index_map(kernel, n_in, n_out, int(layer.reuse_factor or 1))
    except FirmwareGraphError:
        top = np.sort(np.abs(w))[::-1][:n_in].sum() * max(abs(lo), abs(hi))
        return np.full(n_out, -top), np.full(n_out, top)
    a, b = w * lo, w * hi
    return (
        np.bincount(out_idx, weights=np.minimum(a, b), minlength=n_out),
        np.bincount(out_idx, weights=np.maximum(a, b), minlength=n_out),
    )


def check_precision(graph: DesignGraph) -> list[PrecisionWarning]:
    """Warn where a wrapping type can overflow, by static bounds from the weights and the input type's range.

    Interval arithmetic from the input type's range through every layer: convolution and dense outputs from
    ``sum |w| * |x| + |b|`` per output channel (the accumulator sees the same bound), batch normalization from its
    scale and bias, ReLU clips below at 0, Add adds bounds, averaging keeps them (its accumulator holds the sum).
    Saturating types clip by design (QKeras quantizers do too) and are not reported; a wrapping (``AP_WRAP``)
    type whose range the bound exceeds is. The bound is an upper bound: a calibration pass can only produce less.

    Returns:
        One :class:`PrecisionWarning` per offending type (also usable as log messages).
    """
    bounds: dict[str, tuple[float, float]] = {}
    for name in graph.inputs:
        t = graph.streams[name].elem
        bounds[name] = (t.min, t.max)
    warnings: list[PrecisionWarning] = []

    def flag(layer: Layer, what: str, t: FixedPoint, lo: float, hi: float) -> tuple[float, float]:
        if lo >= t.min - 1e-12 and hi <= t.max + 1e-12:
            return lo, hi
        if t.saturating:
            return max(lo, t.min), min(hi, t.max)
        msg = (
            f"precision too narrow: layer {layer.name} {what} type {t} holds [{t.min:g}, {t.max:g}] but static "
            f"bounds say its values may reach [{lo:.6g}, {hi:.6g}]; {t} wraps on overflow (widen its integer "
            "bits or make it saturate)"
        )
        warnings.append(PrecisionWarning(layer.name, what, str(t), (t.min, t.max), (lo, hi), msg))
        return max(lo, t.min), min(hi, t.max)

    for layer in graph.layers:
        ins = [bounds.get(s, (-math.inf, math.inf)) for s in layer.inputs]
        lo, hi = ins[0] if ins else (-math.inf, math.inf)
        out_t = layer.types.get("out")
        if layer.op in ("conv2d", "dense") and "weight" in layer.weights:
            n_out = layer.mult_size[1]  # type: ignore[index]
            los, his = _interval_matmul(layer, lo, hi)
            b = layer.weights.get("bias")
            if b is not None and b.size == n_out:
                los, his = los + b, his + b
            lo, hi = float(np.min(los)), float(np.max(his))
            if "accum" in layer.types:
                flag(layer, "accumulator", layer.types["accum"], lo, hi)
        elif layer.op == "batchnorm" and "scale" in layer.weights:
            s, b = layer.weights["scale"], layer.weights.get("bias", np.zeros_like(layer.weights["scale"]))
            cand = np.stack([s * lo, s * hi])
            lo, hi = float(np.min(cand.min(axis=0) + b)), float(np.max(cand.max(axis=0) + b))
        elif layer.op == "merge" and len(ins) == 2:
            (l1, h1), (l2, h2) = ins
            op = layer.detail.get("merge_op", "add")
            if op == "add":
                lo, hi = l1 + l2, h1 + h2
            elif op == "subtract":
                lo, hi = l1 - h2, h1 - l2
            elif op == "multiply":
                c = [l1 * l2, l1 * h2, h1 * l2, h1 * h2]
                lo, hi = min(c), max(c)
            else:
                lo, hi = min(l1, l2), max(h1, h2)
        elif layer.op == "activation" and layer.detail.get("activation") == "relu":
            lo, hi = max(lo, 0.0), max(hi, 0.0)
        elif layer.op == "global_pool":
            px = layer.attrs.get("in_height", 1) * layer.attrs.get("in_width", 1)
            if "accum" in layer.types and "Average" in str(layer.detail.get("pool_op", "Average")):
                flag(layer, "accumulator", layer.types["accum"], px * min(lo, 0.0), px * max(hi, 0.0))
        elif layer.op == "zeropad":
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        elif layer.op in ("softmax",) or (layer.op == "activation" and layer.detail.get("activation") != "linear"):
            lo, hi = (out_t.min, out_t.max) if out_t else (lo, hi)
        if out_t is not None and math.isfinite(lo) and math.isfinite(hi):
            lo, hi = flag(layer, "result", out_t, lo, hi)
        for s in layer.outputs:
            bounds[s] = (lo, hi)
    return warnings
