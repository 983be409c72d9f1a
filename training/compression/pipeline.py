"""Deep Compression of a trained model: prune -> retrain -> share -> fine-tune centroids -> Huffman, measured.

:func:`compress` runs the stages as an explicit list of steps on a model written by ``python -m training train`` and
measures CIFAR-10 top-1 after each. Its output folder holds:

* ``compressed_weights.dcw``: the compressed model (see :mod:`board.compressed_weights`, which decodes it);
* ``model.h5``: the model decoded from that file (bit-identical kernels), which ``python -m hls_build bundle
  --model-dir <out>`` converts like any trained model, with ``config.json`` (model id ``<id>_dc``) and
  ``metrics.json`` next to it;
* ``report.md`` / ``report.csv`` / ``report.json``: per-layer table, totals, rates and top-1 per stage
  (:mod:`training.compression.report`);
* ``time_per_step.json``.

What the compression saves in the hls4ml design (``hardware.md`` / ``hardware.json``: the multipliers hls4ml
generates before and after, per layer and strategy) is hls_build's to say, from this folder:
``python -m hls_build compression-report --compressed <out>`` (:mod:`hls_build.compression_report`).

:func:`add_compressed_to_bundle` puts the ``.dcw`` file into an overlay bundle, so the board can decode the weights
where it needs them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from board.cifar10 import Split
from board.compressed_weights import decode_layers, read_compressed
from training.compression.container import encode_kernel, write_compressed
from training.compression.errors import CompressionError
from training.compression.prune import MaskCallback, PruneSpec, effective_kernel, kernel_layers, prune_model
from training.compression.report import build_report, write_report
from training.compression.share import (
    CENTROID_REDUCTIONS,
    check_bits,
    finetune_centroids,
    share_weights,
    snap_codebooks,
)
from training.data import eval_dataset, run_splits, train_dataset
from training.keras_compat import keras

log = logging.getLogger(__name__)

COMPRESSED_FILE = "compressed_weights.dcw"


@dataclass(frozen=True)
class CompressConfig:
    """One Deep-Compression run.

    Attributes:
        prune: ``percentile:Q`` (Q in [0, 100]) or ``sensitivity:S`` (S >= 0), for every pruned layer.
        prune_overrides: ``{layer: value}`` pruned with another value (e.g. a sensitive first layer).
        prune_layers: layers to prune (None: every conv and dense layer). Every kernel is shared and coded.
        retrain_epochs: epochs of retraining with the masks fixed.
        retrain_lr: peak learning rate of retraining (SGD, Nesterov momentum 0.9, cosine decay to 0).
        share_bits: cluster-index bits; ``k = 2^share_bits`` shared values per layer at most.
        kmeans_init: ``linear`` (Han et al.) or ``density``.
        kmeans_iters: maximum k-means iterations.
        finetune_epochs: epochs of centroid fine-tuning.
        finetune_lr: peak learning rate of centroid fine-tuning.
        centroid_grad: ``mean`` (a centroid's gradient is its cluster's mean weight gradient) or ``sum`` (Han et
            al.'s eq. 3 as written; the step then grows with the cluster's size, see
            :func:`training.compression.share.finetune_centroids`).
        gap_bits: bits of a stored position gap (None: chosen per layer to minimise the Huffman-coded size).
        batch_size: training batch size.
        seed: seed of shuffling and augmentation.
        train_limit: use only the first N training images (0 = all 50,000).
        test_limit: evaluate on the first N test images (0 = all 10,000).
    """

    prune: str = "percentile:80"
    prune_overrides: dict[str, float] = field(default_factory=dict)
    prune_layers: tuple[str, ...] | None = None
    retrain_epochs: int = 1
    retrain_lr: float = 0.01
    share_bits: int = 5
    kmeans_init: str = "linear"
    kmeans_iters: int = 100
    finetune_epochs: int = 1
    finetune_lr: float = 1e-3
    centroid_grad: str = "mean"
    gap_bits: int | None = None
    batch_size: int = 128
    seed: int = 0
    train_limit: int = 0
    test_limit: int = 0

    def __post_init__(self) -> None:
        PruneSpec.parse(self.prune, self.prune_overrides)  # ValueError for a bad method or value
        check_bits(self.share_bits)
        if self.centroid_grad not in CENTROID_REDUCTIONS:
            raise CompressionError(f"centroid_grad must be one of {CENTROID_REDUCTIONS}, got {self.centroid_grad!r}")
        for name in ("retrain_epochs", "finetune_epochs", "train_limit", "test_limit"):
            if getattr(self, name) < 0:
                raise CompressionError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.gap_bits is not None and self.gap_bits < 1:
            raise CompressionError(f"gap_bits must be >= 1, got {self.gap_bits}")
        if self.batch_size < 1:
            raise CompressionError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def prune_spec(self) -> PruneSpec:
        """The parsed pruning spec."""
        return PruneSpec.parse(self.prune, self.prune_overrides)


def evaluate_top1(model: keras.Model, split: Split, batch_size: int = 500) -> float:
    """Top-1 of ``model`` on ``split`` (inference mode)."""
    logits = model.predict(eval_dataset(split, batch_size).map(lambda x, y: x), verbose=0)
    return float(np.mean(logits.argmax(1) == split.labels))


def weight_bits_of(model: keras.Model) -> int:
    """Bits of one kernel weight: the QKeras quantizer's width, or 32 for float layers (widest over layers)."""
    bits = []
    for layer in kernel_layers(model):
        q = getattr(layer, "kernel_quantizer_internal", None)
        bits.append(int(getattr(q, "bits", 32)) if q is not None else 32)
    return max(bits) if bits else 32


