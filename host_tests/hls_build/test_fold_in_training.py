"""A model trained with BatchNormalization folded into its quantized convolutions deploys exactly as trained.

``--fold-bn`` trains QKeras ``QConv2DBatchnorm`` layers; hls_build turns each into a ``QConv2D`` holding the
quantized folded kernel and bias the trained layer computes with. So the folded Keras model equals the trained one
(no accuracy lost to folding after training), and the firmware equals the folded Keras model (the gate).
"""

from __future__ import annotations

import numpy as np
import pytest

from training.keras_compat import keras  # noqa: F401  (first)

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def folded_run(tmp_path_factory, cifar10_dir, test_split):
    from board.cifar10 import load_split
    from training.train import TrainConfig, train

    out = tmp_path_factory.mktemp("foldbn")
    # A few steps (4 of 64 images), the statistics frozen after the second: both training regimes of the layer run,
    # and the moving statistics move away from their initial values.
    cfg = TrainConfig(model="resnet8", quant="<8,3>", epochs=1, batch_size=64, train_limit=256, test_limit=100,
                      fold_bn=True, bn_freeze_epoch=0.5)  # fmt: skip
    train(cfg, out, load_split("train", cifar10_dir), test_split)
    return out


def test_training_with_folded_batchnorm_trains_the_folded_layers(folded_run):
    from training.train import load_trained_model

    model = load_trained_model(folded_run / "model.h5")
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "QConv2DBatchnorm" in kinds and "BatchNormalization" not in kinds
    stem = model.get_layer("stem_conv")
    # Four training steps counted from -1; the statistics moved off their initial 0 and 1.
    assert int(stem._iteration.numpy()) == 3 and stem.ema_freeze_delay == 2
    assert np.any(stem.batchnorm.moving_mean.numpy() != 0)


def test_folding_after_training_changes_nothing_and_the_firmware_equals_keras(folded_run, test_split, tmp_path):
    """hls4ml conversion and the fast engine (proven = C-simulation by the test bundle), without compiling."""
    from board.fast_engine import FastEngine
    from board.fixed_point import FixedPoint
    from hls_build.config import HlsSettings, convert, output_fixed_point, prepare_model, write_project
    from hls_build.csim import fix_generated_sources
    from hls_build.firmware_graph import write_firmware_graph
    from training.data import INPUT_FIXED_POINT, preprocess
    from training.train import load_trained_model

    trained = load_trained_model(folded_run / "model.h5")
    deployed, folds = prepare_model(trained)
    assert len(folds) == 9 and all(f.in_training for f in folds)
    # The trained layers' own quantizers (training.quant.QuantSpec.folded_kernel_quantizer and _bias_quantizer).
    types = {f.layer: (f.kernel_type, f.bias_type) for f in folds}
    assert types["stem_conv"] == ("ap_fixed<8,5>", "ap_fixed<17,6>")
    assert {types[n] for n in types if n != "stem_conv"} == {("ap_fixed<8,1>", "ap_fixed<18,6>")}
    assert {type(layer).__name__ for layer in deployed.layers}.isdisjoint({"QConv2DBatchnorm", "BatchNormalization"})
    # Folding after training loses nothing: the deployed Keras model computes the trained model's logits exactly.
    x = preprocess(test_split.head(200).images)
    y_keras = deployed.predict(x, verbose=0)
    assert np.array_equal(trained.predict(x, verbose=0), y_keras)
    # The firmware computes the deployed model bit for bit.
    hls_model = convert(deployed, HlsSettings(), tmp_path / "hls", project_name="myproject")
    write_project(hls_model)
    fix_generated_sources(tmp_path / "hls", "myproject")
    graph = write_firmware_graph(hls_model, tmp_path / "firmware")
    engine = FastEngine.from_files(graph["graph"], graph["weights"])
    raw = FixedPoint.parse(INPUT_FIXED_POINT).encode(x.reshape(len(x), -1))
    y_fw = FixedPoint.parse(output_fixed_point(deployed)).decode(engine.predict_raw(raw))
    assert np.array_equal(y_fw, y_keras.astype(np.float64))


@pytest.mark.slow
def test_bundle_of_a_folded_model_passes_the_gate_with_the_c_simulation(folded_run, test_split, tmp_path):
    from board.bundle import load_bundle
    from hls_build.build import BuildOptions, build_bundle

    options = BuildOptions(gate_images=200, csim_images=20, min_agreement=1.0, keras_prediction_images=200)
    m = load_bundle(build_bundle(folded_run, tmp_path / "overlays", tmp_path / "work", options, test_split)).manifest
    assert len(m.hls["batchnorm_folds"]) == 9 and all(f["in_training"] for f in m.hls["batchnorm_folds"])
    assert m.metrics["folded_vs_trained_agreement"] == 1.0
    assert m.metrics["keras_top1"] == m.metrics["keras_top1_before_folding"]
    assert m.metrics["csim_vs_fast_engine_identical"] == 20 and m.metrics["csim_vs_keras_agreement"] == 1.0
    assert m.metrics["firmware_vs_keras_agreement"] == 1.0 and m.metrics["firmware_vs_keras_max_abs_logit_diff"] == 0
    assert m.metrics["first_layer_differing_from_keras"] is None
