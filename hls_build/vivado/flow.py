"""The flow: HLS, block design, bitstream, and the results written back into the bundle."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from board.bundle import Manifest, load_bundle, write_manifest
from board.errors import BundleError
from hls_build.reports import (
    HlsReport,
    ReportError,
    UtilizationReport,
    find_csynth_xml,
    parse_csynth_xml,
    parse_key_values,
    parse_utilization_report,
    timing_from_summary,
)
from hls_build.vivado.axi_wrapper import parse_axi_wrapper, vitis_axi_wrapper
from hls_build.vivado.hls4ml_fixes import fix_generated_project
from hls_build.vivado.params import HLS_SOLUTION, DesignParams, design_params
from hls_build.vivado.tcl import block_design_script, hls_script
from hls_build.vivado.tools import VivadoFlowError, XilinxTools, find_tools, run_tool

log = logging.getLogger(__name__)


# --- the flow -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BitstreamOptions:
    """How to run the Vivado flow.

    Attributes:
        work_dir: root of the work folders (``<work_dir>/<board>/<model_id>/``).
        jobs: parallel Vivado jobs (and thread limit); keep low on shared machines.
        hls_tool: ``auto``, ``vitis_hls``, ``vitis-run`` or ``vivado_hls``.
        clock_mhz: clock override (default: the manifest's ``hls.clock_mhz``).
        allow_timing_violation: accept a design whose worst slack is negative (default: fail).
        scripts_only: write the scripts and sources, run nothing (no tools needed).
        verbose: show every line of the tools' output.
        timeout_s: stop a tool that runs longer (None: no limit).
    """

    work_dir: str | os.PathLike = "build/vivado"
    jobs: int = 2
    hls_tool: str = "auto"
    clock_mhz: float | None = None
    allow_timing_violation: bool = False
    scripts_only: bool = False
    verbose: bool = False
    timeout_s: float | None = None


@dataclass(frozen=True)
class FlowFiles:
    """The work folder of one run and the files in it."""

    root: Path
    sources: Path
    hls_tcl: Path
    vivado_tcl: Path
    wrapper: Path
    hls_project: Path
    vivado_project: Path
    out: Path

    @property
    def ip_repo(self) -> Path:
        """Where HLS exports the IP."""
        return self.hls_project / HLS_SOLUTION / "impl" / "ip"


def prepare_flow(bundle_root: Path, params: DesignParams, flavor: str, options: BitstreamOptions) -> FlowFiles:
    """Write the work folder: the HLS sources (copied from the bundle), the wrapper, ``hls.tcl``, ``block_design.tcl``.

    The bundle is only read.
    """
    root = (Path(options.work_dir) / params.board.name / params.model_id).resolve()
    src = root / "src"
    for old in (src, root / "out"):
        if old.exists():
            shutil.rmtree(old)
    root.mkdir(parents=True, exist_ok=True)
    firmware = src / "firmware"
    # The sources only: not the compiled C-simulation library nor its text weights.
    shutil.copytree(bundle_root / "hls" / "firmware", firmware, ignore=shutil.ignore_patterns("*.so", "*.o", "*.txt"))
    from hls_build.csim import fix_generated_sources  # numpy + ctypes only; kept out of import time

    fix_generated_sources(src, params.project_name)
    info = parse_axi_wrapper(firmware, params.project_name)
    for what, bits, expected in (
        ("input", info.in_bits, params.input_bits),
        ("output", info.out_bits, params.output_bits),
    ):
        if bits > expected:
            raise BundleError(
                f"hls4ml's wrapper streams {bits}-bit {what} elements but the manifest's {what} container is "
                f"{expected} bits"
            )
        if bits != expected and flavor != "vitis":
            # hls4ml's own wrapper streams struct {data, last}: Vivado HLS makes TDATA the element's width, which the
            # AXI DMA cannot take when it is not 8, 16, 32... bits. Our Vitis HLS wrapper widens it to the container.
            raise BundleError(
                f"hls4ml's wrapper streams {bits}-bit {what} elements, which the AXI DMA cannot take ({expected}-bit "
                "container): use Vitis HLS (--hls-tool vitis_hls), whose wrapper streams the manifest's containers"
            )
    if flavor == "vitis":
        wrapper = firmware / f"{params.project_name}_axi_vitis.cpp"
        wrapper.write_text(vitis_axi_wrapper(info, params.project_name, params.input_bits, params.output_bits))
    else:
        wrapper = firmware / f"{params.project_name}_axi.cpp"
    files = FlowFiles(
        root=root,
        sources=src,
        hls_tcl=root / "hls.tcl",
        vivado_tcl=root / "block_design.tcl",
        wrapper=wrapper,
        hls_project=root / f"{params.project_name}_prj",
        vivado_project=root / "vivado_project",
        out=root / "out",
    )
    files.hls_tcl.write_text(hls_script(params, flavor, root, [firmware / f"{params.project_name}.cpp", wrapper]))
    files.vivado_tcl.write_text(
        block_design_script(params, files.ip_repo, files.vivado_project, files.out, jobs=options.jobs)
    )
    return files


def check_hls_report(report: HlsReport, params: DesignParams) -> None:
    """The synthesized IP must stream one input and one output, each with TLAST and the manifest's width.

    Ports are matched by direction and suffix (``*_TDATA``, ``*_TLAST``), not by full name, which differs between
    HLS releases and between hls4ml's struct and ``ap_axiu`` streams.

    Raises:
        VivadoFlowError: it does not (e.g. Vitis HLS on hls4ml's own wrapper: no TLAST).
    """
    axis = [p for p in report.ports if p.protocol.lower() == "axis"]
    if not axis:
        log.warning("%s lists no AXI-stream ports; the block design will check the streams instead", report.path)
        return
    for direction, bits, what in (("in", params.input_bits, "input"), ("out", params.output_bits, "output")):
        tdata = [p for p in axis if p.direction == direction and p.name.endswith("_TDATA")]
        tlast = [p for p in axis if p.direction == direction and p.name.endswith("_TLAST")]
        if len(tdata) != 1:
            raise VivadoFlowError(
                f"{report.path}: expected one {what} AXI stream, found TDATA ports {[p.name for p in tdata]}"
            )
        if not tlast:
            raise VivadoFlowError(
                f"{report.path}: the {what} stream {tdata[0].name[: -len('_TDATA')]} has no TLAST; the DMA's S2MM "
                "would never complete"
            )
        if tdata[0].bits != bits:
            raise VivadoFlowError(
                f"{report.path}: the {what} stream {tdata[0].name} is {tdata[0].bits} bits wide, the manifest's "
                f"{what} container {bits} bits"
            )


def _hls_tool_label(tools: XilinxTools, report: HlsReport) -> str:
    name = "Vivado HLS" if tools.hls_flavor == "vivado_hls" else "Vitis HLS"
    return f"{name} {report.tool_version or '(unknown version)'}"


def build_bitstream(bundle_root: str | os.PathLike, options: BitstreamOptions | None = None) -> Path:
    """Run the Vivado flow for a bundle and write the bitstream and measured resources into it.

    Args:
        bundle_root: ``overlays/<board>/<model_id>``.
        options: how to run.

    Returns:
        The bundle folder (updated), or with ``scripts_only`` the work folder holding the scripts.

    Raises:
        BundleError: the bundle is missing, modified or inconsistent.
        UnknownBoardError: the bundle's board is not supported.
        ToolMissingError: HLS or Vivado is not on PATH (nothing written anywhere).
        VivadoFlowError: a tool failed, or the result is unusable (no TLAST, timing not met, ...); the bundle is
            left as it was.
    """
    options = options or BitstreamOptions()
    bundle_root = Path(bundle_root).resolve()
    manifest = load_bundle(bundle_root).manifest
    params = design_params(manifest, options.clock_mhz)
    if options.scripts_only:
        flavor = "vivado_hls" if options.hls_tool == "vivado_hls" else "vitis"
        files = prepare_flow(bundle_root, params, flavor, options)
        log.info("scripts written to %s: run `vitis_hls -f %s` then `vivado -mode batch -source %s` there",
                 files.root, files.hls_tcl.name, files.vivado_tcl.name)  # fmt: skip
        return files.root
    tools = find_tools(options.hls_tool)
    log.info(
        "Vivado flow for %s on %s (%s): HLS %s, Vivado %s",
        params.model_id, params.board.display_name, params.board.part, tools.hls_path, tools.vivado_path,
    )  # fmt: skip
    files = prepare_flow(bundle_root, params, tools.hls_flavor, options)
    times: dict[str, float] = {}

    t = time.perf_counter()
    run_tool(tools.hls_command(files.hls_tcl), files.root, files.root / "hls.log", tools.hls_name,
             options.verbose, options.timeout_s)  # fmt: skip
    times["hls"] = time.perf_counter() - t
    try:
        csynth = find_csynth_xml(files.hls_project / HLS_SOLUTION, params.top)
        hls_report = parse_csynth_xml(csynth)
    except ReportError as exc:
        raise VivadoFlowError(f"HLS finished but its report is unusable: {exc}") from exc
    check_hls_report(hls_report, params)
    if not (files.ip_repo / "component.xml").is_file():
        raise VivadoFlowError(f"HLS finished but exported no IP ({files.ip_repo / 'component.xml'} is missing)")

    t = time.perf_counter()
    run_tool(tools.vivado_command(files.vivado_tcl), files.root, files.root / "vivado.log", "vivado",
             options.verbose, options.timeout_s)  # fmt: skip
    times["vivado"] = time.perf_counter() - t
    try:
        summary = parse_key_values(files.out / "vivado_summary.txt")
        utilization = parse_utilization_report(files.out / "utilization.rpt")
    except ReportError as exc:
        raise VivadoFlowError(f"Vivado finished but its reports are unusable: {exc}") from exc
    bit, hwh = files.out / f"{params.model_id}.bit", files.out / f"{params.model_id}.hwh"
    for f in (bit, hwh):
        if not f.is_file() or f.stat().st_size == 0:
            raise VivadoFlowError(f"Vivado finished but {f} is missing or empty")
    timing = timing_from_summary(summary)
    if timing["met"] is False and not options.allow_timing_violation:
        raise VivadoFlowError(
            f"the design misses timing at {params.clock_mhz:g} MHz (WNS {timing['wns_ns']} ns, WHS "
            f"{timing['whs_ns']} ns; {files.out / 'timing_summary.rpt'}): lower the clock (--clock-mhz) or accept "
            "it with --allow-timing-violation"
        )
    return _update_bundle(bundle_root, manifest, params, tools, files, hls_report, utilization, summary, timing, times)


def _update_bundle(
    bundle_root: Path,
    manifest: Manifest,
    params: DesignParams,
    tools: XilinxTools,
    files: FlowFiles,
    hls_report: HlsReport,
    utilization: UtilizationReport,
    summary: dict[str, str],
    timing: dict[str, Any],
    times: dict[str, float],
) -> Path:
    """Write the results into a staging copy of the bundle, verify it, and swap it in."""
    staging = bundle_root.with_name(bundle_root.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(bundle_root, staging, ignore=shutil.ignore_patterns("__pycache__"))
    try:
        bit_rel, hwh_rel = f"{params.model_id}.bit", f"{params.model_id}.hwh"
        shutil.copy2(files.out / bit_rel, staging / bit_rel)
        shutil.copy2(files.out / hwh_rel, staging / hwh_rel)
        vivado_dir = staging / "vivado"
        if vivado_dir.exists():
            shutil.rmtree(vivado_dir)
        (vivado_dir / "reports").mkdir(parents=True)
        shutil.copy2(files.hls_tcl, vivado_dir / "hls.tcl")
        shutil.copy2(files.vivado_tcl, vivado_dir / "block_design.tcl")
        if files.wrapper.name.endswith("_vitis.cpp"):
            shutil.copy2(files.wrapper, vivado_dir / files.wrapper.name)
        reports = {
            "csynth.xml": Path(hls_report.path),
            "utilization.rpt": files.out / "utilization.rpt",
            "timing_summary.rpt": files.out / "timing_summary.rpt",
            "vivado_summary.txt": files.out / "vivado_summary.txt",
        }
        for name, src in reports.items():
            if src.is_file():
                shutil.copy2(src, vivado_dir / "reports" / name)
        fixes = fix_generated_project(
            staging / "hls",
            board=params.board.name,
            model_id=params.model_id,
            input_bits=params.input_bits,
            output_bits=params.output_bits,
            clock_mhz=params.clock_mhz,
            project_name=params.project_name,
            dma_ip_name=params.dma_ip_name,
            length_width_bits=params.length_width_bits,
        )
        hls_label = _hls_tool_label(tools, hls_report)
        vivado_version = summary.get("vivado_version") or utilization.tool_version or "unknown"
        resources = dict(manifest.resources)
        resources["hls_synthesis"] = hls_report.to_manifest_entry(
            f"{hls_label} csynth report (vivado/reports/csynth.xml)"
        )
        resources["implementation"] = utilization.to_manifest_entry(
            f"Vivado {vivado_version} report_utilization, {utilization.design_state or 'implemented'} design "
            "(vivado/reports/utilization.rpt)",
            timing={**timing, "clock_mhz": params.clock_mhz},
        )
        previous_fixes = list(manifest.hls.get("generated_file_fixes", []))
        hls = {
            **manifest.hls,
            "part": params.board.part,
            "generated_file_fixes": previous_fixes + [f for f in fixes if f not in previous_fixes],
            "vivado_flow": {
                "hls_tool": tools.hls_name,
                "hls_top_source": f"vivado/{files.wrapper.name}"
                if files.wrapper.name.endswith("_vitis.cpp")
                else f"hls/firmware/{files.wrapper.name}",
                "clock_mhz": params.clock_mhz,
                "board_part": summary.get("board_part", params.board.board_part),
                "hls_ip": summary.get("hls_ip"),
                "dma_ip_name": params.dma_ip_name,
                "seconds": {k: round(v, 1) for k, v in times.items()},
                "built_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            },
        }
        tool_versions = {**manifest.tool_versions, tools.hls_name: hls_report.tool_version or "unknown",
                         "vivado": vivado_version}  # fmt: skip
        updated = dataclasses.replace(
            manifest,
            bitstream=bit_rel,
            hwh=hwh_rel,
            emulated=False,
            resources=resources,
            hls=hls,
            tool_versions=tool_versions,
        )
        write_manifest(staging, updated)
        load_bundle(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = bundle_root.with_name(bundle_root.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    os.replace(bundle_root, old)
    os.replace(staging, bundle_root)
    shutil.rmtree(old)
    log.info("bundle %s now carries %s and %s", bundle_root, bit_rel, hwh_rel)
    return bundle_root
