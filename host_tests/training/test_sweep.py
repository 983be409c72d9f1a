"""Sweeps as tasks: local Ray matches inline, interrupted sweeps resume, failures retry, bad input is refused early.

The Ray tests start a private local Ray instance (temp dir under a short folder of their own) and check that none of
its processes is left when the sweep ends. The two that train or kill a driver are marked ``slow``; the fast Ray
tests (syntheses, resources) still exercise the Ray path in ``make test``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from training.__main__ import main
from training.experiments import Grid, GridError, collect, run_grid, run_sweep
from training.sweep import (
    InlineScheduler,
    RayScheduler,
    SweepError,
    make_scheduler,
    probe_address,
    schedule_syntheses,
)

ROOT = Path(__file__).resolve().parents[2]

FAKE = {
    "name": "fake",
    "models": ["resnet8"],
    "quants": ["<8,3>"],
    "methods": ["plain", "kd"],
    "trials": 2,
    "epochs": 1,
    "train_limit": 256,
    "test_limit": 128,
}


@pytest.fixture(autouse=True, scope="module")
def _tensorflow_started():
    """Start TensorFlow with its default thread pools before any inline run here: an inline run in a fresh process
    sets them to ``cpus_per_run`` for good, which would slow the rest of the test session."""
    from training.keras_compat import tf

    tf.constant(1.0) + 1.0  # noqa: B018


def fake_train(cfg, out_dir):
    """Stands in for training.train.train: writes what a finished run writes, in milliseconds."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    acc = 0.1 + 0.01 * cfg.seed + (0.05 if cfg.method == "kd" else 0.0)
    (out / "history_partial.json").write_text(json.dumps({"accuracy": [acc], "val_accuracy": [acc]}))
    (out / "metrics.json").write_text(json.dumps({"test_top1_max": acc, "test_top1_final": acc, "epochs": 1}))
    (out / "model.h5").write_bytes(b"not a model")


class _Counter:
    """Counts the runs it trains (fake)."""

    def __init__(self):
        self.keys = []

    def __call__(self, cfg, out_dir):
        self.keys.append((cfg.method, cfg.seed))
        fake_train(cfg, out_dir)


class SpyScheduler(InlineScheduler):
    """Inline, and remembers whether the driver opened it (i.e. got as far as starting runs)."""

    opened = False

    def open(self, tasks):
        self.opened = True


def _statuses(folder: Path) -> dict[str, str]:
    return {k: v["status"] for k, v in json.loads((folder / "sweep.json").read_text())["runs"].items()}


# --- inline, with a fake training (fast) --------------------------------------------------------------------------


def test_failed_run_is_retried_then_reported_and_the_table_holds_the_others(tmp_path):
    attempts: dict[tuple, int] = {}

    def flaky_train(cfg, out_dir):
        k = (cfg.method, cfg.seed)
        attempts[k] = attempts.get(k, 0) + 1
        if k == ("plain", 0) and attempts[k] == 1:
            raise OSError("disk hiccup")  # fails once: the retry succeeds
        if k == ("plain", 1):
            raise ValueError("diverged: loss is nan")  # fails every time
        fake_train(cfg, out_dir)

    grid = Grid.from_dict({**FAKE, "retries": 1})
    report = run_sweep(grid, tmp_path, InlineScheduler(), flaky_train)
    assert attempts == {("plain", 0): 2, ("plain", 1): 2, ("kd", 0): 1}  # kd trial 1 waits on a failed teacher
    assert report.failed == {"resnet8_q8_3_plain/trial1": "ValueError: diverged: loss is nan",
                             "resnet8_q8_3_kd/trial1": "not run: resnet8_q8_3_plain/trial1 failed"}  # fmt: skip
    runs = json.loads((tmp_path / "sweep.json").read_text())["runs"]
    assert runs["resnet8_q8_3_plain/trial0"]["status"] == "done" and runs["resnet8_q8_3_plain/trial0"]["attempts"] == 2
    failed = runs["resnet8_q8_3_plain/trial1"]
    assert failed["status"] == "failed" and failed["attempts"] == 2 and "loss is nan" in failed["traceback"]
    assert runs["resnet8_q8_3_kd/trial1"]["status"] == "failed" and runs["resnet8_q8_3_kd/trial1"]["attempts"] == 0
    # The table is built from the runs that finished.
    md = (tmp_path / "summary.md").read_text()
    assert "| resnet8_q8_3_plain | 1 | 1 | 10.00 +- 0.00 |" in md and "| resnet8_q8_3_kd | 1 | 1 | 15.00" in md

    # Run again: only the failed runs run (and now succeed); the finished ones are kept.
    counter = _Counter()
    report = run_sweep(grid, tmp_path, InlineScheduler(), counter)
    assert sorted(counter.keys) == [("kd", 1), ("plain", 1)]
    assert sorted(report.reused) == ["resnet8_q8_3_kd/trial0", "resnet8_q8_3_plain/trial0"] and not report.failed
    assert set(_statuses(tmp_path).values()) == {"done"}
    assert "| resnet8_q8_3_plain | 2 | 1 | 10.50 +- 0.71 |" in (tmp_path / "summary.md").read_text()


