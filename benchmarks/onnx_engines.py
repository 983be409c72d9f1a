r"""The two ONNX reference engines on this machine: onnxruntime vs the numpy evaluator, float and 8-bit, in images/s.

On a PYNQ-Z2 the bench's CPU figures come from the numpy evaluator (``board.onnx_numpy``: no onnxruntime wheel for
armv7l). This script runs both engines on the same bundle and the same CIFAR-10 test images here, so the ratio
tells a Z2 user what the board figure measures: the numpy evaluator's speed, which is lower than what onnxruntime
would reach on the same core (``ort / numpy`` below), not the CPU's best. For each of the bundle's references
(``reference.onnx``, float, and ``reference_int8.onnx``, 8-bit QDQ) and each engine it prints images/s (timed
batches only: the first batch is a warm-up), top-1, and the argmax agreement of the two engines.

Usage (board environment; the host environment works too)::

    CIFAR10_DIR=../shared/datasets/cifar-10-batches-py PYTHONPATH=. .venv-board/bin/python \
        benchmarks/onnx_engines.py --bundle overlays/pynq-z2/resnet8_q8_3 [-n 2000] [--batch-size 100] \
        [--threads 2] [--json out.json]

``--threads`` sets onnxruntime's intra-op threads and numpy's BLAS threads (``OMP_NUM_THREADS`` and friends,
set before numpy loads); the PYNQ-Z2 has 2 Cortex-A9 cores. Speed targets live here, not in the tests.
"""

from __future__ import annotations

import argparse
import os
import sys


def _early_threads(argv: list[str]) -> None:
    """Set the BLAS thread count before numpy is imported (it is read once, at load)."""
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--threads=") else None
        if arg == "--threads" and i + 1 < len(argv):
            value = argv[i + 1]
        if value:
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = value


if __name__ == "__main__":
    _early_threads(sys.argv[1:])

import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from board.bundle import load_bundle  # noqa: E402
from board.cifar10 import load_split  # noqa: E402
from board.cli import run as run_cli  # noqa: E402
from board.errors import BundleError, ToolMissingError  # noqa: E402
from board.onnx_reference import OnnxReference  # noqa: E402


def _measure(ref: OnnxReference, images: np.ndarray, batch: int) -> tuple[np.ndarray, float, float]:
    """Logits, timed images/s (first batch left out when there are others) and wall seconds."""
    ref.take_timings()
    t0 = time.perf_counter()
    logits = ref.predict(images, batch_size=batch)
    wall = time.perf_counter() - t0
    timings = ref.take_timings()
    timed = timings[1:] if len(timings) > 1 else timings
    seconds = sum(t.seconds for t in timed)
    return logits, sum(t.images for t in timed) / seconds if seconds > 0 else float("inf"), wall


def measure(bundle_dir: str, n: int, batch: int, threads: int | None, cifar10_dir: str | None) -> dict:
    """Both engines on both references of a bundle; returns the figures (also printed)."""
    bundle = load_bundle(bundle_dir)
    test = load_split("test", directory=cifar10_dir).head(n)
    rows = []
    for precision in ("float", "int8"):
        results = {}
        for engine in ("ort", "numpy"):
            try:
                ref = OnnxReference.from_bundle(bundle, threads=threads, engine=engine, precision=precision)
            except (ToolMissingError, BundleError) as exc:
                results[engine] = {"available": False, "reason": str(exc)}
                continue
            logits, ips, wall = _measure(ref, test.images, batch)
            results[engine] = {
                "available": True,
                "engine": ref.engine_description,
                "images_per_s": ips,
                "wall_s": wall,
                "top1": float(np.mean(logits.argmax(1) == test.labels)),
                "_pred": logits.argmax(1),
            }
        ort, npy = results.get("ort", {}), results.get("numpy", {})
        row = {"precision": precision, "ort": ort, "numpy": npy}
        if ort.get("available") and npy.get("available"):
            row["ort_over_numpy"] = ort["images_per_s"] / npy["images_per_s"]
            row["argmax_agreement"] = float(np.mean(ort["_pred"] == npy["_pred"]))
        rows.append(row)
    for row in rows:
        for engine in ("ort", "numpy"):
            row[engine].pop("_pred", None)
    return {
        "bundle": str(bundle.root),
        "images": len(test),
        "batch_size": batch,
        "threads": threads,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "rows": rows,
    }


def _print(report: dict) -> None:
    print(
        f"{report['bundle']}: {report['images']} CIFAR-10 test images, batch {report['batch_size']}, "
        f"threads {report['threads'] or 'default'}, on {report['machine']} ({report['cpu_count']} CPUs)"
    )
    print(f"{'reference':<10} {'engine':<50} {'images/s':>10} {'top-1':>8}")
    for row in report["rows"]:
        for engine in ("ort", "numpy"):
            r = row[engine]
            if r.get("available"):
                print(f"{row['precision']:<10} {r['engine']:<50} {r['images_per_s']:>10.1f} {100 * r['top1']:>7.2f}%")
            else:
                print(f"{row['precision']:<10} {engine:<50} {'n/a':>10}  ({r.get('reason')})")
        if "ort_over_numpy" in row:
            print(
                f"{row['precision']:<10} onnxruntime / numpy evaluator: {row['ort_over_numpy']:.2f}x; argmax agreement "
                f"{100 * row['argmax_agreement']:.2f} %"
            )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (exit 0, or 2 on a bad bundle or missing data)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default="overlays/pynq-z2/resnet8_q8_3", help="overlay bundle folder")
    p.add_argument("-n", type=int, default=2000, help="test images, from the first (default 2000)")
    p.add_argument("--batch-size", type=int, default=100, help="images per engine call (default 100)")
    p.add_argument("--threads", type=int, help="onnxruntime and BLAS threads (default: each library's own)")
    p.add_argument("--cifar10-dir", default=os.environ.get("CIFAR10_DIR"), help="CIFAR-10 python batches")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)

    def work() -> int:
        report = measure(args.bundle, args.n, args.batch_size, args.threads, args.cifar10_dir)
        _print(report)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        return 0

    return run_cli(work)


if __name__ == "__main__":
    raise SystemExit(main())
