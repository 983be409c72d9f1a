"""ReLU fusion and the in-loop result conversion of the fully serial kernel (hls_build.fuse).

That the fused firmware computes the Keras model's values bit for bit is checked by the bundle tests
(``test_build.py``): the test bundle fuses every ReLU and runs three layers through the rewritten kernel.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from training.keras_compat import keras  # noqa: F401  (first)

pytestmark = pytest.mark.host


def _hls4ml_kernel() -> Path:
    import hls4ml

    return Path(hls4ml.__file__).parent / "templates" / "vivado" / "nnet_utils" / "nnet_dense_resource.h"


def _project_with_kernel(tmp_path: Path) -> Path:
    utils = tmp_path / "prj" / "firmware" / "nnet_utils"
    utils.mkdir(parents=True)
    shutil.copy(_hls4ml_kernel(), utils / "nnet_dense_resource.h")
    return tmp_path / "prj"


def _function(text: str, name: str) -> str:
    start = text.index(f"void {name}(")
    end = text.find("template <", start)
    return text[start : end if end > 0 else len(text)]


def test_only_the_fully_serial_kernel_is_rewritten_and_only_once(tmp_path):
    from hls_build.fuse import SERIAL_CAST_MARKER, serialize_result_casts

    prj = _project_with_kernel(tmp_path)
    header = prj / "firmware" / "nnet_utils" / "nnet_dense_resource.h"
    before = header.read_text()
    assert serialize_result_casts(prj) is True
    after = header.read_text()
    assert "#include <type_traits>" in after
    rem0 = _function(after, "dense_resource_rf_gt_nin_rem0")
    # Each lane converts its sum when its last input is in; the parallel loop is left for plain copies only.
    assert SERIAL_CAST_MARKER in rem0 and "in_index == nin - 1" in rem0
    assert "if (std::is_same<typename CONFIG_T::accum_t, res_T>::value) {" in rem0
    for other in ("dense_resource_rf_leq_nin", "dense_resource_rf_gt_nin"):
        assert _function(after, other) == _function(before, other)
    assert serialize_result_casts(prj) is False and header.read_text() == after


def test_a_kernel_of_another_form_is_refused_untouched(tmp_path):
    from hls_build.fuse import serialize_result_casts

    prj = _project_with_kernel(tmp_path)
    header = prj / "firmware" / "nnet_utils" / "nnet_dense_resource.h"
    changed = header.read_text().replace("acc[out_index] +=", "acc[out_index] = acc[out_index] +")
    header.write_text(changed)
    with pytest.raises(ValueError, match="not in the form hls4ml 1.3.0 writes"):
        serialize_result_casts(prj)
    assert header.read_text() == changed


def test_a_hand_set_result_type_is_not_fused(tmp_path):
    """A layer_config Precision override of a result wins: that layer keeps its ReLU."""
    from hls_build.config import HlsSettings, convert, prepare_model
    from hls_build.fuse import keras_outputs
    from training.models import create_model

    model, _ = prepare_model(create_model("resnet8", quant="<8,3>"))
    settings = HlsSettings(layer_config={"s1b1_conv1": {"Precision": {"result": "ap_fixed<24,12>"}}})
    hls_model = convert(model, settings, tmp_path / "hls")
    fused = keras_outputs(hls_model)
    assert "s1b1_conv1" not in fused and fused["stem_conv"] == "stem_relu"
    assert "s1b1_relu1" in {layer.name for layer in hls_model.get_layers()}
    plain = convert(model, HlsSettings(fuse_relu=False), tmp_path / "hls2")
    assert keras_outputs(plain) == {} and "stem_relu" in {layer.name for layer in plain.get_layers()}


def test_the_in_loop_conversion_is_estimated_cheaper_than_all_outputs_at_once(tmp_path):
    """The same fully serial layer, with and without the rewritten kernel: fewer LUTs, n_out result registers."""
    from hls_build.config import HlsSettings
    from hls_build.estimate import convert_keras_model, estimate_design, graph_from_hls_model
    from training.models import create_model

    hls_model = convert_keras_model(create_model("resnet8", quant="<8,3>"), HlsSettings(), tmp_path)
    graph = graph_from_hls_model(hls_model, write=False)
    conv = graph.layer("s3b1_conv1")
    assert conv.detail["serial_result_cast"] is True and conv.types["out"].saturating
    n_in, n_out = conv.mult_size
    cfg = {"s3b1_conv1": {"ReuseFactor": n_in * n_out, "Strategy": "Resource"}}

    def row():
        return next(
            r for r in estimate_design(graph, "pynq-z2", layer_config=cfg, check=False).rows if r.name == conv.name
        )

    in_loop = row()
    conv.detail["serial_result_cast"] = False  # as hls4ml writes the kernel
    at_once = row()
    assert in_loop.csynth["LUT"] < at_once.csynth["LUT"] - 10 * n_out  # csynth level: a converter per output saved
    assert in_loop.resources["LUT"] < at_once.resources["LUT"]
    assert in_loop.resources["FF"] > at_once.resources["FF"]  # the results wait in registers
    assert in_loop.cycles == at_once.cycles  # converted inside the reuse loop: no extra cycles


def test_resnet20_without_skips_fits_pynq_z2_by_the_estimate(tmp_path):
    """The ResNet20 <8,3> that SkipRemover trains (no skips left) fits the PYNQ-Z2 with a 10 % margin."""
    from hls_build.config import HlsSettings
    from hls_build.estimate import convert_keras_model, graph_from_hls_model
    from hls_build.planner import plan_design
    from training.models import create_model

    model = create_model("resnet20", quant="<8,3>", skips="none")
    graph = graph_from_hls_model(convert_keras_model(model, HlsSettings(), tmp_path), write=False)
    plan = plan_design(graph, "pynq-z2", margin=0.1)
    assert plan.fits and plan.estimate.fits(0.1)
    assert plan.images_per_s > 30
