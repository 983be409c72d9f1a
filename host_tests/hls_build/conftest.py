"""A small trained model and its real overlay bundle, built once per session.

The bundle is left in ``--test-overlays`` so the board tests (other environment, run after these) can drive it
through pynq's DMA and compare with the C-simulation called directly.
"""

from __future__ import annotations

import pytest

from training.keras_compat import keras  # noqa: F401  (first)


@pytest.fixture(scope="session")
def test_split(cifar10_dir):
    from board.cifar10 import load_split

    return load_split("test", cifar10_dir)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory, cifar10_dir, test_split):
    from board.cifar10 import load_split
    from training.train import TrainConfig, train

    out = tmp_path_factory.mktemp("model")
    # Two short epochs: weights far from random and logits far from tied, so the C-sim vs Keras agreement is a real
    # (and stable) test of the fixed point.
    cfg = TrainConfig(model="resnet8", quant="<8,3>", epochs=2, train_limit=10000, test_limit=1000, lr_peak=0.05)
    train(cfg, out, load_split("train", cifar10_dir), test_split)
    return out


@pytest.fixture(scope="session")
def bundle_work_dir(tmp_path_factory):
    """The work folder of the session's bundle build (its steps' state: ``<work>/<model_id>/steps``)."""
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="session")
def bundle_dir(trained_model_dir, test_overlays, bundle_work_dir, test_split):
    from hls_build.build import BuildOptions, build_bundle
    from hls_build.config import HlsSettings

    # The acceptance bar for a 1-epoch model: >= 98 % on >= 50 images (the C-simulation checks 60 of them).
    # Three layers take the fully serial kernel, whose result conversion hls_build.fuse rewrites, so the
    # C-simulation checks that too: a fused ReLU with one lane (stem, RF = n_in * n_out) and with 8 lanes
    # (s1b1_conv1), and a result of the accumulator's own type (s1b1_conv2, before the Add).
    serial = {"stem_conv": 27 * 16, "s1b1_conv1": 2 * 144, "s1b1_conv2": 144 * 16}
    layer_config = {k: {"ReuseFactor": rf, "Strategy": "Resource"} for k, rf in serial.items()}
    # Two layers' products bound (hls_build.bind), one to DSP48 and one to LUT fabric: the gate's C-simulation
    # runs the bound product classes too.
    layer_config["stem_conv"]["Multiplier"] = "dsp"
    layer_config["s1b1_conv1"]["Multiplier"] = "fabric"
    settings = HlsSettings(layer_config=layer_config)
    options = BuildOptions(
        settings=settings, gate_images=300, csim_images=60, min_agreement=0.98, keras_prediction_images=1000
    )
    return build_bundle(trained_model_dir, test_overlays, bundle_work_dir, options, test_split)
