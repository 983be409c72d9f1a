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


def write_hw_bundle(
    root: Path, board: str = "zcu104", model_id: str = "hw", bit: bytes = b"BITSTREAM", hwh: str = "<hwh v1/>"
) -> Path:
    """A bundle with a (fake) bitstream and .hwh sharing the stem ``model_id``, under ``root/<board>/<model_id>``."""
    folder = root / board / model_id
    folder.mkdir(parents=True)
    (folder / f"{model_id}.bit").write_bytes(bit)
    (folder / f"{model_id}.hwh").write_text(hwh)
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
