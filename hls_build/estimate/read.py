"""Reading the design graph from the C++ hls4ml 1.3 writes.

The files: ``firmware/<project>.cpp``, ``parameters.h``, ``defines.h``, ``weights/*.txt``, ``<project>_axi.cpp``;
of a project folder, a converted ``ModelGraph`` (written first) or an overlay bundle's ``hls/`` folder.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from board.fixed_point import FixedPoint
from hls_build.bind import impl_of_product_class
from hls_build.estimate.graph import DesignGraph, EstimateError, Layer, Stream, array_type, parse_type
from hls_build.firmware_graph import read_config_structs
from hls_build.fuse import SERIAL_CAST_MARKER

log = logging.getLogger(__name__)

_OPS = {
    "zeropad2d_cl": "zeropad",
    "conv_2d_cl": "conv2d",
    "pointwise_conv_2d_cl": "conv2d",
    "depthwise_conv_2d_cl": "conv2d",  # priced as a convolution with one product per window element
    "normalize": "batchnorm",
    "dense": "dense",
    "clone_stream": "clone",
    "add": "merge",
    "subtract": "merge",
    "multiply": "merge",
    "average": "merge",
    "maximum": "merge",
    "minimum": "merge",
    "global_pooling2d_cl": "global_pool",
    "pooling2d_cl": "pool2d",
    "repack_stream": "passthrough",
    "concatenate1d": "concat",
    "concatenate3d": "concat",
    "softmax": "softmax",
}
_ACTIVATIONS = ("relu", "linear", "relu6", "leaky_relu", "sigmoid", "tanh", "hard_sigmoid", "elu", "selu")


def _split_args(text: str) -> list[str]:
    """Split a comma list at depth 0 of ``<>`` and ``()``."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if re.fullmatch(r"\d+(\s*\*\s*\d+)*", text):
        return math.prod(int(t) for t in text.split("*"))
    return None


def _read_weights(weights_dir: Path, var: str) -> np.ndarray | None:
    path = weights_dir / f"{var}.txt"
    if not path.is_file():
        return None
    text = path.read_text().strip()
    if not text:
        return np.zeros(0)
    return np.array([float(t) for t in text.split(",") if t.strip()], dtype=np.float64)


def _product_classes(parameters_h: Path) -> dict[str, str]:
    """Config struct name -> its ``using product = nnet::product::<class><x_T, y_T>`` class."""
    text = parameters_h.read_text()
    out = {}
    for m in re.finditer(r"^struct\s+(\w+)\s*:\s*[\w:]+\s*\{(.*?)^\};", text, re.MULTILINE | re.DOTALL):
        pm = re.search(r"using\s+product\s*=\s*nnet::product::(\w+)\s*<", m.group(2))
        if pm:
            out[m.group(1)] = pm.group(1)
    return out


def _clock_from_project(project_dir: Path) -> float | None:
    for name in ("project.tcl", "build_prj.tcl"):
        path = project_dir / name
        if path.is_file():
            m = re.search(r"set\s+clock_period\s+([\d.]+)", path.read_text())
            if m and float(m.group(1)) > 0:
                return 1000.0 / float(m.group(1))
    return None


def _part_from_project(project_dir: Path) -> str | None:
    path = project_dir / "project.tcl"
    if path.is_file():
        m = re.search(r"set\s+part\s+\"?([\w-]+)\"?", path.read_text())
        if m:
            return m.group(1)
    return None


