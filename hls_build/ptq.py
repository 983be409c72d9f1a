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

Supported layers: InputLayer, Conv2D, Dense, BatchNormalization (right after a Conv2D or Dense), ReLU,
Activation ``relu``/``linear``, ``activation="relu"`` inside Conv2D/Dense, Add, GlobalAveragePooling2D, Dropout
(removed), and a final softmax (removed: the overlay streams logits; argmax is unchanged).

The input must be the image as the model was trained on it, scaled ``pixel / input_scale`` (255 or 256, no mean
subtraction): the overlay streams ``pixel / 256`` exactly, and ``256 / input_scale`` is folded into the first
convolution.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from board.errors import ProjectError
from hls_build.fold import (
    _inbound_layers,
    _quantize,
    fold_batchnorm,
    integer_bits_for,
    rebuild,
    tensor_frac_bits,
    to_quantized_entry,
)
from training.keras_compat import keras

SUPPORTED = (
    "InputLayer, Conv2D, Dense, BatchNormalization (after Conv2D/Dense), ReLU, Activation relu/linear/softmax "
    "(softmax last only), Add, GlobalAveragePooling2D, Dropout"
)
_PASS_THROUGH = ("Dropout",)


class ByoModelError(ProjectError, ValueError):
    """A model this import cannot take: not float Keras, not 32x32x3, or a layer the overlay does not support."""


