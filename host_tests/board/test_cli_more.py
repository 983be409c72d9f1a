"""``python -m board`` demo, list (overlay roots, board filter) and remote-bench (commands only, no network)."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
from board_fakes import write_hw_bundle
from board_toys import toy_raw

import board.__main__ as cli
from board.__main__ import main, remote_bench_commands


@pytest.fixture
def roots(make_bundle, tmp_path, monkeypatch):
    make_bundle("toy")
    write_hw_bundle(tmp_path / "overlays", "zcu104", "hw")
    monkeypatch.setenv("ZYNQ_RESNET_OVERLAYS", str(tmp_path / "overlays"))
    monkeypatch.delenv("ZYNQ_RESNET_BOARD", raising=False)
    monkeypatch.delenv("BOARD", raising=False)
    return tmp_path / "overlays"


def test_demo_on_the_host(roots, cifar10_dir, tmp_path, capsys):
    pytest.importorskip("pynq")
    from board.cifar10 import load_split

    out = tmp_path / "demo"
    assert main(["demo", "-n", "5", "--out", str(out), "--cifar10-dir", str(cifar10_dir)]) == 0
    stdout = capsys.readouterr().out.splitlines()
    assert stdout[0].startswith("bundle pynq-z2/toy at ") and "host emulation" in stdout[0]
    test = load_split("test", directory=cifar10_dir).head(5)
    expected = np.argmax(toy_raw(test.images.reshape(5, -1)), axis=1)
    result = json.loads((out / "demo.json").read_text())
    assert result["predictions"] == expected.tolist() and result["labels"] == test.labels.tolist()
    assert result["emulated"] is True and result["running_on"] == "host"
    assert len([line for line in stdout if line.rstrip().endswith(("ok", "WRONG"))]) == 5
    # The toy bundle has no firmware graph, so the default engine is the C-simulation, and the demo says so.
    assert (
        stdout[1].startswith("engine: csim (host emulation by the hls4ml C-simulation") and result["engine"] == "csim"
    )
    assert any(
        line.startswith("top-1 ") and "host emulation (csim engine), not board timings" in line for line in stdout
    )
    assert stdout[-1] == f"report: {out / 'demo.md'}"


def test_demo_without_a_runnable_bundle(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("ZYNQ_RESNET_OVERLAYS", str(tmp_path / "empty"))
    assert main(["demo", "--board", "host"]) == 2
    assert "no emulated bundle under the overlay roots" in capsys.readouterr().err


def test_list_filters_by_board(roots, capsys):
    assert main(["list"]) == 0  # host: every bundle
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split()[:2] for r in rows] == [["pynq-z2", "toy"], ["zcu104", "hw"]]
    assert main(["list", "--board", "zcu104"]) == 0
    assert [r.split()[:4] for r in capsys.readouterr().out.splitlines()[1:]] == [["zcu104", "hw", "false", "true"]]
    assert main(["list", "--board", "zcu104", "--all"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_remote_bench_commands():
    cmds = remote_bench_commands(
        "xilinx@192.168.2.99",
        Path("/work/overlays/zcu104/resnet8"),
        "zcu104",
        bench_args=["-n", "10000", "--batch-sizes", "1,10,100"],
        local_out=Path("build/reports/zcu104/resnet8-remote"),
        ssh_options=["-o", "Port=2222"],
    )
    assert [c[0] for c in cmds] == ["ssh", "scp", "ssh", "scp"]
    prepare, copy, run, fetch = cmds
    assert prepare == [
        "ssh", "-o", "Port=2222", "xilinx@192.168.2.99",
        "rm -rf zynq_resnet/overlays/zcu104/resnet8 && mkdir -p zynq_resnet/overlays/zcu104 zynq_resnet/reports/zcu104",
    ]  # fmt: skip
    assert copy == [
        "scp", "-r", "-q", "-o", "Port=2222", "/work/overlays/zcu104/resnet8",
        "xilinx@192.168.2.99:zynq_resnet/overlays/zcu104/",
    ]  # fmt: skip
    assert run[:5] == ["ssh", "-o", "Port=2222", "-t", "xilinx@192.168.2.99"]
    # One remote command line: sudo + login shell (PYNQ's venv), then the bench with the user's options.
    remote = shlex.split(run[5])
    assert remote[:3] == ["sudo", "-E", "bash"] and remote[3] == "-lc"
    assert shlex.split(remote[4]) == [
        "cd", "zynq_resnet", "&&", "python3", "-m", "board", "bench", "--bundle", "overlays/zcu104/resnet8",
        "--out", "reports/zcu104/resnet8-remote", "-n", "10000", "--batch-sizes", "1,10,100",
    ]  # fmt: skip
    assert fetch == [
        "scp", "-r", "-q", "-o", "Port=2222", "xilinx@192.168.2.99:zynq_resnet/reports/zcu104/resnet8-remote",
        "build/reports/zcu104/",
    ]  # fmt: skip


def test_remote_bench_commands_copy_runtime_no_sudo_and_quoting():
    cmds = remote_bench_commands(
        "pynq",
        Path("b/my bundle"),
        "pynq-z2",
        remote_dir="/home/xilinx/zr",
        sudo=False,
        copy_runtime=True,
        runtime_dir=Path("/src/board"),
        bench_args=["--external-power-watts", "2.9"],
        local_out=Path("out/r"),
    )
    assert len(cmds) == 5 and cmds[2] == ["scp", "-r", "-q", "/src/board", "pynq:/home/xilinx/zr/"]
    assert "rm -rf /home/xilinx/zr/board" in cmds[0][-1]
    assert "'/home/xilinx/zr/overlays/pynq-z2/my bundle'" in cmds[0][-1]  # quoted for the remote shell
    run = cmds[3]
    assert "-t" not in run and shlex.split(run[-1])[:2] == ["bash", "-lc"]
    inner = shlex.split(shlex.split(run[-1])[2])
    assert inner[:5] == ["cd", "/home/xilinx/zr", "&&", "PYTHONPATH=.", "python3"]
    assert inner[inner.index("--bundle") + 1] == "overlays/pynq-z2/my bundle"
    assert inner[-2:] == ["--external-power-watts", "2.9"]


def test_remote_bench_runs_the_commands_in_order(roots, tmp_path, monkeypatch, capsys):
    calls = []

    def fake_run(cmd, check=False):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(cli.subprocess, "run", fake_run)
    out = tmp_path / "fetched" / "r"
    rc = main(["remote-bench", "--host", "xilinx@pynq", "--bundle", "zcu104/hw", "--out", str(out), "--", "-n", "5"])
    assert rc == 0 and [c[0] for c in calls] == ["ssh", "scp", "ssh", "scp"]
    assert calls[1][-2] == str(roots / "zcu104" / "hw")
    assert shlex.split(shlex.split(calls[2][-1])[4])[-2:] == ["-n", "5"]
    assert capsys.readouterr().out.strip() == f"report fetched into {out}"

    calls.clear()
    assert main(["remote-bench", "--host", "h", "--bundle", "zcu104/hw", "--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert calls == [] and len(printed) == 4 and printed[0].startswith("ssh h ")

    def failing(cmd, check=False):
        return subprocess.CompletedProcess(cmd, 255)

    monkeypatch.setattr(cli.subprocess, "run", failing)
    assert main(["remote-bench", "--host", "h", "--bundle", "zcu104/hw"]) == 2
    assert "failed with exit status 255" in capsys.readouterr().err
    assert main(["remote-bench", "--host", "h", "--bundle", "zcu104/hw", "--", "--out", "x"]) == 2
    assert "sets --out itself" in capsys.readouterr().err
