"""What a bundle's Vivado outputs say about the hardware: the ``.hwh`` hardware handoff and the ``.bit`` header.

pynq reads the same files when it loads an overlay (``pynq.Overlay`` parses the ``.hwh`` with pynqmetadata; the
FPGA manager checks nothing of the ``.bit`` but its length). This module reads them first, with the standard
library only, so that a wrong file fails early with an error naming the file and what is wrong with it, instead of
a pynq traceback halfway through loading:

* :func:`read_hwh`: the ``EDKSYSTEM`` document Vivado writes (system info, every IP with its VLNV, parameters and
  stream interfaces, the processing system's address map and PL clocks). A file that is not XML or not a
  hardware handoff raises :class:`~board.errors.BundleError`.
* :func:`find_dma` / :func:`find_accelerator`: the AXI DMA and the accelerator **by the names Vivado gave them**
  (``/hier_0/axi_dma_0`` in hls4ml's PYNQ-Z2 design, ``/axi_dma_0`` in other designs); the accelerator is the IP
  the DMA's MM2S stream feeds.
* :func:`dma_config`: the DMA's settings the driver relies on (simple mode, both channels, length register width,
  data widths, TLAST on both streams).
* :func:`read_bit_header` / :func:`check_bit_part`: the part a bitstream was built for (a PYNQ-Z2 bitstream is
  refused for a ZCU104 bundle and the other way round).
* :func:`check_hardware_files`: all of the above for one bundle, against its manifest and board.

pynq's own address map is the one the driver uses on the board; this reading is a check, never a substitute.
"""

from __future__ import annotations

import os
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from board.errors import BundleError

__all__ = [
    "BOARD_PARTS",
    "BitHeader",
    "HwhInfo",
    "HwhModule",
    "check_bit_part",
    "check_hardware_files",
    "dma_config",
    "find_accelerator",
    "find_dma",
    "find_dma_in_ip_dict",
    "read_bit_header",
    "read_hwh",
]

#: The FPGA part of each supported board (the same as ``hls_build.boards``; a host test keeps them equal). The
#: board runtime does not import ``hls_build``: it is not installed on a board.
BOARD_PARTS = {"pynq-z2": "xc7z020clg400-1", "zcu104": "xczu7ev-ffvc1156-2-e"}
#: The processing-system IP of each chip family, as ``SYSTEMINFO ARCH`` names the family.
PS_OF_ARCH = {"zynq": "processing_system7", "zynquplus": "zynq_ultra_ps_e"}
_AXI_DMA = "axi_dma"
_MAX_HWH_BYTES = 64 * 1024 * 1024  # a real .hwh is under a few MB; refuse to parse something huge
_MAX_BIT_HEADER = 4096  # the .bit header fields end well before this


# ------------------------------------------------------------------------------------------------------------ .hwh
@dataclass(frozen=True)
class HwhModule:
    """One IP of the block design.

    Attributes:
        fullname: its path in the block design, e.g. ``/hier_0/axi_dma_0``.
        instance: Vivado's flat instance name (``hier_0_axi_dma_0``).
        vlnv: vendor:library:name:version, e.g. ``xilinx.com:ip:axi_dma:7.1``.
        modtype: the IP name (``axi_dma``, ``myproject_axi``, ``processing_system7``).
        parameters: the IP's parameters, names as written (Vivado writes both ``C_X`` and ``c_x`` for some IPs).
        busifs: stream/memory interfaces: name -> ``{"busname", "type", "vlnv", "parameters"}``.
    """

    fullname: str
    instance: str
    vlnv: str
    modtype: str
    parameters: dict[str, str] = field(default_factory=dict)
    busifs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """The name pynq gives the IP: the full name without the leading slash (``hier_0/axi_dma_0``)."""
        return self.fullname.lstrip("/")

    @property
    def version(self) -> str:
        """The IP version from the VLNV (``7.1``)."""
        return self.vlnv.rsplit(":", 1)[-1]

    def param(self, name: str, default: str | None = None) -> str | None:
        """A parameter by name, case-insensitively."""
        if name in self.parameters:
            return self.parameters[name]
        low = name.lower()
        for k, v in self.parameters.items():
            if k.lower() == low:
                return v
        return default


