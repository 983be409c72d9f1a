"""Turn a trained model into an overlay bundle: hls4ml conversion, C-simulation, bit-accuracy gate, ONNX reference.

The build is an ordered list of named steps (:data:`STEPS`, the shape of FINN's dataflow builder). Each step reads
its inputs from disk and writes its outputs to disk: the bundle's own files into the bundle being assembled
(``<overlays>/<board>/<model_id>.partial/``), everything else into the build's state folder
(``<work_dir>/<model_id>/steps/``). So a build can resume at any step (``build_bundle(..., from_step=NAME)``,
``python -m hls_build bundle ... --from-step NAME``); a step whose inputs are missing stops with a
:class:`BuildError` that names the file and the step that writes it. Each step's wall time goes into the manifest
(``build.steps``). The bundle is renamed into place only by the last step: an interrupted or failed build never
leaves a bundle that looks finished, and never removes the previous good one before the new one is complete.

The steps (see each ``_step_*`` function):

1. ``fold``: BatchNormalization folded into the layer before it (``hls_build.fold``);
2. ``derive_types``: every fixed-point type derived exactly (``hls_build.precision``);
3. ``convert``: hls4ml (VivadoAccelerator, io_stream) with those types and the plan's settings, each ReLU fused
   into its producer (``hls_build.fuse``), the project written and its generated files fixed;
4. ``fuse``: the fused results converted inside the serial kernel's reuse loop (``hls_build.fuse``);
5. ``firmware_graph``: the description of the firmware the fast engine runs (``hls_build.firmware_graph``);
6. ``compile``: the C-simulation library (g++);
7. ``gate``: the firmware (fast engine, proven equal to the C-simulation) against the Keras model, per layer;
8. ``estimate``: the pre-synthesis resource ESTIMATE (``hls_build.estimate``);
9. ``keras_reference``: the model the firmware computes and its predictions on the test set;
10. ``onnx_export``: the float ONNX reference (tf2onnx);
11. ``int8_reference``: the 8-bit ONNX reference (``hls_build.int8_reference``: onnxruntime static quantization,
    calibrated on training images) and both references' top-1 on the test images, by onnxruntime;
12. ``manifest``: the manifest with the sha256 of every file, then the bundle renamed into place.

A new step is one function taking the :class:`BuildContext` plus one :class:`Step` entry in :data:`STEPS`.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from board.bundle import Manifest, TensorSpec, write_manifest
from board.cifar10 import CLASSES, Split, load_split
from board.errors import CheckFailedError, ProjectError
from board.fast_engine import FastEngine
from board.fixed_point import FixedPoint
from hls_build.bind import bind_multipliers, bindings_of
from hls_build.boards import board_spec
from hls_build.config import HlsSettings, convert, prepare_model
from hls_build.csim import CSimLibrary, compile_library, fix_generated_sources
from hls_build.estimate import estimate_design, graph_from_project
from hls_build.firmware_graph import differing_firmware_files, write_firmware_graph
from hls_build.fuse import keras_outputs, serialize_result_casts
from hls_build.precision import derive_precisions, hls_precision_entries
from hls_build.vivado import fix_generated_project
from training.data import input_fixed_point, model_input, preprocess, preprocessing_spec
from training.keras_compat import keras, tf

log = logging.getLogger(__name__)

PROJECT_NAME = "myproject"
#: The PYNQ-Z2 block design: AXI DMA in simple mode with a 26-bit length register, under hls4ml's ``hier_0``.
DMA_LENGTH_WIDTH_BITS = 26


class BuildError(ProjectError, RuntimeError):
    """The build stopped: a bad model, a missing step input or a broken tool; nothing was written over a good bundle."""


class GateFailedError(BuildError, CheckFailedError):
    """The gate found the firmware different from the Keras model (exit code 1: a check failed, not bad input)."""


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
    # tf2onnx numbers the names it makes with a process-wide counter: start it over, so that the same model
    # exports to the same bytes (and the same sha256 in the manifest) whatever was converted before it.
    tf2onnx.utils.INTERNAL_NAME = 1
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
        trace = CSimTracer(lib, graph, FixedPoint.parse(input_fixed_point())).trace(raw)
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


# ------------------------------------------------------------------------------------------------------ the steps
@dataclass
class BuildContext:
    """What the steps share: where things are, the options, and what is already loaded in this process.

    Paths in :attr:`Step.inputs` and :attr:`Step.outputs` are templates over ``{model_dir}``, ``{bundle}`` (the
    bundle being assembled) and ``{state}`` (the build's state folder); :meth:`path` resolves them.

    Attributes:
        model_dir: the training output folder.
        model_id: the bundle's id (the training config's ``model_id``, else the folder's name).
        options: the build options.
        staging: the bundle being assembled (``<final>.partial``).
        final: where the finished bundle goes.
        state: the state folder (``<work_dir>/<model_id>/steps``): every step output that is not a bundle file.
        work: the model's work folder (``<work_dir>/<model_id>``: C-simulation object files, traces).
        test_split: the CIFAR-10 test split (loaded on first use).
        cache: objects a step leaves for later steps of the same run (a model, hls4ml's ModelGraph); a resumed
            run reloads them from the step outputs on disk.
    """

    model_dir: Path
    model_id: str
    options: BuildOptions
    staging: Path
    final: Path
    state: Path
    work: Path
    test_split: Split | None = None
    cache: dict[str, object] = field(default_factory=dict)

    @property
    def settings(self) -> HlsSettings:
        """The hls4ml conversion settings."""
        return self.options.settings

    @property
    def hls_dir(self) -> Path:
        """The hls4ml project inside the bundle."""
        return self.staging / "hls"

    def path(self, template: str) -> Path:
        """A step input or output path from its template."""
        return Path(template.format(model_dir=self.model_dir, bundle=self.staging, state=self.state))

    def read_json(self, name: str) -> dict:
        """A JSON file of the state folder."""
        return json.loads((self.state / name).read_text())

    def write_json(self, name: str, data: object) -> None:
        """Write a JSON file into the state folder (whole or not at all)."""
        tmp = self.state / f"{name}.tmp"
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, self.state / name)

    def split(self) -> Split:
        """The CIFAR-10 test split."""
        if self.test_split is None:
            self.test_split = load_split("test")
        return self.test_split

    def model(self) -> keras.Model:
        """The model the firmware computes (BatchNormalization folded): the ``fold`` step's output."""
        if "model" not in self.cache:
            from training.train import load_trained_model

            self.cache["model"] = load_trained_model(self.state / PREPARED_MODEL)
        return self.cache["model"]  # type: ignore[return-value]

    def out_fixed_point(self) -> str:
        """The logits' type (the ``derive_types`` step's output)."""
        return str(self.read_json("types.json")["output_fixed_point"])

    def hls_model(self):
        """hls4ml's ModelGraph of the written project (the ``convert`` step's; converted again on a resumed run).

        Raises:
            BuildError: converting the prepared model again does not give the project in the bundle.
        """
        if "hls_model" not in self.cache:
            scratch = self.work / "reconvert"
            if scratch.exists():
                shutil.rmtree(scratch)
            hls_model = _convert(self, scratch / "hls")
            differ = differing_firmware_files(scratch / "hls", self.hls_dir, PROJECT_NAME)
            if differ:
                raise BuildError(
                    f"converting {PREPARED_MODEL} again gives a project that differs from {self.hls_dir} "
                    f"({', '.join(differ[:5])}); run the build from the 'convert' step"
                )
            self.cache["hls_model"] = hls_model
        return self.cache["hls_model"]


@dataclass(frozen=True)
class Step:
    """One named step of the bundle build.

    Attributes:
        name: the name ``--from-step`` takes.
        run: the step; reads its inputs from disk (or :attr:`BuildContext.cache`), writes its outputs to disk.
        inputs: path templates (see :meth:`BuildContext.path`) that must exist before it runs.
        outputs: path templates it writes (the steps after it may take them as inputs).
        summary: one line for ``--help`` and the log.
    """

    name: str
    run: Callable[[BuildContext], None]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    summary: str


PREPARED_MODEL = "prepared_model.h5"
_PROJECT_CPP = "{bundle}/hls/firmware/" + PROJECT_NAME + ".cpp"
_GRAPH = "{bundle}/firmware/graph.json"


def _step_fold(ctx: BuildContext) -> None:
    """Load the trained model, check it fits the overlay, fold its BatchNormalization layers."""
    from training.train import load_trained_model

    path = ctx.model_dir / "model.h5"
    if not path.is_file():
        raise BuildError(f"{path}: no trained model; run `python -m training train` first")
    source = load_trained_model(path)
    _check_model(source)
    model, folds = prepare_model(source)
    model.save(ctx.state / PREPARED_MODEL, include_optimizer=False)
    ctx.cache.update(source_model=source, model=model)
    ctx.write_json("fold.json", {"batchnorm_folds": [dataclasses.asdict(f) for f in folds]})


def _step_derive_types(ctx: BuildContext) -> None:
    """Derive every type of the prepared model (the record; ``convert`` applies the same derivation)."""
    model = ctx.model()
    precisions = derive_precisions(model)
    ctx.write_json(
        "types.json",
        {
            "input_fixed_point": input_fixed_point(),
            "output_fixed_point": precisions.output_fixed_point(model),
            "layers": {k: dict(v) for k, v in hls_precision_entries(model, precisions).items()},
        },
    )


def _convert(ctx: BuildContext, hls_dir: Path):
    """hls4ml's ModelGraph of the prepared model with the plan's FIFO depths, written to ``hls_dir`` and fixed."""
    settings = ctx.settings
    log.info("converting %s with hls4ml (VivadoAccelerator, %s, %s)", ctx.model_id, settings.board, settings.io_type)
    hls_model = convert(ctx.model(), settings, hls_dir, project_name=PROJECT_NAME)
    for var, depth in settings.fifo_depths.items():
        if var not in hls_model.output_vars:
            raise BuildError(f"the plan's FIFO depths name {var!r}, which is not a stream of this design")
        # How hls4ml's own FIFO-depth optimization sets a stream's depth.
        hls_model.output_vars[var].pragma = ("stream", int(depth))
    hls_model.write()  # the in-loop result conversion of fused results is the `fuse` step
    bind_multipliers(hls_dir, bindings_of(hls_model))  # the plan's "Multiplier" per layer (hls_build.bind)
    fixes = fix_generated_sources(hls_dir, PROJECT_NAME)
    fixes += fix_generated_project(
        hls_dir, board=settings.board, model_id=ctx.model_id, input_bits=_container_bits(input_fixed_point()),
        output_bits=_container_bits(ctx.out_fixed_point()), clock_mhz=settings.clock_mhz, project_name=PROJECT_NAME,
        length_width_bits=DMA_LENGTH_WIDTH_BITS,
    )  # fmt: skip
    ctx.cache["fixes"] = fixes
    return hls_model


def _step_convert(ctx: BuildContext) -> None:
    """Convert with hls4ml (ReLUs fused into their producers), write the project into the bundle, fix it."""
    if ctx.hls_dir.exists():
        shutil.rmtree(ctx.hls_dir)
    hls_model = _convert(ctx, ctx.hls_dir)
    ctx.cache["hls_model"] = hls_model
    # Fused ReLUs: the convolution or Add streams the ReLU's output (what the gate compares it with).
    ctx.write_json("convert.json", {"generated_file_fixes": ctx.cache.pop("fixes"),
                                    "fused_relus": dict(keras_outputs(hls_model)),
                                    "multiplier_bindings": bindings_of(hls_model)})  # fmt: skip


def _step_fuse(ctx: BuildContext) -> None:
    """Convert each fused result inside the fully serial kernel's reuse loop (only when some ReLU was fused)."""
    fused = ctx.read_json("convert.json")["fused_relus"]
    changed = serialize_result_casts(ctx.hls_dir) if fused else False
    ctx.write_json("fuse.json", {"serial_result_casts": bool(fused), "kernel_rewritten_now": changed})


def _step_firmware_graph(ctx: BuildContext) -> None:
    """Describe the firmware for the fast engine (``board.fast_engine``): ``firmware/graph.json`` + weights."""
    write_firmware_graph(ctx.hls_model(), ctx.staging / "firmware")


def _step_compile(ctx: BuildContext) -> None:
    """Compile the C-simulation library into the bundle's ``hls/firmware``."""
    log.info("compiling the C-simulation (g++)")
    lib = compile_library(ctx.hls_dir, ctx.hls_dir / "firmware", PROJECT_NAME, build_dir=ctx.work)
    ctx.write_json("compile.json", {"csim_library": lib.relative_to(ctx.staging).as_posix()})


def _step_gate(ctx: BuildContext) -> None:
    """The firmware against the Keras model on test images, per layer and by argmax; stop below the bar."""
    options, staging = ctx.options, ctx.staging
    model = ctx.model()
    keras_names = ctx.read_json("convert.json")["fused_relus"]
    out_fp = ctx.out_fixed_point()
    lib = staging / ctx.read_json("compile.json")["csim_library"]
    firmware_graph = {"graph": str(staging / "firmware" / "graph.json"),
                      "weights": str(staging / "firmware" / "weights.npz")}  # fmt: skip
    gate = ctx.split().head(options.gate_images)
    x_gate = preprocess(gate.images)
    raw_gate = FixedPoint.parse(input_fixed_point()).encode(x_gate.reshape(len(gate), -1))
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
        why = _diagnose_with_traced_csim(model, ctx.hls_dir, firmware_graph, x_gate[:5], raw_gate[:5], engine,
                                         ctx.work, keras_names)  # fmt: skip
        raise GateFailedError(
            f"the fast engine differs from the C-simulation on {n_csim - csim_identical} of {n_csim} images: the "
            f"firmware graph does not describe this design. {why} The partial build is in {staging}."
        )
    y_keras_gate = model.predict(x_gate, batch_size=500, verbose=0)
    agreement = float(np.mean(y_fw.argmax(1) == y_keras_gate.argmax(1)))
    csim_agreement = float(np.mean(y_csim.argmax(1) == y_keras_gate[:n_csim].argmax(1)))
    max_diff = float(np.max(np.abs(y_fw - y_keras_gate)))
    layers = layer_errors(model, trace, x_gate, keras_names)
    divergent = first_divergent_layer(layers)
    log.info("gate: argmax agreement %.4f, max |logit difference| %.4g, first layer differing from Keras: %s",
             agreement, max_diff, divergent["layer"] if divergent else "none")  # fmt: skip
    if agreement < options.min_agreement:
        raise GateFailedError(
            f"the firmware agrees with the Keras model on {agreement:.1%} of {len(gate)} test images, below the "
            f"{options.min_agreement:.0%} gate (max logit difference {max_diff:.3g}); the first layer whose "
            f"output differs from Keras is {divergent['layer']!r} (max error {divergent['max_abs_error']:.3g}). "
            f"The partial build is in {staging}."
            if divergent
            else f"the firmware agrees with the Keras model on {agreement:.1%} of {len(gate)} test images, below "
            f"the {options.min_agreement:.0%} gate. The partial build is in {staging}."
        )
    ctx.write_json(
        "gate.json",
        {
            "csim_vs_keras_agreement": csim_agreement,
            "csim_vs_keras_images": n_csim,
            "csim_vs_fast_engine_identical": csim_identical,
            "firmware_vs_keras_agreement": agreement,
            "firmware_vs_keras_max_abs_logit_diff": max_diff,
            "firmware_vs_keras_images": len(gate),
            "firmware_vs_keras_layers": layers,
            "first_layer_differing_from_keras": divergent["layer"] if divergent else None,
        },
    )


def _step_estimate(ctx: BuildContext) -> None:
    """ESTIMATED resources of the accelerator before any synthesis, recorded as such in the manifest."""
    settings = ctx.settings
    graph = graph_from_project(ctx.hls_dir, PROJECT_NAME, clock_mhz=settings.clock_mhz,
                               part=board_spec(settings.board).part)  # fmt: skip
    # The one calibrated estimator (hls_build/calibration_fit.json), as `estimate`, `plan` and the planner use it.
    estimate = estimate_design(graph, settings.board)
    log.info("estimate (pre-synthesis, predicted post-synthesis use of the board): %s; whole design with the board "
             "wrapper and the error band %s", ", ".join(f"{k} {v:.0f}%" for k, v in estimate.utilization().items()
                                                       if v is not None),
             "fits" if estimate.fits() else f"does NOT fit ({', '.join(estimate.over_budget())} over)")  # fmt: skip
    ctx.write_json("estimate.json", estimate.to_manifest_entry())


def _step_keras_reference(ctx: BuildContext) -> None:
    """The model the firmware computes into the bundle, its test-set predictions and top-1 (and the trained one's)."""
    model, staging = ctx.model(), ctx.staging
    # The model the firmware computes (folded); the training folder keeps the source.
    shutil.copy2(ctx.state / PREPARED_MODEL, staging / "model.h5")
    for name in ("config.json", "metrics.json", "history.csv"):
        if (ctx.model_dir / name).is_file():
            shutil.copy2(ctx.model_dir / name, staging / f"training_{name}")
    kp = ctx.split().head(ctx.options.keras_prediction_images)
    logits = model.predict(preprocess(kp.images), batch_size=500, verbose=0)
    np.save(staging / "keras_predictions.npy", logits.argmax(1).astype(np.int16))
    keras_top1 = float(np.mean(logits.argmax(1) == kp.labels))
    if ctx.read_json("fold.json")["batchnorm_folds"]:
        from training.train import load_trained_model

        source = ctx.cache.get("source_model") or load_trained_model(ctx.model_dir / "model.h5")
        source_logits = source.predict(preprocess(kp.images), batch_size=500, verbose=0)  # type: ignore[union-attr]
        source_top1 = float(np.mean(source_logits.argmax(1) == kp.labels))
        fold_agreement = float(np.mean(source_logits.argmax(1) == logits.argmax(1)))
    else:
        source_top1, fold_agreement = keras_top1, 1.0
    ctx.write_json(
        "keras_reference.json",
        {
            "keras_top1": keras_top1,
            "keras_top1_before_folding": source_top1,
            "folded_vs_trained_agreement": fold_agreement,
            "keras_top1_images": len(kp),
            "keras_predictions_count": len(kp),
        },
    )


def _step_onnx_export(ctx: BuildContext) -> None:
    """The float ONNX reference of the model the firmware computes (quantizers as Round/Clip ops)."""
    export_onnx(ctx.model(), ctx.staging / "reference.onnx")


def _step_int8_reference(ctx: BuildContext) -> None:
    """The 8-bit ONNX reference, calibrated on training images, and both references' top-1 by onnxruntime."""
    from hls_build.int8_reference import INT8_REFERENCE, make_int8_reference, onnx_top1

    info = make_int8_reference(ctx.model(), ctx.staging / INT8_REFERENCE, load_split("train"), preprocessing_spec())
    # Measured here, on the test images whose Keras predictions the bundle stores (all 10,000 by default).
    kp = ctx.split().head(ctx.options.keras_prediction_images)
    x = preprocess(kp.images)
    float_top1, float_pred = onnx_top1(ctx.staging / "reference.onnx", x, kp.labels)
    int8_top1, int8_pred = onnx_top1(ctx.staging / INT8_REFERENCE, x, kp.labels)
    info.update(
        test_images=len(kp),
        float_top1=float_top1,
        int8_top1=int8_top1,
        int8_vs_float_agreement=float(np.mean(int8_pred == float_pred)),
        measured_on=f"the build host, onnxruntime {info['onnxruntime']} (default session: integer kernels)",
    )
    log.info("ONNX references on %d test images: float %.4f, 8-bit %.4f (onnxruntime)", len(kp), float_top1,
             int8_top1)  # fmt: skip
    ctx.write_json("int8_reference.json", info)


def _step_manifest(ctx: BuildContext) -> None:
    """Write the manifest (sha256 of every file, each step's time) and rename the bundle into place."""
    settings, staging = ctx.settings, ctx.staging
    # hls4ml's own generated helpers that the bundle does not use (its driver hard-codes hier_0 and ignores its
    # arguments; the board package has the driver).
    for junk in ("axi_stream_driver.py", "tb_data"):
        p = ctx.hls_dir / junk
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    out_fp = ctx.out_fixed_point()
    converted, keras_ref = ctx.read_json("convert.json"), ctx.read_json("keras_reference.json")
    train_metrics = (
        json.loads((ctx.model_dir / "metrics.json").read_text()) if (ctx.model_dir / "metrics.json").is_file() else {}
    )
    manifest = Manifest(
        model_id=ctx.model_id,
        board=settings.board,
        input=TensorSpec("image", [32, 32, 3], input_fixed_point(), _container(input_fixed_point())),
        output=TensorSpec("logits", [len(CLASSES)], out_fp, _container(out_fp)),
        preprocessing=preprocessing_spec(),
        emulated=True,
        csim_library=ctx.read_json("compile.json")["csim_library"],
        csim_entry=f"{PROJECT_NAME}_float",
        onnx_reference="reference.onnx",
        onnx_reference_int8="reference_int8.onnx",
        dma={
            "ip_name": "hier_0/axi_dma_0",
            "max_transfer_bytes": (1 << DMA_LENGTH_WIDTH_BITS) - 1,
            "length_width_bits": DMA_LENGTH_WIDTH_BITS,
            "mm2s_data_width_bits": _container_bits(input_fixed_point()),
            "s2mm_data_width_bits": _container_bits(out_fp),
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
            "generated_file_fixes": converted["generated_file_fixes"],
            "layer_config": {k: dict(v) for k, v in settings.layer_config.items()},
            "fifo_depths": dict(settings.fifo_depths),
            "batchnorm_folds": ctx.read_json("fold.json")["batchnorm_folds"],
            "fused_relus": converted["fused_relus"],
            "fifo_depths_source": "fit plan (analytic, not co-simulated)" if settings.fifo_depths else "hls4ml default",
            "firmware_graph": "firmware/graph.json",
            "firmware_weights": "firmware/weights.npz",
            # An imported model's own input preprocessing, folded into its first layers (hls_build.ptq).
            "source_input_preprocessing": _source_preprocessing(ctx.model_dir),
        },
        metrics={
            # Keras top-1 of the model the firmware computes (BatchNormalization folded), and of the trained one.
            **keras_ref,
            **ctx.read_json("gate.json"),
            "training_test_top1_max": train_metrics.get("test_top1_max"),
            "training_epochs": train_metrics.get("epochs"),
            "measured_on": "host (Keras and hls4ml C-simulation; no FPGA)",
            # How the 8-bit reference was made, and both references' top-1 measured at build time.
            "onnx_references": ctx.read_json("int8_reference.json"),
        },
        resources={"estimate": ctx.read_json("estimate.json")},
        tool_versions=_tool_versions(),
        classes=list(CLASSES),
        created_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        build=ctx.cache["build_record"],  # type: ignore[arg-type]
    )
    write_manifest(staging, manifest)
    # Swap the finished bundle in; the old one stays until the new one is complete.
    final = ctx.final
    if final.exists():
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old)
    else:
        os.replace(staging, final)
    log.info("bundle written to %s (Keras top-1 %.4f on %d test images)", final, keras_ref["keras_top1"],
             keras_ref["keras_top1_images"])  # fmt: skip


_S = "{state}/"
#: The bundle build, in order. ``inputs``/``outputs``: what each step reads and writes (see BuildContext.path).
STEPS: tuple[Step, ...] = (
    Step("fold", _step_fold, (), (_S + PREPARED_MODEL, _S + "fold.json"),
         "fold BatchNormalization into the layer before it"),
    Step("derive_types", _step_derive_types, (_S + PREPARED_MODEL,), (_S + "types.json",),
         "derive every fixed-point type exactly"),
    Step("convert", _step_convert, (_S + PREPARED_MODEL, _S + "types.json"), (_PROJECT_CPP, _S + "convert.json"),
         "hls4ml conversion (ReLUs fused), project written and fixed"),
    Step("fuse", _step_fuse, (_PROJECT_CPP, _S + "convert.json"), (_S + "fuse.json",),
         "fused results converted inside the serial kernel's reuse loop"),
    Step("firmware_graph", _step_firmware_graph, (_S + PREPARED_MODEL, _S + "types.json", _PROJECT_CPP), (_GRAPH,),
         "firmware graph for the fast engine"),
    Step("compile", _step_compile, (_PROJECT_CPP, _S + "fuse.json"), (_S + "compile.json",),
         "C-simulation library (g++)"),
    Step("gate", _step_gate, (_S + PREPARED_MODEL, _S + "types.json", _S + "convert.json", _S + "compile.json", _GRAPH),
         (_S + "gate.json",), "firmware vs Keras on test images, per layer"),
    Step("estimate", _step_estimate, (_PROJECT_CPP,), (_S + "estimate.json",), "pre-synthesis resource ESTIMATE"),
    Step("keras_reference", _step_keras_reference, (_S + PREPARED_MODEL, _S + "fold.json"),
         ("{bundle}/model.h5", "{bundle}/keras_predictions.npy", _S + "keras_reference.json"),
         "the folded model, its test-set predictions and top-1"),
    Step("onnx_export", _step_onnx_export, (_S + PREPARED_MODEL,), ("{bundle}/reference.onnx",),
         "float ONNX reference (tf2onnx)"),
    Step("int8_reference", _step_int8_reference, (_S + PREPARED_MODEL, "{bundle}/reference.onnx"),
         ("{bundle}/reference_int8.onnx", _S + "int8_reference.json"),
         "8-bit ONNX reference (onnxruntime static quantization, calibrated on training images)"),
    Step("manifest", _step_manifest,
         (_S + "types.json", _S + "fold.json", _S + "convert.json", _S + "compile.json", _S + "gate.json",
          _S + "estimate.json", _S + "keras_reference.json", "{bundle}/reference.onnx",
          "{bundle}/reference_int8.onnx", _S + "int8_reference.json"),
         ("{bundle}/manifest.json",), "manifest with sha256 of every file; bundle renamed into place"),
)  # fmt: skip
STEP_NAMES: tuple[str, ...] = tuple(s.name for s in STEPS)
#: Each step's wall time of the latest run of it, in the state folder.
STEP_TIMES = "step_times.json"


def _source_preprocessing(model_dir: Path) -> dict | None:
    """``config.json``'s ``source_preprocessing`` (an imported model's own input, folded in), if any."""
    cfg = model_dir / "config.json"
    return json.loads(cfg.read_text()).get("source_preprocessing") if cfg.is_file() else None


def _container(fixed_point: str) -> str:
    return np.dtype(FixedPoint.parse(fixed_point).container_dtype).name


def _container_bits(fixed_point: str) -> int:
    return 8 * np.dtype(_container(fixed_point)).itemsize


def _missing_inputs(ctx: BuildContext, step: Step) -> str | None:
    """A sentence naming the first missing input of ``step`` and the step that writes it, or None."""
    for template in step.inputs:
        path = ctx.path(template)
        if not path.exists():
            producer = next((s.name for s in STEPS if template in s.outputs), None)
            by = f", which the {producer!r} step writes" if producer else ""
            return f"step {step.name!r} needs {path}{by}; run the build from an earlier step"
    return None


def build_bundle(
    model_dir: str | os.PathLike,
    overlays_dir: str | os.PathLike = "overlays",
    work_dir: str | os.PathLike = "build/hls",
    options: BuildOptions | None = None,
    test_split: Split | None = None,
    from_step: str | None = None,
    model_id: str | None = None,
) -> Path:
    """Build the overlay bundle of a trained model: run :data:`STEPS` in order.

    Args:
        model_dir: a training output folder (``model.h5``, ``config.json``, ``metrics.json``).
        overlays_dir: root of the overlay tree; the bundle goes to ``<overlays_dir>/<board>/<model_id>/``.
        work_dir: the build's state and scratch space (``<work_dir>/<model_id>/``).
        options: build options.
        test_split: CIFAR-10 test data (loaded when needed).
        from_step: resume at this step, with the outputs of the earlier steps on disk from a previous build (a
            finished bundle is copied back into the staging folder when the build left none).
        model_id: the bundle's id (its folder name and the manifest's ``model_id``); default: the training
            config's ``model_id``, else the folder's name. A zoo design (``hls_build.zoo``) names its own, so two
            designs of one model on one board do not share a folder.

    Returns:
        The bundle folder.

    Raises:
        BuildError: unknown step, a step's input is missing, the model does not fit the overlay, or the firmware
            disagrees with Keras.
        board.errors.DatasetError / ToolMissingError: no CIFAR-10, no g++.
    """
    if from_step is not None and from_step not in STEP_NAMES:
        raise BuildError(f"unknown step {from_step!r}; the steps are: {', '.join(STEP_NAMES)}")
    options = options or BuildOptions()
    model_dir = Path(model_dir)
    train_info = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").is_file() else {}
    model_id = model_id or train_info.get("model_id", model_dir.name)
    final = (Path(overlays_dir) / options.settings.board / model_id).resolve()
    work = (Path(work_dir) / model_id).resolve()
    ctx = BuildContext(model_dir, model_id, options, final.with_name(final.name + ".partial"), final,
                       work / "steps", work, test_split)  # fmt: skip
    first = STEP_NAMES.index(from_step) if from_step else 0
    if first == 0:
        for folder in (ctx.staging, ctx.state):
            if folder.exists():
                shutil.rmtree(folder)
    elif not ctx.staging.exists() and final.exists():
        shutil.copytree(final, ctx.staging, symlinks=True)
    times: dict[str, float] = {}
    # An imported model may stream its own input (a per-channel mean subtracted, hls_build.ptq): its config.json
    # names the type and the preprocessing, which every step (types, gate images, manifest) then follows.
    with model_input(train_info.get("input_fixed_point"), train_info.get("preprocessing")):
        _run_steps(ctx, first, from_step, times)
    (work / "time_per_step.json").write_text(json.dumps(times, indent=2) + "\n")
    return final


def _run_steps(ctx: BuildContext, first: int, from_step: str | None, times: dict[str, float]) -> None:
    """Run :data:`STEPS` from index ``first`` (see :func:`build_bundle`), recording each one's seconds in ``times``."""
    for step in STEPS[first:]:
        missing = _missing_inputs(ctx, step)
        if missing:
            raise BuildError(missing)
        ctx.state.mkdir(parents=True, exist_ok=True)
        if step is STEPS[first] and first and (ctx.state / STEP_TIMES).is_file():
            times.clear()
            times.update(json.loads((ctx.state / STEP_TIMES).read_text()))  # the earlier steps' times
        if any(o.startswith("{bundle}") for o in step.outputs):  # not before: a refused model leaves no folder
            ctx.staging.mkdir(parents=True, exist_ok=True)
        if step.name == "manifest":  # the record of every step, written by the last one
            ctx.cache["build_record"] = {
                "steps": [{"name": s.name, "seconds": round(times[s.name], 6)} for s in STEPS if s.name in times],
                "resumed_from": from_step if first else None,
            }
        log.info("step %s: %s", step.name, step.summary)
        t = time.perf_counter()
        step.run(ctx)
        times[step.name] = time.perf_counter() - t
        if step.name != "manifest":
            ctx.write_json(STEP_TIMES, times)
