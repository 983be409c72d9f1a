"""board.emulated_device: the emulated AXI DMA driven by the real, unmodified ``pynq.lib.dma.DMA``."""

from __future__ import annotations

import time

import numpy as np
import pytest

pynq = pytest.importorskip("pynq")

from board_toys import N_IN, N_OUT, toy_raw  # noqa: E402
from pynq.buffer import PynqBuffer  # noqa: E402
from pynq.lib.dma import DMA, _SDMAChannel  # noqa: E402

from board.emulated_device import CSimKernel, EmulatedDevice, FunctionKernel, StallingKernel  # noqa: E402
from board.errors import BundleError  # noqa: E402
from board.fixed_point import FixedPoint  # noqa: E402

IN_T, OUT_T = FixedPoint.parse("ap_ufixed<8,0>"), FixedPoint.parse("ap_fixed<16,6>")


@pytest.fixture
def kernel(toy_so):
    return CSimKernel(toy_so, "toy_float", N_IN, N_OUT, IN_T, OUT_T)


@pytest.fixture
def rig(kernel):
    """(device, dma, in_buf, out_buf) for up to 8 images."""
    dev = EmulatedDevice(kernel)
    dma = dev.make_dma()
    inb = pynq.allocate((8, N_IN), np.uint8, target=dev)
    outb = pynq.allocate((8, N_OUT), np.int16, target=dev)
    yield dev, dma, inb, outb
    dev.close()


def _poll(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.002)
    return False


def _raw(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, N_IN), dtype=np.uint8)


def test_real_pynq_dma_class(rig):
    dev, dma, inb, _ = rig
    assert type(dma) is DMA and isinstance(dma.sendchannel, _SDMAChannel)
    assert dev.has_capability("REGISTER_RW") and not dev.has_capability("MEMORY_MAPPED")
    assert isinstance(inb, PynqBuffer) and inb.physical_address % 4096 == 0
    assert dma.buffer_max_size == (1 << 26) - 1


def test_csim_kernel_matches_reference(kernel):
    x = _raw(5)
    np.testing.assert_array_equal(kernel.run(x), toy_raw(x))
    assert kernel.run(x).dtype == np.int16


def test_one_transfer_batch_equals_kernel(rig, kernel):
    dev, dma, inb, outb = rig
    x = _raw(7, seed=3)
    inb[:7] = x
    dma.recvchannel.transfer(outb, nbytes=7 * N_OUT * 2)
    dma.sendchannel.transfer(inb, nbytes=7 * N_IN)
    dma.sendchannel.wait()
    dma.recvchannel.wait()  # returns: the IP asserted TLAST after the 7th image
    assert dma.recvchannel.transferred == 7 * N_OUT * 2
    np.testing.assert_array_equal(outb[:7], kernel.run(x))
    assert dev.images_processed == 7
    assert [t[2] for t in dev.transfers] == [140, 7 * N_IN]


def test_cache_model_needs_flush_and_invalidate(rig):
    dev, dma, inb, outb = rig
    x = _raw(1, seed=5)
    inb[:1] = x
    # Start MM2S by hand, without pynq's flush: the DMA reads stale (zero) DDR, not the host's cache.
    dma.recvchannel.transfer(outb, nbytes=N_OUT * 2)
    dma.mmio.write(0x18, inb.physical_address)
    dma.mmio.write(0x28, N_IN)
    assert _poll(lambda: dma.recvchannel.idle)
    np.testing.assert_array_equal(outb[0], 0)  # not invalidated yet: the host still sees its old copy
    outb.invalidate()
    np.testing.assert_array_equal(outb[0], toy_raw(np.zeros((1, N_IN), np.uint8))[0])


def test_pynq_refuses_transfer_above_max_length(toy_so, kernel):
    dev = EmulatedDevice(kernel, {"length_width_bits": 14})
    dma = dev.make_dma()
    assert dma.buffer_max_size == 16383
    inb = pynq.allocate((6, N_IN), np.uint8, target=dev)
    with pytest.raises(ValueError, match="exceeds"):
        dma.sendchannel.transfer(inb)  # 18432 bytes > 16383
    dev.close()


def test_address_outside_buffers_is_decode_error(rig):
    dev, dma, _, _ = rig
    bogus = PynqBuffer((N_IN,), np.uint8, device=dev, device_address=0x0100_0000, bo=0, coherent=True)
    dma.sendchannel.transfer(bogus)
    assert dma.sendchannel.error
    assert dev.status("mm2s") & 0x40 and dev.status("mm2s") & 0x1  # DMADecErr, halted
    with pytest.raises(RuntimeError):  # pynq's wait() refuses a halted channel
        dma.sendchannel.wait()


def test_zero_length_is_internal_error(rig):
    dev, dma, inb, _ = rig
    dma.mmio.write(0x18, inb.physical_address)
    dma.mmio.write(0x28, 0)
    assert dev.status("mm2s") & 0x10 and dma.sendchannel.error


