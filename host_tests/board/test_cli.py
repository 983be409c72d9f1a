"""``python -m board``: bench, list, validate; exit codes 0, 1 (a check failed), 2 (bad input), 130 (Ctrl-C)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from board_toys import ROOT, toy_raw

from board.__main__ import main


def test_validate_bad_path_exit_2(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no manifest" in err and "Traceback" not in err


def test_validate_subprocess_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "board", "validate", str(tmp_path / "nope")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert proc.stderr.startswith("error: ")


def test_validate_ok_and_modified(make_bundle, capsys):
    bundle = make_bundle()
    assert main(["validate", str(bundle)]) == 0
    assert capsys.readouterr().out.startswith("OK ")
    (bundle / "reference.onnx").write_bytes(b"tampered")
    assert main(["validate", str(bundle)]) == 2
    assert "modified reference.onnx" in capsys.readouterr().err


def test_list(make_bundle, tmp_path, capsys):
    make_bundle("toy_a")
    make_bundle("toy_b")
    broken = tmp_path / "overlays" / "zcu104" / "broken"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{")
    assert main(["list", "--root", str(tmp_path / "overlays")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["board", "model_id", "emulated", "has_bitstream"]
    assert out[1].split()[:4] == ["pynq-z2", "toy_a", "true", "false"]
    assert out[2].split()[:2] == ["pynq-z2", "toy_b"]
    assert "unreadable" in out[3]
    assert main(["list", "--root", str(tmp_path / "none")]) == 2


def test_keyboard_interrupt_exit_130(monkeypatch, capsys):
    import board.__main__ as cli

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_bundle", interrupted)
    assert main(["validate", "x"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_bench_bad_bundle_exit_2(tmp_path, capsys):
    assert main(["bench", "--bundle", str(tmp_path / "nope"), "-n", "5"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_bench_end_to_end(make_bundle, cifar10_dir, tmp_path, capsys):
    pytest.importorskip("pynq")
    pytest.importorskip("onnxruntime")
    from board.cifar10 import load_split

    test = load_split("test", directory=cifar10_dir).head(50)
    keras = np.argmax(toy_raw(test.images.reshape(50, -1)), axis=1)[:40]
    keras[:2] = (keras[:2] + 1) % 10  # two disagreements out of 40
    bundle = make_bundle(keras_predictions=keras, metrics={"keras_top1": 0.1234, "keras_top1_images": 1000})
    out = tmp_path / "report"
    rc = main(
        [
            "-q",
            "bench",
            "--bundle",
            str(bundle),
            "-n",
            "50",
            "--batch-size",
            "20",
            "--out",
            str(out),
            "--cifar10-dir",
            str(cifar10_dir),
        ]
    )
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "HOST EMULATION" in stdout and "NOT board timings" in stdout
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.md").read_text() == stdout
    assert report["images"] == 50 and report["emulated"] is True
    acc, agr = report["accuracy"], report["agreement"]
    assert acc["fpga_top1"] == acc["onnx_top1"]
    assert acc["keras_top1_manifest"] == 0.1234 and acc["keras_top1_manifest_images"] == 1000
    assert acc["keras_same_images_count"] == 40
    assert agr["fpga_vs_onnx"]["agreement"] == 1.0 and agr["fpga_vs_onnx"]["max_abs_logit_diff"] == 0.0
    assert agr["fpga_vs_keras"] == {"images": 40, "agreement": 38 / 40}
    fpga = report["timing"]["fpga"]
    # 50 images at batch 20: 20 + 20 + 10; the first batch is a warm-up, timed are the other two.
    assert fpga["batches"] == 2 and fpga["images"] == 30 and fpga["images_per_s"] > 0
    assert fpga["warmup_batches_excluded"] == 1 and fpga["batch_images"] == [20, 10]
    assert report["timing"]["onnx"]["images"] == 30
    assert report["bundle"]["tool_versions"] == {"hls4ml": "toy"}
    assert set(report["environment"]) >= {"python", "numpy", "pynq", "onnxruntime", "machine"}
    assert any("first 40 of the 50" in note for note in report["notes"])


def test_benchmark_without_onnxruntime(make_bundle, images, monkeypatch):
    pytest.importorskip("pynq")
    from board.bench import benchmark, render_markdown
    from board.bundle import load_bundle

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    labels = np.zeros(len(images), np.int64)
    bundle = load_bundle(make_bundle())
    # The numpy evaluator takes over: same figures as onnxruntime would give on the toy model (exact).
    report = benchmark(bundle, images, labels, batch_size=5)
    assert report["reference"]["engine"] == "numpy" and report["onnx_unavailable"] is None
    assert report["accuracy"]["onnx_top1"] == report["accuracy"]["fpga_top1"]
    assert report["agreement"]["fpga_vs_onnx"]["max_abs_logit_diff"] == 0.0
    assert report["agreement"]["fpga_vs_keras"] is None  # the bundle has no keras_predictions.npy
    assert "numpy evaluator" in render_markdown(report)
    # onnxruntime asked for by name: not available, and why; the FPGA figures are there.
    report = benchmark(bundle, images, labels, batch_size=5, reference_engine="ort")
    assert report["accuracy"]["onnx_top1"] is None and report["timing"]["onnx"] is None
    assert "onnxruntime is not installed" in report["onnx_unavailable"]
    assert report["accuracy"]["fpga_top1"] is not None
    md = render_markdown(report)
    assert "ONNX reference (float) not available" in md and "| FPGA vs ONNX reference (float) | n/a |" in md


# Every subcommand through the one runner (board.cli.run): interrupted -> 130, a failed check -> 1, bad input -> 2.
_SUBCOMMANDS = {  # subcommand -> (argv, a function it calls: "module:attribute")
    "list": (["list"], "board.registry:find_bundles"),
    "validate": (["validate", "x"], "board.__main__:load_bundle"),
    "bench": (["bench", "--bundle", "x"], "board.bench:run_bench"),
    "demo": (["demo"], "board.registry:first_bundle"),
    "remote-bench": (["remote-bench", "--host", "h", "--bundle", "x"], "board.registry:resolve_bundle"),
}


def _patch(monkeypatch, target: str, exc: BaseException) -> None:
    import importlib

    module, attr = target.split(":")

    def raising(*args, **kwargs):
        raise exc

    monkeypatch.setattr(importlib.import_module(module), attr, raising)


@pytest.mark.parametrize("name", list(_SUBCOMMANDS))
def test_every_subcommand_maps_outcomes_to_exit_codes(name, monkeypatch, capsys):
    from board.errors import BundleError, CheckFailedError

    argv, target = _SUBCOMMANDS[name]
    _patch(monkeypatch, target, KeyboardInterrupt())
    assert main(argv) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "interrupted"
    _patch(monkeypatch, target, CheckFailedError("a check did not pass"))
    assert main(argv) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: a check did not pass"
    _patch(monkeypatch, target, BundleError("bad bundle"))
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: bad bundle"
