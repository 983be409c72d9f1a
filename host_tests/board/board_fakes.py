"""Fakes for the registry, power and remote tests: bitstream bundles with fake files, pynq's cache, PMBus rails.

Nothing here touches hardware or the network: a "bitstream" is a few bytes, pynq's metadata cache is two files
in a temporary folder laid out as pynq 3/4 writes them, and rails are objects with pynq's Rail/Sensor shape
(``rail.power.name``, ``rail.power.value``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np

from board.bundle import Manifest, TensorSpec, write_manifest

#: (bit header part, .hwh DEVICE, PACKAGE, SPEEDGRADE, ARCH) of each board, as Vivado writes them.
_BOARD_FILES = {
    "pynq-z2": ("7z020clg400", "7z020", "clg400", "-1", "zynq"),
    "zcu104": ("xczu7ev-ffvc1156-2-e", "xczu7ev", "ffvc1156", "-2", "zynquplus"),
}


def fake_bit(board: str = "zcu104", data: bytes = b"BITSTREAM", part: str | None = None) -> bytes:
    """A well-formed ``.bit``: the header fields Vivado writes (design, part, date, time, length), then ``data``."""

    def field(key: bytes, text: str) -> bytes:
        raw = text.encode("ascii") + b"\x00"
        return key + len(raw).to_bytes(2, "big") + raw

    head = b"\x00\x09\x0f\xf0\x0f\xf0\x0f\xf0\x0f\xf0\x00\x00\x01"
    head += field(b"a", "design_1_wrapper;UserID=0XFFFFFFFF;Version=2024.2")
    head += field(b"b", part or _BOARD_FILES[board][0]) + field(b"c", "2026/01/01") + field(b"d", "00:00:00")
    return head + b"e" + len(data).to_bytes(4, "big") + data


def fake_hwh(board: str = "zcu104", marker: str = "v1", dma: str = "hier_0/axi_dma_0") -> str:
    """The smallest hardware handoff :func:`board.hwh.check_hardware_files` accepts: the board's part, a simple-mode
    AXI DMA at ``dma`` streaming into an hls4ml accelerator and back, with TLAST. ``marker`` tells versions apart."""
    _, device, package, speed, arch = _BOARD_FILES[board]
    hier = dma.rpartition("/")[0]
    acc = f"{hier}/myproject_axi_0" if hier else "myproject_axi_0"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<EDKSYSTEM EDWVERSION="1.2" VIVADOVERSION="{marker}">
  <SYSTEMINFO ARCH="{arch}" DEVICE="{device}" NAME="design_1" PACKAGE="{package}" SPEEDGRADE="{speed}"/>
  <MODULES>
    <MODULE FULLNAME="/{dma}" INSTANCE="{dma.replace("/", "_")}" MODTYPE="axi_dma" VLNV="xilinx.com:ip:axi_dma:7.1">
      <PARAMETERS>
        <PARAMETER NAME="c_include_sg" VALUE="0"/><PARAMETER NAME="c_sg_length_width" VALUE="26"/>
        <PARAMETER NAME="c_include_mm2s" VALUE="1"/><PARAMETER NAME="c_include_s2mm" VALUE="1"/>
      </PARAMETERS>
      <BUSINTERFACES>
        <BUSINTERFACE BUSNAME="to_acc" NAME="M_AXIS_MM2S" TYPE="MASTER">
          <PARAMETER NAME="HAS_TLAST" VALUE="1"/>
        </BUSINTERFACE>
        <BUSINTERFACE BUSNAME="from_acc" NAME="S_AXIS_S2MM" TYPE="SLAVE">
          <PARAMETER NAME="HAS_TLAST" VALUE="1"/>
        </BUSINTERFACE>
      </BUSINTERFACES>
    </MODULE>
    <MODULE FULLNAME="/{acc}" INSTANCE="{acc.replace("/", "_")}" MODTYPE="myproject_axi"
            VLNV="xilinx.com:hls:myproject_axi:1.0">
      <BUSINTERFACES>
        <BUSINTERFACE BUSNAME="to_acc" NAME="in_r" TYPE="SLAVE"/>
        <BUSINTERFACE BUSNAME="from_acc" NAME="out_r" TYPE="MASTER"/>
      </BUSINTERFACES>
    </MODULE>
  </MODULES>
</EDKSYSTEM>
"""


