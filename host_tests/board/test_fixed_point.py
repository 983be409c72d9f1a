"""board.fixed_point: parsing, properties, and the codec against literal expected arrays (numpy 1 and 2)."""

from __future__ import annotations

import numpy as np
import pytest

from board.fixed_point import FixedPoint, Rounding, Saturation, parse_fixed


@pytest.mark.parametrize(
    ("text", "width", "integer", "signed", "rounding", "saturation"),
    [
        pytest.param("ap_fixed<16,6>", 16, 6, True, Rounding.TRN, Saturation.WRAP, id="ap_fixed"),
        pytest.param("ap_ufixed<8,0>", 8, 0, False, Rounding.TRN, Saturation.WRAP, id="ap_ufixed"),
        pytest.param("ap_fixed<8,3,AP_RND_CONV,AP_SAT>", 8, 3, True, Rounding.RND_CONV, Saturation.SAT, id="modes"),
        pytest.param(
            " ap_ufixed< 8 , 0 , AP_RND , AP_SAT_SYM , 0 > ",
            8,
            0,
            False,
            Rounding.RND,
            Saturation.SAT_SYM,
            id="spaces-and-N0",
        ),
        pytest.param("fixed<16,6>", 16, 6, True, Rounding.TRN, Saturation.WRAP, id="hls4ml-short"),
        pytest.param("ufixed<4,-2,AP_TRN_ZERO>", 4, -2, False, Rounding.TRN_ZERO, Saturation.WRAP, id="negative-I"),
    ],
)
def test_parse(text, width, integer, signed, rounding, saturation):
    fp = parse_fixed(text)
    assert fp == FixedPoint(width, integer, signed, rounding, saturation)
    assert FixedPoint.parse(str(fp)) == fp  # str() round-trips


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("ap_fixed<8>", id="one-param"),
        pytest.param("ap_fixed<8,3,AP_FOO>", id="unknown-mode"),
        pytest.param("ap_fixed<2000,3>", id="too-wide"),
        pytest.param("ap_fixed<0,0>", id="zero-width"),
        pytest.param("ap_fixed<8,3,AP_TRN,AP_WRAP_SM>", id="wrap-sm"),
        pytest.param("ap_fixed<8,3,AP_TRN,AP_WRAP,2>", id="sat-bits"),
    ],
)
def test_parse_refuses(text):
    with pytest.raises(ValueError):
        FixedPoint.parse(text)


def test_one_parser_for_every_stage():
    """The type the estimator and the fast engine read from hls4ml's C++: integer types, modes without AP_, wide
    accumulators; the float codec refuses what no stream container carries (more than 32 bits)."""
    assert FixedPoint.parse("ap_uint<1>") == FixedPoint(1, 1, False, is_int=True)
    assert str(FixedPoint(8, 8, is_int=True)) == "ap_int<8>"
    assert FixedPoint.parse("ap_fixed<8,3,RND_CONV,SAT>") == FixedPoint(8, 3, True, Rounding.RND_CONV, Saturation.SAT)
    wide = FixedPoint.parse("ap_fixed<40,3>")
    assert wide.width == 40 and wide.frac_bits == 37 and wide.max == 4 - 2.0**-37
    with pytest.raises(ValueError, match="up to 32 bits"):
        wide.encode([0.0])
    with pytest.raises(ValueError, match="up to 32 bits"):
        _ = wide.container_dtype


def test_type_for_a_range():
    assert str(FixedPoint.for_range(0.0, 1 - 2**-8, 8)) == "ap_ufixed<8,0>"
    assert str(FixedPoint.for_range(-4.0, 4 - 2**-5, 5)) == "ap_fixed<8,3>"
    assert str(FixedPoint.for_range(-4.0, 4.0, 5)) == "ap_fixed<9,4>"
    assert str(FixedPoint.for_range(-4.25, 0.0, 5)) == "ap_fixed<9,4>"
    t, exact = FixedPoint.for_range(-1000.0, 1000.0, 30).capped(32)
    assert not exact and t.width == 32 and t.integer == 11


