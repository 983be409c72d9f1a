"""The hls4ml configuration of a CIFAR ResNet, built in exactly one function, and the one conversion call.

Before conversion a model is prepared (:func:`prepare_model`): every ``conv -> BatchNormalization`` pair is folded
into one convolution with fixed-point weights and bias (``hls_build.fold``). Every precision is then derived from
the prepared model (``hls_build.precision``), none is set by hand:

* the input is ``ap_ufixed<8,0>``: a uint8 pixel / 256, exact (see ``training.data``; an imported model that
  subtracts a mean before the accelerator streams its own type, ``training.data.model_input``);
* weights, biases and ReLU outputs come from the QKeras quantizers (hls4ml reads them);
* convolution and dense accumulators and results, Add results and the average pooling hold their exact values
  over the whole range the weights allow (static bounds), so nothing rounds or wraps before the next quantizer;
* the logits (the network's output, streamed back over DMA) keep their exact type too: the softmax/argmax input
  cannot overflow, and the firmware's logits equal the Keras model's bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hls_build.bind import bind_multipliers, bindings_from_layer_config, bindings_of, mark_bindings
from hls_build.fold import FoldedLayer, fold_batchnorm, needs_folding
from hls_build.fuse import fuse_relus, keras_outputs, serialize_result_casts
from hls_build.precision import Precisions, derive_precisions, hls_precision_entries
from training.data import input_fixed_point
from training.keras_compat import keras

log = logging.getLogger(__name__)

#: Keys a plan or a user may set per layer (``HlsSettings.layer_config``).
LAYER_CONFIG_KEYS = ("ReuseFactor", "Strategy", "Precision", "Multiplier")


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
            (``python -m hls_build plan``); they win over ``reuse_factor`` and ``strategy``. A ``Precision``
            dict (e.g. ``{"accum": "ap_fixed<12,4>"}``) overrides a derived type; the build's gate judges it.
            ``"Multiplier": "dsp"|"fabric"`` binds a conv/dense layer's products (``hls_build.bind``).
        fifo_depths: depth of the stream after each hls4ml output variable, from a fit plan; empty keeps
            hls4ml's defaults (safe, large). Planned depths are analytic: check them with C/RTL co-simulation
            before trusting a bitstream (the C-simulation cannot deadlock, so it does not test them).
        fuse_relu: fold each ReLU into the convolution or Add before it (``hls_build.fuse``): the same values,
            one process and one wide FIFO fewer per ReLU.
    """

    board: str = "pynq-z2"
    clock_mhz: float = 100.0
    reuse_factor: int = 64
    strategy: str = "Resource"
    io_type: str = "io_stream"
    layer_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fifo_depths: Mapping[str, int] = field(default_factory=dict)
    fuse_relu: bool = True

    @property
    def clock_period_ns(self) -> float:
        """Clock period handed to hls4ml."""
        return 1000.0 / self.clock_mhz


def prepare_model(model: keras.Model) -> tuple[keras.Model, list[FoldedLayer]]:
    """The model as the firmware computes it: BatchNormalization folded (a model without any comes back as is).

    Returns:
        The prepared model and the folds made (empty when there was nothing to fold).
    """
    if not needs_folding(model):
        return model, []
    folded, info = fold_batchnorm(model)
    log.info("folded %d BatchNormalization layers into the layers before them", len(info))
    return folded, info


def output_fixed_point(model: keras.Model, precisions: Precisions | None = None) -> str:
    """The type of the logits streamed back over DMA: the exact type of the prepared model's output."""
    return (precisions or derive_precisions(model)).output_fixed_point(model)


def _pointwise_reuse_factor(layer: keras.layers.Layer, reuse_factor: int) -> int:
    """The ReuseFactor to give a layer: for a 1x1 convolution, the valid one closest to ``reuse_factor``.

    hls4ml 1.3 corrects an invalid ReuseFactor of a 1x1 convolution on the layer but writes the requested one into
    the matrix-multiply config it derives for the pointwise kernel, which then names a kernel that does not exist
    (``DenseResource_rf_gt_nin``: the C-simulation does not compile) when ``reuse_factor`` does not divide
    ``n_in * n_out``. Choosing the valid one first, by hls4ml's own rule, gives what hls4ml meant to build.
    """
    kernel = getattr(layer, "kernel_size", None)
    if kernel is None or tuple(kernel) != (1, 1) or "Conv2D" not in type(layer).__name__:
        return reuse_factor
    import hls4ml

    backend = hls4ml.backends.get_backend("VivadoAccelerator")
    valid = backend.get_valid_reuse_factors(int(layer.input_shape[-1]), int(layer.filters))
    return reuse_factor if reuse_factor in valid else backend.get_closest_reuse_factor(valid, reuse_factor)