def write_hw_bundle(
    root: Path, board: str = "zcu104", model_id: str = "hw", bit: bytes | None = None, hwh: str | None = None
) -> Path:
    """A bundle with a small but well-formed bitstream and .hwh (:func:`fake_bit`, :func:`fake_hwh`) sharing the stem
    ``model_id``, under ``root/<board>/<model_id>``."""
    folder = root / board / model_id
    folder.mkdir(parents=True)
    (folder / f"{model_id}.bit").write_bytes(bit if bit is not None else fake_bit(board))
    (folder / f"{model_id}.hwh").write_text(hwh if hwh is not None else fake_hwh(board))
    write_manifest(
        folder,
        Manifest(
            model_id=model_id,
            board=board,
            input=TensorSpec("image", [32, 32, 3], "ap_ufixed<8,0>", "uint8"),
            output=TensorSpec("logits", [10], "ap_fixed<16,6>", "int16"),
            preprocessing={"input_scale": 0.00390625},
            emulated=False,
            bitstream=f"{model_id}.bit",
            hwh=f"{model_id}.hwh",
        ),
    )
    return folder


def sha1_of(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def write_pynq_cache(state_dir: Path, bitfile: Path, bit_sha1: str | None = None, pickle: bool = True) -> list[Path]:
    """pynq's cache for ``bitfile`` as pynq 3/4 leaves it: ``global_pl_state_.json`` + ``_current_metadata.pkl``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state = state_dir / "global_pl_state_.json"
    state.write_text(
        json.dumps(
            {
                "bitfile_name": str(bitfile),
                "bitfile_hash": bit_sha1 if bit_sha1 is not None else sha1_of(bitfile),
                "timestamp": "2026/11/22 12:0:0 +0",
                "active_name": "fake",
                "shutdown_ips": {},
                "psddr": {},
            }
        )
    )
    files = [state]
    if pickle:
        pkl = state_dir / "_current_metadata.pkl"
        pkl.write_bytes(b"pickled parser")
        files.append(pkl)
    return files


class FakeSensor:
    """A pynq Sensor: ``name`` and ``value`` (watts); the value comes from ``source()`` at each read."""

    def __init__(self, name: str, source) -> None:
        self.name, self._source, self.parents = name, source, ()
        self.reads = 0

    @property
    def value(self) -> float:
        self.reads += 1
        return float(self._source())

    def get_value(self, parents=None) -> float:
        return self.value


class FakeRail:
    """A pynq Rail: ``name``, ``voltage``, ``current``, ``power`` (any may be None)."""

    def __init__(self, name: str, power=None, voltage=None, current=None) -> None:
        self.name, self.power, self.voltage, self.current = name, power, voltage, current


class PhasedPower:
    """Watts that depend on a phase flag the test flips: ``idle`` then ``run``."""

    def __init__(self, idle_w: float, run_w: float) -> None:
        self.idle_w, self.run_w, self.phase = idle_w, run_w, "idle"

    def __call__(self) -> float:
        return self.idle_w if self.phase == "idle" else self.run_w


def zcu104_rails(source) -> dict[str, FakeRail]:
    """The ZCU104's rail names (as ``pynq.get_rails()`` lists them) with ``12V`` reading ``source``."""
    rails = {"12V": FakeRail("12V", power=FakeSensor("12V_power", source))}
    for name, w in (("INT", 3.5), ("1V2", 0.28), ("1V8", 0.56), ("3V3", 2.0)):
        rails[name] = FakeRail(name, power=FakeSensor(f"{name}_power", lambda w=w: w))
    return rails


class FakeFrame:
    """What DataRecorder.frame offers the meter: ``len``, ``index.asi8`` (ns) and columns by sensor name."""

    def __init__(self, t_ns: list[int], columns: dict[str, list[float]]) -> None:
        self.index = type("Index", (), {"asi8": np.asarray(t_ns, np.int64)})()
        self._columns = columns

    def __len__(self) -> int:
        return len(self.index.asi8)

    def __getitem__(self, name: str) -> np.ndarray:
        return np.asarray(self._columns[name])


class FakeDataRecorder:
    """pynq.DataRecorder's interface (``record(interval)`` as a context manager, ``frame``), sampling in a thread."""

    instances: list[FakeDataRecorder] = []

    def __init__(self, *sensors) -> None:
        self.sensors, self.t_ns, self.rows = sensors, [], []
        self._stop = threading.Event()
        FakeDataRecorder.instances.append(self)

    def record(self, interval: float) -> FakeDataRecorder:
        self.interval = interval

        def loop() -> None:
            i = 0
            while True:
                self.t_ns.append(int(i * interval * 1e9))
                self.rows.append([s.value for s in self.sensors])
                i += 1
                if self._stop.wait(interval):
                    return

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> FakeDataRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def frame(self) -> FakeFrame:
        cols = {s.name: [r[i] for r in self.rows] for i, s in enumerate(self.sensors)}
        return FakeFrame(self.t_ns, cols)
