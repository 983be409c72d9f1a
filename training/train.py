"""Train one CIFAR ResNet (float or quantization-aware) and write it where hls_build picks it up.

A run writes, into its output folder:

* ``model.h5``: the trained Keras/QKeras model (load with :func:`load_trained_model`);
* ``config.json``: the resolved :class:`TrainConfig`, plus seed and tool versions;
* ``metrics.json``: top-1 on the CIFAR-10 test set (max and final), epochs, images/s;
* ``history.csv``: loss and accuracy per epoch.

* ``checkpoints/``: weights, optimizer state and epoch after every epoch (TensorFlow checkpoints).

Files are written to a temporary name and renamed, so an interrupted run never leaves a half-written model that
looks finished. A run started again on the same folder with the same config resumes from its last checkpoint
(the optimizer's momentum and step count, the skip gates and the history carry on); a different config is refused
and nothing in the folder is touched. Every load is verified: all of the model's and optimizer's variables must
be matched by the checkpoint, or the run stops with an error instead of training from a silent partial load.

``fold_bn`` trains every convolution with its BatchNormalization folded in (``training.models``: QKeras
``QConv2DBatchnorm``), so hls_build deploys the quantized kernels the run trained; ``bn_freeze_epoch`` freezes the
BatchNormalization statistics from that epoch on, after which every step trains exactly the deployed arithmetic.

Methods: ``plain`` (cross-entropy), ``kd`` (distillation from ``teacher``), ``skip_remover`` / ``skip_shortener``
(Tailor: a gated student initialised from the teacher, distilled, one more skip removed or shortened every
``skip_every_epochs`` epochs). Recipes: ``short`` (warm-up + cosine, for this machine) and ``he`` (He et al.: lr 0.1,
divided by 10 at 32k and 48k iterations, 64k iterations at batch 128 = 164 epochs).
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

from board.cifar10 import Split
from board.errors import ProjectError
from training.data import eval_dataset, preprocessing_spec, run_splits, train_dataset
from training.distill import KD_LOSSES, StudentTrainer
from training.keras_compat import keras, tf
from training.models import (
    block_names,
    copy_weights_by_name,
    create_model,
    depth_of_name,
    export_clean,
    is_folded_layer,
)
from training.quant import QuantSpec
from training.skips import SKIP_METHODS, SkipSchedule, epochs_to_finish

METHODS = ("plain", "kd", *SKIP_METHODS)
RECIPES = ("short", "he")
#: He et al.'s schedule in iterations (batch 128).
HE_BOUNDARIES = (32_000, 48_000)
HE_ITERATIONS = 64_000


class ConfigMismatchError(ProjectError, ValueError):
    """An output folder holds a run of another config; resuming it would mix two experiments."""


class CheckpointError(ProjectError, ValueError):
    """A checkpoint in the run folder that cannot be read (corrupt, truncated) or does not fit the model."""


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        model: registered model name, e.g. ``resnet8`` (see ``training.models.list_models``).
        quant: ``"<total,integer>"`` fixed-point spec for weights and activations, or None for float.
        skips: ``"all"``, ``"none"``, ``"short"`` or one mode/bool per residual block (the student's start for
            the skip methods, which need ``"all"``).
        epochs: passes over the 50,000 training images (``he`` recipe: 0 means its 164).
        batch_size: examples per step.
        recipe: ``short`` or ``he`` (see the module doc).
        lr_peak: learning rate after warm-up (SGD, Nesterov momentum) for ``short``; the initial one for ``he``.
        lr_warmup_epochs: ``short``: linear warm-up from ``lr_peak / 10``; cosine decay to 0 afterwards.
        momentum: SGD momentum.
        weight_decay: L2 factor on kernels; Keras adds ``wd * sum(w^2)``, so 5e-5 is He et al.'s 1e-4 decay.
        seed: seed of weights, shuffling and augmentation.
        method: ``plain``, ``kd``, ``skip_remover`` or ``skip_shortener``.
        teacher: path of the teacher's ``model.h5`` (``kd`` and the skip methods).
        kd_loss: ``hinton``, ``tailor`` or ``ce`` (the skip methods default to Tailor's).
        kd_temperature: Hinton's T.
        kd_alpha: Hinton's weight of the soft targets.
        init_from_teacher: start the student from the teacher's weights (Tailor does).
        skip_every_epochs: k, epochs between two skip changes.
        train_limit: use only the first N training images (0 = all 50,000); for tests.
        test_limit: evaluate on the first N test images (0 = all 10,000); for tests.
        fold_bn: train each convolution with its BatchNormalization folded in (quantized models only).
        bn_freeze_epoch: ``fold_bn``: freeze the BatchNormalization statistics from this epoch on (fractions
            allowed; 0 = never).
        label_smoothing: of the hard-label cross-entropy (0 = none).
        init_from: path of a trained ``model.h5`` whose weights start this run (by layer name; a convolution and its
            BatchNormalization move into or out of a folded layer), e.g. a folded fine-tune of an unfolded run.
    """

    model: str = "resnet8"
    quant: str | None = "<8,3>"
    skips: str | tuple = "all"
    epochs: int = 12
    batch_size: int = 128
    recipe: str = "short"
    lr_peak: float = 0.1
    lr_warmup_epochs: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 5e-5
    seed: int = 0
    method: str = "plain"
    teacher: str | None = None
    kd_loss: str = "hinton"
    kd_temperature: float = 4.0
    kd_alpha: float = 0.9
    init_from_teacher: bool = False
    skip_every_epochs: int = 3
    train_limit: int = 0
    test_limit: int = 0
    fold_bn: bool = False
    bn_freeze_epoch: float = 0.0
    label_smoothing: float = 0.0
    init_from: str | None = None

    def __post_init__(self) -> None:
        from training.models import depth_of_name

        depth_of_name(self.model)  # UnknownModelError for a name that is not registered
        if self.quant:
            QuantSpec.parse(self.quant)  # QuantSpecError for an unrepresentable spec
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; use one of {METHODS}")
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; use one of {RECIPES}")
        if self.kd_loss not in KD_LOSSES:
            raise ValueError(f"unknown kd_loss {self.kd_loss!r}; use one of {KD_LOSSES}")
        if self.method != "plain" and not self.teacher:
            raise ValueError(f"method {self.method!r} needs a teacher (path of a trained model.h5)")
        if self.method in SKIP_METHODS and self.skips != "all":
            raise ValueError(f"{self.method} starts from all long skips; got skips={self.skips!r}")
        if isinstance(self.skips, list):
            object.__setattr__(self, "skips", tuple(self.skips))
        if self.fold_bn and not self.quant:
            raise ValueError("fold_bn folds BatchNormalization into quantized convolutions: give a quant spec")
        if self.bn_freeze_epoch < 0 or (self.bn_freeze_epoch and not self.fold_bn):
            raise ValueError(f"bn_freeze_epoch must be >= 0 and needs fold_bn, got {self.bn_freeze_epoch}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    def record(self) -> dict:
        """The config as recorded and compared (``config.json``, sweep fingerprints).

        Fields added after runs were recorded are left out while at their defaults, so those runs keep matching.
        """
        out = asdict(self)
        for key, default in _LATER_FIELDS.items():
            if out[key] == default:
                del out[key]
        return out

    @property
    def total_epochs(self) -> int:
        """Epochs this run trains for (the ``he`` recipe's 164 when ``epochs`` is 0)."""
        if self.recipe == "he" and self.epochs == 0:
            return math.ceil(HE_ITERATIONS * self.batch_size / 50_000)
        return self.epochs

    @property
    def quant_spec(self) -> QuantSpec | None:
        """The parsed quantization spec (None for float)."""
        return QuantSpec.parse(self.quant) if self.quant else None

    @property
    def model_id(self) -> str:
        """Identifier used for folders and bundles, e.g. ``resnet8_q8_3``, ``resnet20_float_noskip``."""
        from training.models import depth_of_name, resolve_skips, skips_tag

        tag = self.quant_spec.tag if self.quant_spec else "float"
        method = {"plain": "", "kd": "_kd", "skip_remover": "_skipremover", "skip_shortener": "_skipshortener"}
        return (
            f"{self.model}_{tag}{skips_tag(resolve_skips(depth_of_name(self.model), self.skips))}{method[self.method]}"
        )


#: Fields added to :class:`TrainConfig` after results were recorded, with their defaults.
_LATER_FIELDS = {"fold_bn": False, "bn_freeze_epoch": 0.0, "label_smoothing": 0.0, "init_from": None}


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


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """SGD with Nesterov momentum and the recipe's learning-rate schedule."""
    if cfg.recipe == "he":
        # He et al. count iterations at batch 128; scale the boundaries for other batch sizes.
        scale = 128 / cfg.batch_size
        boundaries = [int(b * scale) for b in HE_BOUNDARIES]
        lr = cfg.lr_peak
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, [lr, lr / 10, lr / 100])
        return keras.optimizers.SGD(schedule, momentum=cfg.momentum)
    schedule = _CosineWithWarmup(
        cfg.lr_peak, int(cfg.lr_warmup_epochs * steps_per_epoch), cfg.total_epochs * steps_per_epoch
    )
    return keras.optimizers.SGD(schedule, momentum=cfg.momentum, nesterov=True)


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


