"""board.bench: batch-size sweep, warm-up exclusion, plots, --reference-only, the armv7l path, progress output."""

from __future__ import annotations

import io
import json
import platform
import sys

import numpy as np
import pytest
from board_fakes import write_hw_bundle

from board.bench import (
    DEFAULT_BATCH_SIZES,
    benchmark,
    default_image_count,
    latency_stats,
    parse_batch_sizes,
    render_markdown,
    run_bench,
    write_report,
)
from board.bundle import load_bundle
from board.driver import BatchTiming
from board.errors import BoardError, InputError, ToolMissingError
from board.progress import Progress

PNG = b"\x89PNG\r\n\x1a\n"


def test_parse_batch_sizes():
    assert parse_batch_sizes("100, 1,10,10") == (1, 10, 100)
    assert parse_batch_sizes("off") == parse_batch_sizes("") == parse_batch_sizes(None) == ()
    assert parse_batch_sizes([4, 2]) == (2, 4)
    for bad in ("1,x", "0,2", "-1"):
        with pytest.raises(InputError):
            parse_batch_sizes(bad)


def test_defaults():
    assert default_image_count(emulated=False) == 10_000
    # The fast engine takes the whole test set; the C-simulation engine (~10 images/s) 1,000 images.
    assert default_image_count(emulated=True, engine="fast") == 10_000
    assert default_image_count(emulated=True, engine="csim") == 1_000
    assert default_image_count(emulated=True, reference="only", engine="csim") == 10_000
    assert DEFAULT_BATCH_SIZES == (1, 10, 100)


def test_latency_stats_excludes_warmup():
    timings = [BatchTiming(10, 1.0), BatchTiming(10, 0.02), BatchTiming(5, 0.01)]
    s = latency_stats(timings, warmup_batches=1)
    assert s["batches"] == 2 and s["images"] == 15 and s["warmup_batches_excluded"] == 1
    assert s["images_per_s"] == pytest.approx(15 / 0.03)
    assert s["batch_ms"] == [20.0, 10.0] and s["batch_images"] == [10, 5]
    one = latency_stats(timings[:1], warmup_batches=1)  # nothing would be left: keep the only batch
    assert one["batches"] == 1 and one["warmup_batches_excluded"] == 0
    assert "batch_ms" not in latency_stats(timings, samples=False)
    assert latency_stats([]) is None


@pytest.fixture
def toy(make_bundle):
    pytest.importorskip("pynq")
    return load_bundle(make_bundle())


def test_sweep_fpga_and_onnx(toy, images):
    pytest.importorskip("onnxruntime")
    report = benchmark(toy, images, np.zeros(12, np.int64), batch_size=5, batch_sizes=(1, 4), sweep_images=6)
    sweep = report["sweep"]
    assert sweep["batch_sizes"] == [1, 4] and sweep["images_per_batch_size"] == 6
    r1, r4 = sweep["rows"]
    # Batch 1: one warm-up + 6 timed; batch 4: one warm-up + 8 timed (whole batches covering 6 images).
    assert r1["timed_images"] == 6 and r1["fpga"]["batches"] == 6 and r1["fpga"]["images"] == 6
    assert r4["timed_images"] == 8 and r4["fpga"]["batches"] == 2 and r4["fpga"]["images"] == 8
    assert r4["dma_batch"] == 4 and r4["fpga"]["warmup_batches_excluded"] == 1
    assert r1["onnx"]["batches"] == 6 and r4["onnx"]["images"] == 8
    assert all(r[k]["images_per_s"] > 0 for r in (r1, r4) for k in ("fpga", "onnx"))
    assert "batch_ms" not in r1["fpga"]  # sweep rows stay small in report.json
    # The main pass is unaffected: 12 images at batch 5, the first batch a warm-up.
    assert report["timing"]["fpga"]["batch_images"] == [5, 2] and report["accuracy"]["fpga_top1"] is not None
    md = render_markdown(report)
    assert "## Batch-size sweep" in md and "| 4 | 8 |" in md


def test_sweep_larger_than_the_accelerators_batch(toy, images):
    """An injected accelerator with a small batch: a swept batch becomes several transfers, all warm-up excluded."""
    from board.driver import Accelerator

    with Accelerator(toy, batch_size=3) as acc:
        report = benchmark(
            toy, images, np.zeros(12, np.int64), batch_size=3, accelerator=acc, batch_sizes=(6,), sweep_images=6,
            reference="off",
        )  # fmt: skip
    row = report["sweep"]["rows"][0]
    assert row["dma_batch"] == 3 and row["fpga"]["warmup_batches_excluded"] == 2
    assert row["fpga"]["batches"] == 2 and row["fpga"]["images"] == 6


