"""Calibration: rebuild the published designs of ``calibration.json``, refit the scales, recompute the errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hls_build.estimate.cost import CALIBRATION_FILE, load_coefficients
from hls_build.estimate.design import estimate_design
from hls_build.estimate.graph import DesignGraph, EstimateError
from hls_build.estimate.read import graph_from_project


def build_calibration_graph(design: Mapping[str, Any], work_dir: str | Path) -> DesignGraph:
    """Rebuild a published design from its description in ``calibration.json`` and read its firmware.

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


def _predict(parts: Mapping[str, float], scale: float) -> float:
    """LUT or FF of a calibration point from its stored parts and a MAC scale."""
    return parts["storage"] + parts["other"] + scale * parts["mac"]


def _pct(pred: float, ref: float) -> float:
    return round(100.0 * (pred - ref) / ref, 1) if ref else 0.0


def calibration_errors(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-resource errors of the calibrated model on every point of ``calibration.json`` (from stored numbers).

    For each point with a ``model`` block: ``predicted = storage + scale * logic`` (LUT, FF) with the stored
    coefficients, BRAM/DSP/interval as stored, compared with the point's ``target``. Returns
    ``{point_id: {resource: percent error}}`` (positive = the estimate is higher).
    """
    coeff = data["model"]["coefficients"]
    out: dict[str, dict[str, Any]] = {}
    for point in data["points"]:
        model, target = point.get("model"), point.get("target")
        if not model or not target:
            continue
        errs: dict[str, Any] = {}
        for res, scale in (("LUT", coeff["lut_scale"]), ("FF", coeff["ff_scale"])):
            if res in target:
                errs[res] = _pct(_predict(model[res], scale), target[res])
                errs[f"{res}_before_fit"] = _pct(_predict(model[res], 1.0), target[res])
        for res in ("BRAM_18K", "DSP", "interval_cycles", "images_per_s"):
            if res in target and res in model:
                errs[res] = _pct(model[res], target[res])
        out[point["id"]] = errs
    return out


def calibrate(path: str | Path | None = None, work_dir: str | Path | None = None, write: bool = False) -> dict:
    """Rebuild every calibration design, re-fit ``lut_scale``/``ff_scale`` and recompute the errors.

    The scales of the multiply-accumulate logic are fitted on the points marked ``"use": "fit"`` (least squares
    on the relative error: ``scale = sum(mac*(target-fixed)/target^2) / sum(mac^2/target^2)`` with ``fixed =
    storage + other``); with several fit points the leave-one-out error is computed too. BRAM and DSP have no
    fitted factor.

    Args:
        path: the calibration file (default ``hls_build/calibration.json``).
        work_dir: scratch folder for the hls4ml projects (default: a temporary folder).
        write: write the refreshed file back.

    Returns:
        The refreshed calibration data.
    """
    import tempfile

    path = Path(path) if path is not None else CALIBRATION_FILE
    data = json.loads(path.read_text())
    raw_k = replace(load_coefficients(path), lut_scale=1.0, ff_scale=1.0)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for point in data["points"]:
            design = point.get("design")
            if not design:
                continue
            graph = build_calibration_graph({**design, "id": point["id"]}, tmp)
            est = estimate_design(graph, None, coefficients=raw_k, check=False)
            point["model"] = {
                "LUT": {k: round(v, 1) for k, v in est.parts["LUT"].items()},
                "FF": {k: round(v, 1) for k, v in est.parts["FF"].items()},
                "BRAM_18K": est.totals["BRAM_18K"],
                "DSP": est.totals["DSP"],
                "interval_cycles": est.interval_cycles,
                "images_per_s": round(est.images_per_s, 1),
            }
    fit = [p for p in data["points"] if p.get("use") == "fit" and p.get("model")]

    def fit_scale(points: list[dict], res: str) -> float:
        def fixed(p: dict) -> float:
            return p["model"][res]["storage"] + p["model"][res]["other"]

        num = sum(p["model"][res]["mac"] * (p["target"][res] - fixed(p)) / p["target"][res] ** 2 for p in points)
        den = sum((p["model"][res]["mac"] / p["target"][res]) ** 2 for p in points)
        return round(num / den, 3) if den else 1.0

    coeff = data["model"]["coefficients"]
    loo: dict[str, Any] = {}
    for res, key in (("LUT", "lut_scale"), ("FF", "ff_scale")):
        coeff[key] = fit_scale(fit, res)
        if len(fit) >= 2:
            errs = []
            for held in fit:
                scale = fit_scale([p for p in fit if p is not held], res)
                errs.append(_pct(_predict(held["model"][res], scale), held["target"][res]))
            loo[res] = errs
    data["errors"] = {"per_point_pct": calibration_errors(data), "leave_one_out_pct": loo or None}
    if write:
        path.write_text(json.dumps(data, indent=1) + "\n")
    return data