def test_interrupted_sweep_resumes_and_runs_only_the_rest(tmp_path):
    grid = Grid.from_dict(FAKE)
    seen = []

    def interrupt_after_two(task, outcome):
        seen.append(task.key)
        if len(seen) == 2:
            raise KeyboardInterrupt  # as Ctrl-C in the driver

    with pytest.raises(KeyboardInterrupt):
        run_sweep(grid, tmp_path, InlineScheduler(), fake_train, on_outcome=interrupt_after_two)
    statuses = _statuses(tmp_path)
    assert [k for k, s in statuses.items() if s == "done"] == seen == [
        "resnet8_q8_3_plain/trial0", "resnet8_q8_3_plain/trial1"]  # fmt: skip
    assert {s for k, s in statuses.items() if k not in seen} == {"pending"}
    before = {k: (tmp_path / "runs" / k / "result.json").stat().st_mtime_ns for k in seen}

    counter = _Counter()
    report = run_sweep(grid, tmp_path, InlineScheduler(), counter)
    assert counter.keys == [("kd", 0), ("kd", 1)] and report.reused == seen
    assert {k: (tmp_path / "runs" / k / "result.json").stat().st_mtime_ns for k in seen} == before
    assert len(collect(tmp_path)) == 4


def test_record_of_another_config_is_never_read_as_this_ones(tmp_path):
    grid = Grid.from_dict({**FAKE, "methods": ["plain"], "trials": 1})
    run_sweep(grid, tmp_path, InlineScheduler(), fake_train)
    record = tmp_path / "runs/resnet8_q8_3_plain/trial0/result.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "fingerprint": "0" * 16}))  # e.g. left by an edited grid
    assert collect(tmp_path) == []  # not in the tables
    counter = _Counter()
    run_sweep(grid, tmp_path, InlineScheduler(), counter)  # and the run is done again
    assert counter.keys == [("plain", 0)]
    assert json.loads(record.read_text())["fingerprint"] == data["fingerprint"]


def test_sweep_of_the_earlier_format_is_resumed_without_retraining(tmp_path):
    """A sweep folder written before the scheduler (sweep.json with the grid only, no records) is adopted."""
    from dataclasses import asdict

    grid = Grid.from_dict({**FAKE, "methods": ["plain"]})
    legacy = {k: v for k, v in asdict(grid).items() if k not in ("cpus_per_run", "gpus_per_run", "retries")}
    (tmp_path / "sweep.json").write_text(json.dumps({"grid": legacy, "configs": ["resnet8_q8_3_plain"]}))
    for trial, cfg in enumerate(grid.runs()["resnet8_q8_3_plain"]):
        run_dir = tmp_path / f"runs/resnet8_q8_3_plain/trial{trial}"
        fake_train(cfg, run_dir)
        (run_dir / "config.json").write_text(json.dumps({"config": asdict(cfg)}))

    def must_not_train(cfg, out_dir):
        raise AssertionError("a finished run was trained again")

    # Scheduling keys (cpus_per_run, retries) do not make it another sweep.
    report = run_sweep(Grid.from_dict({**FAKE, "methods": ["plain"], "cpus_per_run": 2, "retries": 3}), tmp_path,
                       SpyScheduler(), must_not_train)  # fmt: skip
    assert len(report.reused) == 2 and not report.ran and len(report.records) == 2


# --- bad input ----------------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_unreachable_cluster_address_is_a_clear_error_and_nothing_starts(tmp_path):
    import ray

    address = f"127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    with pytest.raises(SweepError, match=f"cannot reach the Ray cluster at {address}.*Nothing was started"):
        run_sweep(Grid.from_dict(FAKE), tmp_path / "sweep", RayScheduler(address=address), fake_train)
    assert time.monotonic() - t0 < 10
    assert not (tmp_path / "sweep").exists() and not ray.is_initialized()


