"""Fold BatchNormalization into the convolution (or dense layer) before it, with fixed-point weights and biases.

An unfolded BatchNormalization is a float multiply-add in Keras but a fixed-point one in the firmware, so the two
can never agree bit for bit, and in io_stream every BatchNormalization is one more pipeline stage with its own wide
FIFO. Folding removes both problems: ``conv -> BN`` becomes one ``QConv2D`` with a bias,

    W' = W * gamma / sqrt(var + eps)        b' = (b - mean) * gamma / sqrt(var + eps) + beta

where ``W`` is the kernel as the convolution's quantizer sees it. ``W'`` and ``b'`` are then rounded once, here, to
fixed-point formats derived from their values (per layer, never hand-set):

* kernel: the source quantizer's width (8 for ``<8,3>``; ``weight_bits`` for a float layer) with just enough integer
  bits for ``max |W'|``, so no weight saturates and none of the width is wasted;
* bias: the fractional bits of the accumulator (input fractional bits + kernel fractional bits), so adding it loses
  nothing, and integer bits for ``max |b'|``.

The folded weights are stored already quantized, so QKeras's quantizer leaves them unchanged and hls4ml reads the
very same values: the folded Keras model and the firmware compute the same sums exactly. Folding re-rounds the
kernel, so the folded model is a (slightly) different model: :func:`fold_batchnorm` reports what changed and the
build records the top-1 of both.

A convolution trained with its BatchNormalization already folded in (QKeras ``QConv2DBatchnorm``, ``--fold-bn`` in
training) needs none of this: at inference it computes with its quantizers applied to the folded kernel and bias,
so it becomes a ``QConv2D`` holding exactly those quantized values, in those formats, computed with the layer's own
float32 operations: the deployed model is the trained one (the build checks it with the top-1 of both).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from board.errors import ProjectError
from board.fixed_point import FixedPoint
from training.data import input_fixed_point
from training.keras_compat import keras
from training.models import SkipGate

#: Widest bias the fold writes; hls4ml's fixed-point types and the firmware engine both stay within 32 bits.
MAX_BIAS_BITS = 32
#: Narrowest integer part a folded kernel gets: the sign bit alone (ap_fixed<8,1>: |w| < 1, 7 fractional bits).
#: QKeras's quantized_bits cannot express fewer (its integer count, the sign excluded, must be >= 0).
MIN_KERNEL_INTEGER_BITS = 1

FOLDABLE = ("Conv2D", "QConv2D", "Dense", "QDense", "DepthwiseConv2D", "QDepthwiseConv2D")
#: Depthwise convolutions: kernel ``(fh, fw, channels, 1)``, quantizer ``depthwise_quantizer`` (hls4ml 1.3's
#: ``depthwise_conv_2d_cl``, one filter per channel).
DEPTHWISE = ("DepthwiseConv2D", "QDepthwiseConv2D")
#: Layers trained with their BatchNormalization folded in (their quantizers already round the folded values).
FOLDED_IN_TRAINING = ("QConv2DBatchnorm",)


class FoldError(ProjectError, ValueError):
    """A model whose BatchNormalization layers cannot be folded as asked."""


@dataclass(frozen=True)
class FoldedLayer:
    """One ``conv/dense -> BatchNormalization`` pair folded into one layer.

    Attributes:
        layer: name of the folded layer (the convolution's name; the BatchNormalization's is gone).
        batchnorm: name of the BatchNormalization folded into it.
        kernel_type: ``ap_fixed<W,I>`` of the folded kernel.
        bias_type: ``ap_fixed<W,I>`` of the folded bias.
        kernel_max_abs: ``max |W'|`` before rounding.
        kernel_rounding_error: ``max |W' - round(W')|``.
        bias_exact: the bias has all the accumulator's fractional bits (False when capped at ``MAX_BIAS_BITS``).
        in_training: folded during training (``QConv2DBatchnorm``): the types are the layer's own quantizers', and
            the kernel and bias are the values the trained model computes with.
    """

    layer: str
    batchnorm: str
    kernel_type: str
    bias_type: str
    kernel_max_abs: float
    kernel_rounding_error: float
    bias_exact: bool
    in_training: bool = False


def needs_folding(model: keras.Model) -> bool:
    """Whether ``model`` has a BatchNormalization to fold, or a layer trained with one folded in."""
    kinds = ("BatchNormalization", *FOLDED_IN_TRAINING)
    return any(type(layer).__name__ in kinds for layer in model.layers)


def integer_bits_for(max_abs: float, signed: bool = True) -> int:
    """Fewest integer bits (sign included when ``signed``) whose range holds ``max_abs``: ``ap_fixed<W, I>``'s I."""
    if max_abs <= 0:
        return 1 if signed else 0
    return int(math.floor(math.log2(max_abs))) + 1 + int(signed)


