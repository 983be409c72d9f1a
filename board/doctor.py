"""``python -m board doctor``: what a fresh board (or a host) needs before a benchmark, checked one by one.

Each check passes, fails (with what to do) or is skipped (not applicable here, or an earlier check it needs failed):

1. **pynq**: installed, version 3 or later (the runtime drives the DMA through it);
2. **board**: which board this is (``$ZYNQ_RESNET_BOARD``, ``$BOARD``, the device tree; :mod:`board.registry`),
   supported, and the one the bundle was built for;
3. **contiguous memory**: the DMA buffers the bundle needs (a batch of images in and logits out) against the free
   CMA on a board (``CmaFree`` in ``/proc/meminfo``: ``pynq.allocate`` takes physically contiguous memory from
   it), or against available memory for an emulated bundle (its device allocates host memory);
4. **bundle**: the manifest, every file's sha256, the board, the ``.bit``'s part and the ``.hwh``'s design
   (:mod:`board.hwh`), and pynq's metadata cache (:mod:`board.registry`);
5. **overlay load**: the accelerator opens (``pynq.Overlay`` of the bitstream, or the emulated device);
6. **DMA round trip**: a known pattern (black, white and a ramp image) goes through the DMA as one batch and
   image by image: every transfer completes before its deadline, and the outputs are the same both ways and on
   a second run (a stream that loses or adds elements, or a wedged DMA, shows here);
7. **PL clock**: the fabric clock pynq reads from the processing system against the clock in the ``.hwh``
   (a board only: an emulated overlay has no PL).

No check can hang the command: each runs with a deadline (``--check-timeout``), DMA transfers have their own
(``--timeout``). The exit status is 1 when a check fails (:class:`~board.errors.CheckFailedError`), 0 otherwise.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from board.bundle import BOARDS, Bundle, load_bundle, read_manifest
from board.errors import BoardError, CheckFailedError, DmaError, DmaTimeoutError

__all__ = ["Check", "DoctorReport", "MEMINFO", "parse_meminfo", "render_doctor", "run_doctor"]

log = logging.getLogger(__name__)

MEMINFO = Path("/proc/meminfo")
PASS, FAIL, SKIP = "pass", "fail", "skip"
#: Images per DMA batch the doctor sizes the buffers for (the benchmark's default batch).
DOCTOR_BATCH = 100
#: The PL clock may differ this much from the .hwh's request (the PS divides a PLL: 100 MHz is 99.999 MHz).
CLOCK_TOLERANCE = 0.02


@dataclass
class Check:
    """One check's outcome.

    Attributes:
        name: what was checked.
        status: ``pass``, ``fail`` or ``skip``.
        detail: what was found.
        fix: what to do about a failure (None when it passed).
        seconds: how long the check took.
    """

    name: str
    status: str
    detail: str
    fix: str | None = None
    seconds: float = 0.0


@dataclass
class DoctorReport:
    """All checks of one run.

    Attributes:
        running_on: the board this runs on (or ``host``).
        bundle: the bundle folder checked, or None.
        checks: the checks, in order.
    """

    running_on: str
    bundle: str | None
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if c.status == FAIL]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"running_on": self.running_on, "bundle": self.bundle, "checks": [asdict(c) for c in self.checks]}


class _Timeout(Exception):
    pass


def _with_deadline(fn: Callable[[], Any], seconds: float) -> Any:
    """Run ``fn`` on a daemon thread; raise :class:`_Timeout` if it has not returned after ``seconds``.

    A check stuck in a driver call (a hung overlay download, a read that never returns) is abandoned, not killed:
    the thread is a daemon, so it never keeps the process alive, and the doctor reports the check as failed.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name="doctor-check", daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise _Timeout(f"did not finish within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def parse_meminfo(path: str | os.PathLike = MEMINFO) -> dict[str, int]:
    """``/proc/meminfo`` as bytes per field (``CmaFree``, ``CmaTotal``, ``MemAvailable``, ...).

    Raises:
        OSError: the file cannot be read.
    """
    out: dict[str, int] = {}
    for line in Path(path).read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return out


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def buffer_bytes(bundle: Bundle, batch: int = DOCTOR_BATCH) -> int:
    """Bytes of the two DMA buffers the driver allocates for ``batch`` images (input codes and output codes)."""
    m = bundle.manifest
    n_in, n_out = int(np.prod(m.input.shape)), int(np.prod(m.output.shape))
    per_image = n_in * np.dtype(m.input.container).itemsize + n_out * np.dtype(m.output.container).itemsize
    return batch * per_image


def check_memory(needed: int | None, meminfo: Mapping[str, int], contiguous: bool) -> Check:
    """The memory check from ``/proc/meminfo`` figures (see the module docstring)."""
    if contiguous:
        free, total = meminfo.get("CmaFree"), meminfo.get("CmaTotal")
        if free is None or not total:
            return Check(
                "contiguous memory",
                FAIL,
                "the kernel reports no contiguous memory area (no CmaTotal/CmaFree in /proc/meminfo)",
                "boot a PYNQ image (it reserves CMA for pynq.allocate), or add cma=256M to the kernel command line",
            )
        want = f", the bundle's DMA buffers need {_mib(needed)}" if needed else ""
        if free == 0 or (needed is not None and free < needed):
            return Check(
                "contiguous memory",
                FAIL,
                f"{_mib(free)} of {_mib(total)} CMA free{want}",
                "free DMA buffers held by other programs (restart Jupyter kernels that called pynq.allocate, or "
                "reboot), use a smaller --batch-size, or enlarge the CMA (cma= on the kernel command line)",
            )
        return Check("contiguous memory", PASS, f"{_mib(free)} of {_mib(total)} CMA free{want}")
    avail = meminfo.get("MemAvailable")
    if avail is None:
        return Check("contiguous memory", SKIP, "no MemAvailable in /proc/meminfo; emulated buffers are host memory")
    want = f", the bundle's DMA buffers need {_mib(needed)}" if needed else ""
    if needed is not None and avail < needed:
        return Check(
            "contiguous memory",
            FAIL,
            f"emulated device: {_mib(avail)} of host memory available{want}",
            "close other programs or use a smaller --batch-size",
        )
    return Check("contiguous memory", PASS, f"emulated device (host memory, not CMA): {_mib(avail)} available{want}")


#: A known pattern: a black image, a white one, and a ramp through every pixel value.
def known_pattern(shape: tuple[int, ...] = (32, 32, 3)) -> np.ndarray:
    """Three images: all 0, all 255, and ``i % 256`` over the flattened image."""
    n = int(np.prod(shape))
    ramp = (np.arange(n) % 256).astype(np.uint8).reshape(shape)
    return np.stack([np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8), ramp])


