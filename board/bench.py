"""Benchmark a bundle on CIFAR-10: FPGA (or its emulation) vs the CPU's ONNX references vs the Keras model.

``python -m board bench --bundle overlays/pynq-z2/<model_id>`` runs the first ``n`` CIFAR-10 test images (all
10,000 by default with a bitstream, 1,000 for an emulated bundle) through the accelerator and through the bundle's
two ONNX references on this CPU (float and 8-bit), and writes into the report folder ``report.json``,
``report.md`` and PNG plots with:

* top-1 of the FPGA path, of the float and 8-bit ONNX references, and of Keras (the manifest's figure measured
  at build time, and on the same images from the bundle's ``keras_predictions.npy``);
* argmax agreement FPGA vs Keras, FPGA vs each ONNX reference, 8-bit vs float reference;
* latency per batch and per image (p50/p99, ``time.perf_counter``) and throughput of every path. The first
  batch of every pass is a warm-up: its predictions count, its time does not;
* optionally a batch-size sweep (``--batch-sizes 1,10,100``): for each size, one warm-up batch, then at least
  ``--sweep-images`` images timed, through the FPGA and through the ONNX references (on by default with a bitstream;
  off by default for an emulated bundle, whose C-simulation runs about 8 images/s);
* power and energy per inference (:mod:`board.power`): PMBus on the ZCU104, an external meter's figures entered
  by the user on the PYNQ-Z2, "not available (host emulation)" otherwise;
* the bundle's identity, tool versions and the environment.

When the bundle is emulated the FPGA figures come from the hls4ml C-simulation on the host, and the report says
so in bold: they are not board timings. The ONNX references run on onnxruntime where it imports and on the numpy
evaluator elsewhere (the PYNQ-Z2 is armv7l: no onnxruntime wheel), or as ``--reference-engine`` says; the report
names the engine and the CPU (see :mod:`board.onnx_reference`). A reference that cannot run is reported as not
available, with why, and the FPGA figures go on.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from board import __version__
from board.board_estimate import board_estimate, estimate_lines
from board.bundle import Bundle, load_bundle
from board.cifar10 import load_split
from board.driver import Accelerator, BatchTiming, resolve_engine
from board.errors import BoardError, BundleError, InputError, ToolMissingError
from board.power import PmbusMeter, PowerOptions, PowerSession, unavailable_report
from board.progress import Progress

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "benchmark",
    "default_image_count",
    "environment",
    "latency_stats",
    "parse_batch_sizes",
    "render_markdown",
    "run_bench",
    "write_report",
]

log = logging.getLogger(__name__)

KERAS_PREDICTIONS = "keras_predictions.npy"
REPORT_SCHEMA = "board-bench/2"
#: Test images by default: the whole test set on a board and with the fast engine, fewer for the ~10 images/s
#: C-simulation engine.
DEFAULT_N_BOARD, DEFAULT_N_EMULATED = 10_000, 1_000
#: Images on which the C-simulation cross-checks the fast engine by default (bit for bit).
DEFAULT_CSIM_CHECK = 100
#: Batch-size sweep by default on a board (and for --reference-only); off for an emulated bundle.
DEFAULT_BATCH_SIZES = (1, 10, 100)
#: Images timed per batch size in the sweep by default (plus one warm-up batch).
DEFAULT_SWEEP_IMAGES_BOARD, DEFAULT_SWEEP_IMAGES_EMULATED = 1_000, 20
WARMUP_NOTE = "the first batch of every pass is a warm-up: its predictions count, its time does not"
REFERENCE_MODES = ("auto", "off", "only")


def latency_stats(
    timings: Sequence[BatchTiming], warmup_batches: int = 0, samples: bool = True
) -> dict[str, Any] | None:
    """p50/p99 latency per batch and per image (batch time / batch size) and throughput, or None if empty.

    Args:
        timings: one entry per batch, in order.
        warmup_batches: leading batches to leave out (only when more batches than that remain).
        samples: include the per-batch times (``batch_ms``, ``batch_images``) for histograms.
    """
    timings = list(timings)
    excluded = warmup_batches if len(timings) > warmup_batches else 0
    timings = timings[excluded:]
    if not timings:
        return None
    batch_s = np.array([t.seconds for t in timings])
    sizes = np.array([t.images for t in timings])
    per_image_s = batch_s / sizes
    images = int(sizes.sum())
    total = float(batch_s.sum())
    p50b, p99b = np.percentile(batch_s * 1e3, [50, 99])
    p50i, p99i = np.percentile(per_image_s * 1e3, [50, 99])
    stats: dict[str, Any] = {
        "batches": len(timings),
        "images": images,
        "total_s": total,
        "batch_ms_p50": float(p50b),
        "batch_ms_p99": float(p99b),
        "image_ms_p50": float(p50i),
        "image_ms_p99": float(p99i),
        "images_per_s": images / total if total > 0 else float("inf"),
        "warmup_batches_excluded": excluded,
    }
    if samples:
        stats["batch_ms"] = [round(float(s) * 1e3, 6) for s in batch_s]
        stats["batch_images"] = [int(s) for s in sizes]
    return stats


def _installed_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Where the benchmark ran: interpreter, library versions, machine."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pynq": _installed_version("pynq"),
        "onnxruntime": _installed_version("onnxruntime"),
        "board_runtime": __version__,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }


def parse_batch_sizes(text: str | Sequence[int] | None) -> tuple[int, ...]:
    """``"1,10,100"`` -> ``(1, 10, 100)`` (sorted, unique); ``""``/``"off"``/``"none"`` -> ``()``.

    Raises:
        InputError: a size that is not a positive integer.
    """
    if text is None:
        return ()
    if isinstance(text, str):
        if text.strip().lower() in ("", "off", "none", "0"):
            return ()
        items: list[Any] = [t for t in text.replace(" ", "").split(",") if t]
    else:
        items = list(text)
    try:
        sizes = sorted({int(t) for t in items})
    except (TypeError, ValueError) as exc:
        raise InputError(f"batch sizes must be positive integers separated by commas, got {text!r}") from exc
    if any(s < 1 for s in sizes):
        raise InputError(f"batch sizes must be >= 1, got {text!r}")
    return tuple(sizes)


def default_image_count(emulated: bool, reference: str = "auto", engine: str = "fast") -> int:
    """Default image count: the whole test set, except for an emulated pass on the C-simulation (1,000)."""
    return DEFAULT_N_EMULATED if emulated and reference != "only" and engine == "csim" else DEFAULT_N_BOARD


def csim_cross_check(bundle: Bundle, images: np.ndarray, processes: int = 2) -> dict[str, Any]:
    """Run ``images`` through the fast engine and the C-simulation; compare the raw output codes bit for bit.

    Returns:
        ``{"images", "identical", "bit_exact", "csim_images_per_s", "fast_images_per_s"}``.
    """
    from board.csim_runner import CSimRunner
    from board.fast_engine import FastEngine

    fast = FastEngine.from_bundle(bundle)
    with Accelerator(bundle, batch_size=len(images), engine="fast") as acc:
        raw_in, _ = acc.encode(images)  # the driver's encoding: exactly the stream codes the DMA would carry
    t = time.perf_counter()
    fast_out = fast.predict_raw(raw_in)
    fast_s = time.perf_counter() - t
    with CSimRunner.from_bundle(bundle, processes=processes) as csim:
        t = time.perf_counter()
        csim_out = csim.run(raw_in)
        csim_s = time.perf_counter() - t
    identical = int(np.sum(np.all(fast_out == csim_out, axis=1)))
    return {
        "images": len(raw_in),
        "identical": identical,
        "bit_exact": identical == len(raw_in),
        "csim_images_per_s": len(raw_in) / csim_s if csim_s > 0 else None,
        "fast_images_per_s": len(raw_in) / fast_s if fast_s > 0 else None,
    }


def _top1(pred: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(pred == labels)) if len(labels) else float("nan")


def _keras_predictions(bundle: Bundle, n: int, notes: list[str]) -> np.ndarray | None:
    """The first min(n, K) Keras argmax predictions from the bundle, or None (with a note) if unusable."""
    m = bundle.manifest
    if KERAS_PREDICTIONS not in m.files:
        notes.append(f"the bundle has no {KERAS_PREDICTIONS}: no FPGA-vs-Keras agreement on these images")
        return None
    try:
        preds = np.load(bundle.path(KERAS_PREDICTIONS), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{bundle.path(KERAS_PREDICTIONS)}: unreadable ({exc})") from exc
    if preds.ndim != 1 or preds.dtype.kind not in "iu":
        raise BundleError(f"{KERAS_PREDICTIONS} must be a 1-D integer array, got {preds.dtype} {preds.shape}")
    count = int(m.metrics.get("keras_predictions_count", len(preds)))
    if count != len(preds):
        notes.append(f"metrics say keras_predictions_count={count} but the file holds {len(preds)}; using the file")
    if n > len(preds):
        notes.append(f"Keras predictions cover only the first {len(preds)} of the {n} images; Keras rows use those")
    return preds[:n].astype(np.int64)


def _cycled(images: np.ndarray, count: int) -> np.ndarray:
    """``count`` images taken in order from ``images``, starting over when they run out."""
    return images[np.arange(count) % len(images)]


def _fpga_pass(
    acc: Accelerator, images: np.ndarray, batch_size: int, progress: bool | None
) -> tuple[np.ndarray, list[BatchTiming], float]:
    n = len(images)
    acc.take_timings()
    parts = []
    label = "fpga (emulated)" if acc.emulated else "fpga"
    t0 = time.perf_counter()
    with Progress(n, label, enabled=progress) as bar:
        for start in range(0, n, batch_size):
            parts.append(acc.predict(images[start : start + batch_size]))
            bar.update(len(parts[-1]))
    wall = time.perf_counter() - t0
    return np.concatenate(parts).reshape(n, -1), acc.take_timings(), wall


def _onnx_pass(ref: Any, images: np.ndarray, batch_size: int, progress: bool | None) -> tuple[np.ndarray, list]:
    n = len(images)
    ref.take_timings()
    parts = []
    with Progress(n, f"onnx {ref.precision or ''} ({ref.engine})", enabled=progress) as bar:
        for start in range(0, n, batch_size):
            parts.append(ref.predict(images[start : start + batch_size], batch_size=batch_size))
            bar.update(len(parts[-1]))
    return np.concatenate(parts).reshape(n, -1), ref.take_timings()


def _sweep(
    acc: Accelerator | None,
    refs: dict[str, Any],
    images: np.ndarray,
    batch_sizes: Sequence[int],
    sweep_images: int,
    progress: bool | None,
) -> dict[str, Any]:
    """For each batch size: one warm-up batch, then whole batches covering at least ``sweep_images`` images.

    ``refs`` maps a row key (``onnx``: the float reference, ``onnx_int8``: the 8-bit one) to the reference.
    """
    plan = [(b, -(-max(sweep_images, b) // b) * b) for b in batch_sizes]  # (size, timed images)
    rows = []
    for b, timed in plan:
        data = _cycled(images, b + timed)
        row: dict[str, Any] = {"batch_size": b, "timed_images": timed, "fpga": None, "onnx": None, "onnx_int8": None}
        if acc is not None:
            row["dma_batch"] = min(b, acc.batch_size)
            acc.take_timings()
            with Progress(len(data), f"sweep fpga b={b}", enabled=progress) as bar:
                for start in range(0, len(data), b):
                    chunk = data[start : start + b]
                    acc.predict_raw(chunk)
                    bar.update(len(chunk))
            # Transfers per warm-up batch: more than one when b exceeds the DMA's batch capacity.
            per_batch = -(-b // acc.batch_size)
            row["fpga"] = latency_stats(acc.take_timings(), warmup_batches=per_batch, samples=False)
        for key, ref in refs.items():
            ref.take_timings()
            with Progress(len(data), f"sweep {key} b={b}", enabled=progress) as bar:
                for start in range(0, len(data), b):
                    chunk = data[start : start + b]
                    ref.predict(chunk, batch_size=b)
                    bar.update(len(chunk))
            row[key] = latency_stats(ref.take_timings(), warmup_batches=1, samples=False)
        rows.append(row)
        fpga_ips = f"{row['fpga']['images_per_s']:.1f}" if row["fpga"] else "n/a"
        onnx_ips = f"{row['onnx']['images_per_s']:.1f}" if row["onnx"] else "n/a"
        log.info("sweep batch %d: fpga %s img/s, onnx %s img/s", b, fpga_ips, onnx_ips)
    return {"batch_sizes": list(batch_sizes), "images_per_batch_size": sweep_images, "rows": rows}


def _open_reference(
    bundle: Bundle, threads: int | None, mode: str, engine: str = "auto", precision: str = "float"
) -> tuple[Any | None, str | None]:
    """The float or 8-bit ONNX reference, or None and why not.

    A reference that cannot run (no such file in an older bundle, no onnxruntime for ``--reference-engine ort``, an
    operator the numpy evaluator lacks, a file the engine refuses) is reported as not available and the FPGA
    figures go on; with ``--reference-only`` the float reference is the whole run, so its failure is the error.
    """
    if mode == "off":
        return None, "skipped (--no-reference)"
    from board.onnx_reference import OnnxReference

    if precision == "int8" and not bundle.manifest.onnx_reference_int8:
        return None, "this bundle has no 8-bit reference (built before hls_build made one; rebuild the bundle)"
    try:
        return OnnxReference.from_bundle(bundle, threads=threads, engine=engine, precision=precision), None
    except (ToolMissingError, BundleError) as exc:
        if mode == "only" and precision == "float":
            raise
        return None, str(exc)


def cpu_name(running_on: str | None, machine: str | None = None) -> str:
    """The CPU the reference runs on, in words: the board's ARM core, or this machine."""
    machine = machine or platform.machine()
    # The board's core only when this machine is that core's architecture (``--board`` can be forced on a host).
    if running_on == "pynq-z2" and machine.lower().startswith("armv7"):
        return "the PYNQ-Z2's Cortex-A9"
    if running_on == "zcu104" and machine.lower() == "aarch64":
        return "the ZCU104's Cortex-A53"
    return f"this host's CPU ({machine})"


