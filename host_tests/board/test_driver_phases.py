"""Accelerator.encode/run_raw/decode (the phases predict is made of) and the per-batch phase timings."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pynq")

from board_toys import N_IN, toy_raw  # noqa: E402

from board.bundle import load_bundle  # noqa: E402
from board.driver import Accelerator  # noqa: E402
from board.errors import InputError  # noqa: E402
from board.preprocess import Preprocessing, pixel_lut  # noqa: E402


def test_phases_compose_to_predict(make_bundle, images):
    with Accelerator(load_bundle(make_bundle()), batch_size=5) as acc:
        raw, single = acc.encode(images)
        assert not single and raw.shape == (12, N_IN) and raw.dtype == np.uint8
        assert np.shares_memory(raw, images)  # ap_ufixed<8,0> of pixel/256: the code is the pixel, no copy
        out = acc.run_raw(raw)
        np.testing.assert_array_equal(out, toy_raw(images.reshape(12, -1)))
        np.testing.assert_array_equal(acc.decode(out), acc.predict(images))
        timings = acc.take_timings()
        assert [t.images for t in timings] == [5, 5, 2, 5, 5, 2]
        for t in timings:
            assert t.seconds == pytest.approx(t.submit_s + t.wait_s)
            assert min(t.copy_in_s, t.submit_s, t.wait_s, t.copy_out_s) >= 0
        with pytest.raises(InputError, match="raw input must be"):
            acc.run_raw(raw.astype(np.int16))


def test_non_identity_encoding_uses_the_table(make_bundle, images):
    """pixel/255 is not an exact ap_ufixed<8,0> code: the lookup table quantizes as the IP would."""
    prep = {"input_scale": 1 / 255, "input_offset": 0.0}
    with Accelerator(load_bundle(make_bundle(preprocessing=prep)), batch_size=5) as acc:
        raw, _ = acc.encode(images)
        lut, exact = pixel_lut(Preprocessing.from_dict(prep), acc._in_type, np.uint8)
        assert not exact and not np.shares_memory(raw, images)
        np.testing.assert_array_equal(raw, lut[images.reshape(12, -1)])
        np.testing.assert_array_equal(acc.predict_raw(images), toy_raw(raw))


def test_runtime_overhead_benchmark_smoke(tmp_path, capsys):
    import importlib.util
    import json

    from board_toys import ROOT

    spec = importlib.util.spec_from_file_location("runtime_overhead", ROOT / "benchmarks" / "runtime_overhead.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "overhead.json"
    assert module.main(["--images", "20", "--batch-sizes", "1,10", "--repeats", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["batch_size"] for r in rows] == [1, 10]
    for r in rows:
        parts = sum(r[p] for p in module.PHASES)
        assert r["total"] == pytest.approx(parts, rel=1e-6) and r["total"] > 0
    assert "ms per 1,000 images" in capsys.readouterr().out


def test_per_channel_preprocessing_encodes_each_channel(make_bundle, images):
    """A manifest with per-channel values: the driver's lookup is per channel, and the C-simulation gets those codes."""
    prep = {"input_scale": [1 / 256, 1 / 512, 1 / 1024], "input_offset": 0.0}  # ap_ufixed<8,0>, truncated: p, p/2, p/4
    with Accelerator(load_bundle(make_bundle(preprocessing=prep)), batch_size=5) as acc:
        assert acc.preprocessing.per_channel
        raw, _ = acc.encode(images)
        want = images.copy()
        want[..., 1] //= 2
        want[..., 2] //= 4
        np.testing.assert_array_equal(raw, want.reshape(12, -1))
        np.testing.assert_array_equal(acc.predict_raw(images), toy_raw(raw))