def _config_record(cfg: TrainConfig) -> dict:
    return {"config": cfg.record(), "model_id": cfg.model_id, "preprocessing": preprocessing_spec(),
            "versions": tool_versions()}  # fmt: skip


def same_config(saved: dict | None, cfg: TrainConfig) -> bool:
    """Whether a recorded config (``config.json``'s ``config``) is ``cfg``'s.

    Fields added later are compared only where set: a record with or without them at their defaults matches.
    """
    if not isinstance(saved, dict):
        return False
    saved = {k: v for k, v in saved.items() if not (k in _LATER_FIELDS and v == _LATER_FIELDS[k])}
    # JSON turns tuples into lists; compare through one JSON round-trip.
    return saved == json.loads(json.dumps(cfg.record()))


def _same_config(saved: dict, cfg: TrainConfig) -> bool:
    return same_config(saved.get("config"), cfg)


class _Checkpointer(keras.callbacks.Callback):
    """After each epoch: history first, then the checkpoint (so the history always covers the checkpoint)."""

    def __init__(self, manager: tf.train.CheckpointManager, epoch_var: tf.Variable, history_path: Path,
                 history: dict[str, list[float]]):  # fmt: skip
        super().__init__()
        self.manager, self.epoch_var, self.history_path, self.history = manager, epoch_var, history_path, history

    def on_epoch_end(self, epoch, logs=None):
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))
        _atomic_write_text(self.history_path, json.dumps(self.history) + "\n")
        self.epoch_var.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)