def test_report_plots_are_pngs_linked_from_markdown(toy, images, tmp_path):
    pytest.importorskip("onnxruntime")
    report = benchmark(toy, images, np.arange(12) % 10, batch_size=4, batch_sizes=(1, 2), sweep_images=2)
    json_path, md_path = write_report(report, tmp_path / "r")
    assert set(report["plots"]) == {"latency_histogram", "throughput_vs_batch", "fpga_vs_cpu"}
    md = md_path.read_text()
    for name in report["plots"].values():
        path = tmp_path / "r" / name
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000
        assert f"]({name})" in md
    assert "power_trace.png" not in md and not (tmp_path / "r" / "power_trace.png").exists()
    assert "Power: not available (host emulation)." in md
    saved = json.loads(json_path.read_text())
    assert saved["plots"] == report["plots"] and saved["power"]["reason"] == "not available (host emulation)"
    # Without a sweep no throughput plot, and an old one is removed rather than left to mislead.
    report2 = benchmark(toy, images, np.zeros(12, np.int64), batch_size=4, reference="off")
    write_report(report2, tmp_path / "r")
    assert "throughput_vs_batch" not in report2["plots"] and not (tmp_path / "r" / "throughput_vs_batch.png").exists()


def test_no_matplotlib_means_no_plots_and_a_note(toy, images, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    report = benchmark(toy, images[:4], np.zeros(4, np.int64), batch_size=2, reference="off")
    write_report(report, tmp_path)
    assert report["plots"] == {} and any("matplotlib is not installed" in n for n in report["notes"])


def test_reference_only(make_bundle, cifar10_dir, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    # A ZCU104 bitstream bundle with the toy ONNX model: on this host only its reference can run.
    toy = make_bundle()
    hw = write_hw_bundle(tmp_path / "hw_overlays", "zcu104", "hw")
    (hw / "reference.onnx").write_bytes((toy / "reference.onnx").read_bytes())
    from board.bundle import read_manifest, write_manifest

    m = read_manifest(hw)
    write_manifest(hw, type(m)(**{**m.__dict__, "onnx_reference": "reference.onnx"}))
    with pytest.raises(BoardError, match="runs on that board, not on this host.*--reference-only"):
        run_bench(hw, n=4, out_dir=tmp_path / "x", cifar10_dir=cifar10_dir, board="host")
    report, out = run_bench(
        hw, n=6, batch_size=2, out_dir=tmp_path / "ref", cifar10_dir=cifar10_dir, board="host",
        reference="only", batch_sizes="1,2", sweep_images=2,
    )  # fmt: skip
    assert report["accuracy"]["fpga_top1"] is None and report["accuracy"]["onnx_top1"] is not None
    assert report["timing"]["fpga"] is None and report["timing"]["onnx"]["batches"] == 2
    assert [r["fpga"] for r in report["sweep"]["rows"]] == [None, None]
    assert report["power"]["reason"].startswith("not measured: no FPGA pass")
    assert "no FPGA pass (--reference-only)" in report["fpga_label"]
    md = (out / "report.md").read_text()
    assert f"ONNX reference, float, onnxruntime on this host's CPU ({platform.machine()})" in md
    assert "| FPGA vs ONNX reference (float) | n/a |" in md


def test_armv7l_runs_the_numpy_evaluator(toy, images, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # no wheel: the import fails
    monkeypatch.setattr(platform, "machine", lambda: "armv7l")
    labels = np.zeros(12, np.int64)
    report = benchmark(toy, images, labels, batch_size=6, batch_sizes=(2,), sweep_images=2, running_on="pynq-z2")
    assert report["onnx_unavailable"] is None and report["reference"]["engine"] == "numpy"
    assert report["accuracy"]["fpga_top1"] is not None and report["accuracy"]["onnx_top1"] is not None
    assert report["agreement"]["fpga_vs_onnx"]["agreement"] == 1.0  # the toy model is exact
    assert report["timing"]["onnx"]["images"] == 6 and report["sweep"]["rows"][0]["onnx"] is not None
    assert report["environment"]["machine"] == "armv7l"
    md = render_markdown(report)
    assert "ONNX reference, float, numpy evaluator on the PYNQ-Z2's Cortex-A9" in md
    # The toy bundle carries no 8-bit reference: the report says so, and the FPGA figures are unaffected.
    assert report["accuracy"]["onnx_int8_top1"] is None and "no 8-bit reference" in report["onnx_int8_unavailable"]
    # Asking for onnxruntime where it has no wheel: not available, with why; the FPGA pass goes on.
    report = benchmark(toy, images, labels, batch_size=6, reference_engine="ort")
    assert "no onnxruntime wheel for 32-bit ARM" in report["onnx_unavailable"]
    assert report["accuracy"]["fpga_top1"] is not None and report["timing"]["onnx"] is None
    assert "ONNX reference (float) not available: onnxruntime is not available on armv7l" in render_markdown(report)
    with pytest.raises(ToolMissingError, match="armv7l"):
        benchmark(toy, images, labels, reference="only", reference_engine="ort")


def test_armv7l_cli_reference_only(make_bundle, cifar10_dir, monkeypatch, capsys, tmp_path):
    from board.__main__ import main

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setattr(platform, "machine", lambda: "armv7l")
    args = ["bench", "--bundle", str(make_bundle()), "-n", "2", "--reference-only", "--cifar10-dir", str(cifar10_dir)]
    rc = main([*args, "--reference-engine", "ort", "--out", str(tmp_path / "a")])
    assert rc == 2 and "no onnxruntime wheel for 32-bit ARM" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b"), "--no-plots"]) == 0
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["reference"]["engine"] == "numpy" and report["accuracy"]["onnx_top1"] is not None


def test_progress_bar():
    stream = io.StringIO()
    with Progress(10, "fpga", stream=stream, enabled=True, min_interval_s=0) as bar:
        bar.update(4)
        bar.update(6)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("fpga [########------------]  4/10 images  40%")
    assert lines[-1].startswith("fpga [####################] 10/10 images 100%") and " in " in lines[-1]
    quiet = io.StringIO()
    with Progress(10, "x", stream=quiet) as bar:  # not a terminal: off by default
        bar.update(10)
    assert quiet.getvalue() == ""


def test_progress_env_override(monkeypatch):
    from board.progress import progress_enabled

    monkeypatch.setenv("ZYNQ_RESNET_PROGRESS", "1")
    assert progress_enabled(io.StringIO())
    monkeypatch.setenv("ZYNQ_RESNET_PROGRESS", "0")
    assert not progress_enabled(io.StringIO()) and progress_enabled(io.StringIO(), requested=True)


def test_bench_cli_sweep_and_progress(make_bundle, cifar10_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from board.__main__ import main

    out = tmp_path / "report"
    rc = main(
        [
            "bench", "--bundle", str(make_bundle()), "-n", "8", "--batch-size", "4", "--batch-sizes", "1,4",
            "--sweep-images", "4", "--out", str(out), "--cifar10-dir", str(cifar10_dir), "--progress",
        ]
    )  # fmt: skip
    assert rc == 0
    captured = capsys.readouterr()
    assert "## Batch-size sweep" in captured.out and "## Plots" in captured.out
    assert "fpga (emulated) [" in captured.err and "onnx float (ort) [" in captured.err
    assert "sweep fpga b=4" in captured.err
    report = json.loads((out / "report.json").read_text())
    assert [r["batch_size"] for r in report["sweep"]["rows"]] == [1, 4]
    assert (out / "throughput_vs_batch.png").read_bytes()[:8] == PNG


def test_bench_cli_external_power_on_emulation_is_refused(make_bundle, cifar10_dir, capsys):
    from board.__main__ import main

    rc = main(
        ["bench", "--bundle", str(make_bundle()), "-n", "2", "--external-power-watts", "2.5",
         "--cifar10-dir", str(cifar10_dir)]
    )  # fmt: skip
    assert rc == 2 and "host emulation" in capsys.readouterr().err


def test_engine_choice_follows_the_bundle(tmp_path):
    from types import SimpleNamespace

    from board.driver import resolve_engine
    from board.errors import InputError

    with_graph = SimpleNamespace(root=tmp_path, manifest=SimpleNamespace(hls={"firmware_graph": "firmware/graph.json"}))
    without = SimpleNamespace(root=tmp_path, manifest=SimpleNamespace(hls={}))
    assert resolve_engine(with_graph, "auto") == "fast" and resolve_engine(without, "auto") == "csim"
    assert resolve_engine(with_graph, "csim") == "csim"
    with pytest.raises(InputError, match="no firmware graph"):
        resolve_engine(without, "fast")
    with pytest.raises(InputError, match="engine must be one of"):
        resolve_engine(with_graph, "gpu")


def test_the_reference_rows_name_the_cpu_only_where_it_is_that_core():
    from board.bench import cpu_name

    assert cpu_name("pynq-z2", "armv7l") == "the PYNQ-Z2's Cortex-A9"
    assert cpu_name("zcu104", "aarch64") == "the ZCU104's Cortex-A53"
    assert cpu_name("pynq-z2", "x86_64") == "this host's CPU (x86_64)"  # --board pynq-z2 forced on a host
    assert cpu_name("host", "x86_64") == "this host's CPU (x86_64)"
