"""The model zoo (hls_build/zoo.py): registry, DESIGN in make, results on a tiny fixture (no training, no build)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from hls_build import zoo

ROOT = Path(__file__).resolve().parents[2]
MODEL = "zoo/models/resnet8_q8_3_foldbn_e12_seed1"


def test_the_committed_registry_parses_and_each_model_is_committed_with_its_command():
    designs = zoo.load_registry()
    assert {"pynq-z2/resnet8_q8_3", "zcu104/resnet8_q8_3"} <= set(designs)
    for d in designs.values():
        folder = ROOT / d.model_dir
        assert (folder / "model.h5").stat().st_size > 100_000
        assert json.loads((folder / "config.json").read_text())["model_id"]
        assert (folder / "training_command.txt").read_text().strip() == d.training_command
        assert d.training_command.startswith("python -m training train ")
        assert d.plan_path().parts[:3] == ("build", "plans", "zoo") and d.bundle_path().parts[:2] == ("overlays", "zoo")


def test_an_unknown_design_is_one_error_line_and_exit_2(capsys):
    assert zoo.main(["make-vars", "pynq-z2/no_such_design"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a zoo design" in err[0] and "pynq-z2/resnet8_q8_3" in err[0]


def test_make_with_an_unknown_design_stops_with_exit_2_before_doing_anything():
    r = subprocess.run(
        ["make", "-n", "bundle", "DESIGN=pynq-z2/no_such_design"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    assert "is not a zoo design" in r.stderr and "not a usable zoo design" in r.stderr
    assert "hls_build bundle" not in r.stdout


def test_make_with_a_design_uses_its_committed_model_and_zoo_folders():
    r = subprocess.run(
        ["make", "-n", "-W", f"{MODEL}/model.h5", "bench", "DESIGN=zcu104/resnet8_q8_3", "BOARD=pynq-z2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "training train" not in r.stdout  # never trains: the model is committed
    assert f"--model-dir {MODEL} --board zcu104" in r.stdout  # DESIGN wins over BOARD
    assert "--overlays overlays/zoo --work-dir build/hls/zoo/zcu104 --model-id resnet8_q8_3" in r.stdout
    assert "--bundle overlays/zoo/zcu104/resnet8_q8_3" in r.stdout
    # even forced (-B; -o: the environment is not remade), the model's rule refuses to train over the committed model
    forced = subprocess.run(
        ["make", "-B", "-o", ".venv-host/.done", f"{MODEL}/model.h5", "DESIGN=zcu104/resnet8_q8_3"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert forced.returncode == 2 and "never trains" in forced.stderr


def _registry(root: Path, designs: dict, models: dict | None = None) -> None:
    (root / "zoo").mkdir(parents=True, exist_ok=True)
    models = models or {"m": {"folder": "zoo/models/m", "training_command": "python -m training train --model x"}}
    (root / "zoo" / "designs.json").write_text(json.dumps({"models": models, "designs": designs}))


def _model(root: Path, name: str = "m", seconds: float = 100.0) -> dict[str, str]:
    """A model folder; returns the sha256 of the training record a bundle of it copies (names the training run)."""
    folder = root / "zoo" / "models" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.h5").write_bytes(b"weights")
    config = json.dumps({"model_id": "resnet8_q8_3"}).encode()
    metrics = json.dumps({"test_top1_final": 0.8, "epochs": 12, "train_seconds": seconds}).encode()
    (folder / "config.json").write_bytes(config)
    (folder / "metrics.json").write_bytes(metrics)
    return {
        "training_config.json": hashlib.sha256(config).hexdigest(),
        "training_metrics.json": hashlib.sha256(metrics).hexdigest(),
    }


@pytest.mark.parametrize(
    ("designs", "message"),
    [
        ({"pynq-z2/a": {"model": "nope"}}, "names model 'nope'"),
        ({"zedboard/a": {"model": "m"}}, "is not <board>/<name>"),
        ({"pynq-z2/A b": {"model": "m"}}, "is not <board>/<name>"),
        ({"pynq-z2/a": {"model": "m", "plan_options": {"clock": 200}}}, "unknown plan options ['clock']"),
    ],
)
def test_a_malformed_registry_is_refused_naming_what(tmp_path, designs, message):
    _model(tmp_path)
    _registry(tmp_path, designs)
    with pytest.raises(zoo.ZooError, match=message.replace("[", r"\[").replace("]", r"\]")):
        zoo.load_registry(zoo.REGISTRY, tmp_path)


def test_a_design_without_its_model_file_is_refused(tmp_path):
    _registry(tmp_path, {"pynq-z2/a": {"model": "m"}})
    with pytest.raises(zoo.ZooError, match="model.h5 is missing"):
        zoo.load_registry(zoo.REGISTRY, tmp_path)


def test_plan_options_become_plan_flags(tmp_path):
    _model(tmp_path)
    opts = {"margin": 0.1, "hls_tool": "vivado_hls", "bind_multipliers": False}
    _registry(tmp_path, {"pynq-z2/a": {"model": "m", "plan_options": opts}})
    d = zoo.find_design("pynq-z2/a", zoo.REGISTRY, tmp_path)
    assert d.plan_args() == ["--margin", "0.1", "--hls-tool", "vivado_hls", "--no-bind-multipliers"]


def test_add_copies_the_training_folder_and_registers_each_design(tmp_path):
    src = tmp_path / "run"
    src.mkdir()
    (src / "model.h5").write_bytes(b"h5")
    (src / "config.json").write_text("{}")
    (src / "checkpoints").mkdir()  # not copied
    root = tmp_path / "repo"
    root.mkdir()
    added = zoo.add_model(src, "r8", "python -m training train --epochs 1", ["pynq-z2/r8", "zcu104/r8"], "d", root=root)
    assert [d.name for d in added] == ["pynq-z2/r8", "zcu104/r8"]
    assert sorted(p.name for p in (root / "zoo/models/r8").iterdir()) == [
        "config.json",
        "model.h5",
        "training_command.txt",
    ]
    with pytest.raises(zoo.ZooError, match="already in"):
        zoo.add_model(src, "r8b", "cmd", ["pynq-z2/r8"], root=root)
    with pytest.raises(zoo.ZooError, match="not a training output folder"):
        zoo.add_model(tmp_path, "r9", "cmd", ["pynq-z2/r9"], root=root)


def _outputs(
    root: Path, board: str, short: str, h5: dict[str, str], top1: float, ips: float, util: float, stamp: str = "t1"
):
    """The three build outputs a design's summary is made of, with only the fields the summary reads."""
    plan = root / "build/plans/zoo" / board / f"{short}.json"
    plan.parent.mkdir(parents=True, exist_ok=True)
    plan.write_text(json.dumps({"board": board, "binding_resource": "LUT", "limit": "LUT: next", "images_per_s": ips}))
    bundle = root / "overlays/zoo" / board / short
    bundle.mkdir(parents=True, exist_ok=True)
    est = {"images_per_s": ips, "utilization_pct": {"BRAM_18K": util, "DSP": util, "FF": util, "LUT": util}}
    gate = {"keras_top1": top1, "firmware_vs_keras_agreement": 1.0, "firmware_vs_keras_images": 1000}
    manifest = {"board": board, "created_utc": stamp, "files": h5,
                "resources": {"estimate": est}, "metrics": gate}  # fmt: skip
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    report = root / "build/reports/zoo" / board / short / "report.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({
        "bundle": {"board": board, "created_utc": "t1"}, "accuracy": {"fpga_top1": top1}, "images": 10000,
        "engine": {"name": "fast", "csim_check": {"images": 100, "identical": 100, "bit_exact": True}},
        "board_estimate": {"images_per_s_range": [ips / 2, ips * 2], "band_pct": 94.3, "band_source": "fixture band"},
        "emulated": True,
    }))  # fmt: skip


