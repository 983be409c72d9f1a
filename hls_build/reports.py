"""Parsers of the reports the Vivado flow writes, in the manifest's resource names.

Resource names: ``BRAM_18K``, ``DSP``, ``FF``, ``LUT``, ``URAM`` (:data:`hls_build.boards.RESOURCE_NAMES`).

Formats, as the tools write them (checked against real reports in public repositories, and against hls4ml's own
reader ``hls4ml/report/vivado_report.py``, which reads the same tags):

* **HLS synthesis** ``<project>/<solution>/syn/report/<top>_csynth.xml`` (also ``csynth.xml``), written by Vitis HLS
  and Vivado HLS: a ``<profile>`` with ``ReportVersion/Version``, ``UserAssignments`` (``Part``, ``TopModelName``,
  ``TargetClockPeriod``), ``PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod``,
  ``PerformanceEstimates/SummaryOfOverallLatency`` (``Best-caseLatency``, ``Worst-caseLatency``, ``Interval-min``,
  ``Interval-max``; ``undef`` when unknown), ``AreaEstimates/Resources`` and ``AreaEstimates/AvailableResources``
  (``BRAM_18K``, ``DSP`` -- ``DSP48E`` in Vivado HLS --, ``FF``, ``LUT``, ``URAM``) and ``InterfaceSummary/RtlPorts``
  (``name``, ``Object``, ``IOProtocol``, ``Dir``, ``Bits``), from which the AXI-stream ports and their ``TLAST`` are
  read.
* **Vivado** ``report_utilization`` text: a header (``| Tool Version : Vivado v.2023.1 ...``, ``| Device``,
  ``| Design State``) then numbered sections of ASCII tables ``| Site Type | Used | Fixed | [Prohibited |]
  Available | Util% |`` (the ``Prohibited`` column appeared in 2020.x; columns are found by name). Zynq-7000 rows:
  ``Slice LUTs``, ``Slice Registers``, ``Block RAM Tile``, ``DSPs``; UltraScale+: ``CLB LUTs``, ``CLB Registers``,
  ``Block RAM Tile``, ``URAM``, ``DSPs``. A ``Block RAM Tile`` is 36 Kb, two ``BRAM_18K``.
* ``vivado_summary.txt``: ``key=value`` lines that this project's block-design script writes (timing, paths).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from board.errors import ProjectError
from hls_build.boards import RESOURCE_NAMES


class ReportError(ProjectError, ValueError):
    """A report is missing, unreadable or not in the expected format."""


def _num(text: str | None) -> float | None:
    """A number from a report cell; None for empty, ``undef``, ``-`` and other non-numbers."""
    if text is None:
        return None
    text = text.strip().rstrip("*").strip()
    try:
        return float(text)
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    value = _num(text)
    return None if value is None else int(round(value))


def _as_int_if_whole(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


# --- HLS synthesis (csynth.xml) -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RtlPort:
    """One RTL port of the synthesized top function (``InterfaceSummary/RtlPorts``)."""

    name: str
    object: str
    protocol: str
    direction: str
    bits: int | None


@dataclass(frozen=True)
class AxiStream:
    """An AXI4-Stream interface of the synthesized IP, assembled from its RTL ports.

    Attributes:
        prefix: the RTL name without the signal suffix (``in_r`` for ``in_r_TDATA``).
        direction: ``in`` (the IP consumes it) or ``out``.
        tdata_bits: width of ``TDATA``.
        signals: the AXI4-Stream signals present (``TDATA``, ``TVALID``, ``TREADY``, ``TLAST``, ...).
    """

    prefix: str
    direction: str
    tdata_bits: int | None
    signals: frozenset[str]

    @property
    def has_tlast(self) -> bool:
        """Whether the interface carries TLAST (the AXI DMA's S2MM needs it to end a transfer)."""
        return "TLAST" in self.signals


@dataclass(frozen=True)
class HlsReport:
    """The HLS synthesis summary of the accelerator IP.

    Attributes:
        path: the report file.
        tool_version: e.g. ``2023.1``.
        top: top function.
        part: part synthesized for (as HLS writes it, e.g. ``xc7z020-clg400-1``).
        target_clock_ns: requested clock period.
        estimated_clock_ns: HLS's estimate of the achievable period.
        latency_best_cycles: best-case latency of one call (one image), None when HLS could not tell.
        latency_worst_cycles: worst-case latency.
        interval_min_cycles: best initiation interval (cycles between images).
        interval_max_cycles: worst initiation interval.
        resources: used resources, keyed by :data:`hls_build.boards.RESOURCE_NAMES`.
        available: the part's resources as HLS counts them.
        ports: the RTL ports.
    """

    path: str
    tool_version: str | None
    top: str | None
    part: str | None
    target_clock_ns: float | None
    estimated_clock_ns: float | None
    latency_best_cycles: int | None
    latency_worst_cycles: int | None
    interval_min_cycles: int | None
    interval_max_cycles: int | None
    resources: dict[str, int] = field(default_factory=dict)
    available: dict[str, int] = field(default_factory=dict)
    ports: tuple[RtlPort, ...] = ()

    def axi_streams(self) -> dict[str, AxiStream]:
        """The AXI4-Stream interfaces, keyed by prefix (found from their ``*_TDATA`` ports)."""
        axis = [p for p in self.ports if p.protocol.lower() == "axis"]
        streams = {}
        for p in axis:
            m = re.fullmatch(r"(.+)_TDATA", p.name)
            if not m:
                continue
            prefix = m.group(1)
            signals = frozenset(q.name[len(prefix) + 1 :] for q in axis if q.name.startswith(prefix + "_T"))
            streams[prefix] = AxiStream(prefix, p.direction, p.bits, signals)
        return streams

    def to_manifest_entry(self, source: str) -> dict[str, Any]:
        """The manifest ``resources`` entry: ``kind: measured`` (a tool's report, not this project's estimate).

        Args:
            source: where the numbers come from, e.g. ``"Vitis HLS 2023.1 csynth.xml (vivado/reports/csynth.xml)"``.
        """
        return {
            "kind": "measured",
            "stage": "hls_synthesis",
            "source": source,
            "scope": "the accelerator IP alone, as HLS synthesis reports it (before Vivado synthesis and P&R)",
            **{name: self.resources.get(name) for name in RESOURCE_NAMES},
            "available": dict(self.available),
            "latency_cycles": {"best": self.latency_best_cycles, "worst": self.latency_worst_cycles},
            "interval_cycles": {"min": self.interval_min_cycles, "max": self.interval_max_cycles},
            "target_clock_ns": self.target_clock_ns,
            "estimated_clock_ns": self.estimated_clock_ns,
            "part": self.part,
            "tool_version": self.tool_version,
        }


def _resource_dict(node: ET.Element | None) -> dict[str, int]:
    out: dict[str, int] = {}
    if node is None:
        return out
    for child in node:
        # Vivado HLS calls DSPs DSP48E, Vitis HLS DSP (hls4ml's reader makes the same correction).
        name = "DSP" if child.tag.startswith("DSP") else child.tag
        value = _int(child.text)
        if name in RESOURCE_NAMES and value is not None:
            out[name] = value
    return out


def parse_csynth_xml(path: str | os.PathLike) -> HlsReport:
    """Parse an HLS ``csynth.xml`` / ``<top>_csynth.xml``.

    Raises:
        ReportError: the file is missing or is not an HLS synthesis report.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ReportError(f"{path}: cannot read the HLS synthesis report ({exc})") from exc
    if root.tag != "profile" or root.find("AreaEstimates") is None:
        raise ReportError(f"{path}: not an HLS synthesis report (no <profile>/<AreaEstimates>)")

    def text(xpath: str) -> str | None:
        node = root.find(xpath)
        return None if node is None or node.text is None else node.text.strip()

    latency = "PerformanceEstimates/SummaryOfOverallLatency/"
    ports = tuple(
        RtlPort(
            name=(p.findtext("name") or "").strip(),
            object=(p.findtext("Object") or "").strip(),
            protocol=(p.findtext("IOProtocol") or "").strip(),
            direction=(p.findtext("Dir") or "").strip(),
            bits=_int(p.findtext("Bits")),
        )
        for p in root.findall("InterfaceSummary/RtlPorts")
    )
    return HlsReport(
        path=str(path),
        tool_version=text("ReportVersion/Version"),
        top=text("UserAssignments/TopModelName"),
        part=text("UserAssignments/Part"),
        target_clock_ns=_num(text("UserAssignments/TargetClockPeriod")),
        estimated_clock_ns=_num(text("PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod")),
        latency_best_cycles=_int(text(latency + "Best-caseLatency")),
        latency_worst_cycles=_int(text(latency + "Worst-caseLatency")),
        interval_min_cycles=_int(text(latency + "Interval-min")),
        interval_max_cycles=_int(text(latency + "Interval-max")),
        resources=_resource_dict(root.find("AreaEstimates/Resources")),
        available=_resource_dict(root.find("AreaEstimates/AvailableResources")),
        ports=ports,
    )


def find_csynth_xml(solution_dir: str | os.PathLike, top: str) -> Path:
    """The synthesis report of ``top`` in an HLS solution folder (``<top>_csynth.xml``, else ``csynth.xml``).

    Raises:
        ReportError: neither exists.
    """
    report_dir = Path(solution_dir) / "syn" / "report"
    for name in (f"{top}_csynth.xml", "csynth.xml"):
        if (report_dir / name).is_file():
            return report_dir / name
    raise ReportError(f"{report_dir}: no {top}_csynth.xml or csynth.xml; did csynth_design run?")


# --- Vivado report_utilization --------------------------------------------------------------------------------------

#: Top-level ``Site Type`` rows -> resource name (7-series and UltraScale+ spellings).
_UTILIZATION_ROWS = {
    "slice luts": "LUT",
    "clb luts": "LUT",
    "slice registers": "FF",
    "clb registers": "FF",
    "block ram tile": "BRAM_TILE",
    "uram": "URAM",
    "dsps": "DSP",
}


@dataclass(frozen=True)
class UtilizationReport:
    """Resources of an implemented (or synthesized) design, from Vivado's ``report_utilization``.

    Attributes:
        path: the report file.
        tool_version: e.g. ``2023.1``.
        device: e.g. ``7z020clg400-1``.
        design_state: e.g. ``Routed``, ``Fully Placed``, ``Synthesized``.
        used: used resources keyed by :data:`hls_build.boards.RESOURCE_NAMES` (``BRAM_18K`` = 2 x Block RAM Tiles).
        available: the device's resources, same keys.
        site_types: every top-level ``Site Type`` row as ``(used, available)``, as printed.
    """

    path: str
    tool_version: str | None
    device: str | None
    design_state: str | None
    used: dict[str, float | int]
    available: dict[str, float | int]
    site_types: dict[str, tuple[float | None, float | None]]

    def utilization_pct(self) -> dict[str, float | None]:
        """Used / available in percent, per resource (None where the device has none)."""
        return {
            name: (round(100.0 * self.used[name] / self.available[name], 2) if self.available.get(name) else None)
            for name in self.used
        }

    def to_manifest_entry(self, source: str, timing: dict[str, Any] | None = None) -> dict[str, Any]:
        """The manifest ``resources`` entry of the implemented design (``kind: measured``).

        Args:
            source: where the numbers come from, e.g. ``"Vivado 2023.1 report_utilization (routed)"``.
            timing: optional timing summary (WNS etc.) to store with it.
        """
        entry: dict[str, Any] = {
            "kind": "measured",
            "stage": "implementation",
            "source": source,
            "scope": "the whole programmable logic: accelerator, AXI DMA, interconnects and reset",
            **{name: self.used.get(name) for name in RESOURCE_NAMES},
            "available": dict(self.available),
            "utilization_pct": self.utilization_pct(),
            "design_state": self.design_state,
            "device": self.device,
            "tool_version": self.tool_version,
        }
        if timing is not None:
            entry["timing"] = timing
        return entry


def _cells(line: str) -> list[str]:
    return [c for c in line.strip().strip("|").split("|")]


def parse_utilization_report(path: str | os.PathLike) -> UtilizationReport:
    """Parse the text of Vivado's ``report_utilization -file ...`` (the flat, non-hierarchical form).

    Raises:
        ReportError: the file is missing or has none of the expected rows.
    """
    path = Path(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read the utilization report ({exc})") from exc
    header: dict[str, str] = {}
    for line in lines[:30]:
        m = re.match(r"\|\s*(Tool Version|Device|Design State)\s*:\s*(.*?)\s*$", line)
        if m:
            header[m.group(1)] = m.group(2)
    version = None
    if "Tool Version" in header:
        m = re.search(r"v\.?(\d{4}\.\d+(?:\.\d+)?)", header["Tool Version"])
        version = m.group(1) if m else header["Tool Version"]

    site_types: dict[str, tuple[float | None, float | None]] = {}
    columns: list[str] | None = None
    for line in lines:
        if not line.startswith("|"):
            if not line.startswith("+"):
                columns = None  # a table ends at the first line that is neither a row nor a border
            continue
        cells = _cells(line)
        names = [c.strip() for c in cells]
        if names and names[0] == "Site Type":
            columns = names
            continue
        if "Used" in names:  # the header of another kind of table (e.g. "Ref Name | Used | Functional Category")
            columns = None
            continue
        if columns is None or len(cells) != len(columns) or "Used" not in columns or "Available" not in columns:
            continue
        site = cells[0]
        # Sub-rows are indented ("|   LUT as Logic"); only top-level rows (one space after the bar) are totals.
        if site.startswith("  ") or not site.strip():
            continue
        name = site.strip().rstrip("*").strip()
        if name not in site_types:
            site_types[name] = (_num(cells[columns.index("Used")]), _num(cells[columns.index("Available")]))

    used: dict[str, float | int] = {}
    available: dict[str, float | int] = {}
    for site, (u, a) in site_types.items():
        key = _UTILIZATION_ROWS.get(site.lower())
        if key is None:
            continue
        if key == "BRAM_TILE":
            key, u, a = "BRAM_18K", (None if u is None else 2 * u), (None if a is None else 2 * a)
        if u is not None:
            used[key] = _as_int_if_whole(u)
        if a is not None:
            available[key] = _as_int_if_whole(a)
    if not {"LUT", "FF"} <= set(used):
        raise ReportError(f"{path}: no LUT/register rows found; is this a Vivado report_utilization text report?")
    # 7-series devices have no UltraRAM: Vivado prints no URAM row.
    used.setdefault("URAM", 0)
    available.setdefault("URAM", 0)
    used.setdefault("DSP", 0)
    used.setdefault("BRAM_18K", 0)
    return UtilizationReport(
        path=str(path),
        tool_version=version,
        device=header.get("Device"),
        design_state=header.get("Design State"),
        used={k: used[k] for k in RESOURCE_NAMES if k in used},
        available={k: available[k] for k in RESOURCE_NAMES if k in available},
        site_types=site_types,
    )


# --- our own summary ------------------------------------------------------------------------------------------------


def parse_key_values(path: str | os.PathLike) -> dict[str, str]:
    """``key=value`` lines (``#`` comments and blank lines ignored), as the block-design script writes them.

    Raises:
        ReportError: the file is missing.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read ({exc})") from exc
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def timing_from_summary(summary: dict[str, str]) -> dict[str, Any]:
    """Timing figures of the implemented design from ``vivado_summary.txt``: WNS/TNS/WHS/THS in ns and ``met``."""
    timing: dict[str, Any] = {k + "_ns": _num(summary.get(k)) for k in ("wns", "tns", "whs", "ths")}
    wns, whs = timing["wns_ns"], timing["whs_ns"]
    timing["met"] = None if wns is None else bool(wns >= 0 and (whs is None or whs >= 0))
    return timing
