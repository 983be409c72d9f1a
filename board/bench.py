"""Benchmark a bundle on CIFAR-10: FPGA (or its emulation) vs ONNX Runtime vs the quantized Keras model.

``python -m board bench --bundle overlays/pynq-z2/<model_id>`` runs the first ``n`` CIFAR-10 test images through
the accelerator and through the ONNX reference, and writes ``report.json`` and ``report.md`` with:

* top-1 of the FPGA path, of ONNX Runtime, and of Keras (the manifest's figure measured at build time, and on
  the same images from the bundle's ``keras_predictions.npy``);
* argmax agreement FPGA vs Keras and FPGA vs ONNX Runtime;
* latency per batch and per image (p50/p99) and throughput of both paths;
* the bundle's identity, tool versions and the environment.

When the bundle is emulated the FPGA figures come from the hls4ml C-simulation on the host, and the report says
so in bold: they are not board timings. Without onnxruntime (PYNQ-Z2) the reference is reported as not available.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from board import __version__
from board.bundle import Bundle, load_bundle
from board.cifar10 import load_split
from board.driver import Accelerator, BatchTiming
from board.errors import BoardError, BundleError, InputError, ToolMissingError

__all__ = ["benchmark", "environment", "latency_stats", "render_markdown", "run_bench", "write_report"]

log = logging.getLogger(__name__)

KERAS_PREDICTIONS = "keras_predictions.npy"
REPORT_SCHEMA = "board-bench/1"


def latency_stats(timings: Sequence[BatchTiming]) -> dict[str, Any] | None:
    """p50/p99 latency per batch and per image (batch time / batch size) and throughput, or None if empty."""
    if not timings:
        return None
    batch_s = np.array([t.seconds for t in timings])
    per_image_s = np.array([t.seconds / t.images for t in timings])
    images = int(sum(t.images for t in timings))
    total = float(batch_s.sum())
    p50b, p99b = np.percentile(batch_s * 1e3, [50, 99])
    p50i, p99i = np.percentile(per_image_s * 1e3, [50, 99])
    return {
        "batches": len(timings),
        "images": images,
        "total_s": total,
        "batch_ms_p50": float(p50b),
        "batch_ms_p99": float(p99b),
        "image_ms_p50": float(p50i),
        "image_ms_p99": float(p99i),
        "images_per_s": images / total if total > 0 else float("inf"),
    }


def _version(dist: str) -> str | None:
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
        "pynq": _version("pynq"),
        "onnxruntime": _version("onnxruntime"),
        "board_runtime": __version__,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
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


def benchmark(
    bundle: Bundle,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int = 100,
    timeout_s: float | None = None,
    onnx_threads: int | None = None,
    accelerator: Accelerator | None = None,
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
        accelerator: an open accelerator to use (default: open one on the bundle and close it afterwards).

    Returns:
        The report dict (see ``report.json``).
    """
    m = bundle.manifest
    n = len(images)
    if n < 1:
        raise InputError("the benchmark needs at least one image")
    notes: list[str] = []
    labels = np.asarray(labels, np.int64)

    own = accelerator is None
    acc = accelerator if accelerator is not None else Accelerator(bundle, batch_size=batch_size, timeout_s=timeout_s)
    try:
        acc.take_timings()
        logits_parts = []
        for start in range(0, n, batch_size):
            logits_parts.append(acc.predict(images[start : start + batch_size]))
            done = min(start + batch_size, n)
            log.info("fpga%s: %d/%d images (%.0f%%)", " (emulated)" if acc.emulated else "", done, n, 100 * done / n)
        fpga_timing = latency_stats(acc.take_timings())
        used_batch = acc.batch_size
    finally:
        if own:
            acc.close()
    fpga_logits = np.concatenate(logits_parts).reshape(n, -1)
    fpga_pred = np.argmax(fpga_logits, axis=1)

    onnx_logits = onnx_timing = None
    onnx_unavailable = None
    try:
        from board.reference import OnnxReference

        ref = OnnxReference.from_bundle(bundle, threads=onnx_threads)
        parts = []
        for start in range(0, n, batch_size):
            parts.append(ref.predict(images[start : start + batch_size], batch_size=batch_size))
            done = min(start + batch_size, n)
            log.info("onnxruntime: %d/%d images (%.0f%%)", done, n, 100 * done / n)
        onnx_logits = np.concatenate(parts).reshape(n, -1)
        onnx_timing = latency_stats(ref.take_timings())
    except ToolMissingError as exc:
        onnx_unavailable = str(exc)
    except BundleError as exc:
        if m.onnx_reference:
            raise
        onnx_unavailable = str(exc)
    if onnx_unavailable:
        notes.append(f"ONNX Runtime reference not available: {onnx_unavailable}")

    keras_pred = _keras_predictions(bundle, n, notes)
    k = 0 if keras_pred is None else len(keras_pred)

    accuracy: dict[str, Any] = {
        "fpga_top1": _top1(fpga_pred, labels),
        "onnx_top1": None if onnx_logits is None else _top1(np.argmax(onnx_logits, axis=1), labels),
        # As measured by hls_build (the first keras_top1_images test images; all 10,000 unless it says otherwise).
        "keras_top1_manifest": m.metrics.get("keras_top1"),
        "keras_top1_manifest_images": int(m.metrics.get("keras_top1_images", 10000)),
        "keras_top1_same_images": None if keras_pred is None else _top1(keras_pred, labels[:k]),
        "keras_same_images_count": k,
    }
    agreement: dict[str, Any] = {
        "fpga_vs_keras": None if keras_pred is None else {"images": k, "agreement": _top1(fpga_pred[:k], keras_pred)},
        "fpga_vs_onnx": None,
    }
    if onnx_logits is not None:
        agreement["fpga_vs_onnx"] = {
            "images": n,
            "agreement": _top1(fpga_pred, np.argmax(onnx_logits, axis=1)),
            "max_abs_logit_diff": float(np.max(np.abs(fpga_logits - onnx_logits))),
        }
    if m.emulated:
        label = (
            "HOST EMULATION of the hls4ml C-simulation (no bitstream): FPGA accuracy is the emulated design's; "
            "FPGA timings are host C-simulation timings, NOT board timings"
        )
    else:
        label = f"measured on the {m.board} board through the AXI DMA"
    return {
        "schema": REPORT_SCHEMA,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "fpga_label": label,
        "emulated": bool(m.emulated),
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
        "timing": {"fpga": fpga_timing, "onnx": onnx_timing},
        "onnx_unavailable": onnx_unavailable,
        "environment": environment(),
        "notes": notes,
    }


