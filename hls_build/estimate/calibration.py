"""Rebuilding a published design from its description (the calibration designs that publish no firmware).

The calibration itself (fit, leave-one-out errors, bands) is :mod:`hls_build.calibration_fit`; its result,
``hls_build/calibration_fit.json``, is what every estimate reads (:func:`hls_build.estimate.load_coefficients`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hls_build.estimate.graph import DesignGraph, EstimateError
from hls_build.estimate.read import graph_from_project


def build_calibration_graph(design: Mapping[str, Any], work_dir: str | Path) -> DesignGraph:
    """Rebuild a published design from its description (``design.json``'s ``rebuild``) and read its firmware.

    The description names a plain Keras model (``layers``: ``conv2d`` with ``filters``/``kernel``/``strides``/
    ``padding``, ``relu``, ``maxpool``, ``flatten``, ``dense`` with ``units``; ``nonzero`` keeps exactly that many
    non-zero weights, at seeded random positions, for pruned designs), the hls4ml settings (``precision`` for every
    type, ``strategy``, ``reuse_factor``, ``backend``, ``part`` or ``board``, ``clock_period_ns``) and the HLS tool
    (``hls_tool``). Needs TensorFlow and hls4ml (host environment).
    """
    # isort: off
    from training.keras_compat import keras  # first: selects tf-keras for hls4ml
    import hls4ml

    # isort: on

    rng = np.random.default_rng(int(design.get("seed", 0)))
    layers_api = keras.layers
    inp = layers_api.Input(tuple(design["input_shape"]), name="input_image")
    x = inp
    nonzero: dict[str, int] = {}
    for i, spec in enumerate(design["layers"]):
        kind, name = spec["type"], spec.get("name", f"{spec['type']}_{i}")
        if kind == "conv2d":
            x = layers_api.Conv2D(spec["filters"], spec["kernel"], strides=spec.get("strides", 1),
                                  padding=spec.get("padding", "valid"), name=name)(x)  # fmt: skip
        elif kind == "dense":
            x = layers_api.Dense(spec["units"], name=name)(x)
        elif kind == "relu":
            x = layers_api.Activation("relu", name=name)(x)
        elif kind == "maxpool":
            x = layers_api.MaxPooling2D(spec.get("size", 2), name=name)(x)
        elif kind == "flatten":
            x = layers_api.Flatten(name=name)(x)
        else:
            raise EstimateError(f"calibration design layer type {kind!r} is not supported")
        if "nonzero" in spec:
            nonzero[name] = int(spec["nonzero"])
    model = keras.Model(inp, x)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        w, b = weights
        flat = rng.uniform(0.1, 0.9, w.size) * rng.choice([-1.0, 1.0], w.size)
        if layer.name in nonzero:
            keep = rng.choice(w.size, nonzero[layer.name], replace=False)
            mask = np.zeros(w.size, bool)
            mask[keep] = True
            flat[~mask] = 0.0
        layer.set_weights([flat.reshape(w.shape), rng.uniform(-0.5, 0.5, b.shape)])
    backend = design.get("backend", "Vivado")
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend,
                                               default_precision=design["precision"])  # fmt: skip
    cfg["Model"]["Strategy"] = design["strategy"]
    cfg["Model"]["ReuseFactor"] = design["reuse_factor"]
    for entry in cfg["LayerName"].values():
        entry["Precision"] = design["precision"]
        entry["ReuseFactor"] = design["reuse_factor"]
        entry["Strategy"] = design["strategy"]
    out_dir = Path(work_dir) / design.get("id", "design")
    kwargs: dict[str, Any] = {"board": design["board"]} if "board" in design else {"part": design["part"]}
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=str(out_dir), backend=backend, io_type=design.get("io_type", "io_stream"),
        clock_period=design["clock_period_ns"], **kwargs,
    )  # fmt: skip
    hls_model.write()
    project = hls_model.config.get_project_name()
    clock = 1000.0 / design["clock_period_ns"]
    return graph_from_project(out_dir, project, clock_mhz=clock, part=design.get("part"),
                              hls_tool=design.get("hls_tool", "vitis"))  # fmt: skip
