"""Power and energy per inference: PMBus rails on the ZCU104, an external meter's figures on the PYNQ-Z2.

What each platform gives, and what the report says:

* **ZCU104**: the board's PMBus regulators are read through ``pynq.get_rails()`` (libsensors). By default the
  ``12V`` rail is recorded: the board's whole input, so the figure includes the ARM cores, DDR and fans, not
  only the PL. The idle baseline is sampled first for ``idle_s`` seconds with the overlay loaded and nothing
  running; then the rails are sampled (``pynq.DataRecorder`` when pandas is there, as on PYNQ images,
  otherwise a sampling thread reading the same ``Sensor.value``) during the FPGA pass. Energy per inference is
  ``(mean power during the run - idle power) * run time / images``: the energy the inference added on top of
  an idle board. Gross energy (without subtracting idle) is reported too.
* **PYNQ-Z2**: no on-board power sensor. Measure the board's supply with an external meter (a USB power meter
  or a bench supply) and enter the readings: ``--external-power-watts W`` (mean while the benchmark runs) and,
  optionally, ``--external-idle-watts W`` (idle, overlay loaded). The report labels them
  "external meter (user-entered)". Without them power is "not available".
* **Host emulation**: "not available (host emulation)"; host power says nothing about the FPGA.

No figure is ever made up: anything not measured or entered is None / "not available" in the report.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from board.errors import BoardError, InputError

__all__ = [
    "DEFAULT_RAILS",
    "NOT_AVAILABLE_HOST",
    "PmbusMeter",
    "PowerOptions",
    "PowerSession",
    "PowerTrace",
    "PowerUnavailable",
    "SOURCE_EXTERNAL",
    "SOURCE_PMBUS",
    "energy_report",
    "unavailable_report",
]

log = logging.getLogger(__name__)

DEFAULT_RAILS = ("12V",)
SOURCE_PMBUS = "PMBus (pynq.get_rails)"
SOURCE_EXTERNAL = "external meter (user-entered)"
NOT_AVAILABLE_HOST = "not available (host emulation)"
NOT_AVAILABLE_PYNQ_Z2 = (
    "not available: the PYNQ-Z2 has no on-board power sensor; measure the board's supply with an external meter and "
    "pass --external-power-watts W (during the run) and --external-idle-watts W (idle)"
)
#: At most this many points of a power trace go into report.json (the plot needs no more).
MAX_TRACE_POINTS = 2000


class PowerUnavailable(BoardError):
    """No power sensor can be read here (no pynq, no libsensors, no such rail)."""


# ---------------------------------------------------------------------------------------------------- sampling
@dataclass
class PowerTrace:
    """Samples of the recorded rails.

    Attributes:
        t_s: sample times in seconds from the start of the recording.
        watts: total power of the recorded rails at each sample.
        per_rail: each rail's power samples.
        sampler: ``pynq.DataRecorder`` or ``thread``.
    """

    t_s: np.ndarray
    watts: np.ndarray
    per_rail: dict[str, np.ndarray] = field(default_factory=dict)
    sampler: str = "thread"

    @property
    def mean_w(self) -> float | None:
        """Mean total power, or None without samples."""
        return float(np.mean(self.watts)) if len(self.watts) else None

    def __len__(self) -> int:
        return len(self.watts)


class _DerivedPower:
    """Power from a rail's voltage and current sensors when it has no power sensor (as pynq's DerivedPowerSensor)."""

    def __init__(self, name: str, voltage: Any, current: Any) -> None:
        self.name, self.voltage, self.current = name, voltage, current

    @property
    def value(self) -> float:
        return float(self.voltage.value) * float(self.current.value)


def _power_sensor(name: str, rail: Any) -> Any:
    power = getattr(rail, "power", None)
    if power is not None:
        return power
    voltage, current = getattr(rail, "voltage", None), getattr(rail, "current", None)
    if voltage is not None and current is not None:
        return _DerivedPower(f"{name}_power", voltage, current)
    raise PowerUnavailable(f"rail {name!r} has no power sensor (nor voltage and current sensors)")


def _pynq_data_recorder() -> Callable[..., Any] | None:
    """Return pynq's DataRecorder when it can run here (it needs pandas), else None."""
    try:
        import pandas  # noqa: F401  - DataRecorder builds a pandas DataFrame
        from pynq.pmbus import DataRecorder
    except ImportError:
        return None
    return DataRecorder


