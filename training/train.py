"""Train one CIFAR ResNet (float or quantization-aware) and write it where hls_build picks it up.

A run writes, into its output folder:

* ``model.h5``: the trained Keras/QKeras model (load with :func:`load_trained_model`);
* ``config.json``: the resolved :class:`TrainConfig`, plus seed and tool versions;
* ``metrics.json``: top-1 on the CIFAR-10 test set (max and final), epochs, images/s;
* ``history.csv``: loss and accuracy per epoch.

Files are written to a temporary name and renamed, so an interrupted run never leaves a half-written model that
looks finished.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from board.cifar10 import Split, load_split
from training.data import eval_dataset, preprocessing_spec, train_dataset
from training.keras_compat import keras, tf
from training.models import create_model
from training.quant import QuantSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        model: registered model name, e.g. ``resnet8`` (see ``training.models.list_models``).
        quant: ``"<total,integer>"`` fixed-point spec for weights and activations, or None for float.
        skips: ``"all"``, ``"none"`` or one bool per residual block.
        epochs: passes over the 50,000 training images.
        batch_size: examples per step.
        lr_peak: learning rate after warm-up (SGD, Nesterov momentum).
        lr_warmup_epochs: linear warm-up from ``lr_peak / 10``; cosine decay to 0 afterwards.
        momentum: SGD momentum.
        weight_decay: L2 factor on kernels.
        seed: seed of weights, shuffling and augmentation.
        train_limit: use only the first N training images (0 = all 50,000); for tests.
        test_limit: evaluate on the first N test images (0 = all 10,000); for tests.
    """

    model: str = "resnet8"
    quant: str | None = "<8,3>"
    skips: str | tuple[bool, ...] = "all"
    epochs: int = 12
    batch_size: int = 128
    lr_peak: float = 0.1
    lr_warmup_epochs: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 5e-5
    seed: int = 0
    train_limit: int = 0
    test_limit: int = 0

    @property
    def quant_spec(self) -> QuantSpec | None:
        """The parsed quantization spec (None for float)."""
        return QuantSpec.parse(self.quant) if self.quant else None

    @property
    def model_id(self) -> str:
        """Identifier used for folders and bundles, e.g. ``resnet8_q8_3``."""
        tag = self.quant_spec.tag if self.quant_spec else "float"
        skips = "" if self.skips == "all" else ("_noskip" if self.skips == "none" else "_skips" + "".join(
            "1" if s else "0" for s in self.skips))  # fmt: skip
        return f"{self.model}_{tag}{skips}"


@dataclass
class TrainResult:
    """What a finished run reports (also written as ``metrics.json``)."""

    model_id: str
    test_top1_final: float
    test_top1_max: float
    test_images: int
    epochs: int
    train_seconds: float
    train_images_per_second: float
    history: dict[str, list[float]] = field(default_factory=dict)


