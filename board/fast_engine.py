"""A fast, bit-exact numpy emulation of an overlay's hls4ml firmware, vectorized over a batch of images.

The hls4ml C-simulation runs the firmware one image at a time through ``ap_fixed`` arithmetic in C++, which is
exact but slow (about ten images per second for a ResNet-8). This engine computes the same raw fixed-point codes
with numpy integer arithmetic on whole batches, from the firmware description ``hls_build.firmware_graph`` writes
into the bundle (``firmware/graph.json`` + ``firmware/weights.npz``): no TensorFlow, no hls4ml, no compiler, so it
runs on the board too, behind the same emulated device as the C-simulation (it has the ``Kernel`` interface of
``board.emulated_device``: ``run(raw_in) -> raw_out``).

What "the same" means, layer by layer (hls4ml 1.3.0 ``nnet_utils``, ``io_stream``):

* every assignment to an ``ap_fixed``/``ap_ufixed`` variable is a *cast*: quantization of the exact value to the
  target's LSB (``AP_TRN`` floor, ``AP_TRN_ZERO``, ``AP_RND``, ``AP_RND_ZERO``, ``AP_RND_MIN_INF``, ``AP_RND_INF``,
  ``AP_RND_CONV``), then overflow handling (``AP_WRAP`` keeps the low W bits, ``AP_SAT``, ``AP_SAT_ZERO``,
  ``AP_SAT_SYM``); ``+``, ``-`` and ``*`` of ``ap_fixed`` values are exact (full-width result types);
* convolution / dense (``nnet_dense_resource.h``, ``nnet_dense_latency.h``): the accumulator starts at
  ``(accum_t) bias``, each product ``data * weight`` is cast to ``accum_t`` and added in ``accum_t``, and the sum is
  cast to the result type. With wraparound the order of the additions does not matter (arithmetic modulo
  2^W), so one matrix multiply per layer computes the exact sum; when a product has more fractional bits than
  ``accum_t`` each product is quantized on its own first (the dense layer after global pooling does this);
* the line-buffer convolution (``nnet_conv_stream.h``) is a valid convolution over the explicitly zero-padded
  input (hls4ml inserts ``ZeroPadding2D`` layers), windows in (row, column, channel) order, outputs every
  ``stride`` pixels; the 1x1 ``pointwise_conv_2d_cl`` keeps input pixels whose row and column are multiples of
  the stride;
* the depthwise convolution (``nnet_sepconv2d_stream.h``, ``nnet_depthwise_product.h``) is the same line buffer
  with one weight per window element, each product added to its own channel's accumulator (the graph gives the
  weights as a matrix with zeros elsewhere; the engine multiplies the window by its taps elementwise);
* batch normalization (``nnet_batchnorm_stream.h``): ``x * scale + bias``, exact, cast to the result type;
* ReLU: ``x > 0 ? x : 0`` cast to the result type (e.g. ``ap_ufixed<8,3,AP_RND_CONV,AP_SAT>``);
* merges (``nnet_merge_stream.h``): exact sum/difference/product/average/max/min, cast to the result type;
* global average pooling (``nnet_pooling_stream.h``): each input cast to ``accum_t`` and accumulated in
  ``accum_t``, then ``accum / (height * width)``, which ``ap_fixed`` computes as an integer division truncated
  toward zero keeping ``accum_t``'s fractional bits, cast to the result type;
* the AXI wrapper casts the input stream type to the network's input type and the network's output to the
  output stream type.

The range of every intermediate is derived from the types and the weights when the engine loads (interval
arithmetic on the raw codes); it decides the arithmetic: int32 where every value fits, else int64, and a
configuration that could exceed 62 bits is refused, as is one whose result would depend on the order of
saturating accumulations. The ranges also drop casts that provably change nothing (e.g. the wrap of a sum that
cannot overflow) and fold a ReLU into an unsigned saturating cast (which maps every value <= 0 to 0 anyway). The
matrix multiplies use float32 or float64 BLAS when every partial sum is an integer below 2^24 or 2^53 (then
floating point is exact whatever the summation order), int64 otherwise. Images are processed in small chunks
(cache-sized im2col matrices) on several threads, with OpenBLAS held to one thread meanwhile.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from board.bundle import Bundle, load_bundle
from board.errors import BundleError, InputError
from board.fixed_point import FixedPoint, Rounding, Saturation, cast_raw

__all__ = ["DEFAULT_GRAPH", "DEFAULT_WEIGHTS", "FastEngine", "GRAPH_FORMAT", "cast_raw", "type_from_json"]

GRAPH_FORMAT = "hls4ml-firmware-graph"
SUPPORTED_VERSIONS = (1,)
#: Where ``hls_build`` puts the firmware description inside a bundle (the manifest's ``hls`` section names it).
DEFAULT_GRAPH = "firmware/graph.json"
DEFAULT_WEIGHTS = "firmware/weights.npz"
#: Images per vectorized pass: small enough that a layer's im2col matrix stays in the CPU caches (measured: 8
#: images run a 3x3x16 convolution twice as fast per image as 64), large enough to amortize Python overhead.
DEFAULT_CHUNK = 8
#: Largest magnitude (bits) any int64 intermediate may reach; leaves headroom for one addition.
_MAX_BITS = 62

_ROUNDINGS = ("AP_TRN", "AP_TRN_ZERO", "AP_RND", "AP_RND_ZERO", "AP_RND_MIN_INF", "AP_RND_INF", "AP_RND_CONV")
_SATURATIONS = ("AP_WRAP", "AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM")


# ------------------------------------------------------------------------------------------------- fixed point
def type_from_json(d: Mapping[str, Any], where: str) -> FixedPoint:
    """The :class:`~board.fixed_point.FixedPoint` of a type record of the firmware graph (any width up to 62 bits).

    Raises:
        BundleError: not a fixed-point or integer type, or a mode or width this engine does not implement.
    """
    kind = d.get("kind")
    if kind not in ("fixed", "int"):
        raise BundleError(f"{where}: type {d.get('cpp')!r} ({kind}) is not supported by the fast engine")
    if int(d.get("saturation_bits", 0) or 0) != 0:
        raise BundleError(f"{where}: {d.get('cpp')}: saturation bits are not supported by the fast engine")
    if d.get("rounding") not in _ROUNDINGS or d.get("saturation") not in _SATURATIONS:
        raise BundleError(f"{where}: {d.get('cpp')}: mode {d.get('rounding')}/{d.get('saturation')} is not supported")
    width = int(d["width"])
    if not 1 <= width <= _MAX_BITS:
        raise BundleError(f"{where}: {d.get('cpp')}: width {width} is not supported (1..{_MAX_BITS} bits)")
    is_int = kind == "int"
    integer = width if is_int else int(d["integer"])
    return FixedPoint(width, integer, bool(d["signed"]), str(d["rounding"]), str(d["saturation"]), is_int)


def _check_bits(lo: int, hi: int, where: str) -> None:
    if max(abs(lo), abs(hi)) >= (1 << _MAX_BITS):
        raise BundleError(
            f"{where}: intermediate values need more than {_MAX_BITS} bits; not supported by the fast engine"
        )


@dataclass
class _Cast:
    """A precomputed cast from raw codes with ``src_frac`` fractional bits in [lo, hi] to type ``t``.

    Steps that cannot change any value in the static range are skipped (e.g. the wrap of a sum that provably fits).
    """

    src_frac: int
    lo: int
    hi: int
    t: FixedPoint
    where: str = ""
    shift: int = field(init=False)
    out_lo: int = field(init=False)
    out_hi: int = field(init=False)
    overflow: bool = field(init=False)

    def __post_init__(self) -> None:
        self.shift = self.src_frac - self.t.frac_bits
        _check_bits(self.lo, self.hi, self.where)
        if self.shift > 0:
            # Rounding moves a value by at most one LSB of the target.
            qlo, qhi = (self.lo >> self.shift), (self.hi >> self.shift) + (self.t.rounding is not Rounding.TRN)
        else:
            qlo, qhi = self.lo << -self.shift, self.hi << -self.shift
            _check_bits(qlo, qhi, self.where)
        t = self.t
        self.overflow = qlo < t.raw_min or qhi > t.raw_max
        if not self.overflow:
            self.out_lo, self.out_hi = qlo, qhi
        elif t.saturation is Saturation.SAT:
            self.out_lo, self.out_hi = max(qlo, t.raw_min), min(qhi, t.raw_max)
        elif t.saturation is Saturation.SAT_SYM and t.signed:
            self.out_lo, self.out_hi = max(qlo, -t.raw_max), min(qhi, t.raw_max)
        elif t.saturation is Saturation.SAT_ZERO:
            self.out_lo, self.out_hi = max(min(qlo, 0), t.raw_min), min(max(qhi, 0), t.raw_max)
        else:
            self.out_lo, self.out_hi = t.raw_min, t.raw_max
        if t.saturation is Saturation.SAT_SYM and t.signed and qlo <= t.raw_min:
            # ap_fixed's AP_SAT_SYM also maps the most negative code to -max.
            self.overflow = True
            self.out_lo = max(self.out_lo, -t.raw_max)

        # int32 when every intermediate (the input, plus the rounding increment, and the shifted value) fits it.
        inc = 1 << self.shift if self.shift > 0 else 0
        self.work = np.int32 if _fits32(self.lo - inc, self.hi + inc, qlo, qhi) else np.int64
        self.out_dtype = _int_dtype(self.out_lo, self.out_hi)

    @property
    def identity(self) -> bool:
        """True when the cast changes nothing."""
        return self.shift == 0 and not self.overflow

    @property
    def zero_below(self) -> bool:
        """True when every value <= 0 becomes 0 (an unsigned saturating target): a ReLU before it changes nothing."""
        return not self.t.signed and self.t.saturating and self.overflow

    def __call__(self, raw: np.ndarray, inplace: bool = False) -> np.ndarray:
        """Apply the cast to integer raw codes (``raw`` is only modified if ``inplace``; the result may be ``raw``)."""
        if self.identity:
            return raw
        q = cast_raw(raw, self.src_frac, self.t, overflow=self.overflow, work=self.work, inplace=inplace)
        return q.astype(self.out_dtype, copy=False)


def _fits32(*values: int) -> bool:
    """Whether int32 holds every one of ``values``."""
    return all(-(1 << 31) <= int(v) < (1 << 31) for v in values)


def _int_dtype(lo: int, hi: int) -> Any:
    """int32 for a range it holds (half the memory traffic of int64), else int64."""
    return np.int32 if _fits32(lo, hi) else np.int64


# ----------------------------------------------------------------------------------------------------- tensors
@dataclass(frozen=True)
class _Spec:
    """Static description of a tensor in flight: its type, shape (one image) and the range of its raw codes."""

    t: FixedPoint
    shape: tuple[int, ...]
    lo: int
    hi: int

    @property
    def frac(self) -> int:
        return self.t.frac_bits


class _Step:
    """One firmware layer: integer raw-code arrays in and out (leading batch axis; int32 or int64 by range)."""

    name: str
    inputs: list[str]
    outputs: list[str]

    def __call__(self, xs: list[np.ndarray]) -> list[np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError


def _out_type(layer: Mapping[str, Any], k: int = 0) -> FixedPoint:
    o = layer["outputs"][k]
    return type_from_json(o["type"], f"{layer['name']} output {o['name']}")


def _out_shape(layer: Mapping[str, Any], k: int = 0) -> tuple[int, ...]:
    return tuple(int(s) for s in layer["outputs"][k]["shape"])


def _interval_mul(lo: int, hi: int, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise [min, max] of ``x * w`` for x in [lo, hi], exact (Python ints: no overflow at load time)."""
    a = w.astype(object) * lo
    b = w.astype(object) * hi
    return np.minimum(a, b), np.maximum(a, b)