def test_s2mm_buffer_smaller_than_packet_is_internal_error(rig):
    dev, dma, inb, outb = rig
    inb[:1] = _raw(1)
    dma.recvchannel.transfer(outb, nbytes=10)  # one image makes 20 bytes before TLAST
    dma.sendchannel.transfer(inb, nbytes=N_IN)
    assert _poll(lambda: dma.recvchannel.error)
    assert dev.status("s2mm") & 0x10


def test_stalled_kernel_keeps_s2mm_busy(rig, kernel):
    dev, dma, inb, outb = rig
    dev.kernel = StallingKernel(kernel, pass_images=1)
    inb[:3] = _raw(3)
    dma.recvchannel.transfer(outb, nbytes=3 * N_OUT * 2)
    dma.sendchannel.transfer(inb, nbytes=3 * N_IN)
    dma.sendchannel.wait()
    assert _poll(lambda: dev.images_processed == 1)
    time.sleep(0.05)
    assert not dma.recvchannel.idle and not dma.recvchannel.error  # a real wait() would hang here


def test_tlast_follows_the_image_that_carried_it(rig, kernel):
    """hls4ml's wrapper: TLAST in the middle of an image marks that image; its output ends the packet."""
    dev, dma, inb, outb = rig
    x = _raw(2, seed=9)
    inb[:2] = x
    dma.recvchannel.transfer(outb, nbytes=2 * N_OUT * 2)
    half = N_IN // 2
    dma.sendchannel.transfer(inb, nbytes=N_IN + half)  # image 0 and half of image 1, TLAST mid image 1
    dma.sendchannel.wait()
    assert _poll(lambda: dev.images_processed == 1)
    assert not dma.recvchannel.idle  # image 0's output carries no TLAST
    dma.sendchannel.transfer(inb, start=N_IN + half, nbytes=N_IN - half)
    dma.sendchannel.wait()
    assert _poll(lambda: dma.recvchannel.idle)
    dma.recvchannel.wait()
    assert dma.recvchannel.transferred == 40
    np.testing.assert_array_equal(outb[:2], kernel.run(x))


def test_soft_reset_recovers_from_error(rig, kernel):
    dev, dma, inb, outb = rig
    dev.inject_fault("s2mm", "slave")
    dma.recvchannel.transfer(outb, nbytes=N_OUT * 2)
    assert dev.status("s2mm") & 0x20 and dma.recvchannel.error
    dma.mmio.write(0x00, 0x4)  # DMACR.Reset: both channels, errors cleared
    assert dev.status("s2mm") == 0x1 and dev.status("mm2s") == 0x1  # halted, no errors
    dma.sendchannel.start()
    dma.recvchannel.start()
    x = _raw(1, seed=11)
    inb[:1] = x
    dma.recvchannel.transfer(outb, nbytes=N_OUT * 2)
    dma.sendchannel.transfer(inb, nbytes=N_IN)
    dma.sendchannel.wait()
    assert _poll(lambda: dma.recvchannel.idle)
    dma.recvchannel.wait()
    np.testing.assert_array_equal(outb[0], kernel.run(x)[0])


def test_kernel_exception_stalls_and_is_recorded(rig):
    dev, dma, inb, outb = rig

    def boom(raw):
        raise RuntimeError("segfault stand-in")

    dev.kernel = FunctionKernel(boom, N_IN, N_OUT)
    dma.recvchannel.transfer(outb, nbytes=N_OUT * 2)
    dma.sendchannel.transfer(inb, nbytes=N_IN)
    assert _poll(lambda: dev.kernel_error is not None)
    assert "segfault stand-in" in str(dev.kernel_error) and not dma.recvchannel.idle


def test_freed_buffer_address_no_longer_decodes(kernel):
    dev = EmulatedDevice(kernel)
    buf = dev.allocate((16,), np.uint8)
    addr = buf.physical_address
    assert dev._resolve(addr, 16) is not None
    del buf
    assert dev._resolve(addr, 16) is None
    dev.close()


def test_csim_kernel_refuses_off_grid_outputs(toy_so):
    bad = CSimKernel(toy_so, "toy_bad", N_IN, N_OUT, IN_T, OUT_T)
    with pytest.raises(BundleError, match="not ap_fixed<16,6> codes"):
        bad.run(_raw(1))


def test_csim_kernel_load_errors(toy_so, tmp_path):
    with pytest.raises(BundleError, match="no function"):
        CSimKernel(toy_so, "nope", N_IN, N_OUT, IN_T, OUT_T)
    with pytest.raises(BundleError, match="cannot load"):
        CSimKernel(tmp_path / "missing.so", "toy_float", N_IN, N_OUT, IN_T, OUT_T)
    with pytest.raises(BundleError, match="24 bits"):
        CSimKernel(toy_so, "toy_float", N_IN, N_OUT, IN_T, FixedPoint.parse("ap_fixed<32,16>"))
