"""Training throughput (images/s) of the CIFAR ResNets on this machine, float and quantization-aware.

Runs a few training steps of each model on random CIFAR-shaped data (the pipeline's augmentation is excluded: this
measures the model's forward + backward + update), after one warm-up step, and prints images/s and the quantized /
float ratio, for the float model, the ``<8,3>`` one and the ``<8,3>`` one with BatchNormalization folded into its
convolutions during training (``--fold-bn``: each folded layer also convolves with the unfolded kernel for the batch
statistics, so it costs more per step).
Usage: ``python benchmarks/training_throughput.py [--models resnet8 resnet20] [--steps 20]``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from training.keras_compat import keras
from training.models import create_model


def throughput(name: str, quant: str | None, steps: int, batch: int, fold_bn: bool = False) -> float:
    """Images/s of ``steps`` SGD steps at batch ``batch`` (after one warm-up step)."""
    model = create_model(name, quant=quant, fold_bn=fold_bn)
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    rng = np.random.default_rng(0)
    x = rng.random((batch * steps, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, batch * steps)
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    return batch * steps / (time.perf_counter() - t)


def main() -> None:
    """Print a table of images/s per model, float and <8,3>."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["resnet8", "resnet20"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    print(f"training throughput on {os.cpu_count()} CPUs, batch {args.batch_size}, {args.steps} steps")
    print(f"{'model':<10} {'float img/s':>12} {'<8,3> img/s':>12} {'ratio':>7} {'<8,3> fold-bn':>14} {'ratio':>7}")
    for name in args.models:
        f = throughput(name, None, args.steps, args.batch_size)
        q = throughput(name, "<8,3>", args.steps, args.batch_size)
        qf = throughput(name, "<8,3>", args.steps, args.batch_size, fold_bn=True)
        print(f"{name:<10} {f:>12.0f} {q:>12.0f} {q / f:>7.2f} {qf:>14.0f} {qf / f:>7.2f}")


if __name__ == "__main__":
    main()