class _CastStep(_Step):
    """Layers that are a cast of one input, possibly after an elementwise op (ReLU, linear, clone, pad, input)."""

    def __init__(
        self,
        name: str,
        inputs: list[str],
        outputs: list[str],
        casts: list[_Cast],
        relu: bool = False,
        pad: tuple[int, int, int, int] | None = None,
    ) -> None:
        self.name, self.inputs, self.outputs, self.casts, self.relu, self.pad = name, inputs, outputs, casts, relu, pad

    def __call__(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        x = xs[0]
        if self.relu:
            x = np.maximum(x, 0)
        outs = []
        for cast in self.casts:
            y = cast(x)  # not in place: a clone's copies share the input
            if self.pad is not None:
                top, bottom, left, right = self.pad
                n, h, w, c = y.shape
                p = np.zeros((n, h + top + bottom, w + left + right, c), y.dtype)
                p[:, top : top + h, left : left + w, :] = y
                y = p
            outs.append(y)
        return outs


class _MatmulStep(_Step):
    """Convolution (line buffer or pointwise) and dense layers: exact products, accumulation in ``accum_t``."""

    def __init__(self, layer: Mapping[str, Any], in_spec: _Spec, arrays: Mapping[str, np.ndarray]) -> None:
        name = layer["name"]
        self.name, self.inputs = name, list(layer["inputs"])
        self.outputs = [layer["outputs"][0]["name"]]
        self.op = layer["op"]
        attrs = layer["attributes"]
        wi, bi = layer["weights"]["weight"], layer["weights"]["bias"]
        w_t = type_from_json(wi["type"], f"{name} weight")
        b_t = type_from_json(bi["type"], f"{name} bias")
        self.accum = type_from_json(layer["types"]["accum"], f"{name} accum")
        self.result = _out_type(layer)
        self.out_shape = _out_shape(layer)
        w = np.asarray(arrays[wi["key"]], np.int64)
        bias = np.asarray(arrays[bi["key"]], np.int64).reshape(-1)
        k, f = w.shape
        if self.op == "dense":
            if in_spec.shape != (k,) and int(np.prod(in_spec.shape)) != k:
                raise BundleError(f"{name}: input of shape {in_spec.shape} does not match {k} weights rows")
        else:
            if attrs.get("implementation", "linebuffer") != "linebuffer":
                raise BundleError(
                    f"{name}: convolution implementation {attrs.get('implementation')!r} is not supported"
                )
            if any(attrs.get(p, 0) for p in ("pad_top", "pad_bottom", "pad_left", "pad_right")):
                raise BundleError(f"{name}: a streaming convolution with its own padding is not supported")
            fh, fw, c = attrs["filt_height"], attrs["filt_width"], attrs["n_chan"]
            self.geometry = (fh, fw, attrs["stride_height"], attrs["stride_width"])
            if k != fh * fw * c or f != attrs["n_filt"]:
                raise BundleError(
                    f"{name}: weight matrix {w.shape} does not match the kernel {fh}x{fw}x{c}->{attrs['n_filt']}"
                )
            ih, iw = in_spec.shape[0], in_spec.shape[1]
            sh, sw = attrs["stride_height"], attrs["stride_width"]
            if self.op == "pointwise_conv2d":
                if fh != 1 or fw != 1:
                    raise BundleError(f"{name}: pointwise convolution with a {fh}x{fw} kernel")
                oh, ow = -(-ih // sh), -(-iw // sw)  # pixels whose row and column are multiples of the stride
            else:
                oh, ow = (ih - fh) // sh + 1, (iw - fw) // sw + 1
            if (oh, ow, f) != self.out_shape:
                raise BundleError(f"{name}: computed output {(oh, ow, f)} but the graph says {self.out_shape}")
        self.k, self.f = k, f
        # Products data * weight carry in_frac + w_frac fractional bits.
        self.prod_frac = in_spec.frac + w_t.frac_bits
        self.per_product = self.prod_frac > self.accum.frac_bits
        plo, phi = _interval_mul(in_spec.lo, in_spec.hi, w)  # per product bounds, shape (k, f)
        # Bias: acc starts at (accum_t) bias.
        bias_cast = _Cast(
            b_t.frac_bits,
            int(bias.min()) if bias.size else 0,
            int(bias.max()) if bias.size else 0,
            self.accum,
            f"{name} bias",
        )
        self.bias_q = bias_cast(bias.copy())
        if self.per_product:
            # Each product is quantized to accum_t before the addition. Only its rounding is applied here: with
            # wraparound, wrapping each product and then the sum equals wrapping the sum once (modulo 2^W), and
            # a saturating accumulator is refused below unless nothing can overflow.
            shift = self.prod_frac - self.accum.frac_bits
            rounding_only = FixedPoint(_MAX_BITS, _MAX_BITS - self.accum.frac_bits, True, self.accum.rounding)
            self.product_cast = _Cast(self.prod_frac, int(plo.min()), int(phi.max()), rounding_only, f"{name} products")
            plo, phi = plo >> shift, (phi >> shift) + 1
            self.scale = 0
        else:
            self.scale = self.accum.frac_bits - self.prod_frac
            plo, phi = plo * (1 << self.scale), phi * (1 << self.scale)
        sum_lo, sum_hi = plo.sum(axis=0), phi.sum(axis=0)
        acc_lo = int((sum_lo + self.bias_q).min())
        acc_hi = int((sum_hi + self.bias_q).max())
        _check_bits(acc_lo, acc_hi, f"{name} accumulator")
        # Every partial sum (bias plus any subset of the products) lies in [bias + sum of negative bounds,
        # bias + sum of positive bounds]: a saturating accumulator that cannot reach its limits adds exactly.
        part_lo = int((np.minimum(plo, 0).sum(axis=0) + self.bias_q).min())
        part_hi = int((np.maximum(phi, 0).sum(axis=0) + self.bias_q).max())
        if self.accum.saturating and (part_lo < self.accum.raw_min or part_hi > self.accum.raw_max):
            raise BundleError(
                f"{name}: accumulator {self.accum} may saturate, and the result of saturating accumulation depends "
                "on the firmware's addition order, which the fast engine does not reproduce"
            )
        # The raw sum (before the accumulator's wrap) must fit the dtype it is computed in.
        self.acc_dtype = _int_dtype(min(acc_lo, int(sum_lo.min())), max(acc_hi, int(sum_hi.max())))
        self.bias_q = self.bias_q.astype(self.acc_dtype)
        self.accum_cast = _Cast(self.accum.frac_bits, acc_lo, acc_hi, self.accum, f"{name} accum")
        self.result_cast = _Cast(
            self.accum.frac_bits, self.accum_cast.out_lo, self.accum_cast.out_hi, self.result, f"{name} result"
        )
        self.spec = _Spec(self.result, self.out_shape, self.result_cast.out_lo, self.result_cast.out_hi)
        # Exact BLAS when every partial sum is an integer that the float type holds exactly.
        bound = int(np.maximum(abs(plo), abs(phi)).sum(axis=0).max()) >> self.scale if w.size else 0
        if bound < (1 << 24):
            self.mm_dtype = np.float32
        elif bound < (1 << 53):
            self.mm_dtype = np.float64
        else:
            self.mm_dtype = np.int64
        self.w = w
        self.w_mm = w.astype(self.mm_dtype)
        self.has_bias = bool(np.any(self.bias_q))
        self.depthwise = self.op == "depthwise_conv2d"
        if self.depthwise:
            # Window element i (row, column, channel order) feeds output channel i % C alone: the graph's matrix
            # must hold nothing else. Its diagonal, as (taps, C), is then multiplied elementwise (C times fewer
            # products than the matrix multiply, the same exact sums).
            chan = np.arange(k) % f
            off = w.copy()
            off[np.arange(k), chan] = 0
            if k % f or np.any(off):
                raise BundleError(f"{name}: depthwise weights that are not one per window element and channel")
            self.w_dw = w[np.arange(k), chan].reshape(k // f, f)
            self.w_dw_mm = self.w_dw.astype(self.mm_dtype)

    def _columns(self, x: np.ndarray, dtype: Any) -> np.ndarray:
        """The kernel's ``data[]`` vector for every output pixel: (N*OH*OW, K), window in (row, col, channel) order."""
        n = x.shape[0]
        if self.op == "dense":
            return x.reshape(n, -1).astype(dtype, copy=False)
        fh, fw, sh, sw = self.geometry
        oh, ow, _ = self.out_shape
        if fh == 1 and fw == 1:
            return x[:, : oh * sh : sh, : ow * sw : sw, :].astype(dtype).reshape(n * oh * ow, -1)
        c = x.shape[-1]
        # One strided view of every window, copied in one call: a window row (filt_width pixels x channels) is
        # contiguous in NHWC, so the view's last axis walks memory linearly (3-4x faster than a copy per tap).
        x = np.ascontiguousarray(x, dtype=dtype)
        s0, s1, s2, s3 = x.strides
        windows = as_strided(x, (n, oh, ow, fh, fw * c), (s0, sh * s1, sw * s2, s1, s3), writeable=False)
        return windows.reshape(n * oh * ow, fh * fw * c)

    def __call__(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        x = xs[0]
        n = x.shape[0]
        if self.depthwise:
            return [self._depthwise(x)]
        if self.per_product:
            cols = self._columns(x, np.int64)
            acc = np.empty((cols.shape[0], self.f), np.int64)
            rows = max(1, (1 << 22) // max(1, self.k * self.f))  # bound the (rows, K, F) product block
            for r in range(0, cols.shape[0], rows):
                p = cols[r : r + rows, :, None] * self.w[None, :, :]
                acc[r : r + rows] = self.product_cast(p, inplace=True).sum(axis=1)
        else:
            cols = self._columns(x, self.mm_dtype)
            acc = self._widen(cols @ self.w_mm)
        return [self._finish(acc).reshape((n, *self.out_shape))]

    def _widen(self, acc: np.ndarray) -> np.ndarray:
        """A matmul-dtype product sum as accumulator integers, shifted back by the weights' common scale."""
        if self.mm_dtype is not np.int64 or self.acc_dtype is not np.int64:
            acc = acc.astype(self.acc_dtype)
        if self.scale:
            acc <<= self.scale
        return acc

    def _finish(self, acc: np.ndarray) -> np.ndarray:
        """Bias added, then the accumulator's and the result's casts, as the firmware does after the products."""
        if self.has_bias:
            acc += self.bias_q
        acc = self.accum_cast(acc, inplace=True)
        return self.result_cast(acc, inplace=True)

    def _depthwise(self, x: np.ndarray) -> np.ndarray:
        """A depthwise convolution: each channel's window times its own taps, summed exactly (see ``__call__``)."""
        n = x.shape[0]
        taps, c = self.w_dw.shape
        if self.per_product:
            cols = self._columns(x, np.int64).reshape(-1, taps, c)
            acc = self.product_cast(cols * self.w_dw[None], inplace=True).sum(axis=1)
        else:
            cols = self._columns(x, self.mm_dtype).reshape(-1, taps, c)
            acc = self._widen((cols * self.w_dw_mm[None]).sum(axis=1))  # below 2^24 (2^53): exact in any order
        return self._finish(acc).reshape((n, *self.out_shape))


class _BatchNormStep(_Step):
    """``normalize``: ``x * scale + bias`` (exact), cast to the result type."""

    def __init__(self, layer: Mapping[str, Any], in_spec: _Spec, arrays: Mapping[str, np.ndarray]) -> None:
        name = layer["name"]
        self.name, self.inputs, self.outputs = name, list(layer["inputs"]), [layer["outputs"][0]["name"]]
        si, bi = layer["weights"]["scale"], layer["weights"]["bias"]
        s_t = type_from_json(si["type"], f"{name} scale")
        b_t = type_from_json(bi["type"], f"{name} bias")
        scale = np.asarray(arrays[si["key"]], np.int64).reshape(-1)
        bias = np.asarray(arrays[bi["key"]], np.int64).reshape(-1)
        shape = in_spec.shape
        size = int(np.prod(shape))
        if len(scale) == shape[-1]:
            self.param_shape: tuple[int, ...] = (shape[-1],)  # n_filt: per channel, broadcast on the last axis
        elif len(scale) == size:
            self.param_shape = shape  # n_filt == -1: one scale per element
        else:
            raise BundleError(f"{name}: {len(scale)} scales for an input of shape {shape}")
        prod_frac = in_spec.frac + s_t.frac_bits
        self.frac = max(prod_frac, b_t.frac_bits)
        self.s = (scale << (self.frac - prod_frac)).reshape(self.param_shape)
        self.b = (bias << (self.frac - b_t.frac_bits)).reshape(self.param_shape)
        plo, phi = _interval_mul(in_spec.lo, in_spec.hi, scale.reshape(-1) << (self.frac - prod_frac))
        lo = int((plo + (bias.reshape(-1) << (self.frac - b_t.frac_bits))).min())
        hi = int((phi + (bias.reshape(-1) << (self.frac - b_t.frac_bits))).max())
        _check_bits(lo, hi, f"{name} x*scale+bias")
        self.result = _out_type(layer)
        self.cast = _Cast(self.frac, lo, hi, self.result, f"{name} result")
        self.spec = _Spec(self.result, _out_shape(layer), self.cast.out_lo, self.cast.out_hi)

    def __call__(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        y = xs[0] * self.s
        y += self.b
        return [self.cast(y, inplace=True)]


class _MergeStep(_Step):
    """Two-input merges of ``nnet_merge_stream.h``: exact op, cast to the result type."""

    def __init__(self, layer: Mapping[str, Any], specs: list[_Spec]) -> None:
        name = layer["name"]
        self.name, self.inputs, self.outputs = name, list(layer["inputs"]), [layer["outputs"][0]["name"]]
        self.op = layer["op"]
        a, b = specs
        if a.shape != b.shape:
            raise BundleError(f"{name}: merging shapes {a.shape} and {b.shape}")
        self.result = _out_type(layer)
        if self.op == "multiply":
            self.frac = a.frac + b.frac
            self.sa = self.sb = 0
            cands = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
            lo, hi = min(cands), max(cands)
        else:
            f = max(a.frac, b.frac)
            self.sa, self.sb = f - a.frac, f - b.frac
            alo, ahi, blo, bhi = a.lo << self.sa, a.hi << self.sa, b.lo << self.sb, b.hi << self.sb
            if self.op == "add":
                lo, hi, self.frac = alo + blo, ahi + bhi, f
            elif self.op == "subtract":
                lo, hi, self.frac = alo - bhi, ahi - blo, f
            elif self.op == "average":  # (a + b) * ap_ufixed<1,0>(0.5): one more fractional bit, exact
                lo, hi, self.frac = alo + blo, ahi + bhi, f + 1
            elif self.op in ("maximum", "minimum"):
                lo, hi, self.frac = min(alo, blo), max(ahi, bhi), f
            else:
                raise BundleError(f"{name}: merge {self.op!r} is not supported")
        _check_bits(lo, hi, name)
        ranges = [lo, hi, a.lo << self.sa, a.hi << self.sa, b.lo << self.sb, b.hi << self.sb]
        self.work = np.int32 if _fits32(*ranges) else np.int64
        self.cast = _Cast(self.frac, lo, hi, self.result, f"{name} result")
        self.spec = _Spec(self.result, a.shape, self.cast.out_lo, self.cast.out_hi)

    def __call__(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        a, b = (x.astype(self.work, copy=False) for x in xs)
        if self.op == "multiply":
            y = a * b
        else:
            a = a << self.sa if self.sa else a
            b = b << self.sb if self.sb else b
            if self.op in ("add", "average"):
                y = a + b
            elif self.op == "subtract":
                y = a - b
            elif self.op == "maximum":
                y = np.maximum(a, b)
            else:
                y = np.minimum(a, b)
        return [self.cast(y)]


class _GlobalPoolStep(_Step):
    """``global_pooling2d_cl``: cast to ``accum_t``, accumulate in ``accum_t``, then divide (average) or max."""

    def __init__(self, layer: Mapping[str, Any], in_spec: _Spec) -> None:
        name = layer["name"]
        self.name, self.inputs, self.outputs = name, list(layer["inputs"]), [layer["outputs"][0]["name"]]
        attrs = layer["attributes"]
        self.pool_op = attrs.get("pool_op", "Average")
        if self.pool_op not in ("Average", "Max"):
            raise BundleError(f"{name}: pooling {self.pool_op!r} is not supported")
        self.accum = type_from_json(layer["types"]["accum"], f"{name} accum")
        self.result = _out_type(layer)
        h, w, c = in_spec.shape
        self.count = h * w
        self.in_cast = _Cast(in_spec.frac, in_spec.lo, in_spec.hi, self.accum, f"{name} input")
        lo, hi = self.in_cast.out_lo, self.in_cast.out_hi
        if self.pool_op == "Average":
            slo, shi = min(lo * self.count, lo), max(hi * self.count, hi)
            _check_bits(slo, shi, f"{name} sum")
            # With wraparound the running sum modulo 2^W is the total modulo 2^W; other overflow modes replay the
            # additions in stream order.
            self.sequential = self.accum.saturating and (slo < self.accum.raw_min or shi > self.accum.raw_max)
            self.sum_cast = _Cast(self.accum.frac_bits, slo, shi, self.accum, f"{name} accum")
            alo, ahi = self.sum_cast.out_lo, self.sum_cast.out_hi
            # accum / (unsigned) count: integer division truncated toward zero, accum_t's fractional bits.
            qlo, qhi = _tdiv(alo, self.count), _tdiv(ahi, self.count)
            self.out_cast = _Cast(self.accum.frac_bits, min(qlo, 0), max(qhi, 0), self.result, f"{name} result")
        else:
            self.out_cast = _Cast(self.accum.frac_bits, min(lo, self.accum.raw_min), hi, self.result, f"{name} result")
        self.spec = _Spec(self.result, (c,), self.out_cast.out_lo, self.out_cast.out_hi)

    def __call__(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        x = xs[0]
        n, h, w, c = x.shape
        v = self.in_cast(x.reshape(n, h * w, c))
        if self.pool_op == "Max":
            # init = numeric_limits<accum_t>::min(); "x > y ? x : y" in stream order = the maximum.
            acc = np.maximum(v.max(axis=1).astype(np.int64), self.accum.raw_min)
            return [self.out_cast(acc)]
        if self.sequential:
            acc = np.zeros((n, c), np.int64)
            for p in range(h * w):
                acc = cast_raw(acc + v[:, p, :].astype(np.int64), self.accum.frac_bits, self.accum)
        else:
            acc = self.sum_cast(v.sum(axis=1, dtype=np.int64))
        q = _tdiv_array(acc.astype(np.int64), self.count)
        return [self.out_cast(q)]


class _PoolStep(_Step):
    """``pooling2d_cl``: max or average over a window (no padding), in ``accum_t``, cast to the result.

    Each value is cast to ``accum_t`` and reduced there; an average is divided by the window size in ``accum_t``
    (C division, truncated toward zero).
    """

    def __init__(self, layer: Mapping[str, Any], in_spec: _Spec) -> None:
        name = layer["name"]
        self.name, self.inputs, self.outputs = name, list(layer["inputs"]), [layer["outputs"][0]["name"]]
        a = layer["attributes"]
        self.pool_op = a.get("pool_op", "Max")
        if self.pool_op not in ("Average", "Max"):
            raise BundleError(f"{name}: pooling {self.pool_op!r} is not supported")
        if any(a.get(k, 0) for k in ("pad_top", "pad_bottom", "pad_left", "pad_right")):
            raise BundleError(f"{name}: padded pooling is not supported by the fast engine")
        self.ph, self.pw = a["pool_height"], a["pool_width"]
        self.sh, self.sw = a["stride_height"], a["stride_width"]
        self.out_shape = _out_shape(layer)
        h, w, c = in_spec.shape
        oh, ow = (h - self.ph) // self.sh + 1, (w - self.pw) // self.sw + 1
        if self.out_shape != (oh, ow, c):
            raise BundleError(f"{name}: output shape {self.out_shape} does not follow from {in_spec.shape}")
        self.accum = type_from_json(layer["types"]["accum"], f"{name} accum")
        self.result = _out_type(layer)
        self.count = self.ph * self.pw
        self.in_cast = _Cast(in_spec.frac, in_spec.lo, in_spec.hi, self.accum, f"{name} input")
        lo, hi = self.in_cast.out_lo, self.in_cast.out_hi
        if self.pool_op == "Average":
            slo, shi = min(lo * self.count, lo), max(hi * self.count, hi)
            _check_bits(slo, shi, f"{name} sum")
            if self.accum.saturating and (slo < self.accum.raw_min or shi > self.accum.raw_max):
                # hls4ml adds in a tree, each partial sum cast to accum_t: saturation would depend on the order.
                raise BundleError(f"{name}: the window sum can saturate accum_t {self.accum}; not supported")
            self.sum_cast = _Cast(self.accum.frac_bits, slo, shi, self.accum, f"{name} accum")
            qlo, qhi = _tdiv(self.sum_cast.out_lo, self.count), _tdiv(self.sum_cast.out_hi, self.count)
            self.out_cast = _Cast(self.accum.frac_bits, min(qlo, 0), max(qhi, 0), self.result, f"{name} result")
        else:
            self.out_cast = _Cast(self.accum.frac_bits, lo, hi, self.result, f"{name} result")
        self.spec = _Spec(self.result, self.out_shape, self.out_cast.out_lo, self.out_cast.out_hi)

    def __call__(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        x = self.in_cast(xs[0]).astype(np.int64)
        oh, ow, _ = self.out_shape
        parts = [
            x[:, i : i + self.sh * (oh - 1) + 1 : self.sh, j : j + self.sw * (ow - 1) + 1 : self.sw, :]
            for i in range(self.ph)
            for j in range(self.pw)
        ]
        if self.pool_op == "Max":
            return [self.out_cast(np.maximum.reduce(parts))]
        acc = self.sum_cast(np.add.reduce(parts))
        return [self.out_cast(_tdiv_array(acc.astype(np.int64), self.count))]


class _ConcatStep(_Step):
    """``concatenate1d`` / ``concatenate3d`` on the channel axis: each input cast to the result type, joined."""

    def __init__(self, layer: Mapping[str, Any], specs: list[_Spec]) -> None:
        name = layer["name"]
        self.name, self.inputs, self.outputs = name, list(layer["inputs"]), [layer["outputs"][0]["name"]]
        a, b = specs
        self.result = _out_type(layer)
        shape = _out_shape(layer)
        if a.shape[:-1] != b.shape[:-1] or shape != (*a.shape[:-1], a.shape[-1] + b.shape[-1]):
            raise BundleError(f"{name}: concatenating {a.shape} and {b.shape} into {shape} on the last axis only")
        self.casts = [_Cast(s.frac, s.lo, s.hi, self.result, f"{name} input {k}") for k, s in enumerate(specs)]
        lo = min(c.out_lo for c in self.casts)
        hi = max(c.out_hi for c in self.casts)
        self.spec = _Spec(self.result, shape, lo, hi)

    def __call__(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        ys = [c(x).astype(np.int64, copy=False) for c, x in zip(self.casts, xs)]
        return [np.concatenate(ys, axis=-1)]


class _ReshapeStep(_Step):
    """``Reshape``/``Flatten``: the same values in stream order (NHWC), cast to the result type when it differs.

    hls4ml writes no call when the stream keeps its packing (an alias of its input), else a ``repack_stream``.
    """

    def __init__(self, layer: Mapping[str, Any], in_spec: _Spec) -> None:
        name = layer["name"]
        self.name, self.inputs, self.outputs = name, list(layer["inputs"]), [layer["outputs"][0]["name"]]
        self.out_shape = _out_shape(layer)
        if int(np.prod(self.out_shape)) != int(np.prod(in_spec.shape)):
            raise BundleError(f"{name}: reshaping {in_spec.shape} into {self.out_shape}")
        self.cast = _Cast(in_spec.frac, in_spec.lo, in_spec.hi, _out_type(layer), f"{name} result")
        self.spec = _Spec(self.cast.t, self.out_shape, self.cast.out_lo, self.cast.out_hi)

    def __call__(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        x = xs[0]
        return [self.cast(x.reshape((len(x), *self.out_shape)))]


def _tdiv(a: int, n: int) -> int:
    """Integer division truncated toward zero (C semantics)."""
    q = abs(a) // n
    return -q if a < 0 else q


def _tdiv_array(a: np.ndarray, n: int) -> np.ndarray:
    q = np.abs(a) // n
    return np.where(a < 0, -q, q)


# ---------------------------------------------------------------------------------------------- BLAS threads
class _BlasThreads:
    """Set OpenBLAS's thread count while the engine runs its own threads, and restore it afterwards.

    The engine parallelizes over chunks of images with Python threads, each calling small matrix multiplies;
    OpenBLAS's own threads on top of that oversubscribe the cores (on a busy 2-core host, a multi-threaded sgemm
    per chunk ran 2-5x slower than a single-threaded one). Found through ``/proc/self/maps`` (whichever OpenBLAS
    numpy loaded, under any of its symbol prefixes); when there is none, nothing is changed.
    """

    _NAMES = (
        ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
        ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
        ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
        ("openblas_get_num_threads", "openblas_set_num_threads"),
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: int | None = None
        self._fns: tuple[Any, Any] | None = None
        self._searched = False

    def _find(self) -> tuple[Any, Any] | None:
        import ctypes

        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return None
        libs = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower() and "/" in line})
        for lib in libs:
            try:
                handle = ctypes.CDLL(lib)
            except OSError:
                continue
            for get_name, set_name in self._NAMES:
                get_fn, set_fn = getattr(handle, get_name, None), getattr(handle, set_name, None)
                if get_fn is not None and set_fn is not None:
                    get_fn.restype, set_fn.argtypes, set_fn.restype = ctypes.c_int, [ctypes.c_int], None
                    return get_fn, set_fn
        return None

    def __enter__(self) -> None:
        with self._lock:
            if not self._searched:
                self._fns, self._searched = self._find(), True
            if self._fns is not None and self._users == 0:
                self._saved = int(self._fns[0]())
                self._fns[1](1)
            self._users += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._users -= 1
            if self._fns is not None and self._users == 0 and self._saved is not None:
                self._fns[1](self._saved)


_BLAS = _BlasThreads()


# ------------------------------------------------------------------------------------------------------- engine
class FastEngine:
    """The bit-exact numpy engine of an overlay's firmware.

    Same contract as the C-simulation kernel of ``board.emulated_device``: raw input stream codes in, raw output stream
    codes out (``run`` / :meth:`predict_raw`). Thread-safe (no state between calls).

    Args:
        graph: the parsed ``graph.json`` of ``hls_build.firmware_graph``.
        arrays: its weight arrays (``weights.npz``), raw integer codes.
        in_dtype: container of one input stream element (default: the input type's).
        out_dtype: container of one output stream element (default: the output type's).
        chunk: images per vectorized pass (memory bound).
        threads: worker threads over chunks (numpy and BLAS release the GIL); default: the CPU count, at most 8.
            OpenBLAS is held to one thread of its own while the engine runs.

    Raises:
        BundleError: the graph is malformed, of another version, or uses a layer or type this engine does not
            implement exactly.
    """

    def __init__(
        self,
        graph: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        in_dtype: np.dtype | str | None = None,
        out_dtype: np.dtype | str | None = None,
        chunk: int = DEFAULT_CHUNK,
        threads: int | None = None,
    ) -> None:
        if graph.get("format") != GRAPH_FORMAT or graph.get("version") not in SUPPORTED_VERSIONS:
            raise BundleError(
                f"firmware graph format {graph.get('format')!r} v{graph.get('version')!r} is not supported "
                f"(this runtime reads {GRAPH_FORMAT} v{SUPPORTED_VERSIONS}); rebuild the bundle with this version"
            )
        if graph.get("error"):
            raise BundleError(f"the firmware graph could not be exported when the bundle was built: {graph['error']}")
        if graph.get("io_type") != "io_stream":
            raise BundleError(f"firmware graph io_type {graph.get('io_type')!r}: only io_stream is supported")
        unsupported = [
            f"{la['name']} ({la['class']}{': ' + la['unsupported'] if la.get('unsupported') else ''})"
            for la in graph["layers"]
            if la.get("op") is None
        ]
        if unsupported:
            raise BundleError(f"the fast engine does not implement these layers: {', '.join(unsupported)}")
        self.graph = graph
        self.bundle: Bundle | None = None
        #: The manifest's preprocessing (pixel -> model input); the default is CIFAR-10's pixel / 256.
        self.preprocessing: dict[str, Any] = {}
        self.chunk = max(1, int(chunk))
        self.threads = max(1, int(threads)) if threads is not None else max(1, min(os.cpu_count() or 1, 8))
        axi = graph["axi"]
        self.in_type = type_from_json(axi["in"], "AXI input")
        self.out_type = type_from_json(axi["out"], "AXI output")
        self.n_in, self.n_out = int(axi["n_in"]), int(axi["n_out"])
        self.in_dtype = np.dtype(in_dtype) if in_dtype is not None else _container(self.in_type)
        self.out_dtype = np.dtype(out_dtype) if out_dtype is not None else _container(self.out_type)
        try:
            self._compile(graph, arrays)
        except KeyError as exc:
            raise BundleError(f"firmware graph is incomplete: missing {exc}") from exc

    # ----------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_files(
        cls, graph_path: str | os.PathLike, weights_path: str | os.PathLike | None = None, **kwargs: Any
    ) -> FastEngine:
        """Load ``graph.json`` and its ``weights.npz`` (default: the file the graph names, beside it).

        Raises:
            BundleError: a file is missing or unreadable.
        """
        graph_path = Path(graph_path)
        try:
            graph = json.loads(graph_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BundleError(f"{graph_path}: cannot read the firmware graph ({exc})") from exc
        weights_path = (
            Path(weights_path) if weights_path else graph_path.with_name(graph.get("weights_file", "weights.npz"))
        )
        try:
            with np.load(weights_path) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            raise BundleError(f"{weights_path}: cannot read the firmware weights ({exc})") from exc
        return cls(graph, arrays, **kwargs)

    @classmethod
    def from_bundle(
        cls, bundle: Bundle | str | os.PathLike, graph_dir: str | os.PathLike | None = None, **kwargs: Any
    ) -> FastEngine:
        """The engine of a bundle, from the firmware graph its manifest names.

        Args:
            bundle: a loaded :class:`board.bundle.Bundle` or its folder (verified on load).
            graph_dir: a folder holding ``graph.json`` and ``weights.npz`` for a bundle built before bundles carried
                them (``python -m hls_build.firmware_graph <bundle> --out DIR`` writes one); default: the bundle's.
            **kwargs: see :class:`FastEngine` (``chunk``, ``threads``).

        Raises:
            BundleError: the bundle has no firmware graph (rebuild it), the graph does not match the manifest's
                stream types, or it uses something this engine does not implement.
        """
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle)
        m = bundle.manifest
        if graph_dir is not None:
            graph_path, weights_path = Path(graph_dir) / "graph.json", Path(graph_dir) / "weights.npz"
        else:
            graph_path = bundle.path(m.hls.get("firmware_graph", DEFAULT_GRAPH))
            weights_path = bundle.path(m.hls.get("firmware_weights", DEFAULT_WEIGHTS))
        if not graph_path.is_file() or not weights_path.is_file():
            raise BundleError(
                f"{bundle.root}: the bundle has no firmware graph ({graph_path.name}, {weights_path.name}), which the "
                f"fast engine needs; it was built before bundles carried one. Rebuild it "
                f"(python -m hls_build bundle --model-dir <training folder>), or write one beside it with "
                f"python -m hls_build.firmware_graph {bundle.root} --out <dir> and pass graph_dir=<dir>"
            )
        engine = cls.from_files(
            graph_path, weights_path, in_dtype=m.input.container, out_dtype=m.output.container, **kwargs
        )
        for what, spec, t in (("input", m.input, engine.in_type), ("output", m.output, engine.out_type)):
            fp = FixedPoint.parse(spec.fixed_point)
            if (fp.width, fp.integer, fp.signed) != (t.width, t.integer, t.signed):
                raise BundleError(
                    f"{bundle.root}: manifest {what} type {spec.fixed_point} but the firmware graph has {t}"
                )
        if int(np.prod(m.input.shape)) != engine.n_in or int(np.prod(m.output.shape)) != engine.n_out:
            raise BundleError(f"{bundle.root}: manifest stream sizes do not match the firmware graph")
        engine.bundle, engine.preprocessing = bundle, dict(m.preprocessing)
        return engine

    def _compile(self, graph: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        """Turn the layer list into steps, deriving every tensor's static range."""
        specs: dict[str, _Spec] = {}
        steps: list[_Step] = []
        self.layer_outputs: list[str] = []
        input_names = set(graph["inputs"])
        for layer in graph["layers"]:
            op, name = layer["op"], layer["name"]
            if op == "input" or name in input_names:
                t = _out_type(layer)
                it = self.in_type
                cast = _Cast(it.frac_bits, it.raw_min, it.raw_max, t, f"{name} (AXI input)")
                spec = _Spec(t, _out_shape(layer), cast.out_lo, cast.out_hi)
                specs[layer["outputs"][0]["name"]] = spec
                steps.append(_CastStep(name, ["__axi_in__"], [layer["outputs"][0]["name"]], [cast]))
                self.input_shape = spec.shape
            else:
                ins = [specs[i] for i in layer["inputs"]]
                if op in ("relu", "linear", "clone", "zeropad2d"):
                    src = ins[0]
                    outs = [o["name"] for o in layer["outputs"]]
                    types = [_out_type(layer, k) for k in range(len(outs))]
                    casts = [_Cast(src.frac, src.lo, src.hi, t, f"{name} {o}") for t, o in zip(types, outs)]
                    # "in > 0 ? in : 0" then the cast; the ReLU is left out when the cast alone maps every value
                    # <= 0 to 0 (an unsigned saturating result such as ap_ufixed<8,3,AP_RND_CONV,AP_SAT>: rounding
                    # keeps x <= 0 at or below 0, saturation then gives 0). The casts see the full input range then.
                    relu = op == "relu" and not all(c.zero_below for c in casts)
                    if relu:
                        lo, hi = max(src.lo, 0), max(src.hi, 0)
                        casts = [_Cast(src.frac, lo, hi, t, f"{name} {o}") for t, o in zip(types, outs)]
                    pad = None
                    if op == "zeropad2d":
                        a = layer["attributes"]
                        pad = (a["pad_top"], a["pad_bottom"], a["pad_left"], a["pad_right"])
                    step: _Step = _CastStep(name, list(layer["inputs"]), outs, casts, relu=relu, pad=pad)
                    for k, o in enumerate(layer["outputs"]):
                        c = casts[k]
                        olo, ohi = (min(c.out_lo, 0), max(c.out_hi, 0)) if pad else (c.out_lo, c.out_hi)
                        specs[o["name"]] = _Spec(c.t, _out_shape(layer, k), olo, ohi)
                        if _out_shape(layer, k) != (src.shape if not pad else _padded(src.shape, pad)):
                            raise BundleError(
                                f"{name}: output shape {_out_shape(layer, k)} does not follow from {src.shape}"
                            )
                elif op in ("conv2d", "pointwise_conv2d", "depthwise_conv2d", "dense"):
                    step = _MatmulStep(layer, ins[0], arrays)
                    specs[step.outputs[0]] = step.spec
                elif op == "batchnorm":
                    step = _BatchNormStep(layer, ins[0], arrays)
                    specs[step.outputs[0]] = step.spec
                elif op in ("add", "subtract", "multiply", "average", "maximum", "minimum"):
                    step = _MergeStep(layer, ins)
                    specs[step.outputs[0]] = step.spec
                elif op == "global_pooling2d":
                    step = _GlobalPoolStep(layer, ins[0])
                    specs[step.outputs[0]] = step.spec
                elif op == "pooling2d":
                    step = _PoolStep(layer, ins[0])
                    specs[step.outputs[0]] = step.spec
                elif op == "concatenate":
                    step = _ConcatStep(layer, ins)
                    specs[step.outputs[0]] = step.spec
                elif op == "reshape":
                    step = _ReshapeStep(layer, ins[0])
                    specs[step.outputs[0]] = step.spec
                else:
                    raise BundleError(f"{name}: layer op {op!r} is not supported by the fast engine")
                steps.append(step)
            self.layer_outputs.extend(o["name"] for o in layer["outputs"])
        outs = graph["outputs"]
        if len(outs) != 1:
            raise BundleError(f"the firmware graph has {len(outs)} outputs; the overlay streams exactly one")
        last = steps[-1].outputs[0] if outs[0] not in specs else outs[0]
        out_spec = specs[last]
        self.output_name = last
        self.output_cast = _Cast(out_spec.frac, out_spec.lo, out_spec.hi, self.out_type, "AXI output")
        self.specs, self.steps = specs, steps
        # Free each tensor after its last reader, so a chunk's peak memory is a few layers, not the network.
        last_use: dict[str, int] = {}
        for i, s in enumerate(steps):
            for name in s.inputs:
                last_use[name] = i
        self._free_after = [[n for n, i in last_use.items() if i == k and n != last] for k in range(len(steps))]

    # -------------------------------------------------------------------------------------------------- running
    @property
    def layers(self) -> list[str]:
        """Names of every traced tensor in firmware order (layer outputs; clones have two)."""
        return list(self.layer_outputs)

    def _to_codes(self, raw_in: np.ndarray) -> np.ndarray:
        """Input stream words -> int64 raw codes of the AXI input type (low W bits, sign-extended if signed)."""
        r = np.asarray(raw_in)
        if r.dtype.kind not in "iu":
            raise InputError(f"raw input must be integer stream words, got dtype {r.dtype}")
        if r.ndim != 2 or r.shape[1] != self.n_in:
            raise InputError(f"expected raw input of shape (N, {self.n_in}), got {r.shape}")
        t = self.in_type
        q = r.astype(np.int64) & np.int64((1 << t.width) - 1)
        if t.signed:
            q = np.where(q > t.raw_max, q - (1 << t.width), q)
        return q

    def _run_chunk(self, codes: np.ndarray, keep: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        env: dict[str, np.ndarray] = {"__axi_in__": codes.reshape((len(codes), *self.input_shape))}
        kept: dict[str, np.ndarray] = {}
        for k, step in enumerate(self.steps):
            outs = step([env[i] for i in step.inputs])
            for name, y in zip(step.outputs, outs):
                env[name] = y
                if keep:
                    kept[name] = y
            if not keep:
                for name in self._free_after[k]:
                    env.pop(name, None)
        y = self.output_cast(env[self.output_name].reshape(len(codes), -1))
        return y, kept

    def _chunks(self, n: int) -> list[slice]:
        return [slice(i, min(i + self.chunk, n)) for i in range(0, n, self.chunk)]

    def predict_raw(self, raw_in: np.ndarray) -> np.ndarray:
        """Raw input stream codes ``(N, n_in)`` -> raw output stream codes ``(N, n_out)`` in ``out_dtype``.

        Raises:
            InputError: ``raw_in`` is not an integer array of shape (N, n_in).
        """
        codes = self._to_codes(raw_in)
        n = len(codes)
        out = np.empty((n, self.n_out), np.int64)
        parts = self._chunks(n)
        threads = min(self.threads, len(parts))
        with _BLAS:
            if threads > 1:
                with ThreadPoolExecutor(threads) as pool:
                    for sl, (y, _) in zip(parts, pool.map(lambda s: self._run_chunk(codes[s], False), parts)):
                        out[sl] = y
            else:
                for sl in parts:
                    out[sl] = self._run_chunk(codes[sl], False)[0]
        return _to_container(out, self.out_type, self.out_dtype)

    run = predict_raw  # the emulated device's Kernel interface

    def decode(self, raw_out: np.ndarray) -> np.ndarray:
        """Output stream codes -> float64 values (exact)."""
        t = self.out_type
        q = np.asarray(raw_out).astype(np.int64) & np.int64((1 << t.width) - 1)
        if t.signed:
            q = np.where(q > t.raw_max, q - (1 << t.width), q)
        return np.ldexp(q.astype(np.float64), -t.frac_bits)

    def predict(self, pixels: Any) -> np.ndarray:
        """uint8 images ``(N, 32, 32, 3)`` -> float64 logits ``(N, n_out)``, through the bundle's preprocessing.

        Raises:
            InputError: the pixels are not valid images.
        """
        from board.preprocess import Preprocessing, encode_pixels, pixel_lut, validate_pixels

        images, single = validate_pixels(pixels, self.input_shape)
        prep = Preprocessing.from_dict(self.preprocessing)
        in_fp = FixedPoint(
            self.in_type.width,
            self.in_type.integer,
            self.in_type.signed,
            self.in_type.rounding,
            self.in_type.saturation,
        )
        lut, _ = pixel_lut(prep, in_fp, self.in_dtype)
        raw = encode_pixels(lut, images)  # one lookup, per channel where the preprocessing is
        y = self.decode(self.predict_raw(raw))
        return y[0] if single else y

    def trace(self, raw_in: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer output for raw inputs ``(N, n_in)``: name -> float64 values ``(N, *shape)``, firmware order.

        Clones contribute one entry per copy (``<layer>_cpy1`` ...). Values are exact (``raw * 2^-F``).
        """
        codes = self._to_codes(raw_in)
        if len(codes) == 0:
            return {name: np.zeros((0, *self.specs[name].shape)) for name in self.layer_outputs}
        result: dict[str, list[np.ndarray]] = {name: [] for name in self.layer_outputs}
        for sl in self._chunks(len(codes)):
            _, kept = self._run_chunk(codes[sl], True)
            for name in self.layer_outputs:
                result[name].append(np.ldexp(kept[name].astype(np.float64), -self.specs[name].frac))
        return {name: np.concatenate(v) for name, v in result.items()}

    def describe(self) -> list[dict[str, Any]]:
        """One row per tensor: name, type, shape, static raw range, and for matrix layers the multiply dtype."""
        rows = []
        for step in self.steps:
            for name in step.outputs:
                s = self.specs[name]
                row = {
                    "layer": step.name,
                    "output": name,
                    "type": str(s.t),
                    "shape": s.shape,
                    "raw_range": (s.lo, s.hi),
                }
                if isinstance(step, _MatmulStep):
                    row["matmul"] = "per-product quantization" if step.per_product else np.dtype(step.mm_dtype).name
                rows.append(row)
        return rows


def _padded(shape: Sequence[int], pad: tuple[int, int, int, int]) -> tuple[int, ...]:
    h, w, c = shape
    top, bottom, left, right = pad
    return (h + top + bottom, w + left + right, c)


def _container(t: FixedPoint) -> np.dtype:
    for bits in (8, 16, 32, 64):
        if t.width <= bits:
            return np.dtype(f"{'int' if t.signed else 'uint'}{bits}")
    raise BundleError(f"{t}: no container for {t.width} bits")  # pragma: no cover


def _to_container(q: np.ndarray, t: FixedPoint, dtype: np.dtype) -> np.ndarray:
    """Raw codes into stream words, as ``FixedPoint.encode`` stores them (low W bits in unsigned containers)."""
    if dtype.kind == "u":
        return (q & np.int64((1 << t.width) - 1)).astype(dtype)
    if dtype.itemsize * 8 == t.width and not t.signed:
        q = np.where(q > np.iinfo(dtype).max, q - (1 << t.width), q)
    return q.astype(dtype)
