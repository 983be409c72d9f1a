"""The hls4ml configuration of a CIFAR ResNet, built in exactly one function.

Precisions follow the QKeras quantizers wherever hls4ml can infer them (``auto``: weights from the quantizer,
convolution accumulators and results, Add results, ReLU outputs from ``quantized_relu``). Where hls4ml would fall
back to its 16-bit default and lose bits or wrap, the types are set here, each with its reason:

* the input is ``ap_ufixed<8,0>``: a uint8 pixel / 256, exact (see ``training.data``);
* BatchNormalization scale/bias/result are wide: unfolded BN with 16-bit defaults differs from Keras by 1 LSB;
* GlobalAveragePooling accumulates in 32 bits: its 16-bit default wraps (see the stack facts);
* the logits (the network's output, streamed back over DMA) are ``ap_fixed<16,6>``: logits of a CIFAR ResNet stay
  well inside +-32, and 10 fractional bits keep the argmax of the quantized Keras model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from training.data import INPUT_FIXED_POINT
from training.keras_compat import keras

OUTPUT_FIXED_POINT = "ap_fixed<16,6>"
BN_PARAM_PRECISION = "ap_fixed<24,10>"
WIDE_RESULT_PRECISION = "ap_fixed<32,16>"


@dataclass(frozen=True)
class HlsSettings:
    """Knobs of one hls4ml conversion.

    Attributes:
        board: target board (a key of ``hls_build.boards.BOARDS``).
        clock_mhz: target clock of the accelerator (the PYNQ-Z2 block design clocks it at 100 MHz).
        reuse_factor: hls4ml ReuseFactor for every layer (multipliers are shared this many times).
        strategy: ``Latency`` or ``Resource``.
        io_type: hls4ml I/O type; the AXI-stream accelerator needs ``io_stream``.
        layer_config: per-layer ``ReuseFactor`` / ``Strategy`` overrides, e.g. a fit plan's
            (``python -m hls_build plan``); they win over ``reuse_factor`` and ``strategy``.
        fifo_depths: depth of the stream after each hls4ml output variable, from a fit plan; empty keeps
            hls4ml's defaults (safe, large). Planned depths are analytic: check them with C/RTL co-simulation
            before trusting a bitstream (the C-simulation cannot deadlock, so it does not test them).
    """

    board: str = "pynq-z2"
    clock_mhz: float = 100.0
    reuse_factor: int = 64
    strategy: str = "Resource"
    io_type: str = "io_stream"
    layer_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fifo_depths: Mapping[str, int] = field(default_factory=dict)

    @property
    def clock_period_ns(self) -> float:
        """Clock period handed to hls4ml."""
        return 1000.0 / self.clock_mhz


def build_hls_config(model: keras.Model, settings: HlsSettings) -> dict[str, Any]:
    """The hls4ml ``hls_config`` dict for ``model``: the only place that writes hls4ml config keys.

    Args:
        model: a (Q)Keras CIFAR ResNet from ``training.models``.
        settings: the conversion knobs.

    Returns:
        A dict for ``hls4ml.converters.convert_from_keras_model(hls_config=...)``.
    """
    import hls4ml

    cfg = hls4ml.utils.config_from_keras_model(
        model, granularity="name", backend="VivadoAccelerator", default_precision="ap_fixed<16,6>"
    )
    cfg["Model"]["ReuseFactor"] = settings.reuse_factor
    cfg["Model"]["Strategy"] = settings.strategy
    layers = cfg["LayerName"]
    for layer in model.layers:
        entry = layers.get(layer.name)
        if entry is None:
            continue
        entry["ReuseFactor"] = settings.reuse_factor
        prec = entry.setdefault("Precision", {})
        kind = type(layer).__name__
        if kind == "InputLayer":
            prec["result"] = INPUT_FIXED_POINT
        elif kind == "BatchNormalization":
            prec.update(scale=BN_PARAM_PRECISION, bias=BN_PARAM_PRECISION, result=WIDE_RESULT_PRECISION)
        elif kind == "GlobalAveragePooling2D":
            prec.update(accum=WIDE_RESULT_PRECISION, result=WIDE_RESULT_PRECISION)
        elif kind == "Add":
            prec["result"] = WIDE_RESULT_PRECISION
        elif kind in ("Dense", "QDense") and layer is model.layers[-1]:
            prec.update(result=OUTPUT_FIXED_POINT, accum=WIDE_RESULT_PRECISION)
    for name, overrides in settings.layer_config.items():
        if name not in layers:
            raise ValueError(f"layer_config names {name!r}, which is not a layer of {model.name}")
        unknown = set(overrides) - {"ReuseFactor", "Strategy"}
        if unknown:
            raise ValueError(f"layer_config[{name!r}]: only ReuseFactor and Strategy can be set, got {sorted(unknown)}")
        layers[name].update(overrides)
    return cfg
