"""Bring your own model: post-training fixed-point quantization of a float Keras CNN for the CIFAR-10 overlay.

A float Keras model (``.h5`` or ``.keras``, made anywhere, not QKeras) becomes a QKeras model with the same graph,
which then goes through the same conversion, bit-accuracy gate and bundle as this project's own models
(``python -m hls_build import`` then ``bundle``). Formats are chosen per layer, never hand-set:

* ReLU outputs: ``activation_bits`` wide, unsigned, with integer bits for the largest value seen on calibration
  images (training images, not test images); larger values saturate;
* kernels: ``weight_bits`` wide with integer bits for the layer's largest ``|w|`` (BatchNormalization is folded in
  first, see ``hls_build.fold``);
* biases: the accumulator's fractional bits, so adding them is exact;
* sums (convolutions, dense, Add, average pooling): exact, derived by ``hls_build.precision``.

Supported layers: see :data:`SUPPORTED`. A SeparableConv2D is split into a DepthwiseConv2D and a 1x1 Conv2D first
(:func:`_split_separable`, as hls4ml does); Dropout and a final softmax are removed (the overlay streams logits;
argmax is unchanged).

The model's own input is ``(pixel / input_scale - mean[c]) / std[c]`` (:class:`InputPreprocessing`). The overlay
streams ``pixel / 256`` exactly (``ap_ufixed<8,0>``, the uint8 pixel itself), and the per-channel gain
``256 / (input_scale * std[c])`` and offset are folded into the first layer, which is exact for a 'valid'
convolution with nothing padding the image. Where the image is zero-padded first (a 'same' convolution, or a
ZeroPadding2D before it), the model pads with its own zero, the mean pixel: folding the mean into the bias would pad
with pixel 0 instead. There the mean is subtracted before the accelerator instead (:func:`input_stream`): the
overlay streams ``pixel / 256 - mean[c] * input_scale / 256``, quantized to the input type's LSB (a signed 16-bit
type, 2^-15 for means within one pixel range; one table lookup per pixel and channel on the board), and only the
gain, which commutes with zero padding, goes into the weights.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from board.errors import ProjectError
from hls_build.fold import (
    WEIGHT_RANGES,
    _inbound_layers,
    _quantize,
    fold_batchnorm,
    integer_bits_for,
    kernel_integer_bits,
    rebuild,
    tensor_frac_bits,
    to_quantized_entry,
)
from training.keras_compat import keras

SUPPORTED = (
    "InputLayer, Conv2D (any stride, padding same/valid), DepthwiseConv2D and SeparableConv2D (depth_multiplier 1, "
    "any stride, padding same/valid), Dense, BatchNormalization (after Conv2D/DepthwiseConv2D/SeparableConv2D/Dense), "
    "ReLU, "
    "Activation relu/linear/softmax (softmax last only), Add, Concatenate (channels), MaxPooling2D, AveragePooling2D "
    "(pool area a power of two), GlobalMaxPooling2D, GlobalAveragePooling2D (H*W a power of two), Flatten, Reshape, "
    "ZeroPadding2D, Dropout"
)
_PASS_THROUGH = ("Dropout",)
#: Layers kept as they are: they move, pick, pad, join or average values the quantizers already fixed.
_KEPT = ("InputLayer", "BatchNormalization", "Add", "Concatenate", "MaxPooling2D", "AveragePooling2D",
         "GlobalMaxPooling2D", "GlobalAveragePooling2D", "Flatten", "Reshape", "ZeroPadding2D")  # fmt: skip
#: What to do instead, for layers users often have that this import refuses.
_ADVICE = {
    "DepthwiseConv1D": "the overlay streams 2-D images; use DepthwiseConv2D",
    "SeparableConv1D": "the overlay streams 2-D images; use SeparableConv2D",
    "LeakyReLU": "a float slope cannot be computed exactly in fixed point; use ReLU",
    "PReLU": "a learned float slope cannot be computed exactly in fixed point; use ReLU",
    "ELU": "exponential activations have no exact fixed-point form; use ReLU",
    "Rescaling": "remove it and give its scale with --input-scale (and --input-mean/--input-std)",
    "Normalization": "remove it and give its statistics with --input-mean/--input-std",
}
CALIBRATIONS = ("max", "percentile")
#: ``--finetune-epochs auto``: this many epochs, run only when the quantization loses more than
#: :data:`AUTO_FINETUNE_THRESHOLD` points of top-1 on the held-out training images.
AUTO_FINETUNE_EPOCHS = 2
AUTO_FINETUNE_THRESHOLD = 1.0
#: Training images held out from calibration and fine-tuning: they choose between options and decide ``auto``.
HELDOUT_IMAGES = 2000
#: What ``ptq_report.json`` says about per-channel weight formats (the issue asks for them "where hls4ml allows").
PER_CHANNEL_NOTE = (
    "not available: hls4ml 1.3 gives each layer's weights one fixed-point type (the weight_t of its config struct, "
    "io_stream and io_parallel alike); per-channel power-of-two scales (QKeras alpha='auto_po2') become an extra "
    "ApplyAlpha scaling layer, outside this flow's exact types and fast engine. Offered instead: per-layer integer "
    "bits from the largest weight or the least squared error (--weight-range max|mse|best)"
)
#: Convolutions with a kernel the import quantizes (Dense too); SeparableConv2D is split first (see
#: :func:`_split_separable`).
_KERNEL_LAYERS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")


class ByoModelError(ProjectError, ValueError):
    """A model this import cannot take: not float Keras, not 32x32x3, or a layer the overlay does not support."""


@dataclass
class InputPreprocessing:
    """How the model's own input is made from a uint8 pixel: ``(pixel / scale - mean[c]) / std[c]``.

    The overlay streams ``pixel / 256``; :func:`quantize_float_model` folds the difference into the first layers.
    """

    scale: float = 255.0
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ByoModelError(f"input scale must be a positive number (pixel / scale), got {self.scale}")
        for what, v in (("mean", self.mean), ("std", self.std)):
            if v is not None and (len(v) != 3 or not all(math.isfinite(float(c)) for c in v)):
                raise ByoModelError(f"input {what} needs 3 finite numbers (R,G,B), got {v}")
        if self.std is not None and min(float(c) for c in self.std) <= 0:
            raise ByoModelError(f"input std must be positive, got {self.std}")

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NHWC pixels -> the model's own float32 input."""
        x = pixels.astype(np.float32) / np.float32(self.scale)
        if self.mean is not None:
            x = x - np.asarray(self.mean, np.float32)
        if self.std is not None:
            x = x / np.asarray(self.std, np.float32)
        return x.astype(np.float32)

    def channel_gain_offset(self) -> tuple[np.ndarray, np.ndarray]:
        """Per channel ``(g, o)`` with model input ``= g * (pixel / 256) + o``."""
        std = np.asarray(self.std if self.std is not None else (1.0, 1.0, 1.0), np.float64)
        mean = np.asarray(self.mean if self.mean is not None else (0.0, 0.0, 0.0), np.float64)
        return 256.0 / (self.scale * std), -mean / std

    def to_dict(self) -> dict[str, Any]:
        """As recorded in ``ptq_report.json``, ``config.json`` and the bundle manifest."""
        return {"formula": "(pixel / scale - mean[c]) / std[c]", "scale": self.scale,
                "mean": None if self.mean is None else [float(c) for c in self.mean],
                "std": None if self.std is None else [float(c) for c in self.std]}  # fmt: skip