def _pct(x: Any) -> str:
    if x is None:
        return "n/a"
    x = float(x)
    return f"{100 * x:.2f} %" if x <= 1.0 else f"{x:.2f} %"  # metrics may hold a fraction or a percentage


def _ms(stats: dict[str, Any] | None, key: str) -> str:
    return "n/a" if not stats else f"{stats[key]:.3f}"


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
    fpga = "FPGA (emulated: hls4ml C-simulation on the host)" if report["emulated"] else f"FPGA ({b['board']})"
    lines = [f"# Benchmark: {b['model_id']} on {b['board']}", ""]
    if report["emulated"]:
        lines += [f"> **FPGA figures: {report['fpga_label']}.**", ""]
    else:
        lines += [f"> FPGA figures: {report['fpga_label']}.", ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| bundle | `{b['path']}` |",
        f"| board / model | {b['board']} / {b['model_id']} |",
        f"| emulated | {str(b['emulated']).lower()} |",
        f"| bitstream | {'yes' if b['has_bitstream'] else 'none'} |",
        f"| stream types | in {b['input']}, out {b['output']} |",
        f"| images | {n} ({report['dataset']}) |",
        f"| batch size | {batch['requested']} requested, {batch['dma']} per DMA transfer |",
        f"| created | {report['created_utc']} |",
        "",
        "## Top-1 accuracy",
        "",
        "| path | images | top-1 |",
        "|---|---:|---:|",
        f"| {fpga} | {n} | {_pct(acc['fpga_top1'])} |",
        f"| ONNX Runtime (float reference) | {onnx_n} | {_pct(acc['onnx_top1'])} |",
        f"| Keras (quantized), same images, from `{KERAS_PREDICTIONS}` | {acc['keras_same_images_count'] or 'n/a'} | "
        f"{_pct(acc['keras_top1_same_images'])} |",
        f"| Keras (quantized), as measured at build time (manifest metrics) | {acc['keras_top1_manifest_images']} | "
        f"{_pct(acc['keras_top1_manifest'])} |",
        "",
        "## Argmax agreement",
        "",
        "| pair | images | agreement | max abs logit diff |",
        "|---|---:|---:|---:|",
    ]
    fk, fo = agr["fpga_vs_keras"], agr["fpga_vs_onnx"]
    lines.append(f"| FPGA vs Keras | {fk['images'] if fk else 'n/a'} | {_pct(fk['agreement']) if fk else 'n/a'} | - |")
    lines.append(
        f"| FPGA vs ONNX Runtime | {fo['images'] if fo else 'n/a'} | {_pct(fo['agreement']) if fo else 'n/a'} | "
        f"{fo['max_abs_logit_diff']:.4g} |"
        if fo
        else "| FPGA vs ONNX Runtime | n/a | n/a | n/a |"
    )
    lines += [
        "",
        "## Latency and throughput",
        "",
        "Per-image latency is batch time / batch size.",
        "",
        "| path | batches | batch p50 ms | batch p99 ms | image p50 ms | image p99 ms | images/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, stats in (
        (fpga + (" - NOT board timings" if report["emulated"] else ""), tim["fpga"]),
        ("ONNX Runtime (CPU)", tim["onnx"]),
    ):
        ips = "n/a" if not stats else f"{stats['images_per_s']:.1f}"
        lines.append(
            f"| {name} | {stats['batches'] if stats else 'n/a'} | {_ms(stats, 'batch_ms_p50')} | "
            f"{_ms(stats, 'batch_ms_p99')} | {_ms(stats, 'image_ms_p50')} | {_ms(stats, 'image_ms_p99')} | {ips} |"
        )
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


