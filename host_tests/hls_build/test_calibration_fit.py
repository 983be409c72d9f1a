"""The calibration set (hls_build/calibration_designs), the fit, and `estimate --hls-project` on any project folder.

Fast: no hls4ml conversion, no compile. Every design's estimate is recomputed from its committed firmware and
compared with the committed fit (hls_build/calibration_fit.json); every reported figure is re-read from its
committed report file.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from hls_build import calibration_fit as cf
from hls_build.hls_project import (
    HlsProjectError,
    UnknownPartError,
    known_parts,
    normalize_parameters,
    one_d_as_two_d,
    part_resources,
    read_project,
)

DESIGNS = cf.load_designs()
WITH_CSYNTH = [d for d in DESIGNS if "csynth" in d.meta["reports"]]
WITH_FIRMWARE = [d for d in WITH_CSYNTH if d.has_firmware]
THROUGHPUT = [d for d in DESIGNS if "throughput" in d.meta["reports"]]


@pytest.fixture(scope="module")
def fit() -> dict:
    return cf.calibrate()


@pytest.fixture(scope="module")
def committed() -> dict:
    data = cf.load_fit()
    assert data is not None, "hls_build/calibration_fit.json is missing: python -m hls_build calibrate --write"
    return data


def test_calibration_set_size():
    assert len(WITH_FIRMWARE) >= 6
    assert any("synth" in d.meta["reports"] for d in DESIGNS), "no post-synthesis pair"


@pytest.mark.parametrize("design", DESIGNS, ids=lambda d: d.name)
def test_design_provenance(design):
    """Every committed file of a design names where it came from (repository, commit, path), or was rebuilt."""
    src = design.meta["source"]
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", src["repo"])
    assert re.fullmatch(r"[0-9a-f]{40}", src["commit"])
    files = {str(p.relative_to(design.folder)) for p in design.folder.rglob("*") if p.is_file()}
    files.discard("design.json")
    copied = set(design.meta["files"])
    rebuilt = files - copied
    assert copied <= files, f"design.json lists files that are not committed: {copied - files}"
    if rebuilt:  # only a 'rebuilt' design may hold files that are not copies, and only its firmware/config
        assert "rebuild" in design.meta or "rebuild_mlperf" in design.meta, rebuilt
        assert all(f.startswith("firmware/") or f.endswith(".tcl") for f in rebuilt), rebuilt
    for rel in design.meta["reports"].values():
        assert rel in copied, f"report {rel} is not a copy of a published file"


@pytest.mark.parametrize("design", WITH_CSYNTH, ids=lambda d: d.name)
def test_reported_figures_match_committed_files(design, committed):
    """The figures in calibration_fit.json are the ones parsed from the committed report files (none typed in)."""
    rep = cf.reported(design)
    csyn = rep["csynth"]
    assert csyn["part"] and csyn["tool"] in ("Vivado HLS", "Vitis HLS")
    for r in ("BRAM_18K", "DSP", "FF", "LUT"):
        assert 0 <= csyn["totals"][r] <= csyn["available"][r]
    assert csyn["totals"]["LUT"] > 0 and csyn["totals"]["FF"] > 0
    text = (design.folder / design.meta["reports"]["csynth"]).read_text()
    total_line = re.search(r"^\|Total\s*\|.*$", text, re.MULTILINE).group(0)
    assert str(csyn["totals"]["LUT"]) in total_line and str(csyn["totals"]["FF"]) in total_line
    if "synth" in rep:
        assert rep["synth"]["design_state"] in ("Synthesized", "Routed")  # after synthesis (or implementation)
        assert 0 < rep["synth"]["LUT"] < csyn["totals"]["LUT"]  # Vivado's LUTs are below the HLS estimate
    entry = [d for d in committed["designs"] if d["name"] == design.name]
    if design.has_firmware:
        assert entry and entry[0]["reported"] == json.loads(json.dumps(rep))
    else:
        assert design.name in committed["reports_only"]


@pytest.mark.parametrize("design", WITH_FIRMWARE, ids=lambda d: d.name)
def test_each_design_estimate_is_reproduced(design, fit, committed):
    """The in-sample and leave-one-out estimate of every design equals the committed one."""
    ours = next(d for d in fit["designs"] if d["name"] == design.name)
    theirs = next(d for d in committed["designs"] if d["name"] == design.name)
    assert ours["estimated"] == theirs["estimated"]
    assert ours["held_out_estimate"] == theirs["held_out_estimate"]
    assert ours["held_out_error_pct"] == theirs["held_out_error_pct"]
    for r in ("LUT", "FF"):
        assert ours["estimated"]["csynth"][r] > 0


def test_fit_summary_is_committed(fit, committed):
    assert fit["coefficients"] == committed["coefficients"]
    assert fit["summary"] == committed["summary"]
    assert fit["constants"] == committed["constants"]
    assert fit["band_pct"] == committed["band_pct"]
    for r in ("LUT", "FF"):
        loo = fit["summary"]["csynth_leave_one_out"][r]
        assert loo["n"] == len(WITH_FIRMWARE)
        assert loo["median_abs_pct"] <= loo["p90_abs_pct"] <= loo["max_abs_pct"]
    ratios = fit["post_synthesis"]["ratios"]
    assert 0.2 < ratios["LUT"] < 1.0  # synthesized LUTs are below the csynth estimate in every published pair


def test_leave_one_out_differs_from_in_sample(fit):
    """The held-out fit is a real refit: at least one design's LUT estimate moves when it is left out."""
    moved = [d for d in fit["designs"] if d["estimated"]["csynth"]["LUT"] != d["held_out_estimate"]["csynth"]["LUT"]]
    assert moved