#: How a float kernel's integer bits are chosen (:func:`kernel_integer_bits`).
WEIGHT_RANGES = ("max", "mse")


def kernel_integer_bits(values: np.ndarray, bits: int, how: str = "max") -> int:
    """Integer bits (sign included) of a ``bits``-wide kernel type for ``values``, one type for the whole tensor.

    ``"max"``: enough for the largest ``|w|``, so no weight saturates. ``"mse"``: of that and one or two fewer
    (each one more fractional bit, the largest weights clipped), the one with the least squared error
    ``sum (w - q(w))^2``; ties keep the wider range. hls4ml 1.3 gives a layer's weights one type (no per-channel
    formats in io_stream), so this per-layer choice is what the firmware can take.
    """
    top = max(integer_bits_for(float(np.max(np.abs(values)))), MIN_KERNEL_INTEGER_BITS)
    if how == "max":
        return top
    if how != "mse":
        raise FoldError(f"weight range must be one of {', '.join(WEIGHT_RANGES)}, got {how!r}")
    best, best_err = top, None
    for integer in range(top, max(top - 2, MIN_KERNEL_INTEGER_BITS) - 1, -1):
        err = float(np.sum((values - _quantize(values, bits, integer).astype(np.float64)) ** 2))
        if best_err is None or err < best_err:
            best, best_err = integer, err
    return best


def _qbits_config(total: int, integer: int) -> str:
    """``quantized_bits`` for signed ``ap_fixed<total, integer>`` as QKeras parses it (it does not count the sign)."""
    return f"quantized_bits({total},{integer - 1},0,alpha=1)"


def to_quantized_entry(entry: dict[str, Any], kernel: tuple[int, int], bias: tuple[int, int]) -> None:
    """Rewrite a Conv2D/Dense (or Q-) layer's config entry, in place, as QConv2D/QDense with a bias.

    Args:
        entry: the layer's entry in a functional model config.
        kernel: ``(total, integer)`` bits of the signed kernel type.
        bias: ``(total, integer)`` bits of the signed bias type.
    """
    cfg = entry["config"]
    depthwise = entry["class_name"] in DEPTHWISE
    if depthwise:
        entry["class_name"] = "QDepthwiseConv2D"
    else:
        entry["class_name"] = "QConv2D" if "Conv2D" in entry["class_name"] else "QDense"
    entry["module"] = "qkeras.qlayers" if entry["class_name"] == "QDense" else "qkeras.qconvolutional"
    entry["registered_name"] = entry["class_name"]
    cfg["use_bias"] = True
    cfg["depthwise_quantizer" if depthwise else "kernel_quantizer"] = _qbits_config(*kernel)
    cfg["bias_quantizer"] = _qbits_config(*bias)
    # Training-time objects that make no sense on fixed weights (and QInitializer does not round-trip).
    for key in ("kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer",
                "kernel_constraint", "bias_constraint", "activity_regularizer", "depthwise_initializer",
                "depthwise_regularizer", "depthwise_constraint"):  # fmt: skip
        cfg.pop(key, None)


#: Config keys of QKeras layers that hold quantizers.
_QUANTIZER_KEYS = ("kernel_quantizer", "depthwise_quantizer", "bias_quantizer", "activation")


def _quantize(values: np.ndarray, total: int, integer: int) -> np.ndarray:
    from qkeras import quantized_bits

    q = quantized_bits(total, integer - 1, keep_negative=True, alpha=1)
    return np.asarray(q(values.astype(np.float32)), dtype=np.float32)


def quantizer_format(quantizer: Any) -> tuple[int, int, bool] | None:
    """``(bits, integer bits incl. sign, signed)`` of a QKeras ``quantized_bits``/``quantized_relu``, else None."""
    if quantizer is None:
        return None
    kind = type(quantizer).__name__
    if kind == "quantized_bits" and getattr(quantizer, "alpha", 1) in (1, 1.0, None):
        signed = bool(quantizer.keep_negative)
        return int(quantizer.bits), int(quantizer.integer) + int(signed), signed
    if kind == "quantized_relu":
        return int(quantizer.bits), int(quantizer.integer), False
    return None