def alive_weights(model: keras.Model) -> int:
    """Nonzero deployed kernel weights of the whole model."""
    return int(sum(np.count_nonzero(effective_kernel(layer)) for layer in kernel_layers(model)))


def retrain(model: keras.Model, masks: dict[str, np.ndarray], split: Split, cfg: CompressConfig) -> dict:
    """Train ``model`` with its pruning masks held (cross-entropy + its L2 terms; SGD, Nesterov, cosine decay)."""
    from training.distill import StudentTrainer

    if cfg.retrain_epochs == 0:
        return {}
    steps = math.ceil(len(split) / cfg.batch_size)
    trainer = StudentTrainer(model, None, "ce")
    schedule = keras.optimizers.schedules.CosineDecay(cfg.retrain_lr, max(cfg.retrain_epochs * steps, 1))
    trainer.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True))
    hist = trainer.fit(
        train_dataset(split, cfg.batch_size, cfg.seed),
        epochs=cfg.retrain_epochs,
        callbacks=[MaskCallback(model, masks)],
        verbose=0,
    )
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def _source_record(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def compress(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: CompressConfig | None = None,
    train_split: Split | None = None,
    test_split: Split | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Compress a trained model and write the compressed file, the decoded model and the report to ``out_dir``.

    Args:
        model_dir: a training output folder (``model.h5``, ``config.json``).
        out_dir: output folder (created).
        cfg: the run's settings.
        train_split: training data (loaded when None).
        test_split: test data (loaded when None).
        command: the command line, recorded in the report.

    Returns:
        The report (see :func:`training.compression.report.build_report`).

    Raises:
        FileNotFoundError: no ``model.h5`` in ``model_dir``.
        ValueError: a bad setting, or a named layer that does not exist or has no kernel (before any work).
        RuntimeError: the decoded weights differ from the compressed model's (a bug; nothing is left half-written).
    """
    from training.train import load_trained_model

    cfg = cfg or CompressConfig()
    model_dir, out = Path(model_dir), Path(out_dir)
    keras.utils.set_random_seed(cfg.seed)
    model = load_trained_model(model_dir / "model.h5")
    spec = cfg.prune_spec
    # Named layers are checked before minutes of data loading and training.
    pruned_names = [layer.name for layer in kernel_layers(model, cfg.prune_layers)]
    stray = set(spec.overrides) - set(pruned_names)
    if stray:
        kernel_layers(model, sorted(stray))
        raise CompressionError(f"--prune-layer values for layers that are not pruned: {sorted(stray)}")

    train_split, test_split = run_splits(train_split, test_split, cfg.train_limit, cfg.test_limit)
    out.mkdir(parents=True, exist_ok=True)
    source = _source_record(model_dir)
    model_id = source.get("model_id", model_dir.name)
    weight_bits = weight_bits_of(model)
    accuracy: dict[str, float] = {}
    alive: dict[str, int] = {}
    times: dict[str, float] = {}
    histories: dict[str, Any] = {}

    def measure(stage: str, m: keras.Model = model) -> None:
        accuracy[stage] = evaluate_top1(m, test_split)
        alive[stage] = alive_weights(m)
        log.info("%-18s top-1 %.4f, %d nonzero kernel weights", stage, accuracy[stage], alive[stage])

    t0 = time.perf_counter()
    measure("before_pruning")
    times["evaluate_before"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    masks = prune_model(model, spec.method, spec.value, cfg.prune_layers, spec.overrides)
    measure("after_pruning")
    times["prune"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    histories["retrain"] = retrain(model, masks, train_split, cfg)
    measure("after_retraining")
    times["retrain"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    shared = share_weights(model, cfg.share_bits, None, cfg.kmeans_iters, cfg.kmeans_init)
    shared = snap_codebooks(model, shared)
    measure("after_sharing")
    times["share"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    steps = math.ceil(len(train_split) / cfg.batch_size)
    histories["finetune"] = finetune_centroids(
        model, shared, train_dataset(train_split, cfg.batch_size, cfg.seed + 1), cfg.finetune_epochs,
        cfg.finetune_lr, steps_per_epoch=steps, reduction=cfg.centroid_grad,
    )  # fmt: skip
    shared = snap_codebooks(model, shared)
    measure("after_finetuning")
    times["finetune"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    weights = {layer.name: layer.get_weights() for layer in model.layers if layer.get_weights()}
    encoded = {name: encode_kernel(weights[name][0], cfg.gap_bits) for name in shared}
    other_params = sum(a.size for name, arrays in weights.items() for i, a in enumerate(arrays)
                       if not (i == 0 and name in encoded))  # fmt: skip
    meta = {"model_id": f"{model_id}_dc", "source_model_id": model_id, "source": str(model_dir),
            "config": asdict(cfg), "weight_bits": weight_bits}  # fmt: skip
    dcw = out / COMPRESSED_FILE
    size = write_compressed(dcw, weights, encoded, meta)
    times["encode"] = time.perf_counter() - t0

    # Decode from the file into a freshly loaded model: top-1 "after Huffman" is measured on what was stored.
    t0 = time.perf_counter()
    decoded_model = load_trained_model(model_dir / "model.h5")
    for name, arrays in decode_layers(dcw).items():
        layer = decoded_model.get_layer(name)
        if any(not np.array_equal(a, b) for a, b in zip(arrays, weights[name])):
            raise RuntimeError(f"decoded weights of {name!r} differ from the compressed model's")
        layer.set_weights(arrays)
    measure("after_huffman", decoded_model)
    times["decode_evaluate"] = time.perf_counter() - t0

    tmp_model = out / "model.h5.tmp.h5"
    decoded_model.save(tmp_model, include_optimizer=False)
    os.replace(tmp_model, out / "model.h5")
    record = dict(source)
    record["model_id"] = f"{model_id}_dc"
    record["compression"] = {"source": str(model_dir), "source_model_id": model_id, **asdict(cfg)}
    _atomic_json(out / "config.json", record)
    _atomic_json(
        out / "metrics.json",
        {"model_id": f"{model_id}_dc", "test_top1_final": accuracy["after_huffman"],
         "test_top1_max": accuracy["after_huffman"], "test_images": len(test_split),
         "compression_accuracy": accuracy, "compressed_bytes": size},
    )  # fmt: skip

    settings = {
        "prune": spec.method + ":" + f"{spec.value:g}", "overrides": dict(spec.overrides) or None,
        "retrain_epochs": cfg.retrain_epochs, "retrain_lr": cfg.retrain_lr, "share_bits": cfg.share_bits,
        "kmeans_init": cfg.kmeans_init, "finetune_epochs": cfg.finetune_epochs, "finetune_lr": cfg.finetune_lr,
        "centroid_grad": cfg.centroid_grad,
        "gap_bits": cfg.gap_bits or "auto", "batch_size": cfg.batch_size, "seed": cfg.seed,
    }  # fmt: skip
    report = build_report(
        encoded, weight_bits, accuracy,
        meta={**meta, "command": command, "settings": {k: v for k, v in settings.items() if v is not None},
              "test_images": len(test_split), "train_images": len(train_split), "stage_nonzeros": alive,
              "histories": histories, "times": times},
        container_bytes=size, other_params=other_params,
    )  # fmt: skip

    write_report(report, out)
    _atomic_json(out / "time_per_step.json", times)
    # A hardware report of an earlier run in this folder describes other weights; hls_build writes this run's.
    for stale in ("hardware.md", "hardware.json"):
        (out / stale).unlink(missing_ok=True)
    log.info("wrote %s (%d bytes) and the report to %s", dcw, size, out)
    return report


def add_compressed_to_bundle(
    bundle_dir: str | os.PathLike, compressed_path: str | os.PathLike, record_in_manifest: bool = True
) -> str:
    """Copy a ``.dcw`` file into an overlay bundle (verified readable) and return its bundle-relative path.

    Call it before ``board.bundle.write_manifest`` so the file is hashed with the others; on a finished bundle,
    ``record_in_manifest`` re-writes the manifest with the file hashed and named under ``hls["compressed_weights"]``.

    Raises:
        board.compressed_weights.CompressedWeightsError: the file is not a valid ``.dcw``.
        board.errors.BundleError: the bundle's manifest is malformed.
    """
    from board.bundle import MANIFEST, read_manifest, write_manifest

    read_compressed(compressed_path)  # refuse a broken file before touching the bundle
    root = Path(bundle_dir)
    rel = COMPRESSED_FILE
    shutil.copy2(compressed_path, root / rel)
    if record_in_manifest and (root / MANIFEST).is_file():
        manifest = read_manifest(root)
        hls = {**manifest.hls, "compressed_weights": {"path": rel, "format": "dcw", "version": 1}}
        write_manifest(root, type(manifest)(**{**manifest.__dict__, "hls": hls}))
    return rel
