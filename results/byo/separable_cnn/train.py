r"""Train a small float Keras CNN built from DepthwiseConv2D and SeparableConv2D (MobileNet-style blocks).

It exists to be imported with ``python -m hls_build import`` (issue 15 item 1: depthwise and separable
convolutions end to end) and is deliberately small and short-trained (bounded to ``--max-minutes`` of wall time on
the shared 2-core host): the figures measure the deployment path, not a good CIFAR-10 model. Plain Keras layers
only (no code from ``training/``); input: raw 0..255 pixels normalized per channel, ``(pixel / 255 - mean) / std``
with the usual CIFAR-10 statistics, inside the training loop (not a model layer), as PyTorch-style code does.

Layout: Conv2D 3x3 16 + BN + ReLU (32x32); DepthwiseConv2D 3x3 + BN + ReLU, Conv2D 1x1 32 + BN + ReLU;
SeparableConv2D 32 stride 2 + BN + ReLU (16x16); SeparableConv2D 64 stride 2 + BN + ReLU (8x8); DepthwiseConv2D
3x3 stride 2 + BN + ReLU (4x4); GlobalAveragePooling2D; Dense 10 + softmax. Adam 3e-3 with cosine decay, batch 128,
horizontal flips; float top-1 on the 10,000 test images at the end.

Run (from the repository root)::

    PYTHONPATH=. CIFAR10_DIR=... nice -n 10 .venv-host/bin/python results/byo/separable_cnn/train.py \
        --out results/byo/separable_cnn > results/byo/separable_cnn/train.log 2>&1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from training.keras_compat import keras, tf

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def separable_cnn() -> keras.Model:
    """The model (see the module doc)."""
    layers = keras.layers

    def bn_relu(x):
        return layers.ReLU()(layers.BatchNormalization()(x))

    inp = keras.Input((32, 32, 3))
    x = bn_relu(layers.Conv2D(16, 3, padding="same", use_bias=False)(inp))
    x = bn_relu(layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x))
    x = bn_relu(layers.Conv2D(32, 1, use_bias=False)(x))
    x = bn_relu(layers.SeparableConv2D(32, 3, strides=2, padding="same", use_bias=False)(x))
    x = bn_relu(layers.SeparableConv2D(64, 3, strides=2, padding="same", use_bias=False)(x))
    x = bn_relu(layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False)(x))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(x), name="separable_cnn")


def main() -> None:
    """Train for ``--epochs`` (fewer if ``--max-minutes`` would be passed), save ``model.h5`` and ``metrics.json``."""
    from board.cifar10 import load_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-minutes", type=float, default=2.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    train, test = load_split("train"), load_split("test")

    def prep(pixels: np.ndarray) -> np.ndarray:
        return ((pixels.astype(np.float32) / 255.0 - np.float32(MEAN)) / np.float32(STD)).astype(np.float32)

    ds = tf.data.Dataset.from_tensor_slices((prep(train.images), train.labels.astype(np.int32)))
    ds = ds.shuffle(50_000, seed=args.seed).map(lambda a, y: (tf.image.random_flip_left_right(a), y)).batch(128)
    steps = args.epochs * int(np.ceil(len(train) / 128))
    model = separable_cnn()
    lr = keras.optimizers.schedules.CosineDecay(3e-3, steps)
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    start, run = time.monotonic(), 0
    for epoch in range(args.epochs):
        hist = model.fit(ds, epochs=1, verbose=0)
        run = epoch + 1
        elapsed = time.monotonic() - start
        print(f"epoch {run}: {elapsed:.0f} s, { ({k: round(v[-1], 4) for k, v in hist.history.items()}) }", flush=True)
        if elapsed * (run + 1) / run > args.max_minutes * 60:
            break
    top1 = float(np.mean(model.predict(prep(test.images), batch_size=500, verbose=0).argmax(1) == test.labels))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.h5", include_optimizer=False)
    metrics = {"epochs_run": run, "epochs_planned": args.epochs, "seconds": round(time.monotonic() - start, 1),
               "test_top1_float": top1, "test_images": len(test), "params": int(model.count_params())}  # fmt: skip
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"float top-1 on {len(test)} test images: {top1:.2%}; {metrics}")


if __name__ == "__main__":
    main()
