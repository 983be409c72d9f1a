"""``python -m training`` through the project's CLI runner: one ``error:`` line and exit 2 for bad input, 130 when
interrupted, and every error class of ``training/`` a ``board.errors.ProjectError``."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest

from board.errors import ProjectError
from training.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet9000"], "resnet9000"),
        (["--quant", "<1,5>"], "<1,5>"),
    ],
)
def test_bad_model_or_quantization_is_one_error_line_and_exit_2(tmp_path, capsys, args, message):
    assert main(["train", *args, "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    assert message in _one_error_line(capsys.readouterr().err)


def test_missing_grid_file_is_exit_2(tmp_path, capsys):
    assert main(["experiment", "--grid", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "s")]) == 2
    assert "missing.yaml: cannot read grid" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "s").exists()


def test_corrupt_config_record_is_exit_2_and_kept(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{not json")
    assert main(["train", "--model", "resnet8", "--epochs", "1", "--out", str(tmp_path)]) == 2
    _one_error_line(capsys.readouterr().err)
    assert (tmp_path / "config.json").read_text() == "{not json"


def test_corrupt_checkpoint_is_exit_2_and_nothing_is_removed(tmp_path, capsys, monkeypatch, cifar10_dir):
    monkeypatch.setenv("CIFAR10_DIR", str(cifar10_dir))
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (ckpt / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\nall_model_checkpoint_paths: "ckpt-1"\n')
    (ckpt / "ckpt-1.index").write_bytes(b"not a checkpoint index" * 8)
    (ckpt / "ckpt-1.data-00000-of-00001").write_bytes(bytes(512))
    before = sorted(p.name for p in ckpt.iterdir())
    args = ["train", "--model", "resnet8", "--epochs", "1", "--train-limit", "64", "--test-limit", "64"]
    assert main([*args, "--out", str(tmp_path)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "ckpt-1: unreadable checkpoint" in line and "--restart" in line
    assert sorted(p.name for p in ckpt.iterdir()) == before


@pytest.mark.parametrize(
    ("target", "argv", "note"),
    [
        (
            "training.train.train",
            ["train", "--model", "resnet8"],
            "run the same command again to resume from the last checkpoint",
        ),
        (
            "training.experiments.run_sweep",
            ["experiment", "--grid", "GRID"],
            "run the same command again to resume the sweep",
        ),
        ("training.compression.pipeline.compress", ["compress", "--model-dir", "."], "nothing in --out is complete"),
    ],
)
def test_interrupted_command_exits_130_with_what_was_kept(tmp_path, capsys, monkeypatch, target, argv, note):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    module, _, name = target.rpartition(".")
    monkeypatch.setattr(importlib.import_module(module), name, interrupted)
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"name": "g", "models": ["resnet8"], "epochs": 1}))
    argv = [str(grid) if a == "GRID" else a for a in argv]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"interrupted; {note}"
    assert "Traceback" not in err


def _error_classes() -> list[tuple[str, str]]:
    """``(module, class)`` for every class defined in training/ whose name ends in Error or Exception."""
    found = []
    for path in sorted((ROOT / "training").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Exception")):
                found.append((module, node.name))
    return found


def test_every_training_error_is_a_project_error():
    classes = _error_classes()
    assert ("training.sweep.records", "SweepError") in classes and len(classes) >= 7
    for module, name in classes:
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, ProjectError), f"{module}.{name} does not derive from board.errors.ProjectError"


def test_no_hand_written_cli_handlers_or_logging_set_up_in_training():
    """The runner (board.cli.run) maps errors, Ctrl-C and logging for every command; training repeats none."""
    for path in sorted((ROOT / "training").rglob("*.py")):
        text = path.read_text()
        assert "basicConfig" not in text, path
        assert "except KeyboardInterrupt" not in text, path
        assert 'print(f"error: {exc}"' not in text, path
