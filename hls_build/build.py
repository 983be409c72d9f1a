"""Turn a trained model into an overlay bundle: hls4ml conversion, C-simulation, bit-accuracy gate, ONNX reference.

The build is a fixed list of steps, each writing its output into the bundle folder, which is assembled under a
temporary name and renamed at the end: an interrupted or failed build never leaves a bundle that looks finished,
and never removes the previous good one before the new one is complete.

Steps: prepare (BatchNormalization folded, every type derived exactly: ``hls_build.config``) -> convert (hls4ml,
VivadoAccelerator, io_stream) -> write + fix the generated project -> compile the
C-simulation library -> gate (C-simulation vs quantized Keras argmax agreement on real test images) -> ONNX
reference (tf2onnx) -> Keras predictions on the test set -> manifest with sha256 of every file.

Without Vivado there is no bitstream: the bundle says so (``emulated: true``, ``bitstream: null``) and the board
runtime drives its C-simulation through an emulated PYNQ device.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from board.bundle import Manifest, TensorSpec, write_manifest
from board.cifar10 import CLASSES, Split, load_split
from board.fast_engine import FastEngine
from board.fixed_point import FixedPoint
from hls_build.boards import board_spec
from hls_build.config import HlsSettings, convert, output_fixed_point, prepare_model, write_project
from hls_build.csim import CSimLibrary, compile_library, fix_generated_sources
from hls_build.estimate import estimate_design, graph_from_project
from hls_build.firmware_graph import write_firmware_graph
from hls_build.fuse import keras_outputs
from hls_build.vivado import fix_generated_project
from training.data import INPUT_FIXED_POINT, preprocess, preprocessing_spec
from training.keras_compat import keras, tf

log = logging.getLogger(__name__)

PROJECT_NAME = "myproject"
#: The PYNQ-Z2 block design: AXI DMA in simple mode with a 26-bit length register, under hls4ml's ``hier_0``.
DMA_LENGTH_WIDTH_BITS = 26


class BuildError(RuntimeError):
    """The build stopped: a failed gate, a bad model or a broken tool; nothing was written over a good bundle."""


@dataclass(frozen=True)
class BuildOptions:
    """What to build and how strictly.

    Attributes:
        settings: hls4ml conversion knobs (board, clock, reuse factor, strategy).
        gate_images: CIFAR-10 test images on which the firmware (the fast engine) is compared with the Keras model,
            layer by layer and by argmax.
        csim_images: the first this many gate images also run on the hls4ml C-simulation, which must match the fast
            engine bit for bit (the proof that the gate measured the firmware).
        min_agreement: the build fails when the argmax agreement on ``gate_images`` is lower.
        keras_prediction_images: test images whose Keras argmax is stored in the bundle (for the board's comparison).
    """

    settings: HlsSettings = HlsSettings()
    gate_images: int = 1000
    csim_images: int = 100
    min_agreement: float = 0.99
    keras_prediction_images: int = 10_000


def layer_errors(
    model: keras.Model,
    firmware_trace: dict[str, np.ndarray],
    x: np.ndarray,
    keras_names: dict[str, str] | None = None,
) -> list[dict]:
    """One row per layer, in firmware order: max |firmware - Keras| and the fraction of values that differ.

    Only layers that exist in both are compared: hls4ml's inserted layers (padding, clones) have no Keras
    counterpart, and each Keras layer's output is the value its hls4ml namesake streams on. ``keras_names`` maps
    a firmware layer to another Keras layer where they differ: a convolution that absorbed its ReLU
    (``hls_build.fuse``) streams the ReLU's output.
    """
    keras_names = keras_names or {}
    in_keras = {lyr.name for lyr in model.layers}
    names = [n for n in firmware_trace if keras_names.get(n, n) in in_keras]
    probe = keras.Model(model.input, [model.get_layer(keras_names.get(n, n)).output for n in names])
    outs = probe.predict(x, batch_size=250, verbose=0)
    outs = outs if isinstance(outs, list) else [outs]
    table = []
    for name, keras_out in zip(names, outs):
        err = np.abs(firmware_trace[name].reshape(keras_out.shape) - keras_out)
        row = {"layer": name, "max_abs_error": float(err.max()), "differing_fraction": float(np.mean(err > 0))}
        if keras_names.get(name, name) != name:
            row["keras_layer"] = keras_names[name]
        table.append(row)
    return table


def first_divergent_layer(table: list[dict]) -> dict | None:
    """The row of the first layer (firmware order) whose output differs from Keras anywhere, or None."""
    return next((row for row in table if row["max_abs_error"] > 0), None)


def _container(fixed_point: str) -> str:
    from board.fixed_point import FixedPoint

    return np.dtype(FixedPoint.parse(fixed_point).container_dtype).name


def _tool_versions() -> dict[str, str]:
    import hls4ml
    import onnx
    import qkeras
    import tf2onnx

    gxx = subprocess.run(["g++", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        "qkeras": getattr(qkeras, "__version__", "unknown"),
        "hls4ml": hls4ml.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "g++": gxx or "unknown",
    }


def export_onnx(model: keras.Model, path: Path) -> None:
    """Write the float ONNX export of ``model`` (quantizers become Round/Clip ops): input ``image``, NHWC float32."""
    import tf2onnx

    spec = (tf.TensorSpec((None, 32, 32, 3), tf.float32, name="image"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(path))


def _check_model(model: keras.Model) -> None:
    shape = tuple(model.input_shape[1:])
    if shape != (32, 32, 3):
        raise BuildError(f"model input is {shape}; the CIFAR-10 overlay streams 32x32x3 images")
    if model.output_shape[-1] != len(CLASSES):
        raise BuildError(f"model has {model.output_shape[-1]} outputs; CIFAR-10 has {len(CLASSES)} classes")


def _diagnose_with_traced_csim(model: keras.Model, hls_dir: Path, firmware_graph: dict, x: np.ndarray, raw: np.ndarray,
                               engine: FastEngine, work_dir: Path, keras_names: dict[str, str]) -> str:  # fmt: skip
    """When the fast engine cannot stand in for the C-simulation: trace the C-simulation itself, layer by layer.

    Returns:
        A sentence naming the first layer where the C-simulation differs from Keras and the first where the fast
        engine differs from the C-simulation (or why the trace could not be made).
    """
    from board.csim_runner import CSimTracer, build_traced_library, first_divergence

    try:
        graph = json.loads(Path(firmware_graph["graph"]).read_text())
        lib = build_traced_library(hls_dir, graph, work_dir / "traced")
        trace = CSimTracer(lib, graph, FixedPoint.parse(INPUT_FIXED_POINT)).trace(raw)
    except Exception as exc:  # a diagnosis must not hide the error it explains
        return f"(no layer trace of the C-simulation: {exc})"
    keras_div = first_divergent_layer(layer_errors(model, trace, x, keras_names))
    engine_div = first_divergence(trace, engine.trace(raw))
    vs_keras = (
        f"the C-simulation's first layer differing from Keras is {keras_div['layer']!r} "
        f"(max error {keras_div['max_abs_error']:.3g})"
        if keras_div
        else "the C-simulation equals Keras on every layer"
    )
    vs_engine = f"; the fast engine first differs at {engine_div.layer!r}" if engine_div else ""
    return f"On {len(x)} images {vs_keras}{vs_engine}."


def build_bundle(
    model_dir: str | os.PathLike,
    overlays_dir: str | os.PathLike = "overlays",
    work_dir: str | os.PathLike = "build/hls",
    options: BuildOptions | None = None,
    test_split: Split | None = None,
) -> Path:
    """Build the overlay bundle of a trained model.

    Args:
        model_dir: a training output folder (``model.h5``, ``config.json``, ``metrics.json``).
        overlays_dir: root of the overlay tree; the bundle goes to ``<overlays_dir>/<board>/<model_id>/``.
        work_dir: scratch space for hls4ml's project before it is copied into the bundle.
        options: build options.
        test_split: CIFAR-10 test data (loaded when None).

    Returns:
        The bundle folder.

    Raises:
        BuildError: the model does not fit the overlay, or the C-simulation disagrees with Keras.
        board.errors.DatasetError / ToolMissingError: no CIFAR-10, no g++.
    """
    from training.train import load_trained_model

    options = options or BuildOptions()
    settings = options.settings
    model_dir = Path(model_dir)
    train_info = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").is_file() else {}
    model_id = train_info.get("model_id", model_dir.name)
    source_model = load_trained_model(model_dir / "model.h5")
    _check_model(source_model)
    # The firmware computes the prepared model (BatchNormalization folded); it is what the gate compares with.
    model, folds = prepare_model(source_model)
    out_fp = output_fixed_point(model)
    test_split = test_split if test_split is not None else load_split("test")
    times: dict[str, float] = {}

    final = (Path(overlays_dir) / settings.board / model_id).resolve()
    staging = final.with_name(final.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    hls_dir = staging / "hls"

    t = time.perf_counter()
    log.info("converting %s with hls4ml (VivadoAccelerator, %s, %s)", model_id, settings.board, settings.io_type)
    hls_model = convert(model, settings, hls_dir, project_name=PROJECT_NAME)
    keras_names = keras_outputs(hls_model)  # fused ReLUs: the convolution streams the ReLU's output
    for var, depth in settings.fifo_depths.items():
        if var not in hls_model.output_vars:
            raise BuildError(f"the plan's FIFO depths name {var!r}, which is not a stream of this design")
        # How hls4ml's own FIFO-depth optimization sets a stream's depth.
        hls_model.output_vars[var].pragma = ("stream", int(depth))
    write_project(hls_model)
    in_bits = 8 * np.dtype(_container(INPUT_FIXED_POINT)).itemsize
    out_bits = 8 * np.dtype(_container(out_fp)).itemsize
    fixes = fix_generated_sources(hls_dir, PROJECT_NAME)
    fixes += fix_generated_project(
        hls_dir, board=settings.board, model_id=model_id, input_bits=in_bits, output_bits=out_bits,
        clock_mhz=settings.clock_mhz, project_name=PROJECT_NAME, length_width_bits=DMA_LENGTH_WIDTH_BITS,
    )  # fmt: skip
    firmware_graph = write_firmware_graph(hls_model, staging / "firmware")  # for board.fast_engine
    times["convert"] = time.perf_counter() - t
    # ESTIMATED resources of the accelerator before any synthesis, recorded as such in the manifest.
    estimate = estimate_design(
        graph_from_project(hls_dir, PROJECT_NAME, clock_mhz=settings.clock_mhz, part=board_spec(settings.board).part),
        settings.board,
    )
    log.info("estimate (pre-synthesis): %s", ", ".join(f"{k} {v:.0f}%" for k, v in estimate.utilization().items()
                                                        if v is not None))  # fmt: skip

    t = time.perf_counter()
    log.info("compiling the C-simulation (g++)")
    lib = compile_library(hls_dir, hls_dir / "firmware", PROJECT_NAME, build_dir=Path(work_dir) / model_id)
    times["compile_csim"] = time.perf_counter() - t

    t = time.perf_counter()
    gate = test_split.head(options.gate_images)
    x_gate = preprocess(gate.images)
    raw_gate = FixedPoint.parse(INPUT_FIXED_POINT).encode(x_gate.reshape(len(gate), -1))
    # The firmware's outputs: the fast engine, first proven bit-identical to the C-simulation on a subset.
    engine = FastEngine.from_files(firmware_graph["graph"], firmware_graph["weights"])
    n_csim = min(options.csim_images, len(gate))
    log.info("gate: C-simulation vs fast engine on %d images, firmware vs Keras on %d", n_csim, len(gate))
    # Compared as exact values (float64 holds every code of the logits' type; float32 would round wide ones).
    csim = CSimLibrary(lib, 32 * 32 * 3, len(CLASSES), f"{PROJECT_NAME}_float")
    y_csim = csim.predict(x_gate[:n_csim], dtype=np.float64)
    trace = engine.trace(raw_gate)
    y_fw_exact = FixedPoint.parse(out_fp).decode(engine.predict_raw(raw_gate))
    csim_identical = int(np.sum(np.all(y_fw_exact[:n_csim] == y_csim, axis=1)))
    y_fw = y_fw_exact.astype(np.float32)  # as Keras computes: float32
    if csim_identical != n_csim:
        why = _diagnose_with_traced_csim(model, hls_dir, firmware_graph, x_gate[:5], raw_gate[:5], engine,
                                         Path(work_dir) / model_id, keras_names)  # fmt: skip
        raise BuildError(
            f"the fast engine differs from the C-simulation on {n_csim - csim_identical} of {n_csim} images: the "
            f"firmware graph does not describe this design. {why} The partial build is in {staging}."
        )
    y_keras_gate = model.predict(x_gate, batch_size=500, verbose=0)
    agreement = float(np.mean(y_fw.argmax(1) == y_keras_gate.argmax(1)))
    csim_agreement = float(np.mean(y_csim.argmax(1) == y_keras_gate[:n_csim].argmax(1)))
    max_diff = float(np.max(np.abs(y_fw - y_keras_gate)))
    layers = layer_errors(model, trace, x_gate, keras_names)
    divergent = first_divergent_layer(layers)
    times["gate"] = time.perf_counter() - t
    log.info("gate: argmax agreement %.4f, max |logit difference| %.4g, first layer differing from Keras: %s",
             agreement, max_diff, divergent["layer"] if divergent else "none")  # fmt: skip
    if agreement < options.min_agreement:
        raise BuildError(
            f"the firmware agrees with the Keras model on {agreement:.1%} of {len(gate)} test images, below the "
            f"{options.min_agreement:.0%} gate (max logit difference {max_diff:.3g}); the first layer whose "
            f"output differs from Keras is {divergent['layer']!r} (max error {divergent['max_abs_error']:.3g}). "
            f"The partial build is in {staging}."
            if divergent
            else f"the firmware agrees with the Keras model on {agreement:.1%} of {len(gate)} test images, below "
            f"the {options.min_agreement:.0%} gate. The partial build is in {staging}."
        )

    t = time.perf_counter()
    export_onnx(model, staging / "reference.onnx")
    # The model the firmware computes (folded); the training folder keeps the source.
    model.save(staging / "model.h5", include_optimizer=False)
    for name in ("config.json", "metrics.json", "history.csv"):
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, staging / f"training_{name}")
    kp = test_split.head(options.keras_prediction_images)
    logits = model.predict(preprocess(kp.images), batch_size=500, verbose=0)
    np.save(staging / "keras_predictions.npy", logits.argmax(1).astype(np.int16))
    keras_top1 = float(np.mean(logits.argmax(1) == kp.labels))
    if folds:
        source_logits = source_model.predict(preprocess(kp.images), batch_size=500, verbose=0)
        source_top1 = float(np.mean(source_logits.argmax(1) == kp.labels))
        fold_agreement = float(np.mean(source_logits.argmax(1) == logits.argmax(1)))
    else:
        source_top1, fold_agreement = keras_top1, 1.0
    times["reference"] = time.perf_counter() - t
    # hls4ml's own generated helpers that the bundle does not use (its driver hard-codes hier_0 and ignores its
    # arguments; the board package has the driver).
    for junk in ("axi_stream_driver.py", "tb_data"):
        p = hls_dir / junk
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()

    train_metrics = (
        json.loads((model_dir / "metrics.json").read_text()) if (model_dir / "metrics.json").is_file() else {}
    )
    manifest = Manifest(
        model_id=model_id,
        board=settings.board,
        input=TensorSpec("image", [32, 32, 3], INPUT_FIXED_POINT, _container(INPUT_FIXED_POINT)),
        output=TensorSpec("logits", [len(CLASSES)], out_fp, _container(out_fp)),
        preprocessing=preprocessing_spec(),
        emulated=True,
        csim_library=lib.relative_to(staging).as_posix(),
        csim_entry=f"{PROJECT_NAME}_float",
        onnx_reference="reference.onnx",
        dma={
            "ip_name": "hier_0/axi_dma_0",
            "max_transfer_bytes": (1 << DMA_LENGTH_WIDTH_BITS) - 1,
            "length_width_bits": DMA_LENGTH_WIDTH_BITS,
            "mm2s_data_width_bits": in_bits,
            "s2mm_data_width_bits": out_bits,
        },
        hls={
            "backend": "VivadoAccelerator",
            "project_name": PROJECT_NAME,
            "project_dir": "hls",
            "io_type": settings.io_type,
            "interface": "axi_stream",
            "clock_mhz": settings.clock_mhz,
            "reuse_factor": settings.reuse_factor,
            "strategy": settings.strategy,
            # hls4ml converts a ZCU104 as its ZCU102 and fix_generated_project corrects the part: record the board's.
            "part": board_spec(settings.board).part,
            "generated_file_fixes": fixes,
            "layer_config": {k: dict(v) for k, v in settings.layer_config.items()},
            "fifo_depths": dict(settings.fifo_depths),
            "batchnorm_folds": [dataclasses.asdict(f) for f in folds],
            "fused_relus": dict(keras_names),
            "fifo_depths_source": "fit plan (analytic, not co-simulated)" if settings.fifo_depths else "hls4ml default",
            "firmware_graph": Path(firmware_graph["graph"]).relative_to(staging).as_posix(),
            "firmware_weights": Path(firmware_graph["weights"]).relative_to(staging).as_posix(),
        },
        metrics={
            # Keras top-1 of the model the firmware computes (BatchNormalization folded), and of the trained one.
            "keras_top1": keras_top1,
            "keras_top1_before_folding": source_top1,
            "folded_vs_trained_agreement": fold_agreement,
            "keras_top1_images": len(kp),
            "keras_predictions_count": len(kp),
            "csim_vs_keras_agreement": csim_agreement,
            "csim_vs_keras_images": n_csim,
            "csim_vs_fast_engine_identical": csim_identical,
            "firmware_vs_keras_agreement": agreement,
            "firmware_vs_keras_max_abs_logit_diff": max_diff,
            "firmware_vs_keras_images": len(gate),
            "firmware_vs_keras_layers": layers,
            "first_layer_differing_from_keras": divergent["layer"] if divergent else None,
            "training_test_top1_max": train_metrics.get("test_top1_max"),
            "training_epochs": train_metrics.get("epochs"),
            "measured_on": "host (Keras and hls4ml C-simulation; no FPGA)",
        },
        resources={"estimate": estimate.to_manifest_entry()},
        tool_versions=_tool_versions(),
        classes=list(CLASSES),
        created_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    write_manifest(staging, manifest)
    (Path(work_dir) / model_id).mkdir(parents=True, exist_ok=True)
    (Path(work_dir) / model_id / "time_per_step.json").write_text(json.dumps(times, indent=2) + "\n")
    # Swap the finished bundle in; the old one stays until the new one is complete.
    if final.exists():
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old)
    else:
        os.replace(staging, final)
    log.info("bundle written to %s (Keras top-1 %.4f on %d test images)", final, keras_top1, len(kp))
    return final