class PmbusMeter:
    """Samples the power of some PMBus rails (pynq's ``Rail`` objects, as ``pynq.get_rails()`` returns them).

    Attributes:
        rail_names: the rails recorded; their powers are summed.
        interval_s: sampling interval.
    """

    def __init__(
        self,
        rails: Mapping[str, Any],
        rail_names: Sequence[str] = DEFAULT_RAILS,
        interval_s: float = 0.05,
        recorder: str | Callable[..., Any] = "auto",
    ) -> None:
        """Pick the rails to record.

        Args:
            rails: ``{name: Rail}`` as from ``pynq.get_rails()``; a Rail has ``power`` (or ``voltage`` and
                ``current``) sensors with ``.name`` and ``.value`` (watts, volts, amperes).
            rail_names: rails to record and sum.
            interval_s: seconds between samples.
            recorder: ``auto`` (``pynq.DataRecorder`` if usable, else a thread), ``thread``, or a DataRecorder-like
                class (tests).

        Raises:
            PowerUnavailable: no rails, or a requested rail is missing.
            InputError: a non-positive interval.
        """
        if interval_s <= 0:
            raise InputError(f"the power sampling interval must be > 0 s, got {interval_s}")
        if not rails:
            raise PowerUnavailable("pynq.get_rails() found no power rails (no libsensors/PMBus on this board)")
        missing = [r for r in rail_names if r not in rails]
        if missing or not rail_names:
            raise PowerUnavailable(
                f"no rail {', '.join(map(repr, missing)) or '(none requested)'}; rails here: "
                f"{', '.join(sorted(rails))} (choose with --power-rail)"
            )
        self.rail_names = tuple(rail_names)
        self.interval_s = float(interval_s)
        self._sensors = [_power_sensor(name, rails[name]) for name in self.rail_names]
        if recorder == "auto":
            self._recorder = _pynq_data_recorder()
        elif recorder == "thread":
            self._recorder = None
        else:
            self._recorder = recorder

    @classmethod
    def from_pynq(
        cls, rail_names: Sequence[str] = DEFAULT_RAILS, interval_s: float = 0.05, config_file: str | None = None
    ) -> PmbusMeter:
        """The board's rails through ``pynq.get_rails()``.

        Raises:
            PowerUnavailable: pynq or its PMBus support is missing, or the rails are not there.
        """
        try:
            from pynq.pmbus import get_rails
        except ImportError as exc:
            raise PowerUnavailable(f"pynq's PMBus support cannot be imported: {exc}") from exc
        try:
            with warnings.catch_warnings(record=True) as caught:  # "Could not initialise libsensors library"
                warnings.simplefilter("always")
                rails = get_rails(config_file)
        except Exception as exc:  # noqa: BLE001 - libsensors through cffi raises assorted errors
            raise PowerUnavailable(f"pynq.get_rails() failed: {exc}") from exc
        if not rails and caught:
            raise PowerUnavailable(f"pynq.get_rails() found no power rails ({caught[0].message})")
        return cls(rails, rail_names, interval_s)

    @property
    def sampler(self) -> str:
        """Which sampler records: ``pynq.DataRecorder`` or ``thread``."""
        return "pynq.DataRecorder" if self._recorder is not None else "thread"

    def read(self) -> list[float]:
        """One reading of each recorded rail, in watts."""
        return [float(s.value) for s in self._sensors]

    def _trace(self, t: np.ndarray, cols: list[np.ndarray]) -> PowerTrace:
        if not len(t):  # even an instant run gets one reading
            t, cols = np.zeros(1), [np.array([v]) for v in self.read()]
        per_rail = {name: np.asarray(c, float) for name, c in zip(self.rail_names, cols)}
        return PowerTrace(np.asarray(t, float), np.sum(list(per_rail.values()), axis=0), per_rail, self.sampler)

    @contextmanager
    def recording(self) -> Iterator[list[PowerTrace]]:
        """Sample while the ``with`` body runs; the trace is in the yielded list afterwards (``out[0]``)."""
        out: list[PowerTrace] = []
        if self._recorder is not None:
            rec = self._recorder(*self._sensors)
            with rec.record(self.interval_s):
                yield out
            frame = rec.frame
            if len(frame):
                ns = np.asarray(frame.index.asi8, np.int64)
                t = (ns - ns[0]) / 1e9
                cols = [np.asarray(frame[s.name], float) for s in self._sensors]
            else:
                t, cols = np.zeros(0), []
            out.append(self._trace(t, cols))
            return
        times: list[float] = []
        rows: list[list[float]] = []
        stop = threading.Event()
        start = time.perf_counter()

        def sample() -> None:
            while True:
                times.append(time.perf_counter() - start)
                rows.append(self.read())
                if stop.wait(self.interval_s):
                    return

        worker = threading.Thread(target=sample, name="power-sampler", daemon=True)
        worker.start()
        try:
            yield out
        finally:
            stop.set()
            worker.join(timeout=10 * self.interval_s + 5)
        arr = np.asarray(rows, float).reshape(len(rows), len(self._sensors))
        out.append(self._trace(np.asarray(times), [arr[:, i] for i in range(arr.shape[1])]))

    def sample_for(self, seconds: float) -> PowerTrace:
        """Record for ``seconds`` doing nothing (the idle baseline)."""
        with self.recording() as out:
            time.sleep(max(float(seconds), 0.0))
        return out[0]


