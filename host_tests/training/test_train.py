"""A short training run writes a loadable model with its config and metrics; bad configs fail before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from board.cifar10 import load_split
from training.data import preprocess
from training.models import UnknownModelError
from training.train import TrainConfig, load_trained_model, train


def test_short_run_writes_model_config_metrics_and_history(tmp_path, cifar10_dir):
    cfg = TrainConfig(model="resnet8", quant="<8,3>", epochs=1, train_limit=512, test_limit=256, batch_size=128)
    result = train(cfg, tmp_path, load_split("train", cifar10_dir), load_split("test", cifar10_dir))
    assert result.model_id == "resnet8_q8_3"
    for name in ("model.h5", "config.json", "metrics.json", "history.csv"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["config"]["quant"] == "<8,3>" and saved["preprocessing"]["input_scale"] == 1 / 256
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_images"] == 256 and 0.0 <= metrics["test_top1_final"] <= 1.0
    # The saved model reloads with its QKeras layers and computes the same logits.
    test = load_split("test", cifar10_dir).head(8)
    reloaded = load_trained_model(tmp_path / "model.h5")
    assert reloaded.get_layer("stem_conv").__class__.__name__ == "QConv2D"
    assert np.isfinite(reloaded.predict(preprocess(test.images), verbose=0)).all()


def test_unknown_model_fails_before_loading_data(tmp_path):
    with pytest.raises(UnknownModelError):
        train(TrainConfig(model="resnet7"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trained model"):
        load_trained_model(tmp_path / "model.h5")


def test_fold_bn_config_is_validated_and_recorded_only_when_set():
    with pytest.raises(ValueError, match="quant"):
        TrainConfig(quant=None, fold_bn=True)
    with pytest.raises(ValueError, match="needs fold_bn"):
        TrainConfig(bn_freeze_epoch=3)
    # Runs recorded before these fields existed keep matching their config.
    assert "fold_bn" not in TrainConfig().record() and "bn_freeze_epoch" not in TrainConfig().record()
    assert TrainConfig(fold_bn=True, bn_freeze_epoch=10).record()["bn_freeze_epoch"] == 10
