"""``python -m board doctor``: every check on the emulated overlay, with faults injected; it never hangs."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest

from board.bundle import load_bundle, read_manifest, write_manifest
from board.doctor import FAIL, PASS, SKIP, check_memory, doctor_exit, known_pattern, parse_meminfo, run_doctor
from board.errors import CheckFailedError

MEMINFO_OK = "MemTotal: 16000000 kB\nMemAvailable: 8000000 kB\nCmaTotal: 262144 kB\nCmaFree: 200000 kB\n"


@pytest.fixture
def meminfo(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text(MEMINFO_OK)
    return path


def _status(report) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def _check(report, name):
    return next(c for c in report.checks if c.name == name)


def test_healthy_emulated_bundle_passes(make_bundle, meminfo, capsys):
    from board.__main__ import main

    root = make_bundle()
    report = run_doctor(root, board="host", meminfo=meminfo, timeout_s=5.0)
    assert _status(report) == {
        "pynq": PASS,
        "board": PASS,
        "contiguous memory": PASS,
        "bundle": PASS,
        "overlay load": PASS,
        "DMA round trip": PASS,
        "PL clock": SKIP,
    }
    assert "identical outputs" in _check(report, "DMA round trip").detail
    doctor_exit(report)  # no failure: returns
    assert main(["doctor", "--bundle", str(root), "--board", "host"]) == 0
    out = capsys.readouterr().out
    assert "PASS  DMA round trip" in out and "all checks passed" in out


def test_dma_error_bit_fails_the_round_trip(make_bundle, meminfo):
    from board.emulated_device import EmulatedDevice

    bundle = load_bundle(make_bundle())
    with EmulatedDevice.from_bundle(bundle) as dev:
        dev.inject_fault("s2mm", "slave")
        report = run_doctor(bundle.root, board="host", meminfo=meminfo, timeout_s=5.0, device=dev)
    dma = _check(report, "DMA round trip")
    assert dma.status == FAIL and "DMA slave error" in dma.detail and "reboot" in dma.fix
    assert [c.name for c in report.failed] == ["DMA round trip"]
    with pytest.raises(CheckFailedError, match="1 check\\(s\\) failed: DMA round trip") as exc:
        doctor_exit(report)
    assert exc.value.exit_code == 1


def test_dma_that_never_completes_does_not_hang(make_bundle, meminfo):
    from board.emulated_device import EmulatedDevice, StallingKernel

    bundle = load_bundle(make_bundle())
    with EmulatedDevice.from_bundle(bundle) as dev:
        dev.kernel = StallingKernel(dev.kernel, pass_images=0)
        t0 = time.monotonic()
        report = run_doctor(bundle.root, board="host", meminfo=meminfo, timeout_s=0.3, device=dev)
        elapsed = time.monotonic() - t0
    dma = _check(report, "DMA round trip")
    assert dma.status == FAIL and "did not complete within 0.3 s" in dma.detail and "stalled" in dma.fix
    assert elapsed < 30


def test_a_stuck_check_is_abandoned(make_bundle, meminfo):
    root = make_bundle()

    def stuck_clock():
        time.sleep(30)
        return 100.0

    t0 = time.monotonic()
    report = run_doctor(root, board="host", meminfo=meminfo, check_timeout_s=0.5, clock_reader=stuck_clock)
    clock = _check(report, "PL clock")
    assert clock.status == FAIL and "did not finish within 0.5 s" in clock.detail
    assert time.monotonic() - t0 < 20


def test_missing_memory(make_bundle, tmp_path):
    root = make_bundle()
    low = tmp_path / "low"
    low.write_text("MemTotal: 1000 kB\nMemAvailable: 100 kB\n")
    report = run_doctor(root, board="host", meminfo=low, timeout_s=5.0)
    mem = _check(report, "contiguous memory")
    assert mem.status == FAIL and "need" in mem.detail and mem.fix

    # On a board: the CMA that pynq.allocate takes its buffers from.
    needed = 100 * (3072 + 20)
    assert check_memory(needed, parse_meminfo(low), contiguous=True).detail.startswith("the kernel reports no")
    none_free = {"CmaTotal": 256 << 20, "CmaFree": 0}
    c = check_memory(needed, none_free, contiguous=True)
    assert c.status == FAIL and "0.0 MiB of 256.0 MiB CMA free" in c.detail and "pynq.allocate" in c.fix
    assert check_memory(needed, {"CmaTotal": 256 << 20, "CmaFree": 1 << 20}, contiguous=True).status == PASS


def test_wrong_board(make_bundle, meminfo, capsys):
    from board.__main__ import main

    root = make_bundle()  # built for the pynq-z2
    report = run_doctor(root, board="zcu104", meminfo=meminfo)
    board = _check(report, "board")
    assert board.status == FAIL and "this is a zcu104, but the bundle is built for the pynq-z2" in board.detail
    assert _status(report)["overlay load"] == SKIP and _status(report)["DMA round trip"] == SKIP
    assert main(["doctor", "--bundle", str(root), "--board", "zcu104"]) == 1
    io = capsys.readouterr()
    assert "FAIL  board" in io.out and "what to do:" in io.out and "check(s) failed: board" in io.err


def test_pl_clock_against_the_design(make_bundle, meminfo):
    root = make_bundle()
    write_manifest(root, replace(read_manifest(root), hls={"clock_mhz": 100.0}))
    slow = run_doctor(root, board="host", meminfo=meminfo, clock_reader=lambda: 50.0)
    assert _check(slow, "PL clock").status == FAIL and "built for 100 MHz" in _check(slow, "PL clock").detail
    ok = run_doctor(root, board="host", meminfo=meminfo, clock_reader=lambda: 99.999)
    assert _check(ok, "PL clock").status == PASS


def test_no_bundle_and_bad_bundle(tmp_path, meminfo, monkeypatch):
    monkeypatch.setenv("ZYNQ_RESNET_OVERLAYS", str(tmp_path / "none"))
    report = run_doctor(None, board="host", meminfo=meminfo)
    assert _check(report, "bundle").status == FAIL and "none found" in _check(report, "bundle").detail
    (tmp_path / "junk").mkdir()
    report = run_doctor(tmp_path / "junk", board="host", meminfo=meminfo)
    assert _check(report, "bundle").status == FAIL


def test_known_pattern():
    p = known_pattern()
    assert p.shape == (3, 32, 32, 3) and p[0].max() == 0 and p[1].min() == 255 and len(set(p[2].ravel())) == 256


def test_on_a_board_with_a_stale_cache_and_no_cma(tmp_path, monkeypatch):
    """A bitstream bundle on a (declared) PYNQ-Z2: CMA from /proc/meminfo, pynq's stale cache named with its fix."""
    from board_fakes import write_hw_bundle, write_pynq_cache

    from board import registry

    root = write_hw_bundle(tmp_path / "overlays", "pynq-z2", "hw")
    state = tmp_path / "pl_server"
    files = write_pynq_cache(state, root / "hw.bit")
    monkeypatch.setattr(registry, "pynq_state_dir", lambda: state)
    (root / "hw.hwh").touch()
    old = time.time() - 3600
    os.utime(files[1], (old, old))  # the cache was parsed before the .hwh last changed
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemAvailable: 8000000 kB\nCmaTotal: 131072 kB\nCmaFree: 0 kB\n")
    report = run_doctor(root, board="pynq-z2", meminfo=meminfo, clock_reader=lambda: 100.0)
    status = _status(report)
    assert status["board"] == PASS and status["contiguous memory"] == FAIL
    bundle = _check(report, "bundle")
    assert bundle.status == FAIL and "stale" in bundle.detail and "--clear-stale-cache" in bundle.fix
    assert status["overlay load"] == SKIP and status["DMA round trip"] == SKIP


def test_bitstream_bundle_on_a_host_fails_to_load_without_hanging(tmp_path, meminfo):
    from board_fakes import write_hw_bundle

    root = write_hw_bundle(tmp_path / "overlays", "zcu104", "hw")
    report = run_doctor(root, board="host", meminfo=meminfo, check_timeout_s=60)
    assert _check(report, "bundle").status == PASS and "hier_0/axi_dma_0" in _check(report, "bundle").detail
    load = _check(report, "overlay load")
    assert load.status == FAIL and "cannot load overlay" in load.detail
    assert _status(report)["DMA round trip"] == SKIP