def reference_label(report: dict[str, Any], precision: str = "float") -> str:
    """E.g. "ONNX reference, 8-bit, numpy evaluator on the PYNQ-Z2's Cortex-A9" (what the report's rows say)."""
    ref = report.get("reference") or {}
    kind = "8-bit" if precision == "int8" else "float"
    engine = {"ort": "onnxruntime", "numpy": "numpy evaluator"}.get(ref.get("engine"), "no engine")
    return f"ONNX reference, {kind}, {engine} on {ref.get('cpu') or 'this CPU'}"


def benchmark(
    bundle: Bundle,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int = 100,
    timeout_s: float | None = None,
    onnx_threads: int | None = None,
    accelerator: Accelerator | None = None,
    batch_sizes: Sequence[int] = (),
    sweep_images: int | None = None,
    reference: str = "auto",
    reference_engine: str = "auto",
    power: PowerOptions | None = None,
    power_meter_factory: Callable[[PowerOptions], PmbusMeter] | None = None,
    progress: bool | None = None,
    running_on: str | None = None,
) -> dict[str, Any]:
    """Run the FPGA path and the ONNX reference on ``images`` and compare them with ``labels`` and Keras.

    Args:
        bundle: the verified bundle.
        images: ``(N, 32, 32, 3)`` uint8 test images, in test-set order from the first one (Keras predictions
            are matched by position).
        labels: ``(N,)`` class indices.
        batch_size: images per DMA transfer and per ONNX Runtime call.
        timeout_s: per-batch DMA deadline (default: the driver's).
        onnx_threads: ONNX Runtime intra-op threads.
        accelerator: an open accelerator to use (default: open one on the bundle, with its default engine, and close
            it afterwards).
        batch_sizes: batch sizes to sweep (empty: no sweep).
        sweep_images: images timed per swept batch size (default 1,000 on a board, 20 emulated).
        reference: ``auto`` (the ONNX references when they can run), ``off``, or ``only`` (no FPGA pass).
        reference_engine: ``auto`` (onnxruntime when it imports, else the numpy evaluator), ``ort`` or ``numpy``.
        power: power options (default: automatic; see :mod:`board.power`).
        power_meter_factory: builds the PMBus meter (tests pass fake rails).
        progress: draw progress bars on stderr (default: when stderr is a terminal).
        running_on: the board (or ``host``) this runs on, recorded in the report.

    Returns:
        The report dict (see ``report.json``).
    """
    m = bundle.manifest
    n = len(images)
    if n < 1:
        raise InputError("the benchmark needs at least one image")
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    if reference not in REFERENCE_MODES:
        raise InputError(f"reference must be one of {REFERENCE_MODES}, got {reference!r}")
    batch_sizes = parse_batch_sizes(batch_sizes)
    if sweep_images is None:
        sweep_images = DEFAULT_SWEEP_IMAGES_EMULATED if m.emulated else DEFAULT_SWEEP_IMAGES_BOARD
    if sweep_images < 1:
        raise InputError(f"--sweep-images must be >= 1, got {sweep_images}")
    notes: list[str] = []
    labels = np.asarray(labels, np.int64)
    fpga_run = reference != "only"
    power = power or PowerOptions()
    if not fpga_run and power.external_watts is not None:
        raise InputError("external meter figures need the FPGA pass; drop --reference-only")
    session = None
    if fpga_run:  # decided first: a wrong combination of options fails before the long run
        session = PowerSession(power, emulated=m.emulated, board=m.board, meter_factory=power_meter_factory)

    from board.onnx_reference import resolve_engine

    try:
        ref_engine = resolve_engine(reference_engine)
    except ToolMissingError:
        if reference == "only":
            raise
        ref_engine = None
    ref, onnx_unavailable = _open_reference(bundle, onnx_threads, reference, reference_engine, "float")
    ref_int8, onnx_int8_unavailable = _open_reference(bundle, onnx_threads, reference, reference_engine, "int8")
    if onnx_unavailable:
        notes.append(f"ONNX reference (float) not available: {onnx_unavailable}")
    if onnx_int8_unavailable and onnx_int8_unavailable != onnx_unavailable:
        notes.append(f"ONNX reference (8-bit) not available: {onnx_int8_unavailable}")
    refs = {key: r for key, r in (("onnx", ref), ("onnx_int8", ref_int8)) if r is not None}

    fpga_logits = fpga_timing = fpga_pass_s = used_batch = None
    power_report = unavailable_report("not measured: no FPGA pass (--reference-only)")
    sweep = None
    acc = None
    engine = None
    if fpga_run:
        own = accelerator is None
        capacity = max(batch_size, *batch_sizes) if batch_sizes else batch_size
        acc = accelerator if accelerator is not None else Accelerator(bundle, batch_size=capacity, timeout_s=timeout_s)
        engine = {"name": acc.engine, "description": acc.engine_description}
        try:
            session.measure_idle()
            with session.during_run():
                fpga_logits, timings, fpga_pass_s = _fpga_pass(acc, images, batch_size, progress)
            power_report = session.report(fpga_pass_s, n)
            fpga_timing = latency_stats(timings, warmup_batches=1)
            used_batch = min(batch_size, acc.batch_size)
            if batch_sizes:
                sweep = _sweep(acc, refs, images, batch_sizes, sweep_images, progress)
        finally:
            if own:
                acc.close()
    elif batch_sizes and refs:
        sweep = _sweep(None, refs, images, batch_sizes, sweep_images, progress)

    onnx_logits = onnx_timing = int8_logits = int8_timing = None
    if ref is not None:
        onnx_logits, onnx_timings = _onnx_pass(ref, images, batch_size, progress)
        onnx_timing = latency_stats(onnx_timings, warmup_batches=1)
    if ref_int8 is not None:
        int8_logits, int8_timings = _onnx_pass(ref_int8, images, batch_size, progress)
        int8_timing = latency_stats(int8_timings, warmup_batches=1)
    for name, stats in (("FPGA", fpga_timing), ("ONNX reference", onnx_timing), ("8-bit ONNX reference", int8_timing)):
        if stats is not None and stats["warmup_batches_excluded"] == 0:
            notes.append(f"{name}: a single batch, so no warm-up batch could be excluded from its timing")

    fpga_pred = None if fpga_logits is None else np.argmax(fpga_logits, axis=1)
    keras_pred = _keras_predictions(bundle, n, notes)
    k = 0 if keras_pred is None else len(keras_pred)

    accuracy: dict[str, Any] = {
        "fpga_top1": None if fpga_pred is None else _top1(fpga_pred, labels),
        "onnx_top1": None if onnx_logits is None else _top1(np.argmax(onnx_logits, axis=1), labels),
        "onnx_int8_top1": None if int8_logits is None else _top1(np.argmax(int8_logits, axis=1), labels),
        # As measured by hls_build (the first keras_top1_images test images; all 10,000 unless it says otherwise).
        "keras_top1_manifest": m.metrics.get("keras_top1"),
        "keras_top1_manifest_images": int(m.metrics.get("keras_top1_images", 10000)),
        # The trained model before hls_build folded BatchNormalization into the convolutions (None: nothing folded
        # or an older bundle).
        "keras_top1_before_folding": m.metrics.get("keras_top1_before_folding")
        if m.hls.get("batchnorm_folds")
        else None,
        "keras_top1_same_images": None if keras_pred is None else _top1(keras_pred, labels[:k]),
        "keras_same_images_count": k,
    }
    agreement: dict[str, Any] = {
        "fpga_vs_keras": None
        if keras_pred is None or fpga_pred is None
        else {"images": k, "agreement": _top1(fpga_pred[:k], keras_pred)},
        "fpga_vs_onnx": None,
        "fpga_vs_onnx_int8": None,
        "onnx_int8_vs_onnx": None,
    }
    if onnx_logits is not None and fpga_logits is not None:
        agreement["fpga_vs_onnx"] = {
            "images": n,
            "agreement": _top1(fpga_pred, np.argmax(onnx_logits, axis=1)),
            "max_abs_logit_diff": float(np.max(np.abs(fpga_logits - onnx_logits))),
        }
    if int8_logits is not None and fpga_logits is not None:
        agreement["fpga_vs_onnx_int8"] = {"images": n, "agreement": _top1(fpga_pred, np.argmax(int8_logits, axis=1))}
    if int8_logits is not None and onnx_logits is not None:
        agreement["onnx_int8_vs_onnx"] = {
            "images": n,
            "agreement": _top1(np.argmax(int8_logits, axis=1), np.argmax(onnx_logits, axis=1)),
        }
    if not fpga_run:
        label = "no FPGA pass (--reference-only): ONNX reference figures only, measured on this machine"
    elif m.emulated and engine["name"] == "fast":
        label = (
            "HOST EMULATION of the firmware by the bit-exact numpy engine (no bitstream): FPGA accuracy is the "
            "emulated design's; FPGA timings are host timings, NOT board timings"
        )
    elif m.emulated:
        label = (
            "HOST EMULATION of the hls4ml C-simulation (no bitstream): FPGA accuracy is the emulated design's; "
            "FPGA timings are host C-simulation timings, NOT board timings"
        )
    else:
        label = f"measured on the {m.board} board through the AXI DMA"
    env = environment()
    return {
        "schema": REPORT_SCHEMA,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "fpga_label": label,
        "emulated": bool(m.emulated),
        "engine": engine,
        "running_on": running_on,
        "bundle": {
            "path": str(bundle.root),
            "board": m.board,
            "model_id": m.model_id,
            "emulated": bool(m.emulated),
            "has_bitstream": m.has_bitstream,
            "input": m.input.fixed_point,
            "output": m.output.fixed_point,
            "created_utc": m.created_utc,
            "tool_versions": dict(m.tool_versions),
        },
        "images": n,
        "dataset": "CIFAR-10 test set, first N images in order",
        "batch_size": {"requested": batch_size, "dma": used_batch},
        "accuracy": accuracy,
        "agreement": agreement,
        "timing": {
            "fpga": fpga_timing,
            "onnx": onnx_timing,
            "onnx_int8": int8_timing,
            "fpga_pass_s": fpga_pass_s,
            "warmup": WARMUP_NOTE,
        },
        "sweep": sweep,
        "board_estimate": board_estimate(m),
        "power": power_report,
        "reference": {
            "mode": reference,
            "machine": env["machine"],
            "cpu": cpu_name(running_on, env["machine"]),
            "available": ref is not None,
            "int8_available": ref_int8 is not None,
            "engine": ref_engine if refs else None,
            "engine_requested": reference_engine,
            "engine_description": next(iter(refs.values())).engine_description if refs else None,
            "files": {"float": m.onnx_reference, "int8": m.onnx_reference_int8},
        },
        "onnx_unavailable": onnx_unavailable,
        "onnx_int8_unavailable": onnx_int8_unavailable,
        "environment": env,
        "plots": {},
        "notes": notes,
    }


