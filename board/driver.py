"""The accelerator driver: uint8 CIFAR-10 images in, logits out, through the overlay's AXI DMA.

:class:`Accelerator` drives one overlay bundle, on the board (``pynq.Overlay`` of the bundle's bitstream) or,
for an emulated bundle, on :class:`board.emulated_device.EmulatedDevice`. Both paths use the same code: the real
``pynq.lib.dma.DMA`` driver and ``pynq.allocate`` buffers. Behind the emulated device, the firmware is computed by
one of two engines (:data:`ENGINES`, the attribute :attr:`Accelerator.engine` says which ran): the bit-exact numpy
fast engine (:mod:`board.fast_engine`, the default when the bundle carries its firmware graph, as for
``python -m board bench --engine auto``) or the hls4ml C-simulation (``engine="csim"``, a few hundred times slower).

What one call does:

1. validate the input before anything touches the hardware (shape ``(N, 32, 32, 3)`` or one image, uint8 or
   whole numbers in [0, 255], no NaN), raising :class:`~board.errors.InputError`;
2. encode pixels to raw stream codes with one table lookup (the manifest's preprocessing, then the input
   fixed-point type's rounding/overflow, as the hardware would see them);
3. split the images into batches no larger than ``batch_size`` and the DMA's maximum transfer, and for each
   batch: copy into the input buffer (allocated once, reused), arm the S2MM for ``B * n_out`` elements, send
   ``B * n_in`` elements as ONE MM2S transfer (TLAST on its last beat; the IP ends the output packet after the
   last image), and poll both channels with a deadline. ``pynq``'s ``wait()`` has no timeout and a stalled
   stream would hang it forever, so the driver polls ``DMASR`` itself, raises :class:`~board.errors.DmaError`
   for error bits and :class:`~board.errors.DmaTimeoutError` past the deadline, and only calls ``wait()`` once
   the channel is idle (it then returns at once, after invalidating the receive buffer's cache lines);
4. decode raw outputs with the output fixed-point type.

A failed transfer leaves the hls4ml IP (``ap_ctrl_none``, no reset of its own) holding partial data, so after an
error the next call first resets the overlay (re-downloads the bitstream; the emulated device models that).
A lock serialises batches from several threads, and every batch's DMA round trip is timed for benchmarks.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np

from board.bundle import Bundle, load_bundle
from board.errors import BoardError, BundleError, DmaError, DmaTimeoutError, InputError, ToolMissingError
from board.fixed_point import FixedPoint
from board.preprocess import Preprocessing, encode_pixels, pixel_lut, validate_pixels

__all__ = [
    "ENGINES",
    "ENGINE_DESCRIPTIONS",
    "Accelerator",
    "BatchTiming",
    "default_timeout_s",
    "describe_dmasr",
    "resolve_engine",
]

log = logging.getLogger(__name__)

# PG021: the S2MM registers sit 0x30 above the MM2S ones; DMASR is at +0x04.
_MM2S, _S2MM, _DMASR = 0x00, 0x30, 0x04
_SR_HALTED, _SR_IDLE = 0x1, 0x2
_SR_ERRORS = {
    0x10: "DMA internal error (DMAIntErr: zero length, or a stream packet longer than the buffer)",
    0x20: "DMA slave error (DMASlvErr: the memory-map interface could not access the buffer)",
    0x40: "DMA decode error (DMADecErr: invalid address)",
}
_DEFAULT_IP_NAME = "hier_0/axi_dma_0"

#: Engines of an emulated overlay: ``fast`` (bit-exact numpy engine), ``csim`` (hls4ml C-simulation) or ``auto``
#: (fast when the bundle carries its firmware graph, else the C-simulation).
ENGINES = ("auto", "fast", "csim")
#: What :attr:`Accelerator.engine` names, in words (for notebooks, reports and logs).
ENGINE_DESCRIPTIONS = {
    "hardware": "the FPGA, through the AXI DMA",
    "fast": (
        "host emulation by board.fast_engine: bit-exact numpy emulation of the hls4ml firmware (the C-simulation's "
        "fixed-point types, rounding, saturation and accumulators), behind the same emulated DMA device"
    ),
    "csim": "host emulation by the hls4ml C-simulation of the AXI top function (compiled with g++)",
}


def resolve_engine(bundle: Bundle, engine: str = "auto") -> str:
    """``fast`` or ``csim`` for an emulated bundle (``auto``: fast when the bundle carries its firmware graph).

    Raises:
        InputError: an unknown engine, or ``fast`` for a bundle without a firmware graph.
    """
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {ENGINES}, got {engine!r}")
    has_graph = bool(bundle.manifest.hls.get("firmware_graph"))
    if engine == "auto":
        return "fast" if has_graph else "csim"
    if engine == "fast" and not has_graph:
        raise InputError(
            f"{bundle.root} carries no firmware graph for the fast engine: rebuild it with `python -m hls_build "
            "bundle`, or use engine csim"
        )
    return engine


def _kernel_engine(kernel: Any) -> str:
    """The engine name of an injected emulated device's kernel (its class name when it is neither engine)."""
    from board.emulated_device import CSimKernel
    from board.fast_engine import FastEngine

    if isinstance(kernel, FastEngine):
        return "fast"
    if isinstance(kernel, CSimKernel):
        return "csim"
    return type(kernel).__name__


