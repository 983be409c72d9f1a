r"""Throughput of the two engines behind the emulated overlay, side by side on the same real CIFAR-10 test images.

The hls4ml C-simulation (``board.csim_runner.CSimRunner``, ``--processes`` worker processes, plus one
process for the single-core figure) runs the first ``--csim-images`` test images; the fast numpy engine
(``board.fast_engine.FastEngine``) runs the first ``--fast-images`` (default: the whole test set). The
images both ran must give bit-identical raw outputs, or the script says so and exits with status 1.

Usage (board or host environment)::

    CIFAR10_DIR=../shared/datasets/cifar-10-batches-py PYTHONPATH=. python benchmarks/engine_speed.py \\
        --bundle overlays/pynq-z2/resnet8_q8_3 [--csim-images 200] [--fast-images 10000] [--processes 2] \\
        [--threads 2] [--graph-dir DIR] [--json report.json]

A bundle built before bundles carried the firmware graph needs ``--graph-dir`` (see
``python -m hls_build.firmware_graph``); ``build/firmware-graphs/<board>/<model_id>`` is tried by default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from board.bundle import load_bundle  # noqa: E402
from board.cifar10 import load_split  # noqa: E402
from board.csim_runner import CSimRunner  # noqa: E402
from board.errors import BoardError, BundleError  # noqa: E402
from board.fast_engine import FastEngine  # noqa: E402


def _open_engine(bundle, graph_dir: str | None, threads: int | None, chunk: int) -> FastEngine:
    kwargs = {"threads": threads, "chunk": chunk}
    if graph_dir:
        return FastEngine.from_bundle(bundle, graph_dir=graph_dir, **kwargs)
    try:
        return FastEngine.from_bundle(bundle, **kwargs)
    except BundleError:
        fallback = ROOT / "build" / "firmware-graphs" / bundle.manifest.board / bundle.manifest.model_id
        if (fallback / "graph.json").is_file():
            return FastEngine.from_bundle(bundle, graph_dir=fallback, **kwargs)
        raise


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def run(args: argparse.Namespace) -> dict:
    """Run both engines and return the figures (also printed)."""
    bundle = load_bundle(args.bundle)
    engine = _open_engine(bundle, args.graph_dir, args.threads, args.chunk)
    test = load_split("test", args.cifar10_dir)
    n_fast = min(args.fast_images, len(test))
    n_csim = min(args.csim_images, len(test))
    raw_all = test.images[: max(n_fast, n_csim)].reshape(-1, engine.n_in)
    labels = test.labels
    report: dict = {
        "bundle": str(bundle.root),
        "model_id": bundle.manifest.model_id,
        "host": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
    }

    # C-simulation, one process: the single-core figure.
    n_single = min(args.csim_single_images, n_csim)
    with CSimRunner.from_bundle(bundle, processes=1) as single:
        single.run(raw_all[:1])  # loads the library and its weights
        t = time.perf_counter()
        y_single = single.run(raw_all[:n_single])
        t_single = time.perf_counter() - t
    # C-simulation, several processes: the pool starts (and each worker loads the weights) before timing.
    with CSimRunner.from_bundle(bundle, processes=args.processes) as csim:
        t = time.perf_counter()
        csim.run(raw_all[: args.processes * CSimRunner.MIN_IMAGES_PER_PROCESS])
        t_start = time.perf_counter() - t
        t = time.perf_counter()
        y_csim = csim.run(raw_all[:n_csim])
        t_csim = time.perf_counter() - t

    # Fast engine on its own images (warm: the first call compiles nothing, but touches the caches).
    engine.predict_raw(raw_all[: engine.chunk])
    t = time.perf_counter()
    y_fast = engine.predict_raw(raw_all[:n_fast])
    t_fast = time.perf_counter() - t

    common = min(n_fast, n_csim)
    mismatched = int(np.sum((y_fast[:common] != y_csim[:common]).any(axis=1)))
    mismatched += int(np.sum((y_csim[:n_single] != y_single).any(axis=1)))
    r_single, r_csim, r_fast = _rate(n_single, t_single), _rate(n_csim, t_csim), _rate(n_fast, t_fast)
    report.update(
        csim_single={"images": n_single, "seconds": t_single, "images_per_s": r_single},
        csim={
            "images": n_csim,
            "processes": args.processes,
            "seconds": t_csim,
            "images_per_s": r_csim,
            "pool_start_s": t_start,
            "top1": float(np.mean(y_csim.argmax(1) == labels[:n_csim])),
        },
        fast={
            "images": n_fast,
            "threads": engine.threads,
            "chunk": engine.chunk,
            "seconds": t_fast,
            "images_per_s": r_fast,
            "top1": float(np.mean(y_fast.argmax(1) == labels[:n_fast])),
        },
        ratio_vs_csim_1_process=r_fast / r_single,
        ratio_vs_csim=r_fast / r_csim,
        full_test_set_seconds={"fast": 10_000 / r_fast, "csim": 10_000 / r_csim, "csim_1_process": 10_000 / r_single},
        bit_identical_images=common,
        mismatched_images=mismatched,
    )
    print(f"bundle {bundle.root} ({bundle.manifest.model_id}); host: {os.cpu_count()} CPUs, numpy {np.__version__}")
    print(f"{'engine':<34}{'images':>8}{'seconds':>10}{'images/s':>11}{'10k images':>12}")
    rows = [
        ("C-simulation, 1 process", n_single, t_single, r_single),
        (f"C-simulation, {args.processes} processes", n_csim, t_csim, r_csim),
        (f"fast engine, {engine.threads} threads", n_fast, t_fast, r_fast),
    ]
    for name, n, sec, rate in rows:
        print(f"{name:<34}{n:>8}{sec:>10.2f}{rate:>11.1f}{10_000 / rate:>11.1f}s")
    ratios = f"{r_fast / r_single:.0f}x (1 process), {r_fast / r_csim:.0f}x ({args.processes} processes)"
    print(f"ratio fast / C-simulation: {ratios}")
    print(
        f"top-1: C-simulation {report['csim']['top1']:.4f} on {n_csim}, fast {report['fast']['top1']:.4f} on {n_fast}"
    )
    if mismatched:
        print(
            f"MISMATCH: {mismatched} of the images both engines ran differ (see host_tests/board/test_fast_engine.py)"
        )
    else:
        print(f"bit-identical raw outputs on the {common} images both engines ran")
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default="overlays/pynq-z2/resnet8_q8_3", help="overlay bundle folder")
    p.add_argument("--graph-dir", help="firmware graph folder for a bundle that carries none")
    p.add_argument("--csim-images", type=int, default=200, help="test images through the C-simulation")
    p.add_argument("--csim-single-images", type=int, default=30, help="of those, run again in one process")
    p.add_argument("--fast-images", type=int, default=10_000, help="test images through the fast engine")
    p.add_argument("--processes", type=int, default=2, help="C-simulation worker processes")
    p.add_argument("--threads", type=int, default=None, help="fast engine threads (default: CPU count)")
    p.add_argument("--chunk", type=int, default=8, help="fast engine images per vectorized pass")
    p.add_argument("--cifar10-dir", default=os.environ.get("CIFAR10_DIR"), help="CIFAR-10 python batches")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    try:
        report = run(args)
    except BoardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["mismatched_images"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