# ----------------------------------------------------------------------------------------------------- markdown
def _pct(x: Any) -> str:
    if x is None:
        return "n/a"
    x = float(x)
    return f"{100 * x:.2f} %" if x <= 1.0 else f"{x:.2f} %"  # metrics may hold a fraction or a percentage


def _ms(stats: dict[str, Any] | None, key: str) -> str:
    return "n/a" if not stats else f"{stats[key]:.3f}"


def _num(x: Any, fmt: str = ".3f", unit: str = "") -> str:
    return "n/a" if x is None else f"{x:{fmt}}{unit}"


def _power_lines(power: dict[str, Any]) -> list[str]:
    lines = ["## Power and energy", ""]
    if not power.get("available"):
        return lines + [f"Power: {power.get('reason') or 'not available'}."]
    lines += [
        f"Source: **{power['source']}**"
        + (f", rails {', '.join(power['rails'])}" if power.get("rails") else "")
        + (f", sampled every {power['interval_s']:g} s by {power['sampler']}" if power.get("sampler") else "")
        + ".",
        "",
        "| | |",
        "|---|---|",
        f"| idle power | {_num(power['idle_w'], '.3f', ' W')} ({power.get('idle_samples') or 'no'} samples) |"
        if power.get("source") != "external meter (user-entered)"
        else f"| idle power | {_num(power['idle_w'], '.3f', ' W')} |",
        f"| power during the FPGA pass | {_num(power['run_w'], '.3f', ' W')} |",
        f"| net (run - idle) | {_num(power['net_w'], '.3f', ' W')} |",
        f"| FPGA pass | {power['images']} images in {power['run_s']:.3f} s |",
        f"| energy per inference (net) | {_num(power['energy_per_inference_mj'], '.4g', ' mJ')} |",
        f"| energy per inference (gross, whole board) | {_num(power['gross_energy_per_inference_mj'], '.4g', ' mJ')} |",
    ]
    lines += [f"\n- {note}" for note in power.get("notes") or []]
    return lines