@dataclass(frozen=True)
class HwhInfo:
    """What a ``.hwh`` says.

    Attributes:
        path: the file.
        vivado_version: ``VIVADOVERSION`` of the document.
        system: ``SYSTEMINFO`` attributes (``ARCH``, ``BOARD``, ``DEVICE``, ``PACKAGE``, ``SPEEDGRADE``, ``NAME``).
        modules: every IP, by full name.
        address_map: the processing system's address map: IP full name -> ``(base, high)``.
        pl_clocks_mhz: PL clock index -> requested frequency in MHz (from the PS's configuration).
    """

    path: Path
    vivado_version: str
    system: dict[str, str]
    modules: dict[str, HwhModule]
    address_map: dict[str, tuple[int, int]]
    pl_clocks_mhz: dict[int, float]

    @property
    def arch(self) -> str:
        """The chip family: ``zynq`` (Zynq-7000) or ``zynquplus`` (Zynq UltraScale+)."""
        return self.system.get("ARCH", "")

    @property
    def part(self) -> str:
        """``<device><package><speed grade>`` as a part name, e.g. ``xc7z020clg400-1``."""
        device = self.system.get("DEVICE", "")
        if device and not device.startswith("xc"):
            device = "xc" + device  # Zynq-7000 handoffs say 7z020, UltraScale+ ones xczu7ev
        return f"{device}{self.system.get('PACKAGE', '')}{self.system.get('SPEEDGRADE', '')}"

    def of_type(self, modtype: str) -> list[HwhModule]:
        """The IPs of one type (``axi_dma``), in full-name order."""
        return [m for _, m in sorted(self.modules.items()) if m.modtype == modtype]

    @property
    def processing_system(self) -> HwhModule | None:
        """The Zynq processing system IP, if any."""
        for m in self.modules.values():
            if m.modtype in PS_OF_ARCH.values():
                return m
        return None


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > _MAX_HWH_BYTES:
            raise BundleError(f"{path}: {size} bytes is far too large for a hardware handoff (.hwh)")
        return path.read_bytes().decode("utf-8-sig")  # Vivado 2019 writes a byte-order mark
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path}: not a Vivado hardware handoff (.hwh): not UTF-8 text ({exc})") from exc
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the hardware handoff (.hwh): {exc}") from exc


def _params(elem: ET.Element | None) -> dict[str, str]:
    if elem is None:
        return {}
    return {p.get("NAME", ""): p.get("VALUE", "") for p in elem.findall("PARAMETER") if p.get("NAME")}


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def read_hwh(path: str | os.PathLike) -> HwhInfo:
    """Read a Vivado hardware handoff.

    Raises:
        BundleError: the file cannot be read, is not XML, or is not a hardware handoff (names the file).
    """
    path = Path(path)
    text = _read_text(path)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise BundleError(f"{path}: not a Vivado hardware handoff (.hwh): the XML is malformed ({exc})") from exc
    if root.tag != "EDKSYSTEM":
        raise BundleError(
            f"{path}: not a Vivado hardware handoff (.hwh): the document is <{root.tag}>, expected <EDKSYSTEM> "
            "(copy the .hwh from the Vivado project's hw_handoff folder, next to the .bit with the same stem)"
        )
    sysinfo = root.find("SYSTEMINFO")
    modules: dict[str, HwhModule] = {}
    for m in root.iter("MODULE"):
        fullname = m.get("FULLNAME") or ("/" + (m.get("INSTANCE") or ""))
        busifs: dict[str, dict[str, Any]] = {}
        for b in m.iter("BUSINTERFACE"):
            busifs[b.get("NAME", "")] = {
                "busname": b.get("BUSNAME", ""),
                "type": b.get("TYPE", ""),
                "vlnv": b.get("VLNV", ""),
                "parameters": {p.get("NAME", ""): p.get("VALUE", "") for p in b.findall("PARAMETER")},
            }
        modules[fullname] = HwhModule(
            fullname=fullname,
            instance=m.get("INSTANCE", ""),
            vlnv=m.get("VLNV", ""),
            modtype=m.get("MODTYPE", ""),
            parameters=_params(m.find("PARAMETERS")),
            busifs=busifs,
        )
    if not modules:
        raise BundleError(f"{path}: not a usable hardware handoff (.hwh): it lists no IP (<MODULE>) at all")
    info_attrs = dict(sysinfo.attrib) if sysinfo is not None else {}
    address_map: dict[str, tuple[int, int]] = {}
    clocks: dict[int, float] = {}
    ps = next((m for m in root.iter("MODULE") if m.get("MODTYPE") in PS_OF_ARCH.values()), None)
    if ps is not None:
        for r in ps.iter("MEMRANGE"):
            base, high = _int(r.get("BASEVALUE")), _int(r.get("HIGHVALUE"))
            inst = r.get("INSTANCE", "")
            target = next((mm for mm in modules.values() if mm.instance == inst), None)
            if base is not None and high is not None and target is not None:
                address_map[target.fullname] = (base, high)
        params = _params(ps.find("PARAMETERS"))
        for i in range(4):
            # Zynq-7000: PCW_FPGA<i>_PERIPHERAL_FREQMHZ; Zynq UltraScale+: PSU__CRL_APB__PL<i>_REF_CTRL__FREQMHZ.
            for key, enable in (
                (f"PCW_FPGA{i}_PERIPHERAL_FREQMHZ", f"PCW_EN_CLK{i}_PORT"),
                (f"PSU__CRL_APB__PL{i}_REF_CTRL__FREQMHZ", f"PSU__FPGA_PL{i}_ENABLE"),
            ):
                mhz = _float(params.get(key))
                if mhz is not None and params.get(enable, "1") in ("1", "true", "TRUE"):
                    clocks[i] = mhz
    return HwhInfo(
        path=path,
        vivado_version=root.get("VIVADOVERSION", ""),
        system=info_attrs,
        modules=modules,
        address_map=address_map,
        pl_clocks_mhz=clocks,
    )