def graph_from_project(
    project_dir: str | Path,
    project_name: str = "myproject",
    clock_mhz: float | None = None,
    part: str | None = None,
    hls_tool: str = "vitis",
) -> DesignGraph:
    """Read the network of an hls4ml project from the C++ it wrote.

    Args:
        project_dir: the folder ``hls_model.write()`` wrote (with ``firmware/``).
        project_name: the hls4ml project name.
        clock_mhz: target clock; default from ``project.tcl``'s clock period, else 100 MHz.
        part: FPGA part; default from ``project.tcl``.
        hls_tool: ``vitis`` or ``vivado_hls`` (how FIFOs are built).

    Raises:
        EstimateError: the files are missing or not in the form hls4ml 1.3 writes for ``io_stream``.
    """
    project_dir = Path(project_dir)
    fw = project_dir / "firmware"
    top_cpp = fw / f"{project_name}.cpp"
    if not top_cpp.is_file():
        raise EstimateError(f"{top_cpp} not found: not an hls4ml project written with io_stream")
    text = top_cpp.read_text()
    typedefs: dict[str, str] = {}
    for m in re.finditer(r"^\s*typedef\s+(.+?)\s+(\w+)\s*;", (fw / "defines.h").read_text(), re.MULTILINE):
        typedefs[m.group(2)] = m.group(1)
    structs = read_config_structs(fw / "parameters.h")
    products = _product_classes(fw / "parameters.h")  # hls_build.bind: a layer's bound multipliers
    kernel_h = fw / "nnet_utils" / "nnet_dense_resource.h"
    serial_casts = kernel_h.is_file() and SERIAL_CAST_MARKER in kernel_h.read_text()

    def stream_type(name: str) -> tuple[FixedPoint, int]:
        if name not in typedefs:
            raise EstimateError(f"type {name} is not declared in {fw / 'defines.h'}")
        return array_type(typedefs[name])

    def scalar_type(name: str | None) -> FixedPoint | None:
        if not name:
            return None
        return parse_type(typedefs.get(name, name))

    streams: dict[str, Stream] = {}
    sig = re.search(rf"void\s+{re.escape(project_name)}\s*\((.*?)\)\s*\{{", text, re.DOTALL)
    if not sig:
        raise EstimateError(f"{top_cpp}: cannot find the top function {project_name}()")
    ports = re.findall(r"hls::stream<\s*(\w+)\s*>\s*&\s*(\w+)", sig.group(1))
    if not ports:
        raise EstimateError(f"{top_cpp}: the top function has no hls::stream ports (io_parallel project?)")
    for tname, var in ports:
        elem, n = stream_type(tname)
        streams[var] = Stream(var, elem, n, 0, kind="port")
    depths = {
        m.group(1): int(m.group(2)) for m in re.finditer(r"#pragma\s+HLS\s+STREAM\s+variable=(\w+)\s+depth=(\d+)", text)
    }
    for m in re.finditer(r"hls::stream<\s*(\w+)\s*>\s+(\w+)\s*\(", text):
        elem, n = stream_type(m.group(1))
        streams[m.group(2)] = Stream(m.group(2), elem, n, depths.get(m.group(2), 2))

    aliases = {m.group(1): m.group(2) for m in re.finditer(r"auto\s*&\s*(\w+)\s*=\s*(\w+)\s*;", text)}
    weights_dir = fw / "weights"
    layers: list[Layer] = []
    produced: set[str] = set()
    inputs = [ports[0][1]] if ports else []
    n_inputs = 1
    call_re = re.compile(r"^\s*nnet::(\w+)\s*<(.*)>\s*\((.*)\)\s*;\s*//\s*(\S+)", re.MULTILINE)
    for m in call_re.finditer(text):
        func, targs, args, lname = m.group(1), _split_args(m.group(2)), _split_args(m.group(3)), m.group(4)
        args = [aliases.get(a, a) for a in args]  # io_stream Flatten/Reshape: an alias of the same stream
        stream_args = [a for a in args if a in streams]
        other_args = [a for a in args if a not in streams]
        ins = [a for a in stream_args if a in produced or a in inputs]
        outs = [a for a in stream_args if a not in ins]
        op = _OPS.get(func) or ("activation" if func in _ACTIVATIONS else "unknown")
        config = targs[-1] if targs and re.fullmatch(r"[A-Za-z_]\w*", targs[-1]) else None
        cfg = structs.get(config or "", {})
        layer = Layer(name=lname, op=op, function=f"nnet::{func}", inputs=ins, outputs=outs)
        for key, value in cfg.items():
            v = _int(value)
            if v is not None:
                layer.attrs[key] = v
        layer.reuse_factor = layer.attrs.get("reuse_factor")
        if ins:
            layer.types["in"] = streams[ins[0]].elem
            layer.attrs["in_elems"] = streams[ins[0]].n_elem
        if len(ins) > 1:
            layer.types["in2"] = streams[ins[1]].elem
        if outs:
            layer.types["out"] = streams[outs[0]].elem
            layer.attrs["out_elems"] = streams[outs[0]].n_elem
        if op in ("conv2d", "dense"):
            mult = structs.get(cfg.get("mult_config", ""), cfg) if op == "conv2d" else cfg
            strat = mult.get("strategy", cfg.get("strategy", "nnet::latency"))
            layer.strategy = "resource" if "resource" in strat else ("latency" if "latency" in strat else strat)
            layer.reuse_factor = _int(mult.get("reuse_factor")) or layer.reuse_factor or 1
            layer.n_zeros = _int(mult.get("n_zeros")) or 0
            layer.detail["kernel"] = mult.get("kernel")
            mult_struct = cfg.get("mult_config", "") if op == "conv2d" else (config or "")
            layer.detail["multiplier"] = impl_of_product_class(products.get(mult_struct))
            layer.detail["serial_result_cast"] = serial_casts  # hls_build.fuse.serialize_result_casts
            layer.detail["depthwise"] = func == "depthwise_conv_2d_cl"
            if op == "conv2d" and func == "pointwise_conv_2d_cl":
                layer.attrs.setdefault("filt_height", 1)
                layer.attrs.setdefault("filt_width", 1)
            for key in ("accum", "weight", "bias"):
                t = scalar_type(mult.get(f"{key}_t") or cfg.get(f"{key}_t"))
                if t is not None:
                    layer.types[key] = t
            for var, key in zip(other_args, ("weight", "bias")):
                arr = _read_weights(weights_dir, var)
                if arr is not None:
                    layer.weights[key] = arr
        elif op == "batchnorm":
            for key in ("scale", "bias"):
                t = scalar_type(cfg.get(f"{key}_t"))
                if t is not None:
                    layer.types[key] = t
            for var, key in zip(other_args, ("scale", "bias")):
                arr = _read_weights(weights_dir, var)
                if arr is not None:
                    layer.weights[key] = arr
        elif op in ("global_pool", "pool2d"):
            t = scalar_type(cfg.get("accum_t"))
            if t is not None:
                layer.types["accum"] = t
            layer.detail["pool_op"] = cfg.get("pool_op", "")
        elif op == "merge":
            layer.detail["merge_op"] = func
        elif op == "activation":
            layer.detail["activation"] = func
        elif op == "clone":
            layer.attrs["n_elem"] = _int(targs[2]) if len(targs) > 2 else 0
        if op == "unknown":
            log.warning("estimate: layer %s calls nnet::%s, which the estimator does not model", lname, func)
        for s in ins:
            streams[s].consumers.append(lname)
        for s in outs:
            streams[s].producer = lname
            produced.add(s)
        layers.append(layer)
    if not layers:
        raise EstimateError(f"{top_cpp}: no nnet:: layer calls found")
    outputs = [var for _, var in ports[n_inputs:]]

    # The AXI wrapper (VivadoAccelerator): its two FIFOs and its element loops.
    axi: dict[str, int] = {}
    axi_cpp = fw / f"{project_name}_axi.cpp"
    axi_h = fw / f"{project_name}_axi.h"
    if axi_cpp.is_file() and axi_h.is_file():
        atext, htext = axi_cpp.read_text(), axi_h.read_text()
        for key in ("N_IN", "N_OUT"):
            mm = re.search(rf"{key}\s*=\s*(\d+)", htext)
            if mm:
                axi[key.lower()] = int(mm.group(1))
        adepths = {
            mm.group(1): int(mm.group(2))
            for mm in re.finditer(r"#pragma\s+HLS\s+STREAM\s+variable=(\w+)\s+depth=(\d+)", atext)
        }
        for var, port in (("in_local", streams[inputs[0]] if inputs else None), ("out_local", None)):
            src = port if port is not None else (streams[outputs[0]] if outputs else None)
            if src is not None and var in adepths:
                streams[var] = Stream(var, src.elem, src.n_elem, adepths[var], kind="axi")
    return DesignGraph(
        project=project_name,
        layers=layers,
        streams=streams,
        inputs=inputs,
        outputs=outputs,
        clock_mhz=float(clock_mhz or _clock_from_project(project_dir) or 100.0),
        part=part or _part_from_project(project_dir),
        hls_tool=hls_tool,
        axi=axi,
        source=str(project_dir),
    )