def _sweep_lines(sweep: dict[str, Any] | None, fpga_name: str, ref_name: str = "the ONNX references") -> list[str]:
    if not sweep:
        return []
    lines = [
        "## Batch-size sweep",
        "",
        f"For each batch size: one warm-up batch (not timed), then at least {sweep['images_per_batch_size']} images "
        "timed.",
        "",
        "| batch | timed images | FPGA images/s | FPGA image p50 ms | FPGA image p99 ms | ONNX float images/s | "
        "ONNX float image p50 ms | ONNX float image p99 ms | ONNX 8-bit images/s | ONNX 8-bit image p50 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sweep["rows"]:
        f, o, q = r.get("fpga"), r.get("onnx"), r.get("onnx_int8")
        dma = f" (DMA {r['dma_batch']})" if r.get("dma_batch") not in (None, r["batch_size"]) else ""
        lines.append(
            f"| {r['batch_size']}{dma} | {r['timed_images']} | {_num(f and f['images_per_s'], '.1f')} | "
            f"{_ms(f, 'image_ms_p50')} | {_ms(f, 'image_ms_p99')} | {_num(o and o['images_per_s'], '.1f')} | "
            f"{_ms(o, 'image_ms_p50')} | {_ms(o, 'image_ms_p99')} | {_num(q and q['images_per_s'], '.1f')} | "
            f"{_ms(q, 'image_ms_p50')} |"
        )
    return lines + ["", f"FPGA column: {fpga_name}. ONNX columns: {ref_name}."]


def _engine_cell(report: dict[str, Any]) -> str:
    ref = report.get("reference") or {}
    if not ref.get("engine_description"):
        return "none ran"
    return f"{ref['engine_description']} on {ref.get('cpu') or 'this CPU'}"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown (what ``report.md`` holds and the CLI prints)."""
    b, acc, agr, tim, env = (
        report["bundle"],
        report["accuracy"],
        report["agreement"],
        report["timing"],
        report["environment"],
    )
    n = report["images"]
    batch = report["batch_size"]
    onnx_n = n if acc["onnx_top1"] is not None else "n/a"
    fpga_n = n if acc["fpga_top1"] is not None else "n/a"
    engine = report.get("engine") or {}
    if not report["emulated"]:
        fpga = f"FPGA ({b['board']})"
    elif engine.get("name") == "fast":
        fpga = "FPGA (emulated: bit-exact numpy engine on the host)"
    else:
        fpga = "FPGA (emulated: hls4ml C-simulation on the host)"
    lines = [f"# Benchmark: {b['model_id']} on {b['board']}", ""]
    if report["emulated"]:
        lines += [f"> **FPGA figures: {report['fpga_label']}.**", ""]
        if engine.get("description"):
            lines += [f"Emulation engine: {engine['description']}."]
        cross_check = engine.get("csim_check")
        if cross_check:
            checked, identical = cross_check["images"], cross_check["identical"]
            verdict = "bit-identical" if cross_check["bit_exact"] else f"**{checked - identical} differ**"
            csim_rate = _num(cross_check["csim_images_per_s"], ".1f")
            lines += [
                f"Cross-check: the hls4ml C-simulation ran the first {checked} images too; raw outputs "
                f"{verdict} ({identical}/{checked}); C-simulation {csim_rate} "
                f"images/s vs fast engine {_num(cross_check['fast_images_per_s'], '.0f')} images/s on this host."
            ]
        lines += [""]
    else:
        lines += [f"> FPGA figures: {report['fpga_label']}.", ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| bundle | `{b['path']}` |",
        f"| board / model | {b['board']} / {b['model_id']} |",
        f"| running on | {report.get('running_on') or 'n/a'} ({env['machine']}) |",
        f"| ONNX reference engine | {_engine_cell(report)} |",
        f"| emulated | {str(b['emulated']).lower()} |",
        f"| bitstream | {'yes' if b['has_bitstream'] else 'none'} |",
        f"| stream types | in {b['input']}, out {b['output']} |",
        f"| images | {n} ({report['dataset']}) |",
        f"| batch size | {batch['requested']} requested, {batch['dma'] if batch['dma'] else 'n/a'} per DMA transfer |",
        f"| created | {report['created_utc']} |",
        "",
        "## Top-1 accuracy",
        "",
        "| path | images | top-1 |",
        "|---|---:|---:|",
        f"| {fpga} | {fpga_n} | {_pct(acc['fpga_top1'])} |",
        f"| {reference_label(report)} | {onnx_n} | {_pct(acc['onnx_top1'])} |",
        f"| {reference_label(report, 'int8')} | {n if acc.get('onnx_int8_top1') is not None else 'n/a'} | "
        f"{_pct(acc.get('onnx_int8_top1'))} |",
        f"| Keras (quantized), same images, from `{KERAS_PREDICTIONS}` | {acc['keras_same_images_count'] or 'n/a'} | "
        f"{_pct(acc['keras_top1_same_images'])} |",
        f"| Keras (quantized), as measured at build time (manifest metrics) | {acc['keras_top1_manifest_images']} | "
        f"{_pct(acc['keras_top1_manifest'])} |",
        *(
            [
                f"| Keras (quantized) as trained, before BatchNormalization was folded (manifest metrics) | "
                f"{acc['keras_top1_manifest_images']} | {_pct(acc['keras_top1_before_folding'])} |"
            ]
            if acc.get("keras_top1_before_folding") is not None
            else []
        ),
        "",
        "## Argmax agreement",
        "",
        "| pair | images | agreement | max abs logit diff |",
        "|---|---:|---:|---:|",
    ]
    fk, fo = agr["fpga_vs_keras"], agr["fpga_vs_onnx"]
    lines.append(f"| FPGA vs Keras | {fk['images'] if fk else 'n/a'} | {_pct(fk['agreement']) if fk else 'n/a'} | - |")
    lines.append(
        f"| FPGA vs ONNX reference (float) | {fo['images'] if fo else 'n/a'} | "
        f"{_pct(fo['agreement']) if fo else 'n/a'} | {fo['max_abs_logit_diff']:.4g} |"
        if fo
        else "| FPGA vs ONNX reference (float) | n/a | n/a | n/a |"
    )
    for pair, key in (
        ("FPGA vs ONNX reference (8-bit)", "fpga_vs_onnx_int8"),
        ("ONNX 8-bit vs float", "onnx_int8_vs_onnx"),
    ):
        a = agr.get(key)
        lines.append(f"| {pair} | {a['images'] if a else 'n/a'} | {_pct(a['agreement']) if a else 'n/a'} | - |")
    lines += [
        "",
        "## Latency and throughput",
        "",
        f"Per-image latency is batch time / batch size; {tim.get('warmup', WARMUP_NOTE)}.",
        "",
        "| path | timed batches | batch p50 ms | batch p99 ms | image p50 ms | image p99 ms | images/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, stats in (
        (fpga + (" - NOT board timings" if report["emulated"] else ""), tim["fpga"]),
        (reference_label(report), tim["onnx"]),
        (reference_label(report, "int8"), tim.get("onnx_int8")),
    ):
        ips = "n/a" if not stats else f"{stats['images_per_s']:.1f}"
        lines.append(
            f"| {name} | {stats['batches'] if stats else 'n/a'} | {_ms(stats, 'batch_ms_p50')} | "
            f"{_ms(stats, 'batch_ms_p99')} | {_ms(stats, 'image_ms_p50')} | {_ms(stats, 'image_ms_p99')} | {ips} |"
        )
    # Next to host timings, what the bundle's estimate models for the board (labelled ESTIMATE, with its band).
    lines += [""] + estimate_lines(report.get("board_estimate"), report["bundle"].get("board"))
    lines += _sweep_lines(report.get("sweep"), fpga, reference_label(report).replace(", float", ""))
    if report.get("sweep"):
        lines.append("")
    lines += _power_lines(report.get("power") or unavailable_report("not measured"))
    plots = report.get("plots") or {}
    if plots:
        titles = {
            "latency_histogram": "Latency histogram",
            "throughput_vs_batch": "Throughput vs batch size",
            "fpga_vs_cpu": "FPGA vs CPU: accuracy and latency",
            "power_trace": "Power trace",
        }
        lines += ["", "## Plots", ""]
        for name, file in plots.items():
            lines += [f"### {titles.get(name, name)}", "", f"![{titles.get(name, name)}]({file})", ""]
        lines.pop()
    tools = ", ".join(f"{k} {v}" for k, v in sorted(b["tool_versions"].items())) or "not recorded"
    lines += [
        "",
        "## Environment",
        "",
        f"- python {env['python']}, numpy {env['numpy']}, pynq {env['pynq'] or 'not installed'}, "
        f"onnxruntime {env['onnxruntime'] or 'not installed'}",
        f"- machine {env['machine']} ({env['platform']}, {env['cpu_count']} CPUs)",
        f"- bundle built with: {tools}",
    ]
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: str | os.PathLike, plots: bool = True) -> tuple[Path, Path]:
    """Write the PNG plots, ``report.json`` and ``report.md`` into ``out_dir`` (created if needed).

    The plots written are listed in ``report["plots"]`` (updated in place) and linked from the Markdown.

    Returns:
        The paths of ``report.json`` and ``report.md``.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if plots:
            from board.plots import write_plots

            written, plot_notes = write_plots(report, out)
            report["plots"] = written
            report["notes"] = [*report["notes"], *plot_notes]
        json_path, md_path = out / "report.json", out / "report.md"
        json_path.write_text(json.dumps(report, indent=2, sort_keys=True, allow_nan=True) + "\n")
        md_path.write_text(render_markdown(report))
    except OSError as exc:
        raise BoardError(f"cannot write the report into {out}: {exc}") from exc
    return json_path, md_path


def run_bench(
    bundle_dir: str | os.PathLike,
    n: int | None = None,
    batch_size: int = 100,
    out_dir: str | os.PathLike | None = None,
    cifar10_dir: str | os.PathLike | None = None,
    onnx_threads: int | None = None,
    timeout_s: float | None = None,
    *,
    batch_sizes: str | Sequence[int] | None = None,
    sweep_images: int | None = None,
    reference: str = "auto",
    power: PowerOptions | None = None,
    board: str | None = None,
    plots: bool = True,
    progress: bool | None = None,
    engine: str = "auto",
    csim_check: int | None = None,
    reference_engine: str = "auto",
) -> tuple[dict[str, Any], Path]:
    """Load and verify a bundle and the first ``n`` CIFAR-10 test images, benchmark, write the report.

    Args:
        bundle_dir: the bundle folder, ``<board>/<model_id>`` or a model id (see :mod:`board.registry`).
        n: number of test images, from the first (default :func:`default_image_count`: 10,000, or 1,000 on the
            C-simulation engine).
        batch_size: images per DMA transfer / ONNX Runtime call.
        out_dir: where to write the report (default ``build/reports/<board>/<model_id>``).
        cifar10_dir: CIFAR-10 folder (default: ``$CIFAR10_DIR``, then Keras's cache).
        onnx_threads: ONNX Runtime intra-op threads.
        timeout_s: per-batch DMA deadline.
        batch_sizes: batch sizes to sweep, e.g. ``"1,10,100"`` (default: those on a board, none emulated).
        sweep_images: images timed per swept batch size.
        reference: ``auto``, ``off`` or ``only`` (see :func:`benchmark`).
        power: power options.
        board: the board this runs on (default: detected; ``host`` off-board).
        plots: write the PNG plots.
        progress: progress bars on stderr (default: when stderr is a terminal).
        engine: emulated bundles only: ``fast`` (bit-exact numpy engine), ``csim`` (hls4ml C-simulation) or
            ``auto`` (fast when the bundle carries its firmware graph).
        csim_check: with the fast engine, the first this many images also go through the C-simulation and the
            raw outputs are compared bit for bit (default 100; 0 skips the check).
        reference_engine: what runs the ONNX references: ``auto`` (onnxruntime when it imports, else the numpy
            evaluator), ``ort`` or ``numpy``.

    Returns:
        ``(report, out_dir)``.

    Raises:
        BoardError: any problem with the bundle, the data, the DMA or the output folder.
    """
    from board.registry import HOST, check_board, detect_board, normalise_board, resolve_bundle

    if (n is not None and n < 1) or batch_size < 1:
        raise InputError(f"-n and --batch-size must be >= 1 (got {n}, {batch_size})")
    running_on = normalise_board(board) if board else detect_board()
    bundle = load_bundle(resolve_bundle(bundle_dir, running_on))
    m = bundle.manifest
    if reference != "only":
        check_board(m, running_on, bundle.root)
        if running_on == HOST and not m.emulated:
            raise BoardError(
                f"{bundle.root} holds a bitstream for the {m.board}: it runs on that board, not on this host. Run the "
                "bench there (`python -m board remote-bench`, or ssh), or add --reference-only for the ONNX Runtime "
                "figures on this machine"
            )
    engine = resolve_engine(bundle, engine) if m.emulated else "hardware"
    if n is None:
        n = default_image_count(m.emulated, reference, engine)
    if batch_sizes is None:
        sizes = () if (m.emulated and reference != "only") else DEFAULT_BATCH_SIZES
    else:
        sizes = parse_batch_sizes(batch_sizes)
    test = load_split("test", directory=cifar10_dir).head(n)
    if len(test) < n:
        log.warning("only %d test images available; benchmarking those", len(test))
    log.info(
        "benchmarking %s/%s on %d images (batch %d%s) on %s",
        m.board,
        m.model_id,
        len(test),
        batch_size,
        f", sweep {','.join(map(str, sizes))}" if sizes else "",
        running_on,
    )
    accelerator = None
    if m.emulated and reference != "only":
        capacity = max(batch_size, *sizes) if sizes else batch_size
        accelerator = Accelerator(bundle, batch_size=capacity, timeout_s=timeout_s, engine=engine)
    try:
        report = benchmark(
            bundle,
            test.images,
            test.labels,
            accelerator=accelerator,
            batch_size=batch_size,
            timeout_s=timeout_s,
            onnx_threads=onnx_threads,
            batch_sizes=sizes,
            sweep_images=sweep_images,
            reference=reference,
            reference_engine=reference_engine,
            power=power,
            progress=progress,
            running_on=running_on,
        )
    finally:
        if accelerator is not None:
            accelerator.close()
    if report["engine"] is None:  # --reference-only: no FPGA pass, but the report names the engine it would use
        report["engine"] = {"name": engine}
    if engine == "fast":
        check = min(DEFAULT_CSIM_CHECK if csim_check is None else csim_check, len(test))
        if check > 0 and reference != "only":
            log.info("cross-checking the fast engine against the hls4ml C-simulation on %d images", check)
            cross_check = csim_cross_check(bundle, test.images[:check])
            report["engine"]["csim_check"] = cross_check
            if not cross_check["bit_exact"]:
                differ = cross_check["images"] - cross_check["identical"]
                report["notes"].append(
                    f"fast engine and C-simulation differ on {differ} of {cross_check['images']} images"
                )
    out = Path(out_dir) if out_dir is not None else Path("build") / "reports" / m.board / m.model_id
    json_path, md_path = write_report(report, out, plots=plots)
    log.info("wrote %s and %s", json_path, md_path)
    return report, out
