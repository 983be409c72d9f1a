"""Packaging of the board side: the ``board`` extra, the console script, PYNQ's notebook entry point, no TensorFlow."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest
from board_toys import ROOT

NOTEBOOKS = {"01_quick_start.ipynb", "02_fpga_vs_cpu.ipynb", "03_power_zcu104.ipynb"}


@pytest.fixture(scope="module")
def pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_board_extra_installs_on_both_boards(pyproject):
    from packaging.requirements import Requirement

    reqs = {Requirement(r).name: Requirement(r) for r in pyproject["project"]["optional-dependencies"]["board"]}
    assert set(reqs) == {"pynq", "numpy", "matplotlib", "onnxruntime"}
    assert reqs["pynq"].specifier.contains("3.0.1") and reqs["pynq"].specifier.contains("4.0.0")
    assert not reqs["numpy"].specifier.contains("2.0.0")
    ort = reqs["onnxruntime"].marker
    # No onnxruntime wheel for the PYNQ-Z2's armv7l: the extra must not ask for it there.
    assert not ort.evaluate({"platform_machine": "armv7l"})
    assert ort.evaluate({"platform_machine": "aarch64"}) and ort.evaluate({"platform_machine": "x86_64"})
    assert not {"tensorflow", "hls4ml", "tf-keras", "qkeras"} & set(reqs)


def test_console_script_and_notebook_entry_point(pyproject):
    project = pyproject["project"]
    module, func = project["scripts"]["zynq-resnet-board"].split(":")
    assert callable(getattr(importlib.import_module(module), func))
    target = project["entry-points"]["pynq.notebooks"]["zynq_resnet"]
    assert target == "board.notebooks"  # a package: pynq delivers the files under its __path__
    setuptools = pyproject["tool"]["setuptools"]
    assert "board.notebooks" in setuptools["packages"]
    assert setuptools["package-data"]["board.notebooks"] == ["*.ipynb"]


def test_pynq_delivers_the_notebooks(tmp_path):
    """What ``pynq get-notebooks zynq_resnet`` does with the entry point's module, with pynqutils' own code."""
    pytest.importorskip("pynq")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources' deprecation warning
        from pynqutils.setup_utils import ExtensionsManager, deliver_notebooks

        src = ExtensionsManager.extension_path("board.notebooks")
        deliver_notebooks(None, src, str(tmp_path), "zynq_resnet", folder=True, overlays_res_lookup=False)
    delivered = {p.name for p in (tmp_path / "zynq_resnet").iterdir()}
    assert NOTEBOOKS <= delivered and "__init__.py" not in delivered


def test_pinned_notebook_test_deps():
    pins = {}
    for line in (ROOT / "requirements" / "board.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower()] = version
    for name in ("nbclient", "nbformat", "ipykernel", "pynq", "numpy", "matplotlib", "onnxruntime"):
        assert pins.get(name), f"{name} is not pinned in requirements/board.txt"
    assert int(pins["ipykernel"].split(".")[0]) < 7  # ipykernel 7 needs Python >= 3.11; PYNQ images run 3.10


def test_cli_help_without_tensorflow():
    code = (
        "import sys\n"
        "import board.__main__, board.bench, board.registry, board.power, board.plots, board.driver\n"
        "import board.onnx_reference\n"
        "import board.progress, board.notebooks\n"
        "heavy = {'tensorflow', 'hls4ml', 'keras', 'tf_keras', 'qkeras', 'training', 'hls_build', 'tf2onnx', 'onnx'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    helped = subprocess.run(
        [sys.executable, "-m", "board", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert helped.returncode == 0
    for command in ("bench", "list", "validate", "demo", "remote-bench"):
        assert command in helped.stdout
