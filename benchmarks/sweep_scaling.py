"""Scaling of a sweep on this machine: the same small grid on a local Ray instance with 1 and 2 workers.

Each worker count runs the whole grid from scratch in a folder of its own (so nothing is resumed) and the script
prints the wall time of each (Ray start and shutdown included), the mean time per run, and the speed-up over one
worker. Every run asks for ``--cpus-per-run`` CPUs and uses as many TensorFlow threads, so with 2 workers x 1 CPU
the two cores of a small machine each train one run. Also checks that the runs give the same numbers whatever the
worker count (op determinism). Usage::

    python benchmarks/sweep_scaling.py [--trials 4] [--epochs 1] [--train-limit 1024] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

import training.keras_compat  # noqa: F401  (before TensorFlow, as every entry point)
from board.cli import setup_logging
from training.experiments import Grid, run_sweep
from training.sweep import RayScheduler


def main() -> None:
    """Run the grid once per worker count and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--trials", type=int, default=4, help="runs in the grid (one config, N seeds)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-limit", type=int, default=1024, help="training images per run")
    parser.add_argument("--test-limit", type=int, default=256, help="test images per run")
    parser.add_argument("--cpus-per-run", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", help="keep the sweep folders here (default: a temporary folder, removed)")
    args = parser.parse_args()
    setup_logging(logging.WARNING)  # the CLIs' set-up, quiet: only warnings, the table is the output

    grid = Grid.from_dict({
        "name": "scaling", "models": [args.model], "quants": ["<8,3>"], "methods": ["plain"],
        "trials": args.trials, "epochs": args.epochs, "train_limit": args.train_limit,
        "test_limit": args.test_limit, "cpus_per_run": args.cpus_per_run,
    })  # fmt: skip
    print(f"sweep scaling on {os.cpu_count()} CPUs: {args.trials} runs of {args.model} <8,3>, {args.epochs} epoch(s) "
          f"on {args.train_limit} images, {args.cpus_per_run} CPU(s) per run, local Ray")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="sweep-scaling-") as tmp:
        root = args.out or tmp
        results = {}
        for n in args.workers:
            t0 = time.perf_counter()
            scheduler = RayScheduler(num_workers=n, log_to_driver=False)
            report = run_sweep(grid, os.path.join(root, f"workers{n}"), scheduler)
            wall = time.perf_counter() - t0
            if report.failed:
                raise SystemExit(f"{n} workers: runs failed: {report.failed}")
            results[n] = (wall, report.records)
        print(f"{'workers':>7} {'wall s':>8} {'s/run':>7} {'speed-up':>8}")
        base = results[args.workers[0]][0]
        for n, (wall, _) in results.items():
            print(f"{n:>7} {wall:>8.1f} {wall / args.trials:>7.1f} {base / wall:>8.2f}")
        first = {r.trial: r.history for r in results[args.workers[0]][1]}
        same = all({r.trial: r.history for r in recs} == first for _, recs in results.values())
        print(f"identical histories across worker counts: {same}")


if __name__ == "__main__":
    main()