def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    train_split: Split | None = None,
    test_split: Split | None = None,
    restart: bool = False,
) -> TrainResult:
    """Train ``cfg`` on CIFAR-10 and write the model, config, metrics and history to ``out_dir``.

    Resumes from ``out_dir/checkpoints`` when a checkpoint of the same config is there (unless ``restart``).

    Args:
        cfg: the run's configuration.
        out_dir: folder for the outputs (created).
        train_split: training data; loaded from the CIFAR-10 batches when None.
        test_split: evaluation data; loaded when None.
        restart: ignore (and replace) checkpoints of an earlier run of the same config.

    Returns:
        The run's metrics.

    Raises:
        ConfigMismatchError: ``out_dir`` holds a run of another config (nothing is touched).
        board.errors.DatasetError: CIFAR-10 is missing or corrupt.
        CheckpointError: a checkpoint in ``out_dir`` that cannot be read or does not load completely.
        ValueError: a teacher whose shapes do not match the student.
    """
    out = Path(out_dir)
    record_path = out / "config.json"
    if record_path.is_file():
        saved = json.loads(record_path.read_text())
        if not _same_config(saved, cfg):
            raise ConfigMismatchError(
                f"{out} holds a run of another config ({saved.get('model_id')}); use another --out folder"
            )
    keras.utils.set_random_seed(cfg.seed)
    # Build first: a bad model or teacher fails before minutes of data loading.
    gated = cfg.method in SKIP_METHODS
    student = create_model(cfg.model, quant=cfg.quant_spec, skips=cfg.skips, weight_decay=cfg.weight_decay,
                           gated=gated, fold_bn=cfg.fold_bn)  # fmt: skip
    teacher = load_trained_model(cfg.teacher) if cfg.teacher else None
    loss_kind = "ce" if cfg.method == "plain" else cfg.kd_loss
    trainer = StudentTrainer(student, teacher, loss_kind, cfg.kd_temperature, cfg.kd_alpha, cfg.label_smoothing)
    if teacher is not None and (cfg.init_from_teacher or gated):
        n = copy_weights_by_name(teacher, student, skip=("_gate_",))
        log.info("student initialised from the teacher (%d layers)", n)
    if cfg.init_from:
        n = copy_weights_by_name(load_trained_model(cfg.init_from), student, skip=("_gate_",))
        log.info("student initialised from %s (%d layers)", cfg.init_from, n)
    if gated and cfg.total_epochs <= epochs_to_finish(
        len(block_names(depth_of_name(cfg.model))), cfg.skip_every_epochs
    ):
        log.warning("%d epochs end before the last skip changes (every %d epochs); the exported model keeps some",
                    cfg.total_epochs, cfg.skip_every_epochs)  # fmt: skip

    train_split, test_split = run_splits(train_split, test_split, cfg.train_limit, cfg.test_limit)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(record_path, json.dumps(_config_record(cfg), indent=2) + "\n")

    steps = math.ceil(len(train_split) / cfg.batch_size)
    if cfg.bn_freeze_epoch:
        # QKeras counts the layer's training steps (from -1) and freezes the statistics after this one.
        freeze_step = int(round(cfg.bn_freeze_epoch * steps))
        for layer in student.layers:
            if is_folded_layer(layer):
                layer.ema_freeze_delay = freeze_step
    trainer.compile(optimizer=make_optimizer(cfg, steps))
    # Create the optimizer's slots now, so a restore is checked against every variable it will ever have.
    trainer.optimizer.build(student.trainable_variables)
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    ckpt = tf.train.Checkpoint(student=student, optimizer=trainer.optimizer, epoch=epoch_var)
    ckpt_dir = out / "checkpoints"
    if restart and ckpt_dir.exists():
        import shutil

        shutil.rmtree(ckpt_dir)
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir), max_to_keep=2)
    history_path = out / "history_partial.json"
    history: dict[str, list[float]] = {}
    initial_epoch = 0
    if manager.latest_checkpoint:
        try:
            status = ckpt.restore(manager.latest_checkpoint)
        except tf.errors.OpError as exc:
            raise CheckpointError(f"{manager.latest_checkpoint}: unreadable checkpoint ({exc.message}); run again "
                                  "with --restart to start over, or use another --out folder") from exc  # fmt: skip
        try:
            status.assert_existing_objects_matched()
        except AssertionError as exc:
            raise CheckpointError(f"{manager.latest_checkpoint} does not match this model: {exc}") from exc
        initial_epoch = int(epoch_var.numpy())
        saved_history = json.loads(history_path.read_text()) if history_path.is_file() else {}
        history = {k: v[:initial_epoch] for k, v in saved_history.items()}
        log.info("resuming %s from %s (epoch %d of %d)", cfg.model_id, manager.latest_checkpoint, initial_epoch,
                 cfg.total_epochs)  # fmt: skip

    callbacks: list[keras.callbacks.Callback] = []
    if gated:
        callbacks.append(SkipSchedule(student, cfg.method, cfg.skip_every_epochs))
    callbacks += [
        _EpochLog(cfg.total_epochs, len(train_split)),
        _Checkpointer(manager, epoch_var, history_path, history),
    ]
    log.info(
        "training %s (%s params, %s) on %d images for %d epochs, testing on %d images",
        cfg.model_id, f"{student.count_params():,}", cfg.method, len(train_split), cfg.total_epochs, len(test_split),
    )  # fmt: skip
    t0 = time.perf_counter()
    if initial_epoch < cfg.total_epochs:
        trainer.fit(
            train_dataset(train_split, cfg.batch_size, cfg.seed + initial_epoch),
            epochs=cfg.total_epochs,
            initial_epoch=initial_epoch,
            validation_data=eval_dataset(test_split),
            callbacks=callbacks,
            verbose=0,
        )
    seconds = time.perf_counter() - t0
    trained_epochs = cfg.total_epochs - initial_epoch
    final_model = export_clean(student, cfg.quant_spec, cfg.weight_decay) if gated else student
    result = TrainResult(
        model_id=cfg.model_id,
        test_top1_final=history["val_accuracy"][-1],
        test_top1_max=max(history["val_accuracy"]),
        test_images=len(test_split),
        epochs=cfg.total_epochs,
        train_seconds=seconds,
        train_images_per_second=trained_epochs * len(train_split) / seconds if trained_epochs else 0.0,
        history=history,
    )

    tmp_model = out / "model.h5.tmp.h5"
    final_model.save(tmp_model, include_optimizer=False)
    os.replace(tmp_model, out / "model.h5")
    metrics = {k: v for k, v in asdict(result).items() if k != "history"}
    if gated:
        from training.models import get_skip_modes

        metrics["final_skip_modes"] = list(get_skip_modes(student))
    _atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    with (out / "history.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        keys = sorted(history)
        writer.writerow(["epoch", *keys])
        for i in range(len(history["val_accuracy"])):
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
    from training.models import SkipGate

    return load_qmodel(str(path), custom_objects={"SkipGate": SkipGate}, compile=False)
