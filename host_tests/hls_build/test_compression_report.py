"""The hardware side of Deep Compression (hls_build/compression_report.py): bad folders are refused with exit code
2, and the committed report's figures for the compressed model come back from the committed ``.dcw``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hls_build.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "results" / "compression" / "resnet8_q8_3"


def test_folder_without_compressed_weights_is_refused(tmp_path, capsys):
    assert main(["compression-report", "--compressed", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no compressed_weights.dcw" in err
    assert not (tmp_path / "hardware.json").exists()


def test_missing_source_model_is_refused(tmp_path, capsys):
    shutil.copy(RUN / "compressed_weights.dcw", tmp_path)
    assert main(["compression-report", "--compressed", str(tmp_path), "--model-dir", str(tmp_path / "nowhere")]) == 2
    assert "the source model of" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{not json")
    assert main(["compression-report", "--compressed", str(tmp_path)]) == 2
    assert "not JSON" in capsys.readouterr().err


@pytest.fixture(scope="module")
def untrained_resnet8(tmp_path_factory):
    from training.keras_compat import keras
    from training.models import create_model

    d = tmp_path_factory.mktemp("resnet8")
    keras.utils.set_random_seed(0)
    create_model("resnet8", quant="<8,3>").save(d / "model.h5", include_optimizer=False)
    (d / "config.json").write_text(json.dumps({"model_id": "resnet8_q8_3"}))
    return d


def test_corrupt_compressed_weights_are_refused(untrained_resnet8, tmp_path, capsys):
    (tmp_path / "compressed_weights.dcw").write_bytes(b"DCW1" + b"\0" * 16)
    args = ["compression-report", "--compressed", str(tmp_path), "--model-dir", str(untrained_resnet8)]
    assert main(args) == 2
    assert "does not fit" in capsys.readouterr().err


@pytest.mark.slow  # six hls4ml conversions of ResNet8, ~1 min on a busy 2-core machine
def test_committed_compressed_side_reproduces_from_the_dcw(untrained_resnet8, tmp_path):
    """The compressed model is the .dcw alone, so every figure but the dense model's ("_before") must match the
    committed hardware.json; the source (a random ResNet8 here) only changes the "_before" columns."""
    from hls_build.compression_report import write_hardware_report

    for name in ("compressed_weights.dcw", "config.json"):
        shutil.copy(RUN / name, tmp_path)
    rows = write_hardware_report(tmp_path, untrained_resnet8)
    committed = json.loads((RUN / "hardware.json").read_text())
    assert json.loads((tmp_path / "hardware.json").read_text()) == rows
    assert [r["layer"] for r in rows] == [r["layer"] for r in committed]
    for new, old in zip(rows, committed, strict=True):
        assert set(new) == set(old)
        assert {k: v for k, v in new.items() if not k.endswith("_before")} == {
            k: v for k, v in old.items() if not k.endswith("_before")
        }
        assert new["latency_multipliers_after"] <= new["latency_multipliers_before"]
        assert new["resource_multipliers_after"] == new["resource_multipliers_before"]
    title = (tmp_path / "hardware.md").read_text().splitlines()[0]
    assert title == (RUN / "hardware.md").read_text().splitlines()[0]
