"""Fixed-point quantization specs: one convention, mapped once to QKeras.

Convention (the one hls4ml's ``ap_fixed<W,I>`` uses): ``<total_bits, integer_bits>`` counts the sign bit among the
integer bits. ``<8,3>`` is 8 bits in all, 3 of them integer including the sign, 5 fractional: values in
[-4, 4 - 2^-5] in steps of 2^-5.

QKeras counts differently: ``quantized_bits(bits, integer)`` does NOT count the sign bit in ``integer``, so
``<8,3>`` is ``quantized_bits(8, 2, keep_negative=True)``. ReLU outputs have no sign: for activations,
``<8,3>`` means ``ap_ufixed<8,3>`` (the same 3 integer bits, all 8 bits used for magnitude), which is
``quantized_relu(8, 3)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from board.errors import ProjectError

#: The grid of the quantization-aware training experiments.
QAT_GRID = ((2, 1), (4, 2), (8, 2), (8, 3), (16, 3), (16, 4), (16, 5))


class QuantSpecError(ProjectError, ValueError):
    """A quantization spec that cannot be represented."""


@dataclass(frozen=True)
class QuantSpec:
    """``<total_bits, integer_bits>`` with the sign counted among the integer bits (hls4ml's ``ap_fixed``).

    Attributes:
        total_bits: W, all bits including the sign.
        integer_bits: I, integer bits including the sign; may be <= 0 or > W as ap_fixed allows, as long as
            at least one bit is fractional or integer.
    """

    total_bits: int
    integer_bits: int

    def __post_init__(self) -> None:
        if not isinstance(self.total_bits, int) or not isinstance(self.integer_bits, int):
            raise QuantSpecError(f"bits must be integers, got <{self.total_bits!r},{self.integer_bits!r}>")
        if self.total_bits < 2:
            raise QuantSpecError(f"<{self.total_bits},{self.integer_bits}>: need at least 2 bits (sign + one more)")
        if self.integer_bits < 1:
            raise QuantSpecError(f"<{self.total_bits},{self.integer_bits}>: integer bits include the sign, so >= 1")
        if self.integer_bits > self.total_bits:
            raise QuantSpecError(f"<{self.total_bits},{self.integer_bits}>: more integer bits than total bits")
        if self.total_bits > 32:
            raise QuantSpecError(f"<{self.total_bits},{self.integer_bits}>: more than 32 bits is not supported")

    @classmethod
    def parse(cls, text: str) -> QuantSpec:
        """Parse ``"8,3"``, ``"<8,3>"`` or ``"ap_fixed<8,3>"``."""
        m = re.fullmatch(r"\s*(?:ap_fixed)?<?\s*(\d+)\s*,\s*(-?\d+)\s*>?\s*", text)
        if not m:
            raise QuantSpecError(f"cannot parse quantization spec {text!r}; expected e.g. '<8,3>'")
        return cls(int(m.group(1)), int(m.group(2)))

    @property
    def frac_bits(self) -> int:
        """Fractional bits, W - I."""
        return self.total_bits - self.integer_bits

    @property
    def tag(self) -> str:
        """Short name for file and model ids, e.g. ``q8_3``."""
        return f"q{self.total_bits}_{self.integer_bits}"

    def __str__(self) -> str:
        return f"<{self.total_bits},{self.integer_bits}>"

    def weight_quantizer(self):
        """QKeras quantizer for weights and biases: signed ``ap_fixed<W,I>``."""
        from qkeras import quantized_bits

        # alpha=1: a fixed power-of-two scale, as the hardware uses; QKeras's default "auto" would learn one.
        return quantized_bits(self.total_bits, self.integer_bits - 1, keep_negative=True, alpha=1)

    def relu_quantizer(self):
        """QKeras quantizer for ReLU outputs: ``ap_ufixed<W,I>``."""
        from qkeras import quantized_relu

        return quantized_relu(self.total_bits, self.integer_bits)

    def folded_kernel_integer_bits(self, first_layer: bool) -> int:
        """Integer bits (sign included) of a kernel with its BatchNormalization folded in, at this spec's width.

        A folded kernel is ``w * gamma / sigma``, whose range has nothing to do with the weights': behind a ReLU
        every folded kernel of the demo's ResNet-8 stayed below 1 (hls_build's fold after training derived
        ``ap_fixed<8,1>`` for all of them), so one integer bit leaves all the others for resolution; the first layer
        reads raw pixels / 256 (no per-channel normalisation), and its folded kernel reached 9.7 there
        (``ap_fixed<8,5>``): it gets two integer bits more than the spec's.
        """
        return min(self.integer_bits + 2, self.total_bits) if first_layer else 1

    def folded_kernel_quantizer(self, first_layer: bool):
        """QKeras quantizer for a kernel with its BatchNormalization folded in (``QConv2DBatchnorm``)."""
        from qkeras import quantized_bits

        integer = self.folded_kernel_integer_bits(first_layer)
        return quantized_bits(self.total_bits, integer - 1, keep_negative=True, alpha=1)

    def folded_bias_quantizer(self, first_layer: bool, input_frac_bits: int):
        """QKeras quantizer for the bias of a convolution trained with its BatchNormalization folded in.

        The accumulator's fractional bits (input + folded kernel fractional bits), so adding the bias neither
        rounds nor widens the accumulator; ``integer_bits + 3`` integer bits (sign included), since
        ``beta - mean * gamma / sigma`` runs well beyond the weights' range. At most 32 bits (fractional bits go
        first).

        Args:
            first_layer: the layer reads the image (see :meth:`folded_kernel_integer_bits`).
            input_frac_bits: fractional bits of the layer's input.
        """
        from qkeras import quantized_bits

        integer = self.integer_bits + 3
        frac = input_frac_bits + self.total_bits - self.folded_kernel_integer_bits(first_layer)
        total = min(integer + frac, 32)
        return quantized_bits(total, integer - 1, keep_negative=True, alpha=1)

    def hls_weight_type(self) -> str:
        """The hls4ml type of weights and biases under this spec."""
        return f"ap_fixed<{self.total_bits},{self.integer_bits}>"

    def hls_relu_type(self) -> str:
        """The hls4ml type of ReLU outputs under this spec."""
        return f"ap_ufixed<{self.total_bits},{self.integer_bits}>"