class _CosineWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak``, then cosine decay to 0 at ``total_steps``."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        super().__init__()
        self.peak, self.warmup_steps, self.total_steps = peak, max(warmup_steps, 1), max(total_steps, 1)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * (0.1 + 0.9 * step / self.warmup_steps)
        progress = tf.clip_by_value((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 0, 1)
        cosine = 0.5 * self.peak * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


class _EpochLog(keras.callbacks.Callback):
    """One log line per epoch with test accuracy and throughput, so a long run shows its progress."""

    def __init__(self, epochs: int, images_per_epoch: int):
        super().__init__()
        self.epochs, self.images = epochs, images_per_epoch
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        dt = time.perf_counter() - self._t0
        log.info(
            "epoch %d/%d  loss %.4f  train top-1 %.4f  test top-1 %.4f  (%.0f s, %.0f img/s)",
            epoch + 1, self.epochs, logs.get("loss", float("nan")), logs.get("accuracy", float("nan")),
            logs.get("val_accuracy", float("nan")), dt, self.images / dt,
        )  # fmt: skip


def compile_model(model: keras.Model, cfg: TrainConfig, steps_per_epoch: int) -> None:
    """Attach the SGD optimizer with warm-up + cosine schedule, the logits loss and top-1 metric."""
    schedule = _CosineWithWarmup(
        cfg.lr_peak, int(cfg.lr_warmup_epochs * steps_per_epoch), cfg.epochs * steps_per_epoch
    )
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=cfg.momentum, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def tool_versions() -> dict[str, str]:
    """Versions of the libraries that shape the trained model."""
    import qkeras

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        "qkeras": getattr(qkeras, "__version__", "unknown"),
        "numpy": np.__version__,
    }


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def train(
    cfg: TrainConfig, out_dir: str | os.PathLike, train_split: Split | None = None, test_split: Split | None = None
) -> TrainResult:
    """Train ``cfg`` on CIFAR-10 and write the model, config, metrics and history to ``out_dir``.

    Args:
        cfg: the run's configuration.
        out_dir: folder for the outputs (created).
        train_split: training data; loaded from the CIFAR-10 batches when None.
        test_split: evaluation data; loaded when None.

    Returns:
        The run's metrics.

    Raises:
        board.errors.DatasetError: CIFAR-10 is missing or corrupt.
        training.quant.QuantSpecError / training.models.UnknownModelError: a bad config, before any training.
    """
    out = Path(out_dir)
    keras.utils.set_random_seed(cfg.seed)
    # Build first: a bad model name or quantization spec fails before minutes of data loading.
    model = create_model(cfg.model, quant=cfg.quant_spec, skips=cfg.skips, weight_decay=cfg.weight_decay)
    train_split = train_split if train_split is not None else load_split("train")
    test_split = test_split if test_split is not None else load_split("test")
    if cfg.train_limit:
        train_split = train_split.head(cfg.train_limit)
    if cfg.test_limit:
        test_split = test_split.head(cfg.test_limit)
    out.mkdir(parents=True, exist_ok=True)

    steps = math.ceil(len(train_split) / cfg.batch_size)
    compile_model(model, cfg, steps)
    log.info(
        "training %s (%s params) on %d images for %d epochs, testing on %d images",
        cfg.model_id, f"{model.count_params():,}", len(train_split), cfg.epochs, len(test_split),
    )  # fmt: skip
    t0 = time.perf_counter()
    hist = model.fit(
        train_dataset(train_split, cfg.batch_size, cfg.seed),
        epochs=cfg.epochs,
        validation_data=eval_dataset(test_split),
        callbacks=[_EpochLog(cfg.epochs, len(train_split))],
        verbose=0,
    )
    seconds = time.perf_counter() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    result = TrainResult(
        model_id=cfg.model_id,
        test_top1_final=history["val_accuracy"][-1],
        test_top1_max=max(history["val_accuracy"]),
        test_images=len(test_split),
        epochs=cfg.epochs,
        train_seconds=seconds,
        train_images_per_second=cfg.epochs * len(train_split) / seconds,
        history=history,
    )

    tmp_model = out / "model.h5.tmp.h5"
    model.save(tmp_model, include_optimizer=False)
    os.replace(tmp_model, out / "model.h5")
    _atomic_write_text(
        out / "config.json",
        json.dumps(
            {"config": asdict(cfg), "model_id": cfg.model_id, "preprocessing": preprocessing_spec(),
             "versions": tool_versions()}, indent=2,
        ) + "\n",
    )  # fmt: skip
    metrics = {k: v for k, v in asdict(result).items() if k != "history"}
    _atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    with (out / "history.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        keys = sorted(history)
        writer.writerow(["epoch", *keys])
        for i in range(cfg.epochs):
            writer.writerow([i + 1, *(f"{history[k][i]:.6f}" for k in keys)])
    log.info("test top-1 %.4f (max %.4f) after %.0f s; wrote %s", result.test_top1_final, result.test_top1_max,
             seconds, out)  # fmt: skip
    return result


def load_trained_model(path: str | os.PathLike) -> keras.Model:
    """Load a ``model.h5`` written by :func:`train` (QKeras layers included).

    Raises:
        FileNotFoundError: no such file.
        OSError / ValueError: the file is not a readable Keras model.
    """
    from qkeras.utils import load_qmodel

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained model; run `python -m training train` first")
    return load_qmodel(str(path), compile=False)
