"""Fixtures for the board runtime tests: the toy C library compiled once, toy bundles, the CIFAR-10 folder.

The toy kernel and its references live in ``board_toys`` (see there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

_HERE = Path(__file__).resolve().parent
for _p in (_HERE.parents[1], _HERE):  # the board package and the helpers, however pytest was started
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from board_toys import SHARED_CIFAR, TOY_CPP, toy_weights  # noqa: E402


@pytest.fixture(scope="session")
def toy_so(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy C library, compiled once per session with g++."""
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        pytest.skip("no C++ compiler (g++) to build the toy C-simulation library")
    d = tmp_path_factory.mktemp("toy_csim")
    (d / "toy.cpp").write_text(TOY_CPP)
    so = d / "libtoy.so"
    subprocess.run([cxx, "-O1", "-shared", "-fPIC", "-o", str(so), str(d / "toy.cpp")], check=True)
    return so


@pytest.fixture
def make_bundle(tmp_path: Path, toy_so: Path):
    """Factory: write a toy emulated bundle and return its folder."""
    from board.bundle import Manifest, TensorSpec, write_manifest

    def make(
        name: str = "toy",
        *,
        dma: dict | None = None,
        entry: str = "toy_float",
        onnx: bool = True,
        keras_predictions: np.ndarray | None = None,
        preprocessing: dict | None = None,
        metrics: dict | None = None,
    ) -> Path:
        root = tmp_path / "overlays" / "pynq-z2" / name
        (root / "csim").mkdir(parents=True)
        shutil.copy(toy_so, root / "csim" / "libtoy.so")
        if onnx:
            from board_onnx import linear_image_model

            (root / "reference.onnx").write_bytes(linear_image_model(*toy_weights()))
        all_metrics = {"keras_top1": 0.5}
        if keras_predictions is not None:
            np.save(root / "keras_predictions.npy", np.asarray(keras_predictions, np.int64))
            all_metrics["keras_predictions_count"] = len(keras_predictions)
        all_metrics.update(metrics or {})
        manifest = Manifest(
            model_id=name,
            board="pynq-z2",
            input=TensorSpec("image", [32, 32, 3], "ap_ufixed<8,0>", "uint8"),
            output=TensorSpec("logits", [10], "ap_fixed<16,6>", "int16"),
            preprocessing=preprocessing
            or {
                "input_scale": 0.00390625,
                "input_offset": 0.0,
                "layout": "NHWC",
                "channel_order": "RGB",
                "pixel_dtype": "uint8",
            },
            emulated=True,
            csim_library="csim/libtoy.so",
            csim_entry=entry,
            onnx_reference="reference.onnx" if onnx else None,
            dma=dma
            or {
                "max_transfer_bytes": 67108863,
                "length_width_bits": 26,
                "mm2s_data_width_bits": 8,
                "s2mm_data_width_bits": 16,
            },
            metrics=all_metrics,
            tool_versions={"hls4ml": "toy"},
            classes=[f"c{i}" for i in range(10)],
        )
        write_manifest(root, manifest)
        return root

    return make


@pytest.fixture
def images() -> np.ndarray:
    """Twelve seeded random uint8 images."""
    return np.random.default_rng(1234).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def cifar10_dir() -> Path:
    """The real CIFAR-10 python batches ($CIFAR10_DIR or the shared copy), or skip."""
    for cand in (os.environ.get("CIFAR10_DIR"), SHARED_CIFAR):
        if cand and (Path(cand) / "test_batch").is_file():
            return Path(cand)
    pytest.skip("CIFAR-10 not available (set CIFAR10_DIR)")