def test_unreachable_address_from_the_environment_through_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_closed_port()}")
    assert main(["experiment", "--grid", _grid_file(tmp_path, FAKE), "--out", str(tmp_path / "sweep")]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the Ray cluster" in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    ("address", "message"),
    [pytest.param("ray://", "not a Ray address", id="empty-host"),
     pytest.param("127.0.0.1:99999", "not a Ray address", id="bad-port")],
)  # fmt: skip
def test_malformed_address_is_refused(address, message):
    with pytest.raises(SweepError, match=message):
        probe_address(address)


@pytest.mark.parametrize(
    ("change", "message"),
    [pytest.param({"models": ["resnet9"]}, "unknown model", id="model"),
     pytest.param({"quants": ["<8,9>"]}, "more integer bits", id="quant"),
     pytest.param({"cpus_per_run": 0}, "cpus_per_run", id="cpus")],
)  # fmt: skip
def test_grid_with_unknown_model_or_quant_is_refused_before_any_run(tmp_path, capsys, change, message):
    assert main(["experiment", "--grid", _grid_file(tmp_path, {**FAKE, **change}), "--out", str(tmp_path / "s")]) == 2
    assert message in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "s").exists()  # no Ray started, no folder written


def test_folder_of_another_sweep_is_refused(tmp_path):
    run_sweep(Grid.from_dict({**FAKE, "methods": ["plain"], "trials": 1}), tmp_path, InlineScheduler(), fake_train)
    before = (tmp_path / "sweep.json").read_bytes()
    spy = SpyScheduler()
    with pytest.raises(GridError, match="another sweep"):
        run_sweep(Grid.from_dict({**FAKE, "name": "other"}), tmp_path, spy, fake_train)
    with pytest.raises(GridError, match="another sweep"):
        run_grid(Grid.from_dict({**FAKE, "methods": ["plain"], "trials": 1, "epochs": 2}), tmp_path, fake_train)
    assert not spy.opened and (tmp_path / "sweep.json").read_bytes() == before
    # A synthesis sweep is another sweep too.
    bundle = tmp_path / "overlays/pynq-z2/b0"
    bundle.mkdir(parents=True)
    with pytest.raises(SweepError, match="another sweep"):
        schedule_syntheses([bundle], tmp_path, fake_synthesis)


def test_scheduler_flags_that_do_not_go_together():
    with pytest.raises(SweepError, match="needs --scheduler ray"):
        make_scheduler("inline", address="127.0.0.1:6379")
    with pytest.raises(SweepError, match="one task at a time"):
        make_scheduler("inline", workers=2)
    assert isinstance(make_scheduler("inline"), InlineScheduler)
    assert isinstance(make_scheduler("auto"), RayScheduler)


# --- syntheses (fake tool) ----------------------------------------------------------------------------------------


def fake_synthesis(bundle_dir: str) -> dict:
    """Stands in for hls_build's HLS + Vivado flow: fails once for a bundle with a ``flaky`` file."""
    bundle = Path(bundle_dir)
    flaky = bundle / "flaky"
    if flaky.exists():
        flaky.unlink()
        raise RuntimeError("license server busy")
    (bundle / "synth.done").write_text(str(os.getpid()))
    return {"lut": 1000 + len(bundle.name), "timing_met": True, "pid": os.getpid()}


def test_syntheses_run_as_tasks_inline_with_retries(tmp_path):
    bundles = []
    for name in ("resnet8_q8_3", "resnet8_q4_2"):
        b = tmp_path / "overlays/pynq-z2" / name
        b.mkdir(parents=True)
        (b / "manifest.json").write_text(json.dumps({"model_id": name}))
        bundles.append(b)
    (bundles[1] / "flaky").write_text("")
    report = schedule_syntheses(bundles, tmp_path / "synth", fake_synthesis, InlineScheduler(), retries=1)
    assert report.ok and sorted(report.ran) == ["pynq-z2/resnet8_q4_2", "pynq-z2/resnet8_q8_3"]
    runs = json.loads((tmp_path / "synth/sweep.json").read_text())["runs"]
    assert runs["pynq-z2/resnet8_q4_2"]["attempts"] == 2 and runs["pynq-z2/resnet8_q8_3"]["attempts"] == 1
    assert "| pynq-z2/resnet8_q8_3 | done |" in (tmp_path / "synth/syntheses.md").read_text()
    # A rebuilt bundle (new manifest) is synthesized again; the other is kept.
    (bundles[0] / "manifest.json").write_text(json.dumps({"model_id": "resnet8_q8_3", "rebuilt": True}))
    report = schedule_syntheses(bundles, tmp_path / "synth", fake_synthesis, InlineScheduler())
    assert report.ran == ["pynq-z2/resnet8_q8_3"] and report.reused == ["pynq-z2/resnet8_q4_2"]


