"""CIFAR ResNet-n registry (He et al. 2016, CIFAR layout), float or QKeras-quantized, with any subset of skips.

Layout: a 3x3/16 stem, then three stages of ``k = (n - 2) / 6`` basic blocks with 16, 32 and 64 filters (the first
block of stages 2 and 3 halves the resolution), global average pooling and a 10-way dense layer that outputs
logits (softmax is applied on the host, so the hardware returns exact logits).

Shortcuts use He et al.'s option B: identity where shapes match, a 1x1 stride-2 convolution + BatchNorm where a
block halves the resolution (hls4ml maps this directly; option A's channel zero-padding has no hls4ml layer).

Each residual block's skip is in one of three modes:

* ``long``: He et al.'s skip around both convolutions, ``relu(bn2(conv2(h)) + P(x))``;
* ``short``: the variant Tailor's SkipShortener trains towards, one skip around each convolution,
  ``h = relu(bn1(conv1(x)) + P(x))``, ``relu(bn2(conv2(h)) + h)``: each skip spans one layer, so the hardware
  buffers far less of the shortcut stream;
* ``none``: no skip.

``P`` is the identity, or the 1x1 projection where the block halves the resolution; both modes use the same
projection layer (``conv1`` has the stride, so its output and ``P(x)`` have the same shape in both places).

A *gated* model carries every path of every block, each multiplied by a non-trainable 0/1 gate
(:class:`SkipGate`): SkipRemover and SkipShortener flip gates during one training run without rebuilding the
model, so the optimizer state carries on. :func:`export_clean` turns it into the equivalent model without gates
(equal outputs), which is what hls_build converts.

Layer names are stable (``s2b1_conv1``, ``s2b1_proj_conv``, ``logits``...) because hls_build configures
precisions per layer name, and weights move between gated and clean models by name.

*Folded* models (``fold_bn=True``, quantized only) train every ``conv -> BatchNormalization`` pair as one QKeras
``QConv2DBatchnorm`` named like the convolution: the kernel is scaled by ``gamma / sqrt(moving_var + eps)`` and then
quantized, and the folded bias quantized, in every training step (Jacob et al. 2018, the "ema statistics" folding:
a correction factor makes the training-time output that of batch statistics until the statistics are frozen). The
quantized folded kernel and bias are what the firmware multiplies with, so hls_build's fold after training only
copies them (nothing is rounded again): the model trained is the model deployed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from board.errors import ProjectError
from board.fixed_point import FixedPoint
from training.keras_compat import keras, tf
from training.quant import QuantSpec

DEPTHS = (8, 20, 32, 44, 56, 110)
STAGE_FILTERS = (16, 32, 64)
NUM_CLASSES = 10
INPUT_SHAPE = (32, 32, 3)
SKIP_MODES = ("long", "short", "none")


class UnknownModelError(ProjectError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class ResNetConfig:
    """Architecture of one CIFAR ResNet.

    Attributes:
        depth: n in ResNet-n; one of ``DEPTHS``.
        skips: one mode per residual block, input end first: ``long``, ``short`` or ``none`` (see the module doc).
        quant: fixed-point spec for weights, biases and activations, or None for a float model.
        weight_decay: L2 factor on conv and dense kernels (Keras adds ``weight_decay * sum(w^2)`` to the loss).
        fold_bn: train each convolution and its BatchNormalization as one ``QConv2DBatchnorm`` (quantized only).
    """

    depth: int
    skips: tuple[str, ...]
    quant: QuantSpec | None = None
    weight_decay: float = 5e-5
    fold_bn: bool = False

    def __post_init__(self) -> None:
        if self.fold_bn and self.quant is None:
            raise ValueError("fold_bn folds BatchNormalization into quantized convolutions: give a quantization spec")

    @property
    def blocks_per_stage(self) -> int:
        """K = (n - 2) / 6 basic blocks in each of the three stages."""
        return (self.depth - 2) // 6

    @property
    def num_blocks(self) -> int:
        """Residual blocks in the whole network (one skip each)."""
        return 3 * self.blocks_per_stage


def resolve_skips(depth: int, skips: str | Sequence[bool | str]) -> tuple[str, ...]:
    """Normalise ``"all"``/``"none"``/``"short"`` or one bool or mode per block into a tuple of modes."""
    n_blocks = 3 * ((depth - 2) // 6)
    if isinstance(skips, str):
        named = {"all": "long", "long": "long", "none": "none", "short": "short"}
        if skips not in named:
            raise ValueError(
                f"skips must be 'all', 'none', 'short' or a sequence of {n_blocks} modes/bools, got {skips!r}"
            )
        return (named[skips],) * n_blocks
    modes = []
    for s in skips:
        if isinstance(s, (bool, np.bool_)):
            modes.append("long" if s else "none")
        elif s in SKIP_MODES:
            modes.append(s)
        else:
            raise ValueError(f"unknown skip mode {s!r}; use one of {SKIP_MODES} or a bool")
    if len(modes) != n_blocks:
        raise ValueError(f"ResNet{depth} has {n_blocks} residual blocks; got {len(modes)} skip flags")
    return tuple(modes)


def skips_tag(skips: Sequence[str]) -> str:
    """Compact id of a skip pattern: ``""`` for all long, ``_noskip``, ``_short`` or one letter per block (L/S/N)."""
    if all(m == "long" for m in skips):
        return ""
    if all(m == "none" for m in skips):
        return "_noskip"
    if all(m == "short" for m in skips):
        return "_short"
    return "_skips" + "".join(m[0].upper() for m in skips)


class SkipGate(keras.layers.Layer):
    """Multiplies a skip path by a non-trainable 0/1 gate; flipping it changes the topology without a rebuild."""

    def __init__(self, initial: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.initial = float(initial)

    def build(self, input_shape):
        self.gate = self.add_weight(
            name="gate", shape=(), initializer=keras.initializers.Constant(self.initial), trainable=False
        )
        super().build(input_shape)

    def call(self, inputs):
        return inputs * tf.cast(self.gate, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "initial": self.initial}


def batchnorm_name(conv_name: str) -> str:
    """The BatchNormalization after a convolution: ``s1b1_conv1`` -> ``s1b1_bn1``, ``stem_conv`` -> ``stem_bn``."""
    return conv_name.replace("_conv", "_bn")


def _layers(cfg: ResNetConfig):
    """Layer factories for the float or quantized variant, so the topology is written once.

    ``conv_bn(filters, kernel, strides, name)`` returns a callable applying the convolution and its
    BatchNormalization (two layers, or one ``QConv2DBatchnorm`` named ``name`` when ``cfg.fold_bn``).
    """
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

    else:
        from qkeras import QActivation, QConv2D, QDense

        q = cfg.quant

        def conv(filters, kernel, strides, name):
            return QConv2D(
                filters, kernel, strides=strides, padding="same", use_bias=False,
                kernel_quantizer=q.weight_quantizer(), kernel_initializer="he_normal",
                kernel_regularizer=reg, name=name,
            )  # fmt: skip

        def relu(name):
            return QActivation(q.relu_quantizer(), name=name)

        def dense(units, name):
            return QDense(
                units, kernel_quantizer=q.weight_quantizer(), bias_quantizer=q.weight_quantizer(),
                kernel_regularizer=reg, name=name,
            )  # fmt: skip

    def conv_bn(filters, kernel, strides, name, first=False):
        if cfg.fold_bn:
            from qkeras import QConv2DBatchnorm

            from training.data import INPUT_FIXED_POINT

            q = cfg.quant
            fp = FixedPoint.parse(INPUT_FIXED_POINT)
            in_frac = fp.width - fp.integer if first else q.frac_bits
            # No bias of its own (BatchNormalization's beta is the bias); the folded bias gets its own quantizer.
            return QConv2DBatchnorm(
                filters, kernel, strides=strides, padding="same", use_bias=False,
                kernel_quantizer=q.folded_kernel_quantizer(first),
                bias_quantizer=q.folded_bias_quantizer(first, in_frac),
                kernel_initializer="he_normal", kernel_regularizer=reg, name=name,
            )  # fmt: skip
        c, bn = conv(filters, kernel, strides, name), keras.layers.BatchNormalization(name=batchnorm_name(name))
        return lambda x: bn(c(x))

    return conv_bn, relu, dense


def _gates_for(mode: str) -> dict[str, float]:
    return {"long": float(mode == "long"), "short1": float(mode == "short"), "short2": float(mode == "short")}


def build_resnet(cfg: ResNetConfig, name: str | None = None, gated: bool = False) -> keras.Model:
    """Build the Keras model for ``cfg``. Input: ``image`` (N, 32, 32, 3) scaled pixels; output: logits (N, 10).

    Args:
        cfg: the architecture.
        name: Keras model name (default ``resnet<depth>``).
        gated: build every skip path of every block behind a :class:`SkipGate` (``<block>_gate_long``,
            ``_gate_short1``, ``_gate_short2``), set from ``cfg.skips``; see :func:`set_skip_modes`.
    """
    conv_bn, relu, dense = _layers(cfg)
    add = keras.layers.Add
    # An Input layer literally named "input" is refused by hls4ml.
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    x = conv_bn(STAGE_FILTERS[0], 3, 1, "stem_conv", first=True)(inputs)
    x = relu("stem_relu")(x)
    block = 0
    for stage, filters in enumerate(STAGE_FILTERS, start=1):
        for b in range(1, cfg.blocks_per_stage + 1):
            p = f"s{stage}b{b}"
            mode = cfg.skips[block]
            strides = 2 if (stage > 1 and b == 1) else 1
            shortcut = x
            if strides != 1 and (gated or mode != "none"):
                shortcut = conv_bn(filters, 1, strides, f"{p}_proj_conv")(x)
            gates = _gates_for(mode)
            y = conv_bn(filters, 3, strides, f"{p}_conv1")(x)
            if gated:
                y = add(name=f"{p}_add1")([y, SkipGate(gates["short1"], name=f"{p}_gate_short1")(shortcut)])
            elif mode == "short":
                y = add(name=f"{p}_add1")([y, shortcut])
            h = relu(f"{p}_relu1")(y)
            y = conv_bn(filters, 3, 1, f"{p}_conv2")(h)
            if gated:
                long_path = SkipGate(gates["long"], name=f"{p}_gate_long")(shortcut)
                short_path = SkipGate(gates["short2"], name=f"{p}_gate_short2")(h)
                y = add(name=f"{p}_add")([y, long_path, short_path])
            elif mode == "long":
                y = add(name=f"{p}_add")([y, shortcut])
            elif mode == "short":
                y = add(name=f"{p}_add")([y, h])
            x = relu(f"{p}_relu2")(y)
            block += 1
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = dense(NUM_CLASSES, "logits")(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{cfg.depth}")


def block_names(depth: int) -> list[str]:
    """Residual block prefixes, input end first (``s1b1``, ``s1b2``, ...)."""
    k = (depth - 2) // 6
    return [f"s{stage}b{b}" for stage in (1, 2, 3) for b in range(1, k + 1)]


def get_skip_modes(model: keras.Model) -> tuple[str, ...]:
    """Read the current mode of every block of a gated model from its gates.

    Raises:
        ValueError: the model has no gates, or a block's gates mix modes (e.g. long and short both on).
    """
    depth = depth_of_model(model)
    modes = []
    for p in block_names(depth):
        try:
            g = {k: float(model.get_layer(f"{p}_gate_{k}").gate.numpy()) for k in ("long", "short1", "short2")}
        except ValueError as exc:
            raise ValueError(f"{model.name} is not a gated model (no gates for block {p})") from exc
        for mode in SKIP_MODES:
            if g == _gates_for(mode):
                modes.append(mode)
                break
        else:
            raise ValueError(f"block {p} has gates {g}, which is no single skip mode")
    return tuple(modes)


def set_skip_modes(model: keras.Model, modes: Sequence[str]) -> None:
    """Set the gates of a gated model to ``modes`` (one per block); takes effect at the next step, no rebuild."""
    names = block_names(depth_of_model(model))
    if len(modes) != len(names):
        raise ValueError(f"{model.name} has {len(names)} blocks; got {len(modes)} modes")
    for p, mode in zip(names, modes):
        for k, v in _gates_for(mode).items():
            model.get_layer(f"{p}_gate_{k}").gate.assign(v)


def depth_of_model(model: keras.Model) -> int:
    """N of a ResNet-n built here (counted from its ``*_conv2`` layers)."""
    n_blocks = len([lyr for lyr in model.layers if lyr.name.endswith("_conv2")])
    return 6 * (n_blocks // 3) + 2


#: Parameters of a convolution + BatchNormalization pair, by the end of their variable names.
_CONV_BN_PARAMS = ("kernel", "gamma", "beta", "moving_mean", "moving_variance")


def is_folded_layer(layer: keras.layers.Layer) -> bool:
    """A convolution trained with its BatchNormalization folded in (QKeras ``QConv2DBatchnorm``)."""
    return type(layer).__name__ == "QConv2DBatchnorm"


def _conv_bn_params(model: keras.Model, conv_name: str) -> dict[str, tf.Variable] | None:
    """The variables of ``conv_name`` and its BatchNormalization, folded or not; None if it has no pair."""
    layer = model.get_layer(conv_name)
    if is_folded_layer(layer):
        variables = [layer.kernel, *layer.batchnorm.weights]
    else:
        try:
            bn = model.get_layer(batchnorm_name(conv_name))
        except ValueError:
            return None
        if getattr(layer, "use_bias", False):
            return None  # a bias of its own has no place in the other form
        variables = [layer.kernel, *bn.weights]
    by_key = {v.name.split("/")[-1].split(":")[0]: v for v in variables}
    return by_key if set(_CONV_BN_PARAMS) <= set(by_key) else None


def _copy_across_folding(source: keras.Model, target: keras.Model, name: str) -> None:
    """Copy ``name``'s convolution + BatchNormalization between a folded and an unfolded model (either way)."""
    src, dst = _conv_bn_params(source, name), _conv_bn_params(target, name)
    if src is None or dst is None:
        raise ValueError(f"layer {name!r}: cannot copy between {source.name} and {target.name}: one of them has "
                         "no convolution + BatchNormalization pair there")  # fmt: skip
    for key in _CONV_BN_PARAMS:
        if tuple(src[key].shape) != tuple(dst[key].shape):
            raise ValueError(f"layer {name!r}: {key} shapes {tuple(src[key].shape)} != {tuple(dst[key].shape)}")
        dst[key].assign(src[key])