# --------------------------------------------------------------------------------------------------- the reader
def test_normalize_parameters_resolves_macros_and_members():
    defines = "#define N_INPUT_1_1 53\n#define N_LAYER_2 24\n"
    params = (
        "struct config2 : nnet::dense_config {\n"
        "    static const unsigned n_in = N_INPUT_1_1;\n"
        "    static const unsigned n_out = N_LAYER_2;\n"
        "    static const unsigned n_chan = n_out;\n"
        "    static const unsigned multiplier_limit = DIV_ROUNDUP(n_in * n_out, 64);\n"
        "    typedef model_default_t accum_t;\n"
        "};\n"
    )
    out = normalize_parameters(params, defines)
    assert "n_in = 53;" in out and "n_out = 24;" in out and "n_chan = 24;" in out
    assert "multiplier_limit = 20;" in out  # ceil(53*24/64)
    assert "typedef model_default_t accum_t;" in out


def test_one_d_layers_read_as_two_d_of_height_one():
    top = "    nnet::conv_1d_cl<layer8_t, layer2_t, config2>(layer8_out, layer2_out, w2, b2); // conv1\n"
    params = "struct config2 : nnet::conv1d_config {\n    static const unsigned in_width = 130;\n};\n"
    top2, params2 = one_d_as_two_d(top, params)
    assert "nnet::conv_2d_cl<layer8_t, layer2_t, config2>" in top2
    assert "in_height = 1;" in params2 and "filt_height = 1;" in params2 and "in_width = 130;" in params2


def test_read_project_reads_a_vivado_accelerator_firmware():
    design = next(d for d in DESIGNS if d.name == "pynq_mlp_stream")
    graph, info = read_project(design.folder)
    assert info.part.startswith("xc7z020") and info.clock_mhz == 100.0
    assert [layer.op for layer in graph.layers].count("dense") == 4
    assert graph.axi  # the AXI-stream wrapper of myproject_axi.cpp


def test_known_parts_cover_calibration_and_boards():
    parts = known_parts()
    for d in WITH_FIRMWARE:
        assert part_resources(d.part)["LUT"] > 0
    assert "xc7z020" in parts
    with pytest.raises(UnknownPartError, match="known devices:.*xc7z020"):
        part_resources("xc9z999-foo")


# ------------------------------------------------------------------------------------------------------ the CLI
def _main(argv: list[str]) -> int:
    from hls_build.__main__ import main

    return main(argv)