@pytest.mark.parametrize(
    ("text", "frac", "lsb", "lo", "hi", "container"),
    [
        pytest.param("ap_fixed<16,6>", 10, 2**-10, -32.0, 32 - 2**-10, "int16", id="fixed16_6"),
        pytest.param("ap_ufixed<8,0>", 8, 2**-8, 0.0, 255 / 256, "uint8", id="ufixed8_0"),
        pytest.param("ap_fixed<9,3>", 6, 2**-6, -4.0, 4 - 2**-6, "int16", id="fixed9_3-rounds-up-to-16"),
        pytest.param("ap_ufixed<17,1>", 16, 2**-16, 0.0, 2 - 2**-16, "uint32", id="ufixed17_1"),
        pytest.param("ap_fixed<4,6>", -2, 4.0, -32.0, 28.0, "int8", id="lsb-above-one"),
        pytest.param("ap_fixed<1,1>", 0, 1.0, -1.0, 0.0, "int8", id="one-bit"),
    ],
)
def test_properties(text, frac, lsb, lo, hi, container):
    fp = FixedPoint.parse(text)
    assert fp.frac_bits == frac
    assert fp.lsb == lsb
    assert (fp.min, fp.max) == (lo, hi)
    assert fp.container_dtype == np.dtype(container)


# ap_fixed<8,4>: LSB 1/16. Scaled values s = x * 16: [0.5, -0.5, 1.5, -1.5, 1.6, -1.6, 1.0, 2.5]
ROUND_X = np.array([0.03125, -0.03125, 0.09375, -0.09375, 0.1, -0.1, 0.0625, 0.15625])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("AP_TRN", [0, -1, 1, -2, 1, -2, 1, 2], id="TRN-floor"),
        pytest.param("AP_TRN_ZERO", [0, 0, 1, -1, 1, -1, 1, 2], id="TRN_ZERO"),
        pytest.param("AP_RND", [1, 0, 2, -1, 2, -2, 1, 3], id="RND-ties-up"),
        pytest.param("AP_RND_ZERO", [0, 0, 1, -1, 2, -2, 1, 2], id="RND_ZERO"),
        pytest.param("AP_RND_MIN_INF", [0, -1, 1, -2, 2, -2, 1, 2], id="RND_MIN_INF"),
        pytest.param("AP_RND_INF", [1, -1, 2, -2, 2, -2, 1, 3], id="RND_INF-away"),
        pytest.param("AP_RND_CONV", [0, 0, 2, -2, 2, -2, 1, 2], id="RND_CONV-even"),
    ],
)
def test_rounding_modes(mode, expected):
    fp = FixedPoint.parse(f"ap_fixed<8,4,{mode},AP_WRAP>")
    raw = fp.encode(ROUND_X)
    assert raw.dtype == np.int8
    np.testing.assert_array_equal(raw, np.array(expected, np.int8))


# ap_fixed<8,4>: raw range [-128, 127]. Scaled: [128, -129, 1600, -144, 127, -128]
OVER_X = np.array([8.0, -8.0625, 100.0, -9.0, 7.9375, -8.0])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("AP_WRAP", [-128, 127, 64, 112, 127, -128], id="WRAP"),
        pytest.param("AP_SAT", [127, -128, 127, -128, 127, -128], id="SAT"),
        pytest.param("AP_SAT_ZERO", [0, 0, 0, 0, 127, -128], id="SAT_ZERO"),
        pytest.param("AP_SAT_SYM", [127, -127, 127, -127, 127, -127], id="SAT_SYM"),
    ],
)
def test_overflow_modes(mode, expected):
    fp = FixedPoint.parse(f"ap_fixed<8,4,AP_TRN,{mode}>")
    np.testing.assert_array_equal(fp.encode(OVER_X), np.array(expected, np.int8))


def test_unsigned_wrap_and_saturate():
    x = np.array([-1 / 256, 1.0, 0.5, 255 / 256, 3.0])  # scaled [-1, 256, 128, 255, 768]
    np.testing.assert_array_equal(
        FixedPoint.parse("ap_ufixed<8,0>").encode(x), np.array([255, 0, 128, 255, 0], np.uint8)
    )
    np.testing.assert_array_equal(
        FixedPoint.parse("ap_ufixed<8,0,AP_TRN,AP_SAT>").encode(x), np.array([0, 255, 128, 255, 255], np.uint8)
    )


def test_rounding_happens_before_overflow():
    # 7.97 rounds up to 8.0, which then overflows: saturate -> 127, wrap -> -128.
    assert FixedPoint.parse("ap_fixed<8,4,AP_RND,AP_SAT>").encode(7.97) == 127
    assert FixedPoint.parse("ap_fixed<8,4,AP_RND,AP_WRAP>").encode(7.97) == -128


