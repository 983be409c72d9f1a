"""Pre-synthesis ESTIMATES and the fit planner (hls_build.estimate, hls_build.planner).

Untrained registry models are converted with hls4ml (a few seconds each, no C-simulation compile); the estimates
are analytical, so every setting is evaluated without converting again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from training.keras_compat import keras  # noqa: F401  (first)

pytestmark = pytest.mark.host

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "hls_build" / "README.md"


def _convert(name: str, work: Path, board: str = "pynq-z2", fuse_relu: bool = True):
    import tensorflow as tf

    from hls_build.config import HlsSettings
    from hls_build.estimate import convert_keras_model, graph_from_hls_model
    from training.models import create_model

    # The same weights on every call: derived types (and so FF/LUT) depend on them, and tests compare two conversions.
    tf.keras.utils.set_random_seed(0)
    model = create_model(name, quant="<8,3>")
    hls_model = convert_keras_model(model, HlsSettings(board=board, fuse_relu=fuse_relu), work)
    return graph_from_hls_model(hls_model, write=False)


@pytest.fixture(scope="module")
def resnet20(tmp_path_factory):
    return _convert("resnet20", tmp_path_factory.mktemp("rn20"))


@pytest.fixture(scope="module")
def resnet8_bundle(tmp_path_factory):
    """A minimal bundle folder (manifest + hls project) of an untrained ResNet8 <8,3>: enough for the reader."""
    root = tmp_path_factory.mktemp("bundle")
    _convert("resnet8", root)
    manifest = {"board": "pynq-z2", "hls": {"project_dir": "hls", "project_name": "myproject", "clock_mhz": 100.0}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


# --------------------------------------------------------------------------------------------- reading firmware
def test_graph_reads_the_written_firmware(resnet20):
    ops = [layer.op for layer in resnet20.layers]
    assert ops.count("conv2d") == 21  # 19 3x3 + 2 projections
    # BatchNormalization is folded into the convolutions (hls_build.fold): no batchnorm layer is left.
    assert ops.count("batchnorm") == 0 and ops.count("merge") == 9 and ops.count("clone") == 9
    conv = resnet20.layer("s1b1_conv1")
    assert conv.strategy == "resource" and conv.reuse_factor == 72  # 64 made valid by hls4ml
    assert conv.mult_size == (144, 16) and conv.weights["weight"].size == 144 * 16
    # The folded kernel keeps the 8 bits of <8,3>, with integer bits derived from its own range.
    assert conv.types["weight"].width == 8
    # every internal stream has one producer and at least one consumer
    for s in resnet20.streams.values():
        if s.kind == "internal":
            assert s.producer and s.consumers, s.name
    assert resnet20.axi == {"n_in": 3072, "n_out": 10}
    assert set(resnet20.keys.values()) >= {"stem_conv", "s1b1_relu2_cpy2"}


def test_valid_reuse_factors_match_hls4ml():
    from hls4ml.backends import get_backend

    from hls_build.estimate import closest_reuse_factor, valid_reuse_factors

    backend = get_backend("Vivado")
    for n_in, n_out in ((27, 16), (144, 16), (288, 32), (64, 10)):
        assert valid_reuse_factors(n_in, n_out) == backend.get_valid_reuse_factors(n_in, n_out)
    assert closest_reuse_factor(144, 16, 64) == 72 and closest_reuse_factor(27, 16, 64) == 54


def test_bram_and_dsp_rules():
    from hls_build.estimate import bram18_count, dsp_per_product

    assert bram18_count(512, 36) == 1 and bram18_count(1024, 18) == 1 and bram18_count(72, 256) == 8
    assert bram18_count(2304, 8) == 2 and bram18_count(0, 8) == 0
    assert dsp_per_product(18, 24, "DSP48E1") == 1 and dsp_per_product(19, 26, "DSP48E1") == 2
    assert dsp_per_product(27, 18, "DSP48E2") == 1 and dsp_per_product(25, 24, "DSP48E1") == 2


# ---------------------------------------------------------------------------------------------- monotonicity
def test_estimates_grow_as_reuse_factor_falls(resnet20):
    """Per tunable layer: as ReuseFactor falls, DSP, LUT and FF never shrink and the layer never gets slower."""
    from hls_build.estimate import estimate_design, valid_reuse_factors

    names = ["stem_conv", "s1b1_conv1", "s2b1_conv2", "s2b1_proj_conv", "s3b1_conv2", "logits"]
    for name in names:
        layer = resnet20.layer(name)
        rfs = sorted(valid_reuse_factors(*layer.mult_size), reverse=True)[:-1]  # RF 1 leaves the ROM
        previous = None
        for rf in rfs:
            est = estimate_design(resnet20, None, layer_config={name: {"ReuseFactor": rf}}, check=False)
            row = next(r for r in est.rows if r.name == name)
            if previous is not None:
                for res in ("DSP", "LUT", "FF"):
                    assert row.resources[res] >= previous.resources[res] - 1e-6, (name, rf, res)
                assert row.cycles <= previous.cycles, (name, rf)
            previous = row
    # the whole design too, with one ReuseFactor for everything
    totals = []
    for rf in (4608, 1152, 288, 72, 18):
        cfg = {layer.name: {"ReuseFactor": rf} for layer in resnet20.layers if layer.tunable}
        totals.append(estimate_design(resnet20, "zcu104", layer_config=cfg, check=False).totals)
    for a, b in zip(totals, totals[1:]):
        assert b["DSP"] >= a["DSP"] and b["LUT"] >= a["LUT"] and b["FF"] >= a["FF"]


# --------------------------------------------------------------------------------------------------- planner
def test_plan_resnet20_zcu104_fits_with_margin(resnet20):
    from hls_build.estimate import estimate_design, valid_reuse_factors
    from hls_build.planner import plan_design

    plan = plan_design(resnet20, "zcu104", margin=0.1)
    assert plan.fits and plan.estimate.fits(0.1)
    assert plan.images_per_s > 100 and plan.latency_ms > 0
    for name, cfg in plan.layer_config.items():
        layer = resnet20.layer(name)
        if layer.op in ("conv2d", "dense") and cfg["Strategy"] == "Resource":
            assert cfg["ReuseFactor"] in valid_reuse_factors(*layer.mult_size)
    # the plan's settings, re-estimated, give the plan's figures
    again = estimate_design(resnet20, "zcu104", layer_config=plan.layer_config, fifo_depths=plan.fifo_depths)
    assert again.totals == plan.estimate.totals and again.interval_cycles == plan.estimate.interval_cycles
    # skip FIFOs are deeper than chain FIFOs; every planned stream depth is keyed for the ModelGraph
    skip = plan.fifo_depths["layer96_cpy2"] if "layer96_cpy2" in plan.fifo_depths else max(plan.fifo_depths.values())
    assert skip > 3
    assert len(plan.fifo_depths_by_output) == len(plan.fifo_depths)


def test_plan_resnet8_fits_pynq_z2(tmp_path):
    from hls_build.planner import plan_design

    graph = _convert("resnet8", tmp_path)
    plan = plan_design(graph, "pynq-z2", margin=0.1)
    assert plan.fits and plan.estimate.fits(0.1)
    default = plan_design(graph, "pynq-z2", margin=0.5)
    assert default.images_per_s <= plan.images_per_s  # a larger margin never buys throughput


def test_fusing_the_relus_removes_their_processes_and_wide_fifos(tmp_path):
    """hls_build.fuse: no ReLU process is left, every FIFO is at most as wide, and FF and LUT go down."""
    from hls_build.estimate import estimate_design
    from hls_build.planner import plan_design

    fused, unfused = _convert("resnet8", tmp_path / "f"), _convert("resnet8", tmp_path / "u", fuse_relu=False)
    assert not [la for la in fused.layers if la.op == "activation"]
    n_relu = len([la for la in unfused.layers if la.op == "activation"])
    assert n_relu == 7 and len(fused.fifo_streams()) == len(unfused.fifo_streams()) - n_relu
    widths_fused = [s.width_bits for s in fused.fifo_streams()]
    widths_unfused = [s.width_bits for s in unfused.fifo_streams()]
    # The widest FIFO may be one fusion does not touch (a skip); the wide ones that fed the ReLUs are gone.
    assert max(widths_fused) <= max(widths_unfused) and sum(widths_fused) < sum(widths_unfused)
    cfg = plan_design(unfused, "pynq-z2", margin=0.1).layer_config  # the same settings for both
    a = estimate_design(fused, "pynq-z2", layer_config=cfg, check=False).totals
    b = estimate_design(unfused, "pynq-z2", layer_config=cfg, check=False).totals
    assert a["FF"] < b["FF"] and a["LUT"] < b["LUT"] and a["BRAM_18K"] <= b["BRAM_18K"]


@pytest.mark.xfail(
    strict=True,
    reason="by the calibrated estimate, ResNet20 <8,3> WITH its skips does not fit the PYNQ-Z2 at any ReuseFactor: "
    "the whole design widened by the calibration's post-synthesis band exceeds the LUT and FF caps even "
    "fully serial (hls_build/calibration_fit.json; see hls_build/README.md, Estimates)",
)
def test_plan_resnet20_fits_pynq_z2(resnet20):
    from hls_build.planner import plan_design

    plan = plan_design(resnet20, "pynq-z2")
    assert plan.fits


def test_plan_resnet20_pynq_z2_says_why(resnet20):
    from hls_build.planner import plan_design

    plan = plan_design(resnet20, "pynq-z2")  # the calibrated caps
    assert not plan.fits and not plan.estimate.fits()
    assert any("do not fit pynq-z2" in note for note in plan.notes)
    assert plan.binding == "LUT" and plan.cap_use["LUT"] > 1.0  # the slowest settings: LUT is what does not fit
    assert "LUT" in plan.estimate.over_budget()


# ---------------------------------------------------------------------------------------------------- errors
def test_unknown_board(resnet20, capsys):
    from hls_build.__main__ import main
    from hls_build.boards import UnknownBoardError
    from hls_build.estimate import estimate_design
    from hls_build.planner import plan_design

    with pytest.raises(UnknownBoardError, match="supported boards: pynq-z2, zcu104"):
        estimate_design(resnet20, "zedboard")
    with pytest.raises(UnknownBoardError):
        plan_design(resnet20, "zedboard")
    assert main(["estimate", "--model", "resnet8", "--board", "zedboard"]) == 2
    assert "unknown board 'zedboard'" in capsys.readouterr().err


def test_bad_settings_are_refused(resnet20):
    from hls_build.estimate import EstimateError, estimate_design

    with pytest.raises(EstimateError, match="unknown layers"):
        estimate_design(resnet20, None, layer_config={"nope": {"ReuseFactor": 2}})
    with pytest.raises(EstimateError, match="Resource or Latency"):
        estimate_design(resnet20, None, layer_config={"stem_conv": {"Strategy": "Turbo"}})
    with pytest.raises(EstimateError, match="depth"):
        estimate_design(resnet20, None, fifo_depths={"layer2_out": 0})


def test_narrow_precision_is_warned(resnet20, caplog):
    """A wrapping type narrower than the static bound of its values is named with the layer and both ranges."""
    import copy

    from board.fixed_point import FixedPoint
    from hls_build.estimate import check_precision, estimate_design

    graph = copy.deepcopy(resnet20)
    add = graph.layer("s2b1_add")
    narrow = FixedPoint.parse("ap_fixed<8,2>")
    add.types["out"] = narrow
    for s in add.outputs:
        graph.streams[s].elem = narrow
    warnings = [w for w in check_precision(graph) if w.layer == "s2b1_add"]
    assert len(warnings) == 1
    w = warnings[0]
    assert w.what == "result" and w.type_range == (-2.0, 1.984375)
    assert w.bound[1] > w.type_range[1]
    assert re.search(r"layer s2b1_add result type ap_fixed<8,2> holds \[-2, 1\.98438\] but .*\[-?[\d.]+, [\d.]+\]",
                     w.message)  # fmt: skip
    with caplog.at_level("WARNING", logger="hls_build.estimate"):
        est = estimate_design(graph, "zcu104")
    assert any("s2b1_add" in rec.message for rec in caplog.records)
    assert any(x.layer == "s2b1_add" for x in est.warnings)
    # a saturating type clips by design: not reported
    add.types["out"] = FixedPoint.parse("ap_fixed<8,2,AP_RND,AP_SAT>")
    assert not [x for x in check_precision(graph) if x.layer == "s2b1_add"]


# -------------------------------------------------------------------------------------------- output formats
def test_table_format_and_manifest_entry(resnet8_bundle, capsys):
    from hls_build.__main__ import main
    from hls_build.estimate import estimate_design, format_table, graph_from_bundle

    graph = graph_from_bundle(resnet8_bundle)
    est = estimate_design(graph, "pynq-z2")
    text = format_table(est)
    lines = text.splitlines()
    assert lines[0].startswith("== ESTIMATE (pre-synthesis, calibrated on")
    header = next(line for line in lines if line.startswith("|") and "BRAM_18K" in line)
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[:6] == ["Name", "BRAM_18K", "DSP48E", "FF", "LUT", "URAM"]
    first = [line.split("|")[1].strip() for line in lines if line.startswith("|")]
    for name in ("Total", "Available", "Utilization (%)"):
        assert name in first
    assert any(line.startswith("|s1b1_conv1 (Conv2D 3x3 RF 72 Resource)") for line in lines)
    total = next(line for line in lines if line.startswith("|Total"))
    assert [int(c) for c in total.strip("|").split("|")[1:6]] == [est.totals[k] for k in est.totals]
    util = next(line for line in lines if line.startswith("|Utilization"))
    assert util.strip("|").split("|")[5].strip() == "-"  # no URAM on the xc7z020
    assert "images/s" in lines[-1] or any("images/s" in line for line in lines)

    entry = est.to_manifest_entry()
    assert entry["kind"] == "estimated" and entry["stage"] == "pre_synthesis"
    assert set(entry) >= {"BRAM_18K", "DSP", "FF", "LUT", "URAM", "available", "utilization_pct", "images_per_s"}
    json.dumps(entry)

    assert main(["estimate", "--bundle", str(resnet8_bundle)]) == 0
    out = capsys.readouterr().out
    assert "ESTIMATE (pre-synthesis" in out and "|Utilization (%)" in out


def test_plan_cli(tmp_path, capsys):
    from hls_build.__main__ import main

    out_json = tmp_path / "plan.json"
    rc = main(["plan", "--model", "resnet8", "--board", "pynq-z2", "--work-dir", str(tmp_path), "--json",
               str(out_json)])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "PLAN (fits pynq-z2, ESTIMATE)" in out and "binding resource: " in out and "layer_config" in out
    assert "caps (calibration band" in out  # the default margin is the calibration's measured band
    plan = json.loads(out_json.read_text())
    assert plan["fits"] and plan["kind"] == "estimated" and plan["layer_config"]["s1b1_conv1"]["ReuseFactor"] > 0
    assert plan["margins"]["band_pct"] and plan["binding_resource"] in ("BRAM_18K", "DSP", "FF", "LUT")


# ------------------------------------------------------------------------------------------------ calibration
def test_manifest_entry_states_the_calibrated_estimate(resnet8_bundle):
    """One estimator: the manifest's estimate is calibration_fit.json's (csynth level, post-synthesis prediction,
    band, board wrapper, whole design), and "fits" follows the calibrated rule."""
    from hls_build.estimate import estimate_design, graph_from_bundle, load_fit

    fit = load_fit()
    est = estimate_design(graph_from_bundle(resnet8_bundle), "pynq-z2")
    entry = est.to_manifest_entry()
    assert entry["band_pct"] == fit["post_synthesis_band_pct"]
    assert entry["board_wrapper"] == {r: float(fit["board_wrapper"]["resources"][r]) for r in entry["board_wrapper"]}
    for r in ("BRAM_18K", "DSP", "FF", "LUT"):
        assert entry[r] == est.totals[r]
        assert entry["whole_design"][r] == est.totals[r] + int(fit["board_wrapper"]["resources"][r])
        ratio = fit["post_synthesis"]["ratios"][r]
        assert est.totals[r] == pytest.approx(entry["csynth_totals"][r] * ratio, abs=max(2.0, 0.01 * est.totals[r]))
    avail = est.available
    upper = {r: entry["whole_design"][r] * (1 + entry["band_pct"][r] / 100) for r in entry["band_pct"]}
    assert entry["fits"] == all(upper[r] <= avail[r] for r in upper)
    assert entry["throughput_band_pct"] > 0 and "calibration_fit.json" in entry["throughput_band_source"]
    assert "calibration_fit.json" in entry["calibration"]
