"""Read any hls4ml project folder (hls4ml 0.8-1.3 firmware) for the pre-synthesis ESTIMATE.

An hls4ml project folder holds ``firmware/<project>.cpp``, ``firmware/parameters.h`` and ``firmware/defines.h``
(and ``weights/``, not needed here: the estimate needs shapes and types, not weight values), plus, depending on the
hls4ml version and backend, ``hls4ml_config.yml``, ``project.tcl`` and ``build_prj.tcl`` with the part, the clock
period and the backend. The VivadoAccelerator backend adds ``firmware/<project>_axi.cpp``/``.h``.

Older firmware (hls4ml 0.8) writes sizes as macros of ``defines.h`` (``n_in = N_LAYER_2``) and members that name
other members (``n_chan = n_filt``); :func:`read_project` resolves both (the way the C preprocessor and compiler
would) in a scratch copy of the three headers, then hands it to :func:`hls_build.estimate.graph_from_project`.

Parts: :func:`part_resources` knows every part of the calibration set (its resources read from the ``Available``
row of the committed csynth reports, ``hls_build/calibration_designs/``) and every board of
:data:`hls_build.boards.BOARDS`; any other part is refused with the list of known ones.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from board.errors import ProjectError
from hls_build.boards import BOARDS, RESOURCE_NAMES

DESIGNS_DIR = Path(__file__).with_name("calibration_designs")
#: Helper sources hls4ml writes next to the top function, never the top function itself.
_NOT_TOP = ("_axi", "_test", "_bridge", "_tb")


class HlsProjectError(ProjectError, ValueError):
    """The folder is not a readable hls4ml project, or a setting (part, clock) is unknown. Exit code 2."""


class UnknownPartError(HlsProjectError):
    """The FPGA part is in neither the calibration set nor the board list."""


@dataclass
class ProjectInfo:
    """What an hls4ml project folder says about itself.

    Attributes:
        root: the project folder.
        name: the project (top function) name.
        part: FPGA part (from ``hls4ml_config.yml``, ``project.tcl`` or ``build_prj.tcl``), None when not stated.
        clock_mhz: target clock (from ``ClockPeriod`` / ``clock_period``), None when not stated.
        backend: hls4ml backend (``Vivado``, ``Vitis``, ``VivadoAccelerator``, ...), None when not stated.
        io_type: ``io_stream`` or ``io_parallel`` (from the config, else from the top function's ports).
        hls_tool: ``vitis`` or ``vivado_hls`` (how stream FIFOs are built), from the backend unless given.
        files: the files read, relative to ``root``.
    """

    root: Path
    name: str
    part: str | None
    clock_mhz: float | None
    backend: str | None
    io_type: str
    hls_tool: str
    files: list[str] = field(default_factory=list)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    class _Loader(yaml.SafeLoader):
        """Safe loading that keeps hls4ml's tagged values (``!keras_model 'path'``) as plain values."""

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node)
                                  if isinstance(node, yaml.ScalarNode) else None)  # fmt: skip
    try:
        data = yaml.load(path.read_text(errors="replace"), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise HlsProjectError(f"{path}: not readable YAML ({exc})") from exc
    return data if isinstance(data, dict) else {}


def _tcl_var(text: str, name: str) -> str | None:
    m = re.search(rf"^\s*set\s+{name}\s+\"?([^\"\s]+)\"?", text, re.MULTILINE)
    return m.group(1) if m else None


def _find_top(fw: Path, name: str | None) -> Path:
    if name:
        top = fw / f"{name}.cpp"
        if not top.is_file():
            raise HlsProjectError(f"{top} not found (project name {name!r} from the project's config)")
        return top
    tops = [p for p in sorted(fw.glob("*.cpp")) if not p.stem.endswith(_NOT_TOP)]
    tops = [p for p in tops if re.search(rf"\bvoid\s+{re.escape(p.stem)}\s*\(", p.read_text(errors="replace"))]
    if len(tops) > 1:  # a user's wrapper around the hls4ml top (it calls the top, not the nnet:: layers)
        tops = [p for p in tops if re.search(r"\bnnet::\w+\s*<", p.read_text(errors="replace"))] or tops
    if len(tops) != 1:
        found = ", ".join(p.name for p in tops) or "none"
        raise HlsProjectError(f"{fw}: cannot tell the top function's source (candidates: {found})")
    return tops[0]


def inspect_project(path: str | Path, hls_tool: str | None = None) -> ProjectInfo:
    """Find the firmware of an hls4ml project and what its config files say.

    Args:
        path: the project folder (with ``firmware/``) or its ``firmware/`` folder.
        hls_tool: ``vitis`` or ``vivado_hls``; default: the tool of an HLS report in the project, else
            ``vivado_hls`` for the Vivado and VivadoAccelerator backends when the project's build script calls
            ``vivado_hls``, else ``vitis``.

    Raises:
        HlsProjectError: no such folder, no ``firmware/``, a missing header, no single top function.
    """
    root = Path(path)
    if not root.is_dir():
        raise HlsProjectError(f"{root}: no such folder")
    if root.name == "firmware" and not (root / "firmware").is_dir():
        root = root.parent
    fw = root / "firmware"
    if not fw.is_dir():
        raise HlsProjectError(f"{root}: not an hls4ml project folder (no firmware/)")
    files: list[str] = []
    cfg: dict[str, Any] = {}
    if (root / "hls4ml_config.yml").is_file():
        cfg = _read_yaml(root / "hls4ml_config.yml")
        files.append("hls4ml_config.yml")
    tcl = ""
    for name in ("project.tcl", "build_prj.tcl"):
        if (root / name).is_file():
            tcl += (root / name).read_text(errors="replace") + "\n"
            files.append(name)
    for header in ("parameters.h", "defines.h"):
        if not (fw / header).is_file():
            raise HlsProjectError(f"{fw / header} not found: the firmware is incomplete (or older than hls4ml 0.5)")
    name = cfg.get("ProjectName") or _tcl_var(tcl, "project_name")
    top = _find_top(fw, str(name) if name else None)
    files += [f"firmware/{top.name}", "firmware/parameters.h", "firmware/defines.h"]
    # hls4ml >= 0.8 writes project.tcl variables; older build_prj.tcl calls set_part / create_clock directly.
    m_part = re.search(r"^\s*set_part\s+\{?([\w-]+)\}?", tcl, re.MULTILINE)
    m_clock = re.search(r"^\s*create_clock\s+-period\s+([\d.]+)", tcl, re.MULTILINE)
    part = cfg.get("Part") or _tcl_var(tcl, "part") or (m_part.group(1) if m_part else None)
    period = cfg.get("ClockPeriod") or _tcl_var(tcl, "clock_period") or (m_clock.group(1) if m_clock else None)
    clock = None
    if period is not None:
        try:
            clock = 1000.0 / float(period) if float(period) > 0 else None
        except ValueError as exc:
            raise HlsProjectError(f"{root}: clock period {period!r} is not a number") from exc
    backend = cfg.get("Backend") or _tcl_var(tcl, "backend")
    text = top.read_text(errors="replace")
    io_type = cfg.get("IOType") or ("io_stream" if re.search(r"hls::stream<", text) else "io_parallel")
    if hls_tool is None:
        hls_tool = _tool_of_reports(root, top.stem)
    if hls_tool is None:
        vivado = str(backend or "").lower().startswith("vivado") and "vivado_hls" in tcl
        hls_tool = "vivado_hls" if vivado else "vitis"
    if hls_tool not in ("vitis", "vivado_hls"):
        raise HlsProjectError(f"hls_tool {hls_tool!r} is not 'vitis' or 'vivado_hls'")
    return ProjectInfo(root, top.stem, str(part) if part else None, clock, str(backend) if backend else None,
                       str(io_type), hls_tool, files)  # fmt: skip


def _tool_of_reports(root: Path, name: str) -> str | None:
    """``vivado_hls`` or ``vitis`` from an HLS report the project already has (``<name>_prj/*/syn/report``)."""
    for rpt in sorted(root.glob(f"{name}_prj/*/syn/report/*_csynth.rpt"))[:1]:
        head = rpt.read_text(errors="replace")[:2000]
        if "Vivado HLS Report" in head:
            return "vivado_hls"
        if "Vitis HLS Report" in head:
            return "vitis"
    return None


# ------------------------------------------------------------------------------------------- header normalizing
_DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)\s+([^\n/]+?)\s*(?://.*)?$", re.MULTILINE)
_MEMBER = re.compile(r"(static\s+const\s+[\w:<>\s*]+?\s+(\w+)\s*=\s*)([^;]+);")


def _eval_int(expr: str) -> int | None:
    """An integer expression of literals, + - * / ( ) and DIV_ROUNDUP, or None."""
    expr = re.sub(r"\b(\d+)[uUlL]+\b", r"\1", expr.strip())
    expr = expr.replace("DIV_ROUNDUP", "_div_roundup")
    if not re.fullmatch(r"[\d\s+\-*/(),_a-z]*", expr) or re.search(r"[a-z]", expr.replace("_div_roundup", "")):
        return None
    try:
        value = eval(expr.replace("/", "//"), {"__builtins__": {}}, {"_div_roundup": lambda a, b: -(-a // b)})  # noqa: S307
    except (SyntaxError, ZeroDivisionError, TypeError, NameError):
        return None
    return int(value) if isinstance(value, int) else None


def _substitute(expr: str, values: dict[str, str]) -> str:
    return re.sub(r"\b([A-Za-z_]\w*)\b", lambda m: values.get(m.group(1), m.group(1)), expr)


def normalize_parameters(parameters_h: str, defines_h: str) -> str:
    """``parameters.h`` with ``defines.h`` macros and same-struct member names replaced by their integer values.

    Only integer-valued members are rewritten (``n_in = N_LAYER_2`` -> ``n_in = 24``; ``n_chan = n_filt`` ->
    ``n_chan = 6``); types, templates and everything else stay as written.
    """
    macros = _macros(defines_h)

    def fix_struct(m: re.Match) -> str:
        members: dict[str, str] = {}

        def fix_member(sm: re.Match) -> str:
            value = _eval_int(_substitute(sm.group(3), {**macros, **members}))
            if value is None:
                return sm.group(0)
            members[sm.group(2)] = str(value)
            return f"{sm.group(1)}{value};"

        return _MEMBER.sub(fix_member, m.group(0))

    return re.sub(r"^struct\s+\w+\s*:\s*[\w:]+\s*\{.*?^\};", fix_struct, parameters_h, flags=re.MULTILINE | re.DOTALL)


_SCALAR_TYPEDEF = re.compile(r"^(\s*typedef\s+)((?:ap_u?fixed|ap_u?int)\s*<[^;]*?>|float|double|bool)(\s+)(\w+)\s*;",
                             re.MULTILINE)  # fmt: skip


def resolve_typedefs(defines_h: str) -> str:
    """``defines.h`` with scalar type names written out where other typedefs use them.

    hls4ml >= 0.8 writes ``typedef ap_fixed<16,6> model_default_t;`` and then ``typedef
    nnet::array<model_default_t, 3*1> input_t;`` or ``typedef model_default_t weight2_t;``; the estimate reads
    array and scalar types from the text, so the names are replaced by their types (as the compiler would see them).
    """
    for _ in range(4):  # chains of names (a -> b -> ap_fixed<...>)
        scalars = {m.group(4): m.group(2) for m in _SCALAR_TYPEDEF.finditer(defines_h)}
        if not scalars:
            return defines_h
        new = re.sub(r"^(\s*typedef\s+)(.+?)(\s+\w+\s*;)", partial(_fix_typedef, scalars=scalars), defines_h,
                     flags=re.MULTILINE)  # fmt: skip
        if new == defines_h:
            break
        defines_h = new
    return defines_h


def _fix_typedef(m: re.Match, scalars: dict[str, str]) -> str:
    """One ``typedef <type> <name>;`` with the scalar names used in ``<type>`` written out (its own name kept)."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(scalars, key=len, reverse=True))) + r")\b")
    return m.group(1) + pattern.sub(lambda n: scalars[n.group(1)], m.group(2)) + m.group(3)


def _macros(defines_h: str) -> dict[str, str]:
    """Integer ``#define`` macros of ``defines.h`` (name -> value)."""
    macros: dict[str, str] = {}
    for m in _DEFINE.finditer(defines_h):
        value = _eval_int(_substitute(m.group(2), macros))
        if value is not None:
            macros[m.group(1)] = str(value)
    return macros


def normalized_copy(info: ProjectInfo, dest: str | Path) -> Path:
    """Copy the headers the estimate reads into ``dest`` (macros resolved); returns the copy's project folder."""
    dest = Path(dest)
    fw_in, fw_out = info.root / "firmware", dest / "firmware"
    fw_out.mkdir(parents=True, exist_ok=True)
    defines = (fw_in / "defines.h").read_text(errors="replace")
    params = (fw_in / "parameters.h").read_text(errors="replace")
    top = (fw_in / f"{info.name}.cpp").read_text(errors="replace")
    macros = _macros(defines)
    if macros:  # template arguments such as clone_stream<..., N_INPUT_1_1*N_INPUT_2_1>
        top = re.sub(r"\b([A-Z_][A-Z0-9_]*)\b", lambda m: macros.get(m.group(1), m.group(1)), top)
    params = normalize_parameters(params, defines)
    top, params = one_d_as_two_d(top, params)
    (fw_out / "parameters.h").write_text(params)
    (fw_out / "defines.h").write_text(resolve_typedefs(defines))
    (fw_out / f"{info.name}.cpp").write_text(top)
    for suffix in ("_axi.cpp", "_axi.h"):
        src = fw_in / f"{info.name}{suffix}"
        if src.is_file():
            shutil.copyfile(src, fw_out / src.name)
    return dest


#: 1-D io_stream layers and their 2-D counterparts (same templates with a height of 1).
_ONE_D = {"conv_1d_cl": "conv_2d_cl", "pointwise_conv_1d_cl": "pointwise_conv_2d_cl", "zeropad1d_cl": "zeropad2d_cl",
          "pooling1d_cl": "pooling2d_cl", "global_pooling1d_cl": "global_pooling2d_cl"}  # fmt: skip


def one_d_as_two_d(top_cpp: str, parameters_h: str) -> tuple[str, str]:
    """Rewrite 1-D layer calls as the 2-D ones of height 1 (the estimate models the 2-D line-buffer templates).

    A ``Conv1D`` of width W is costed as a ``Conv2D`` of 1 x W: its config struct gets ``in_height``,
    ``out_height``, ``filt_height`` (and ``pool_height``, ``stride_height``) of 1, and ``n_in``/``n_out`` of a
    zero padding or pooling are read as widths. An approximation: hls4ml's 1-D templates keep one line of
    ``filt_width`` pixels instead of ``filt_height - 1`` lines, which a height of 1 reproduces.
    """
    configs: set[str] = set()

    def call(m: re.Match) -> str:
        args = _split_template_args(m.group(2))
        if args:
            configs.add(args[-1].strip())
        return f"nnet::{_ONE_D[m.group(1)]}<{m.group(2)}>"

    pattern = r"nnet::(" + "|".join(_ONE_D) + r")\s*<([^;]*?)>(?=\s*\()"
    top_cpp = re.sub(pattern, call, top_cpp)
    if not configs:
        return top_cpp, parameters_h

    def fix(m: re.Match) -> str:
        if m.group(1) not in configs:
            return m.group(0)
        body = m.group(0)
        extra = []
        for name, value in (("in_height", 1), ("out_height", 1), ("filt_height", 1), ("pool_height", 1),
                            ("stride_height", 1), ("pad_top", 0), ("pad_bottom", 0)):  # fmt: skip
            if not re.search(rf"\b{name}\s*=", body):
                extra.append(f"    static const unsigned {name} = {value};")
        for w_name, n_name in (("in_width", "n_in"), ("out_width", "n_out")):
            if not re.search(rf"\b{w_name}\s*=", body):
                mm = re.search(rf"static\s+const\s+unsigned\s+{n_name}\s*=\s*(\d+);", body)
                if mm:
                    extra.append(f"    static const unsigned {w_name} = {mm.group(1)};")
        head_end = body.index("{") + 1
        return body[:head_end] + "\n" + "\n".join(extra) + body[head_end:]

    parameters_h = re.sub(r"^struct\s+(\w+)\s*:\s*[\w:]+\s*\{.*?^\};", fix, parameters_h,
                          flags=re.MULTILINE | re.DOTALL)  # fmt: skip
    return top_cpp, parameters_h


def _split_template_args(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch == "<"
        depth -= ch == ">"
        cur += ch
    return [*out, cur] if cur.strip() else out


def read_project(path: str | Path, part: str | None = None, hls_tool: str | None = None) -> tuple[Any, ProjectInfo]:
    """The design graph of an hls4ml ``io_stream`` project folder, and what the folder says about itself.

    Args:
        path: the project folder or its ``firmware/``.
        part: FPGA part to estimate for (default: the project's); must be a known part (:func:`part_resources`).
        hls_tool: see :func:`inspect_project`.

    Returns:
        ``(DesignGraph, ProjectInfo)``; the graph's ``part`` is the part used, its ``source`` the folder.

    Raises:
        HlsProjectError: not a project, an io_parallel project, unreadable firmware.
        UnknownPartError: the part (given or the project's) is not known.
    """
    from hls_build import estimate as est

    info = inspect_project(path, hls_tool)
    if info.io_type != "io_stream":
        raise HlsProjectError(f"{info.root}: an {info.io_type} project; only io_stream designs are estimated")
    use_part = part or info.part
    if use_part is not None:
        part_resources(use_part)  # refuse unknown parts before any work
    with tempfile.TemporaryDirectory(prefix="hls_project_") as tmp:
        copy = normalized_copy(info, tmp)
        try:
            graph = est.graph_from_project(copy, info.name, clock_mhz=info.clock_mhz or 100.0, part=use_part,
                                           hls_tool=info.hls_tool)  # fmt: skip
            for layer in graph.layers:  # fail here, with the layer's name, rather than deep in the cost model
                if layer.op in ("conv2d", "dense"):
                    layer.mult_size  # noqa: B018
        except (est.EstimateError, KeyError, ValueError) as exc:
            raise HlsProjectError(f"{info.root}: firmware not readable as hls4ml io_stream C++ ({exc!r})") from exc
    graph.source = str(info.root)
    return graph, info


# ------------------------------------------------------------------------------------------------------- parts
def _norm_part(part: str) -> str:
    return part.strip().lower()


#: Xilinx device names (7-series, Zynq-7000, UltraScale(+), Zynq UltraScale+, Alveo, Kria): what precedes the
#: package in a part name, which some tools write without a dash (``xc7z020clg400-1``).
_DEVICE = re.compile(r"^(xc(?:7[aksvz]\d+[st]?|zu\d+(?:eg|ev|cg|dr)|k[uv]\d+p?|vu\d+p?|u\d+|k26[a-z]?))")


def _part_family(part: str) -> str:
    """The device without package/speed: ``xczu9eg-ffvb1156-2-e`` -> ``xczu9eg``, ``xc7z020clg400-1`` -> ``xc7z020``."""
    name = _norm_part(part)
    m = _DEVICE.match(name)
    return m.group(1) if m else re.split(r"[-_]", name)[0]


def known_parts() -> dict[str, dict[str, Any]]:
    """Every part the estimate accepts: device -> ``{"resources": {...}, "source": ..., "parts": [full names]}``.

    From the boards (:data:`hls_build.boards.BOARDS`, their budgets) and from the ``Available`` row of each
    committed csynth report of the calibration set.
    """
    from hls_build.calibration_fit import csynth_available, load_designs

    out: dict[str, dict[str, Any]] = {}
    for name, spec in BOARDS.items():
        dev = _part_family(spec.part)
        entry = out.setdefault(dev, {"resources": spec.budget.as_dict(), "source": f"board {name}", "parts": []})
        entry["parts"].append(_norm_part(spec.part))
    for design in load_designs():
        avail = csynth_available(design)
        if not avail or not design.part:
            continue
        dev = _part_family(design.part)
        entry = out.setdefault(dev, {"resources": avail, "source": f"csynth report of {design.name}", "parts": []})
        if _norm_part(design.part) not in entry["parts"]:
            entry["parts"].append(_norm_part(design.part))
    return out


def part_resources(part: str) -> dict[str, int]:
    """Resources of ``part`` (any package/speed grade of a known device).

    Raises:
        UnknownPartError: the device is not known; the message lists the known ones.
    """
    parts = known_parts()
    dev = _part_family(part)
    if dev not in parts:
        raise UnknownPartError(f"unknown part {part!r}; known devices: {', '.join(sorted(parts))}")
    res = parts[dev]["resources"]
    return {r: int(res.get(r, 0)) for r in RESOURCE_NAMES}