def copy_weights_by_name(source: keras.Model, target: keras.Model, skip: Sequence[str] = ()) -> int:
    """Copy every layer's weights from ``source`` into the same-named layer of ``target``, verified.

    A convolution folded with its BatchNormalization in one model (``QConv2DBatchnorm``) and a convolution followed
    by ``*_bn*`` in the other are copied as the pair (kernel, gamma, beta, moving mean and variance).

    Args:
        source: model to copy from.
        target: model to copy into.
        skip: substrings of ``target`` layer names that are left alone (e.g. ``_gate_`` of a gated student).

    Returns:
        Number of layers whose weights were copied.

    Raises:
        ValueError: a weighted layer of ``target`` has no counterpart in ``source``, or shapes differ; a silent
            partial load is exactly the failure this refuses.
    """
    copied = 0
    src = {lyr.name: lyr for lyr in source.layers}
    # BatchNormalizations that the other model folds into their convolution travel with it.
    folded_away = {batchnorm_name(lyr.name) for lyr in [*source.layers, *target.layers] if is_folded_layer(lyr)}
    for layer in target.layers:
        weights = layer.get_weights()
        if not weights or any(part in layer.name for part in skip) or layer.name in folded_away:
            continue
        if layer.name not in src:
            raise ValueError(f"layer {layer.name!r} of {target.name} has no counterpart in {source.name}")
        if is_folded_layer(layer) != is_folded_layer(src[layer.name]):
            _copy_across_folding(source, target, layer.name)
            copied += 1
            continue
        values = src[layer.name].get_weights()
        if [w.shape for w in values] != [w.shape for w in weights]:
            raise ValueError(
                f"layer {layer.name!r}: shapes {[w.shape for w in values]} != {[w.shape for w in weights]}"
            )
        layer.set_weights(values)
        copied += 1
    return copied


