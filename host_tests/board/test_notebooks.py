"""The board notebooks: valid nbformat 4, what ``_generate.py`` writes, and executed headless on the emulated overlay.

Each notebook runs in a Jupyter kernel of this (board) environment through nbclient, with a few images, against
the real emulated bundle the host tests leave in ``build/test-overlays`` (or the toy bundle when there is none).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from board_toys import ROOT

from board.bundle import MANIFEST, read_manifest

NB_DIR = ROOT / "board" / "notebooks"
NOTEBOOKS = ("01_quick_start.ipynb", "02_fpga_vs_cpu.ipynb", "03_power_zcu104.ipynb")


def test_committed_notebooks_are_what_the_generator_writes(tmp_path):
    from board.notebooks import NOTEBOOKS as LISTED
    from board.notebooks._generate import main

    assert main(tmp_path) == 0
    assert tuple(sorted(p.name for p in tmp_path.glob("*.ipynb"))) == NOTEBOOKS == LISTED
    for name in NOTEBOOKS:
        assert (NB_DIR / name).read_text() == (tmp_path / name).read_text(), (
            f"regenerate {name}: python -m board.notebooks._generate"
        )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_valid_nbformat4_without_outputs(name):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NB_DIR / name, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.fixture(scope="module")
def overlay_root(request, tmp_path_factory, toy_so):
    """The folder of the real emulated test bundle, or of a toy bundle (not under ``make test``: it needs the real)."""
    try:
        root = Path(request.config.getoption("--test-overlays"))
    except ValueError:
        root = ROOT / "build" / "test-overlays"
    for path in sorted(root.glob(f"*/*/{MANIFEST}")):
        if read_manifest(path.parent).emulated:
            return root
    if os.environ.get("REQUIRE_TEST_BUNDLE"):
        pytest.fail(f"no emulated bundle under {root} for the notebooks (REQUIRE_TEST_BUNDLE is set)")
    import shutil

    from board_onnx import linear_image_model
    from board_toys import toy_weights

    from board.bundle import Manifest, TensorSpec, write_manifest

    toy_root = tmp_path_factory.mktemp("nb_overlays")
    folder = toy_root / "pynq-z2" / "toy"
    (folder / "csim").mkdir(parents=True)
    shutil.copy(toy_so, folder / "csim" / "libtoy.so")
    (folder / "reference.onnx").write_bytes(linear_image_model(*toy_weights()))
    write_manifest(
        folder,
        Manifest(
            model_id="toy",
            board="pynq-z2",
            input=TensorSpec("image", [32, 32, 3], "ap_ufixed<8,0>", "uint8"),
            output=TensorSpec("logits", [10], "ap_fixed<16,6>", "int16"),
            preprocessing={"input_scale": 0.00390625},
            emulated=True,
            csim_library="csim/libtoy.so",
            csim_entry="toy_float",
            onnx_reference="reference.onnx",
        ),
    )
    return toy_root


@pytest.fixture
def kernel_env(overlay_root, cifar10_dir, tmp_path, monkeypatch):
    """A kernelspec running this interpreter, and the notebooks' parameters in the environment it inherits."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    spec = tmp_path / "jupyter" / "kernels" / "zynq-board-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "board env (test)",
                "language": "python",
            }
        )
    )
    env = {
        "JUPYTER_PATH": str(tmp_path / "jupyter"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONPATH": str(ROOT),
        "MPLBACKEND": "Agg",
        "CIFAR10_DIR": str(cifar10_dir),
        "ZYNQ_RESNET_OVERLAYS": str(overlay_root),
        "ZYNQ_RESNET_BOARD": "host",
        "ZYNQ_RESNET_NB_IMAGES": "8",
        "ZYNQ_RESNET_NB_SWEEP": "1,4",
        "ZYNQ_RESNET_NB_IDLE_S": "0.1",
        "ZYNQ_RESNET_NB_OUT": str(tmp_path / "reports"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("ZYNQ_RESNET_BUNDLE", raising=False)
    return tmp_path


def _run(name: str, workdir: Path) -> str:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NB_DIR / name, as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name="zynq-board-test", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                texts.append(out.text)
            elif out.output_type in ("display_data", "execute_result"):
                texts.append("[" + ",".join(sorted(out.data)) + "]")
                texts.append(out.data.get("text/markdown", ""))
    return "\n".join(texts)


def _expected_engine(overlay_root: Path) -> str:
    """The engine the notebooks' default ``Accelerator`` picks for the bundle they open (as the CLI would)."""
    from board.driver import resolve_engine
    from board.registry import first_bundle

    return resolve_engine(first_bundle("host", overlay_root))


def test_quick_start_runs(kernel_env, overlay_root):
    text = _run("01_quick_start.ipynb", kernel_env)
    engine = _expected_engine(overlay_root)
    assert "this machine: host" in text and "HOST EMULATION" in text and f"engine: {engine} (host emulation" in text
    assert text.count("label ") == 8 and "top-1 " in text and f"(host emulation, {engine} engine)" in text
    assert "image/png" in text  # the image grid


def test_fpga_vs_cpu_runs(kernel_env, overlay_root):
    text = _run("02_fpga_vs_cpu.ipynb", kernel_env)
    assert f"FPGA engine: {_expected_engine(overlay_root)} (host emulation" in text
    assert "sweep (1, 4)" in text and "top-1 FPGA" in text
    assert "## Batch-size sweep" in text and "Power: not available (host emulation)." in text
    assert text.count("image/png") == 3  # FPGA vs CPU, throughput vs batch, latency histogram
    reports = list((kernel_env / "reports").glob("*/*/report.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["images"] == 8


def test_power_notebook_says_not_available_off_board(kernel_env):
    text = _run("03_power_zcu104.ipynb", kernel_env)
    assert "Power: not available (host emulation)." in text  # the rails cell
    assert "Power: not available (host emulation)\n" in text  # the benchmark's power section
    assert "no power trace to plot: not available (host emulation)" in text
