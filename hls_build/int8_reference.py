"""The bundle's 8-bit CPU reference: onnxruntime's static quantization of the network, next to the float one.

The float reference (``reference.onnx``) is the quantized Keras model exported by tf2onnx: its activation
quantizers become chains of Mul/Round/Min/Max that a CPU runs in float32. An 8-bit FPGA design deserves an 8-bit
CPU baseline too, so every bundle also carries ``reference_int8.onnx``, made here at bundle time:

1. the CPU model: the same network with the same weights (each QKeras layer's quantized kernel and bias, BatchNorm
   already folded) as plain Keras layers, each activation quantizer replaced by a plain ReLU (the calibrated 8-bit range
   saturates where the quantizer clipped): the graph a CPU toolchain quantizes, without fake-quantization ops;
2. exported with tf2onnx (opset 17) and pre-processed as onnxruntime recommends (``quant_pre_process``: its
   graph optimizations and ONNX shape inference);
3. quantized by onnxruntime's static quantization: QDQ format, int8 weights per output channel, uint8
   activations (U8S8, onnxruntime's usual CPU pair: with int8 activations its optimizer left 6 of ResNet-8's 9
   convolutions in float on an x86 host, with uint8 all 9 run as QLinearConv), MinMax calibration on
   ``calibration_images`` TRAINING images (random, seeded; never test images).

onnxruntime runs the result with its integer kernels (QLinearConv, QLinearAdd, QGemm, ...); the board's numpy
evaluator (:mod:`board.onnx_numpy`) runs the same file as the ONNX standard defines QDQ. The top-1 of both
references on the test images the build stores predictions for goes into the manifest (measured here with
onnxruntime), so a bundle says how far its 8-bit reference is from the float one.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from board.cifar10 import Split
from board.errors import ProjectError
from board.preprocess import Preprocessing
from training.keras_compat import keras, tf

log = logging.getLogger(__name__)

__all__ = [
    "INT8_REFERENCE",
    "Int8ReferenceError",
    "Int8ReferenceOptions",
    "cpu_float_model",
    "make_int8_reference",
    "onnx_top1",
]

INT8_REFERENCE = "reference_int8.onnx"

# QKeras layer -> the plain Keras layer it computes once its quantizers are applied to the weights.
_PLAIN = {
    "QConv2D": "Conv2D",
    "QDense": "Dense",
    "QDepthwiseConv2D": "DepthwiseConv2D",
    "QConv1D": "Conv1D",
    "QAveragePooling2D": "AveragePooling2D",
    "QGlobalAveragePooling2D": "GlobalAveragePooling2D",
}
_QUANTIZER_KEYS = ("kernel_quantizer", "bias_quantizer", "depthwise_quantizer", "average_quantizer",
                   "kernel_range", "bias_range", "depthwise_range", "activation_quantizer")  # fmt: skip


class Int8ReferenceError(ProjectError, RuntimeError):
    """The 8-bit reference cannot be made: a layer without a plain equivalent, or onnxruntime failed."""


@dataclass(frozen=True)
class Int8ReferenceOptions:
    """How the 8-bit reference is made.

    Attributes:
        calibration_images: training images the activation ranges are calibrated on.
        seed: which training images (a seeded random choice among all of them).
        per_channel: one weight scale per output channel (else one per tensor).
        batch_size: images per calibration batch.
    """

    calibration_images: int = 1000
    seed: int = 0
    per_channel: bool = True
    batch_size: int = 100


def _activation_layer(name: str, activation: Any, layer: keras.layers.Layer) -> dict[str, Any]:
    """The plain layer a QActivation stands for: ReLU with the quantizer's ceiling, or the identity."""
    text = activation if isinstance(activation, str) else str(activation.get("class_name", activation))
    if "relu" in text:
        quantizer = getattr(layer, "quantizer", None)
        if quantizer is not None and getattr(quantizer, "negative_slope", 0):
            raise Int8ReferenceError(f"layer {name}: a leaky quantized_relu has no plain ReLU equivalent")
        # A plain ReLU, not ReLU(max_value=the quantizer's ceiling): tf2onnx writes the ceiling as Max/Min, which
        # onnxruntime cannot fuse into its integer convolution; the calibrated 8-bit range saturates instead.
        return {"class_name": "ReLU", "config": {"name": name, "dtype": "float32"}}
    if text.startswith(("quantized_bits", "linear")) or text in ("linear", "None"):
        return {"class_name": "Activation", "config": {"name": name, "activation": "linear", "dtype": "float32"}}
    raise Int8ReferenceError(f"layer {name}: activation {text!r} has no plain Keras equivalent for the CPU model")