def graph_from_hls_model(
    hls_model: Any, clock_mhz: float | None = None, hls_tool: str = "vitis", write: bool = True
) -> DesignGraph:
    """The network of a converted hls4ml ``ModelGraph``, read from the C++ it writes.

    Args:
        hls_model: the converted model (``io_stream``).
        clock_mhz: clock for times and rates (default: from its ``ClockPeriod``).
        hls_tool: ``vitis`` or ``vivado_hls``.
        write: call ``hls_model.write()`` first (False only when it was just written, as ``build_bundle`` does).

    The output-variable names of the ModelGraph are kept in ``DesignGraph.keys`` so that planned FIFO depths can
    be set on it (``var.pragma``) before ``write()``.
    """
    cfg = hls_model.config
    out_dir = Path(cfg.get_output_dir())
    project = cfg.get_project_name()
    if cfg.get_config_value("IOType") != "io_stream":
        raise EstimateError("only io_stream designs are estimated (this model is io_parallel)")
    if write:
        from hls_build.config import write_project

        write_project(hls_model)
    period = cfg.get_config_value("ClockPeriod")
    if clock_mhz is None and period:
        clock_mhz = 1000.0 / float(period)
    graph = graph_from_project(out_dir, project, clock_mhz=clock_mhz, part=cfg.get_config_value("Part"),
                               hls_tool=hls_tool)  # fmt: skip
    graph.keys = {v.name: k for k, v in hls_model.output_vars.items()}
    return graph


