"""The interval model against throughput MEASURED on a PYNQ-Z2 (MLPerf Tiny, hls4ml image-classification entries).

Two published entries run the same ResNet-like CNN (RN07 in MLPerf Tiny v0.7, RN08 in v1.0: 32x32x3 ->
Conv1x1(32) -> Conv4x4(4) -> Conv4x4(32) -> Conv4x4/s4(32) -> Conv4x4(32) -> Dense(10), skips off, 'same'
padding) on a PYNQ-Z2 at 150 MHz (ClockPeriod 6.67 ns) with hls4ml's VivadoAccelerator backend and the Resource
strategy, at ReuseFactor 16384 (RN07) and 512/4096 (RN08). Their repositories hold the model description
(``training/RN0x.yml``, ``resnet_v1_eembc.py``), the conversion config (``inference/pynq-z2/accuracy_power.yml``)
and the EEMBC harness log with the measured throughput (``results/pynq-z2/ic/RN0x/performance/results.txt``), but
no firmware and no synthesis report.

So the firmware is REBUILT, untrained (weights do not change the schedule), with this project's hls4ml 1.3 from
that description and config (:func:`rebuild_firmware`, needs TensorFlow and hls4ml; run once, its headers are
committed), and :func:`throughput_check` compares ``clock / interval`` of the estimate (the accelerator alone)
with the measured inferences/s (accelerator + AXI transfers + the bare-metal driver and harness). The difference
is reported as the time per inference the interval model does not cover; it is not modelled here.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from hls_build.calibration_fit import CalibrationDesign, CalibrationError, copy_project_headers, load_designs

THROUGHPUT_KIND = "measured_throughput"


def parse_eembc_performance(text: str) -> float:
    """The median throughput (inferences/s) of an EEMBC ``performance/results.txt`` log.

    Raises:
        CalibrationError: no ``Median throughput is X inf./sec.`` line.
    """
    m = re.search(r"Median throughput is\s+([\d.]+)\s+inf\./sec\.", text)
    if not m:
        raise CalibrationError("EEMBC log: no 'Median throughput is ... inf./sec.' line")
    return float(m.group(1))


def throughput_designs() -> list[CalibrationDesign]:
    """The calibration designs with a measured throughput (their ``reports`` name a ``throughput`` log)."""
    return [d for d in load_designs() if "throughput" in d.meta.get("reports", {})]


def throughput_check(design: CalibrationDesign, fit: dict[str, Any] | None = None) -> dict[str, Any]:
    """Estimated accelerator throughput of a design against its measured throughput.

    Returns:
        ``measured_images_per_s``, ``estimated_images_per_s`` (clock / interval, the calibrated interval
        constants), ``interval_cycles``, ``clock_mhz``, ``error_pct`` (estimate vs measured),
        ``unmodelled_ms_per_image`` (measured time per image minus the estimated interval: AXI transfers, driver,
        harness, and the interval model's own error).
    """
    from hls_build.calibration_fit import estimate_hls_project

    measured = parse_eembc_performance((design.folder / design.meta["reports"]["throughput"]).read_text())
    est = estimate_hls_project(design.folder, hls_tool=design.meta.get("hls_tool"), fit=fit)
    clock = float(est["clock_mhz"])
    per_image_est_ms = est["interval_cycles"] / (clock * 1e3)
    estimated = 1000.0 / per_image_est_ms
    return {
        "name": design.name,
        "title": design.meta.get("title"),
        "source": design.meta["source"],
        "clock_mhz": round(clock, 3),
        "interval_cycles": est["interval_cycles"],
        "bottleneck": est["bottleneck"],
        "estimated_images_per_s": round(estimated, 1),
        "measured_images_per_s": measured,
        "error_pct": round(100.0 * (estimated - measured) / measured, 1),
        "unmodelled_ms_per_image": round(1000.0 / measured - per_image_est_ms, 3),
    }


def _build_model(spec: dict[str, Any]) -> Any:
    """The untrained Keras model of a ``rebuild_mlperf`` description (plain Conv2D/ReLU/Flatten/Dense)."""
    from training.keras_compat import keras  # first: selects tf-keras for hls4ml

    layers = keras.layers
    inp = layers.Input(tuple(spec["input_shape"]), name="input_1")
    x = inp
    for layer in spec["layers"]:
        kind, name = layer["type"], layer["name"]
        if kind == "conv2d":
            x = layers.Conv2D(layer["filters"], layer["kernel"], strides=layer.get("strides", 1),
                              padding=layer.get("padding", "same"), name=name)(x)  # fmt: skip
        elif kind == "relu":
            x = layers.Activation("relu", name=name)(x)
        elif kind == "flatten":
            x = layers.Flatten(name=name)(x)
        elif kind == "dense":
            x = layers.Dense(layer["units"], name=name)(x)
        else:
            raise CalibrationError(f"rebuild_mlperf: layer type {kind!r} is not supported")
    return keras.Model(inp, x)


def rebuild_firmware(design: CalibrationDesign, work_dir: str | Path | None = None) -> list[str]:
    """Write ``firmware/`` (headers only) of a measured-throughput design from its ``rebuild_mlperf`` description.

    The hls4ml settings are the published config's: backend, board, interface, clock period, io type, strategy,
    default ReuseFactor and precision, and per layer the ReuseFactor and precisions it overrides.
    """
    import hls4ml

    spec = design.meta.get("rebuild_mlperf")
    if not spec:
        raise CalibrationError(f"{design.name}: design.json has no 'rebuild_mlperf' description")
    model = _build_model(spec)
    hls = spec["hls4ml"]
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=hls["backend"])
    cfg["Model"].update(ReuseFactor=hls["reuse_factor"], Strategy=hls["strategy"], Precision=hls["precision"])
    for name, entry in cfg["LayerName"].items():
        entry["ReuseFactor"] = hls["reuse_factor"]
        entry["Strategy"] = hls["strategy"]
        for key, value in hls.get("layers", {}).get(name, {}).items():
            if key == "Precision" and isinstance(entry.get("Precision"), dict):
                entry["Precision"].update(value)
            else:
                entry[key] = value
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        out = Path(tmp) / "prj"
        hls_model = hls4ml.converters.convert_from_keras_model(
            model, hls_config=cfg, output_dir=str(out), backend=hls["backend"], board=hls["board"],
            io_type=hls["io_type"], clock_period=hls["clock_period_ns"], interface=hls["interface"],
        )  # fmt: skip
        hls_model.write()
        return copy_project_headers(out, design)