# --- local Ray ----------------------------------------------------------------------------------------------------


def _ray_pids(root: str) -> list[int]:
    """Processes of the local Ray instances started under ``root`` (found by their open session files)."""
    from training.sweep.ray_sessions import session_processes

    return sorted(session_processes(root))


@pytest.fixture
def ray_root():
    """A short private folder for the local Ray instance (Ray's socket paths must stay under ~107 characters)."""
    root = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    yield root
    leftover = _ray_pids(root)
    for pid in leftover:  # do not leave them running, but fail the test
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    shutil.rmtree(root, ignore_errors=True)
    assert not leftover, f"Ray processes left running: {leftover}"


def test_syntheses_on_local_ray_with_resources_and_retries(tmp_path, ray_root):
    import ray

    if __name__ in sys.modules:  # workers cannot import this test module: ship its functions by value
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    bundles = []
    for i in range(3):
        b = tmp_path / f"overlays/pynq-z2/design{i}"
        b.mkdir(parents=True)
        bundles.append(b)
    (bundles[2] / "flaky").write_text("")
    report = schedule_syntheses(bundles, tmp_path / "synth", fake_synthesis,
                                RayScheduler(num_workers=2, temp_root=ray_root), cpus=1,
                                resources={"vivado": 1}, retries=1)  # fmt: skip
    assert report.ok and len(report.ran) == 3, report.failed
    assert not ray.is_initialized()
    pids = {r["result"]["pid"] for r in report.records}
    assert os.getpid() not in pids and len(pids) == 3  # each synthesis in a fresh worker process
    assert all((b / "synth.done").is_file() for b in bundles)
    runs = json.loads((tmp_path / "synth/sweep.json").read_text())["runs"]
    flaky = runs["pynq-z2/design2"]
    assert flaky["status"] == "done" and flaky["attempts"] == 2 and flaky["error"] is None
    assert [f["error"] for f in flaky["failures"]] == ["RuntimeError: license server busy"]


def test_resources_no_node_has_are_refused_before_anything_runs(tmp_path, ray_root):
    import ray

    with pytest.raises(SweepError, match="no node of the cluster has"):
        run_sweep(Grid.from_dict({**FAKE, "gpus_per_run": 1}), tmp_path / "s",
                  RayScheduler(num_workers=1, temp_root=ray_root))  # fmt: skip
    assert not (tmp_path / "s").exists() and not ray.is_initialized()


TINY = {
    "name": "tiny-ray",
    "models": ["resnet8"],
    "quants": ["<8,3>"],
    "methods": ["plain"],
    "trials": 2,
    "epochs": 1,
    "train_limit": 256,
    "test_limit": 128,
    "cpus_per_run": 1,
}


def _grid_file(folder: Path, grid: dict) -> str:
    path = folder / f"grid-{grid['name']}-{len(list(folder.glob('grid-*')))}.json"
    path.write_text(json.dumps(grid))
    return str(path)