def graph_from_bundle(bundle_dir: str | Path, hls_tool: str = "vitis") -> DesignGraph:
    """The network of an overlay bundle, read from its ``hls/`` project (no hls4ml needed).

    Raises:
        EstimateError: no manifest or no hls project in the folder.
    """
    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / "manifest.json"
    if not manifest_path.is_file():
        raise EstimateError(f"{bundle_dir} is not an overlay bundle (no manifest.json)")
    manifest = json.loads(manifest_path.read_text())
    hls = manifest.get("hls", {})
    project_dir = bundle_dir / hls.get("project_dir", "hls")
    graph = graph_from_project(
        project_dir,
        hls.get("project_name", "myproject"),
        clock_mhz=hls.get("clock_mhz"),
        part=hls.get("part"),
        hls_tool=hls_tool,
    )
    graph.source = str(bundle_dir)
    return graph


def convert_keras_model(model: Any, settings: Any, work_dir: str | Path) -> Any:
    """Convert a (Q)Keras model the way ``hls_build.build.build_bundle`` does and write the project to ``work_dir``.

    The model is prepared (BatchNormalization folded) and converted by ``hls_build.config`` alone (the only place
    that writes hls4ml config keys); a plan's per-layer settings are estimated analytically, not converted here.

    Args:
        model: the Keras model.
        settings: ``hls_build.config.HlsSettings``.
        work_dir: folder for the hls4ml project (``<work_dir>/hls``).

    Returns:
        The written hls4ml ``ModelGraph``.
    """
    from hls_build.config import convert, prepare_model, write_project

    prepared, _ = prepare_model(model)
    hls_model = convert(prepared, settings, Path(work_dir) / "hls", project_name="myproject")
    write_project(hls_model)
    return hls_model