def build_hls_config(model: keras.Model, settings: HlsSettings) -> dict[str, Any]:
    """The hls4ml ``hls_config`` dict for ``model``: the only place that writes hls4ml config keys.

    Args:
        model: a prepared (Q)Keras model (:func:`prepare_model`).
        settings: the conversion knobs.

    Returns:
        A dict for ``hls4ml.converters.convert_from_keras_model(hls_config=...)``.

    Raises:
        hls_build.precision.PrecisionError: a layer without an exact type (e.g. an unfolded BatchNormalization).
        ValueError: ``settings.layer_config`` names a missing layer or an unknown key.
    """
    import hls4ml

    precisions = derive_precisions(model)
    cfg = hls4ml.utils.config_from_keras_model(
        model, granularity="name", backend="VivadoAccelerator", default_precision="ap_fixed<16,6>"
    )
    cfg["Model"]["ReuseFactor"] = settings.reuse_factor
    cfg["Model"]["Strategy"] = settings.strategy
    layers = cfg["LayerName"]
    derived = hls_precision_entries(model, precisions)
    for layer in model.layers:
        entry = layers.get(layer.name)
        if entry is None:
            continue
        entry["ReuseFactor"] = _pointwise_reuse_factor(layer, settings.reuse_factor)
        prec = entry.setdefault("Precision", {})
        if not isinstance(prec, dict):
            prec = entry["Precision"] = {"result": prec}
        if type(layer).__name__ == "InputLayer":
            prec["result"] = input_fixed_point()
        prec.update(derived.get(layer.name, {}))
        # hls4ml splits a layer's ``activation="linear"`` off into a layer of its own named "<layer>_linear"
        # (default type ap_fixed<16,6>, which would wrap): it passes the layer's exact result through.
        linear = layers.get(f"{layer.name}_linear")
        if linear is not None and "result" in derived.get(layer.name, {}):
            lprec = linear.setdefault("Precision", {})
            if not isinstance(lprec, dict):
                lprec = linear["Precision"] = {}
            lprec["result"] = derived[layer.name]["result"]
    for name, overrides in settings.layer_config.items():
        if name not in layers:
            raise ValueError(f"layer_config names {name!r}, which is not a layer of {model.name}")
        unknown = set(overrides) - set(LAYER_CONFIG_KEYS)
        if unknown:
            raise ValueError(
                f"layer_config[{name!r}]: only {', '.join(LAYER_CONFIG_KEYS)} can be set, got {sorted(unknown)}"
            )
        for key, value in overrides.items():
            if key == "Multiplier":
                continue  # not an hls4ml key: hls_build.bind applies it to the written project
            if key == "Precision":
                # A deliberate override of a derived type (the bit-accuracy gate checks what it does).
                layers[name].setdefault("Precision", {}).update(dict(value))
            else:
                layers[name][key] = value
    return cfg


def convert(
    model: keras.Model,
    settings: HlsSettings,
    output_dir: str | Path,
    project_name: str = "myproject",
    backend: str = "VivadoAccelerator",
    **kwargs: Any,
):
    """Convert a prepared model with hls4ml as every part of hls_build does (io_stream, AXI-stream wrapper).

    Args:
        model: a prepared model (:func:`prepare_model`).
        settings: the conversion knobs.
        output_dir: where hls4ml writes its project.
        project_name: the HLS top function's prefix.
        backend: ``VivadoAccelerator`` (the overlay) or ``Vivado`` (a bare IP, for estimates).
        **kwargs: passed on to hls4ml (e.g. ``part``).

    Returns:
        The hls4ml ``ModelGraph`` (not yet written), with its ReLUs fused when ``settings.fuse_relu``.
    """
    import hls4ml

    from hls_build.boards import hls_overrides_for

    args: dict[str, Any] = dict(
        hls_config=build_hls_config(model, settings),
        output_dir=str(output_dir),
        project_name=project_name,
        backend=backend,
        io_type=settings.io_type,
        clock_period=settings.clock_period_ns,
    )
    if backend == "VivadoAccelerator":
        args.update(
            interface="axi_stream",
            input_type=input_fixed_point(),
            output_type=output_fixed_point(model),
            **hls_overrides_for(settings.board),
        )
    args.update(kwargs)
    hls_model = hls4ml.converters.convert_from_keras_model(model, **args)
    mark_bindings(hls_model, bindings_from_layer_config(settings.layer_config))
    if settings.fuse_relu:
        hand_set = [name for name, c in settings.layer_config.items() if "result" in dict(c.get("Precision", {}))]
        fuse_relus(hls_model, keep=hand_set)
    return hls_model


def write_project(hls_model: Any) -> None:
    """Write the hls4ml project of a model from :func:`convert`, with hls_build's kernel change where it applies.

    ``hls_model.write()``, the plan's multiplier bindings (``hls_build.bind``), then, when ReLUs were fused into
    the model, the in-loop result conversion of the fully
    serial kernel (``hls_build.fuse.serialize_result_casts``). Every part of hls_build writes a project through
    here, so the estimate reads the firmware the build compiles.
    """
    hls_model.write()
    bind_multipliers(hls_model.config.get_output_dir(), bindings_of(hls_model))
    if keras_outputs(hls_model):  # some ReLU was fused
        serialize_result_casts(hls_model.config.get_output_dir())