def _cli(args: list[str], env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def _weights(path: Path) -> dict[str, np.ndarray]:
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f["model_weights"].visititems(lambda name, obj: out.update({name: obj[()]}) if hasattr(obj, "shape") else None)
    return out


@pytest.mark.slow  # ~30-100 s on a busy 2-core machine
def test_local_ray_sweep_resumes_after_interrupt_and_matches_inline(tmp_path, ray_root, cifar10_dir, monkeypatch):
    import ray

    monkeypatch.setenv("CIFAR10_DIR", str(cifar10_dir))  # the workers load CIFAR-10 themselves
    grid = Grid.from_dict(TINY)
    ray_dir = tmp_path / "ray"
    seen = []

    def interrupt_after_first(task, outcome):
        seen.append((task.key, outcome.error))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(grid, ray_dir, RayScheduler(num_workers=2, temp_root=ray_root), on_outcome=interrupt_after_first)
    assert not ray.is_initialized() and not _ray_pids(ray_root)
    first = seen[0][0]
    assert seen[0][1] is None, seen
    assert _statuses(ray_dir)[first] == "done"
    first_record = ray_dir / "runs" / first / "result.json"
    mtime = first_record.stat().st_mtime_ns

    report = run_sweep(grid, ray_dir, RayScheduler(num_workers=2, temp_root=ray_root))
    assert first in report.reused and first not in report.ran and report.ok
    assert sorted(report.ran + report.reused) == ["resnet8_q8_3_plain/trial0", "resnet8_q8_3_plain/trial1"]
    assert first_record.stat().st_mtime_ns == mtime
    records = {r.trial: r for r in report.records}
    assert set(records) == {0, 1} and records[0].history != records[1].history  # two seeds, two results

    # The same grid inline, in a fresh process: bit-identical histories, metrics and weights.
    res = _cli(["experiment", "--scheduler", "inline", "--grid", _grid_file(tmp_path, TINY), "--out",
                str(tmp_path / "inline")], env={"CIFAR10_DIR": str(cifar10_dir)})  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    for trial in (0, 1):
        a = json.loads((ray_dir / f"runs/resnet8_q8_3_plain/trial{trial}/result.json").read_text())
        b = json.loads((tmp_path / f"inline/runs/resnet8_q8_3_plain/trial{trial}/result.json").read_text())
        assert a["fingerprint"] == b["fingerprint"] and a["pid"] != b["pid"]
        assert a["result"]["history"] == b["result"]["history"]
        for k in ("test_top1_max", "test_top1_final", "epochs"):
            assert a["result"]["metrics"][k] == b["result"]["metrics"][k]
        wa = _weights(ray_dir / f"runs/resnet8_q8_3_plain/trial{trial}/model.h5")
        wb = _weights(tmp_path / f"inline/runs/resnet8_q8_3_plain/trial{trial}/model.h5")
        assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert (ray_dir / "summary.md").read_text() == (tmp_path / "inline/summary.md").read_text()


SLOW_SYNTH = """
import os, time
from pathlib import Path

def run_one(bundle_dir):
    bundle = Path(bundle_dir)
    with (bundle / "calls.log").open("a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(float(os.environ.get("SLOW_SYNTH_S", "2")))
    return {"bundle": bundle.name}
"""

DRIVER = """
import logging
import sys
from training.sweep import RayScheduler, schedule_syntheses

logging.basicConfig(level=logging.INFO)
out, root, *bundles = sys.argv[1:]
report = schedule_syntheses(bundles, out, "slow_synth:run_one", RayScheduler(num_workers=1, temp_root=root))
print("RAN", " ".join(report.ran))
print("REUSED", " ".join(report.reused))
"""


@pytest.mark.slow  # ~30-100 s on a busy 2-core machine
def test_driver_killed_with_sigkill_resumes_and_its_ray_processes_are_stopped(tmp_path, ray_root):
    (tmp_path / "slow_synth.py").write_text(SLOW_SYNTH)
    (tmp_path / "driver.py").write_text(DRIVER)
    bundles = []
    for i in range(3):
        (b := tmp_path / f"overlays/zcu104/d{i}").mkdir(parents=True)
        bundles.append(str(b))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "SLOW_SYNTH_S": "3"}
    cmd = [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "synth"), ray_root, *bundles]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list((tmp_path / "synth").glob("syntheses/*/*/result.json")):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no synthesis finished within 240 s"
            time.sleep(0.2)
    finally:
        proc.kill()  # SIGKILL: no chance to shut Ray down
        proc.communicate()
    statuses = _statuses(tmp_path / "synth")
    done = [k for k, s in statuses.items() if s == "done"]
    assert done and len(done) < 3, statuses
    assert _ray_pids(ray_root), "nothing of the killed driver's Ray instance is left: this test checks nothing"

    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ran = res.stdout.split("RAN", 1)[1].split("\n", 1)[0].split()
    assert sorted(ran + done) == ["zcu104/d0", "zcu104/d1", "zcu104/d2"] and not set(ran) & set(done)
    assert "left by an earlier local Ray instance" in res.stderr
    for key in done:  # a finished synthesis is never run again
        assert len((tmp_path / "overlays" / key / "calls.log").read_text().split()) == 1
    assert set(_statuses(tmp_path / "synth").values()) == {"done"}