def describe_dmasr(status: int) -> str:
    """Human-readable summary of a DMASR value."""
    parts = [text for bit, text in _SR_ERRORS.items() if status & bit]
    parts.append("halted" if status & _SR_HALTED else "idle" if status & _SR_IDLE else "busy")
    return ", ".join(parts)


def default_timeout_s(images: int, emulated: bool) -> float:
    """Deadline for one batch when the caller gives none.

    On the board an hls4ml ResNet takes milliseconds per image, so seconds mean a stall. The C-simulation runs
    about 1-30 images/s on a host core, so the emulated deadline is generous.
    """
    return 30.0 + 5.0 * images if emulated else 2.0 + 0.2 * images


@dataclass(frozen=True)
class BatchTiming:
    """One DMA round trip.

    Attributes:
        images: images in the batch.
        seconds: from starting the transfers to both channels done, cache maintenance included
            (``submit_s + wait_s``).
        copy_in_s: copying the batch's raw codes into the DMA input buffer (before ``seconds`` starts).
        submit_s: arming the S2MM and starting the MM2S (pynq's ``transfer``: cache flush and register writes).
        wait_s: polling both channels until done, then pynq's ``wait`` (cache invalidate, length read-back).
        copy_out_s: copying the outputs out of the reused DMA output buffer (after ``seconds`` ends).
    """

    images: int
    seconds: float
    copy_in_s: float = 0.0
    submit_s: float = 0.0
    wait_s: float = 0.0
    copy_out_s: float = 0.0


