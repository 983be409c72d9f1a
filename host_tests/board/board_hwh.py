"""Real Vivado hardware handoffs (``fixtures/hwh``) and a pynq device that reads them the way a board does.

:class:`HwhDevice` is the emulated overlay (:class:`board.emulated_device.EmulatedDevice`: an AXI DMA register file
with a stream kernel behind it) whose ``get_bitfile_metadata`` is what pynq 3/4's embedded device does for a ``.bit``
with a ``.hwh`` next to it: use the pickled metadata when pynq's state file records the same bitstream (sha1), else
parse the ``.hwh`` with pynq's own parser (``pynqmetadata`` + ``RuntimeMetadataParser``). So ``pynq.Overlay(bit,
download=False, device=HwhDevice(...))`` builds its IP dictionary, hierarchies and ``pynq.lib.dma.DMA`` drivers from
a real ``.hwh``, and the DMA it finds at the handoff's address is the emulated one.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hwh"
#: name -> (fixture, sha256 of the uncompressed .hwh as SOURCES.md records it)
REAL_HWH = {
    "pynqz2_axis_dma": (
        "pynqz2_hls4ml_axis_dma.hwh.gz",
        "1c1d587335c63eb5510000a365dbf13e0cc44183b160ab67f9cdc27af04a5c36",
    ),
    "pynqz2_tutorial": (
        "pynqz2_hls4ml_tutorial.hwh.gz",
        "8fc3d2a0b5a842fff426964915c5d94348872e633d653d80ccdde3a26fe05aad",
    ),
    "kv260_axi_stream": (
        "kv260_hls4ml_axi_stream.hwh.gz",
        "90e4895a93c2768b6915f660996120ea2c93470f11f3b19745da214622d67619",
    ),
}
PYNQZ2_BIT_HEADER = FIXTURES / "pynqz2_hls4ml_axis.bit.header"

_PARSED: dict[str, object] = {}


def hwh_bytes(name: str) -> bytes:
    """The uncompressed ``.hwh`` of a fixture."""
    return gzip.decompress((FIXTURES / REAL_HWH[name][0]).read_bytes())


def write_real_bit(path: Path) -> Path:
    """A ``.bit`` with the real PYNQ-Z2 header, padded (sparse) to the length the header announces."""
    header = PYNQZ2_BIT_HEADER.read_bytes()
    length = int.from_bytes(header[-4:], "big")
    with path.open("wb") as f:
        f.write(header)
        f.truncate(len(header) + length)
    return path


def pynq_parse(hwh: Path):
    """pynq's own parse of a ``.hwh`` (what ``pynq.Overlay`` uses on an embedded board), cached per content."""
    from pynqmetadata.frontends import Metadata
    from pynqmetadata.views.runtime import RuntimeMetadataParser

    key = hashlib.sha256(Path(hwh).read_bytes()).hexdigest()
    if key not in _PARSED:
        parser = RuntimeMetadataParser(Metadata(input=str(hwh)))
        parser.refresh_hierarchy_dict()
        _PARSED[key] = pickle.dumps(parser)
    return pickle.loads(_PARSED[key])


def make_hwh_device(kernel, dma: dict, state_dir: Path | None = None):
    """An emulated device whose bitstream metadata comes from the real ``.hwh`` (see the module docstring)."""
    from board.emulated_device import EmulatedDevice

    class HwhDevice(EmulatedDevice):
        parses = 0
        cache_hits = 0

        def get_bitfile_metadata(self, bitfile_name):
            bit = Path(bitfile_name)
            if state_dir is not None:
                state = state_dir / "global_pl_state_.json"
                pkl = state_dir / "_current_metadata.pkl"
                if state.is_file() and pkl.is_file():
                    recorded = json.loads(state.read_text()).get("bitfile_hash")
                    if recorded == hashlib.sha1(bit.read_bytes()).hexdigest():
                        HwhDevice.cache_hits += 1
                        return pickle.loads(pkl.read_bytes())  # pynq never reads the .hwh in this case
            HwhDevice.parses += 1
            parser = pynq_parse(bit.with_suffix(".hwh"))
            # No interrupt controller or UIO here: pynq's DMA driver would bind the DMA's interrupt pins through
            # them (the KV260 design wires its DMA to an axi_intc). The runtime polls DMASR and never waits on an
            # interrupt, so the emulated overlay drops the pins; everything else is pynq's parse as it is.
            for ip in parser.ip_dict.values():
                ip["interrupts"] = {}
            return parser

    return HwhDevice(kernel, dma)
