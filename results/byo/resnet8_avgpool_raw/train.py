"""Train the bring-your-own target: a plain float Keras ResNet-8 written the way public CIFAR-10 code writes it.

The MLPerf Tiny ResNet-8 layout (stem conv 16, three stacks of 16/32/64 filters, a 1x1 strided shortcut
convolution where the shape changes, ``AveragePooling2D(8)`` + ``Flatten`` + ``Dense`` + softmax), built with
plain Keras layers (no code from ``training/``), taking **raw 0..255 pixels** (no rescaling in the model) as many
public scripts do. It exists to be imported with ``python -m hls_build import --input-scale 1``.

Short recipe, bounded by wall time: Adam, cosine learning rate over the epochs that fit
(``--epochs`` at most, counted from the first epoch's time), batch 64, pad-4 random crop and
horizontal flip, L2 1e-4; training stops after ``--max-minutes`` even if epochs remain (the number run is logged
and stored in ``metrics.json``). Float top-1 on the 10,000 test images is measured at the end.

Run (from the repository root)::

    PYTHONPATH=. CIFAR10_DIR=... nice -n 10 .venv-host/bin/python results/byo/resnet8_avgpool_raw/train.py \
        --out results/byo/resnet8_avgpool_raw > results/byo/resnet8_avgpool_raw/train.log 2>&1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from training.keras_compat import keras, tf


def resnet8_avgpool(l2: float = 1e-4) -> keras.Model:
    """MLPerf Tiny's ResNet-8 in plain Keras: raw pixels in, softmax out."""
    reg = keras.regularizers.l2(l2)

    def conv(x, filters, kernel=3, strides=1):
        return keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", kernel_regularizer=reg,
                                   kernel_initializer="he_normal")(x)  # fmt: skip

    inp = keras.Input((32, 32, 3))
    x = conv(inp, 16)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    for filters, strides in ((16, 1), (32, 2), (64, 2)):
        y = conv(x, filters, strides=strides)
        y = keras.layers.BatchNormalization()(y)
        y = keras.layers.Activation("relu")(y)
        y = conv(y, filters)
        y = keras.layers.BatchNormalization()(y)
        if strides != 1:
            x = conv(x, filters, kernel=1, strides=strides)
        x = keras.layers.Add()([x, y])
        x = keras.layers.Activation("relu")(x)
    x = keras.layers.AveragePooling2D(pool_size=8)(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(10, activation="softmax", kernel_initializer="he_normal")(x)
    return keras.Model(inp, out, name="resnet8_avgpool_raw")


class _TimeLimit(keras.callbacks.Callback):
    def __init__(self, seconds: float, planned: int, base: float) -> None:
        super().__init__()
        self.seconds, self.start, self.epochs_run = seconds, time.monotonic(), 0
        self.planned, self.base = planned, base

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_run = epoch + 1
        elapsed = time.monotonic() - self.start
        print(f"epoch {epoch + 1}: {elapsed:.0f} s, {logs}", flush=True)
        if epoch == 0:
            # The cosine schedule spans the epochs that fit in the time limit, measured on the first one.
            self.planned = max(2, min(self.planned, int(self.seconds // elapsed)))
            print(f"planning {self.planned} epochs", flush=True)
        if epoch + 1 >= self.planned or elapsed * (epoch + 2) / (epoch + 1) > self.seconds:
            self.model.stop_training = True

    def lr(self, epoch: int, _lr: float) -> float:
        return float(self.base * 0.5 * (1 + np.cos(np.pi * epoch / self.planned)))


def main() -> None:
    """Train, evaluate on the test set, write model.h5 and metrics.json into --out."""
    from board.cifar10 import load_split

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-minutes", type=float, default=14.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    keras.utils.set_random_seed(args.seed)
    train, test = load_split("train"), load_split("test")
    x = train.images.astype(np.float32)  # raw pixels, 0..255

    def augment(img, label):
        img = tf.pad(img, [[4, 4], [4, 4], [0, 0]])
        img = tf.image.random_crop(img, [32, 32, 3])
        return tf.image.random_flip_left_right(img), label

    ds = tf.data.Dataset.from_tensor_slices((x, train.labels.astype(np.int32)))
    ds = ds.shuffle(len(x), seed=args.seed).map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(64).prefetch(tf.data.AUTOTUNE)
    model = resnet8_avgpool()
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    limit = _TimeLimit(args.max_minutes * 60, args.epochs, 2e-3)
    schedule = keras.callbacks.LearningRateScheduler(limit.lr)
    model.fit(ds, epochs=args.epochs, callbacks=[schedule, limit], verbose=2)
    y = model.predict(test.images.astype(np.float32), batch_size=500, verbose=0)
    top1 = float(np.mean(y.argmax(1) == test.labels))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.h5", include_optimizer=False)
    metrics = {"test_top1_float": top1, "test_images": len(test), "epochs_run": limit.epochs_run,
               "epochs_planned": args.epochs, "train_seconds": round(time.monotonic() - limit.start, 1)}  # fmt: skip
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics), flush=True)


if __name__ == "__main__":
    main()