def _frac_bits(fmt: tuple[int, int, bool] | None) -> int | None:
    return None if fmt is None else fmt[0] - fmt[1]


def tensor_frac_bits(model: keras.Model) -> dict[str, int | None]:
    """Fractional bits of every layer's output where the model fixes them (None: float or not a power of two).

    Follows quantizers (``QActivation``), the input (``training.data.input_fixed_point()``), exact sums (convolutions
    and dense layers with quantized kernels: input + kernel fractional bits; Add: the most of its inputs) and layers
    that only move values (padding, flatten, dropout, max pooling).
    """
    fx: dict[str, int | None] = {}
    for layer in model.layers:
        kind = type(layer).__name__
        ins = [n.name for n in _inbound_layers(layer)]
        src = [fx.get(n) for n in ins]
        if kind == "InputLayer":
            fx[layer.name] = FixedPoint.parse(input_fixed_point()).frac_bits
        elif kind == "QActivation":
            fx[layer.name] = _frac_bits(quantizer_format(layer.quantizer))
        elif kind in ("QConv2D", "QDense", "QDepthwiseConv2D", *FOLDED_IN_TRAINING):
            fw = _frac_bits(quantizer_format(kernel_quantizer(layer)))
            has_bias = layer.use_bias or kind in FOLDED_IN_TRAINING  # a folded layer always adds its folded bias
            fb = _frac_bits(quantizer_format(layer.bias_quantizer_internal)) if has_bias else 0
            ok = None not in (src[0], fw, fb)
            fx[layer.name] = max(src[0] + fw, fb) if ok else None
        elif kind in ("Add", "Concatenate"):
            fx[layer.name] = None if None in src else max(src)
        elif kind in ("ZeroPadding2D", "Flatten", "Dropout", "MaxPooling2D", "GlobalMaxPooling2D", "Reshape"):
            fx[layer.name] = src[0]
        elif kind in ("GlobalAveragePooling2D", "AveragePooling2D"):
            n = int(np.prod(layer.input_shape[1:3])) if kind.startswith("Global") else int(np.prod(layer.pool_size))
            exact = src[0] is not None and n & (n - 1) == 0
            fx[layer.name] = src[0] + int(math.log2(n)) if exact else None
        else:
            fx[layer.name] = None
    return fx


