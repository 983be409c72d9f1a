"""The hls4ml build: a real bundle whose C-simulation matches the quantized Keras model, and clear failures."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from board.bundle import load_bundle
from hls_build.build import BuildError, BuildOptions, build_bundle
from hls_build.config import output_fixed_point
from hls_build.csim import CSimLibrary, fix_generated_sources
from training.data import preprocess
from training.train import load_trained_model


def test_bundle_is_complete_and_verifies(bundle_dir):
    bundle = load_bundle(bundle_dir, board="pynq-z2")
    m = bundle.manifest
    assert m.emulated and not m.has_bitstream
    assert (m.input.shape, m.input.fixed_point, m.input.container) == ([32, 32, 3], "ap_ufixed<8,0>", "uint8")
    # The logits keep their exact type (hls_build.precision), padded to whole bytes.
    assert m.output.shape == [10] and m.output.container in ("int16", "int32")
    assert m.output.fixed_point == output_fixed_point(load_trained_model(bundle_dir / "model.h5"))
    # The bundle carries the model the firmware computes: BatchNormalization folded into the convolutions.
    assert m.hls["batchnorm_folds"] and all(f["bias_exact"] for f in m.hls["batchnorm_folds"])
    for rel in (m.csim_library, m.onnx_reference, "model.h5", "keras_predictions.npy", "hls/firmware/myproject.cpp",
                "hls/firmware/myproject_axi.cpp", "hls/build_prj.tcl"):  # fmt: skip
        assert rel in m.files, rel
    assert all(len(h) == 64 for h in m.files.values())
    assert {"hls4ml", "tensorflow", "qkeras"} <= set(m.tool_versions)


def test_csim_equals_the_folded_keras_model_bit_for_bit(bundle_dir, trained_model_dir, test_split):
    """Folded BatchNormalization + derived exact types: the C-simulation's logits ARE the Keras model's."""
    m = load_bundle(bundle_dir).manifest
    assert m.metrics["csim_vs_keras_images"] >= 50
    assert m.metrics["csim_vs_keras_agreement"] == 1.0
    # The gate measured the firmware on more images with the fast engine, proven bit-identical on the C-sim's.
    assert m.metrics["csim_vs_fast_engine_identical"] == m.metrics["csim_vs_keras_images"]
    assert m.metrics["firmware_vs_keras_images"] == 300 and m.metrics["firmware_vs_keras_agreement"] == 1.0
    assert m.metrics["firmware_vs_keras_max_abs_logit_diff"] == 0.0
    # Recompute here from the bundle's own library, independently of the number the build recorded.
    x = preprocess(test_split.head(50).images)
    csim = CSimLibrary(bundle_dir / m.csim_library, 3072, 10, m.csim_entry).predict(x)
    folded = load_trained_model(bundle_dir / "model.h5").predict(x, verbose=0)
    assert np.array_equal(csim, folded)
    # Folding re-rounds the kernels once: the trained (unfolded) model mostly agrees, and the manifest says how much.
    trained = load_trained_model(trained_model_dir / "model.h5").predict(x, verbose=0)
    assert np.mean(trained.argmax(1) == folded.argmax(1)) >= 0.9
    assert 0.9 <= m.metrics["folded_vs_trained_agreement"] <= 1.0
    assert abs(m.metrics["keras_top1"] - m.metrics["keras_top1_before_folding"]) < 0.05


def test_onnx_reference_matches_keras(bundle_dir, trained_model_dir, test_split):
    import onnxruntime as ort

    x = preprocess(test_split.head(32).images)
    sess = ort.InferenceSession(str(bundle_dir / "reference.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = sess.run(None, {"image": x})[0]
    keras_logits = load_trained_model(bundle_dir / "model.h5").predict(x, verbose=0)
    diff = np.abs(onnx_logits - keras_logits)
    # Float reorderings can push a pre-activation across a quantizer's rounding boundary: one activation LSB (2^-5)
    # then moves a few logits slightly. Almost every logit is equal to float precision.
    assert np.median(diff) < 1e-4 and diff.max() < 0.05
    assert np.array_equal(onnx_logits.argmax(1), keras_logits.argmax(1))


def test_keras_predictions_are_stored_in_test_set_order(bundle_dir, trained_model_dir, test_split):
    stored = np.load(bundle_dir / "keras_predictions.npy")
    assert stored.shape == (1000,)
    x = preprocess(test_split.head(100).images)
    expected = load_trained_model(bundle_dir / "model.h5").predict(x, verbose=0).argmax(1)
    assert np.array_equal(stored[:100], expected)


def test_a_failed_gate_keeps_the_previous_bundle(bundle_dir, trained_model_dir, test_split, tmp_path):
    before = (bundle_dir / "manifest.json").read_text()
    overlays = bundle_dir.parent.parent
    # No fixed-point design agrees 100.1 % of the time: the gate must refuse and leave the good bundle alone.
    with pytest.raises(BuildError, match="gate"):
        options = BuildOptions(gate_images=5, min_agreement=1.001, keras_prediction_images=10)
        build_bundle(trained_model_dir, overlays, tmp_path, options, test_split)
    assert (bundle_dir / "manifest.json").read_text() == before
    load_bundle(bundle_dir)


def test_generic_axi_types_are_rewritten_as_ap_types(tmp_path):
    fw = tmp_path / "firmware"
    fw.mkdir()
    (fw / "myproject_axi.h").write_text(
        "typedef ufixed<8,0,TRN,WRAP,0> T_in;\ntypedef fixed<16,6,RND_CONV,SAT,0> T_out;\n"
    )
    assert fix_generated_sources(tmp_path)
    text = (fw / "myproject_axi.h").read_text()
    assert "typedef ap_ufixed<8,0,AP_TRN,AP_WRAP,0> T_in;" in text
    assert "typedef ap_fixed<16,6,AP_RND_CONV,AP_SAT,0> T_out;" in text
    assert fix_generated_sources(tmp_path) == []  # idempotent


def test_model_with_wrong_input_shape_is_refused(tmp_path, test_split):
    from training.keras_compat import keras

    inp = keras.Input((28, 28, 1), name="image")
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(inp)))
    model.save(tmp_path / "model.h5")
    with pytest.raises(BuildError, match="32x32x3"):
        build_bundle(tmp_path, tmp_path / "overlays", tmp_path / "work", test_split=test_split)
    assert not (tmp_path / "overlays").exists()


def test_cli_reports_bad_input_without_a_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "hls_build", "bundle", "--model-dir", str(tmp_path)],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 2
    # TensorFlow's C++ start-up lines may come first; the last line is ours, one line, no traceback.
    assert res.stderr.splitlines()[-1].startswith("error:") and "no trained model" in res.stderr
    assert "Traceback" not in res.stderr
    cmd = [sys.executable, "-m", "hls_build", "bundle", "--model-dir", str(tmp_path), "--board", "vc707"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 2 and "unknown board" in res.stderr


def test_gate_records_per_layer_errors_and_the_first_layer_that_differs(bundle_dir):
    m = load_bundle(bundle_dir).manifest
    layers = {row["layer"]: row for row in m.metrics["firmware_vs_keras_layers"]}
    names = [row["layer"] for row in m.metrics["firmware_vs_keras_layers"]]
    # In firmware order, starting at the exact input; the logits come last.
    assert names[0] == "image" and layers["image"]["max_abs_error"] == 0 and names[-1] == "logits"
    assert {"stem_conv", "gap"} <= set(names) and "stem_bn" not in names  # folded
    # Every ReLU is fused into the layer before it (hls_build.fuse), which is compared with the Keras ReLU.
    assert "stem_relu" not in names and layers["stem_conv"]["keras_layer"] == "stem_relu"
    fused = m.hls["fused_relus"]
    assert fused["stem_conv"] == "stem_relu" and fused["s1b1_add"] == "s1b1_relu2"
    # The fixture runs three layers through the fully serial kernel that hls_build.fuse rewrites: they are exact too.
    from hls_build.fuse import SERIAL_CAST_MARKER

    kernel = bundle_dir / m.hls["project_dir"] / "firmware" / "nnet_utils" / "nnet_dense_resource.h"
    assert SERIAL_CAST_MARKER in kernel.read_text()
    assert m.hls["layer_config"]["stem_conv"]["ReuseFactor"] == 27 * 16
    # Two layers' products are bound (hls_build.bind): the C-simulation ran the bound product classes, exact too.
    params = (bundle_dir / m.hls["project_dir"] / "firmware" / "parameters.h").read_text()
    assert params.count("nnet::product::mult_dsp<x_T, y_T>") == 1 and params.count("mult_fabric<x_T, y_T>") == 1
    assert m.hls["layer_config"]["stem_conv"]["Multiplier"] == "dsp"
    assert layers["s1b1_conv1"]["keras_layer"] == "s1b1_relu1" and layers["s1b1_conv2"]["max_abs_error"] == 0
    # Every layer is exact: no layer differs anywhere on the gate's images.
    assert m.metrics["first_layer_differing_from_keras"] is None
    assert all(row["max_abs_error"] == 0 and row["differing_fraction"] == 0 for row in layers.values())


def test_gate_catches_a_mis_sized_accumulator_and_names_its_layer(bundle_dir, trained_model_dir, test_split, tmp_path):
    """An accumulator with the right fractional bits but a range of +-2 wraps; the gate fails and names the layer."""
    from hls_build.config import HlsSettings, prepare_model
    from hls_build.precision import derive_precisions

    prepared, _ = prepare_model(load_trained_model(trained_model_dir / "model.h5"))
    layer = "s1b1_conv1"
    derived = derive_precisions(prepared).accums[layer]
    narrow = f"ap_fixed<{derived.frac_bits + 2},2>"  # +-2: the sums of real images go well past it
    settings = HlsSettings(layer_config={layer: {"Precision": {"accum": narrow, "result": narrow}}})
    before = (bundle_dir / "manifest.json").read_text()
    with pytest.raises(BuildError, match=f"first layer whose output differs from Keras is '{layer}'"):
        options = BuildOptions(settings=settings, gate_images=100, csim_images=5, keras_prediction_images=10)
        build_bundle(trained_model_dir, bundle_dir.parent.parent, tmp_path, options, test_split)
    assert (bundle_dir / "manifest.json").read_text() == before


# --- the build as named steps -----------------------------------------------------------------------------------


def test_the_build_steps_run_in_order_and_each_input_comes_from_an_earlier_step():
    from hls_build.build import STEP_NAMES, STEPS

    assert STEP_NAMES == ("fold", "derive_types", "convert", "fuse", "firmware_graph", "compile", "gate", "estimate",
                          "keras_reference", "onnx_export", "int8_reference", "manifest")  # fmt: skip
    written: set[str] = set()
    for step in STEPS:
        assert set(step.inputs) <= written, (step.name, set(step.inputs) - written)
        written |= set(step.outputs)


def test_each_step_time_is_in_the_manifest(bundle_dir):
    from hls_build.build import STEP_NAMES

    build = load_bundle(bundle_dir).manifest.build
    # Every step but the manifest's own (timed after the manifest is written: <work>/<model_id>/time_per_step.json).
    assert [s["name"] for s in build["steps"]] == list(STEP_NAMES[:-1]) and build["resumed_from"] is None
    assert all(s["seconds"] > 0 for s in build["steps"])


def test_resuming_at_a_step_gives_the_same_bundle(bundle_dir, bundle_work_dir, trained_model_dir, test_split, tmp_path):
    """From ``firmware_graph`` on: hls4ml's model converted again (checked against the bundle's), then the rest."""
    import json
    import shutil

    before = json.loads((bundle_dir / "manifest.json").read_text())
    overlays, work = tmp_path / "overlays", tmp_path / "work"
    shutil.copytree(bundle_dir, overlays / "pynq-z2" / bundle_dir.name)  # no staging folder: the bundle is copied
    shutil.copytree(bundle_work_dir, work)
    serial = {"stem_conv": 27 * 16, "s1b1_conv1": 2 * 144, "s1b1_conv2": 144 * 16}
    from hls_build.config import HlsSettings

    layer_config = {k: {"ReuseFactor": rf, "Strategy": "Resource"} for k, rf in serial.items()}
    layer_config["stem_conv"]["Multiplier"] = "dsp"  # as conftest.bundle_dir binds them
    layer_config["s1b1_conv1"]["Multiplier"] = "fabric"
    settings = HlsSettings(layer_config=layer_config)
    options = BuildOptions(
        settings=settings, gate_images=300, csim_images=60, min_agreement=0.98, keras_prediction_images=1000
    )
    out = build_bundle(trained_model_dir, overlays, work, options, test_split, from_step="firmware_graph")
    after = json.loads((out / "manifest.json").read_text())
    assert after["build"]["resumed_from"] == "firmware_graph"
    assert [s["name"] for s in after["build"]["steps"]] == [s["name"] for s in before["build"]["steps"]]
    # Made again, so not byte for byte the same: the C-simulation library (g++ writes the sources' absolute paths
    # into it: its bytes and the hash in its name differ) and the ONNX export (tf2onnx's bytes differ from export to
    # export; it computes the same logits). Every other file and figure is the same.
    libs = [m.pop("csim_library") for m in (before, after)]
    assert all(lib.startswith("hls/firmware/libmyproject_csim_") for lib in libs)
    differ = {f for f in {*before["files"], *after["files"]} if before["files"].get(f) != after["files"].get(f)}
    assert differ <= {*libs, "reference.onnx"}, differ
    import onnxruntime as ort

    x = preprocess(test_split.head(16).images)
    cpu = ["CPUExecutionProvider"]
    runs = [ort.InferenceSession(str(d / "reference.onnx"), providers=cpu) for d in (bundle_dir, out)]
    logits = [r.run(None, {"image": x})[0] for r in runs]
    np.testing.assert_allclose(logits[1], logits[0], rtol=0, atol=1e-5)
    for m in (before, after):
        m.pop("build"), m.pop("created_utc"), m.pop("files")
    assert after == before


def test_a_step_without_its_inputs_names_them_and_the_step_that_writes_them(tmp_path):
    with pytest.raises(BuildError, match=r"step 'gate' needs .*prepared_model\.h5, which the 'fold' step writes"):
        build_bundle(tmp_path, tmp_path / "overlays", tmp_path / "work", from_step="gate")
    with pytest.raises(BuildError, match="unknown step 'nope'; the steps are: fold, derive_types"):
        build_bundle(tmp_path, tmp_path / "overlays", tmp_path / "work", from_step="nope")


def test_cli_exit_codes(bundle_dir, bundle_work_dir, trained_model_dir, tmp_path, capsys, monkeypatch):
    """One runner (board.cli.run): 1 a failed gate, 2 bad input, 130 interrupted; one ``error:`` line each."""
    import shutil

    from hls_build.__main__ import main

    overlays, work = tmp_path / "overlays", tmp_path / "work"
    shutil.copytree(bundle_dir, overlays / "pynq-z2" / bundle_dir.name)
    shutil.copytree(bundle_work_dir, work)
    common = ["bundle", "--model-dir", str(trained_model_dir), "--overlays", str(overlays), "--work-dir", str(work)]
    # No design agrees more than 100 % of the time: the resumed gate fails, a check (1), and names itself.
    args = [*common, "--from-step", "gate", "--gate-images", "5", "--csim-images", "5", "--min-agreement", "1.001"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: the firmware agrees with the Keras model") and "below the" in err[-1]
    assert main([*common, "--from-step", "nope"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: unknown step 'nope'")
    (tmp_path / "plan.json").write_text('{"board": "zcu104", "layer_config": {}}')
    assert main([*common, "--plan", str(tmp_path / "plan.json")]) == 2
    assert "the plan is for zcu104, not pynq-z2" in capsys.readouterr().err

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("hls_build.build.build_bundle", interrupted)
    assert main(common) == 130
    assert capsys.readouterr().err.strip() == "interrupted; the previous bundle (if any) is untouched"