class Accelerator:
    """Runs CIFAR-10 images through an overlay bundle's accelerator.

    Attributes:
        bundle: the verified bundle.
        emulated: True when running on the emulated device.
        engine: what computes the outputs: ``hardware`` (the FPGA), or for an emulated bundle ``fast`` (bit-exact
            numpy engine) or ``csim`` (hls4ml C-simulation); an injected device's kernel class name otherwise.
        batch_size: images per DMA transfer actually used (the requested size, capped by the DMA's maximum).
        max_batch_images: the most images one DMA transfer can carry.
        timeout_s: per-batch deadline override, or None for :func:`default_timeout_s`.
        device: the pynq device (the emulated one, or the overlay's).
        dma: the ``pynq.lib.dma.DMA`` driver.
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        batch_size: int = 100,
        timeout_s: float | None = None,
        overlay: Any | None = None,
        device: Any | None = None,
        download: bool = True,
        engine: str = "auto",
    ) -> None:
        """Open the accelerator and allocate its DMA buffers once.

        Args:
            bundle: a verified bundle (:func:`board.bundle.load_bundle`).
            batch_size: images per DMA transfer (capped by the DMA's maximum transfer length).
            timeout_s: deadline for one batch; default :func:`default_timeout_s`.
            overlay: hardware only: an already loaded ``pynq.Overlay`` (default: load the bundle's bitstream).
            device: emulated only: an :class:`~board.emulated_device.EmulatedDevice` to use (default: one running
                ``engine``). An injected device is not closed by :meth:`close`.
            download: hardware only: download the bitstream when loading it.
            engine: emulated only, one of :data:`ENGINES`: ``auto`` (default: the fast engine when the bundle
                carries its firmware graph, else the C-simulation), ``fast`` or ``csim``.

        Raises:
            BundleError: the manifest is inconsistent (types, shapes, DMA limits, IP name) or its files unusable.
            ToolMissingError: ``pynq`` is not installed.
            BoardError: the overlay cannot be loaded.
            InputError: ``batch_size`` < 1, an unknown engine, ``engine="fast"`` for a bundle without a firmware
                graph, or an engine other than ``auto`` together with ``device``.
        """
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if engine not in ENGINES:
            raise InputError(f"engine must be one of {ENGINES}, got {engine!r}")
        m = bundle.manifest
        self.bundle = bundle
        self.emulated = bool(m.emulated)
        self.timeout_s = timeout_s
        try:
            self._in_type = FixedPoint.parse(m.input.fixed_point)
            self._out_type = FixedPoint.parse(m.output.fixed_point)
            self.in_dtype, self.out_dtype = np.dtype(m.input.container), np.dtype(m.output.container)
        except (ValueError, TypeError) as exc:
            raise BundleError(f"{bundle.root}: bad stream type in manifest: {exc}") from exc
        for what, t, dt in (("input", self._in_type, self.in_dtype), ("output", self._out_type, self.out_dtype)):
            if dt.kind not in "iu" or dt.itemsize * 8 < t.width or dt.itemsize > 4:
                raise BundleError(f"{bundle.root}: {what} container {dt} cannot carry {t}")
        self.image_shape = tuple(int(s) for s in m.input.shape)
        self.output_shape = tuple(int(s) for s in m.output.shape)
        self.n_in, self.n_out = int(np.prod(self.image_shape)), int(np.prod(self.output_shape))
        self.preprocessing = Preprocessing.from_dict(m.preprocessing)
        self._lut, exact = pixel_lut(self.preprocessing, self._in_type, self.in_dtype)
        # ap_ufixed<8,0> with pixel/256 preprocessing: the raw code is the pixel itself, so encoding is free.
        self._identity_lut = self.in_dtype == np.uint8 and np.array_equal(self._lut, np.arange(256, dtype=np.uint8))
        if not exact:
            log.warning(
                "preprocessed pixels are not all exact %s codes; they are quantized as the IP would", self._in_type
            )

        self._owns_device = False
        self._overlay = None
        if self.emulated:
            if overlay is not None:
                raise BundleError(f"{bundle.root}: bundle is emulated; overlay= is for bundles with a bitstream")
            try:
                from board.emulated_device import EmulatedDevice
            except ImportError as exc:
                raise ToolMissingError(f"the emulated overlay needs pynq (pip install pynq==4.0.0): {exc}") from exc
            if device is None:
                self.engine = resolve_engine(bundle, engine)
                if self.engine == "fast":
                    from board.fast_engine import FastEngine

                    device = EmulatedDevice.from_bundle(bundle, kernel=FastEngine.from_bundle(bundle))
                else:
                    device = EmulatedDevice.from_bundle(bundle)
                self._owns_device = True
            elif engine != "auto":
                raise InputError(f"engine={engine!r} and device= exclude each other: the device brings its kernel")
            else:
                self.engine = _kernel_engine(device.kernel)
            self.device, self.dma = device, device.make_dma()
        else:
            if engine != "auto":
                raise InputError(f"engine={engine!r} is for emulated bundles; {bundle.root} has a bitstream")
            self.engine = "hardware"
            self._overlay, self.dma = self._open_hardware(overlay, download)
            self.device = getattr(self._overlay, "device", None)
        try:
            self._setup_buffers(batch_size)
        except BaseException:
            if self._owns_device:
                self.device.close()
            raise
        self._lock = threading.Lock()
        # Bounded, so a long-running service that never reads its timings does not grow without limit.
        self._timings: deque[BatchTiming] = deque(maxlen=100_000)
        self._failure: str | None = None
        self._closed = False

    def _setup_buffers(self, batch_size: int) -> None:
        m = self.bundle.manifest
        if self.dma.sendchannel is None or self.dma.recvchannel is None:
            raise BundleError(f"{self.bundle.root}: the DMA needs both MM2S and S2MM channels")

        limit = min(int(m.dma.get("max_transfer_bytes", self.dma.buffer_max_size)), int(self.dma.buffer_max_size))
        per_image = max(self.n_in * self.in_dtype.itemsize, self.n_out * self.out_dtype.itemsize)
        self.max_batch_images = limit // per_image
        if self.max_batch_images < 1:
            raise BundleError(
                f"{self.bundle.root}: one image needs {per_image} bytes, over the DMA's {limit}-byte maximum"
            )
        self.batch_size = min(int(batch_size), self.max_batch_images)
        if self.batch_size < batch_size:
            log.info(
                "batch size %d capped to %d images (DMA max transfer %d bytes)", batch_size, self.batch_size, limit
            )

        import pynq  # present: the DMA above came from it

        self._in_buf = pynq.allocate((self.batch_size, self.n_in), self.in_dtype, target=self.device)
        self._out_buf = pynq.allocate((self.batch_size, self.n_out), self.out_dtype, target=self.device)

    @property
    def engine_description(self) -> str:
        """What computes the outputs, in words: the FPGA, or which host-emulation engine (see :attr:`engine`)."""
        return ENGINE_DESCRIPTIONS.get(self.engine, f"host emulation: an injected kernel ({self.engine})")

    @classmethod
    def open(cls, path: str | os.PathLike, **kwargs: Any) -> Accelerator:
        """Load and verify the bundle at ``path``, then open it (keyword arguments as for the constructor)."""
        return cls(load_bundle(path), **kwargs)

    def _open_hardware(self, overlay: Any | None, download: bool) -> tuple[Any, Any]:
        m = self.bundle.manifest
        try:
            import pynq
        except ImportError as exc:
            raise ToolMissingError(f"driving the board needs pynq (pip install pynq==4.0.0): {exc}") from exc
        if overlay is None:
            if not m.bitstream:
                raise BundleError(f"{self.bundle.root}: bundle is not emulated but has no bitstream")
            bit = self.bundle.path(m.bitstream)
            # Check the .bit's part and the .hwh (a handoff of this board's design, with a DMA the driver can
            # program) before pynq reads them: a wrong file then fails with its name and what is wrong with it.
            from board.hwh import check_hardware_files
            from board.registry import ensure_fresh_hwh_cache

            try:
                check_hardware_files(self.bundle)
            except BundleError as exc:
                raise BundleError(f"cannot load overlay {bit}: {exc}") from exc
            # pynq reuses metadata it cached for the same bitstream without reading the .hwh: clear it if stale.
            ensure_fresh_hwh_cache(self.bundle, action="clear")
            try:
                overlay = pynq.Overlay(str(bit), download=download)
            except (RuntimeError, OSError, ValueError) as exc:
                raise BoardError(f"cannot load overlay {bit}: {exc}") from exc
        ip_name = str(m.dma.get("ip_name", _DEFAULT_IP_NAME))
        ip_dict = getattr(overlay, "ip_dict", None) or {}
        if ip_name not in ip_dict:
            # Vivado names the DMA after the block design (hls4ml's PYNQ-Z2 design: hier_0/axi_dma_0; others put
            # axi_dma_0 at the top): take the overlay's only AXI DMA when the manifest's name is not there.
            from board.hwh import find_dma_in_ip_dict

            try:
                found = find_dma_in_ip_dict(ip_dict, ip_name)
            except BundleError:
                found = None  # the lookup below says what the overlay has
            if found is not None:
                log.warning("no DMA %r in the overlay (manifest dma.ip_name); using its AXI DMA %r", ip_name, found)
                ip_name = found
        try:
            dma = reduce(getattr, ip_name.split("/"), overlay)
        except (AttributeError, RuntimeError) as exc:
            ips = ", ".join(sorted(getattr(overlay, "ip_dict", {}))) or "none listed"
            raise BundleError(f"overlay has no DMA {ip_name!r} (manifest dma.ip_name): {exc}; its IPs: {ips}") from exc
        if not hasattr(dma, "sendchannel") or not hasattr(dma, "recvchannel"):
            raise BundleError(f"{ip_name!r} is a {type(dma).__name__}, not an AXI DMA driver")
        return overlay, dma

    # ------------------------------------------------------------------------------------------------- public
    def predict_raw(self, pixels: Any) -> np.ndarray:
        """Raw output codes for uint8 images.

        Args:
            pixels: ``(N, 32, 32, 3)`` or ``(32, 32, 3)`` images (NHWC, RGB), uint8 or whole numbers in [0, 255].

        Returns:
            ``(N, n_out)`` (or ``(n_out,)`` for one image) array of the output container dtype, the bits the IP
            wrote.

        Raises:
            InputError: bad shape, dtype or values; raised before any transfer.
            DmaError: the DMA reported an error, or received a different number of bytes than expected.
            DmaTimeoutError: a batch did not complete in time (the accelerator stalled).
        """
        raw, single = self.encode(pixels)
        out = self.run_raw(raw)
        return out[0] if single else out

    def encode(self, pixels: Any) -> tuple[np.ndarray, bool]:
        """Validate uint8 images and encode them to raw input stream codes (one table lookup).

        Returns:
            ``(raw, single)``: ``(N, n_in)`` codes of the input container dtype, and whether one image (no batch
            axis) was given.

        Raises:
            InputError: bad shape, dtype or values.
        """
        images, single = validate_pixels(pixels, self.image_shape)
        if self._identity_lut:
            return images.reshape(len(images), self.n_in), single  # a view: validate_pixels is C-contiguous
        return encode_pixels(self._lut, images), single  # per channel when the offset is (a 256 x 3 table)

    def run_raw(self, raw: np.ndarray) -> np.ndarray:
        """Stream raw input codes ``(N, n_in)`` through the accelerator in batches; return raw outputs ``(N, n_out)``.

        Raises:
            InputError: ``raw`` is not ``(N, n_in)`` of the input container dtype.
            DmaError: a DMA error or a short output packet.
            DmaTimeoutError: a batch did not complete in time.
        """
        raw = np.asarray(raw)
        if raw.ndim != 2 or raw.shape[1] != self.n_in or raw.dtype != self.in_dtype:
            raise InputError(f"raw input must be (N, {self.n_in}) {self.in_dtype}, got {raw.shape} {raw.dtype}")
        n = len(raw)
        out = np.empty((n, self.n_out), self.out_dtype)
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            out[start:stop] = self._run_batch(raw[start:stop])
        return out

    def decode(self, raw: np.ndarray) -> np.ndarray:
        """Logits (float64) from raw output codes ``(..., n_out)``, shaped ``(..., *output_shape)``."""
        raw = np.asarray(raw)
        lead = raw.shape[:-1]
        return self._out_type.decode(raw).reshape(*lead, *self.output_shape)

    def predict(self, pixels: Any) -> np.ndarray:
        """Logits (float64) for uint8 images: :meth:`predict_raw` decoded with the output fixed-point type."""
        return self.decode(self.predict_raw(pixels))

    def classify(self, pixels: Any) -> np.ndarray:
        """Predicted class indices (argmax of the logits; ties go to the lowest index, like numpy)."""
        logits = self.predict(pixels)
        return np.argmax(logits.reshape(*logits.shape[: logits.ndim - len(self.output_shape)], -1), axis=-1)

    def take_timings(self) -> list[BatchTiming]:
        """Timings of the batches run since the last call, oldest first."""
        with self._lock:
            timings = list(self._timings)
            self._timings.clear()
        return timings

    def reset(self) -> None:
        """Reset the overlay (re-download the bitstream, or reset the emulated device) and restart the DMA."""
        with self._lock:
            self._reset_locked()

    def close(self) -> None:
        """Release the DMA buffers (and the emulated device this object created). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for buf in (self._in_buf, self._out_buf):
                buf.freebuffer()
            if self._owns_device:
                self.device.close()

    def __enter__(self) -> Accelerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------------- internals
    def _reset_locked(self) -> None:
        if self.emulated:
            self.device.reset_pl()
        else:
            self._overlay.download()
        # A fresh PL (or DMA) is halted; start() sets RS and resets pynq's first-transfer bookkeeping.
        self.dma.sendchannel.start()
        self.dma.recvchannel.start()
        self._failure = None

    def _run_batch(self, raw: np.ndarray) -> np.ndarray:
        b = len(raw)
        in_bytes, out_bytes = b * self.n_in * self.in_dtype.itemsize, b * self.n_out * self.out_dtype.itemsize
        timeout = self.timeout_s if self.timeout_s is not None else default_timeout_s(b, self.emulated)
        send, recv = self.dma.sendchannel, self.dma.recvchannel
        with self._lock:
            if self._closed:
                raise BoardError("the accelerator is closed")
            if self._failure is not None:
                log.warning("resetting the overlay after the last failure: %s", self._failure)
                self._reset_locked()
            tc = time.perf_counter()
            self._in_buf[:b] = raw
            try:
                t0 = time.perf_counter()
                deadline = time.monotonic() + timeout
                try:
                    # Arm the receiver first so the IP never waits on it, then send the whole batch at once.
                    recv.transfer(self._out_buf, nbytes=out_bytes)
                    send.transfer(self._in_buf, nbytes=in_bytes)
                except (RuntimeError, ValueError) as exc:
                    raise DmaError(f"could not start the DMA transfer of {b} images: {exc}") from exc
                t1 = time.perf_counter()
                self._wait(send, _MM2S, "MM2S (send)", in_bytes, b, deadline, timeout)
                self._wait(recv, _S2MM, "S2MM (receive)", out_bytes, b, deadline, timeout)
                t2 = time.perf_counter()
                if recv.transferred != out_bytes:
                    raise DmaError(
                        f"S2MM received {recv.transferred} bytes, expected {out_bytes} ({b} images x {self.n_out} "
                        f"{self.out_dtype}): the IP ended its output packet (TLAST) early"
                    )
            except BaseException as exc:  # Ctrl-C mid-batch too: the DMA is left busy, so reset before reuse
                self._failure = str(exc) or type(exc).__name__
                raise
            out = np.array(self._out_buf[:b])  # a plain copy: the buffer is reused by the next batch
            t3 = time.perf_counter()
            self._timings.append(BatchTiming(b, t2 - t0, t0 - tc, t1 - t0, t2 - t1, t3 - t2))
            return out

    def _wait(
        self, channel: Any, offset: int, name: str, nbytes: int, images: int, deadline: float, timeout: float
    ) -> None:
        mmio = self.dma.mmio
        started = time.perf_counter()
        while True:
            status = mmio.read(offset + _DMASR)
            if any(status & bit for bit in _SR_ERRORS):
                raise DmaError(
                    f"{name} failed on a {nbytes}-byte transfer ({images} images): {describe_dmasr(status)} "
                    f"(DMASR=0x{status:08x})"
                )
            if status & _SR_IDLE:
                try:
                    channel.wait()  # idle already: returns at once after pynq's invalidate and length read-back
                except RuntimeError as exc:
                    raise DmaError(f"{name}: {exc}") from exc
                return
            if status & _SR_HALTED:
                raise DmaError(f"{name}: channel halted without completing (DMASR=0x{status:08x})")
            if time.monotonic() > deadline:
                raise DmaTimeoutError(self._timeout_message(name, nbytes, images, timeout, status))
            # Sleep 2 % of the time waited so far (20 us to 1 ms): a board batch taking milliseconds is seen done
            # within ~2 % of its latency (a doubling back-off could overshoot by up to 100 %), while a long
            # C-simulation batch is polled about once a millisecond, leaving the CPU to the kernel.
            time.sleep(min(max(0.02 * (time.perf_counter() - started), 20e-6), 1e-3))

    def _timeout_message(self, name: str, nbytes: int, images: int, timeout: float, status: int) -> str:
        if name.startswith("S2MM"):
            what = (
                f"expected {nbytes} bytes ({images} images x {self.n_out} {self.out_dtype} elements) ending with "
                "TLAST; the accelerator stalled or produced fewer outputs than expected"
            )
        else:
            what = f"{nbytes} bytes ({images} images) were not accepted; the accelerator does not consume its input"
        msg = f"{name} did not complete within {timeout:g} s: {what} (DMASR=0x{status:08x}, {describe_dmasr(status)})"
        kernel_error = getattr(self.device, "kernel_error", None)
        if kernel_error is not None:
            msg += f"; the emulated kernel failed: {kernel_error}"
        return msg + ". The overlay is reset before the next batch."