# ----------------------------------------------------------------------------------------------------- reports
def unavailable_report(reason: str) -> dict[str, Any]:
    """The report's ``power`` section when nothing was measured."""
    return {"available": False, "source": None, "reason": reason}


def _downsample(trace: PowerTrace, offset_s: float, phase: str, budget: int) -> dict[str, list]:
    step = max(1, int(np.ceil(len(trace) / max(budget, 1))))
    t, w = trace.t_s[::step] + offset_s, trace.watts[::step]
    return {"t_s": [round(float(x), 4) for x in t], "w": [round(float(x), 4) for x in w], "phase": [phase] * len(t)}


def energy_report(
    *,
    source: str,
    run_w: float,
    idle_w: float | None,
    run_s: float,
    images: int,
    rails: Sequence[str] = (),
    sampler: str | None = None,
    interval_s: float | None = None,
    idle: PowerTrace | None = None,
    run: PowerTrace | None = None,
) -> dict[str, Any]:
    """The ``power`` section from mean run power, idle power (or None), run time and image count.

    Energy per inference (mJ) = ``(run_w - idle_w) * run_s / images * 1e3``; without an idle figure only the
    gross energy ``run_w * run_s / images`` is given. A negative net power is reported as measured, with a note.
    """
    if images < 1 or run_s <= 0:
        raise InputError(f"energy needs images >= 1 and a positive run time (got {images}, {run_s} s)")
    net_w = None if idle_w is None else run_w - idle_w
    notes = []
    if idle_w is None:
        notes.append("no idle figure: energy per inference is gross (whole board), not the inference's share")
    elif net_w is not None and net_w < 0:
        notes.append("run power is below idle power: the accelerator's share is within the measurement noise")
    report: dict[str, Any] = {
        "available": True,
        "source": source,
        "reason": None,
        "rails": list(rails),
        "sampler": sampler,
        "interval_s": interval_s,
        "idle_w": idle_w,
        "run_w": run_w,
        "net_w": net_w,
        "run_s": run_s,
        "images": images,
        "energy_per_inference_mj": None if net_w is None else net_w * run_s / images * 1e3,
        "gross_energy_per_inference_mj": run_w * run_s / images * 1e3,
        "idle_samples": None if idle is None else len(idle),
        "run_samples": None if run is None else len(run),
        "notes": notes,
        "trace": None,
    }
    if run is not None:
        budget = MAX_TRACE_POINTS // (2 if idle is not None else 1)
        parts = []
        offset = 0.0
        if idle is not None:
            parts.append(_downsample(idle, 0.0, "idle", budget))
            offset = float(idle.t_s[-1]) + (interval_s or 0.0) if len(idle) else 0.0
        parts.append(_downsample(run, offset, "run", budget))
        report["trace"] = {k: sum((p[k] for p in parts), []) for k in ("t_s", "w", "phase")}
    return report


# ------------------------------------------------------------------------------------------------ in the bench
@dataclass(frozen=True)
class PowerOptions:
    """How the benchmark measures power.

    Attributes:
        mode: ``auto`` (PMBus on the ZCU104, external figures when given, otherwise not available) or ``off``.
        rails: PMBus rails to record and sum (default the board's 12 V input).
        interval_s: PMBus sampling interval.
        idle_s: seconds of idle baseline before the FPGA pass.
        external_watts: an external meter's mean reading during the run (PYNQ-Z2), user-entered.
        external_idle_watts: the same meter's idle reading, user-entered.
    """

    mode: str = "auto"
    rails: tuple[str, ...] = DEFAULT_RAILS
    interval_s: float = 0.05
    idle_s: float = 2.0
    external_watts: float | None = None
    external_idle_watts: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "off"):
            raise InputError(f"power mode must be 'auto' or 'off', got {self.mode!r}")
        for name in ("external_watts", "external_idle_watts"):
            v = getattr(self, name)
            if v is not None and not (np.isfinite(v) and v > 0):
                raise InputError(f"--{name.replace('_', '-')} must be a positive number of watts, got {v}")
        if self.external_idle_watts is not None and self.external_watts is None:
            raise InputError("--external-idle-watts needs --external-power-watts (the reading during the run)")
        if self.idle_s < 0:
            raise InputError(f"the idle baseline must be >= 0 s, got {self.idle_s}")