def cpu_float_model(model: keras.Model) -> tuple[keras.Model, list[str]]:
    """The network with its quantized weights as plain Keras layers and no activation fake-quantization.

    Args:
        model: the (folded) QKeras model the firmware computes.

    Returns:
        The plain model and the names of the layers that were rewritten.

    Raises:
        Int8ReferenceError: a QKeras layer this rewrite does not know.
    """
    from hls_build.fold import rebuild

    if isinstance(model, keras.Sequential):
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    config = model.get_config()
    weights: dict[str, list[np.ndarray]] = {}
    rewritten = []
    for entry in config["layers"]:
        cls, name = entry["class_name"], entry["config"]["name"]
        layer = model.get_layer(name)
        if cls == "QActivation":
            plain = _activation_layer(name, entry["config"]["activation"], layer)
            entry["class_name"], entry["config"] = plain["class_name"], plain["config"]
            entry.pop("module", None), entry.pop("registered_name", None)
        elif cls in _PLAIN:
            entry["class_name"] = _PLAIN[cls]
            entry.pop("module", None), entry.pop("registered_name", None)
            for key in _QUANTIZER_KEYS:
                entry["config"].pop(key, None)
            quantizers = layer.get_quantizers() if hasattr(layer, "get_quantizers") else []
            values = layer.get_weights()
            weights[name] = [
                np.asarray(q(tf.constant(w)), np.float32) if q is not None else w
                for q, w in zip(list(quantizers) + [None] * (len(values) - len(quantizers)), values)
            ]
        elif cls.startswith("Q"):
            raise Int8ReferenceError(
                f"layer {name} ({cls}) has no plain Keras equivalent for the 8-bit CPU reference; known: "
                f"{', '.join(sorted([*_PLAIN, 'QActivation']))}"
            )
        else:
            continue
        rewritten.append(name)
    return rebuild(config, model, weights), rewritten


def _export(model: keras.Model, path: Path, image_shape: tuple[int, ...]) -> None:
    import tf2onnx

    spec = (tf.TensorSpec((None, *image_shape), tf.float32, name="image"),)
    tf2onnx.utils.INTERNAL_NAME = 1  # its name counter started over: the same model gives the same bytes
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(path))


def _calibration(train: Split, preprocessing: Preprocessing, options: Int8ReferenceOptions) -> np.ndarray:
    count = min(options.calibration_images, len(train))
    if count < 1:
        raise Int8ReferenceError("the 8-bit reference needs at least one calibration (training) image")
    index = np.sort(np.random.default_rng(options.seed).choice(len(train), count, replace=False))
    return preprocessing.to_float(train.images[index])


def onnx_top1(path: Path, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> tuple[float, np.ndarray]:
    """Top-1 of an ONNX model run by onnxruntime on preprocessed images, and its argmax."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    preds = np.concatenate(
        [np.argmax(session.run(None, {name: images[i : i + batch_size]})[0], axis=1)
         for i in range(0, len(images), batch_size)]
    )  # fmt: skip
    return float(np.mean(preds == labels)), preds


def make_int8_reference(
    model: keras.Model,
    out_path: Path,
    train: Split,
    preprocessing: dict[str, Any],
    options: Int8ReferenceOptions | None = None,
    image_shape: tuple[int, ...] = (32, 32, 3),
) -> dict[str, Any]:
    """Write the 8-bit ONNX reference of ``model`` to ``out_path``.

    Args:
        model: the (folded) QKeras model the firmware computes.
        out_path: where the quantized ``.onnx`` goes (``<bundle>/reference_int8.onnx``).
        train: the TRAINING split; calibration images are drawn from it.
        preprocessing: the manifest's preprocessing dict (pixels -> model input).
        options: calibration and quantization options.
        image_shape: one image's shape.

    Returns:
        What the manifest records about it: method, calibration source and count, formats, timings.

    Raises:
        Int8ReferenceError: the model cannot be rewritten, or onnxruntime's quantization failed.
    """
    from onnxruntime import __version__ as ort_version
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    options = options or Int8ReferenceOptions()
    t0 = time.perf_counter()
    cpu_model, rewritten = cpu_float_model(model)
    calib = _calibration(train, Preprocessing.from_dict(preprocessing), options)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(range(0, len(calib), options.batch_size))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self._batches, None)
            return None if start is None else {"image": calib[start : start + options.batch_size]}

    with tempfile.TemporaryDirectory(prefix="int8_reference_") as tmp:
        plain, prepared = Path(tmp) / "cpu_float.onnx", Path(tmp) / "cpu_float_prepared.onnx"
        _export(cpu_model, plain, image_shape)
        try:
            # sympy (symbolic shape inference) is not in the host environment: ONNX shape inference suffices for
            # a model with one symbolic (batch) dimension.
            quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(out_path),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=options.per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises assorted types; say which step failed
            raise Int8ReferenceError(f"onnxruntime's static quantization failed: {exc}") from exc
    seconds = time.perf_counter() - t0
    log.info("8-bit reference: %d layers rewritten, calibrated on %d training images, %.1f s", len(rewritten),
             len(calib), seconds)  # fmt: skip
    return {
        "file": out_path.name,
        "method": "onnxruntime static quantization (quantize_static), QDQ format, after quant_pre_process",
        "source": "the network with its quantized weights as plain Keras layers, each activation quantizer "
        "replaced by a plain ReLU (no fake-quantization ops), exported by tf2onnx",
        "weights": "int8, symmetric, " + ("per output channel" if options.per_channel else "per tensor"),
        "activations": "uint8 (asymmetric, zero point)",
        "calibration": {
            "method": "MinMax",
            "split": "train",
            "images": len(calib),
            "selection": f"random without replacement, numpy default_rng({options.seed})",
        },
        "onnxruntime": ort_version,
    }