def export_clean(gated: keras.Model, quant: QuantSpec | None, weight_decay: float = 5e-5) -> keras.Model:
    """The model without gates that computes what ``gated`` computes with its current gates (for hls4ml).

    Args:
        gated: a model built with ``gated=True``.
        quant: its quantization spec (None for float).
        weight_decay: L2 factor to build the clean model with.
    """
    modes = get_skip_modes(gated)
    fold_bn = any(is_folded_layer(lyr) for lyr in gated.layers)
    cfg = ResNetConfig(depth_of_model(gated), modes, quant, weight_decay, fold_bn)
    clean = build_resnet(cfg, name=gated.name)
    copy_weights_by_name(gated, clean)
    return clean


_REGISTRY: dict[str, Callable[..., keras.Model]] = {}


def register_model(fn: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
    """Add a model factory to the registry under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def depth_of_name(name: str) -> int:
    """``resnet20`` -> 20.

    Raises:
        UnknownModelError: not a registered name.
    """
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return int(name.removeprefix("resnet"))


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_REGISTRY, key=lambda n: int(n.removeprefix("resnet")))


def create_model(
    name: str,
    quant: QuantSpec | str | None = None,
    skips: str | Sequence[bool | str] = "all",
    weight_decay: float = 5e-5,
    gated: bool = False,
    fold_bn: bool = False,
) -> keras.Model:
    """Create a registered model.

    Args:
        name: e.g. ``resnet20``; see :func:`list_models`.
        quant: fixed-point spec (``QuantSpec`` or ``"<8,3>"``) for weights and activations; None for float.
        skips: ``"all"`` (long skips), ``"none"``, ``"short"``, or one mode (``long``/``short``/``none``) or bool
            per residual block, input end first.
        weight_decay: L2 factor on kernels.
        gated: build the gated model (every skip path behind a 0/1 gate) for SkipRemover / SkipShortener.
        fold_bn: train each convolution with its BatchNormalization folded in (``QConv2DBatchnorm``; needs
            ``quant``).

    Raises:
        UnknownModelError: ``name`` is not registered.
        ValueError: malformed ``skips``, ``fold_bn`` without ``quant``; ``QuantSpecError`` for an unrepresentable
            ``quant``.
    """
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    if isinstance(quant, str):
        quant = QuantSpec.parse(quant)
    return _REGISTRY[name](quant=quant, skips=skips, weight_decay=weight_decay, gated=gated, fold_bn=fold_bn)


def _make_factory(depth: int) -> Callable[..., keras.Model]:
    def factory(
        quant: QuantSpec | None = None,
        skips: str | Sequence[bool | str] = "all",
        weight_decay: float = 5e-5,
        gated: bool = False,
        fold_bn: bool = False,
    ):
        cfg = ResNetConfig(depth, resolve_skips(depth, skips), quant, weight_decay, fold_bn)
        return build_resnet(cfg, name=f"resnet{depth}", gated=gated)

    factory.__name__ = f"resnet{depth}"
    factory.__doc__ = f"CIFAR ResNet-{depth} ({(depth - 2) // 2} conv layers in blocks); see :func:`build_resnet`."
    return factory


for _depth in DEPTHS:
    register_model(_make_factory(_depth))