class PowerSession:
    """Power measurement around the benchmark's FPGA pass: decide, take the idle baseline, record, report.

    Usage::

        session = PowerSession(options, emulated=m.emulated, board=m.board)
        session.measure_idle()            # before the run, overlay loaded
        with session.during_run():
            ...                           # the FPGA pass
        section = session.report(run_s, images)
    """

    def __init__(
        self,
        options: PowerOptions | None = None,
        *,
        emulated: bool,
        board: str,
        meter_factory: Callable[[PowerOptions], PmbusMeter] | None = None,
    ) -> None:
        """Decide how power is measured for this run.

        Args:
            options: the user's options (default :class:`PowerOptions`).
            emulated: whether the FPGA pass is host emulation.
            board: the board the bundle runs on.
            meter_factory: builds the PMBus meter (default ``PmbusMeter.from_pynq``; tests pass fake rails).

        Raises:
            InputError: external meter figures were given for a host emulation run.
        """
        self.options = options or PowerOptions()
        self.meter: PmbusMeter | None = None
        self.reason: str | None = None
        self._idle: PowerTrace | None = None
        self._run: PowerTrace | None = None
        o = self.options
        if emulated and o.external_watts is not None:
            raise InputError(
                "external meter figures belong to a board run; this bundle runs in host emulation, whose power says "
                "nothing about the FPGA"
            )
        if o.mode == "off":
            self.reason = "not measured (--power off)"
        elif emulated:
            self.reason = NOT_AVAILABLE_HOST
        elif o.external_watts is not None:
            self.reason = None  # external figures
        elif board == "zcu104":
            factory = meter_factory or (lambda opt: PmbusMeter.from_pynq(opt.rails, opt.interval_s))
            try:
                self.meter = factory(o)
            except PowerUnavailable as exc:
                self.reason = f"not available: {exc}"
        elif board == "pynq-z2":
            self.reason = NOT_AVAILABLE_PYNQ_Z2
        else:
            self.reason = f"not available: no power sensor support for {board}"
        if self.reason:
            log.info("power: %s", self.reason)

    @property
    def source(self) -> str | None:
        """Where the figures come from, or None when power is not available."""
        if self.meter is not None:
            return SOURCE_PMBUS
        if self.reason is None:
            return SOURCE_EXTERNAL
        return None

    def measure_idle(self) -> None:
        """Sample the idle baseline (PMBus only; a no-op otherwise)."""
        if self.meter is not None and self.options.idle_s > 0:
            log.info("power: idle baseline for %.1f s on %s", self.options.idle_s, ", ".join(self.meter.rail_names))
            self._idle = self.meter.sample_for(self.options.idle_s)

    @contextmanager
    def during_run(self) -> Iterator[None]:
        """Record while the FPGA pass runs (PMBus only)."""
        if self.meter is None:
            yield
            return
        with self.meter.recording() as out:
            yield
        self._run = out[0]

    def report(self, run_s: float, images: int) -> dict[str, Any]:
        """The report's ``power`` section for a pass of ``images`` that took ``run_s`` seconds."""
        o = self.options
        if self.source == SOURCE_EXTERNAL:
            return energy_report(
                source=SOURCE_EXTERNAL,
                run_w=float(o.external_watts),
                idle_w=None if o.external_idle_watts is None else float(o.external_idle_watts),
                run_s=run_s,
                images=images,
            )
        if self.meter is None or self._run is None:
            return unavailable_report(self.reason or "not measured")
        return energy_report(
            source=SOURCE_PMBUS,
            run_w=float(self._run.mean_w),
            idle_w=None if self._idle is None else self._idle.mean_w,
            run_s=run_s,
            images=images,
            rails=self.meter.rail_names,
            sampler=self.meter.sampler,
            interval_s=self.meter.interval_s,
            idle=self._idle,
            run=self._run,
        )
