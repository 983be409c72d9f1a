"""A real hls4ml bundle (left in ``--test-overlays`` by the host tests) driven through pynq's DMA.

Checks the invariant the whole pipeline rests on: the emulated overlay, fed through the real ``pynq.lib.dma.DMA``
in batches, returns exactly what the bundle's C-simulation library returns when called directly, and agrees with
the quantized Keras model's predictions that ``hls_build`` stored in the bundle. Skipped when no bundle is there
(run the host tests first: ``make test``) or CIFAR-10 is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pynq")

from board_toys import ROOT, missing_test_bundle  # noqa: E402

from board.bundle import MANIFEST, load_bundle, read_manifest  # noqa: E402
from board.cifar10 import load_split  # noqa: E402
from board.driver import Accelerator  # noqa: E402
from board.emulated_device import CSimKernel  # noqa: E402
from board.fixed_point import FixedPoint  # noqa: E402
from board.preprocess import Preprocessing  # noqa: E402

N_IMAGES, N_DIRECT = 12, 4


@pytest.fixture(scope="module")
def real_bundle(request) -> Path:
    try:
        root = Path(request.config.getoption("--test-overlays"))
    except ValueError:  # the option lives in host_tests/conftest.py; fall back to its default
        root = ROOT / "build" / "test-overlays"
    for path in sorted(root.glob(f"*/*/{MANIFEST}")):
        if read_manifest(path.parent).emulated:
            return path.parent
    missing_test_bundle(f"no emulated bundle under {root}; the host tests leave one there (make test)")


def test_dma_path_equals_direct_csim_and_agrees_with_keras(real_bundle, cifar10_dir):
    bundle = load_bundle(real_bundle)
    m = bundle.manifest
    test = load_split("test", directory=cifar10_dir).head(N_IMAGES)
    with Accelerator(bundle, batch_size=5, engine="csim") as acc:  # 5 + 5 + 2: several DMA transfers
        assert acc.engine == "csim"
        raw = acc.predict_raw(test.images)
        assert [t.images for t in acc.take_timings()] == [5, 5, 2]
    # The default engine, as for `python -m board bench`: the fast engine, the same bits through the same DMA path.
    with Accelerator(bundle, batch_size=5) as acc:
        assert acc.engine == "fast" and "bit-exact numpy" in acc.engine_description
        np.testing.assert_array_equal(acc.predict_raw(test.images), raw)

    # The library called directly (floats in, floats out), no DMA, no raw codes on the way in.
    kernel = CSimKernel.from_bundle(bundle)
    x = Preprocessing.from_dict(m.preprocessing).to_float(test.images[:N_DIRECT]).reshape(N_DIRECT, -1)
    direct = kernel.run_float(x)
    np.testing.assert_array_equal(FixedPoint.parse(m.output.fixed_point).decode(raw[:N_DIRECT]), direct)

    keras = np.load(bundle.path("keras_predictions.npy"))[:N_IMAGES]
    agreement = float(np.mean(np.argmax(raw, axis=1) == keras))
    floor = float(m.metrics.get("csim_vs_keras_agreement", 1.0)) - 0.2
    assert agreement >= floor, f"emulated FPGA agrees with Keras on {agreement:.0%} of {N_IMAGES} images"


def test_bench_runs_the_fast_engine_and_cross_checks_it_against_the_csim(real_bundle, cifar10_dir, tmp_path):
    from board.bench import render_markdown, run_bench

    if not read_manifest(real_bundle).hls.get("firmware_graph"):
        missing_test_bundle(f"{real_bundle} was built before bundles carried their firmware graph")
    report, out = run_bench(real_bundle, n=40, batch_size=16, out_dir=tmp_path, cifar10_dir=cifar10_dir,
                            plots=False, progress=False, csim_check=6)  # fmt: skip
    assert report["engine"]["name"] == "fast"
    cc = report["engine"]["csim_check"]
    assert cc == {**cc, "images": 6, "identical": 6, "bit_exact": True}
    assert "bit-identical (6/6)" in render_markdown(report)
    assert report["images"] == 40 and (out / "report.json").is_file()


def test_bench_exits_1_when_the_fast_engine_differs(real_bundle, cifar10_dir, tmp_path, monkeypatch, capsys):
    """A failed bit-exact cross-check is a failed check (exit 1, one error line), and the report is still written."""
    from board.__main__ import main
    from board.fast_engine import FastEngine

    if not read_manifest(real_bundle).hls.get("firmware_graph"):
        missing_test_bundle(f"{real_bundle} was built before bundles carried their firmware graph")
    exact = FastEngine.predict_raw

    def off_by_one(self, raw_in):  # a broken engine: the first logit code of every image one LSB off
        out = exact(self, raw_in).copy()
        out[:, 0] += 1
        return out

    monkeypatch.setattr(FastEngine, "predict_raw", off_by_one)
    out = tmp_path / "report"
    args = ["bench", "--bundle", str(real_bundle), "-n", "6", "--batch-size", "3", "--csim-check", "3", "--no-plots",
            "--no-progress", "--out", str(out), "--cifar10-dir", str(cifar10_dir)]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: the fast engine and the hls4ml C-simulation differ on 3 of 3 images")
    assert json.loads((out / "report.json").read_text())["engine"]["csim_check"]["identical"] == 0
