"""Multiplier binding (hls_build.bind) and the planner that chooses it over the whole budget (hls_build.planner).

That a bound firmware still equals the Keras model bit for bit is checked by the session's test bundle
(``conftest.bundle_dir`` binds two of its layers; its gate runs the C-simulation); here the bound product is
compared with hls4ml's own product over every pair of 8-bit operands, compiled with g++.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from training.keras_compat import keras  # noqa: F401  (first)

pytestmark = pytest.mark.host

ROOT = Path(__file__).resolve().parents[2]
BINDINGS = {"stem_conv": "dsp", "s1b1_conv1": "fabric", "logits": "dsp"}


@pytest.fixture(scope="module")
def bound(tmp_path_factory):
    """An untrained ResNet-8 <8,3> converted and written with three layers bound; its design graph."""
    from hls_build.config import HlsSettings
    from hls_build.estimate import convert_keras_model, graph_from_hls_model
    from training.models import create_model

    work = tmp_path_factory.mktemp("bound")
    settings = HlsSettings(layer_config={name: {"Multiplier": impl} for name, impl in BINDINGS.items()})
    hls_model = convert_keras_model(create_model("resnet8", quant="<8,3>"), settings, work)
    graph = graph_from_hls_model(hls_model, write=False)
    return Path(hls_model.config.get_output_dir()), graph


def _struct_of(params: str, layer: str) -> str:
    start = params.index(f"// {layer}\n")
    nxt = re.search(r"^// \w+\s*$", params[start + 1 :], re.MULTILINE)
    return params[start : start + 1 + nxt.start()] if nxt else params[start:]


def test_the_pragmas_land_in_the_product_the_bound_layers_call(bound):
    from hls_build.bind import BIND_MARKER, pragmas

    prj, _ = bound
    mult_h = (prj / "firmware" / "nnet_utils" / "nnet_mult.h").read_text()
    assert mult_h.count(BIND_MARKER) == 1
    for impl, cls in (("dsp", "mult_dsp"), ("fabric", "mult_fabric")):
        body = mult_h[mult_h.index(f"class {cls} ") :]
        body = body[: body.index("};")]
        vitis, vivado = pragmas(impl)
        # declared, bound (Vitis HLS under __VITIS_HLS__, Vivado HLS otherwise), then assigned the product
        order = [body.index(s) for s in ("decltype(a * w) p;", "#ifdef __VITIS_HLS__", vitis, "#else", vivado,
                                         "#endif", "p = a * w;")]  # fmt: skip
        assert order == sorted(order)
    assert pragmas("dsp") == (
        "#pragma HLS BIND_OP variable=p op=mul impl=dsp",
        "#pragma HLS RESOURCE variable=p core=DSP48",
    )
    assert pragmas("fabric")[1] == "#pragma HLS RESOURCE variable=p core=Mul_LUT"
    params = (prj / "firmware" / "parameters.h").read_text()
    for layer, impl in BINDINGS.items():
        assert f"using product = nnet::product::mult_{impl}<x_T, y_T>;" in _struct_of(params, layer)
    assert "using product = nnet::product::mult<x_T, y_T>;" in _struct_of(params, "s1b1_conv2")  # left to HLS


def test_the_estimate_reads_the_binding_back(bound):
    _, graph = bound
    for layer, impl in BINDINGS.items():
        assert graph.layer(layer).detail["multiplier"] == impl
    assert graph.layer("s1b1_conv2").detail["multiplier"] is None


def test_the_bound_product_equals_hls4mls_product_for_every_8_bit_pair(bound, tmp_path):
    """mult_dsp and mult_fabric compute what hls4ml's mult computes: compiled, all 65,536 operand pairs."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found")
    prj, _ = bound
    fw = prj / "firmware"
    src = tmp_path / "t.cpp"
    src.write_text(
        '#include "ap_fixed.h"\n#include "nnet_utils/nnet_mult.h"\n#include <cstdio>\n'
        "typedef ap_ufixed<8, 3, AP_RND_CONV, AP_SAT> x_t;\ntypedef ap_fixed<8, 2> w_t;\n"
        "int main() {\n  long differ = 0, n = 0;\n"
        "  for (int i = 0; i < 256; i++) for (int j = 0; j < 256; j++) {\n"
        "    x_t x; w_t w; x.range() = i; w.range() = j;\n"
        "    auto a = nnet::product::mult<x_t, w_t>::product(x, w);\n"
        "    auto b = nnet::product::mult_dsp<x_t, w_t>::product(x, w);\n"
        "    auto c = nnet::product::mult_fabric<x_t, w_t>::product(x, w);\n"
        "    differ += (a != b) || (a != c) || (a.range() != b.range()); n++;\n  }\n"
        '  std::printf("%ld %ld\\n", n, differ);\n  return differ != 0;\n}\n'
    )
    exe = tmp_path / "t"
    cmd = [gxx, "-std=c++14", "-O1", "-w", f"-I{fw}", f"-I{fw / 'ap_types'}", str(src), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["65536", "0"] and out.returncode == 0


def test_bad_bindings_are_refused(bound, tmp_path):
    from board.errors import ProjectError
    from hls_build.bind import BindError, bind_multipliers
    from hls_build.config import HlsSettings, build_hls_config, prepare_model
    from training.models import create_model

    prj, _ = bound
    with pytest.raises(BindError, match="not one of dsp, fabric"):
        bind_multipliers(prj, {"stem_conv": "uram"})
    with pytest.raises(BindError, match="no config"):
        bind_multipliers(prj, {"no_such_layer": "dsp"})
    assert issubclass(BindError, ProjectError) and BindError("x").exit_code == 2
    # the key is hls_build's, not hls4ml's: it never reaches hls4ml's configuration
    model, _ = prepare_model(create_model("resnet8", quant="<8,3>"))
    cfg = build_hls_config(model, HlsSettings(layer_config={"stem_conv": {"Multiplier": "dsp"}}))
    assert "Multiplier" not in cfg["LayerName"]["stem_conv"]


# --------------------------------------------------------------------------------------------------- the planner
def test_a_layer_moved_to_dsp_lowers_modeled_lut_and_raises_dsp(bound):
    from hls_build.estimate import estimate_design

    _, graph = bound
    cfg = {"s2b1_conv2": {"ReuseFactor": 72, "Strategy": "Resource"}}
    fabric = estimate_design(graph, "pynq-z2", layer_config={k: {**v, "Multiplier": "fabric"} for k, v in cfg.items()},
                             check=False)  # fmt: skip
    dsp = estimate_design(graph, "pynq-z2", layer_config={k: {**v, "Multiplier": "dsp"} for k, v in cfg.items()},
                          check=False)  # fmt: skip
    n_in, n_out = graph.layer("s2b1_conv2").mult_size
    lanes = n_in * n_out // 72
    # csynth level (before the post-synthesis ratios): one DSP48 per 8x8 product, a LUT multiplier's worth saved
    assert dsp.csynth_totals["DSP"] - fabric.csynth_totals["DSP"] == lanes
    assert dsp.csynth_totals["LUT"] < fabric.csynth_totals["LUT"] - 50 * lanes
    assert dsp.totals["LUT"] < fabric.totals["LUT"] and dsp.totals["DSP"] > fabric.totals["DSP"]
    assert dsp.interval_cycles == fabric.interval_cycles  # the binding costs no cycles
    assert dsp.layer_config["s2b1_conv2"]["Multiplier"] == "dsp"


def test_the_plan_uses_the_dsps_and_names_what_binds(bound):
    from hls_build.boards import RESOURCE_NAMES
    from hls_build.calibration_fit import load_fit
    from hls_build.planner import plan_design

    _, graph = bound
    plan = plan_design(graph, "pynq-z2")  # the calibration's band per resource
    fit = load_fit()
    assert plan.margins.band_pct == {r: float(v) for r, v in fit["post_synthesis_band_pct"].items()}
    assert plan.margins.reserved["LUT"] == fit["board_wrapper"]["resources"]["LUT"]
    assert plan.fits and all(u <= 1.0 for u in plan.cap_use.values())
    assert plan.binding in RESOURCE_NAMES and plan.binding in plan.limit
    hls_default = plan_design(graph, "pynq-z2", bind_multipliers=False)  # only the firmware's own bindings
    assert plan.estimate.totals["DSP"] > hls_default.estimate.totals["DSP"] + 20
    assert plan.images_per_s > hls_default.images_per_s  # the DSPs buy throughput where LUTs bind
    d = plan.to_dict()
    assert d["binding_resource"] == plan.binding and d["multipliers"]["DSP48"] > 0 and d["not_modeled"]


def test_a_plan_that_cannot_fit_is_a_clear_error_exit_2(tmp_path, capsys):
    from hls_build.__main__ import main

    out = tmp_path / "plan.json"
    (tmp_path / "w").mkdir()
    argv = ["plan", "--model", "resnet8", "--board", "pynq-z2", "--margin", "0.97", "--json", str(out)]
    rc = main([*argv, "--work-dir", str(tmp_path / "w")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "error: no setting fits pynq-z2 within the caps" in err and "binds" in err
    saved = json.loads(out.read_text())  # the plan is kept, with what is over
    assert saved["fits"] is False and saved["binding_resource"] in ("BRAM_18K", "DSP", "FF", "LUT")
