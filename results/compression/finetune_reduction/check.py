"""Centroid fine-tuning on ResNet20 <8,3>: Han's summed gradient against the cluster mean, from one shared model.

Prunes the 12-epoch ResNet20 <8,3> of results/resnet20_short at percentile 65, retrains one epoch, shares with
5 bits (snapped to the grid), prints the cluster sizes, then fine-tunes one epoch from that same state with
``reduction="sum"`` at lr 1e-3 (the old behaviour), ``"mean"`` at lr 1e-3 (the new default) and ``"mean"`` at
lr 1e-2, and prints top-1 on the 10,000 test images and how many kernel weights changed value. Run from the
repository root: ``PYTHONPATH=. CIFAR10_DIR=... python results/compression/finetune_reduction/check.py``.
"""

import copy
import logging
import math
import time

import numpy as np

from board.cifar10 import load_split
from training.compression.pipeline import CompressConfig, evaluate_top1, retrain
from training.compression.prune import prune_model
from training.compression.share import finetune_centroids, share_weights, snap_codebooks
from training.data import train_dataset
from training.keras_compat import keras
from training.train import load_trained_model

logging.basicConfig(level=logging.INFO)
src = "results/resnet20_short/runs/resnet20_q8_3_plain/trial0/model.h5"
keras.utils.set_random_seed(0)
train, test = load_split("train"), load_split("test")
model = load_trained_model(src)
cfg = CompressConfig(prune="percentile:65", retrain_epochs=1)
t = time.time()
masks = prune_model(model, "percentile", 65)
retrain(model, masks, train, cfg)
print("after retraining", evaluate_top1(model, test), time.time() - t, flush=True)
shared = snap_codebooks(model, share_weights(model, 5))
base_w = model.get_weights()
base_acc = evaluate_top1(model, test)
print("after sharing", base_acc, flush=True)
for n, sk in shared.items():
    c = np.bincount(sk.indices)
    print(n, "k", sk.codebook.size, "cluster sizes min/median/max", c.min(), int(np.median(c)), c.max())
steps = math.ceil(len(train) / 128)
for red, lr in [("sum", 1e-3), ("mean", 1e-3), ("mean", 1e-2)]:
    model.set_weights(base_w)
    sh = copy.deepcopy(shared)
    t = time.time()
    h = finetune_centroids(model, sh, train_dataset(train, 128, 1), 1, lr, steps_per_epoch=steps, reduction=red)
    sh = snap_codebooks(model, sh)
    dk = sum(int(np.sum(sh[n].dense() != shared[n].dense())) for n in sh)
    tot = sum(int(sh[n].positions.size) for n in sh)
    print(
        f"RESULT {red} lr={lr}: top-1 {evaluate_top1(model, test):.4f} (after sharing {base_acc:.4f}), "
        f"train {h}, kernel weights changed {dk}/{tot}, {time.time() - t:.0f}s",
        flush=True,
    )
