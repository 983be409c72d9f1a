"""Fixed-point types of every layer of a quantized Keras model, derived so that the firmware computes it exactly.

The rule (``derive_precisions``), layer by layer in graph order, from the model's own quantizers and weights:

* the input is ``training.data.input_fixed_point()`` (a uint8 pixel / 256, exact; per channel minus a mean for
  an imported model that asks for it);
* a quantizer (``QActivation``) fixes its output type; hls4ml reads it from the quantizer itself;
* a convolution or dense layer with quantized kernel and bias sums exactly when its accumulator has the input's
  fractional bits plus the kernel's (and at least the bias's), and integer bits for the largest sum its weights can
  make from the input's range (per output channel: the positive weights times one end of the range, the negative
  ones times the other, plus the bias). Its result is the accumulator: nothing is rounded before the next quantizer;
* an Add keeps the most fractional bits of its inputs, and integer bits for the sum of their ranges; a Concatenate
  the most fractional bits and a range holding every input's;
* an average pool over ``n = 2^k`` values sums in an accumulator ``k`` integer bits and ``k`` fractional bits
  wider (hls4ml's ``accum / n`` keeps the accumulator's fractional bits) and divides exactly into them.

These are worst-case ranges (static bounds), so no type can overflow for any input image; they are usually far
narrower than hls4ml's own ``auto`` rule, which adds ``log2(n_in)`` integer bits whatever the weights. When a
derived type is wider than ``MAX_BITS`` it is cut to that width, fractional bits first, and the layer is named in
``Precisions.inexact`` (the firmware then rounds there; the bit-accuracy gate measures the effect).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from board.errors import ProjectError
from board.fixed_point import FixedPoint
from hls_build.fold import _inbound_layers, quantizer_format
from training.data import input_fixed_point
from training.keras_compat import keras

#: Widest type derived here: the firmware engine and the AXI output container work in at most 32 bits.
MAX_BITS = 32


class PrecisionError(ProjectError, ValueError):
    """A layer whose exact type cannot be derived (a float weight, an unsupported layer on a fixed-point path)."""


class _Bounded(NamedTuple):
    """A derived type and the range of values it must hold: the rule's state for one tensor."""

    t: FixedPoint
    lo: float
    hi: float

    @classmethod
    def for_range(cls, lo: float, hi: float, frac: int) -> _Bounded:
        """The narrowest type with ``frac`` fractional bits for ``[lo, hi]`` (:meth:`FixedPoint.for_range`)."""
        return cls(FixedPoint.for_range(lo, hi, frac), lo, hi)

    @classmethod
    def of(cls, signed: bool, integer: int, frac: int, lo: float, hi: float) -> _Bounded:
        """A type given by its bits, holding ``[lo, hi]``."""
        return cls(FixedPoint(integer + frac, integer, signed), lo, hi)

    def capped(self, max_bits: int = MAX_BITS) -> tuple[_Bounded, bool]:
        """The type cut to ``max_bits`` (fractional bits go first) and whether it was exact."""
        t, exact = self.t.capped(max_bits)
        return _Bounded(t, self.lo, self.hi), exact