def run_doctor(
    bundle: str | os.PathLike | None = None,
    *,
    board: str | None = None,
    environ: Mapping[str, str] | None = None,
    meminfo: str | os.PathLike = MEMINFO,
    timeout_s: float = 10.0,
    check_timeout_s: float = 120.0,
    engine: str = "auto",
    device: Any | None = None,
    clock_reader: Callable[[], float] | None = None,
    roots: Any = None,
) -> DoctorReport:
    """Run every check (see the module docstring).

    Args:
        bundle: a bundle (folder, ``<board>/<model_id>`` or model id); default: the first one for this board.
        board: the board this runs on (default: detected).
        environ: environment for the board detection (default ``os.environ``).
        meminfo: the ``/proc/meminfo`` to read (a parameter for tests).
        timeout_s: deadline of one DMA batch.
        check_timeout_s: deadline of one check.
        engine: emulated bundles: which engine computes the outputs (as ``bench --engine``).
        device: emulated bundles: an emulated device to use (tests inject faults through it).
        clock_reader: returns the PL clock in MHz (default: ``pynq.ps.Clocks.fclk0_mhz`` on a board).
        roots: overlay roots for name lookups.

    Returns:
        The report; it never raises for a failed check.
    """
    from board.registry import HOST, detect_board, first_bundle, normalise_board, resolve_bundle

    running_on = normalise_board(board) if board else detect_board(environ)
    report = DoctorReport(running_on=running_on or HOST, bundle=None)
    checks = report.checks

    def run(name: str, fn: Callable[[], Check], deadline: float = check_timeout_s) -> Check:
        t0 = time.perf_counter()
        try:
            c = _with_deadline(fn, deadline)
        except _Timeout as exc:
            c = Check(name, FAIL, str(exc), "the call is stuck; reboot the board (a wedged PL or DMA), then rerun")
        except BoardError as exc:
            c = Check(name, FAIL, str(exc), "see the message")
        except Exception as exc:  # noqa: BLE001 - a diagnosis reports what broke and goes on with the next check
            c = Check(name, FAIL, f"{type(exc).__name__}: {exc}", "unexpected; rerun with -v and report it")
        c.seconds = round(time.perf_counter() - t0, 3)
        checks.append(c)
        log.debug("%s: %s (%s)", c.name, c.status, c.detail)
        return c

    # 1. pynq ------------------------------------------------------------------------------------------------
    def check_pynq() -> Check:
        try:
            import pynq
        except ImportError as exc:
            return Check(
                "pynq",
                FAIL,
                f"not importable: {exc}",
                "on a PYNQ image run as root in PYNQ's venv (sudo -i); elsewhere pip install pynq==4.0.0",
            )
        version = str(getattr(pynq, "__version__", "unknown"))
        major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
        if major < 3:
            return Check("pynq", FAIL, f"pynq {version}", "the runtime needs pynq 3.0 or later (PYNQ image v3.0+)")
        return Check("pynq", PASS, f"pynq {version}")

    run("pynq", check_pynq)

    # 2. board (and which bundle) ------------------------------------------------------------------------------
    state: dict[str, Any] = {}

    def check_board() -> Check:
        try:
            folder = resolve_bundle(bundle, running_on, roots) if bundle is not None else None
        except BoardError as exc:
            state["bundle_error"] = str(exc)
            folder = None
        if folder is None and bundle is None:
            try:
                folder = first_bundle(running_on, roots).root
            except BoardError as exc:
                state["bundle_error"] = f"no bundle given, and none found: {exc}"
        state["folder"] = folder
        m = None
        if folder is not None:
            try:
                m = read_manifest(folder)
            except BoardError as exc:
                state["bundle_error"] = str(exc)
        state["manifest"] = m
        if running_on == HOST:
            return Check("board", PASS, "host (no board detected): only emulated bundles run here")
        if running_on not in BOARDS:
            return Check(
                "board",
                FAIL,
                f"{running_on} is not a supported board ({', '.join(BOARDS)})",
                "set ZYNQ_RESNET_BOARD=pynq-z2|zcu104 if the detection is wrong",
            )
        if m is not None and m.board != running_on:
            return Check(
                "board",
                FAIL,
                f"this is a {running_on}, but the bundle is built for the {m.board}",
                f"use a bundle from overlays/{running_on}/, or rebuild with make bitstream BOARD={running_on}",
            )
        return Check("board", PASS, f"{running_on}")

    board_check = run("board", check_board)
    folder, manifest = state.get("folder"), state.get("manifest")
    report.bundle = str(folder) if folder is not None else None

    # 3. contiguous memory -----------------------------------------------------------------------------------
    def check_mem() -> Check:
        needed = None
        if manifest is not None:
            needed = buffer_bytes(Bundle(Path(folder), manifest))
        contiguous = running_on != HOST and not (manifest is not None and manifest.emulated)
        try:
            info = parse_meminfo(meminfo)
        except OSError as exc:
            if contiguous:
                return Check("contiguous memory", FAIL, f"cannot read {meminfo}: {exc}", "run on the board's Linux")
            return Check("contiguous memory", SKIP, f"cannot read {meminfo} ({exc}); emulated buffers are host memory")
        return check_memory(needed, info, contiguous)

    run("contiguous memory", check_mem)

    # 4. bundle ----------------------------------------------------------------------------------------------
    def check_bundle() -> Check:
        from board.hwh import check_hardware_files
        from board.registry import check_board as refuse_other_board
        from board.registry import check_hwh_cache

        if folder is None:
            return Check("bundle", FAIL, state.get("bundle_error", "no bundle"), "pass --bundle <folder>")
        b = load_bundle(folder)
        refuse_other_board(b.manifest, running_on or HOST, b.root)
        hw = check_hardware_files(b)
        state["bundle"], state["hardware"] = b, hw
        cache = check_hwh_cache(b)
        if cache.stale:
            return Check(
                "bundle",
                FAIL,
                f"pynq's metadata cache is stale: {cache.detail}",
                f"python -m board validate {b.root} --clear-stale-cache",
            )
        what = f"DMA {hw['dma']}, accelerator {hw['accelerator']}, part {hw['bit']['part']}" if hw else "emulated"
        return Check(
            "bundle", PASS, f"{b.manifest.board}/{b.manifest.model_id}, {len(b.manifest.files)} files ok, {what}"
        )

    bundle_check = run("bundle", check_bundle)

    # 5. overlay load ----------------------------------------------------------------------------------------
    def check_load() -> Check:
        from board.driver import Accelerator

        b = state["bundle"]
        kwargs: dict[str, Any] = {"batch_size": 4, "timeout_s": timeout_s}
        if b.manifest.emulated and device is not None:
            kwargs["device"] = device
        elif b.manifest.emulated and engine != "auto":
            kwargs["engine"] = engine
        acc = Accelerator(b, **kwargs)
        state["acc"] = acc
        return Check("overlay load", PASS, _what_runs(acc))

    if bundle_check.status == PASS and board_check.status == PASS:
        load_check = run("overlay load", check_load)
    else:
        load_check = Check("overlay load", SKIP, "needs a bundle that passed its checks")
        checks.append(load_check)

    # 6. DMA round trip --------------------------------------------------------------------------------------
    def check_dma() -> Check:
        acc = state["acc"]
        images = known_pattern(acc.image_shape)
        fix_error = (
            "the DMA flagged an error: check that the .hwh matches the bitstream (python -m board validate), and "
            "reboot (a DMA error halts the channel until a reset)"
        )
        fix_stall = (
            "the accelerator never finished its output: the bitstream and the manifest disagree on the stream "
            "sizes, or the IP is stalled; rebuild the bundle, or reboot to reset the PL"
        )
        try:
            batch = acc.predict_raw(images)
            again = acc.predict_raw(images)
            single = np.stack([acc.predict_raw(img) for img in images])
        except DmaTimeoutError as exc:
            return Check("DMA round trip", FAIL, str(exc), fix_stall)
        except DmaError as exc:
            return Check("DMA round trip", FAIL, str(exc), fix_error)
        if not (np.array_equal(batch, again) and np.array_equal(batch, single)):
            return Check(
                "DMA round trip",
                FAIL,
                "the same images gave different outputs (as one batch, again, and one by one)",
                "the stream loses or adds elements between images: rebuild the bundle (TLAST handling of the IP)",
            )
        t = acc.take_timings()
        ms = 1e3 * sum(x.seconds for x in t) / max(1, sum(x.images for x in t))
        return Check(
            "DMA round trip",
            PASS,
            f"{len(images)} pattern images, as a batch, again and one by one: identical outputs; "
            f"{ms:.2f} ms/image" + (" (host emulation, not board timings)" if acc.emulated else ""),
        )

    if load_check.status == PASS:
        run("DMA round trip", check_dma, deadline=max(check_timeout_s, 10 * timeout_s))
    else:
        checks.append(Check("DMA round trip", SKIP, "needs the overlay loaded"))

    # 7. PL clock --------------------------------------------------------------------------------------------
    def check_clock() -> Check:
        hw = state.get("hardware") or {}
        want = (hw.get("pl_clocks_mhz") or {}).get(0)
        if want is None and manifest is not None:
            want = manifest.hls.get("clock_mhz")
        reader = clock_reader
        if reader is None:
            from pynq.ps import Clocks

            def reader() -> float:
                return float(Clocks.fclk0_mhz)

        got = float(reader())
        if want is None:
            return Check("PL clock", PASS, f"{got:.3f} MHz (the bundle records no clock to compare with)")
        if abs(got - float(want)) > CLOCK_TOLERANCE * float(want):
            return Check(
                "PL clock",
                FAIL,
                f"the PL runs at {got:.3f} MHz; the design was built for {float(want):g} MHz",
                "load the overlay with download=True (pynq sets the clocks from the .hwh), or rebuild for this clock",
            )
        return Check("PL clock", PASS, f"{got:.3f} MHz (design: {float(want):g} MHz)")

    emulated = manifest is not None and manifest.emulated
    if clock_reader is None and (emulated or running_on == HOST or load_check.status != PASS):
        why = "emulated overlay: no PL" if emulated or running_on == HOST else "needs the overlay loaded"
        checks.append(Check("PL clock", SKIP, why))
    else:
        run("PL clock", check_clock)

    acc = state.get("acc")
    if acc is not None:
        try:
            _with_deadline(acc.close, 5.0)
        except (_Timeout, BoardError) as exc:
            log.warning("closing the accelerator: %s", exc)
    return report


def _what_runs(acc: Any) -> str:
    """What computes the accelerator's outputs, in words."""
    described = getattr(acc, "engine_description", None)
    if described:
        return str(described)
    return "host emulation (emulated device), not board timings" if acc.emulated else "the FPGA, through the AXI DMA"


def render_doctor(report: DoctorReport) -> str:
    """The report as text: one line per check, and what to do under each failure."""
    lines = [f"board: {report.running_on}; bundle: {report.bundle or 'none'}"]
    width = max(len(c.name) for c in report.checks)
    for c in report.checks:
        lines.append(f"{c.status.upper():<4}  {c.name:<{width}}  {c.detail}")
        if c.status == FAIL and c.fix:
            lines.append(f"{'':<4}  {'':<{width}}  what to do: {c.fix}")
    failed = report.failed
    lines.append(f"{len(failed)} of {len(report.checks)} checks failed" if failed else "all checks passed")
    return "\n".join(lines) + "\n"


def doctor_exit(report: DoctorReport) -> None:
    """Raise :class:`CheckFailedError` (exit 1) when a check failed."""
    failed = report.failed
    if failed:
        raise CheckFailedError(f"{len(failed)} check(s) failed: {', '.join(c.name for c in failed)}")