def write_report(report: dict[str, Any], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir`` (created if needed); return their paths."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        json_path, md_path = out / "report.json", out / "report.md"
        json_path.write_text(json.dumps(report, indent=2, sort_keys=True, allow_nan=True) + "\n")
        md_path.write_text(render_markdown(report))
    except OSError as exc:
        raise BoardError(f"cannot write the report into {out}: {exc}") from exc
    return json_path, md_path


def run_bench(
    bundle_dir: str | os.PathLike,
    n: int = 1000,
    batch_size: int = 100,
    out_dir: str | os.PathLike | None = None,
    cifar10_dir: str | os.PathLike | None = None,
    onnx_threads: int | None = None,
    timeout_s: float | None = None,
) -> tuple[dict[str, Any], Path]:
    """Load and verify a bundle and the first ``n`` CIFAR-10 test images, benchmark, write the report.

    Args:
        bundle_dir: the bundle folder.
        n: number of test images (from the first).
        batch_size: images per DMA transfer / ONNX Runtime call.
        out_dir: where to write the report (default ``build/reports/<board>/<model_id>``).
        cifar10_dir: CIFAR-10 folder (default: ``$CIFAR10_DIR``, then Keras's cache).
        onnx_threads: ONNX Runtime intra-op threads.
        timeout_s: per-batch DMA deadline.

    Returns:
        ``(report, out_dir)``.

    Raises:
        BoardError: any problem with the bundle, the data, the DMA or the output folder.
    """
    if n < 1 or batch_size < 1:
        raise InputError(f"-n and --batch-size must be >= 1 (got {n}, {batch_size})")
    bundle = load_bundle(bundle_dir)
    test = load_split("test", directory=cifar10_dir).head(n)
    if len(test) < n:
        log.warning("only %d test images available; benchmarking those", len(test))
    log.info(
        "benchmarking %s/%s on %d images (batch %d)",
        bundle.manifest.board,
        bundle.manifest.model_id,
        len(test),
        batch_size,
    )
    report = benchmark(
        bundle, test.images, test.labels, batch_size=batch_size, timeout_s=timeout_s, onnx_threads=onnx_threads
    )
    out = (
        Path(out_dir)
        if out_dir is not None
        else Path("build") / "reports" / bundle.manifest.board / bundle.manifest.model_id
    )
    json_path, md_path = write_report(report, out)
    log.info("wrote %s and %s", json_path, md_path)
    return report, out