def test_decode_literal():
    fp = FixedPoint.parse("ap_fixed<16,6>")
    raw = np.array([-32768, -1, 0, 1, 32767], np.int16)
    np.testing.assert_array_equal(fp.decode(raw), [-32.0, -(2**-10), 0.0, 2**-10, 32 - 2**-10])
    assert fp.decode(raw).dtype == np.float64
    np.testing.assert_array_equal(
        FixedPoint.parse("ap_ufixed<8,0>").decode(np.array([0, 1, 255], np.uint8)), [0.0, 1 / 256, 255 / 256]
    )


def test_decode_ignores_padding_bits():
    # ap_fixed<10,4> in a 16-bit container: the upper 6 bits may be zero padding or a sign extension.
    fp = FixedPoint.parse("ap_fixed<10,4>")
    np.testing.assert_array_equal(
        fp.decode(np.array([0x3FF, 0xFFFF, 0x200, 0x1FF], np.uint16)), [-1 / 64, -1 / 64, -8.0, 8 - 1 / 64]
    )
    np.testing.assert_array_equal(fp.decode(np.array([-1, 0x3FF], np.int16)), [-1 / 64, -1 / 64])


def test_encode_into_other_containers():
    fp = FixedPoint.parse("ap_fixed<10,4>")
    np.testing.assert_array_equal(fp.encode([-1 / 64, 1.0], dtype="uint16"), np.array([0x3FF, 64], np.uint16))
    np.testing.assert_array_equal(fp.encode([-1 / 64, 1.0], dtype="int32"), np.array([-1, 64], np.int32))
    # ap_ufixed<8,0> bits in an int8 word: 255 is the bit pattern 0xFF.
    np.testing.assert_array_equal(FixedPoint.parse("ap_ufixed<8,0>").encode([255 / 256], dtype="int8"), [-1])
    with pytest.raises(ValueError):
        fp.encode([0.0], dtype="int8")  # 10 bits do not fit
    with pytest.raises(ValueError):
        fp.encode([0.0], dtype="float32")


@pytest.mark.parametrize(
    ("text", "bound"),
    [
        pytest.param("ap_fixed<16,6>", 1.0, id="TRN-within-1-LSB"),
        pytest.param("ap_fixed<16,6,AP_RND_CONV>", 0.5, id="RND_CONV-within-half-LSB"),
        pytest.param("ap_ufixed<12,3,AP_RND,AP_SAT>", 0.5, id="unsigned-RND"),
    ],
)
def test_round_trip_within_lsb(text, bound):
    fp = FixedPoint.parse(text)
    x = np.random.default_rng(0).uniform(fp.min, fp.max - fp.lsb, 10_000)
    err = np.abs(fp.decode(fp.encode(x)) - x)
    assert err.max() <= bound * fp.lsb
    if fp.rounding is Rounding.TRN:
        assert np.all(fp.decode(fp.encode(x)) <= x)  # floor never rounds up


def test_exact_codes_round_trip_exactly():
    fp = FixedPoint.parse("ap_fixed<16,6>")
    raw = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)
    np.testing.assert_array_equal(fp.encode(fp.decode(raw)), raw)
    assert fp.representable(fp.decode(raw)).all()
    np.testing.assert_array_equal(fp.representable([0.1, 32.0, -32.0, np.nan]), [False, False, True, False])


def test_non_finite_and_non_integer_raw_refused():
    fp = FixedPoint.parse("ap_fixed<16,6>")
    with pytest.raises(ValueError, match="NaN"):
        fp.encode([1.0, np.nan])
    with pytest.raises(ValueError, match="NaN"):
        fp.encode(np.inf)
    with pytest.raises(ValueError, match="integers"):
        fp.decode(np.array([1.5]))


def test_huge_values_wrap_exactly():
    # Large floats are integers; fmod keeps the wrap exact where adding 0.5 or casting could not.
    fp = FixedPoint.parse("ap_fixed<8,8>")  # integers -128..127
    assert fp.encode(2.0**52 + 5) == 5
    assert fp.encode(-(2.0**52) - 3) == -3
    assert fp.encode(2.0**60 + 3 * 2.0**8) == 0