def _fixture(root: Path) -> None:
    h5 = _model(root)
    _registry(root, {"pynq-z2/fast": {"model": "m", "description": "fast one"},
                     "pynq-z2/slow": {"model": "m", "description": "slow one"},
                     "zcu104/big": {"model": "m"}})  # fmt: skip
    _outputs(root, "pynq-z2", "fast", h5, 0.80, 600.0, 45.0)
    _outputs(root, "pynq-z2", "slow", h5, 0.78, 500.0, 30.0)  # dominated by "fast"
    _outputs(root, "zcu104", "big", h5, 0.80, 6000.0, 40.0)


def test_results_on_a_tiny_fixture_write_the_tables_and_plots(tmp_path, capsys):
    _fixture(tmp_path)
    assert zoo.main(["--root", str(tmp_path), "results", "--out", "out"]) == 0
    out = tmp_path / "out"
    for board in ("pynq-z2", "zcu104"):
        assert (out / board / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "pynq-z2" / "pareto.md").read_text()
    assert "ESTIMATE" in md and "emulated" in md and "measured elsewhere" in md
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| `pynq-z2/")}
    assert rows["`pynq-z2/fast`"].rstrip().endswith("| yes |") and rows["`pynq-z2/slow`"].rstrip().endswith("| no |")
    assert "| 80.00 % | 10,000 | 600 | 300 - 1,200 | LUT | 45 % |" in rows["`pynq-z2/fast`"]
    # the published references, parsed from their quoted lines, with where each comes from
    assert "| 83.5 % | 130.8 | mlcommons/tiny_results_v1.0@30a944256cff" in md
    assert "| 84.5 % | 661.5 | mlcommons/tiny_results_v0.7@8813eded7403" in md
    assert "| 86.0 % | 2,431.4 | mlcommons/tiny_results_v1.1@04558bf86137" in md
    flash = (out / "zoo.md").read_text()
    assert "| pynq-z2 | `pynq-z2/fast` (fast one) | 80.00 % | 600 (300 - 1,200) | yes (300) |" in flash
    assert "| zcu104 | `zcu104/big`" in flash and "| yes (2,500) |" in flash
    summary = json.loads((out / "pynq-z2" / "zoo" / "slow.json").read_text())
    assert summary["top1"]["emulated_fpga"] == 0.78 and summary["estimate"]["images_per_s"] == 500.0
    assert summary["labels"]["images_per_s"].startswith("ESTIMATE")
    # redrawn from the summaries alone: the same tables
    shutil.rmtree(tmp_path / "build")
    shutil.rmtree(tmp_path / "overlays")
    (out / "zoo.md").unlink()
    assert zoo.main(["--root", str(tmp_path), "results", "--out", "out", "--from-summaries"]) == 0
    assert (out / "zoo.md").read_text() == flash


def test_pareto_states_the_signed_range_when_every_bundle_has_range_factors(tmp_path):
    _fixture(tmp_path)
    band_text = "the range is the calibration's throughput band (fixture band)."
    assert zoo.main(["--root", str(tmp_path), "results", "--out", "out"]) == 0
    assert band_text in (tmp_path / "out/pynq-z2/pareto.md").read_text()
    for report in (tmp_path / "build/reports/zoo").rglob("report.json"):
        r = json.loads(report.read_text())
        r["board_estimate"]["range_factors"] = [0.382, 2.323]
        report.write_text(json.dumps(r))
    assert zoo.main(["--root", str(tmp_path), "results", "--out", "out2"]) == 0
    md = (tmp_path / "out2/pynq-z2/pareto.md").read_text()
    assert "0.382x to 2.323x; `throughput_range_factors`" in md and band_text not in md
    summary = json.loads((tmp_path / "out2/pynq-z2/zoo/fast.json").read_text())
    assert summary["estimate"]["throughput_range_factors"] == [0.382, 2.323]


def test_results_refuse_a_missing_or_stale_build_output(tmp_path, capsys):
    _fixture(tmp_path)
    (tmp_path / "build/reports/zoo/zcu104/big/report.json").unlink()
    assert zoo.main(["--root", str(tmp_path), "results", "--out", "out"]) == 2
    assert "make bench DESIGN=zcu104/big" in capsys.readouterr().err
    _outputs(tmp_path, "zcu104", "big", _model(tmp_path, "other", seconds=5.0), 0.8, 1.0, 1.0)
    with pytest.raises(zoo.ZooError, match="another training run"):
        zoo.summarize(zoo.find_design("zcu104/big", zoo.REGISTRY, tmp_path), tmp_path)
    _outputs(tmp_path, "zcu104", "big", _model(tmp_path), 0.8, 1.0, 1.0, stamp="t2")
    with pytest.raises(zoo.ZooError, match="older build of the bundle"):
        zoo.summarize(zoo.find_design("zcu104/big", zoo.REGISTRY, tmp_path), tmp_path)


def test_the_published_references_are_parsed_from_their_quoted_lines():
    refs = {r["id"]: (r["top1_pct"], r["images_per_s"]) for r in zoo.published_references()}
    assert refs == {
        "mlperf_tiny_v1.0_hls4ml_rn08_pynqz2": (83.5, 130.834),
        "mlperf_tiny_v0.7_finn_cnv_w1a1_pynqz2": (84.5, 661.473),
        "mlperf_tiny_v1.1_fpgaconvnet_resnet8_zedboard": (86.0, 2431.435),
    }


def test_the_committed_zoo_tables_are_the_ones_their_summaries_give(tmp_path):
    committed = ROOT / "results" / "designs"
    if not (committed / "zoo.md").is_file():
        pytest.skip("no zoo results committed yet (make zoo-results)")
    out = tmp_path / "designs"
    shutil.copytree(committed, out)
    assert zoo.main(["results", "--out", str(out), "--from-summaries"]) == 0
    for name in (
        "zoo.md",
        *(f"{b}/pareto.md" for b in ("pynq-z2", "zcu104") if (committed / b / "pareto.md").is_file()),
    ):
        assert (out / name).read_text() == (committed / name).read_text(), name
