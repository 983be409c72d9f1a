"""board.driver.Accelerator on emulated bundles: results, batching, timeouts, errors, input checks, threads."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("pynq")

from board_toys import N_IN, N_OUT, toy_raw  # noqa: E402

from board.bundle import load_bundle  # noqa: E402
from board.driver import Accelerator  # noqa: E402
from board.emulated_device import EmulatedDevice, StallingKernel  # noqa: E402
from board.errors import BoardError, BundleError, DmaError, DmaTimeoutError, InputError  # noqa: E402

LENGTH_REGS = {0x4040_0028: "MM2S", 0x4040_0058: "S2MM"}


def _lengths(device, channel):
    return [v for a, v in device.register_writes if LENGTH_REGS.get(a) == channel]


@pytest.fixture
def acc(make_bundle):
    a = Accelerator.open(make_bundle(), batch_size=5, timeout_s=10.0)
    yield a
    a.close()


def test_predict_equals_kernel(acc, images):
    raw = acc.predict_raw(images)
    expected = toy_raw(images.reshape(len(images), -1))
    np.testing.assert_array_equal(raw, expected)
    assert raw.dtype == np.int16 and raw.shape == (12, N_OUT)
    np.testing.assert_array_equal(acc.predict(images), expected / 1024.0)
    np.testing.assert_array_equal(acc.classify(images), np.argmax(expected, axis=1))
    # The kernel called directly through ctypes gives the same raw codes.
    np.testing.assert_array_equal(raw, acc.device.kernel.run(images.reshape(12, N_IN)))


def test_single_image_and_whole_float_pixels(acc, images):
    one = acc.predict(images[0])
    assert one.shape == (N_OUT,)
    np.testing.assert_array_equal(one, acc.predict(images[:1])[0])
    np.testing.assert_array_equal(acc.predict_raw(images.astype(np.float32)), acc.predict_raw(images))
    assert acc.predict(np.empty((0, 32, 32, 3), np.uint8)).shape == (0, N_OUT)


def test_batches_and_buffers_reused(acc, images):
    dev = acc.device
    addr_in, addr_out = acc._in_buf.physical_address, acc._out_buf.physical_address
    acc.predict(images)  # 12 images at batch 5: 5 + 5 + 2
    assert _lengths(dev, "MM2S") == [5 * N_IN, 5 * N_IN, 2 * N_IN]
    assert _lengths(dev, "S2MM") == [5 * N_OUT * 2, 5 * N_OUT * 2, 2 * N_OUT * 2]
    assert {t[1] for t in dev.transfers if t[0] == "MM2S"} == {addr_in}
    assert {t[1] for t in dev.transfers if t[0] == "S2MM"} == {addr_out}
    timings = acc.take_timings()
    assert [t.images for t in timings] == [5, 5, 2] and all(t.seconds > 0 for t in timings)
    assert acc.take_timings() == []


def test_batch_split_at_dma_max_transfer(make_bundle, images):
    bundle = make_bundle(
        dma={
            "max_transfer_bytes": 16383,
            "length_width_bits": 14,
            "mm2s_data_width_bits": 8,
            "s2mm_data_width_bits": 16,
        }
    )
    with Accelerator(load_bundle(bundle), batch_size=100) as acc:
        assert acc.max_batch_images == 5 and acc.batch_size == 5
        raw = acc.predict_raw(images)
        assert max(_lengths(acc.device, "MM2S")) <= 16383
        assert _lengths(acc.device, "MM2S") == [5 * N_IN, 5 * N_IN, 2 * N_IN]
    np.testing.assert_array_equal(raw, toy_raw(images.reshape(12, -1)))


def test_dma_too_small_for_one_image(make_bundle):
    bundle = make_bundle(dma={"max_transfer_bytes": 1023, "length_width_bits": 10})
    with pytest.raises(BundleError, match="one image needs 3072 bytes"):
        Accelerator.open(bundle)


def test_stall_times_out_then_recovers(make_bundle, images):
    bundle = load_bundle(make_bundle())
    dev = EmulatedDevice.from_bundle(bundle)
    good = dev.kernel
    dev.kernel = StallingKernel(good, pass_images=2)
    acc = Accelerator(bundle, batch_size=5, timeout_s=0.3, device=dev)
    t0 = time.monotonic()
    with pytest.raises(DmaTimeoutError, match=r"S2MM \(receive\) did not complete within 0.3 s: expected 100 bytes"):
        acc.predict(images[:5])
    assert time.monotonic() - t0 < 2.0
    dev.kernel = good  # the next call resets the overlay first, then works
    np.testing.assert_array_equal(acc.predict_raw(images[:3]), toy_raw(images[:3].reshape(3, -1)))
    acc.close()
    dev.close()


def test_engine_is_chosen_like_the_cli_and_named(make_bundle, images):
    from board.emulated_device import FunctionKernel

    bundle = load_bundle(make_bundle())  # a toy bundle without a firmware graph: auto means the C-simulation
    with Accelerator(bundle, batch_size=5) as acc:
        assert acc.engine == "csim" and "C-simulation" in acc.engine_description
    with pytest.raises(InputError, match="no firmware graph"):
        Accelerator(bundle, engine="fast")
    with pytest.raises(InputError, match="engine must be one of"):
        Accelerator(bundle, engine="gpu")
    dev = EmulatedDevice.from_bundle(bundle)
    with pytest.raises(InputError, match="exclude each other"):
        Accelerator(bundle, device=dev, engine="csim")
    with Accelerator(bundle, device=dev) as acc:  # an injected device: the engine is its kernel's
        assert acc.engine == "csim"
    dev.close()
    kernel = FunctionKernel(lambda raw: toy_raw(raw), N_IN, N_OUT, "uint8", "int16")
    with EmulatedDevice(kernel, bundle.manifest.dma) as dev, Accelerator(bundle, device=dev) as acc:
        assert acc.engine == "FunctionKernel" and "injected kernel" in acc.engine_description
        np.testing.assert_array_equal(acc.predict_raw(images[:2]), toy_raw(images[:2].reshape(2, -1)))


def test_dma_error_bit_raises_dma_error_then_recovers(acc, images):
    acc.device.inject_fault("s2mm", "slave")
    with pytest.raises(DmaError, match="S2MM.*slave error") as info:
        acc.predict(images[:2])
    assert not isinstance(info.value, DmaTimeoutError)
    acc.device.inject_fault("mm2s", "decode")
    with pytest.raises(DmaError, match="MM2S.*decode error"):
        acc.predict(images[:2])
    np.testing.assert_array_equal(acc.predict_raw(images[:2]), toy_raw(images[:2].reshape(2, -1)))


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(np.zeros((2, 32, 32), np.uint8), id="missing-channel-axis"),
        pytest.param(np.zeros((2, 3, 32, 32), np.uint8), id="NCHW"),
        pytest.param(np.zeros((32, 32, 3, 1), np.uint8), id="trailing-axis"),
        pytest.param(np.full((1, 32, 32, 3), np.nan, np.float32), id="NaN"),
        pytest.param(np.full((1, 32, 32, 3), np.inf), id="inf"),
        pytest.param(np.full((1, 32, 32, 3), 256, np.int32), id="above-255"),
        pytest.param(np.full((1, 32, 32, 3), -1.0), id="negative"),
        pytest.param(np.full((1, 32, 32, 3), 0.5), id="fractional"),
        pytest.param(np.zeros((1, 32, 32, 3), bool), id="bool"),
        pytest.param([["a"]], id="strings"),
    ],
)
def test_bad_input_refused_before_any_transfer(acc, bad):
    before = acc.device.write_count
    with pytest.raises(InputError):
        acc.predict(bad)
    assert acc.device.write_count == before
    assert not acc.take_timings()


def test_threads_get_their_own_results(acc):
    rng = np.random.default_rng(7)
    batches = [rng.integers(0, 256, (11, 32, 32, 3), dtype=np.uint8) for _ in range(2)]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i):
        try:
            for _ in range(3):
                results[i] = acc.predict_raw(batches[i])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    for i in range(2):
        np.testing.assert_array_equal(results[i], toy_raw(batches[i].reshape(11, -1)))


def test_closed_accelerator_refuses(make_bundle, images):
    acc = Accelerator.open(make_bundle())
    acc.close()
    acc.close()  # idempotent
    with pytest.raises(BoardError, match="closed"):
        acc.predict(images[:1])


def test_inexact_preprocessing_is_quantized_like_hardware(make_bundle, images, caplog):
    prep = {"input_scale": 1 / 255, "input_offset": 0.0}
    with caplog.at_level("WARNING"), Accelerator.open(make_bundle(preprocessing=prep)) as acc:
        raw = acc.predict_raw(images[:2])
    assert "not all exact" in caplog.text
    # ap_ufixed<8,0> with AP_TRN floors p/255 * 256, and AP_WRAP turns 255/255 = 1.0 into 0.
    x = np.float32(images[:2].reshape(2, -1)) * np.float32(1 / 255)
    codes = np.floor(x.astype(np.float64) * 256).astype(np.int64) % 256
    np.testing.assert_array_equal(raw, toy_raw(codes))


class _FakeOverlay:
    """Stands in for ``pynq.Overlay`` on the hardware path: IP attributes, ``device`` and ``download()``."""

    def __init__(self, device, path):
        self.device, self.downloads = device, 0
        self.ip_dict = {path: {}}
        head, _, leaf = path.partition("/")
        setattr(self, head, type("Hier", (), {leaf: device.make_dma()})())

    def download(self):
        self.downloads += 1
        self.device.reset_pl()


def _hardware_bundle(make_bundle, ip_name):
    """A toy bundle rewritten as a non-emulated one with a (dummy) bitstream and the given DMA IP name."""
    from dataclasses import replace

    from board.bundle import read_manifest, write_manifest

    root = make_bundle(dma={"ip_name": ip_name, "length_width_bits": 26})
    (root / "toy.bit").write_bytes(b"bit")
    (root / "toy.hwh").write_text("<hwh/>")
    m = read_manifest(root)
    write_manifest(root, replace(m, emulated=False, bitstream="toy.bit", hwh="toy.hwh"))
    return load_bundle(root)


def test_hardware_path_with_overlay(make_bundle, images):
    bundle = _hardware_bundle(make_bundle, "accel/dma_0")
    dev = EmulatedDevice.from_bundle(bundle)
    overlay = _FakeOverlay(dev, "accel/dma_0")
    with Accelerator(bundle, overlay=overlay, batch_size=4, timeout_s=5.0) as acc:
        assert not acc.emulated and acc.dma is overlay.accel.dma_0 and acc.device is dev
        np.testing.assert_array_equal(acc.predict_raw(images[:6]), toy_raw(images[:6].reshape(6, -1)))
        dev.inject_fault("mm2s", "slave")
        with pytest.raises(DmaError):
            acc.predict(images[:1])
        acc.predict(images[:1])
        assert overlay.downloads == 1  # recovery re-downloads the bitstream
    dev.close()


def test_hardware_path_wrong_ip_name(make_bundle):
    bundle = _hardware_bundle(make_bundle, "hier_0/axi_dma_0")
    dev = EmulatedDevice.from_bundle(bundle)
    with pytest.raises(BundleError, match="overlay has no DMA 'hier_0/axi_dma_0'.*its IPs: accel/dma_0"):
        Accelerator(bundle, overlay=_FakeOverlay(dev, "accel/dma_0"))
    dev.close()


def test_hardware_path_without_board(make_bundle):
    bundle = _hardware_bundle(make_bundle, "hier_0/axi_dma_0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pynq warns "No devices found" (once per process)
        with pytest.raises(BoardError, match="cannot load overlay"):
            Accelerator(bundle)  # a host has no PYNQ device: pynq raises "No Devices Found"


def test_interrupt_mid_batch_resets_before_next(acc, images, monkeypatch):
    calls = {"n": 0}
    real_sleep = time.sleep

    def interrupting_sleep(seconds):
        calls["n"] += 1
        raise KeyboardInterrupt

    acc.device.kernel = StallingKernel(acc.device.kernel, pass_images=0)  # keeps the S2MM busy
    monkeypatch.setattr("board.driver.time.sleep", interrupting_sleep)
    with pytest.raises(KeyboardInterrupt):
        acc.predict(images[:2])
    monkeypatch.setattr("board.driver.time.sleep", real_sleep)
    acc.device.kernel = acc.device.kernel.inner
    np.testing.assert_array_equal(acc.predict_raw(images[:2]), toy_raw(images[:2].reshape(2, -1)))
    assert calls["n"] == 1