def test_cli_estimate_hls_project_json(tmp_path, capsys):
    design = next(d for d in DESIGNS if d.name == "lenet5_8bit")
    out = tmp_path / "e.json"
    assert _main(["estimate", "--hls-project", str(design.folder), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["totals"]) == {"BRAM_18K", "DSP", "FF", "LUT", "URAM"}
    assert result["layers"] and result["interval_cycles"] > 0 and result["latency_cycles"] >= result["interval_cycles"]
    assert set(result["band_pct"]) >= {"LUT", "FF"}
    fit_entry = next(d for d in cf.load_fit()["designs"] if d["name"] == "lenet5_8bit")
    assert result["totals"]["LUT"] == fit_entry["estimated"]["csynth"]["LUT"]
    assert result["throughput_band_pct"] > 0 and "calibration_fit.json" in result["throughput_band_source"]
    out = capsys.readouterr().out
    assert "ESTIMATE" in out and "images/s band +-" in out


def test_cli_estimate_other_part(tmp_path):
    design = next(d for d in DESIGNS if d.name == "lenet5_8bit")
    out = tmp_path / "e.json"
    assert (
        _main(["estimate", "--hls-project", str(design.folder), "--part", "xc7z020clg400-1", "--json", str(out)]) == 0
    )
    result = json.loads(out.read_text())
    assert result["part"] == "xc7z020clg400-1" and result["available"]["LUT"] == part_resources("xc7z020")["LUT"]


def test_cli_unknown_part(capsys):
    design = next(d for d in DESIGNS if d.name == "lenet5_8bit")
    assert _main(["estimate", "--hls-project", str(design.folder), "--part", "xc9z999"]) == 2
    err = capsys.readouterr().err
    assert "unknown part 'xc9z999'" in err and "xczu9eg" in err


def test_cli_not_a_project(tmp_path, capsys):
    assert _main(["estimate", "--hls-project", str(tmp_path)]) == 2
    assert "no firmware/" in capsys.readouterr().err
    assert _main(["estimate", "--hls-project", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_cli_missing_header(tmp_path, capsys):
    src = next(d for d in DESIGNS if d.name == "pixel_dense_small").folder
    dst = tmp_path / "prj"
    shutil.copytree(src, dst)
    (dst / "firmware" / "parameters.h").unlink()
    assert _main(["estimate", "--hls-project", str(dst)]) == 2
    assert "parameters.h not found" in capsys.readouterr().err


def test_cli_malformed_firmware(tmp_path, capsys):
    src = next(d for d in DESIGNS if d.name == "pixel_dense_small").folder
    dst = tmp_path / "prj"
    shutil.copytree(src, dst)
    params = dst / "firmware" / "parameters.h"
    params.write_text(re.sub(r"static const unsigned n_in = \w+;", "", params.read_text()))
    assert _main(["estimate", "--hls-project", str(dst)]) == 2
    assert "not readable as hls4ml io_stream" in capsys.readouterr().err


def test_cli_io_parallel_is_refused(tmp_path, capsys):
    fw = tmp_path / "prj" / "firmware"
    fw.mkdir(parents=True)
    (fw / "myproject.cpp").write_text("void myproject(input_t x[N], result_t y[M]) {\n}\n")
    (fw / "parameters.h").write_text("")
    (fw / "defines.h").write_text("")
    assert _main(["estimate", "--hls-project", str(tmp_path / "prj")]) == 2
    assert "io_parallel" in capsys.readouterr().err


def test_cli_calibrate_json(tmp_path, capsys):
    out = tmp_path / "c.json"
    assert _main(["calibrate", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    d0 = data["designs"][0]
    assert {"name", "source", "part", "reported", "estimated", "held_out_estimate"} <= set(d0)
    assert "leave-one-out" in capsys.readouterr().out
    with pytest.raises(HlsProjectError):
        cf.run_calibrate_cli(None, False, rebuild="no_such_design")


def test_committed_fit_file_is_where_the_estimate_reads_it():
    assert Path(cf.FIT_FILE).is_file()


@pytest.mark.parametrize("design", [d for d in WITH_FIRMWARE if "rebuild" not in d.meta], ids=lambda d: d.name)
def test_report_belongs_to_the_firmware(design):
    """Every ``configN`` the csynth report's instances name is a config struct of the committed parameters.h."""
    reports = design.meta["reports"]
    # an AXI wrapper's report names only the wrapper's instances; its inner top's report names the layers
    report = (design.folder / reports.get("csynth_inner", reports["csynth"])).read_text()
    params = (design.folder / "firmware" / "parameters.h").read_text()
    named = set(re.findall(r"_(config\d+)_(?:U0|s)\b", report))
    assert named, "no configN instance in the report"
    # activations' structs carry their kind: relu_config4, hard_tanh_config8, softmax_config7
    structs = {re.search(r"config\d+$", s).group(0) for s in re.findall(r"^struct\s+(\w+)\s*[:{]", params, re.MULTILINE)
               if re.search(r"config\d+$", s)}  # fmt: skip
    assert named <= structs, named - structs


def test_fitted_constants_apply_per_hls_tool(committed):
    consts = committed["constants"]
    assert consts["dsp_min_sum_bits"] in cf.DSP_SUM_BITS_GRID
    assert set(consts["interval"]) == {"vitis", "vivado_hls"}
    groups = {d["group"] for d in committed["designs"]}
    assert len(groups) < len(committed["designs"])  # designs sharing a firmware are one group


@pytest.mark.parametrize("design", THROUGHPUT, ids=lambda d: d.name)
def test_throughput_check_is_reproduced(design, committed):
    """The interval model against the MLPerf Tiny throughput measured on a PYNQ-Z2, as committed."""
    from hls_build.throughput_check import parse_eembc_performance, throughput_check

    text = (design.folder / design.meta["reports"]["throughput"]).read_text()
    measured = parse_eembc_performance(text)
    assert f"Median throughput is {measured:.3f} inf./sec." in text
    ours = throughput_check(design, committed)
    theirs = next(t for t in committed["throughput"] if t["name"] == design.name)
    assert ours == theirs
    assert ours["clock_mhz"] == pytest.approx(1000 / 6.67, abs=0.01)


def test_throughput_designs_present():
    names = {d.name for d in THROUGHPUT}
    assert {"mlperf_tiny_rn07_pynqz2", "mlperf_tiny_rn08_pynqz2"} <= names


def test_board_wrapper_from_a_published_block_design(committed):
    """The PYNQ-Z2 block design around an hls4ml IP: whole placed design minus the IP, both re-read."""
    wrapper = committed["board_wrapper"]
    design = next(d for d in DESIGNS if d.name == wrapper["design"])
    rep = cf.reported(design)
    assert rep["whole_design_placed"]["design_state"] == "Fully Placed"
    for r in ("LUT", "FF", "BRAM_18K"):
        assert wrapper["resources"][r] == rep["whole_design_placed"][r] - rep["synth"][r] > 0
    assert wrapper["resources"]["BRAM_18K"] >= rep["dma_synth"]["BRAM_18K"]  # the DMA's buffers are in it


def test_estimate_states_whole_design_and_fit(tmp_path):
    design = next(d for d in DESIGNS if d.name == "pynq_mlp_stream")
    result = cf.estimate_hls_project(design.folder)
    wrapper = result["board_wrapper"]
    for r in ("LUT", "FF"):
        assert result["whole_design_post_synthesis"][r] == result["post_synthesis"][r] + wrapper[r]
    assert result["fits"] is True  # a small MLP on the PYNQ-Z2, as published
    big = cf.estimate_hls_project(next(d for d in DESIGNS if d.name == "tutorial_pruned_cnn").folder,
                                  part="xc7z020clg400-1")  # fmt: skip
    assert big["fits"] is False  # 5,400 DSPs do not fit a Zynq-7020


def test_readme_tables_are_generated(committed):
    """hls_build/README.md's "How far to trust the estimate" tables are format_markdown() of the committed fit."""
    readme = (Path(cf.__file__).parent / "README.md").read_text()
    m = re.search(
        r"<!-- calibration-tables: generated.*?-->\n(.*?)\n<!-- calibration-tables: end -->", readme, re.DOTALL
    )
    assert m, "README section missing"
    assert m.group(1) == cf.format_markdown(committed)


def test_hls_tool_read_from_the_projects_own_report(tmp_path):
    from hls_build.hls_project import inspect_project

    src = next(d for d in DESIGNS if d.name == "pynq_mlp_stream")
    dst = tmp_path / "prj"
    shutil.copytree(src.folder / "firmware", dst / "firmware")
    assert inspect_project(dst).hls_tool == "vitis"  # no report, no backend: the current tool
    report = dst / "myproject_prj" / "solution1" / "syn" / "report"
    report.mkdir(parents=True)
    shutil.copyfile(src.folder / "reports" / "myproject_csynth.rpt", report / "myproject_csynth.rpt")
    assert inspect_project(dst).hls_tool == "vivado_hls"  # its report says Vivado HLS 2019.2
    assert inspect_project(dst, hls_tool="vitis").hls_tool == "vitis"  # an explicit choice wins


def test_typedef_chains_and_macros_in_template_arguments(tmp_path):
    """hls4ml >= 0.8 firmware: model_default_t inside array typedefs, sizes as defines.h macros in the top's calls."""
    from hls_build.hls_project import resolve_typedefs

    defines = (
        "#define N_INPUT_1_1 4\n#define N_INPUT_2_1 3\ntypedef ap_fixed<16,10> model_default_t;\n"
        "typedef nnet::array<model_default_t, 3*1> input_t;\ntypedef model_default_t conv2d_weight_t;\n"
    )
    out = resolve_typedefs(defines)
    assert "typedef nnet::array<ap_fixed<16,10>, 3*1> input_t;" in out
    assert "typedef ap_fixed<16,10> conv2d_weight_t;" in out
    assert "typedef ap_fixed<16,10> model_default_t;" in out


def test_a_wrapper_next_to_the_top_is_not_the_top(tmp_path):
    from hls_build.hls_project import inspect_project

    src = next(d for d in DESIGNS if d.name == "pixel_dense_small")
    dst = tmp_path / "prj"
    shutil.copytree(src.folder / "firmware", dst / "firmware")
    (dst / "firmware" / "algo.cpp").write_text("void algo(int a[4], int b[4]) {\n    myproject(a, b);\n}\n")
    assert inspect_project(dst).name == "myproject"


def test_unmodelled_layers_are_named(tmp_path):
    src = next(d for d in DESIGNS if d.name == "pixel_cnn_large")
    dst = tmp_path / "prj"
    shutil.copytree(src.folder, dst)
    top = dst / "firmware" / "myproject.cpp"
    top.write_text(top.read_text().replace("nnet::sigmoid<", "nnet::mystery_op<"))
    result = cf.estimate_hls_project(dst)
    assert result["unmodelled_layers"] == ["output_sigmoid (nnet::mystery_op)"]


# ------------------------------------------------------------------------------------------------ one estimator
@pytest.mark.parametrize("design", WITH_FIRMWARE, ids=lambda d: d.name)
def test_every_estimate_is_the_calibrated_one(design, committed):
    """estimate_design with its default coefficients (what the bundle build, `estimate`, `plan` and the planner use)
    gives each design's committed in-sample csynth figures and interval: one estimator, calibration_fit.json."""
    from hls_build.estimate import estimate_design, load_coefficients

    entry = next(d for d in committed["designs"] if d["name"] == design.name)
    e = estimate_design(cf.design_graph(design), None, check=False)
    for r in ("LUT", "FF", "BRAM_18K", "DSP"):
        assert e.csynth_totals[r] == entry["estimated"]["csynth"][r], r
    assert e.interval_cycles == entry["estimated"]["interval_cycles"]
    # totals are the post-synthesis prediction: the csynth level times the published ratio
    ratios = committed["post_synthesis"]["ratios"]
    assert e.totals["LUT"] == pytest.approx(e.csynth_totals["LUT"] * ratios["LUT"], abs=1.0)
    assert load_coefficients(design.meta.get("hls_tool")).lut_factors == committed["coefficients"]["LUT"]
    assert e.band_pct == committed["post_synthesis_band_pct"]


def test_no_second_hand_kept_calibration():
    """The one-design calibration.json is retired: every fitted figure comes from calibration_fit.json."""
    assert not (Path(cf.__file__).parent / "calibration.json").exists()


def test_fit_groups_tie_the_categories_as_documented(committed):
    """One factor per group of FIT_GROUPS: categories of one group share their fitted factor."""
    for res in ("LUT", "FF"):
        coef = committed["coefficients"][res]
        assert set(coef) == set(cf.PART_KEYS)
        for members in cf.FIT_GROUPS.values():
            assert len({coef[k] for k in members}) == 1, (res, members)