def _inbound_layers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes:
        return []
    inbound = nodes[0].inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def _consumers(config: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for entry in config["layers"]:
        for node in entry["inbound_nodes"]:
            for ref in node:
                out.setdefault(ref[0], []).append(entry["name"])
    return out


def kernel_quantizer(layer: keras.layers.Layer) -> Any:
    """A quantized layer's kernel quantizer (``depthwise_quantizer`` of a depthwise convolution), or None."""
    if type(layer).__name__ in DEPTHWISE:
        return getattr(layer, "depthwise_quantizer_internal", None)
    return getattr(layer, "kernel_quantizer_internal", None)


def _kernel_values(layer: keras.layers.Layer) -> tuple[np.ndarray, np.ndarray | None]:
    """The kernel and bias as the layer computes with them (through its quantizers, if any)."""
    kernel = (layer.depthwise_kernel if type(layer).__name__ in DEPTHWISE else layer.kernel).numpy()
    bias = layer.bias.numpy() if getattr(layer, "use_bias", False) else None
    kq = kernel_quantizer(layer)
    if kq is not None:
        kernel = np.asarray(kq(kernel))
    bq = getattr(layer, "bias_quantizer_internal", None)
    if bq is not None and bias is not None:
        bias = np.asarray(bq(bias))
    return kernel.astype(np.float64), None if bias is None else bias.astype(np.float64)


def _trained_fold(layer: keras.layers.Layer) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A ``QConv2DBatchnorm``'s float folded kernel and bias, and both quantized, exactly as its inference computes.

    The same float32 TensorFlow operations in the same order as QKeras's ``call`` with ``training=False`` (moving
    statistics, no correction factor), so the quantizers see bit-identical inputs and round them identically.
    """
    from training.keras_compat import tf

    bn = layer.batchnorm
    inv = tf.math.rsqrt(bn.moving_variance + bn.epsilon)
    if bn.gamma is not None:
        inv *= bn.gamma
    bias = layer.bias if layer.use_bias else 0
    folded_bias = inv * (bias - bn.moving_mean)
    if bn.beta is not None:
        folded_bias += bn.beta
    folded_kernel = inv * layer.kernel
    kq, bq = layer.kernel_quantizer_internal, layer.bias_quantizer_internal
    if quantizer_format(kq) is None or quantizer_format(bq) is None:
        raise FoldError(
            f"{layer.name!r} was trained with BatchNormalization folded in but its kernel quantizer {kq} or bias "
            f"quantizer {bq} has no fixed-point format (quantized_bits with alpha=1)"
        )
    q_kernel, q_bias = np.asarray(kq(folded_kernel), np.float32), np.asarray(bq(folded_bias), np.float32)
    return folded_kernel.numpy(), folded_bias.numpy(), q_kernel, q_bias


def _qconv2d_keys() -> set[str]:
    from qkeras import QConv2D

    return set(QConv2D(1, 1).get_config())


def fold_batchnorm(
    model: keras.Model, weight_bits: int | None = None, name: str | None = None, weight_range: str = "max"
) -> tuple[keras.Model, list[FoldedLayer]]:
    """Fold every ``Conv2D/QConv2D/Dense/QDense -> BatchNormalization`` pair into one quantized layer.

    A ``QConv2DBatchnorm`` (trained with its BatchNormalization folded in) becomes a ``QConv2D`` holding the
    quantized folded kernel and bias it computes with (see the module doc).

    Args:
        model: a functional Keras model (QKeras layers allowed).
        weight_bits: kernel width for layers without a kernel quantizer (float models); quantized layers keep the
            width of their quantizer. None: 8.
        name: name of the folded model (default: the source's).
        weight_range: integer bits of a float layer's folded kernel (:func:`kernel_integer_bits`); a quantized
            layer's always hold its largest folded weight.

    Returns:
        The folded model (a new model; ``model`` is untouched) and one :class:`FoldedLayer` per fold. A model
        without BatchNormalization comes back rebuilt but equal, with an empty list.

    Raises:
        FoldError: a BatchNormalization that follows a foldable layer whose output also feeds other layers (the
            fold would change what they see), or a foldable layer whose input has no fixed fractional bits.
    """
    config = copy.deepcopy(model.get_config())
    consumers = _consumers(config)
    by_name = {entry["name"]: entry for entry in config["layers"]}
    fx = tensor_frac_bits(model)
    new_weights: dict[str, list[np.ndarray]] = {}
    folded: list[FoldedLayer] = []
    renames: dict[str, str] = {}
    drop: set[str] = set()
    conv_keys: set[str] | None = None
    for entry in config["layers"]:
        if entry["class_name"] in FOLDED_IN_TRAINING:
            layer = model.get_layer(entry["name"])
            w_fold, b_fold, w_q, b_q = _trained_fold(layer)
            kfmt = quantizer_format(layer.kernel_quantizer_internal)
            bfmt = quantizer_format(layer.bias_quantizer_internal)
            conv_keys = conv_keys or _qconv2d_keys()
            # The BatchNormalization's own keys (axis, momentum, ...) mean nothing to a QConv2D.
            entry["config"] = {k: v for k, v in entry["config"].items() if k in conv_keys}
            to_quantized_entry(entry, kfmt[:2], bfmt[:2])
            new_weights[entry["name"]] = [w_q, b_q]
            folded.append(
                FoldedLayer(
                    layer=entry["name"],
                    batchnorm=f"{entry['name']} (QConv2DBatchnorm)",
                    kernel_type=f"ap_fixed<{kfmt[0]},{kfmt[1]}>",
                    bias_type=f"ap_fixed<{bfmt[0]},{bfmt[1]}>",
                    kernel_max_abs=float(np.max(np.abs(w_fold))),
                    kernel_rounding_error=float(np.max(np.abs(w_fold - w_q))),
                    bias_exact=True,
                    in_training=True,
                )
            )
            continue
        if entry["class_name"] != "BatchNormalization":
            continue
        refs = [ref for node in entry["inbound_nodes"] for ref in node]
        src = by_name.get(refs[0][0]) if len(refs) == 1 else None
        if src is None or src["class_name"] not in FOLDABLE:
            continue  # a BatchNormalization after something else stays (hls4ml implements it; not bit-exact)
        if consumers.get(src["name"], []) != [entry["name"]]:
            raise FoldError(
                f"cannot fold {entry['name']!r} into {src['name']!r}: {src['name']!r} also feeds "
                f"{[c for c in consumers[src['name']] if c != entry['name']]}"
            )
        layer, bn = model.get_layer(src["name"]), model.get_layer(entry["name"])
        in_frac = fx.get(_inbound_layers(layer)[0].name)
        if in_frac is None:
            raise FoldError(
                f"cannot fold {bn.name!r} into {layer.name!r}: its input {_inbound_layers(layer)[0].name!r} has no "
                "fixed-point format (quantize the activations first)"
            )
        kernel, bias = _kernel_values(layer)
        axis = bn.axis[0] if isinstance(bn.axis, (list, tuple)) else bn.axis
        if axis not in (-1, len(bn.input_shape) - 1):
            raise FoldError(f"{bn.name!r} normalizes axis {axis}; only the channel (last) axis can be folded")
        n_chan = int(bn.moving_mean.shape[0])
        gamma = bn.gamma.numpy() if bn.scale else np.ones(n_chan)
        beta = bn.beta.numpy() if bn.center else np.zeros(n_chan)
        inv = gamma.astype(np.float64) / np.sqrt(bn.moving_variance.numpy().astype(np.float64) + bn.epsilon)
        # A depthwise kernel is (fh, fw, channels, 1): its channels are the third axis.
        w_fold = kernel * (inv[:, None] if layer.__class__.__name__ in DEPTHWISE else inv)
        b_fold = ((bias if bias is not None else 0.0) - bn.moving_mean.numpy().astype(np.float64)) * inv + beta

        src_fmt = quantizer_format(kernel_quantizer(layer))
        bits = src_fmt[0] if src_fmt else (weight_bits or 8)
        w_int = kernel_integer_bits(w_fold, bits, weight_range if src_fmt is None else "max")
        w_q = _quantize(w_fold, bits, w_int)
        b_frac = in_frac + (bits - w_int)
        b_int = max(integer_bits_for(float(np.max(np.abs(b_fold)))), 1)
        b_bits = min(b_int + b_frac, MAX_BIAS_BITS)
        b_q = _quantize(b_fold, b_bits, b_int)

        to_quantized_entry(src, (bits, w_int), (b_bits, b_int))
        new_weights[src["name"]] = [w_q, b_q]
        renames[entry["name"]] = src["name"]
        drop.add(entry["name"])
        folded.append(
            FoldedLayer(
                layer=src["name"],
                batchnorm=entry["name"],
                kernel_type=f"ap_fixed<{bits},{w_int}>",
                bias_type=f"ap_fixed<{b_bits},{b_int}>",
                kernel_max_abs=float(np.max(np.abs(w_fold))),
                kernel_rounding_error=float(np.max(np.abs(w_fold - w_q))),
                bias_exact=b_bits == b_int + b_frac,
            )
        )

    config["layers"] = [e for e in config["layers"] if e["name"] not in drop]
    for entry in config["layers"]:
        # QKeras parses quantizers given as strings; a live config's dicts do not deserialize outside load_qmodel.
        if entry["class_name"].startswith("Q") and entry["name"] not in new_weights:
            layer = model.get_layer(entry["name"])
            for key in _QUANTIZER_KEYS:
                q = getattr(layer, "quantizer" if key == "activation" else f"{key}_internal", None)
                if isinstance(entry["config"].get(key), dict) and q is not None:
                    entry["config"][key] = str(q)
    for entry in config["layers"]:
        for node in entry["inbound_nodes"]:
            for ref in node:
                ref[0] = renames.get(ref[0], ref[0])
    config["output_layers"] = [[renames.get(r[0], r[0]), *r[1:]] for r in config["output_layers"]]
    if name:
        config["name"] = name
    return rebuild(config, model, new_weights), folded


def rebuild(
    config: dict[str, Any], source: keras.Model, new_weights: dict[str, list[np.ndarray]] | None = None
) -> keras.Model:
    """A model from a rewritten functional ``config``: ``new_weights`` where given, else the source's by name."""
    from qkeras.utils import _add_supported_quantized_objects

    custom: dict[str, Any] = {"SkipGate": SkipGate}
    _add_supported_quantized_objects(custom)
    out = keras.Model.from_config(config, custom_objects=custom)
    new_weights = new_weights or {}
    for layer in out.layers:
        if layer.name in new_weights:
            layer.set_weights(new_weights[layer.name])
        elif layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
    return out
