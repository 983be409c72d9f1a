"""A training run killed mid-way resumes from its last checkpoint and finishes; another config is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cmd(out: Path, epochs: int = 3, quant: str = "<8,3>", extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "training", "train", "--model", "resnet8", "--quant", quant, "--epochs",
            str(epochs), "--train-limit", "1024", "--test-limit", "128", *extra, "--out", str(out)]  # fmt: skip


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize("extra", [(), ("--fold-bn", "--bn-freeze-epoch", "1.5")], ids=["plain", "fold_bn"])
def test_killed_run_resumes_and_finishes(tmp_path, extra):
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(out, extra=extra), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    deadline = time.monotonic() + 240
    # Kill it hard as soon as the first epoch's checkpoint is recorded: no chance to clean up. TensorFlow writes
    # ckpt-1.index first and the `checkpoint` state file (what a resume reads) last; waiting for the index alone
    # raced: a kill between the two left nothing to resume from (CI, 2026-12-03).
    state = out / "checkpoints" / "checkpoint"
    while not (state.is_file() and "ckpt-1" in state.read_text()):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model.h5").exists()

    res = subprocess.run(_cmd(out, extra=extra), env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resuming resnet8_q8_3" in res.stderr
    history = json.loads((out / "history_partial.json").read_text())
    assert len(history["val_accuracy"]) == 3
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3
    assert (out / "model.h5").is_file()
    if extra:
        # The folded layers' step count carried over (3 epochs of 8 steps, counted from -1), so the statistics
        # froze at the step asked for, not 8 steps late.
        from training.train import load_trained_model

        stem = load_trained_model(out / "model.h5").get_layer("stem_conv")
        assert int(stem._iteration.numpy()) == 3 * 8 - 1 and stem.ema_freeze_delay == 12


def test_resume_with_another_config_is_refused_and_touches_nothing(tmp_path):
    out = tmp_path / "run"
    res = subprocess.run(_cmd(out, epochs=1), env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    res = subprocess.run(_cmd(out, epochs=1, quant="<4,2>"), env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert "another config" in res.stderr.splitlines()[-1]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--model", "resnet7"], "unknown model"), (["--quant", "<8,9>"], "more integer bits"),
     (["--method", "kd"], "needs a teacher")],
    ids=["model", "quant", "teacher"],
)  # fmt: skip
def test_bad_config_is_a_clear_error(tmp_path, args, message):
    cmd = [sys.executable, "-m", "training", "train", "--out", str(tmp_path / "x"), *args]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert message in res.stderr.splitlines()[-1] and "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists()
