"""board.preprocess: pixel validation, the manifest's preprocessing, the pixel -> raw code table (numpy 1 and 2)."""

from __future__ import annotations

import numpy as np
import pytest

from board.errors import BundleError, InputError
from board.fixed_point import FixedPoint
from board.preprocess import Preprocessing, encode_pixels, pixel_lut, validate_pixels

SHAPE = (32, 32, 3)


def test_validate_accepts_and_normalises():
    x = np.arange(2 * 32 * 32 * 3).reshape(2, *SHAPE) % 256
    out, single = validate_pixels(x.astype(np.int64), SHAPE)
    assert out.dtype == np.uint8 and out.shape == (2, *SHAPE) and not single and out.flags.c_contiguous
    np.testing.assert_array_equal(out, x)
    one, single = validate_pixels(x[0].astype(np.float64), SHAPE)
    assert single and one.shape == (1, *SHAPE)
    view = np.zeros((2, 32, 32, 6), np.uint8)[..., ::2]  # non-contiguous
    assert validate_pixels(view, SHAPE)[0].flags.c_contiguous


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        pytest.param(np.zeros((4, 32, 32), np.uint8), "shape", id="shape"),
        pytest.param(np.zeros((32, 32, 3, 2), np.uint8), "shape", id="trailing"),
        pytest.param(np.full((1, *SHAPE), np.nan), "NaN", id="nan"),
        pytest.param(np.full((1, *SHAPE), 255.5), r"\[0, 255\]", id="over"),
        pytest.param(np.full((1, *SHAPE), 2.5), "whole numbers", id="fraction"),
        pytest.param(np.full((1, *SHAPE), -3, np.int16), r"\[0, 255\]", id="negative-int"),
        pytest.param(np.zeros((1, *SHAPE), np.complex64), "dtype", id="complex"),
    ],
)
def test_validate_refuses(bad, match):
    with pytest.raises(InputError, match=match):
        validate_pixels(bad, SHAPE)


def test_preprocessing_from_dict():
    p = Preprocessing.from_dict({"input_scale": "0.00390625", "input_offset": 0, "layout": "NHWC"})
    assert p.input_scale == 1 / 256 and p.input_offset == 0.0
    np.testing.assert_array_equal(p.to_float(np.array([0, 128, 255], np.uint8)), np.float32([0, 0.5, 255 / 256]))
    for bad in ({"layout": "NCHW"}, {"channel_order": "BGR"}, {"mean": 0.5}, {"input_scale": "x"}):
        with pytest.raises(BundleError):
            Preprocessing.from_dict(bad)


def test_pixel_lut_identity_for_default():
    lut, exact = pixel_lut(Preprocessing(), FixedPoint.parse("ap_ufixed<8,0>"), "uint8")
    assert exact and lut.dtype == np.uint8
    np.testing.assert_array_equal(lut, np.arange(256))


def test_pixel_lut_signed_offset():
    # x = p/128 - 1 in ap_fixed<8,1>: exact, raw = p - 128 as int8.
    prep = Preprocessing(input_scale=1 / 128, input_offset=-1.0)
    lut, exact = pixel_lut(prep, FixedPoint.parse("ap_fixed<8,1>"), "int8")
    assert exact
    np.testing.assert_array_equal(lut, (np.arange(256) - 128).astype(np.int8))


def test_pixel_lut_inexact_is_flagged():
    lut, exact = pixel_lut(
        Preprocessing(input_scale=1 / 255), FixedPoint.parse("ap_ufixed<8,0,AP_RND,AP_SAT>"), "uint8"
    )
    assert not exact
    assert lut[0] == 0 and lut[255] == 255 and lut[128] == 129  # 128/255*256 = 128.5 -> rounds up


#: A per-channel mean subtracted before the accelerator (hls_build.ptq.input_stream): R, G, B offsets on 2^-15.
OFFSETS = [-16102 / 2**15, -15801 / 2**15, -14631 / 2**15]


def test_old_scalar_manifest_loads_unchanged():
    old = {
        "input_scale": 0.00390625,
        "input_offset": 0.0,
        "layout": "NHWC",
        "channel_order": "RGB",
        "pixel_dtype": "uint8",
    }
    p = Preprocessing.from_dict(old)
    assert not p.per_channel and p.to_dict() == old and isinstance(p.input_offset, float)
    lut, exact = pixel_lut(p, FixedPoint.parse("ap_ufixed<8,0>"), "uint8")
    assert exact and lut.shape == (256,)
    images = np.random.default_rng(0).integers(0, 256, (4, *SHAPE), dtype=np.uint8)
    np.testing.assert_array_equal(encode_pixels(lut, images), images.reshape(4, -1))


def test_per_channel_offset_is_one_exact_lookup_per_channel():
    p = Preprocessing.from_dict({"input_scale": 1 / 256, "input_offset": OFFSETS})
    assert p.per_channel and p.input_offset == tuple(OFFSETS) and p.to_dict()["input_offset"] == OFFSETS
    fixed = FixedPoint.parse("ap_fixed<16,1>")
    lut, exact = pixel_lut(p, fixed, "int16")
    assert exact and lut.shape == (256, 3) and lut.dtype == np.int16
    # raw code = (pixel / 256 + offset) * 2^15 = 128 * pixel + offset * 2^15, channel by channel.
    np.testing.assert_array_equal(lut[:, 1], 128 * np.arange(256) - 15801)
    images = np.random.default_rng(1).integers(0, 256, (3, *SHAPE), dtype=np.uint8)
    images[0, 0, 0] = (255, 0, 17)
    raw = encode_pixels(lut, images)
    want = fixed.encode(p.to_float(images).astype(np.float64), dtype="int16").reshape(3, -1)
    np.testing.assert_array_equal(raw, want)
    np.testing.assert_array_equal(raw[0, :3], [128 * 255 - 16102, -15801, 128 * 17 - 14631])
    # The float model input (ONNX reference) applies the same offsets on the channel axis.
    np.testing.assert_array_equal(fixed.decode(raw).reshape(images.shape), p.to_float(images))


def test_per_channel_values_are_checked():
    for bad in ({"input_offset": [0.1, 0.2]}, {"input_scale": [1, 1, float("nan")]}, {"input_offset": ["a", 0, 0]}):
        with pytest.raises(BundleError):
            Preprocessing.from_dict(bad)
    lut, _ = pixel_lut(Preprocessing(input_offset=(0.0, 0.0, 0.0)), FixedPoint.parse("ap_ufixed<8,0>"), "uint8")
    with pytest.raises(InputError, match="3 channels"):
        encode_pixels(lut, np.zeros((1, 32, 32, 1), np.uint8))