def find_dma(info: HwhInfo, preferred: str | None = None) -> HwhModule:
    """The design's AXI DMA: ``preferred`` (a pynq path, ``hier_0/axi_dma_0``) if the design has it, else its only one.

    Raises:
        BundleError: no AXI DMA, or several and none of them is ``preferred``.
    """
    dmas = info.of_type(_AXI_DMA)
    if preferred:
        for d in dmas:
            if d.path == preferred.strip("/"):
                return d
    if len(dmas) == 1:
        return dmas[0]
    names = ", ".join(d.path for d in dmas) or "none"
    if not dmas:
        raise BundleError(
            f"{info.path}: the design has no AXI DMA (xilinx.com:ip:axi_dma); this runtime streams images through "
            f"one. IPs in it: {', '.join(sorted(m.path for m in info.modules.values()))}"
        )
    raise BundleError(f"{info.path}: {len(dmas)} AXI DMAs ({names}) and none is {preferred!r} (manifest dma.ip_name)")


def find_dma_in_ip_dict(ip_dict: dict[str, Any], preferred: str | None = None) -> str:
    """The name of the AXI DMA in a pynq ``ip_dict``: ``preferred`` when present, otherwise the only AXI DMA.

    Raises:
        BundleError: none, or several and none is ``preferred``.
    """
    if preferred and preferred in ip_dict:
        return preferred
    dmas = sorted(k for k, v in ip_dict.items() if f":{_AXI_DMA}:" in str(v.get("type", "")))
    if len(dmas) == 1:
        return dmas[0]
    raise BundleError(
        f"the overlay has {len(dmas)} AXI DMAs ({', '.join(dmas) or 'none'}) and none is {preferred!r} "
        f"(manifest dma.ip_name); its IPs: {', '.join(sorted(ip_dict)) or 'none'}"
    )


def find_accelerator(info: HwhInfo, dma: HwhModule) -> HwhModule:
    """The IP the DMA streams into: the module on the other end of the DMA's ``M_AXIS_MM2S`` stream.

    Raises:
        BundleError: the DMA's MM2S stream is not connected to an IP.
    """
    bus = dma.busifs.get("M_AXIS_MM2S", {}).get("busname", "")
    if bus and bus != "__NOC__":
        for m in info.modules.values():
            if m is dma:
                continue
            for b in m.busifs.values():
                if b.get("busname") == bus and b.get("type", "").upper() in ("SLAVE", "TARGET"):
                    return m
    raise BundleError(f"{info.path}: the DMA {dma.path}'s M_AXIS_MM2S stream feeds no IP: no accelerator found")