@dataclass
class Precisions:
    """The derived types of one model.

    Attributes:
        results: layer name -> type of its output.
        accums: layer name -> accumulator type (convolutions, dense layers, pooling).
        inexact: layers whose exact type was wider than ``MAX_BITS`` and was cut.
        ranges: layer name -> the range of values its output type must hold (static bounds).
        accum_ranges: layer name -> the same for its accumulator.
    """

    results: dict[str, FixedPoint] = field(default_factory=dict)
    accums: dict[str, FixedPoint] = field(default_factory=dict)
    inexact: list[str] = field(default_factory=list)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    accum_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def output_fixed_point(self, model: keras.Model) -> str:
        """The AXI output type: the last layer's exact type, padded with fractional bits to whole bytes.

        hls4ml's AXI wrapper declares its stream word byte-aligned; the padding keeps the value exact.
        """
        t = self.results[model.layers[-1].name]
        width = min(-(-t.width // 8) * 8, MAX_BITS)
        return str(FixedPoint(width, t.integer, t.signed))


def _full_range(signed: bool, integer: int, frac: int) -> _Bounded:
    """A type with the whole range its bits can hold."""
    fp = FixedPoint(integer + frac, integer, signed)
    return _Bounded(fp, fp.min, fp.max)


def _input_type() -> _Bounded:
    fp = FixedPoint.parse(input_fixed_point())  # an imported model's own, inside training.data.model_input
    return _full_range(fp.signed, fp.integer, fp.width - fp.integer)


def _quantizer_type(quantizer, name: str) -> _Bounded:
    fmt = quantizer_format(quantizer)
    if fmt is None:
        raise PrecisionError(f"{name}: quantizer {quantizer} has no fixed-point format (use quantized_bits/relu)")
    bits, integer, signed = fmt
    return _full_range(signed, integer, bits - integer)


def _weights(layer: keras.layers.Layer) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Quantized kernel as (n_in, n_out), quantized bias, and the fractional bits of kernel and bias.

    A depthwise kernel ``(fh, fw, C, 1)`` comes as ``(fh * fw, C)``: each output channel sums its own channel's
    window, so the bounds below (per output column) are those of its taps.
    """
    depthwise = type(layer).__name__ == "QDepthwiseConv2D"
    kq = layer.depthwise_quantizer_internal if depthwise else layer.kernel_quantizer_internal
    kfmt = quantizer_format(kq)
    if kfmt is None:
        raise PrecisionError(f"{layer.name}: kernel quantizer {kq} has no fixed-point format")
    if depthwise:
        if layer.depthwise_kernel.shape[-1] != 1:
            raise PrecisionError(f"{layer.name}: depth_multiplier {layer.depthwise_kernel.shape[-1]}; only 1")
        dw = np.asarray(kq(layer.depthwise_kernel.numpy()), dtype=np.float64)[..., 0]
        kernel = dw.reshape(-1, dw.shape[-1])
    else:
        kernel = np.asarray(kq(layer.kernel.numpy()), dtype=np.float64)
    bias, bias_frac = np.zeros(kernel.shape[-1]), 0
    if layer.use_bias:
        bq = layer.bias_quantizer_internal
        bfmt = quantizer_format(bq)
        if bfmt is None:
            raise PrecisionError(f"{layer.name}: bias quantizer {bq} has no fixed-point format")
        bias, bias_frac = np.asarray(bq(layer.bias.numpy()), dtype=np.float64), bfmt[0] - bfmt[1]
    return kernel.reshape(-1, kernel.shape[-1]), bias, kfmt[0] - kfmt[1], bias_frac


def derive_precisions(model: keras.Model) -> Precisions:
    """Derive every layer's exact type (see the module doc).

    Args:
        model: a QKeras model with quantized kernels, biases and activations and BatchNormalization folded
            (``hls_build.fold.fold_batchnorm``).

    Raises:
        PrecisionError: a layer this rule does not cover (its name and what is covered).
    """
    out = Precisions()
    t: dict[str, _Bounded] = {}
    accums: dict[str, _Bounded] = {}
    for layer in model.layers:
        kind = type(layer).__name__
        ins = [t[lyr.name] for lyr in _inbound_layers(layer)]
        if kind == "InputLayer":
            t[layer.name] = _input_type()
        elif kind == "QActivation":
            t[layer.name] = _quantizer_type(layer.quantizer, layer.name)
        elif kind in ("QConv2D", "QDense", "QDepthwiseConv2D"):
            src = ins[0]
            kernel, bias, kernel_frac, bias_frac = _weights(layer)
            frac = max(src.t.frac_bits + kernel_frac, bias_frac)
            pos, neg = np.clip(kernel, 0, None), np.clip(kernel, None, 0)
            # Zero padding feeds zeros too: the input range always contains 0.
            x_lo, x_hi = min(src.lo, 0.0), max(src.hi, 0.0)
            hi = float(np.max(pos.sum(0) * x_hi + neg.sum(0) * x_lo + bias))
            lo = float(np.min(pos.sum(0) * x_lo + neg.sum(0) * x_hi + bias))
            exact = _Bounded.for_range(min(lo, 0.0), max(hi, 0.0), frac)
            typ, ok = exact.capped()
            if not ok:
                out.inexact.append(layer.name)
            accums[layer.name] = typ
            t[layer.name] = typ
        elif kind == "Add":
            frac = max(s.t.frac_bits for s in ins)
            exact = _Bounded.for_range(sum(s.lo for s in ins), sum(s.hi for s in ins), frac)
            typ, ok = exact.capped()
            if not ok:
                out.inexact.append(layer.name)
            t[layer.name] = typ
        elif kind == "Concatenate":
            # hls4ml copies each input into the result type: exact when it holds every input's values and bits.
            frac = max(s.t.frac_bits for s in ins)
            exact = _Bounded.for_range(min(s.lo for s in ins), max(s.hi for s in ins), frac)
            typ, ok = exact.capped()
            if not ok:
                out.inexact.append(layer.name)
            t[layer.name] = typ
        elif kind in ("GlobalAveragePooling2D", "AveragePooling2D"):
            src = ins[0]
            n = int(np.prod(layer.input_shape[1:3])) if kind.startswith("Global") else int(np.prod(layer.pool_size))
            k = int(math.log2(n))
            if 2**k != n:
                raise PrecisionError(f"{layer.name}: averages {n} values; only powers of two divide exactly")
            # hls4ml divides the accumulator by n (``accum / int``), and an ap_fixed quotient keeps only the
            # dividend's fractional bits: the accumulator carries the k extra ones the mean needs.
            s = src.t
            acc = _Bounded.of(s.signed, s.integer + k, s.frac_bits + k, src.lo * n, src.hi * n)
            res = _Bounded.of(s.signed, s.integer, s.frac_bits + k, src.lo, src.hi)
            res_c, ok = res.capped()
            if not ok:
                out.inexact.append(layer.name)
            accums[layer.name], t[layer.name] = acc.capped()[0], res_c
        elif kind in ("ZeroPadding2D", "Flatten", "Reshape", "Dropout", "MaxPooling2D", "GlobalMaxPooling2D"):
            src = ins[0]
            pad = kind == "ZeroPadding2D"
            if kind.endswith("MaxPooling2D"):
                # hls4ml compares in accum_t (default ap_fixed<16,6>): the input's own type keeps every value.
                accums[layer.name] = src
            t[layer.name] = _Bounded(src.t, min(src.lo, 0.0) if pad else src.lo, src.hi)
        else:
            raise PrecisionError(
                f"{layer.name}: no exact fixed-point rule for {kind}; covered: InputLayer, QConv2D, QDense, "
                "QDepthwiseConv2D, QActivation, Add, Concatenate, GlobalAveragePooling2D, GlobalMaxPooling2D, "
                "AveragePooling2D, ZeroPadding2D, Flatten, Reshape, Dropout, MaxPooling2D (fold BatchNormalization "
                "first)"
            )
    out.results, out.ranges = {k: b.t for k, b in t.items()}, {k: (b.lo, b.hi) for k, b in t.items()}
    out.accums, out.accum_ranges = {k: b.t for k, b in accums.items()}, {k: (b.lo, b.hi) for k, b in accums.items()}
    return out


def hls_precision_entries(model: keras.Model, precisions: Precisions) -> Mapping[str, dict[str, str]]:
    """hls4ml ``Precision`` entries per layer: every accumulator and result that is not a quantizer's own."""
    entries: dict[str, dict[str, str]] = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("QActivation", "InputLayer"):
            continue  # hls4ml takes these from the quantizer / the input type
        e: dict[str, str] = {}
        if layer.name in precisions.accums:
            e["accum"] = str(precisions.accums[layer.name])
        if layer.name in precisions.results:
            e["result"] = str(precisions.results[layer.name])
        if e:
            entries[layer.name] = e
    return entries
