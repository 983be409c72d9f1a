"""board.power: PMBus rails (fake pynq Rail/Sensor objects), external meter figures, 'not available' otherwise."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest
from board_fakes import FakeDataRecorder, FakeRail, FakeSensor, PhasedPower, zcu104_rails

from board.errors import InputError
from board.power import (
    NOT_AVAILABLE_HOST,
    SOURCE_EXTERNAL,
    SOURCE_PMBUS,
    PmbusMeter,
    PowerOptions,
    PowerSession,
    PowerUnavailable,
    energy_report,
)


def test_energy_formula():
    r = energy_report(source=SOURCE_EXTERNAL, run_w=3.0, idle_w=2.0, run_s=2.0, images=1000)
    assert r["net_w"] == 1.0
    assert r["energy_per_inference_mj"] == pytest.approx(2.0)  # 1 W * 2 s / 1000 images
    assert r["gross_energy_per_inference_mj"] == pytest.approx(6.0)
    gross_only = energy_report(source=SOURCE_EXTERNAL, run_w=3.0, idle_w=None, run_s=2.0, images=1000)
    assert gross_only["energy_per_inference_mj"] is None and "gross" in gross_only["notes"][0]
    below = energy_report(source=SOURCE_EXTERNAL, run_w=1.9, idle_w=2.0, run_s=1.0, images=10)
    assert below["net_w"] == pytest.approx(-0.1) and "noise" in below["notes"][0]  # reported, not clamped
    with pytest.raises(InputError):
        energy_report(source=SOURCE_EXTERNAL, run_w=1.0, idle_w=None, run_s=0.0, images=10)


def test_thread_sampler_reads_the_rails():
    power = PhasedPower(10.0, 12.5)
    rails = zcu104_rails(power)
    meter = PmbusMeter(rails, ("12V", "INT"), interval_s=0.01, recorder="thread")
    assert meter.sampler == "thread" and meter.read() == [10.0, 3.5]
    idle = meter.sample_for(0.05)
    assert len(idle) >= 2 and idle.mean_w == pytest.approx(13.5)
    assert set(idle.per_rail) == {"12V", "INT"} and np.all(np.diff(idle.t_s) > 0)
    power.phase = "run"
    with meter.recording() as out:
        pass  # an instant run still gets a reading
    assert len(out[0]) >= 1 and out[0].mean_w == pytest.approx(16.0)


def test_data_recorder_path():
    """With pynq.DataRecorder available (pandas on a PYNQ image) the meter records through it."""
    rails = zcu104_rails(lambda: 11.0)
    meter = PmbusMeter(rails, interval_s=0.01, recorder=FakeDataRecorder)
    assert meter.sampler == "pynq.DataRecorder"
    trace = meter.sample_for(0.05)
    assert FakeDataRecorder.instances[-1].sensors[0].name == "12V_power"
    assert len(trace) >= 2 and trace.mean_w == pytest.approx(11.0) and trace.t_s[0] == 0.0


def test_auto_picks_thread_without_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    assert PmbusMeter(zcu104_rails(lambda: 1.0)).sampler == "thread"


def test_derived_power_and_missing_rails():
    volts = FakeSensor("12V_voltage", lambda: 12.0)
    amps = FakeSensor("12V_current", lambda: 0.5)
    meter = PmbusMeter({"12V": FakeRail("12V", voltage=volts, current=amps)}, recorder="thread")
    assert meter.read() == [6.0]
    with pytest.raises(PowerUnavailable, match="no rail 'VCCINT'; rails here: 12V"):
        PmbusMeter({"12V": FakeRail("12V", power=volts)}, ("VCCINT",))
    with pytest.raises(PowerUnavailable, match="found no power rails"):
        PmbusMeter({})
    with pytest.raises(PowerUnavailable, match="no power sensor"):
        PmbusMeter({"12V": FakeRail("12V")})
    with pytest.raises(InputError):
        PmbusMeter(zcu104_rails(lambda: 1.0), interval_s=0)


def test_zcu104_session_subtracts_idle():
    power = PhasedPower(idle_w=10.0, run_w=12.0)
    session = PowerSession(
        PowerOptions(idle_s=0.05, interval_s=0.01),
        emulated=False,
        board="zcu104",
        meter_factory=lambda o: PmbusMeter(zcu104_rails(power), o.rails, o.interval_s, recorder="thread"),
    )
    assert session.source == SOURCE_PMBUS
    session.measure_idle()
    power.phase = "run"
    with session.during_run():
        import time

        time.sleep(0.05)
    r = session.report(run_s=0.5, images=100)
    assert r["available"] and r["source"] == SOURCE_PMBUS and r["rails"] == ["12V"]
    assert r["idle_w"] == pytest.approx(10.0) and r["run_w"] == pytest.approx(12.0)
    assert r["energy_per_inference_mj"] == pytest.approx(2.0 * 0.5 / 100 * 1e3)
    assert r["idle_samples"] >= 2 and r["run_samples"] >= 2
    trace = r["trace"]
    assert set(trace["phase"]) == {"idle", "run"} and len(trace["t_s"]) == len(trace["w"])
    assert trace["t_s"] == sorted(trace["t_s"])  # the run follows the idle baseline on one time axis


def test_zcu104_without_pmbus_is_not_available(monkeypatch):
    def no_rails(options):
        raise PowerUnavailable("pynq.get_rails() found no power rails")

    session = PowerSession(emulated=False, board="zcu104", meter_factory=no_rails)
    session.measure_idle()
    with session.during_run():
        pass
    r = session.report(1.0, 10)
    assert r == {"available": False, "source": None, "reason": "not available: pynq.get_rails() found no power rails"}


def test_default_factory_on_this_host_is_not_available():
    """The real pynq.get_rails() here has no libsensors: not available, never an invented figure."""
    pytest.importorskip("pynq")
    session = PowerSession(emulated=False, board="zcu104")
    assert session.source is None and session.reason.startswith("not available")


def test_pynq_z2_external_meter():
    session = PowerSession(PowerOptions(external_watts=2.9, external_idle_watts=2.4), emulated=False, board="pynq-z2")
    session.measure_idle()
    with session.during_run():
        pass
    r = session.report(run_s=10.0, images=1000)
    assert r["source"] == "external meter (user-entered)" == SOURCE_EXTERNAL
    assert r["run_w"] == 2.9 and r["idle_w"] == 2.4
    assert r["energy_per_inference_mj"] == pytest.approx(0.5 * 10.0 / 1000 * 1e3)
    assert r["trace"] is None and r["sampler"] is None


def test_pynq_z2_without_meter_and_host_are_not_available():
    z2 = PowerSession(emulated=False, board="pynq-z2").report(1.0, 10)
    assert not z2["available"] and "--external-power-watts" in z2["reason"]
    host = PowerSession(emulated=True, board="pynq-z2").report(1.0, 10)
    assert host["reason"] == NOT_AVAILABLE_HOST == "not available (host emulation)"
    off = PowerSession(PowerOptions(mode="off"), emulated=False, board="zcu104").report(1.0, 10)
    assert off["reason"] == "not measured (--power off)"
    with pytest.raises(InputError, match="host emulation"):
        PowerSession(PowerOptions(external_watts=2.0), emulated=True, board="pynq-z2")


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"external_watts": -1.0}, id="negative"),
        pytest.param({"external_watts": float("nan")}, id="nan"),
        pytest.param({"external_idle_watts": 2.0}, id="idle-without-run"),
        pytest.param({"mode": "on"}, id="mode"),
        pytest.param({"idle_s": -1.0}, id="idle-seconds"),
    ],
)
def test_bad_options(kwargs):
    with pytest.raises(InputError):
        PowerOptions(**kwargs)


def test_bench_records_power_around_the_fpga_pass(make_bundle, images, tmp_path):
    """The benchmark's FPGA pass, as on a ZCU104 with a bitstream: idle, then the run, energy in the report."""
    pytest.importorskip("pynq")
    from board.bench import benchmark, render_markdown, write_report
    from board.bundle import Bundle, load_bundle
    from board.driver import Accelerator

    toy = load_bundle(make_bundle())
    as_zcu104 = Bundle(toy.root, replace(toy.manifest, board="zcu104", emulated=False))
    power = PhasedPower(idle_w=9.0, run_w=9.5)

    def meter(options):
        return PmbusMeter(zcu104_rails(power), options.rails, options.interval_s, recorder="thread")

    class Switching(Accelerator):
        def predict(self, pixels):
            power.phase = "run"
            return super().predict(pixels)

    with Switching(toy, batch_size=4) as acc:
        report = benchmark(
            as_zcu104,
            images,
            np.zeros(len(images), np.int64),
            batch_size=4,
            accelerator=acc,
            reference="off",
            power=PowerOptions(idle_s=0.05, interval_s=0.005),
            power_meter_factory=meter,
        )
    p = report["power"]
    assert p["source"] == SOURCE_PMBUS and p["idle_w"] == pytest.approx(9.0)
    assert p["images"] == 12 and p["run_s"] == report["timing"]["fpga_pass_s"]
    assert p["energy_per_inference_mj"] == pytest.approx((p["run_w"] - 9.0) * p["run_s"] / 12 * 1e3)
    md = render_markdown(report)
    assert "Source: **PMBus (pynq.get_rails)**, rails 12V" in md and "energy per inference (net)" in md
    write_report(report, tmp_path / "r")
    assert report["plots"]["power_trace"] == "power_trace.png"
    assert (tmp_path / "r" / "power_trace.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