def dma_config(dma: HwhModule) -> dict[str, Any]:
    """The DMA settings the driver relies on, as the design has them."""

    def flag(name: str) -> bool | None:
        v = dma.param(name)
        return None if v is None else v.strip() in ("1", "true", "TRUE")

    def tlast(busif: str) -> bool | None:
        v = dma.busifs.get(busif, {}).get("parameters", {}).get("HAS_TLAST")
        return None if v is None else v == "1"

    return {
        "vlnv": dma.vlnv,
        "simple_mode": flag("c_include_sg") is False,
        "micro_dma": flag("c_micro_dma"),
        "mm2s": flag("c_include_mm2s"),
        "s2mm": flag("c_include_s2mm"),
        "length_width_bits": _int(dma.param("c_sg_length_width")),
        "mm2s_mm_data_width_bits": _int(dma.param("c_m_axi_mm2s_data_width")),
        "s2mm_mm_data_width_bits": _int(dma.param("c_m_axi_s2mm_data_width")),
        "mm2s_stream_width_bits": _int(dma.param("c_m_axis_mm2s_tdata_width")),
        "s2mm_stream_width_bits": _int(dma.param("c_s_axis_s2mm_tdata_width")),
        "mm2s_tlast": tlast("M_AXIS_MM2S"),
        "s2mm_tlast": tlast("S_AXIS_S2MM"),
    }


# ------------------------------------------------------------------------------------------------------------ .bit
@dataclass(frozen=True)
class BitHeader:
    """The header of a ``.bit`` file.

    Attributes:
        path: the file.
        design: the design name and options (``design_1_wrapper;UserID=...``).
        version: the Vivado version that wrote it.
        part: the part without ``xc`` and speed grade, as Vivado writes it (``7z020clg400``).
        date: build date.
        time: build time.
        data_length: length of the configuration data the header announces.
        data_offset: where that data starts.
    """

    path: Path
    design: str
    version: str
    part: str
    date: str
    time: str
    data_length: int
    data_offset: int

    @property
    def complete(self) -> bool:
        """Whether the file holds all the configuration data its header announces."""
        return self.path.stat().st_size == self.data_offset + self.data_length


