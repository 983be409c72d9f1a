"""Vivado HLS ``ap_fixed`` / ``ap_ufixed`` types as a vectorized numpy codec.

An accelerator built by hls4ml talks in raw fixed-point bits: each stream element is a ``W``-bit two's-complement
(``ap_fixed``) or unsigned (``ap_ufixed``) integer ``raw`` whose value is ``raw * 2^-(W-I)``. Over AXI-Stream the
``W`` bits travel in a byte-rounded TDATA word, so on the host each element lives in the smallest numpy integer
container that holds ``W`` bits (``int8/16/32`` or ``uint8/16/32``).

:class:`FixedPoint` parses the HLS type string (``ap_fixed<16,6>``, ``ap_ufixed<8,0,AP_RND_CONV,AP_SAT>``, or
hls4ml's short ``fixed<16,6>`` / ``ufixed<8,0>``), and converts floats to raw bits the way the HLS type does on
assignment: quantization (rounding) first, then overflow handling. The defaults are ap_fixed's, ``AP_TRN``
(floor) and ``AP_WRAP`` (keep the low ``W`` bits). Every step is exact: it works on float64 values whose integer
parts are exact and uses ``fmod``, which is exact in IEEE arithmetic, for wraparound.

This is the project's one fixed-point type: the stream codec here, and the same :class:`FixedPoint` is the type
``hls_build`` derives (``hls_build.precision``), the estimator reads from the generated C++ (``hls_build.estimate``)
and the fast engine computes with (``board.fast_engine``, through :func:`cast_raw`, ``ap_fixed`` assignment on raw
integer codes). A type may be up to :data:`MAX_TYPE_WIDTH` bits wide (an accumulator before it is capped); the
float codec (:meth:`FixedPoint.encode`, :meth:`FixedPoint.decode`, :attr:`FixedPoint.container_dtype`) handles the
stream types, up to :data:`MAX_WIDTH` bits.

Pure numpy; works on numpy 1.x (the board) and 2.x (the host).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import numpy as np

__all__ = ["MAX_TYPE_WIDTH", "MAX_WIDTH", "FixedPoint", "Rounding", "Saturation", "cast_raw", "parse_fixed"]

#: Largest width the float codec handles: the widest AXI container it maps to is 32 bits.
MAX_WIDTH = 32
#: Largest width of a type (``ap_fixed``'s own default limit, ``AP_INT_MAX_W``).
MAX_TYPE_WIDTH = 1024


class Rounding(str, Enum):
    """Quantization modes of ``ap_fixed`` (what happens to bits below the LSB)."""

    TRN = "AP_TRN"  # truncate toward minus infinity (floor); the ap_fixed default
    TRN_ZERO = "AP_TRN_ZERO"  # truncate toward zero
    RND = "AP_RND"  # round to nearest, ties toward plus infinity
    RND_ZERO = "AP_RND_ZERO"  # round to nearest, ties toward zero
    RND_MIN_INF = "AP_RND_MIN_INF"  # round to nearest, ties toward minus infinity
    RND_INF = "AP_RND_INF"  # round to nearest, ties away from zero
    RND_CONV = "AP_RND_CONV"  # round to nearest, ties to even (convergent)


class Saturation(str, Enum):
    """Overflow modes of ``ap_fixed`` (what happens to values outside the range)."""

    WRAP = "AP_WRAP"  # keep the low W bits (two's-complement wraparound); the ap_fixed default
    SAT = "AP_SAT"  # clamp to [min, max]
    SAT_ZERO = "AP_SAT_ZERO"  # out-of-range values become zero
    SAT_SYM = "AP_SAT_SYM"  # clamp to [-max, max] (signed), i.e. the most negative code is never produced


_TYPE_RE = re.compile(
    r"""^\s*(?:ap_)?(?P<kind>u?fixed)\s*<\s*(?P<w>-?\d+)\s*,\s*(?P<i>-?\d+)\s*
        (?:,\s*(?P<q>[A-Za-z_]+)\s*)?(?:,\s*(?P<o>[A-Za-z_]+)\s*)?(?:,\s*(?P<n>-?\d+)\s*)?>\s*$""",
    re.VERBOSE,
)
_INT_RE = re.compile(r"^\s*(?:ap_)?(?P<kind>u?int)\s*<\s*(?P<w>-?\d+)\s*>\s*$")


def _mode(name: str) -> str:
    """``RND_CONV`` / ``AP_RND_CONV`` -> ``AP_RND_CONV`` (hls4ml writes both)."""
    name = name.strip().upper()
    return name if name.startswith("AP_") else "AP_" + name


@dataclass(frozen=True)
class FixedPoint:
    """An ``ap_fixed<W,I,Q,O>`` / ``ap_ufixed<W,I,Q,O>`` (or ``ap_int<W>`` / ``ap_uint<W>``) type.

    Attributes:
        width: W, total bits including the sign bit of signed types.
        integer: I, integer bits (including the sign bit of signed types); may be negative or exceed W.
        signed: True for ``ap_fixed``, False for ``ap_ufixed``.
        rounding: quantization mode applied by :meth:`encode` and :func:`cast_raw`.
        saturation: overflow mode applied by :meth:`encode` and :func:`cast_raw`.
        is_int: spelled ``ap_int<W>`` / ``ap_uint<W>`` (the arithmetic of ``ap_fixed<W,W>``; I == W).
    """

    width: int
    integer: int
    signed: bool = True
    rounding: Rounding = Rounding.TRN
    saturation: Saturation = Saturation.WRAP
    is_int: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.width, int) or not isinstance(self.integer, int):
            raise ValueError(f"width and integer bits must be int, got {self.width!r}, {self.integer!r}")
        if not 1 <= self.width <= MAX_TYPE_WIDTH:
            raise ValueError(f"{self}: width must be 1..{MAX_TYPE_WIDTH} bits")
        if self.is_int and self.integer != self.width:
            raise ValueError(f"an integer type has as many integer bits as bits, got {self.width}, {self.integer}")
        # Accept the enum values' strings too, so FixedPoint(8, 0, False, "AP_RND") works.
        object.__setattr__(self, "rounding", Rounding(self.rounding))
        object.__setattr__(self, "saturation", Saturation(self.saturation))

    @classmethod
    def parse(cls, text: str) -> FixedPoint:
        """Parse an HLS type string: the project's one parser of type strings.

        Accepts ``ap_fixed<W,I>``, ``ap_ufixed<W,I>``, the optional quantization and overflow modes
        (``ap_fixed<W,I,AP_RND_CONV,AP_SAT>``, also without the ``AP_`` prefix) and a saturation-bit count of 0,
        hls4ml's ``fixed<W,I>`` / ``ufixed<W,I>`` spelling, and ``ap_int<W>`` / ``ap_uint<W>``.

        Raises:
            ValueError: the string is not such a type, a mode is unknown, or the type is unsupported
                (``AP_WRAP_SM``, non-zero saturation bits, more than :data:`MAX_TYPE_WIDTH` bits).
        """
        m = _INT_RE.match(text)
        if m:
            width = int(m.group("w"))
            return cls(width, width, m.group("kind") == "int", is_int=True)
        m = _TYPE_RE.match(text)
        if not m:
            raise ValueError(f"cannot parse fixed-point type {text!r}; expected e.g. 'ap_fixed<16,6>'")
        q = _mode(m.group("q") or Rounding.TRN.value)
        o = _mode(m.group("o") or Saturation.WRAP.value)
        if m.group("n") is not None and int(m.group("n")) != 0:
            raise ValueError(f"{text!r}: saturation bits (the 5th parameter) other than 0 are not supported")
        if o == "AP_WRAP_SM":
            raise ValueError(f"{text!r}: AP_WRAP_SM (sign-magnitude wrap) is not supported")
        try:
            rounding, saturation = Rounding(q), Saturation(o)
        except ValueError:
            known = ", ".join(m.value for m in (*Rounding, *Saturation))
            raise ValueError(f"{text!r}: unknown quantization/overflow mode (known: {known})") from None
        return cls(int(m.group("w")), int(m.group("i")), m.group("kind") == "fixed", rounding, saturation)

    @classmethod
    def for_range(cls, lo: float, hi: float, frac: int) -> FixedPoint:
        """The narrowest type with ``frac`` fractional bits that holds every value in ``[lo, hi]`` (signed: lo < 0)."""
        signed = lo < 0
        top = max(abs(lo), abs(hi) + 2.0**-frac)  # the largest code is hi; a signed type's range is [-2^(I-1), ..)
        integer = max(int(math.ceil(math.log2(top))) if top > 0 else 0, 0) + int(signed)
        if signed and -(2.0 ** (integer - 1)) > lo:
            integer += 1
        integer = max(integer, 1 if signed else 0, 1 - frac)  # at least one bit
        return cls(integer + frac, integer, signed)

    def capped(self, max_bits: int = MAX_WIDTH) -> tuple[FixedPoint, bool]:
        """The type cut to ``max_bits`` (fractional bits go first) and whether it was exact (not cut)."""
        if self.width <= max_bits:
            return self, True
        return replace(self, width=max_bits), False

    def __str__(self) -> str:
        if self.is_int:
            return f"ap_{'' if self.signed else 'u'}int<{self.width}>"
        base = f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer}"
        if self.rounding is not Rounding.TRN or self.saturation is not Saturation.WRAP:
            base += f",{self.rounding.value},{self.saturation.value}"
        return base + ">"

    # ----------------------------------------------------------------------------------------------- properties
    @property
    def frac_bits(self) -> int:
        """F = W - I, the number of fractional bits (negative when the LSB weighs more than 1)."""
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        """Value of one LSB, 2^-F."""
        return float(np.ldexp(1.0, -self.frac_bits))

    @property
    def raw_min(self) -> int:
        """Smallest raw code: -2^(W-1) signed, 0 unsigned."""
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def raw_max(self) -> int:
        """Largest raw code: 2^(W-1)-1 signed, 2^W-1 unsigned."""
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def min(self) -> float:
        """Smallest representable value."""
        return float(np.ldexp(float(self.raw_min), -self.frac_bits))

    @property
    def max(self) -> float:
        """Largest representable value."""
        return float(np.ldexp(float(self.raw_max), -self.frac_bits))

    @property
    def saturating(self) -> bool:
        """Whether overflow saturates (anything but ``AP_WRAP``)."""
        return self.saturation is not Saturation.WRAP

    @property
    def rounds(self) -> bool:
        """Whether quantization rounds (anything but truncation)."""
        return self.rounding not in (Rounding.TRN, Rounding.TRN_ZERO)

    @property
    def container_dtype(self) -> np.dtype:
        """Smallest of int8/16/32 (uint8/16/32 unsigned) that holds W bits: the byte-rounded AXI TDATA.

        Raises:
            ValueError: the type is wider than :data:`MAX_WIDTH` bits (no stream container carries it).
        """
        self._check_codec()
        for bits in (8, 16, 32):
            if self.width <= bits:
                return np.dtype(f"{'int' if self.signed else 'uint'}{bits}")
        raise AssertionError("unreachable: the width is checked above")  # pragma: no cover

    def _check_codec(self) -> None:
        if self.width > MAX_WIDTH:
            raise ValueError(f"{self}: the float codec handles up to {MAX_WIDTH} bits (the widest stream container)")

    # ---------------------------------------------------------------------------------------------------- codec
    def quantize_raw(self, values: np.ndarray | float) -> np.ndarray:
        """Raw codes of ``values`` as int64, after rounding and overflow handling (see :meth:`encode`)."""
        self._check_codec()
        x = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{self}: cannot encode NaN or infinite values")
        s = np.ldexp(x, self.frac_bits)  # exact: scaling by a power of two
        f = np.floor(s)
        d = s - f  # exact fraction in [0, 1): both terms share an exponent range, so no rounding
        mode = self.rounding
        if mode is Rounding.TRN:
            q = f
        elif mode is Rounding.TRN_ZERO:
            q = f + ((d > 0) & (s < 0))
        elif mode is Rounding.RND:
            q = f + (d >= 0.5)
        elif mode is Rounding.RND_MIN_INF:
            q = f + (d > 0.5)
        elif mode is Rounding.RND_ZERO:
            q = f + (d > 0.5) + ((d == 0.5) & (s < 0))
        elif mode is Rounding.RND_INF:
            q = f + (d > 0.5) + ((d == 0.5) & (s > 0))
        else:  # RND_CONV: ties go to the even neighbour
            q = f + (d > 0.5) + ((d == 0.5) & (np.fmod(f, 2.0) != 0))
        lo, hi = float(self.raw_min), float(self.raw_max)
        sat = self.saturation
        if sat is Saturation.WRAP:
            span = float(1 << self.width)
            q = np.fmod(q, span)  # exact, |result| < 2^W
            q = np.where(q < 0, q + span, q)
            if self.signed:
                q = np.where(q > hi, q - span, q)
        elif sat is Saturation.SAT:
            q = np.clip(q, lo, hi)
        elif sat is Saturation.SAT_SYM:
            q = np.clip(q, -hi if self.signed else lo, hi)
        else:  # SAT_ZERO
            q = np.where((q < lo) | (q > hi), 0.0, q)
        return q.astype(np.int64)

    def encode(self, values: np.ndarray | float, dtype: np.dtype | str | None = None) -> np.ndarray:
        """Convert real values to raw bits, as assigning them to the HLS type does.

        Quantization first (``rounding``: AP_TRN floors, AP_RND_CONV rounds ties to even, ...), then overflow
        (``saturation``: AP_WRAP keeps the low W bits, AP_SAT clamps, ...).

        Args:
            values: real values, any shape.
            dtype: container to return; default :attr:`container_dtype`. A signed type is stored sign-extended;
                an unsigned container receives the low W bits (two's complement), as a byte-rounded TDATA word
                with zero padding would carry them.

        Returns:
            Raw codes, same shape as ``values``.

        Raises:
            ValueError: a value is NaN or infinite, or ``dtype`` cannot hold W bits.
        """
        q = self.quantize_raw(values)
        dt = self.container_dtype if dtype is None else np.dtype(dtype)
        if dt.kind not in "iu" or dt.itemsize * 8 < self.width or dt.itemsize > 4:
            raise ValueError(f"{self}: container {dt} cannot carry {self.width} bits")
        if dt.kind == "u":
            q = q & ((1 << self.width) - 1)
        elif dt.itemsize * 8 == self.width and not self.signed:
            # ap_ufixed<8,..> in int8: reinterpret the bit pattern, as the wire does.
            q = np.where(q > np.iinfo(dt).max, q - (1 << self.width), q)
        return q.astype(dt)

    def decode(self, raw: np.ndarray | int) -> np.ndarray:
        """Convert raw bits to float64 values (exact: W <= 32 bits fit a float64 mantissa).

        Only the low W bits of each element count: bits above them (zero padding of a byte-rounded TDATA word, or
        a sign extension) are ignored, and the W bits are sign-extended for ``ap_fixed``.

        Raises:
            ValueError: ``raw`` is not an integer array.
        """
        self._check_codec()
        r = np.asarray(raw)
        if r.dtype.kind not in "iu":
            raise ValueError(f"{self}: raw codes must be integers, got dtype {r.dtype}")
        q = r.astype(np.int64) & ((1 << self.width) - 1)
        if self.signed:
            q = np.where(q > self.raw_max, q - (1 << self.width), q)
        return np.ldexp(q.astype(np.float64), -self.frac_bits)

    def representable(self, values: np.ndarray | float) -> np.ndarray:
        """Elementwise: whether each value is exactly a code of this type (in range, on the LSB grid)."""
        x = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            s = np.ldexp(x, self.frac_bits)
            return np.isfinite(x) & (s == np.floor(s)) & (x >= self.min) & (x <= self.max)


def cast_raw(
    raw: np.ndarray, src_frac: int, t: FixedPoint, overflow: bool = True, work: Any = np.int64, inplace: bool = False
) -> np.ndarray:
    """Cast exact values ``raw * 2^-src_frac`` to type ``t`` as ``ap_fixed`` assignment does: the raw integer cast.

    Integer arithmetic on raw codes, any width up to 62 bits (the fast engine's intermediates); the float codec
    (:meth:`FixedPoint.encode`) does the same for real values of stream types, and the tests check they agree.

    Quantization first, on the exact value (``ap_fixed_base::quantization_adjust``: the first dropped bit, whether
    any lower bit is set, the sign and the kept LSB decide), then overflow handling of the rounded value.

    Args:
        raw: integer raw codes (not modified unless ``inplace``).
        src_frac: fractional bits of ``raw``.
        t: target type.
        overflow: False when the caller knows no value can overflow (skips the check).
        work: integer dtype to compute in; int32 only when the caller has bounded every intermediate below 2^31.
        inplace: ``raw`` is the caller's temporary and may be overwritten.

    Returns:
        Raw codes of ``t`` (dtype ``work``, or int64 when the overflow step needs it).
    """
    work = np.dtype(work)
    src = np.asarray(raw)
    q = src.astype(work, copy=False)
    # In place only on the caller's own temporary (never on an input another layer may still read).
    own = inplace or q is not src
    one = work.type(1)
    shift = src_frac - t.frac_bits
    if shift > 0:
        half = one << work.type(shift - 1)
        mode = t.rounding
        if mode is Rounding.TRN:
            q = np.right_shift(q, shift, out=q if own else None)
        elif mode is Rounding.RND:  # ties toward +inf
            q = q + half if not own else np.add(q, half, out=q)
            q >>= shift
        elif mode is Rounding.RND_MIN_INF:  # ties toward -inf
            q = (q + (half - one)) >> shift
        elif mode is Rounding.RND_CONV:  # ties to even: the kept LSB decides a tie
            lsb = q >> shift
            lsb &= one
            lsb += half - one
            q = q + lsb if not own else np.add(q, lsb, out=q)
            q >>= shift
        elif mode is Rounding.RND_ZERO:  # ties toward zero
            q = (q + (half - one) + (q < 0)) >> shift
        elif mode is Rounding.RND_INF:  # ties away from zero
            q = (q + half - (q < 0)) >> shift
        elif mode is Rounding.TRN_ZERO:  # toward zero
            q = (q + (q < 0) * ((one << work.type(shift)) - one)) >> shift
        else:  # pragma: no cover - FixedPoint validates the mode
            raise ValueError(f"unknown quantization mode {mode}")
    elif shift < 0:
        q = np.left_shift(q, -shift, out=q if own else None)
    if not overflow:
        return q
    if q.dtype != np.int64 and (t.raw_min < np.iinfo(q.dtype).min or (1 << t.width) - 1 > np.iinfo(q.dtype).max):
        q = q.astype(np.int64)  # the type's range or mask does not fit the work dtype
    sat = t.saturation
    if sat is Saturation.WRAP:
        mask = q.dtype.type((1 << t.width) - 1)
        if t.signed:
            half_range = q.dtype.type(1 << (t.width - 1))
            q = ((q + half_range) & mask) - half_range
        else:
            q = q & mask
    elif sat is Saturation.SAT:
        q = np.clip(q, t.raw_min, t.raw_max, out=q if own or q is not src else None)
    elif sat is Saturation.SAT_SYM:
        q = np.clip(q, -t.raw_max if t.signed else t.raw_min, t.raw_max)
    else:  # AP_SAT_ZERO
        q = np.where((q < t.raw_min) | (q > t.raw_max), q.dtype.type(0), q)
    return q


def parse_fixed(text: str) -> FixedPoint:
    """Shorthand for :meth:`FixedPoint.parse`."""
    return FixedPoint.parse(text)