@dataclass
class PtqReport:
    """What the quantization chose and what it cost.

    Attributes:
        source: the model file.
        input_scale: the model's own input scaling (pixel / input_scale).
        weight_bits, activation_bits: widths used.
        calibration_images: training images the activation ranges were measured on.
        activations: layer -> ``{"type", "calibration_max", "range"}`` per quantized ReLU.
        kernels: layer -> kernel and bias types.
        removed: layers dropped (Dropout, linear activations, the final softmax).
        top1_float, top1_quantized, agreement: on ``test_images`` CIFAR-10 test images.
        input_preprocessing: the model's own input (:class:`InputPreprocessing`), folded into ``input_folded_into``.
        calibration: ``"max"`` or ``"percentile"`` (of each ReLU's outputs on the calibration images).
        percentile: the percentile used with ``"percentile"``.
        options: per calibration option tried, top-1 on held-out training images and on the test images.
        finetune_epochs: quantization-aware fine-tuning epochs run after the quantization (0: none).
        top1_float_input_folded: top-1 of the float model with the input preprocessing folded in, on the stream
            (equal to ``top1_float`` but for the mean's rounding to the stream's LSB, see ``input_stream``).
        split: each SeparableConv2D -> the depthwise and 1x1 convolutions it became (:func:`_split_separable`).
        weight_range: how the kernels' integer bits were chosen (``hls_build.fold.kernel_integer_bits``).
        top1_float_heldout_train: the float model's top-1 on the held-out training images (``options`` compare
            with it: ``loss_points_heldout``).
        finetune: what fine-tuning was asked (``requested``: epochs or ``"auto"``), whether it ran and why, and
            top-1 before and after on the held-out training and the test images.
        per_channel: why weights are not quantized per channel (:data:`PER_CHANNEL_NOTE`).
        input_stream: what the overlay streams (:meth:`InputStream.to_dict`): whether the mean is subtracted before
            the accelerator, the stream's type and per-channel offset, what was folded, and how far the quantized
            mean is from the user's.
    """

    source: str
    input_scale: float
    weight_bits: int
    activation_bits: int
    calibration_images: int
    activations: dict[str, dict[str, Any]] = field(default_factory=dict)
    kernels: dict[str, dict[str, str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    top1_float: float | None = None
    top1_quantized: float | None = None
    agreement: float | None = None
    test_images: int = 0
    input_preprocessing: dict[str, Any] = field(default_factory=dict)
    input_folded_into: list[str] = field(default_factory=list)
    calibration: str = "max"
    percentile: float | None = None
    options: list[dict[str, Any]] = field(default_factory=list)
    finetune_epochs: int = 0
    top1_before_finetune: float | None = None
    top1_float_input_folded: float | None = None
    split: dict[str, list[str]] = field(default_factory=dict)
    weight_range: str = "max"
    top1_float_heldout_train: float | None = None
    finetune: dict[str, Any] = field(default_factory=dict)
    per_channel: str = ""
    input_stream: dict[str, Any] = field(default_factory=dict)


def load_float_model(path: str | Path) -> keras.Model:
    """Read a float Keras model file and check that the overlay can take it.

    Raises:
        ByoModelError: unreadable, QKeras, input not 32x32x3, output not 10 classes, or an unsupported layer.
    """
    model = load_model_file(path)
    check_float_model(model)
    return model


def load_model_file(path: str | Path) -> keras.Model:
    """Read a model file (Keras ``.h5``/``.keras``, QKeras layers allowed; or ``.onnx``), without checking it.

    Raises:
        ByoModelError: no such file, or not a model Keras (tf-keras, with QKeras's objects) can read.
    """
    from qkeras.utils import _add_supported_quantized_objects

    path = Path(path)
    if not path.is_file():
        raise ByoModelError(f"{path}: no such model file")
    if path.suffix.lower() == ".onnx":
        from hls_build.onnx_import import onnx_to_keras

        return onnx_to_keras(path)  # an NCHW (PyTorch) export, translated into the same float Keras model
    from hls_build.keras3_bridge import is_keras3_file, load_keras3_model

    if path.suffix.lower() == ".keras" and is_keras3_file(path):
        return load_keras3_model(path)  # written by Keras 3: rebuilt with tf-keras layers, same weights
    custom: dict[str, Any] = {}
    _add_supported_quantized_objects(custom)
    try:
        return keras.models.load_model(path, custom_objects=custom, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file; say which file and why.
        raise ByoModelError(f"{path}: not a readable Keras model ({type(exc).__name__}: {exc})") from exc


def is_qkeras(model: keras.Model) -> bool:
    """Whether the model has QKeras layers (it is imported with its quantizers, no post-training quantization)."""
    return any(type(layer).__name__.startswith("Q") for layer in model.layers)


def _pool_ok(layer: keras.layers.Layer) -> str | None:
    """Why a pooling layer cannot be taken (None: it can)."""
    pool, strides = tuple(layer.pool_size), tuple(layer.strides)
    if layer.padding != "valid":
        h, w = layer.input_shape[1:3]
        if not (pool == strides and h % pool[0] == 0 and w % pool[1] == 0):
            return "padding 'same' that pads (hls4ml pools without padding); use padding='valid'"
    if type(layer).__name__ == "AveragePooling2D":
        n = pool[0] * pool[1]
        if n & (n - 1):
            return f"averages {n} values; only a power of two divides exactly in fixed point"
    return None


def _check_cifar10_io(model: keras.Model) -> None:
    """Refuse a model whose input is not a 32x32x3 image or whose output is not 10 classes."""
    shape = tuple(model.input_shape[1:])
    if shape != (32, 32, 3):
        raise ByoModelError(f"model input is {shape}; the CIFAR-10 overlay streams 32x32x3 images")
    if model.output_shape[-1] != 10:
        raise ByoModelError(f"model has {model.output_shape[-1]} outputs; CIFAR-10 has 10 classes")


def check_float_model(model: keras.Model) -> None:
    """Refuse what the overlay cannot run, naming the layer and what to do (see :data:`SUPPORTED`)."""
    if not isinstance(model, keras.Model) or not getattr(model, "_is_graph_network", False):
        raise ByoModelError("only functional or Sequential Keras models can be imported")
    _check_cifar10_io(model)
    last = model.layers[-1]
    for layer in model.layers:
        kind = type(layer).__name__
        if kind.startswith("Q"):
            raise ByoModelError(
                f"{layer.name}: {kind} is a QKeras layer; a QKeras model is imported as trained, with its "
                "quantizers (`python -m hls_build import` does so by itself; see import_qkeras_model)"
            )
        act = getattr(layer, "activation", None)
        act_name = getattr(act, "__name__", str(act)) if act is not None else None
        if kind in _KERNEL_LAYERS:
            ok = act_name in ("linear", "relu") or (act_name == "softmax" and layer is last)
            if not ok:
                raise ByoModelError(f"{layer.name}: activation {act_name!r} is not supported; supported: {SUPPORTED}")
            if kind != "Dense" and (tuple(layer.dilation_rate) != (1, 1) or getattr(layer, "groups", 1) != 1):
                raise ByoModelError(f"{layer.name}: dilated or grouped convolutions are not supported; use {kind} "
                                    "with dilation_rate=1, groups=1")  # fmt: skip
            _check_depth_multiplier(layer)
            if kind == "Dense" and len(layer.input_shape) != 2:
                raise ByoModelError(f"{layer.name}: a Dense layer on a {len(layer.input_shape) - 1}-D input; "
                                    "Flatten (or pool) before it")  # fmt: skip
        elif kind == "Activation":
            if act_name not in ("relu", "linear") and not (act_name == "softmax" and layer is last):
                raise ByoModelError(f"{layer.name}: activation {act_name!r} is not supported; supported: {SUPPORTED}")
        elif kind == "ReLU":
            if layer.max_value is not None or float(layer.negative_slope) != 0 or float(layer.threshold) != 0:
                raise ByoModelError(f"{layer.name}: only a plain ReLU is supported (no max_value, slope or threshold: "
                                    "hls4ml's quantized ReLU saturates at a power of two); use ReLU()")  # fmt: skip
        elif kind == "Softmax":
            if layer is not last:
                raise ByoModelError(f"{layer.name}: softmax is supported only as the last layer")
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            why = _pool_ok(layer)
            if why:
                raise ByoModelError(f"{layer.name}: {kind} {why}")
        elif kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            if getattr(layer, "keepdims", False):
                raise ByoModelError(f"{layer.name}: keepdims=True is not supported; use the default")
            n = int(np.prod(layer.input_shape[1:3]))
            if kind == "GlobalAveragePooling2D" and n & (n - 1):
                raise ByoModelError(f"{layer.name}: averages {n} values; only a power of two divides exactly in fixed "
                                    "point (pool a 2^k x 2^l map, e.g. after 'valid' or strided layers)")  # fmt: skip
        elif kind == "Concatenate":
            if layer.axis not in (-1, len(layer.input_shape[0]) - 1):
                raise ByoModelError(f"{layer.name}: Concatenate on axis {layer.axis}; only the channel (last) axis")
        elif kind == "BatchNormalization":
            src = _inbound_layers(layer)
            act = getattr(src[0], "activation", None) if len(src) == 1 else None
            if act is not None and getattr(act, "__name__", "linear") != "linear":
                raise ByoModelError(f"{layer.name}: BatchNormalization after {src[0].name}'s activation cannot be "
                                    "folded into it; put the activation after the BatchNormalization")  # fmt: skip
            if len(src) != 1 or type(src[0]).__name__ not in _KERNEL_LAYERS:
                raise ByoModelError(f"{layer.name}: BatchNormalization must follow a Conv2D, DepthwiseConv2D, "
                                    "SeparableConv2D or Dense layer (it is folded into it); a free-standing one has no "
                                    "exact fixed-point form")  # fmt: skip
        elif kind not in (*_KEPT, *_PASS_THROUGH):
            advice = _ADVICE.get(kind, f"supported: {SUPPORTED}")
            raise ByoModelError(f"{layer.name}: {kind} is not supported by the overlay; {advice}")


def _check_depth_multiplier(layer: keras.layers.Layer) -> None:
    """Refuse a depthwise or separable convolution with ``depth_multiplier != 1``, saying why and what to do."""
    mult = getattr(layer, "depth_multiplier", 1)
    if mult != 1:
        raise ByoModelError(
            f"{layer.name}: {type(layer).__name__} with depth_multiplier {mult}; hls4ml 1.3's streaming depthwise "
            "convolution computes one filter per channel (depth_multiplier=1): use depth_multiplier=1 and a 1x1 "
            "Conv2D after it for more channels"
        )


# ------------------------------------------------------------------------------------------------ graph surgery
def _functional_config(model: keras.Model) -> dict[str, Any]:
    if isinstance(model, keras.Sequential):
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    return copy.deepcopy(model.get_config())


def _qrelu_entry(name: str, source: str, bits: int, integer: int) -> dict[str, Any]:
    return {
        "class_name": "QActivation",
        "name": name,
        "config": {
            "name": name,
            "trainable": False,
            "dtype": "float32",
            "activation": f"quantized_relu({bits},{integer})",
        },  # fmt: skip
        "inbound_nodes": [[[source, 0, 0, {}]]],
    }


def _calibration_ranges(
    model: keras.Model, names: list[str], x: np.ndarray, calibration: str, percentile: float
) -> dict[str, float]:
    """Each named layer's output range on calibration images: its maximum, or a percentile of its positive values."""
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    outs = probe.predict(x, batch_size=250, verbose=0)
    outs = outs if isinstance(outs, list) else [outs]
    if calibration == "max":
        return {n: float(np.max(o)) for n, o in zip(names, outs)}
    # Zeros (every negative input) would pull the percentile down: the ReLU's range is that of its positive outputs.
    return {n: float(np.percentile(o[o > 0], percentile)) if np.any(o > 0) else 0.0 for n, o in zip(names, outs)}


def _image_reader_paths(model: keras.Model) -> list[tuple[keras.layers.Layer, bool]]:
    """The layers that compute on the image first, each with whether a ZeroPadding2D lies on its way.

    A layer computes on the image first when it is reached from the input through ZeroPadding2D layers only.
    """
    found, pending = [], [(model.layers[0].name, False)]
    while pending:
        name, padded = pending.pop()
        for layer in model.layers:
            if name in [lyr.name for lyr in _inbound_layers(layer)]:
                if type(layer).__name__ == "ZeroPadding2D":
                    pending.append((layer.name, True))
                else:
                    found.append((layer, padded))
    return found


def _image_readers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers that compute on the image first: reached from the input through ZeroPadding2D only."""
    return [layer for layer, _ in _image_reader_paths(model)]


def _pads_image(model: keras.Model) -> bool:
    """Whether the image is zero-padded before the first layer computes on it (ZeroPadding2D, or 'same' k > 1)."""
    return any(
        padded or (getattr(layer, "padding", "valid") == "same" and max(getattr(layer, "kernel_size", (1, 1))) > 1)
        for layer, padded in _image_reader_paths(model)
    )


@dataclass
class InputStream:
    """What the overlay streams for a model's own input, and what is folded into its first layers.

    Attributes:
        fixed_point: the input stream's type (None: this project's ``ap_ufixed<8,0>``, pixel / 256).
        preprocessing: the manifest's ``preprocessing`` (``input_offset`` per channel when the mean is subtracted).
        gain, offset: per channel, folded into the first layers: model input ``= gain[c] * stream + offset[c]``.
        mean_subtracted: the mean is subtracted before the accelerator (the image is zero-padded first).
        mean_quantized: the mean the stream subtracts (the user's, rounded to the stream's LSB), in the user's units.
        mean_error: ``mean_quantized - mean``, in the user's units (pixel / scale).
    """

    fixed_point: str | None
    preprocessing: dict[str, Any]
    gain: np.ndarray
    offset: np.ndarray
    mean_subtracted: bool = False
    mean_quantized: list[float] | None = None
    mean_error: list[float] | None = None

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NHWC pixels -> the stream's float32 values (what the imported model takes)."""
        from board.preprocess import Preprocessing

        return Preprocessing.from_dict(self.preprocessing).to_float(pixels)

    def to_dict(self) -> dict[str, Any]:
        """As recorded in ``ptq_report.json`` (``input_stream``)."""
        return {"mean_subtracted_before_accelerator": self.mean_subtracted,
                "input_fixed_point": self.fixed_point or "ap_ufixed<8,0>",
                "input_offset": self.preprocessing["input_offset"],
                "folded_gain": [float(g) for g in self.gain], "folded_offset": [float(o) for o in self.offset],
                "mean_quantized": self.mean_quantized, "mean_error": self.mean_error}  # fmt: skip


#: Width of the input stream when the mean is subtracted before the accelerator (the container is int16 anyway).
STREAM_BITS = 16


def input_stream(model: keras.Model, pre: InputPreprocessing) -> InputStream:
    """How the overlay streams this model's input (see the module doc).

    Without a mean, or when nothing pads the image before its first layer, the stream stays pixel / 256 and the
    whole affine map is folded in (exact). Otherwise the stream is ``pixel / 256 + b[c]``, ``b = -mean * scale /
    256`` rounded to the LSB of the narrowest signed :data:`STREAM_BITS`-bit type (at least 8 fractional bits, so
    pixel / 256 stays exact) that holds every ``pixel / 256 + b``; every code is then exact.

    Raises:
        ByoModelError: a mean so large that no such type holds the stream.
    """
    from training.data import preprocessing_spec

    gain, offset = pre.channel_gain_offset()
    if pre.mean is None or not any(float(m) for m in pre.mean) or not _pads_image(model):
        return InputStream(None, preprocessing_spec(), gain, offset)
    b = -np.asarray(pre.mean, np.float64) * pre.scale / 256.0
    for integer in range(1, STREAM_BITS - 8 + 1):
        frac = STREAM_BITS - integer
        b_q = np.round(b * 2.0**frac) / 2.0**frac
        lo, hi = float(np.min(b_q)), float(np.max(b_q)) + 255 / 256
        if -(2.0 ** (integer - 1)) <= lo and hi <= 2.0 ** (integer - 1) - 2.0**-frac:
            break
    else:
        raise ByoModelError(
            f"input mean {list(pre.mean)} at scale {pre.scale:g} is {float(np.max(np.abs(b))) * 256:g} pixels: "
            f"no signed {STREAM_BITS}-bit stream holds pixel - mean; give the mean in the model's units "
            "(pixel / scale)"
        )
    spec = {**preprocessing_spec(), "input_offset": [float(v) for v in b_q]}
    mean_q = -b_q * 256.0 / pre.scale
    error = mean_q - np.asarray(pre.mean, np.float64)
    return InputStream(f"ap_fixed<{STREAM_BITS},{integer}>", spec, gain, np.zeros(3), True,
                       [float(v) for v in mean_q], [float(v) for v in error])  # fmt: skip


def _fold_input(
    model: keras.Model, pre: InputPreprocessing, report: PtqReport, stream: InputStream | None = None
) -> keras.Model:
    """Fold the model's own input preprocessing into the layers that read the image (see the module doc).

    The overlay's input is ``s = pixel / 256`` (plus ``b[c]`` when ``stream`` subtracts the mean); the model's is
    ``g[c] * s + o[c]`` per channel. A convolution (or dense layer) of that is one with kernel ``W * g[c]`` and bias
    ``b + sum W * o[c]``. The gain commutes with zero padding; the offset does not (a zero-padding convolution would
    pad with ``-o/g`` in the model's units instead of 0), so it is folded only where nothing pads the image, and is
    0 where the stream subtracts the mean (:func:`input_stream`).
    """
    gain, offset = (stream.gain, stream.offset) if stream is not None else pre.channel_gain_offset()
    if np.all(gain == 1.0) and np.all(offset == 0.0):
        return model
    config = copy.deepcopy(model.get_config())
    weights: dict[str, list[np.ndarray]] = {}
    for layer in _image_readers(model):
        kind = type(layer).__name__
        if kind not in ("Conv2D", "Dense", "DepthwiseConv2D"):
            raise ByoModelError(
                f"{layer.name}: the image goes into a {kind}; input preprocessing can be folded only into a Conv2D, "
                "DepthwiseConv2D (or Dense) that reads the image (through ZeroPadding2D at most)"
            )
        w = layer.get_weights()
        kernel = w[0].astype(np.float64)
        n_out = kernel.shape[2] if kind == "DepthwiseConv2D" else kernel.shape[-1]
        bias = w[1].astype(np.float64) if layer.use_bias else np.zeros(n_out)
        if kind == "DepthwiseConv2D":  # kernel (fh, fw, 3, 1): output channel c reads input channel c only
            k_new = kernel * gain[None, None, :, None]
            b_new = bias + np.einsum("hwc,c->c", kernel[..., 0], offset)
        elif kind == "Conv2D":
            k_new = kernel * gain[None, None, :, None]
            b_new = bias + np.einsum("hwco,c->o", kernel, offset)
        else:  # a Dense on a flattened image: channel = index % 3
            g, o = np.tile(gain, kernel.shape[0] // 3), np.tile(offset, kernel.shape[0] // 3)
            k_new, b_new = kernel * g[:, None], bias + o @ kernel
        entry = next(e for e in config["layers"] if e["name"] == layer.name)
        entry["config"]["use_bias"] = True
        weights[layer.name] = [k_new.astype(np.float32), b_new.astype(np.float32)]
        report.input_folded_into.append(layer.name)
    return rebuild(config, model, weights)


def _split_activations(model: keras.Model, report: PtqReport) -> tuple[keras.Model, list[str]]:
    """Drop Dropout, linear activations and the final softmax; split fused ReLUs off as their own layers."""
    config = _functional_config(model)
    new_weights = _split_separable(model, config, report)
    last = model.layers[-1].name
    relus: list[str] = []  # names of the (float) layers whose output a quantized ReLU replaces / follows
    renames: dict[str, str] = {}
    entries: list[dict[str, Any]] = []
    for entry in config["layers"]:
        kind, cfg = entry["class_name"], entry["config"]
        act = cfg.get("activation")
        if kind in _PASS_THROUGH or (kind == "Activation" and act == "linear"):
            renames[entry["name"]] = entry["inbound_nodes"][0][0][0]
            report.removed.append(entry["name"])
            continue
        if (kind == "Softmax" or (kind == "Activation" and act == "softmax")) and entry["name"] == last:
            renames[entry["name"]] = entry["inbound_nodes"][0][0][0]
            report.removed.append(entry["name"])
            continue
        if kind in ("ReLU",) or (kind == "Activation" and act == "relu"):
            relus.append(entry["name"])
            entries.append(entry)
            continue
        if kind in ("Conv2D", "Dense", "DepthwiseConv2D", "QDepthwiseConv2D") and act in ("relu", "softmax"):
            cfg["activation"] = "linear"
            if act == "softmax":
                report.removed.append(f"{entry['name']} (softmax)")
                entries.append(entry)
                continue
            # Split the fused ReLU off, as its own layer, so it can be quantized (and folding sees the linear sum).
            relu_name = f"{entry['name']}_relu"
            entries.append(entry)
            entries.append(
                {
                    "class_name": "ReLU",
                    "name": relu_name,
                    "config": {"name": relu_name, "dtype": "float32"},
                    "inbound_nodes": [[[entry["name"], 0, 0, {}]]],
                }  # fmt: skip
            )
            renames[entry["name"]] = relu_name
            relus.append(relu_name)
            continue
        entries.append(entry)
    _stringify_quantizers(config, model)
    # Consumers of a split layer now read its ReLU; the ReLU itself reads the layer.
    split = {v: k for k, v in renames.items() if v.endswith("_relu") and k + "_relu" == v}
    config["layers"] = entries
    for entry in config["layers"]:
        own = split.get(entry["name"])
        for node in entry["inbound_nodes"]:
            for ref in node:
                if own is not None and ref[0] == own:
                    continue
                while ref[0] in renames:
                    ref[0] = renames[ref[0]]
    for ref in config["output_layers"]:
        while ref[0] in renames:
            ref[0] = renames[ref[0]]
    return rebuild(config, model, new_weights), relus


def _split_separable(model: keras.Model, config: dict[str, Any], report: PtqReport) -> dict[str, list[np.ndarray]]:
    """Rewrite each (Q)SeparableConv2D in ``config`` as a depthwise convolution then a 1x1 convolution, in place.

    ``SeparableConv2D`` is by definition a depthwise convolution (no bias) followed by a pointwise one (bias,
    activation): the same function. hls4ml 1.3 makes the same split itself (its ``separable_to_depthwise_and_conv``
    pass); doing it here gives each half its own Keras layer, so the exact-type derivation types the depthwise
    sums and the gate compares them. The 1x1 convolution keeps the layer's name (what reads the layer reads it);
    the depthwise one is ``<name>_depthwise``. QKeras's quantizers go with their kernels.

    Returns:
        The weights of the new layers, by name.
    """
    weights: dict[str, list[np.ndarray]] = {}
    entries: list[dict[str, Any]] = []
    for entry in config["layers"]:
        kind = entry["class_name"]
        if kind not in ("SeparableConv2D", "QSeparableConv2D"):
            entries.append(entry)
            continue
        layer, cfg, name = model.get_layer(entry["name"]), entry["config"], entry["name"]
        quantized = kind.startswith("Q")
        dw_name = f"{name}_depthwise"
        common = {"trainable": cfg.get("trainable", True), "dtype": cfg.get("dtype", "float32")}
        dw_cfg = {"name": dw_name, **common, "kernel_size": cfg["kernel_size"], "strides": cfg["strides"],
                  "padding": cfg["padding"], "data_format": cfg.get("data_format", "channels_last"),
                  "dilation_rate": cfg.get("dilation_rate", (1, 1)), "depth_multiplier": 1,
                  "activation": "linear", "use_bias": False}  # fmt: skip
        pw_cfg = {"name": name, **common, "filters": cfg["filters"], "kernel_size": (1, 1), "strides": (1, 1),
                  "padding": "valid", "activation": cfg.get("activation", "linear"),
                  "use_bias": cfg.get("use_bias", True)}  # fmt: skip
        if quantized:
            dw_cfg["depthwise_quantizer"] = str(layer.depthwise_quantizer_internal)
            pw_cfg["kernel_quantizer"] = str(layer.pointwise_quantizer_internal)
            if layer.use_bias:
                pw_cfg["bias_quantizer"] = str(layer.bias_quantizer_internal)
        entries.append({"class_name": "QDepthwiseConv2D" if quantized else "DepthwiseConv2D", "name": dw_name,
                        "config": dw_cfg, "inbound_nodes": entry["inbound_nodes"]})  # fmt: skip
        entries.append({"class_name": "QConv2D" if quantized else "Conv2D", "name": name, "config": pw_cfg,
                        "inbound_nodes": [[[dw_name, 0, 0, {}]]]})  # fmt: skip
        w = layer.get_weights()  # depthwise (fh, fw, C, 1), pointwise (1, 1, C, F)[, bias]
        weights[dw_name], weights[name] = [w[0]], w[1:]
        report.split[name] = [dw_name, name]
    config["layers"] = entries
    return weights


def quantize_float_model(
    model: keras.Model,
    calibration_pixels: np.ndarray,
    preprocessing: InputPreprocessing | None = None,
    weight_bits: int = 8,
    activation_bits: int = 8,
    source: str = "",
    calibration: str = "max",
    percentile: float = 99.99,
    weight_range: str = "max",
    stream: InputStream | None = None,
) -> tuple[keras.Model, PtqReport]:
    """Post-training quantization of a float Keras model (see the module doc).

    Args:
        model: the float model (checked with :func:`check_float_model`).
        calibration_pixels: uint8 NHWC calibration images (training images).
        preprocessing: the model's own input (default: ``pixel / 255``); folded into the first layers.
        weight_bits: kernel width (2..16).
        activation_bits: ReLU output width (2..16).
        source: where the model came from (recorded).
        calibration: each ReLU's range from its ``"max"`` on the calibration images, or a ``"percentile"`` of its
            positive outputs (larger values saturate).
        percentile: the percentile for ``"percentile"`` (0 < p <= 100).
        weight_range: each kernel's integer bits from its largest weight (``"max"``) or the least squared error
            (``"mse"``; :func:`hls_build.fold.kernel_integer_bits`).
        stream: what the overlay streams (default: :func:`input_stream` of the model and ``preprocessing``).

    Returns:
        The QKeras model (input: the stream, ``stream.apply(pixels)``) and the report (top-1 fields left for the
        caller to fill).

    Raises:
        ByoModelError: an unsupported model or bad arguments.
    """
    check_float_model(model)
    pre = preprocessing or InputPreprocessing()
    for what, bits in (("weight_bits", weight_bits), ("activation_bits", activation_bits)):
        if not 2 <= bits <= 16:
            raise ByoModelError(f"{what} must be in [2, 16], got {bits}")
    if calibration not in CALIBRATIONS:
        raise ByoModelError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {calibration!r}")
    if calibration == "percentile" and not 0 < percentile <= 100:
        raise ByoModelError(f"percentile must be in (0, 100], got {percentile}")
    if weight_range not in WEIGHT_RANGES:
        raise ByoModelError(f"weight range must be one of {', '.join(WEIGHT_RANGES)}, got {weight_range!r}")
    report = PtqReport(source, float(pre.scale), weight_bits, activation_bits, len(calibration_pixels))
    report.input_preprocessing = pre.to_dict()
    report.calibration = calibration
    report.percentile = percentile if calibration == "percentile" else None
    report.weight_range = weight_range
    report.per_channel = PER_CHANNEL_NOTE
    stream = stream or input_stream(model, pre)
    report.input_stream = stream.to_dict()
    from training.data import model_input

    # The stream's type fixes the input's fractional bits, which the kernel and bias formats start from.
    with model_input(stream.fixed_point, stream.preprocessing):
        return _quantize_model(model, calibration_pixels, pre, stream, report, calibration, percentile)


def _quantize_model(
    model: keras.Model,
    calibration_pixels: np.ndarray,
    pre: InputPreprocessing,
    stream: InputStream,
    report: PtqReport,
    calibration: str,
    percentile: float,
) -> tuple[keras.Model, PtqReport]:
    """:func:`quantize_float_model` after its checks, inside the stream's ``training.data.model_input``."""
    weight_bits, activation_bits, weight_range = report.weight_bits, report.activation_bits, report.weight_range
    float_model, relus = _split_activations(model, report)
    # Fold the model's own preprocessing (what the stream does not do) into the layers that read the image.
    float_model = _fold_input(float_model, pre, report, stream)

    # Activation ranges on calibration images, as the overlay streams them.
    x_cal = stream.apply(calibration_pixels)
    ranges = _calibration_ranges(float_model, relus, x_cal, calibration, percentile) if relus else {}
    config = copy.deepcopy(float_model.get_config())
    for i, entry in enumerate(config["layers"]):
        if entry["name"] in ranges:
            integer = max(integer_bits_for(ranges[entry["name"]], signed=False), 0)
            integer = min(integer, activation_bits)
            report.activations[entry["name"]] = {
                "type": f"ap_ufixed<{activation_bits},{integer}>",
                "calibration_max": ranges[entry["name"]],
            }
            q = _qrelu_entry(entry["name"], entry["inbound_nodes"][0][0][0], activation_bits, integer)
            config["layers"][i] = q
    q_model = rebuild(config, float_model)

    # Layers without a BatchNormalization after them first: a folded layer's input needs its format, and the
    # depthwise half of a SeparableConv2D (no activation) is the input of the half a BatchNormalization follows.
    bn_fed = {_inbound_layers(lyr)[0].name for lyr in q_model.layers if type(lyr).__name__ == "BatchNormalization"}
    q_model = _quantize_remaining(q_model, weight_bits, report, exclude=bn_fed)
    # BatchNormalization folded into the layer before it, whose kernel and bias are quantized on the way.
    folded, folds = fold_batchnorm(q_model, weight_bits=weight_bits, weight_range=weight_range)
    for f in folds:
        report.kernels[f.layer] = {"kernel": f.kernel_type, "bias": f.bias_type, "folded": f.batchnorm}
    out = _quantize_remaining(folded, weight_bits, report)
    for name, k in report.kernels.items():
        width, integer = (int(v) for v in k["kernel"].split("<")[1].rstrip(">").split(","))
        if integer > width:
            # A type with negative fractional bits: hls4ml's firmware did not compute such kernels as Keras does.
            raise ByoModelError(
                f"{name}: its kernel needs {integer} integer bits, more than --weight-bits {width} (weights this large "
                "come from a small input scale folded in, e.g. --input-scale 1); import with --weight-bits "
                f"{integer} or more"
            )
    return out, report


def _quantize_remaining(
    model: keras.Model, weight_bits: int, report: PtqReport, exclude: set[str] | None = None
) -> keras.Model:
    """Turn every still-float Conv2D/DepthwiseConv2D/Dense into its QKeras layer with derived kernel and bias formats.

    In rounds: a layer whose input's format depends on another float layer (a convolution after a Reshape of a
    float convolution, a Concatenate of one) waits until that one has its format. With ``exclude`` (layers left
    float for now), the layers that can be quantized are, and the rest are left for a later call.
    """
    while True:
        config = copy.deepcopy(model.get_config())
        fx = tensor_frac_bits(model)
        weights: dict[str, list[np.ndarray]] = {}
        waiting: list[str] = []
        for entry in config["layers"]:
            if entry["class_name"] not in ("Conv2D", "Dense", "DepthwiseConv2D") or entry["name"] in (exclude or ()):
                continue
            layer = model.get_layer(entry["name"])
            in_frac = fx.get(_inbound_layers(layer)[0].name)
            if in_frac is None:
                waiting.append(layer.name)
                continue
            w = layer.get_weights()
            kernel = w[0].astype(np.float64)
            n_out = kernel.shape[2] if entry["class_name"] == "DepthwiseConv2D" else kernel.shape[-1]
            bias = w[1].astype(np.float64) if layer.use_bias else np.zeros(n_out)
            w_int = kernel_integer_bits(kernel, weight_bits, report.weight_range)
            b_frac = in_frac + weight_bits - w_int
            b_int = max(integer_bits_for(float(np.max(np.abs(bias)))), 1)
            b_bits = min(b_int + b_frac, 32)
            to_quantized_entry(entry, (weight_bits, w_int), (b_bits, b_int))
            weights[entry["name"]] = [_quantize(kernel, weight_bits, w_int), _quantize(bias, b_bits, b_int)]
            report.kernels[entry["name"]] = {
                "kernel": f"ap_fixed<{weight_bits},{w_int}>",
                "bias": f"ap_fixed<{b_bits},{b_int}>",
                "folded": None,
            }
        if weights:
            model = rebuild(config, model, weights)
        if not waiting:
            return model
        if not weights:
            if exclude:
                return model
            layer = model.get_layer(waiting[0])
            raise ByoModelError(
                f"{layer.name}: its input {_inbound_layers(layer)[0].name!r} has no fixed-point format (a layer "
                f"this import cannot quantize before it; supported: {SUPPORTED})"
            )


def _top1(model: keras.Model, x: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(model.predict(x, batch_size=500, verbose=0).argmax(1) == labels))


def finetune(
    q_model: keras.Model,
    pixels: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    seed: int = 0,
    stream: InputStream | None = None,
) -> keras.Model:
    """Short quantization-aware fine-tuning of the quantized model (its quantizers and formats unchanged).

    Adam at a small learning rate on the training images (as the overlay streams them: ``stream``, default
    pixel / 256; random flips), straight-through gradients through QKeras's quantizers; the formats stay those the
    quantization chose, so the exact-type derivation and the gate apply unchanged.
    """
    from training.keras_compat import tf

    keras.utils.set_random_seed(seed)
    x = stream.apply(pixels) if stream is not None else pixels.astype(np.float32) / np.float32(256.0)
    ds = tf.data.Dataset.from_tensor_slices((x, labels.astype(np.int32))).shuffle(len(x), seed=seed)
    ds = ds.map(lambda a, y: (tf.image.random_flip_left_right(a), y)).batch(64)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    q_model.compile(keras.optimizers.Adam(1e-4), loss)
    q_model.fit(ds, epochs=epochs, verbose=0)
    return q_model


def import_float_model(
    model_path: str | Path,
    out_dir: str | Path,
    input_scale: float | None = None,
    weight_bits: int = 8,
    activation_bits: int = 8,
    calibration_images: int = 1000,
    test_images: int = 10_000,
    cifar10_dir: str | None = None,
    input_mean: tuple[float, float, float] | None = None,
    input_std: tuple[float, float, float] | None = None,
    calibration: str = "max",
    percentile: float = 99.99,
    finetune_epochs: int | str = 0,
    finetune_images: int = 50_000,
    weight_range: str = "max",
) -> PtqReport:
    """Quantize a float model file and write a folder ``python -m hls_build bundle --model-dir`` takes.

    Writes ``model.h5`` (the QKeras model), ``config.json`` (model id, preprocessing), ``metrics.json``
    (``test_top1_max``: the quantized top-1) and ``ptq_report.json`` (formats, ranges, top-1 before and after, per
    calibration option tried).

    Args:
        model_path: the float Keras model file.
        out_dir: the folder to write (replaced when it exists).
        input_scale: the model's own input is ``pixel / input_scale`` (1: raw pixels; default 255, and 256 for a
            QKeras model) ...
        input_mean: ... minus this per channel (R, G, B) ...
        input_std: ... divided by this per channel (see :class:`InputPreprocessing`).
        weight_bits: kernel width.
        activation_bits: ReLU output width.
        calibration_images: training images the ranges are measured on.
        test_images: test images for the top-1 figures.
        cifar10_dir: CIFAR-10 folder (default: the usual search).
        percentile: for ``"percentile"``/``"best"``.
        finetune_images: training images the fine-tuning uses.
        calibration: ``"max"``, ``"percentile"``, or ``"best"``: both, keeping the one with the higher top-1 on
            2,000 held-out training images (never the test images; the test top-1 of each is only reported).
        weight_range: ``"max"``, ``"mse"`` (:func:`hls_build.fold.kernel_integer_bits`) or ``"best"``: both,
            chosen like ``calibration`` (every combination with it is tried).
        finetune_epochs: when > 0, quantization-aware fine-tuning of the chosen quantized model for this many
            epochs on ``finetune_images`` training images (:func:`finetune`; the held-out ones excluded);
            ``"auto"``: :data:`AUTO_FINETUNE_EPOCHS` epochs, only when the chosen option loses more than
            :data:`AUTO_FINETUNE_THRESHOLD` points of top-1 against the float model on the held-out images.

    Raises:
        ByoModelError: see :func:`load_float_model` and :func:`quantize_float_model`.
        board.errors.DatasetError: no CIFAR-10.
    """
    from board.cifar10 import load_split

    if is_qkeras(load_model_file(model_path)):
        scale = 256.0 if input_scale is None else input_scale
        return import_qkeras_model(model_path, out_dir, scale, test_images, cifar10_dir, input_mean, input_std)
    pre = InputPreprocessing(255.0 if input_scale is None else float(input_scale), input_mean, input_std)
    model = load_float_model(model_path)
    if calibration_images < 1:
        raise ByoModelError(f"calibration_images must be >= 1, got {calibration_images}")
    auto = finetune_epochs == "auto"
    if not auto and (not isinstance(finetune_epochs, int) or finetune_epochs < 0):
        raise ByoModelError(f"finetune_epochs must be an integer >= 0 or 'auto', got {finetune_epochs!r}")
    if weight_range not in (*WEIGHT_RANGES, "best"):
        raise ByoModelError(f"weight range must be one of {', '.join(WEIGHT_RANGES)}, best; got {weight_range!r}")
    choices = CALIBRATIONS if calibration == "best" else (calibration,)
    ranges = WEIGHT_RANGES if weight_range == "best" else (weight_range,)
    train = load_split("train", cifar10_dir)
    calib = train.images[:calibration_images]
    stream = input_stream(model, pre)  # what the overlay streams: pixel / 256, minus the mean where the image pads
    # Held-out training images (never calibrated on nor fine-tuned on) choose between options and decide "auto".
    held = stream.apply(train.images[-HELDOUT_IMAGES:]), train.labels[-HELDOUT_IMAGES:]
    test = load_split("test", cifar10_dir).head(test_images)
    x_test = stream.apply(test.images)
    y_float = model.predict(pre.apply(test.images), batch_size=500, verbose=0)
    float_held = _top1(model, pre.apply(train.images[-HELDOUT_IMAGES:]), held[1])
    float_test = float(np.mean(y_float.argmax(1) == test.labels))
    source = str(Path(model_path).resolve())
    tried: list[tuple[float, keras.Model, PtqReport]] = []
    options = []

    def scored(name: dict[str, Any], q: keras.Model) -> dict[str, Any]:
        """An option's row: top-1 on the held-out training and the test images, and the points lost to float."""
        h, t = _top1(q, *held), _top1(q, x_test, test.labels)
        return {**name, "top1_heldout_train": h, "top1_test": t,
                "loss_points_heldout": round(100 * (float_held - h), 2),
                "loss_points_test": round(100 * (float_test - t), 2)}  # fmt: skip

    for choice in choices:
        for wr in ranges:
            q, rep = quantize_float_model(model, calib, pre, weight_bits, activation_bits, source, choice,
                                          percentile, weight_range=wr, stream=stream)  # fmt: skip
            row = scored({"calibration": choice, "percentile": rep.percentile, "weight_range": wr}, q)
            options.append(row)
            tried.append((row["top1_heldout_train"], q, rep))
    best_held, q_model, report = max(tried, key=lambda t: t[0])  # the first of equals: max, then mse
    report.options = options
    report.top1_float_heldout_train = float_held
    float_folded, _ = _split_activations(model, PtqReport("", 0, 0, 0, 0))
    float_folded = _fold_input(float_folded, pre, PtqReport("", 0, 0, 0, 0), stream)
    report.top1_float_input_folded = _top1(float_folded, x_test, test.labels)
    loss = 100 * (float_held - best_held)
    epochs = (AUTO_FINETUNE_EPOCHS if loss > AUTO_FINETUNE_THRESHOLD else 0) if auto else finetune_epochs
    report.finetune = {"requested": finetune_epochs, "epochs": epochs, "ran": bool(epochs),
                       "loss_points_heldout_before": round(loss, 2)}  # fmt: skip
    if auto:
        report.finetune["threshold_points"] = AUTO_FINETUNE_THRESHOLD
        report.finetune["reason"] = (
            f"the quantization loses {loss:.2f} points on the held-out training images, "
            f"{'more' if epochs else 'not more'} than {AUTO_FINETUNE_THRESHOLD:g}"
        )
    if epochs:
        chosen = next(o for o in options if o["top1_heldout_train"] == best_held)
        report.top1_before_finetune = chosen["top1_test"]
        n = min(finetune_images, len(train) - HELDOUT_IMAGES)
        q_model = finetune(q_model, train.images[:n], train.labels[:n], epochs, stream=stream)
        report.finetune_epochs = epochs
        row = scored({"calibration": report.calibration, "percentile": report.percentile,
                      "weight_range": report.weight_range, "finetune_epochs": epochs}, q_model)  # fmt: skip
        options.append(row)
        report.finetune.update(before={k: chosen[k] for k in ("top1_heldout_train", "top1_test")},
                               after={k: row[k] for k in ("top1_heldout_train", "top1_test")},
                               images=n)  # fmt: skip
    y_q = q_model.predict(x_test, batch_size=500, verbose=0)
    report.top1_float = float(np.mean(y_float.argmax(1) == test.labels))
    report.top1_quantized = float(np.mean(y_q.argmax(1) == test.labels))
    report.agreement = float(np.mean(y_float.argmax(1) == y_q.argmax(1)))
    report.test_images = len(test)

    out = Path(out_dir)
    model_id = _slug(out.name)  # the folder's name, as for a training folder
    config = {"model_id": model_id, "source": report.source, "preprocessing": stream.preprocessing,
              "source_preprocessing": {**pre.to_dict(), "folded_into": report.input_folded_into,
                                       "input_stream": stream.to_dict()},
              "method": "post-training quantization"}  # fmt: skip
    if stream.fixed_point is not None:  # the bundle build streams this type (training.data.model_input)
        config["input_fixed_point"] = stream.fixed_point
    metrics = {"test_top1_max": report.top1_quantized, "test_top1_float": report.top1_float,
               "test_images": report.test_images, "epochs": report.finetune_epochs or None}  # fmt: skip
    _write_folder(out, q_model, config, metrics, report)
    return report


# --------------------------------------------------------------------------------------------- QKeras, as trained
_Q_DEPTHWISE = ("QDepthwiseConv2D", "QSeparableConv2D")
_Q_LAYERS = ("QConv2D", "QDense", "QConv2DBatchnorm", "QDepthwiseConv2D", "QSeparableConv2D", "QActivation")


def check_qkeras_model(model: keras.Model) -> None:
    """Refuse a QKeras model the overlay cannot compute exactly, naming the layer and what to do.

    Every kernel, bias and activation must have a fixed-point quantizer (``quantized_bits`` with ``alpha=1``,
    ``quantized_relu``): the exact-type derivation starts from them. Float Conv2D/Dense/ReLU layers have none.
    """
    from hls_build.fold import quantizer_format

    _check_cifar10_io(model)
    last = model.layers[-1]
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("QConv2D", "QDense", "QConv2DBatchnorm", "QDepthwiseConv2D", "QSeparableConv2D"):
            kernels = {"QDepthwiseConv2D": ("depthwise",), "QSeparableConv2D": ("depthwise", "pointwise")}
            for what in (*kernels.get(kind, ("kernel",)), "bias"):
                q = getattr(layer, f"{what}_quantizer_internal", None)
                if (what != "bias" or layer.use_bias or kind == "QConv2DBatchnorm") and quantizer_format(q) is None:
                    raise ByoModelError(
                        f"{layer.name}: {what} quantizer {q} has no fixed-point format; use quantized_bits(bits, "
                        "integer, alpha=1)"
                    )
            act = getattr(layer, "activation", None)
            act_name = getattr(act, "__name__", str(act)) if act is not None else "linear"
            if act_name not in ("linear", "None") and not (act_name == "softmax" and layer is last):
                raise ByoModelError(
                    f"{layer.name}: activation {act_name!r} inside {kind}; put it in its own QActivation layer"
                )
            if kind != "QDense" and (tuple(layer.dilation_rate) != (1, 1) or getattr(layer, "groups", 1) != 1):
                raise ByoModelError(f"{layer.name}: dilated or grouped convolutions are not supported")
            _check_depth_multiplier(layer)
        elif kind == "QActivation":
            if quantizer_format(layer.quantizer) is None:
                raise ByoModelError(
                    f"{layer.name}: activation {layer.quantizer} has no fixed-point format; use quantized_relu(bits, "
                    "integer) or quantized_bits(bits, integer, alpha=1)"
                )
        elif kind.startswith("Q"):
            raise ByoModelError(
                f"{layer.name}: {kind} is not supported; supported QKeras layers: {', '.join(_Q_LAYERS)}"
            )
        elif kind in ("Conv2D", "Dense", "DepthwiseConv2D", "SeparableConv2D", "ReLU") or (
            kind == "Activation" and layer.get_config()["activation"] == "relu"
        ):
            raise ByoModelError(
                f"{layer.name}: a float {kind} in a QKeras model has no fixed-point format; quantize it (QConv2D, "
                "QDense, QActivation('quantized_relu(8,3)')), or import a float model for post-training quantization"
            )
        elif kind in ("Activation", "Softmax"):
            act = layer.get_config().get("activation", "softmax")
            if act != "linear" and not (act == "softmax" and layer is last):
                raise ByoModelError(
                    f"{layer.name}: activation {act!r} is not supported (softmax only as the last layer)"
                )
        elif kind == "BatchNormalization":
            src = _inbound_layers(layer)
            if len(src) != 1 or type(src[0]).__name__ not in ("QConv2D", "QDense", *_Q_DEPTHWISE):
                raise ByoModelError(f"{layer.name}: BatchNormalization must follow a QConv2D, QDepthwiseConv2D, "
                                    "QSeparableConv2D or QDense (it is folded into it) or be trained folded "
                                    "(QConv2DBatchnorm)")  # fmt: skip
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            why = _pool_ok(layer)
            if why:
                raise ByoModelError(f"{layer.name}: {kind} {why}")
        elif kind not in (*_KEPT, *_PASS_THROUGH):
            advice = _ADVICE.get(kind, f"supported: {', '.join(_Q_LAYERS)}, {SUPPORTED}")
            raise ByoModelError(f"{layer.name}: {kind} is not supported by the overlay; {advice}")


def _scale_first_layers_exactly(model: keras.Model, pre: InputPreprocessing, folded: list[str]) -> keras.Model:
    """Fold a power-of-two input scale into the first quantized layers without changing any value.

    The overlay streams ``pixel / 256``; a model trained on ``pixel / 2^m`` sees ``2^(8-m)`` times it. Scaling the
    quantized kernel by that power of two and giving its quantizer as many more integer bits represents exactly the
    values it had, scaled: the first layer computes what it computed in training. BatchNormalization is folded
    first (``hls_build.fold``; a ``QConv2DBatchnorm`` becomes the ``QConv2D`` of the values it computes with), so
    the scaled kernel is a plain quantized one; its type keeps at least 0 fractional bits (one more bit of width
    where the scaled values are multiples of 2 or more; the values are the same).
    """
    from hls_build.fold import _qbits_config, quantizer_format

    if pre.mean is not None or pre.std is not None:
        raise ByoModelError(
            "a QKeras model is imported as trained: a mean/std cannot be folded into its quantized first layer "
            "without re-rounding it; fold it into the first layer's weights before training, or train on pixel / 256"
        )
    k = math.log2(256.0 / pre.scale)
    if k != int(k):
        raise ByoModelError(
            f"a QKeras model is imported as trained: input pixel / {pre.scale:g} is not pixel / 256 times a power of "
            "two, so the first layer's quantized weights would have to be rounded again; train on pixel / 256 "
            "(or pixel / 2^m, e.g. --input-scale 1 for raw pixels)"
        )
    k = int(k)
    if k == 0:
        return model
    from hls_build.fold import _kernel_values, fold_batchnorm, kernel_quantizer, needs_folding

    if needs_folding(model):
        model, _ = fold_batchnorm(model)
    config = copy.deepcopy(model.get_config())
    weights: dict[str, list[np.ndarray]] = {}
    for layer in _image_readers(model):
        kind = type(layer).__name__
        if kind not in ("QConv2D", "QDense", "QDepthwiseConv2D"):
            raise ByoModelError(f"{layer.name}: the image goes into a {kind}; the input scale can be folded only into "
                                "a QConv2D/QDepthwiseConv2D/QDense/QConv2DBatchnorm that reads it")  # fmt: skip
        bits, integer, _ = quantizer_format(kernel_quantizer(layer))
        frac = max(bits - integer - k, 0)
        entry = next(e for e in config["layers"] if e["name"] == layer.name)
        key = "depthwise_quantizer" if kind == "QDepthwiseConv2D" else "kernel_quantizer"
        entry["config"][key] = _qbits_config(integer + k + frac, integer + k)
        kernel, _ = _kernel_values(layer)  # as quantized: scaled by 2^k, still on the (new) quantizer's grid
        w = layer.get_weights()
        weights[layer.name] = [(kernel * 2.0**k).astype(np.float32), *w[1:]]
        folded.append(layer.name)
    _stringify_quantizers(config, model)
    return rebuild(config, model, weights)


def _stringify_quantizers(config: dict[str, Any], model: keras.Model) -> None:
    """QKeras parses quantizers given as strings; a live config's dicts do not deserialize outside load_qmodel."""
    for entry in config["layers"]:
        if entry["class_name"].startswith("Q") and entry["name"] in [lyr.name for lyr in model.layers]:
            layer = model.get_layer(entry["name"])
            for key in ("kernel_quantizer", "depthwise_quantizer", "bias_quantizer", "activation"):
                q = getattr(layer, "quantizer" if key == "activation" else f"{key}_internal", None)
                if isinstance(entry["config"].get(key), dict) and q is not None:
                    entry["config"][key] = str(q)


def import_qkeras_model(
    model_path: str | Path,
    out_dir: str | Path,
    input_scale: float = 256.0,
    test_images: int = 10_000,
    cifar10_dir: str | None = None,
    input_mean: tuple[float, float, float] | None = None,
    input_std: tuple[float, float, float] | None = None,
) -> PtqReport:
    """Import a QKeras model as trained: its quantizers kept, no post-training quantization.

    Dropout and a final softmax are removed (the overlay streams logits; the argmax is unchanged); a power-of-two
    input scale is folded into the first layer exactly (:func:`_scale_first_layers_exactly`). ``bundle`` then folds
    BatchNormalization (``QConv2DBatchnorm`` as trained), derives every type and gates the firmware as for this
    project's own models. Writes the same folder as :func:`import_float_model` (``ptq_report.json`` records
    ``method: "qkeras as trained"`` and the top-1 of the source and of the imported model, which are equal).

    Raises:
        ByoModelError: see :func:`check_qkeras_model` and :func:`_scale_first_layers_exactly`.
    """
    from board.cifar10 import load_split
    from training.data import preprocess, preprocessing_spec

    pre = InputPreprocessing(float(input_scale), input_mean, input_std)
    model = load_model_file(model_path)
    check_qkeras_model(model)
    report = PtqReport(str(Path(model_path).resolve()), float(pre.scale), 0, 0, 0)
    report.input_preprocessing = pre.to_dict()
    report.calibration = "none (QKeras quantizers as trained)"
    imported, _ = _split_activations(model, report)
    imported = _scale_first_layers_exactly(imported, pre, report.input_folded_into)
    test = load_split("test", cifar10_dir).head(test_images)
    y_src = model.predict(pre.apply(test.images), batch_size=500, verbose=0)
    y_imp = imported.predict(preprocess(test.images), batch_size=500, verbose=0)
    report.top1_float = float(np.mean(y_src.argmax(1) == test.labels))  # the source (QKeras) model
    report.top1_quantized = float(np.mean(y_imp.argmax(1) == test.labels))
    report.agreement = float(np.mean(y_src.argmax(1) == y_imp.argmax(1)))
    report.test_images = len(test)
    out = Path(out_dir)
    config = {"model_id": _slug(out.name), "source": report.source, "preprocessing": preprocessing_spec(),
              "source_preprocessing": {**pre.to_dict(), "folded_into": report.input_folded_into},
              "method": "qkeras as trained"}  # fmt: skip
    metrics = {"test_top1_max": report.top1_quantized, "test_top1_source": report.top1_float,
               "test_images": report.test_images, "epochs": None}  # fmt: skip
    _write_folder(out, imported, config, metrics, report)
    return report


def _write_folder(out: Path, model: keras.Model, config: dict, metrics: dict, report: PtqReport) -> None:
    """``model.h5``, ``config.json``, ``metrics.json``, ``ptq_report.json`` into ``out`` (replaced whole)."""
    staging = out.with_name(out.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    model.save(staging / "model.h5", include_optimizer=False)
    (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (staging / "ptq_report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    if out.exists():
        import shutil

        shutil.rmtree(out)
    staging.rename(out)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_") or "model"


def describe(report: PtqReport) -> str:
    """A short human-readable summary."""
    if report.calibration.startswith("none"):
        return "\n".join(
            [
                f"QKeras model {report.source} imported as trained (its quantizers kept; input "
                f"{_describe_input(report.input_preprocessing)}"
                + (
                    f", scale folded exactly into {', '.join(report.input_folded_into)}"
                    if report.input_folded_into
                    else ""
                )
                + ")",
                f"  removed: {', '.join(report.removed) or 'nothing'}",
                f"top-1 on {report.test_images} test images: source {report.top1_float:.2%}, imported "
                f"{report.top1_quantized:.2%} (argmax agreement {report.agreement:.2%})",
            ]
        )
    lines = [
        f"post-training quantization of {report.source} (input {_describe_input(report.input_preprocessing)}, "
        f"weights {report.weight_bits} bits, activations {report.activation_bits} bits, "
        f"ranges ({report.calibration}{'' if report.percentile is None else f' {report.percentile:g}'}) from "
        f"{report.calibration_images} training images)"
    ]
    if report.input_folded_into:
        st = report.input_stream
        what = "the std" if st.get("mean_subtracted_before_accelerator") else "input preprocessing"
        lines.append(f"  {what} folded into {', '.join(report.input_folded_into)}")
        if st.get("mean_subtracted_before_accelerator"):
            lines.append(
                f"  the image is zero-padded first: the mean is subtracted before the accelerator (stream "
                f"{st['input_fixed_point']}, offset {st['input_offset']}); quantized mean {st['mean_quantized']}, "
                f"{max(abs(e) for e in st['mean_error']):.3g} at most from the given one"
            )
    for name, a in report.activations.items():
        lines.append(f"  {name}: {a['type']} (calibration max {a['calibration_max']:.4g})")
    for name, k in report.kernels.items():
        folded = f", folded {k['folded']}" if k["folded"] else ""
        lines.append(f"  {name}: kernel {k['kernel']}, bias {k['bias']}{folded}")
    if report.removed:
        lines.append(f"  removed: {', '.join(report.removed)}")
    if report.top1_float is not None:
        lines.append(
            f"top-1 on {report.test_images} test images: float {report.top1_float:.2%}, quantized "
            f"{report.top1_quantized:.2%} (argmax agreement {report.agreement:.2%})"
        )
    if report.top1_float_heldout_train is not None and len(report.options) > 1:
        lines.append(f"  float model: top-1 {report.top1_float_heldout_train:.2%} on the held-out training images")
    for o in report.options if len(report.options) > 1 else ():
        what = f"calibration {o['calibration']}, weights {o.get('weight_range', 'max')}"
        what += f", fine-tuned {o['finetune_epochs']} epochs" if o.get("finetune_epochs") else ""
        lines.append(f"  {what}: top-1 {o['top1_heldout_train']:.2%} on held-out training images, "
                     f"{o['top1_test']:.2%} on the test images")  # fmt: skip
    if report.finetune_epochs:
        lines.append(f"  fine-tuned {report.finetune_epochs} epochs: test top-1 {report.top1_before_finetune:.2%} "
                     f"-> {report.top1_quantized:.2%}")  # fmt: skip
    if report.finetune.get("reason"):
        lines.append(f"  --finetune-epochs auto: {report.finetune['reason']}")
    return "\n".join(lines)


def _describe_input(pre: dict[str, Any]) -> str:
    if not pre:
        return "pixel/255"
    text = f"pixel/{pre['scale']:g}"
    if pre.get("mean") is not None:
        text = f"({text} - mean {pre['mean']})"
    if pre.get("std") is not None:
        text = f"{text} / std {pre['std']}"
    return text