@dataclass
class PtqReport:
    """What the quantization chose and what it cost.

    Attributes:
        source: the model file.
        input_scale: the model's own input scaling (pixel / input_scale).
        weight_bits, activation_bits: widths used.
        calibration_images: training images the activation ranges were measured on.
        activations: layer -> ``{"type", "calibration_max"}`` per quantized ReLU.
        kernels: layer -> kernel and bias types.
        removed: layers dropped (Dropout, linear activations, the final softmax).
        top1_float, top1_quantized, agreement: on ``test_images`` CIFAR-10 test images.
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


def load_float_model(path: str | Path) -> keras.Model:
    """Read a float Keras model file and check that the overlay can take it.

    Raises:
        ByoModelError: unreadable, QKeras, input not 32x32x3, output not 10 classes, or an unsupported layer.
    """
    path = Path(path)
    if not path.is_file():
        raise ByoModelError(f"{path}: no such model file")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file; say which file and why.
        raise ByoModelError(f"{path}: not a readable Keras model ({type(exc).__name__}: {exc})") from exc
    check_float_model(model)
    return model


def check_float_model(model: keras.Model) -> None:
    """Refuse what the overlay cannot run, naming the layer (see :data:`SUPPORTED`)."""
    if not isinstance(model, keras.Model) or not getattr(model, "_is_graph_network", False):
        raise ByoModelError("only functional or Sequential Keras models can be imported")
    shape = tuple(model.input_shape[1:])
    if shape != (32, 32, 3):
        raise ByoModelError(f"model input is {shape}; the CIFAR-10 overlay streams 32x32x3 images")
    if model.output_shape[-1] != 10:
        raise ByoModelError(f"model has {model.output_shape[-1]} outputs; CIFAR-10 has 10 classes")
    last = model.layers[-1]
    for layer in model.layers:
        kind = type(layer).__name__
        if kind.startswith("Q"):
            raise ByoModelError(
                f"{layer.name}: {kind} is a QKeras layer; a quantization-aware model is built with "
                "`python -m hls_build bundle --model-dir` directly"
            )
        act = getattr(layer, "activation", None)
        act_name = getattr(act, "__name__", str(act)) if act is not None else None
        if kind in ("Conv2D", "Dense"):
            ok = act_name in ("linear", "relu") or (act_name == "softmax" and layer is last)
            if not ok:
                raise ByoModelError(f"{layer.name}: activation {act_name!r} is not supported; supported: {SUPPORTED}")
            if kind == "Conv2D" and (layer.dilation_rate != (1, 1) or layer.groups != 1):
                raise ByoModelError(f"{layer.name}: dilated or grouped convolutions are not supported")
        elif kind == "Activation":
            if act_name not in ("relu", "linear") and not (act_name == "softmax" and layer is last):
                raise ByoModelError(f"{layer.name}: activation {act_name!r} is not supported; supported: {SUPPORTED}")
        elif kind == "ReLU":
            if layer.max_value is not None or float(layer.negative_slope) != 0 or float(layer.threshold) != 0:
                raise ByoModelError(f"{layer.name}: only a plain ReLU is supported (no max, slope or threshold)")
        elif kind == "Softmax":
            if layer is not last:
                raise ByoModelError(f"{layer.name}: softmax is supported only as the last layer")
        elif kind not in ("InputLayer", "BatchNormalization", "Add", "GlobalAveragePooling2D", *_PASS_THROUGH):
            raise ByoModelError(f"{layer.name}: {kind} is not supported by the overlay; supported: {SUPPORTED}")


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


def _calibration_maxima(model: keras.Model, names: list[str], x: np.ndarray) -> dict[str, float]:
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    outs = probe.predict(x, batch_size=250, verbose=0)
    outs = outs if isinstance(outs, list) else [outs]
    return {n: float(np.max(o)) for n, o in zip(names, outs)}


def quantize_float_model(
    model: keras.Model,
    calibration_x: np.ndarray,
    input_scale: float = 255.0,
    weight_bits: int = 8,
    activation_bits: int = 8,
    source: str = "",
) -> tuple[keras.Model, PtqReport]:
    """Post-training quantization of a float Keras model (see the module doc).

    Args:
        model: the float model (checked with :func:`check_float_model`).
        calibration_x: calibration images as the model expects them (``pixel / input_scale``), NHWC float32.
        input_scale: 255 or 256: the model's own input scaling.
        weight_bits: kernel width (2..16).
        activation_bits: ReLU output width (2..16).
        source: where the model came from (recorded).

    Returns:
        The QKeras model (input: ``pixel / 256``) and the report (top-1 fields left for the caller to fill).

    Raises:
        ByoModelError: an unsupported model or bad arguments.
    """
    check_float_model(model)
    if input_scale not in (255, 256):
        raise ByoModelError(f"input_scale must be 255 or 256 (pixel / input_scale), got {input_scale}")
    for what, bits in (("weight_bits", weight_bits), ("activation_bits", activation_bits)):
        if not 2 <= bits <= 16:
            raise ByoModelError(f"{what} must be in [2, 16], got {bits}")
    report = PtqReport(source, float(input_scale), weight_bits, activation_bits, len(calibration_x))
    config = _functional_config(model)
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
        if kind in ("Conv2D", "Dense") and act in ("relu", "softmax"):
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
    float_model = rebuild(config, model)

    # The overlay's input is pixel / 256; a model trained on pixel / 255 sees x * 256/255: fold that into the
    # first layers that read the image (a linear scale commutes with zero padding).
    if input_scale != 256:
        image = float_model.layers[0].name
        for layer in float_model.layers:
            if image in [lyr.name for lyr in _inbound_layers(layer)]:
                if type(layer).__name__ not in ("Conv2D", "Dense"):
                    raise ByoModelError(f"{layer.name}: with input_scale {input_scale} the image must go straight "
                                        "into a Conv2D or Dense layer")  # fmt: skip
                w = layer.get_weights()
                layer.set_weights([w[0] * (256.0 / input_scale), *w[1:]])

    # Activation ranges on calibration images (as the overlay streams them: pixel / 256).
    maxima = _calibration_maxima(float_model, relus, calibration_x * (input_scale / 256.0)) if relus else {}
    config = copy.deepcopy(float_model.get_config())
    for i, entry in enumerate(config["layers"]):
        if entry["name"] in maxima:
            integer = max(integer_bits_for(maxima[entry["name"]], signed=False), 0)
            integer = min(integer, activation_bits)
            report.activations[entry["name"]] = {
                "type": f"ap_ufixed<{activation_bits},{integer}>",
                "calibration_max": maxima[entry["name"]],
            }
            q = _qrelu_entry(entry["name"], entry["inbound_nodes"][0][0][0], activation_bits, integer)
            config["layers"][i] = q
    q_model = rebuild(config, float_model)

    # BatchNormalization folded into the layer before it, whose kernel and bias are quantized on the way.
    folded, folds = fold_batchnorm(q_model, weight_bits=weight_bits)
    for f in folds:
        report.kernels[f.layer] = {"kernel": f.kernel_type, "bias": f.bias_type, "folded": f.batchnorm}
    out = _quantize_remaining(folded, weight_bits, report)
    return out, report


def _quantize_remaining(model: keras.Model, weight_bits: int, report: PtqReport) -> keras.Model:
    """Turn every still-float Conv2D/Dense into QConv2D/QDense with derived kernel and bias formats."""
    config = copy.deepcopy(model.get_config())
    fx = tensor_frac_bits(model)
    weights: dict[str, list[np.ndarray]] = {}
    for entry in config["layers"]:
        kind = entry["class_name"]
        if kind not in ("Conv2D", "Dense"):
            continue
        layer = model.get_layer(entry["name"])
        src = _inbound_layers(layer)[0].name
        in_frac = fx.get(src)
        if in_frac is None:
            raise ByoModelError(f"{layer.name}: its input {src!r} has no fixed-point format")
        w = layer.get_weights()
        kernel = w[0].astype(np.float64)
        bias = w[1].astype(np.float64) if layer.use_bias else np.zeros(kernel.shape[-1])
        w_int = max(integer_bits_for(float(np.max(np.abs(kernel)))), 1)
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
    return rebuild(config, model, weights) if weights else model


def import_float_model(
    model_path: str | Path,
    out_dir: str | Path,
    input_scale: float = 255.0,
    weight_bits: int = 8,
    activation_bits: int = 8,
    calibration_images: int = 1000,
    test_images: int = 10_000,
    cifar10_dir: str | None = None,
) -> PtqReport:
    """Quantize a float model file and write a folder ``python -m hls_build bundle --model-dir`` takes.

    Writes ``model.h5`` (the QKeras model), ``config.json`` (model id, preprocessing), ``metrics.json``
    (``test_top1_max``: the quantized top-1) and ``ptq_report.json`` (formats, ranges, top-1 before and after).

    Raises:
        ByoModelError: see :func:`load_float_model` and :func:`quantize_float_model`.
        board.errors.DatasetError: no CIFAR-10.
    """
    from board.cifar10 import load_split
    from training.data import preprocess, preprocessing_spec

    model = load_float_model(model_path)
    if calibration_images < 1:
        raise ByoModelError(f"calibration_images must be >= 1, got {calibration_images}")
    train = load_split("train", cifar10_dir).head(calibration_images)
    calib = train.images.astype(np.float32) / float(input_scale)
    q_model, report = quantize_float_model(
        model, calib, input_scale, weight_bits, activation_bits, source=str(Path(model_path).resolve())
    )
    test = load_split("test", cifar10_dir).head(test_images)
    y_float = model.predict(test.images.astype(np.float32) / float(input_scale), batch_size=500, verbose=0)
    y_q = q_model.predict(preprocess(test.images), batch_size=500, verbose=0)
    report.top1_float = float(np.mean(y_float.argmax(1) == test.labels))
    report.top1_quantized = float(np.mean(y_q.argmax(1) == test.labels))
    report.agreement = float(np.mean(y_float.argmax(1) == y_q.argmax(1)))
    report.test_images = len(test)

    out = Path(out_dir)
    staging = out.with_name(out.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    q_model.save(staging / "model.h5", include_optimizer=False)
    model_id = _slug(out.name)  # the folder's name, as for a training folder
    (staging / "config.json").write_text(
        json.dumps(
            {
                "model_id": model_id,
                "source": report.source,
                "preprocessing": preprocessing_spec(),
                "method": "post-training quantization",
            },
            indent=2,
        )
        + "\n"  # fmt: skip
    )
    (staging / "metrics.json").write_text(
        json.dumps(
            {
                "test_top1_max": report.top1_quantized,
                "test_top1_float": report.top1_float,
                "test_images": report.test_images,
                "epochs": None,
            },
            indent=2,
        )
        + "\n"  # fmt: skip
    )
    (staging / "ptq_report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    if out.exists():
        import shutil

        shutil.rmtree(out)
    staging.rename(out)
    return report


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_") or "model"


def describe(report: PtqReport) -> str:
    """A short human-readable summary."""
    lines = [
        f"post-training quantization of {report.source} (input pixel/{report.input_scale:g}, "
        f"weights {report.weight_bits} bits, activations {report.activation_bits} bits, "
        f"ranges from {report.calibration_images} training images)"
    ]
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
    return "\n".join(lines)