def read_bit_header(path: str | os.PathLike) -> BitHeader:
    """Read a ``.bit`` file's header (the fields pynq's ``parse_bit_header`` reads), without reading the data.

    Raises:
        BundleError: unreadable, or not a Xilinx ``.bit`` file (names the file and the byte where it went wrong).
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(_MAX_BIT_HEADER)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the bitstream: {exc}") from exc

    def bad(why: str) -> BundleError:
        return BundleError(f"{path}: not a Xilinx .bit file ({why}); rebuild it or copy the .bit Vivado wrote")

    try:
        (n,) = struct.unpack(">H", head[0:2])
        offset = 2 + n + 2  # a first field of n bytes, then a two-byte field
        fields: dict[int, str] = {}
        while True:
            key = head[offset]
            offset += 1
            if key == 0x65:
                (length,) = struct.unpack(">I", head[offset : offset + 4])
                offset += 4
                break
            if key not in (0x61, 0x62, 0x63, 0x64):
                raise bad(f"unknown header field 0x{key:02x} at byte {offset - 1}")
            (n,) = struct.unpack(">H", head[offset : offset + 2])
            offset += 2
            raw = head[offset : offset + n]
            if len(raw) != n:
                raise bad("the header is cut short")
            fields[key] = raw.rstrip(b"\x00").decode("ascii")
            offset += n
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise bad(f"malformed header: {exc}") from exc
    if 0x62 not in fields:
        raise bad("the header names no part")
    design = fields.get(0x61, "")
    return BitHeader(
        path=path,
        design=design.split(";")[0],
        version=design.split(";")[-1].replace("Version=", "") if ";" in design else "",
        part=fields[0x62],
        date=fields.get(0x63, ""),
        time=fields.get(0x64, ""),
        data_length=length,
        data_offset=offset,
    )


def _bare_part(part: str) -> str:
    """The device of a part name however it is written (``xc7z020clg400-1``, ``7z020clg400``) -> ``7z020``.

    ``.bit`` headers, ``.hwh`` files and part names write it differently: ``xczu7ev-ffvc1156-2-e`` and
    ``xczu7evffvc1156-2`` are both ``zu7ev``.
    """
    p = part.strip().lower()
    p = p[2:] if p.startswith("xc") else p
    p = p.split("-")[0]
    return re.sub(r"[a-z]{3,4}\d{3,4}$", "", p) or p  # drop the package (clg400, ffvc1156, sfvc784)


def check_bit_part(header: BitHeader, board: str) -> None:
    """Refuse a bitstream built for another part than ``board``'s.

    Raises:
        BundleError: the board is unknown, or the part differs (names the file, both parts and the board).
    """
    part = BOARD_PARTS.get(board)
    if part is None:
        raise BundleError(f"{header.path}: no known part for board {board!r} (known: {', '.join(BOARD_PARTS)})")
    if _bare_part(header.part) != _bare_part(part):
        other = next((b for b, p in BOARD_PARTS.items() if _bare_part(p) == _bare_part(header.part)), None)
        also = f" (a {other} bitstream)" if other else ""
        raise BundleError(
            f"{header.path}: bitstream built for part {header.part}{also}, but the bundle is for the {board} "
            f"({part}): it cannot configure this board's FPGA. Rebuild it with make bitstream BOARD={board}"
        )


# ----------------------------------------------------------------------------------------------------- the bundle
def _container_bytes(container: str) -> int:
    """Bytes of a manifest container name (``uint8``, ``int16``, ...), 0 when unknown."""
    m = re.fullmatch(r"u?int(8|16|32|64)", str(container))
    return int(m.group(1)) // 8 if m else 0


def check_hardware_files(bundle: Any) -> dict[str, Any]:
    """Check a bundle's ``.bit`` and ``.hwh`` against its manifest and board, before pynq reads them.

    Returns:
        ``{"bit": {...header...}, "dma": path, "accelerator": path, "dma_config": {...}, "pl_clocks_mhz": {...},
        "address_map": {...}}``; empty for a bundle without a bitstream.

    Raises:
        BundleError: a corrupt or foreign ``.hwh``, a bitstream for another part, a design for another board, no
            DMA or accelerator, or a DMA whose settings the driver cannot use (each names the file).
    """
    m = bundle.manifest
    if not m.bitstream or not m.hwh:
        return {}
    header = read_bit_header(bundle.path(m.bitstream))
    check_bit_part(header, m.board)
    if not header.complete:
        raise BundleError(
            f"{header.path}: the header announces {header.data_length} bytes of configuration data but the file "
            f"holds {header.path.stat().st_size - header.data_offset}: the bitstream is truncated (copy it again)"
        )
    info = read_hwh(bundle.path(m.hwh))
    if _bare_part(info.part) != _bare_part(BOARD_PARTS[m.board]):
        raise BundleError(
            f"{info.path}: hardware handoff of a design for {info.part or 'an unnamed part'} "
            f"(board {info.system.get('BOARD', '?')}), but the bundle is for the {m.board} ({BOARD_PARTS[m.board]})"
        )
    dma = find_dma(info, str(m.dma.get("ip_name", "")) or None)
    cfg = dma_config(dma)
    problems = []
    if not cfg["simple_mode"]:
        problems.append("it is in scatter-gather mode (c_include_sg=1); the driver programs simple mode")
    if not (cfg["mm2s"] and cfg["s2mm"]):
        problems.append("it lacks the MM2S or the S2MM channel")
    want = m.dma.get("length_width_bits")
    if want is not None and cfg["length_width_bits"] is not None and int(want) != cfg["length_width_bits"]:
        problems.append(f"its length register is {cfg['length_width_bits']} bits, the manifest says {want}")
    if cfg["s2mm_tlast"] is False:
        problems.append("its S2MM stream has no TLAST: a receive would never complete")
    # The driver sends one stream element per container: the DMA's stream words must be the containers' width.
    for what, key, spec in (("MM2S", "mm2s_stream_width_bits", m.input), ("S2MM", "s2mm_stream_width_bits", m.output)):
        bits = 8 * _container_bytes(spec.container)
        if cfg[key] is not None and bits and cfg[key] != bits:
            problems.append(
                f"its {what} stream is {cfg[key]} bits wide but the manifest's {spec.name} container "
                f"({spec.container}) is {bits} bits: the IP would split or merge stream elements"
            )
    if problems:
        raise BundleError(f"{info.path}: the DMA {dma.path} cannot be driven: " + "; ".join(problems))
    acc = find_accelerator(info, dma)
    return {
        "bit": {"part": header.part, "design": header.design, "version": header.version, "date": header.date},
        "dma": dma.path,
        "dma_vlnv": dma.vlnv,
        "accelerator": acc.path,
        "accelerator_vlnv": acc.vlnv,
        "dma_config": cfg,
        "pl_clocks_mhz": info.pl_clocks_mhz,
        "address_map": {k.lstrip("/"): [hex(b), hex(h)] for k, (b, h) in info.address_map.items()},
    }
