"""An emulated overlay: a ``pynq.Device`` with an AXI DMA register file and an AXI-Stream kernel behind it.

Without a board (or Vivado) there is no bitstream, yet the driver should run the very code paths it runs on the
board: the real, unmodified ``pynq.lib.dma.DMA`` talking to registers, ``pynq.allocate`` buffers with physical
addresses, cache flushes and invalidates. :class:`EmulatedDevice` is the smallest ``pynq.Device`` that makes that
possible (pynq ships no simulation device):

* capability ``REGISTER_RW``: ``pynq.MMIO`` then routes every register access through
  :meth:`EmulatedDevice.read_registers` / :meth:`EmulatedDevice.write_registers`;
* :meth:`EmulatedDevice.allocate` returns real ``pynq.buffer.PynqBuffer`` objects backed by host memory, each with
  a fake, unique, page-aligned physical address that the DMA model resolves. Buffers are *cacheable* like on
  the Zynq's HP ports: the "DDR" the DMA sees is a separate copy that only ``flush()`` writes and only
  ``invalidate()`` reads back, so a driver that forgets either gets stale data here as it would on the board;
* an AXI DMA (PG021) in simple mode at ``dma_base``: MM2S_DMACR 0x00, MM2S_DMASR 0x04 (halted, idle, DMAIntErr,
  DMASlvErr, DMADecErr, IOC_Irq), MM2S_SA 0x18/0x1C, MM2S_LENGTH 0x28, and the S2MM set at +0x30. Writing RS
  clears halted, writing LENGTH starts a transfer, DMACR.Reset resets both channels, errors halt the channel;
* the kernel between MM2S and S2MM behaves like hls4ml's VivadoAccelerator ``axi_stream`` wrapper
  (``ap_ctrl_none``, free running): it consumes ``n_in`` elements per image, and asserts TLAST only on the last
  output element of an image whose input carried TLAST. A simple-mode MM2S transfer asserts TLAST on its final
  beat, so a batch sent as one transfer comes back as one S2MM packet. S2MM completes on TLAST (LENGTH then reads
  the bytes received), raises DMAIntErr when data keeps coming after its buffer is full, and otherwise stays busy,
  as a real ``wait()`` would hang.

The kernel runs on a worker thread, so the DMA is asynchronous as on hardware and the driver's polling and
timeouts are exercised for real. Kernels are pluggable (:class:`Kernel`): :class:`CSimKernel` runs the bundle's
hls4ml C-simulation library through ctypes; :class:`FunctionKernel` wraps numpy code; :class:`StallingKernel`
and :meth:`EmulatedDevice.inject_fault` inject faults for tests.

Simplifications: MM2S completes as soon as its data is read (the stream is infinitely buffered, so there is no
back-pressure on the sender); a DMA soft reset clears the DMA's state but, as on hardware, not the kernel's (a
partial image stays inside it): :meth:`EmulatedDevice.reset_pl` models re-downloading the bitstream.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pynq.buffer import PynqBuffer
from pynq.lib.dma import DMA
from pynq.pl_server.device import Device

from board.bundle import Bundle
from board.csim_bridge import CSimBridge
from board.errors import BundleError
from board.fixed_point import FixedPoint

__all__ = [
    "CSimKernel",
    "DEFAULT_DMA_BASE",
    "EmulatedDevice",
    "FunctionKernel",
    "Kernel",
    "StallingKernel",
    "dma_config_from_manifest",
]

log = logging.getLogger(__name__)

#: Where the PYNQ-Z2 block designs usually map the AXI DMA.
DEFAULT_DMA_BASE = 0x4040_0000
#: Address range of the AXI DMA's register file.
DMA_ADDR_RANGE = 0x1_0000
#: First fake physical address handed out by :meth:`EmulatedDevice.allocate` (inside the Zynq's DDR window).
_PHYS_BASE = 0x1800_0000
_PAGE = 0x1000

# PG021 register offsets within a channel (S2MM is at +0x30) and bits.
MM2S, S2MM = 0x00, 0x30
DMACR, DMASR, ADDR, ADDR_MSB, LENGTH = 0x00, 0x04, 0x18, 0x1C, 0x28
CR_RS, CR_RESET = 1 << 0, 1 << 2
SR_HALTED, SR_IDLE = 1 << 0, 1 << 1
SR_INT_ERR, SR_SLV_ERR, SR_DEC_ERR = 1 << 4, 1 << 5, 1 << 6
SR_IOC_IRQ, SR_DLY_IRQ, SR_ERR_IRQ = 1 << 12, 1 << 13, 1 << 14
_IRQ_BITS = SR_IOC_IRQ | SR_DLY_IRQ | SR_ERR_IRQ
FAULTS = {"internal": SR_INT_ERR, "slave": SR_SLV_ERR, "decode": SR_DEC_ERR}

#: Stack of the kernel worker thread.
_WORKER_STACK_BYTES = 64 * 1024 * 1024
#: Images per kernel call on the worker thread: small enough that a reset or close is noticed quickly.
_CHUNK_IMAGES = 16


# --------------------------------------------------------------------------------------------------------- kernels
@runtime_checkable
class Kernel(Protocol):
    """An AXI-Stream accelerator as the emulated DMA sees it.

    Attributes:
        n_in: input stream elements per image.
        n_out: output stream elements per image.
        in_dtype: numpy container of one input element (the MM2S TDATA word).
        out_dtype: numpy container of one output element (the S2MM TDATA word).
    """

    n_in: int
    n_out: int
    in_dtype: np.dtype
    out_dtype: np.dtype

    def run(self, raw_in: np.ndarray) -> np.ndarray:
        """Process ``raw_in`` of shape ``(B, n_in)``; return raw outputs ``(B, n_out)``.

        A kernel may return fewer rows than images: the missing images' outputs never reach the stream, which is
        how a stalled accelerator looks to the DMA.
        """
        ...


class FunctionKernel:
    """A kernel from a numpy function on raw codes (tests, toy models)."""

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        n_in: int,
        n_out: int,
        in_dtype: np.dtype | str = "uint8",
        out_dtype: np.dtype | str = "int16",
    ) -> None:
        """Wrap ``fn(raw_in (B, n_in)) -> raw_out (B, n_out)``."""
        self.fn, self.n_in, self.n_out = fn, int(n_in), int(n_out)
        self.in_dtype, self.out_dtype = np.dtype(in_dtype), np.dtype(out_dtype)

    def run(self, raw_in: np.ndarray) -> np.ndarray:
        """Apply the function."""
        return np.asarray(self.fn(raw_in)).astype(self.out_dtype, copy=False)


class StallingKernel:
    """Fault injection: passes the first ``pass_images`` images to ``inner``, then never produces output again."""

    def __init__(self, inner: Kernel, pass_images: int = 0) -> None:
        """Wrap ``inner``; it stalls after ``pass_images`` images."""
        self.inner, self.remaining = inner, int(pass_images)
        self.n_in, self.n_out, self.in_dtype, self.out_dtype = inner.n_in, inner.n_out, inner.in_dtype, inner.out_dtype

    def run(self, raw_in: np.ndarray) -> np.ndarray:
        """Run at most the remaining number of images."""
        k = min(self.remaining, len(raw_in))
        self.remaining -= k
        if k == 0:
            return np.empty((0, self.n_out), self.out_dtype)
        return self.inner.run(raw_in[:k])


class CSimKernel:
    """The bundle's hls4ml C-simulation library, called through ctypes one image at a time.

    The library's bridge (:class:`board.csim_bridge.CSimBridge`: the ``_double`` twin of the manifest's float entry
    when present) runs one image through the AXI top function: input values are converted to the input AXI type
    exactly, output values are the output AXI values exactly. Raw codes are turned into values and back with
    :mod:`board.fixed_point`; the bridge's floating type holds every code of the stream types exactly (checked
    here, and on every output).
    """

    def __init__(
        self,
        library: str | Path,
        entry: str,
        n_in: int,
        n_out: int,
        in_type: FixedPoint,
        out_type: FixedPoint,
        in_dtype: np.dtype | str | None = None,
        out_dtype: np.dtype | str | None = None,
    ) -> None:
        """Load the library.

        Args:
            library: path of the shared library.
            entry: name of the ``extern "C"`` float entry point (its ``_double`` twin is used when present).
            n_in: input elements per image.
            n_out: output elements per image.
            in_type: fixed-point type of the input stream.
            out_type: fixed-point type of the output stream.
            in_dtype: container of one input element (default: ``in_type``'s).
            out_dtype: container of one output element (default: ``out_type``'s).

        Raises:
            BundleError: a type is wider than the bridge carries exactly, or the library or its entry point cannot
                be loaded.
        """
        self.library, self.entry = Path(library), entry
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.in_type, self.out_type = in_type, out_type
        self.in_dtype = np.dtype(in_dtype) if in_dtype is not None else in_type.container_dtype
        self.out_dtype = np.dtype(out_dtype) if out_dtype is not None else out_type.container_dtype
        self._bridge = CSimBridge(self.library, entry, self.n_in, self.n_out)
        for what, t in (("input", in_type), ("output", out_type)):
            if t.width > self._bridge.max_exact_bits:
                raise BundleError(
                    f"{what} type {t} is wider than {self._bridge.max_exact_bits} bits; the C-simulation's "
                    f"{self._bridge.name} entry point does not carry it exactly"
                )
        self._lock = threading.Lock()

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> CSimKernel:
        """The C-simulation kernel named by a bundle's manifest.

        Raises:
            BundleError: the manifest names no library or entry point, or a type string is malformed.
        """
        m = bundle.manifest
        if not m.csim_library or not m.csim_entry:
            raise BundleError(f"{bundle.root}: emulated bundle names no csim_library/csim_entry")
        try:
            in_type, out_type = FixedPoint.parse(m.input.fixed_point), FixedPoint.parse(m.output.fixed_point)
        except ValueError as exc:
            raise BundleError(f"{bundle.root}: {exc}") from exc
        return cls(
            bundle.path(m.csim_library),
            m.csim_entry,
            int(np.prod(m.input.shape)),
            int(np.prod(m.output.shape)),
            in_type,
            out_type,
            m.input.container,
            m.output.container,
        )

    def run_float(self, x: np.ndarray) -> np.ndarray:
        """Run input values ``(B, n_in)`` through the C function; return float64 output values ``(B, n_out)``."""
        with self._lock:  # the library's static state (line buffers, stream counters) is per process
            return self._bridge(np.asarray(x, np.float64))

    def run(self, raw_in: np.ndarray) -> np.ndarray:
        """Raw input codes ``(B, n_in)`` -> raw output codes ``(B, n_out)``.

        Raises:
            ValueError: ``raw_in`` has the wrong shape.
            BundleError: an output is not a code of the output type (library and manifest disagree).
        """
        raw_in = np.asarray(raw_in)
        if raw_in.ndim != 2 or raw_in.shape[1] != self.n_in:
            raise ValueError(f"expected raw input of shape (B, {self.n_in}), got {raw_in.shape}")
        y = self.run_float(self.in_type.decode(raw_in))
        ok = self.out_type.representable(y)
        if not np.all(ok):
            bad = y[~ok][:3]
            raise BundleError(
                f"{self.library.name}:{self.entry} returned values that are not {self.out_type} codes (e.g. "
                f"{', '.join(repr(float(v)) for v in bad)}); the library does not match the manifest's output type"
            )
        return self.out_type.encode(y, dtype=self.out_dtype)


# ----------------------------------------------------------------------------------------------------- DMA model
def dma_config_from_manifest(dma: Mapping[str, Any], in_dtype: np.dtype, out_dtype: np.dtype) -> dict[str, Any]:
    """Normalise a manifest's ``dma`` section, filling defaults from the stream containers.

    Returns:
        Dict with ``length_width_bits``, ``max_transfer_bytes``, ``mm2s_data_width_bits``,
        ``s2mm_data_width_bits``, ``ip_name`` and ``phys_addr``.
    """
    lw = int(dma.get("length_width_bits", 26))
    return {
        "length_width_bits": lw,
        "max_transfer_bytes": min(int(dma.get("max_transfer_bytes", (1 << lw) - 1)), (1 << lw) - 1),
        "mm2s_data_width_bits": int(dma.get("mm2s_data_width_bits", np.dtype(in_dtype).itemsize * 8)),
        "s2mm_data_width_bits": int(dma.get("s2mm_data_width_bits", np.dtype(out_dtype).itemsize * 8)),
        "ip_name": str(dma.get("ip_name", "hier_0/axi_dma_0")),
        "phys_addr": int(dma.get("phys_addr", DEFAULT_DMA_BASE)),
    }


class _Channel:
    """Register state of one DMA channel."""

    def __init__(self, name: str, offset: int) -> None:
        self.name, self.offset = name, offset
        self.reset()

    def reset(self) -> None:
        self.dmacr = 0x0001_0000  # reset value: IRQThreshold = 1
        self.halted, self.idle, self.busy = True, False, False
        self.errors = self.irq = 0
        self.addr = self.addr_msb = self.length = 0
        self.dest = self.capacity = self.received = 0  # S2MM transfer in progress

    @property
    def status(self) -> int:
        return int(self.halted) * SR_HALTED | int(self.idle) * SR_IDLE | self.errors | self.irq


@dataclass
class _Allocation:
    handle: int
    phys: int
    nbytes: int
    host: weakref.ref  # the host memory behind the PynqBuffer
    ddr: np.ndarray | None  # what the DMA sees; None for a coherent (non-cacheable) buffer: the host memory itself

    def memory(self) -> np.ndarray | None:
        return self.ddr if self.ddr is not None else self.host()


class EmulatedDevice(Device):
    """A ``pynq.Device`` emulating an AXI DMA (simple mode) with an AXI-Stream kernel between its channels.

    Attributes:
        kernel: the accelerator behind the DMA (may be swapped between transfers).
        register_writes: recent register writes as ``(absolute address, value)`` (bounded).
        write_count: number of register writes since creation.
        transfers: recent transfers started, as ``(channel, physical address, bytes)`` (bounded).
        images_processed: images the kernel produced outputs for.
        kernel_error: the last exception raised by the kernel (the stream stalls when it raises), or None.
    """

    # No MEMORY_MAPPED: pynq.MMIO then uses read_registers/write_registers, which this class implements.
    capabilities = {"REGISTER_RW": True}

    def __init__(self, kernel: Kernel, dma: Mapping[str, Any] | None = None, tag: str = "emulated-overlay") -> None:
        """Create the device.

        Args:
            kernel: the stream kernel.
            dma: DMA configuration (the manifest's ``dma`` section); see :func:`dma_config_from_manifest`.
            tag: pynq device tag.
        """
        super().__init__(tag)
        self.kernel = kernel
        self.dma_config = dma_config_from_manifest(dma or {}, kernel.in_dtype, kernel.out_dtype)
        self.dma_base = self.dma_config["phys_addr"]
        self._length_mask = (1 << self.dma_config["length_width_bits"]) - 1
        self._lock = threading.RLock()
        self._channels = {MM2S: _Channel("MM2S", MM2S), S2MM: _Channel("S2MM", S2MM)}
        self._scratch: dict[int, int] = {}
        self._allocs: dict[int, _Allocation] = {}
        self._handles = itertools.count(1)
        self._next_phys = _PHYS_BASE
        self._faults: dict[str, int] = {}
        # Stream state: input elements waiting to form an image (+ where TLAST was seen), and output packets
        # waiting for the S2MM as [bytes, consumed, tlast].
        self._pending = np.empty(0, kernel.in_dtype)
        self._pending_last: list[int] = []
        self._outq: deque[list] = deque()
        self._generation = 0
        self._inq: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._closed = False
        self.register_writes: deque[tuple[int, int]] = deque(maxlen=100_000)
        self.write_count = 0
        self.transfers: deque[tuple[str, int, int]] = deque(maxlen=10_000)
        self.images_processed = 0
        self.kernel_error: BaseException | None = None

    @classmethod
    def from_bundle(cls, bundle: Bundle, kernel: Kernel | None = None) -> EmulatedDevice:
        """The emulated overlay of a bundle: its C-simulation kernel (or ``kernel``) behind its DMA settings."""
        return cls(kernel if kernel is not None else CSimKernel.from_bundle(bundle), bundle.manifest.dma)

    # ------------------------------------------------------------------------------------------- pynq plumbing
    def dma_description(self) -> dict[str, Any]:
        """The ip_dict-style description from which ``pynq.lib.dma.DMA`` builds its driver."""
        cfg = self.dma_config
        return {
            "phys_addr": self.dma_base,
            "addr_range": DMA_ADDR_RANGE,
            "fullpath": cfg["ip_name"],
            "type": "xilinx.com:ip:axi_dma:7.1",
            "parameters": {
                "c_include_sg": "0",
                "c_micro_dma": "0",
                "c_sg_length_width": str(cfg["length_width_bits"]),
                "c_include_mm2s": "1",
                "c_include_s2mm": "1",
                "c_include_mm2s_dre": "0",
                "c_include_s2mm_dre": "0",
                "c_m_axi_mm2s_data_width": str(cfg["mm2s_data_width_bits"]),
                "c_m_axi_s2mm_data_width": str(cfg["s2mm_data_width_bits"]),
            },
            "interrupts": {},
            "gpio": {},
            "device": self,
        }

    def make_dma(self) -> DMA:
        """The real ``pynq.lib.dma.DMA`` driver, bound to this device."""
        return DMA(self.dma_description())

    def allocate(self, shape: Any, dtype: Any = "u4", cacheable: bool = True, **kwargs: Any) -> PynqBuffer:
        """A ``PynqBuffer`` in host memory with a fake, page-aligned, unique physical address.

        Args:
            shape: array shape.
            dtype: element type.
            cacheable: True (default, as ``pynq.allocate``): DMA sees a separate copy, synchronised by
                ``flush``/``invalidate``; False: a coherent buffer the DMA reads and writes directly.
            **kwargs: other ``pynq.allocate`` options, accepted and ignored.
        """
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        host = np.zeros(max(nbytes, 1), np.uint8)
        with self._lock:
            handle = next(self._handles)
            phys = self._next_phys
            # Round up to pages and leave a guard page, so an overrun decodes to no buffer at all.
            self._next_phys += (max(nbytes, 1) + 2 * _PAGE - 1) // _PAGE * _PAGE
            ddr = np.zeros_like(host) if cacheable else None
            self._allocs[handle] = _Allocation(handle, phys, nbytes, weakref.ref(host), ddr)
        buf = PynqBuffer(shape, dt, buffer=host, device=self, device_address=phys, bo=handle, coherent=not cacheable)
        # Views of the buffer keep `host` alive, so the allocation lives exactly as long as any of them.
        weakref.finalize(host, self._free, handle)
        return buf

    def _free(self, handle: int) -> None:
        with self._lock:
            self._allocs.pop(handle, None)

    def flush(self, bo: int, offset: int, ptr: int, size: int) -> None:
        """Write a cacheable buffer's host bytes to the memory the DMA reads (``PynqBuffer.flush``)."""
        with self._lock:
            a = self._allocs.get(bo)
            if a is not None and a.ddr is not None and (host := a.host()) is not None:
                a.ddr[offset : offset + size] = host[offset : offset + size]

    def invalidate(self, bo: int, offset: int, ptr: int, size: int) -> None:
        """Read what the DMA wrote back into a cacheable buffer's host bytes (``PynqBuffer.invalidate``)."""
        with self._lock:
            a = self._allocs.get(bo)
            if a is not None and a.ddr is not None and (host := a.host()) is not None:
                host[offset : offset + size] = a.ddr[offset : offset + size]

    def _resolve(self, phys: int, nbytes: int) -> tuple[np.ndarray, int] | None:
        """Memory and offset of ``[phys, phys + nbytes)`` if it lies inside one live allocation."""
        for a in self._allocs.values():
            if a.phys <= phys and phys + nbytes <= a.phys + a.nbytes:
                mem = a.memory()
                return (mem, phys - a.phys) if mem is not None else None
        return None

    # ---------------------------------------------------------------------------------------------- registers
    def _offset(self, address: int, length: int) -> int:
        off = address - self.dma_base
        if off < 0 or off + length > DMA_ADDR_RANGE:
            raise ValueError(f"emulated bus: no IP at 0x{address:x} (the DMA is at 0x{self.dma_base:x})")
        if off % 4:
            raise ValueError(f"emulated bus: unaligned access at 0x{address:x}")
        return off

    def read_registers(self, address: int, length: int) -> bytes:
        """Read ``length`` bytes of registers at an absolute address (``pynq.MMIO`` under REGISTER_RW)."""
        off = self._offset(address, length)
        with self._lock:
            words = b"".join(self._read_word(off + 4 * i).to_bytes(4, "little") for i in range((length + 3) // 4))
        return words[:length]

    def write_registers(self, address: int, data: bytes) -> None:
        """Write whole 32-bit registers at an absolute address (``pynq.MMIO`` under REGISTER_RW)."""
        off = self._offset(address, len(data))
        if len(data) % 4:
            raise ValueError(f"emulated bus: write of {len(data)} bytes is not whole 32-bit words")
        with self._lock:
            for i in range(len(data) // 4):
                value = int.from_bytes(data[4 * i : 4 * i + 4], "little")
                self.register_writes.append((self.dma_base + off + 4 * i, value))
                self.write_count += 1
                self._write_word(off + 4 * i, value)

    def _channel(self, off: int) -> tuple[_Channel | None, int]:
        if off < 0x30:
            return self._channels[MM2S], off
        if off < 0x60:
            return self._channels[S2MM], off - S2MM
        return None, off

    def _read_word(self, off: int) -> int:
        ch, rel = self._channel(off)
        if ch is None or rel not in (DMACR, DMASR, ADDR, ADDR_MSB, LENGTH):
            return self._scratch.get(off, 0)
        return {DMACR: ch.dmacr, DMASR: ch.status, ADDR: ch.addr, ADDR_MSB: ch.addr_msb, LENGTH: ch.length}[rel]

    def _write_word(self, off: int, value: int) -> None:
        ch, rel = self._channel(off)
        if ch is None or rel not in (DMACR, DMASR, ADDR, ADDR_MSB, LENGTH):
            self._scratch[off] = value
        elif rel == DMACR:
            self._write_dmacr(ch, value)
        elif rel == DMASR:
            ch.irq &= ~(value & _IRQ_BITS)  # interrupt bits are write-1-to-clear; the rest is read-only
        elif rel == ADDR:
            ch.addr = value
        elif rel == ADDR_MSB:
            ch.addr_msb = value
        else:
            self._start(ch, value)

    def _write_dmacr(self, ch: _Channel, value: int) -> None:
        if value & CR_RESET:
            # Soft reset resets the whole DMA (both channels) and self-clears at once. The kernel is not reset.
            for c in self._channels.values():
                c.reset()
            return
        ch.dmacr = value
        if value & CR_RS:
            if ch.halted and not ch.errors:  # errors are only cleared by a reset
                ch.halted = False
        elif not ch.halted:
            ch.halted, ch.busy, ch.idle = True, False, False  # stopping aborts the transfer in progress

    def _fail(self, ch: _Channel, bit: int, why: str) -> None:
        # PG021: an error clears DMACR.RS and halts the channel; only a reset clears the error bits.
        log.debug("emulated DMA %s error 0x%x: %s", ch.name, bit, why)
        ch.errors |= bit
        ch.irq |= SR_ERR_IRQ
        ch.dmacr &= ~CR_RS
        ch.halted, ch.busy, ch.idle = True, False, False

    def _start(self, ch: _Channel, value: int) -> None:
        ch.length = value & self._length_mask
        if ch.halted:
            log.debug("emulated DMA %s: LENGTH written while halted; ignored", ch.name)
            return
        phys = (ch.addr_msb << 32) | ch.addr
        self.transfers.append((ch.name, phys, ch.length))
        if ch.busy:
            return self._fail(ch, SR_INT_ERR, "LENGTH written while a transfer is in progress")
        fault = self._faults.pop(ch.name, 0)
        if fault:
            return self._fail(ch, fault, "injected fault")
        if ch.length == 0:
            return self._fail(ch, SR_INT_ERR, "transfer length 0")
        where = self._resolve(phys, ch.length)
        if where is None:
            return self._fail(ch, SR_DEC_ERR, f"[0x{phys:x}, +{ch.length}) is not inside an allocated buffer")
        mem, start = where
        ch.idle = False
        if ch is self._channels[MM2S]:
            data = mem[start : start + ch.length].copy()
            ch.idle, ch.irq = True, ch.irq | SR_IOC_IRQ  # the stream takes all of it at once (no back-pressure)
            self._feed(data)
        else:
            ch.busy, ch.dest, ch.capacity, ch.received = True, phys, ch.length, 0
            self._service_s2mm()

    # ------------------------------------------------------------------------------------------------- stream
    def _feed(self, data: np.ndarray) -> None:
        """Hand one MM2S transfer (TLAST on its last element) to the kernel's worker thread."""
        size = self.kernel.in_dtype.itemsize
        if len(data) % size:  # a partial final beat: TKEEP drops the missing bytes, the IP sees zeros there
            data = np.concatenate([data, np.zeros(size - len(data) % size, np.uint8)])
        elems = data.view(self.kernel.in_dtype)
        if self._closed:
            return  # a closed device's kernel is gone: the data is swallowed, the S2MM never completes
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name=f"{self.tag}-kernel", daemon=True)
            # C-simulation code may keep large arrays on the stack (hls4ml io_parallel layers do); give the
            # worker the room a main thread usually has, then restore the process default for other threads.
            previous = threading.stack_size(_WORKER_STACK_BYTES)
            try:
                self._worker.start()
            finally:
                threading.stack_size(previous)
        self._inq.put((self._generation, elems))

    def _accept(self, elems: np.ndarray, n_in: int) -> tuple[np.ndarray, np.ndarray]:
        """Append elements to the partial image; return the complete images and which of them carried TLAST."""
        base = len(self._pending)
        self._pending = np.concatenate([self._pending.astype(elems.dtype, copy=False), elems])
        self._pending_last.append(base + len(elems) - 1)
        n = len(self._pending) // n_in
        lasts = np.zeros(n, bool)
        if n == 0:
            return self._pending[:0].reshape(0, n_in), lasts
        used = n * n_in
        for pos in self._pending_last:
            if pos < used:
                lasts[pos // n_in] = True  # hls4ml's wrapper ORs TLAST over an image's input elements
        self._pending_last = [p - used for p in self._pending_last if p >= used]
        images = self._pending[:used].reshape(n, n_in).copy()
        self._pending = self._pending[used:].copy()
        return images, lasts

    def _work(self) -> None:
        while True:
            item = self._inq.get()
            if item is None:
                return
            gen, elems = item
            with self._lock:
                if gen != self._generation:
                    continue
                kernel = self.kernel
                images, lasts = self._accept(elems, kernel.n_in)
            for start in range(0, len(images), _CHUNK_IMAGES):
                with self._lock:
                    if gen != self._generation:
                        break
                chunk = images[start : start + _CHUNK_IMAGES]
                try:
                    out = np.asarray(kernel.run(chunk))
                    if out.ndim != 2 or out.shape[1] != kernel.n_out or out.shape[0] > len(chunk):
                        raise ValueError(f"kernel returned shape {out.shape} for {len(chunk)} images")
                except Exception as exc:  # noqa: BLE001 - whatever the kernel raised, the stream just stalls
                    log.error("emulated kernel failed; the stream stalls: %s", exc)
                    with self._lock:
                        self.kernel_error = exc
                    break
                with self._lock:
                    if gen != self._generation:
                        break
                    self.images_processed += len(out)
                    self._emit(out.astype(kernel.out_dtype, copy=False), lasts[start : start + len(out)])
                    self._service_s2mm()
                if len(out) < len(chunk):
                    break  # stalled: the rest of this transfer's images never come out

    def _emit(self, out: np.ndarray, lasts: np.ndarray) -> None:
        """Queue output elements as packets, each ending at an image whose input carried TLAST."""
        start = 0
        for i in np.flatnonzero(lasts):
            self._outq.append([np.frombuffer(out[start : i + 1].tobytes(), np.uint8), 0, True])
            start = i + 1
        if start < len(out):
            self._outq.append([np.frombuffer(out[start:].tobytes(), np.uint8), 0, False])

    def _service_s2mm(self) -> None:
        """Move queued output into the armed S2MM buffer; complete on TLAST, error on overflow."""
        ch = self._channels[S2MM]
        while ch.busy and self._outq:
            packet = self._outq[0]
            data, used, last = packet
            room = ch.capacity - ch.received
            if room == 0:
                # More data arrives after the buffer filled without TLAST: the real S2MM flags DMAIntErr.
                return self._fail(ch, SR_INT_ERR, f"stream packet longer than the {ch.capacity}-byte buffer")
            n = min(room, len(data) - used)
            where = self._resolve(ch.dest + ch.received, n)
            if where is None:
                return self._fail(ch, SR_DEC_ERR, "destination buffer vanished")
            mem, at = where
            mem[at : at + n] = data[used : used + n]
            ch.received += n
            packet[1] = used + n
            if packet[1] == len(data):
                self._outq.popleft()
                if last:
                    ch.busy, ch.idle, ch.length = False, True, ch.received
                    ch.irq |= SR_IOC_IRQ

    # ------------------------------------------------------------------------------------------ test controls
    def inject_fault(self, channel: str, kind: str) -> None:
        """Make the next transfer started on ``channel`` fail with an error bit.

        Args:
            channel: ``"mm2s"`` or ``"s2mm"``.
            kind: ``"internal"`` (DMAIntErr), ``"slave"`` (DMASlvErr) or ``"decode"`` (DMADecErr).
        """
        name = channel.upper()
        if name not in ("MM2S", "S2MM") or kind not in FAULTS:
            raise ValueError(f"channel must be mm2s/s2mm and kind one of {sorted(FAULTS)}")
        with self._lock:
            self._faults[name] = FAULTS[kind]

    def status(self, channel: str) -> int:
        """Current DMASR of ``"mm2s"`` or ``"s2mm"``."""
        return self._channels[S2MM if channel.lower() == "s2mm" else MM2S].status

    def reset_pl(self) -> None:
        """What re-downloading the bitstream does: DMA, kernel state and queued stream data all reset.

        Faults armed with :meth:`inject_fault` stay armed (they belong to the test, not to the hardware).
        """
        with self._lock:
            self._generation += 1  # the worker drops whatever it is processing for the old generation
            for c in self._channels.values():
                c.reset()
            self._pending = np.empty(0, self.kernel.in_dtype)
            self._pending_last = []
            self._outq.clear()
            self._scratch.clear()
            self.kernel_error = None

    def close(self) -> None:
        """Stop the kernel worker thread (a kernel call in progress is abandoned, not interrupted)."""
        with self._lock:
            self._closed = True
            self._generation += 1
        if self._worker is not None:
            self._inq.put(None)
            self._worker.join(timeout=2.0)
            self._worker = None

    def __enter__(self) -> EmulatedDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
