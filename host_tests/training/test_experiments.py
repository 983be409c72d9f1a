"""A tiny grid runs end to end (real training, a few batches), resumes without redoing work, and refuses bad grids."""

from __future__ import annotations

import json

import pytest

from board.cifar10 import load_split
from training.experiments import Grid, GridError, collect, run_grid, summarize
from training.train import train

TINY = {
    "name": "tiny",
    "models": ["resnet8"],
    "quants": ["<8,3>"],
    "methods": ["plain", "skip_remover"],
    "trials": 2,
    "epochs": 2,
    "skip_every_epochs": 1,
    "train_limit": 256,
    "test_limit": 128,
}


@pytest.fixture(scope="module")
def splits(cifar10_dir):
    return load_split("train", cifar10_dir), load_split("test", cifar10_dir)


def test_grid_runs_writes_tables_and_plots_and_resumes(tmp_path, splits):
    calls = []

    def counting_train(cfg, out_dir):
        calls.append((cfg.model_id, cfg.seed))
        return train(cfg, out_dir, *splits)

    grid = Grid.from_dict(TINY)
    records = run_grid(grid, tmp_path, counting_train)
    assert len(records) == 4 and len(calls) == 4
    # Teachers first: the skip_remover runs were distilled from this sweep's plain runs, trial by trial.
    assert calls == [("resnet8_q8_3", 0), ("resnet8_q8_3", 1), ("resnet8_q8_3_skipremover", 0),
                     ("resnet8_q8_3_skipremover", 1)]  # fmt: skip
    cfg = json.loads((tmp_path / "runs/resnet8_q8_3_skip_remover/trial1/config.json").read_text())["config"]
    assert cfg["teacher"].endswith("runs/resnet8_q8_3_plain/trial1/model.h5") and cfg["seed"] == 1
    rows = {r["config"]: r for r in summarize(records)}
    assert rows["resnet8_q8_3_plain"]["trials"] == 2
    assert 0 <= rows["resnet8_q8_3_skip_remover"]["max_top1_mean"] <= 100
    assert "| resnet8_q8_3_plain | 2 | 2 |" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "summary.csv").read_text().startswith("config,trials,epochs,max_top1_mean")
    for png in ("accuracy_per_epoch.png", "accuracy_vs_skips.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The skip_remover history records how many skips were removed during each epoch.
    hist = [r.history for r in collect(tmp_path) if r.config_id.endswith("skip_remover")][0]
    assert hist["skips_changed"] == [0.0, 1.0]

    calls.clear()
    run_grid(grid, tmp_path, counting_train)  # everything finished: nothing is trained again
    assert calls == []


def test_folder_of_another_grid_is_refused(tmp_path, splits):
    run_grid(Grid.from_dict({**TINY, "methods": ["plain"], "trials": 1, "epochs": 1}), tmp_path,
             lambda c, o: train(c, o, *splits))  # fmt: skip
    with pytest.raises(GridError, match="another sweep"):
        run_grid(Grid.from_dict({**TINY, "name": "other"}), tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"models": ["resnet9"]}, "unknown model"), ({"quants": ["<8,9>"]}, "more integer bits"),
     ({"methods": ["magic"]}, "unknown method"), ({"epocs": 3}, "unknown grid keys"),
     ({"methods": ["kd"]}, "needs 'plain'")],
    ids=["model", "quant", "method", "key", "teacher"],
)  # fmt: skip
def test_bad_grid_is_refused_before_any_run(tmp_path, change, message):
    with pytest.raises(GridError, match=message):
        run_grid(Grid.from_dict({**TINY, **change}), tmp_path)
    assert not (tmp_path / "sweep.json").exists()


def test_grid_with_folded_batchnorm_folds_the_quantized_configs_only_and_old_sweeps_keep_their_identity():
    from training.grid import grid_identity
    from training.sweep.records import fingerprint

    grid = Grid.from_dict({"name": "g", "models": ["resnet8"], "quants": ["float", "<8,3>"], "fold_bn": True,
                           "label_smoothing": 0.1})  # fmt: skip
    runs = grid.runs()
    assert runs["resnet8_q8_3_plain"][0].fold_bn and not runs["resnet8_float_plain"][0].fold_bn
    assert runs["resnet8_float_plain"][0].label_smoothing == 0.1
    # A grid (and its runs) without the later keys is what sweeps recorded before they existed.
    plain = Grid.from_dict({"name": "g", "models": ["resnet8"], "quants": ["<8,3>"]})
    assert "fold_bn" not in plain.identity() and "fold_bn" in grid.identity()
    old_grid = {k: v for k, v in json.loads(json.dumps(plain.__dict__)).items() if k not in ("fold_bn",
                "bn_freeze_epoch", "label_smoothing")}  # fmt: skip
    assert grid_identity(old_grid) == plain.identity()
    cfg = plain.runs()["resnet8_q8_3_plain"][0]
    assert "fold_bn" not in cfg.record() and fingerprint({"config": cfg.record()}) != fingerprint(
        {"config": grid.runs()["resnet8_q8_3_plain"][0].record()}
    )
