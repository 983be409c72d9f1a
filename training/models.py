"""CIFAR ResNet-n registry (He et al. 2016, CIFAR layout), float or QKeras-quantized, with any subset of skips.

Layout: a 3x3/16 stem, then three stages of ``k = (n - 2) / 6`` basic blocks with 16, 32 and 64 filters (the first
block of stages 2 and 3 halves the resolution), global average pooling and a 10-way dense layer that outputs
logits (softmax is applied on the host, so the hardware returns exact logits).

Shortcuts use He et al.'s option B: identity where shapes match, a 1x1 stride-2 convolution + BatchNorm where a
block halves the resolution (hls4ml maps this directly; option A's channel zero-padding has no hls4ml layer).

Layer names are stable (``s2b1_conv1``, ``s2b1_proj_conv``, ``logits``...) because hls_build configures
precisions per layer name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from training.keras_compat import keras
from training.quant import QuantSpec

DEPTHS = (8, 20, 32, 44, 56, 110)
STAGE_FILTERS = (16, 32, 64)
NUM_CLASSES = 10
INPUT_SHAPE = (32, 32, 3)


class UnknownModelError(KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class ResNetConfig:
    """Architecture of one CIFAR ResNet.

    Attributes:
        depth: n in ResNet-n; one of ``DEPTHS``.
        skips: one bool per residual block (input end first); False removes that block's skip connection.
        quant: fixed-point spec for weights, biases and activations, or None for a float model.
        weight_decay: L2 factor on conv and dense kernels (Keras adds ``weight_decay * sum(w^2)`` to the loss).
    """

    depth: int
    skips: tuple[bool, ...]
    quant: QuantSpec | None = None
    weight_decay: float = 5e-5

    @property
    def blocks_per_stage(self) -> int:
        """k = (n - 2) / 6 basic blocks in each of the three stages."""
        return (self.depth - 2) // 6

    @property
    def num_blocks(self) -> int:
        """Residual blocks in the whole network (one skip each)."""
        return 3 * self.blocks_per_stage


def _resolve_skips(depth: int, skips: str | Sequence[bool]) -> tuple[bool, ...]:
    n_blocks = 3 * ((depth - 2) // 6)
    if isinstance(skips, str):
        if skips not in ("all", "none"):
            raise ValueError(f"skips must be 'all', 'none' or a sequence of {n_blocks} bools, got {skips!r}")
        return (skips == "all",) * n_blocks
    flags = tuple(bool(s) for s in skips)
    if len(flags) != n_blocks:
        raise ValueError(f"ResNet{depth} has {n_blocks} residual blocks; got {len(flags)} skip flags")
    return flags


def _layers(cfg: ResNetConfig):
    """Layer factories for the float or quantized variant, so the topology is written once."""
    reg = keras.regularizers.l2(cfg.weight_decay) if cfg.weight_decay else None
    if cfg.quant is None:

        def conv(filters, kernel, strides, name):
            return keras.layers.Conv2D(
                filters, kernel, strides=strides, padding="same", use_bias=False,
                kernel_initializer="he_normal", kernel_regularizer=reg, name=name,
            )  # fmt: skip

        def relu(name):
            return keras.layers.Activation("relu", name=name)

        def dense(units, name):
            return keras.layers.Dense(units, kernel_regularizer=reg, name=name)

        return conv, relu, dense

    from qkeras import QActivation, QConv2D, QDense

    q = cfg.quant

    def qconv(filters, kernel, strides, name):
        return QConv2D(
            filters, kernel, strides=strides, padding="same", use_bias=False,
            kernel_quantizer=q.weight_quantizer(), kernel_initializer="he_normal",
            kernel_regularizer=reg, name=name,
        )  # fmt: skip

    def qrelu(name):
        return QActivation(q.relu_quantizer(), name=name)

    def qdense(units, name):
        return QDense(
            units, kernel_quantizer=q.weight_quantizer(), bias_quantizer=q.weight_quantizer(),
            kernel_regularizer=reg, name=name,
        )  # fmt: skip

    return qconv, qrelu, qdense


def build_resnet(cfg: ResNetConfig, name: str | None = None) -> keras.Model:
    """Build the Keras model for ``cfg``. Input: ``image`` (N, 32, 32, 3) scaled pixels; output: logits (N, 10)."""
    conv, relu, dense = _layers(cfg)
    bn = keras.layers.BatchNormalization
    # An Input layer literally named "input" is refused by hls4ml.
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    x = conv(STAGE_FILTERS[0], 3, 1, "stem_conv")(inputs)
    x = bn(name="stem_bn")(x)
    x = relu("stem_relu")(x)
    block = 0
    for stage, filters in enumerate(STAGE_FILTERS, start=1):
        for b in range(1, cfg.blocks_per_stage + 1):
            p = f"s{stage}b{b}"
            strides = 2 if (stage > 1 and b == 1) else 1
            y = conv(filters, 3, strides, f"{p}_conv1")(x)
            y = bn(name=f"{p}_bn1")(y)
            y = relu(f"{p}_relu1")(y)
            y = conv(filters, 3, 1, f"{p}_conv2")(y)
            y = bn(name=f"{p}_bn2")(y)
            if cfg.skips[block]:
                shortcut = x
                if strides != 1:
                    shortcut = conv(filters, 1, strides, f"{p}_proj_conv")(x)
                    shortcut = bn(name=f"{p}_proj_bn")(shortcut)
                y = keras.layers.Add(name=f"{p}_add")([y, shortcut])
            x = relu(f"{p}_relu2")(y)
            block += 1
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = dense(NUM_CLASSES, "logits")(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{cfg.depth}")


_REGISTRY: dict[str, Callable[..., keras.Model]] = {}


def register_model(fn: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
    """Add a model factory to the registry under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_REGISTRY, key=lambda n: int(n.removeprefix("resnet")))


def create_model(
    name: str, quant: QuantSpec | str | None = None, skips: str | Sequence[bool] = "all", weight_decay: float = 5e-5
) -> keras.Model:
    """Create a registered model.

    Args:
        name: e.g. ``resnet20``; see :func:`list_models`.
        quant: fixed-point spec (``QuantSpec`` or ``"<8,3>"``) for weights and activations; None for float.
        skips: ``"all"``, ``"none"`` or one bool per residual block, input end first.
        weight_decay: L2 factor on kernels.

    Raises:
        UnknownModelError: ``name`` is not registered.
        ValueError: malformed ``skips``; ``QuantSpecError`` for an unrepresentable ``quant``.
    """
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    if isinstance(quant, str):
        quant = QuantSpec.parse(quant)
    return _REGISTRY[name](quant=quant, skips=skips, weight_decay=weight_decay)


def _make_factory(depth: int) -> Callable[..., keras.Model]:
    def factory(quant: QuantSpec | None = None, skips: str | Sequence[bool] = "all", weight_decay: float = 5e-5):
        cfg = ResNetConfig(depth, _resolve_skips(depth, skips), quant, weight_decay)
        return build_resnet(cfg, name=f"resnet{depth}")

    factory.__name__ = f"resnet{depth}"
    factory.__doc__ = f"CIFAR ResNet-{depth} ({(depth - 2) // 2} conv layers in blocks); see :func:`build_resnet`."
    return factory


for _depth in DEPTHS:
    register_model(_make_factory(_depth))
