"""Pre-synthesis resource and throughput ESTIMATES of an hls4ml ``io_stream`` design (no Vivado needed).

Everything here is an estimate made before synthesis and is labelled so wherever it is printed or stored. The
method, the published figures it was checked against and the error are in ``hls_build/README.md`` ("Estimates")
and ``hls_build/calibration.json``.

What is estimated, per layer and in total: BRAM_18K, DSP, FF, LUT, URAM (the manifest's resource names,
:data:`hls_build.boards.RESOURCE_NAMES`; the table prints DSP as ``DSP48E`` like an HLS report), the cycles one
image spends in each dataflow process, the pipeline's initiation interval (the slowest process), an approximate
latency, and images/s at the clock.

Input: the C++ hls4ml 1.3 writes (``firmware/<project>.cpp``, ``parameters.h``, ``defines.h``, ``weights/*.txt``,
``<project>_axi.cpp``), read by :func:`graph_from_project`. The same reader serves a freshly converted model
(:func:`graph_from_hls_model` writes it first) and an existing overlay bundle (:func:`graph_from_bundle`, no
hls4ml needed): every figure is derived from the generated firmware -- geometry, resolved precisions, reuse
factors, strategies, matrix-multiply kernels and stream depths -- never set by hand per model.

The model follows the hls4ml 1.3 templates (``nnet_utils``):

* **Conv2D / PointwiseConv2D** (``nnet_conv_stream.h``, line buffer): the input stream is shifted through
  ``filt_height-1`` rows of ``ap_shift_reg`` (SRL shift registers in LUTs) into a register window; when a window
  is complete the matrix-multiply kernel runs. ``Resource`` strategy: ``nnet_dense_resource.h`` -- the weights are
  reshaped into a ROM of depth ``RF`` and width ``ceil(n_in*n_out/RF)`` words (``#pragma HLS RESOURCE
  core=ROM_nP_BRAM``, so BRAM whenever RF > 1), ``ceil(n_in*n_out/RF)`` multiply-accumulate lanes, ``ReuseLoop``
  pipelined at II=1 for RF iterations per output pixel; the pixel loop is not pipelined. ``Latency`` strategy:
  weights are constants in the fabric, ``multiplier_limit`` multipliers, the pixel loop pipelined at II=RF.
* **Dense** (``nnet_dense_stream.h``): the same kernels after reading the whole input vector.
* **BatchNormalization** (unfolded, ``nnet_batchnorm_stream.h``): per pixel II = ``n_in / ceil(n_in/RF)``; HLS
  shares the ``n_chan`` multipliers over that II, so ``ceil(n_chan/II)`` multipliers (scale width x input width).
* **ReLU / linear activations, Add/Merge, Clone, ZeroPadding2D, GlobalPooling2D, Pooling2D**: II=1 per pixel
  pipelines; costs are the bit-level operators they contain (comparators, rounding adders, saturation muxes,
  accumulators).
* **FIFOs**: every ``hls::stream`` between layers (``#pragma HLS STREAM depth=``). Vitis HLS keeps a stream of
  ``nnet::array<T, N>`` as one FIFO of ``N*width(T)`` bits and binds it to SRLs when ``depth <= 2`` or
  ``depth*width <= 1024`` bits (``config_storage fifo`` defaults, UG1399), otherwise to BRAM. Vivado HLS splits the
  array into N FIFOs of ``width(T)`` bits (seen in published csynth reports) and uses SRLs up to depth 16.

Multipliers: a product goes to DSP48 slices when both operands are at least ``dsp_min_operand_bits`` (11) bits
wide, otherwise to LUT fabric (``lut_per_mult_bit * a * b`` LUTs); a DSP48E1 multiplies 25x18 bits, a DSP48E2
27x18, wider products take several. BRAM_18K for a memory of depth D and width W is the cheapest tiling of the
RAMB18 shapes 512x36, 1Kx18, 2Kx9, 4Kx4, 8Kx2, 16Kx1.

LUT and FF are sums of such bit-level operator costs times one global coefficient per resource fitted to
published post-synthesis figures (``calibration.json``): the estimate is meant as *post-synthesis* usage of the
accelerator IP (an HLS csynth report typically shows about twice the LUTs). BRAM and DSP use the HLS binding rules
above with no fitted factor. The AXI DMA and interconnect of the block design are not included.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hls_build.boards import RESOURCE_NAMES, BoardSpec, board_spec
from hls_build.firmware_graph import FirmwareGraphError, parse_cpp_type, read_config_structs
from hls_build.fuse import SERIAL_CAST_MARKER

log = logging.getLogger(__name__)

__all__ = [
    "CALIBRATION_FILE",
    "Coefficients",
    "DesignGraph",
    "Estimate",
    "EstimateError",
    "FixedType",
    "Layer",
    "PrecisionWarning",
    "Stream",
    "bram18_count",
    "calibrate",
    "calibration_errors",
    "check_precision",
    "convert_keras_model",
    "dsp_per_product",
    "estimate_design",
    "format_table",
    "graph_from_bundle",
    "graph_from_hls_model",
    "graph_from_project",
    "load_coefficients",
    "valid_reuse_factors",
]

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
#: The table's column names, in the order HLS reports print them.
TABLE_COLUMNS = ("BRAM_18K", "DSP48E", "FF", "LUT", "URAM")
_BRAM18_SHAPES = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))


class EstimateError(ValueError):
    """The firmware could not be read, or a layer or setting cannot be estimated."""


# ------------------------------------------------------------------------------------------------- coefficients
@dataclass(frozen=True)
class Coefficients:
    """The model's constants; the defaults are overridden by ``calibration.json``'s ``model.coefficients``.

    Attributes:
        lut_scale: global factor on the summed LUT operator costs (fitted to published post-synthesis figures).
        ff_scale: global factor on the summed FF operator costs (fitted likewise).
        lut_per_mult_bit: LUTs of a fabric multiplier per operand bit product (``a*b``).
        dsp_min_operand_bits: a product uses DSP48 slices when both operands are at least this wide.
        fifo_srl_max_bits: Vitis HLS ``config_storage fifo -auto_srl_max_bits`` (default 1024).
        fifo_srl_max_depth: Vitis HLS ``-auto_srl_max_depth`` (default 2).
        vivado_hls_fifo_srl_max_depth: Vivado HLS keeps FIFOs up to this depth in SRLs.
        conv_cycles_per_input: cycles of the (unpipelined) line-buffer pixel loop per input pixel, Resource.
        mac_pipeline_depth: extra cycles of one matrix-multiply call beyond its RF iterations.
        layer_control_lut: LUTs of one dataflow process's control (FSM, handshakes).
        layer_control_ff: FFs of one dataflow process's control.
        conv_control_lut: extra LUTs of the line-buffer counters of a convolution.
        conv_control_ff: extra FFs of those counters.
    """

    lut_scale: float = 1.0
    ff_scale: float = 1.0
    lut_per_mult_bit: float = 1.13
    dsp_min_operand_bits: int = 11
    fifo_srl_max_bits: int = 1024
    fifo_srl_max_depth: int = 2
    vivado_hls_fifo_srl_max_depth: int = 16
    conv_cycles_per_input: int = 3
    mac_pipeline_depth: int = 7
    layer_control_lut: int = 40
    layer_control_ff: int = 40
    conv_control_lut: int = 200
    conv_control_ff: int = 160


def load_coefficients(path: str | Path | None = None) -> Coefficients:
    """The coefficients in ``calibration.json`` (``model.coefficients``); the defaults when it has none."""
    path = Path(path) if path is not None else CALIBRATION_FILE
    if not path.is_file():
        return Coefficients()
    data = json.loads(path.read_text())
    values = data.get("model", {}).get("coefficients", {})
    known = set(Coefficients.__dataclass_fields__)
    return Coefficients(**{k: v for k, v in values.items() if k in known})


def calibration_summary(path: str | Path | None = None) -> str:
    """One line for the ESTIMATE label: what the model was checked against and its typical error."""
    path = Path(path) if path is not None else CALIBRATION_FILE
    if path.is_file():
        summary = json.loads(path.read_text()).get("model", {}).get("summary")
        if summary:
            return str(summary)
    return "uncalibrated"


# ------------------------------------------------------------------------------------------------------ types
@dataclass(frozen=True)
class FixedType:
    """An ``ap_fixed``/``ap_ufixed``/``ap_(u)int`` type: what the estimator needs of it."""

    width: int
    integer: int
    signed: bool
    rounding: str = "AP_TRN"
    saturation: str = "AP_WRAP"
    cpp: str = ""

    @classmethod
    def parse(cls, text: str) -> FixedType:
        """Parse ``ap_fixed<16,6>`` / ``ap_ufixed<8,3,AP_RND_CONV,AP_SAT,0>`` / ``ap_uint<1>`` (arrays unwrapped)."""
        try:
            d = parse_cpp_type(text)
        except FirmwareGraphError as exc:
            raise EstimateError(str(exc)) from exc
        return cls(d["width"], d["integer"], d["signed"], d["rounding"], d["saturation"], d["cpp"])

    @property
    def lsb(self) -> float:
        """Value of the least significant bit."""
        return 2.0 ** (self.integer - self.width)

    @property
    def lo(self) -> float:
        """Smallest representable value."""
        return -(2.0 ** (self.integer - 1)) if self.signed else 0.0

    @property
    def hi(self) -> float:
        """Largest representable value."""
        return (2.0 ** (self.integer - 1) if self.signed else 2.0**self.integer) - self.lsb

    @property
    def saturating(self) -> bool:
        """Whether overflow saturates (anything but ``AP_WRAP``)."""
        return self.saturation != "AP_WRAP"

    @property
    def rounds(self) -> bool:
        """Whether quantization rounds (anything but truncation)."""
        return self.rounding not in ("AP_TRN", "AP_TRN_ZERO")

    def __str__(self) -> str:
        return self.cpp or f"<{self.width},{self.integer}>"


def _array_type(text: str) -> tuple[FixedType, int]:
    """``nnet::array<ap_fixed<8,3>, 16*1>`` -> (element type, 16); a scalar type -> (type, 1)."""
    m = re.match(r"^\s*nnet::array\s*<\s*(.*)\s*,\s*([\d\s*+]+)>\s*$", text)
    if m:
        n = math.prod(int(t) for t in re.findall(r"\d+", m.group(2))) if "*" in m.group(2) else int(m.group(2))
        return FixedType.parse(m.group(1)), n
    return FixedType.parse(text), 1


# ------------------------------------------------------------------------------------------------------ graph
@dataclass
class Stream:
    """One ``hls::stream`` of the dataflow region (or a top-level port).

    Attributes:
        name: C++ variable name (``layer5_out``, ``image``).
        elem: scalar type of one element of the ``nnet::array``.
        n_elem: scalars per stream word.
        depth: FIFO depth from ``#pragma HLS STREAM`` (0 for top-level ports of the network function).
        producer: the layer that writes it (None for the network's input port).
        consumers: layers that read it.
        kind: ``internal``, ``port`` (argument of the network function) or ``axi`` (the AXI wrapper's FIFOs).
    """

    name: str
    elem: FixedType
    n_elem: int
    depth: int
    producer: str | None = None
    consumers: list[str] = field(default_factory=list)
    kind: str = "internal"

    @property
    def width_bits(self) -> int:
        """Bits of one stream word."""
        return self.elem.width * self.n_elem


@dataclass
class Layer:
    """One dataflow process (one ``nnet::`` call of the top function) with what its cost depends on.

    Attributes:
        name: hls4ml layer name (the comment after the call).
        op: ``conv2d``, ``dense``, ``batchnorm``, ``activation``, ``merge``, ``clone``, ``zeropad``,
            ``global_pool``, ``pool2d``, ``passthrough``, ``softmax`` or ``unknown``.
        function: the ``nnet::`` function called.
        inputs: names of the streams it reads.
        outputs: names of the streams it writes.
        attrs: integer geometry from its config struct (``in_height``, ``n_chan``, ``n_in``, ...).
        reuse_factor: the config's ``reuse_factor`` (after hls4ml's validation).
        strategy: ``resource`` or ``latency`` (conv and dense), None otherwise.
        types: named scalar types (``accum``, ``weight``, ``bias``, ``scale``, ``in``, ``in2``, ``out``).
        weights: weight arrays as the firmware loads them (``weight``, ``bias``, ``scale``), flat.
        n_zeros: zero weights, as the config counts them.
        detail: anything else (activation name, merge op, kernel).
    """

    name: str
    op: str
    function: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, int] = field(default_factory=dict)
    reuse_factor: int | None = None
    strategy: str | None = None
    types: dict[str, FixedType] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    n_zeros: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def mult_size(self) -> tuple[int, int] | None:
        """``(n_in, n_out)`` of the matrix multiply of a conv or dense layer."""
        a = self.attrs
        if self.op == "conv2d":
            return a["filt_height"] * a["filt_width"] * a["n_chan"], a["n_filt"]
        if self.op == "dense":
            return a["n_in"], a["n_out"]
        return None

    @property
    def tunable(self) -> bool:
        """Whether a ReuseFactor changes this layer's cost (conv, dense, batchnorm)."""
        return self.op in ("conv2d", "dense", "batchnorm")


@dataclass
class DesignGraph:
    """The dataflow network of one hls4ml project: layers in call order and the streams between them.

    Attributes:
        project: the hls4ml project name.
        layers: the network function's processes, in call order.
        streams: every stream by C++ name (internal FIFOs, the network's ports, the AXI wrapper's FIFOs).
        inputs: names of the network's input ports.
        outputs: names of its output ports.
        clock_mhz: the target clock (from the project's clock period, or the bundle's manifest).
        part: FPGA part the project was written for.
        hls_tool: ``vitis`` (Vitis HLS: aggregated FIFOs) or ``vivado_hls`` (split FIFOs).
        axi: the AXI wrapper's sizes (``n_in``, ``n_out``) when the project has one.
        source: where it was read from.
        keys: C++ stream name -> hls4ml output-variable name (to set depths on a ModelGraph), when known.
    """

    project: str
    layers: list[Layer]
    streams: dict[str, Stream]
    inputs: list[str]
    outputs: list[str]
    clock_mhz: float = 100.0
    part: str | None = None
    hls_tool: str = "vitis"
    axi: dict[str, int] = field(default_factory=dict)
    source: str = ""
    keys: dict[str, str] = field(default_factory=dict)

    def layer(self, name: str) -> Layer:
        """The layer called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise EstimateError(f"no layer {name!r} in {self.project}")

    def fifo_streams(self) -> list[Stream]:
        """Streams that are FIFOs (internal and the AXI wrapper's), in a stable order."""
        return [s for s in self.streams.values() if s.kind in ("internal", "axi")]


# ----------------------------------------------------------------------------------------------- C++ reading
_OPS = {
    "zeropad2d_cl": "zeropad",
    "conv_2d_cl": "conv2d",
    "pointwise_conv_2d_cl": "conv2d",
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
    kernel_h = fw / "nnet_utils" / "nnet_dense_resource.h"
    serial_casts = kernel_h.is_file() and SERIAL_CAST_MARKER in kernel_h.read_text()

    def stream_type(name: str) -> tuple[FixedType, int]:
        if name not in typedefs:
            raise EstimateError(f"type {name} is not declared in {fw / 'defines.h'}")
        return _array_type(typedefs[name])

    def scalar_type(name: str | None) -> FixedType | None:
        if not name:
            return None
        return FixedType.parse(typedefs.get(name, name))

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
            layer.detail["serial_result_cast"] = serial_casts  # hls_build.fuse.serialize_result_casts
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


# -------------------------------------------------------------------------------------------- hls4ml's rules
def valid_reuse_factors(n_in: int, n_out: int) -> list[int]:
    """hls4ml 1.3's valid ReuseFactors of an ``n_in x n_out`` matrix multiply (``FPGABackend``'s rule)."""
    out = []
    total = n_in * n_out
    for rf in range(1, total + 1):
        if total % rf:
            continue
        multfactor = min(n_in, rf)
        multiplier_limit = math.ceil(total / multfactor)
        ok = (multiplier_limit % n_out == 0) or (rf >= n_in)
        ok = ok and ((rf % n_in == 0) or (rf < n_in))
        if ok:
            out.append(rf)
    return out


def closest_reuse_factor(n_in: int, n_out: int, rf: int) -> int:
    """The ReuseFactor hls4ml uses when ``rf`` is not valid (the closest valid one, the smaller on a tie)."""
    valid = valid_reuse_factors(n_in, n_out)
    if rf in valid:
        return rf
    return min(valid, key=lambda v: (abs(v - rf), v))


def bram18_count(depth: int, width: int) -> int:
    """RAMB18 blocks for a memory of ``depth`` words of ``width`` bits (cheapest tiling of the RAMB18 shapes)."""
    if depth <= 0 or width <= 0:
        return 0
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in _BRAM18_SHAPES)


def dsp_family(part: str | None) -> str:
    """``DSP48E1`` (7-series, Zynq-7000) or ``DSP48E2`` (UltraScale(+))."""
    p = (part or "").lower()
    return "DSP48E1" if re.match(r"xc7", p) else "DSP48E2"


def dsp_per_product(a_bits: int, b_bits: int, family: str = "DSP48E1") -> int:
    """DSP slices of one ``a x b`` multiplication (DSP48E1 25x18, DSP48E2 27x18 signed multipliers)."""
    big, small = (25, 18) if family == "DSP48E1" else (27, 18)
    return min(
        math.ceil(a_bits / big) * math.ceil(b_bits / small),
        math.ceil(b_bits / big) * math.ceil(a_bits / small),
    )


# ------------------------------------------------------------------------------------------------- the model
@dataclass
class LayerCost:
    """Estimated cost of one dataflow process.

    Attributes:
        name: layer name.
        op: its kind.
        label: what the table prints after the name (class, RF, strategy).
        resources: ``{"BRAM_18K", "DSP", "FF", "LUT", "URAM"}``.
        cycles: cycles per image (the process's interval).
        fill_cycles: cycles from its first input to its first output (for the latency).
        detail: how the figures were obtained (multipliers, kernel, weight ROM shape, ...).
    """

    name: str
    op: str
    label: str
    resources: dict[str, float]
    cycles: int
    fill_cycles: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


#: Internal keys. Storage bits are counted exactly (registers, SRLs); multiply-accumulate logic (multipliers,
#: lane adders, adder trees, their pipeline registers) is scaled by the fitted ``lut_scale``/``ff_scale``; the
#: remaining logic (``LUT``/``FF``: element-wise operators, control) is not scaled.
_FF_STORAGE, _LUT_STORAGE, _FF_MAC, _LUT_MAC = "FF_storage", "LUT_storage", "FF_mac", "LUT_mac"
_PARTS = (_FF_STORAGE, _LUT_STORAGE, _FF_MAC, _LUT_MAC)


def _zero() -> dict[str, float]:
    return {r: 0.0 for r in (*RESOURCE_NAMES, *_PARTS)}


def _finish(r: dict[str, float], k: Coefficients) -> dict[str, float]:
    """Resource names only: LUT = other logic + lut_scale * MAC logic + storage (SRLs); FF likewise."""
    out = {name: r.get(name, 0.0) for name in RESOURCE_NAMES}
    out["LUT"] = r.get("LUT", 0.0) + k.lut_scale * r.get(_LUT_MAC, 0.0) + r.get(_LUT_STORAGE, 0.0)
    out["FF"] = r.get("FF", 0.0) + k.ff_scale * r.get(_FF_MAC, 0.0) + r.get(_FF_STORAGE, 0.0)
    return out


def _mults(n: int, a_bits: int, b_bits: int, k: Coefficients, family: str, constant: bool = False) -> dict[str, float]:
    """``n`` multipliers of ``a x b`` bits.

    DSP48 slices (their registers are inside the slice) or fabric with a product register; a constant operand
    halves the fabric cost.
    """
    r = _zero()
    if n <= 0:
        return r
    if min(a_bits, b_bits) >= k.dsp_min_operand_bits:
        r["DSP"] = n * dsp_per_product(a_bits, b_bits, family)
    else:
        r[_LUT_MAC] = n * k.lut_per_mult_bit * a_bits * b_bits * (0.5 if constant else 1.0)
        r[_FF_MAC] = n * (a_bits + b_bits)
    return r


def _add(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    keys = set(a) | set(b)
    return {r: a.get(r, 0.0) + b.get(r, 0.0) for r in keys}


def _matmul_cost(
    layer: Layer, n_in: int, n_out: int, rf: int, strategy: str, k: Coefficients, family: str
) -> tuple[dict[str, float], int, dict[str, Any]]:
    """A ``dense_resource`` / ``dense_latency`` kernel and its result conversion: resources, call cycles, detail."""
    wa = layer.types["in"].width
    ww = layer.types.get("weight", FixedType(16, 6, True)).width
    aw = layer.types.get("accum", FixedType(max(wa + ww, 16), 8, True)).width
    total = n_in * n_out
    r = _zero()
    detail: dict[str, Any] = {"n_in": n_in, "n_out": n_out, "reuse_factor": rf, "strategy": strategy}
    if strategy == "resource":
        rf_eff = min(rf, total)
        lanes = math.ceil(total / rf)
        r = _add(r, _mults(lanes, wa, ww, k, family))
        if rf > 1:
            rom_bram = bram18_count(rf_eff, lanes * ww)
            r["BRAM_18K"] += rom_bram
            r[_FF_STORAGE] += lanes * ww  # ROM output register
            detail["weight_rom"] = {"depth": rf_eff, "width_bits": lanes * ww, "BRAM_18K": rom_bram}
        mux_bits = n_in * wa + (n_out * aw if rf > n_in else 0)
        r[_LUT_MAC] += lanes * aw + mux_bits / 4.0  # lane adders + data/accumulator select
        r[_FF_MAC] += lanes * aw  # product-to-adder pipeline registers
        r[_FF_STORAGE] += n_out * aw  # accumulators
        cycles = rf_eff + k.mac_pipeline_depth
        detail.update(kernel="rf_leq_nin" if rf <= n_in else "rf_gt_nin_rem0", multipliers=lanes)
    else:
        nonzero = total - layer.n_zeros
        lanes = max(1, math.ceil(total / rf) - layer.n_zeros // rf)
        const = rf == 1
        r = _add(r, _mults(min(lanes, max(nonzero, 1)), wa, ww, k, family, constant=const))
        if not const:  # weights indexed by the pipelined loop: a ROM in LUTs
            r[_LUT_MAC] += math.ceil(rf / 64) * lanes * ww
        r[_LUT_MAC] += lanes * aw  # adder tree
        tree_levels = max(1, math.ceil(math.log2(max(n_in, 2))))
        r[_FF_MAC] += n_out * aw * math.ceil(tree_levels / 4)  # pipeline registers every few adder-tree levels
        cycles = rf + k.mac_pipeline_depth + tree_levels
        detail.update(kernel="latency", multipliers=lanes)
    detail["multiplier_kind"] = "DSP48" if min(wa, ww) >= k.dsp_min_operand_bits else "LUT"
    detail["product_bits"] = [wa, ww]
    cast_lut, cast_ff = _result_cast(layer, n_in, n_out, rf, strategy)
    r[_LUT_MAC] += cast_lut
    r[_FF_STORAGE] += cast_ff
    detail["result_conversion"] = "in the reuse loop" if cast_ff else "after the loop, all outputs at once"
    return r, cycles, detail


def _conv_cost(layer: Layer, rf: int, strategy: str, k: Coefficients, family: str) -> LayerCost:
    a = layer.attrs
    n_in, n_out = layer.mult_size  # type: ignore[misc]
    r, call_cycles, detail = _matmul_cost(layer, n_in, n_out, rf, strategy, k, family)
    wa = layer.types["in"].width
    fh, fw, c = a["filt_height"], a["filt_width"], a["n_chan"]
    in_w, in_px, out_px = a["in_width"], a["in_height"] * a["in_width"], a["out_height"] * a["out_width"]
    if fh > 1:  # ap_shift_reg line buffers -> SRL32
        r[_LUT_STORAGE] += (fh - 1) * c * wa * math.ceil(in_w / 32)
    r[_FF_STORAGE] += fh * fw * c * wa  # kernel window (registers); the output pack feeds the FIFO directly
    r["LUT"] += k.conv_control_lut + k.layer_control_lut
    r["FF"] += k.conv_control_ff + k.layer_control_ff
    if strategy == "resource":
        cycles = in_px * k.conv_cycles_per_input + out_px * call_cycles
        per_in = cycles / max(in_px, 1)
    else:
        cycles = in_px * rf + call_cycles
        per_in = rf
    first = ((fh - 1) * in_w + fw) * per_in + call_cycles
    label = f"Conv2D {fh}x{fw} RF {rf} {strategy.capitalize()}"
    return LayerCost(layer.name, layer.op, label, r, int(cycles), int(first), detail)


def _result_cast(layer: Layer, n_in: int, n_out: int, rf: int, strategy: str) -> tuple[float, float]:
    """LUTs and FFs of the accumulator -> result conversions of a conv/dense call.

    hls4ml converts all ``n_out`` at once: ``n_out`` converters, free when the result is the accumulator's own type
    and about 20 LUTs each when it rounds and clips (a fused ReLU's). In a project with in-loop result conversion
    (``hls_build.fuse.serialize_result_casts``) the fully serial Resource kernel (RF > n_in, a multiple of it)
    converts a rounding result in each multiplier lane as its last input arrives: one converter per lane, the
    enables of ``n_out`` result registers, no extra cycles.
    """
    acc, out = layer.types.get("accum"), layer.types.get("out")
    if acc is None or out is None:
        return 0.0, 0.0
    one = _cast_lut(acc, out)
    same = (acc.width, acc.integer, acc.signed, acc.rounding, acc.saturation) == (
        out.width, out.integer, out.signed, out.rounding, out.saturation
    )  # fmt: skip
    in_loop = layer.detail.get("serial_result_cast") and strategy == "resource" and rf > n_in and rf % n_in == 0
    if not in_loop or same:
        return n_out * one, 0.0
    lanes = math.ceil(n_in * n_out / rf)
    return lanes * one + n_out, float(n_out * out.width)


def _dense_cost(layer: Layer, rf: int, strategy: str, k: Coefficients, family: str) -> LayerCost:
    n_in, n_out = layer.mult_size  # type: ignore[misc]
    r, call_cycles, detail = _matmul_cost(layer, n_in, n_out, rf, strategy, k, family)
    r[_FF_STORAGE] += n_in * layer.types["in"].width  # the input vector
    r["LUT"] += k.layer_control_lut
    r["FF"] += k.layer_control_ff
    words_in = math.ceil(n_in / max(1, layer.attrs.get("in_elems", 1)))
    words_out = math.ceil(n_out / max(1, layer.attrs.get("out_elems", 1)))
    cycles = words_in + call_cycles + words_out
    label = f"Dense RF {rf} {strategy.capitalize()}"
    return LayerCost(layer.name, layer.op, label, r, int(cycles), int(cycles), detail)


def _bn_ii(n_in: int, rf: int) -> int:
    return max(1, n_in // math.ceil(n_in / max(rf, 1)))


def _batchnorm_cost(layer: Layer, rf: int, k: Coefficients, family: str) -> LayerCost:
    n_in = layer.attrs["n_in"]
    c = layer.attrs.get("in_elems") or layer.attrs.get("n_filt") or 1
    pixels = max(1, n_in // c)
    ii = _bn_ii(n_in, rf)
    wa, ws, wo = layer.types["in"].width, layer.types["scale"].width, layer.types["out"].width
    mults = math.ceil(c / ii)
    r = _mults(mults, wa, ws, k, family)
    r[_LUT_MAC] += mults * wo  # bias adders
    r[_FF_MAC] += mults * wo
    r["FF"] += c * wo  # output word register
    if ii > 1:  # shared multipliers: select data and scale per cycle
        r[_LUT_MAC] += mults * (wa + ws) * (min(ii, c) / 4.0)
    r["LUT"] += k.layer_control_lut
    r["FF"] += k.layer_control_ff
    cycles = pixels * ii + 4
    detail = {"reuse_factor": rf, "ii_per_pixel": ii, "multipliers": mults, "product_bits": [wa, ws],
              "multiplier_kind": "DSP48" if min(wa, ws) >= k.dsp_min_operand_bits else "LUT"}  # fmt: skip
    return LayerCost(layer.name, layer.op, f"BatchNorm RF {rf} (II {ii}/px)", r, cycles, ii + 4, detail)


def _cast_lut(t_in: FixedType, t_out: FixedType) -> float:
    """LUTs of one scalar conversion ``t_in -> t_out`` (rounding adder, saturation detect and mux)."""
    lut = 0.0
    frac_in, frac_out = t_in.width - t_in.integer, t_out.width - t_out.integer
    if t_out.rounds and frac_in > frac_out:
        lut += t_out.width + 2
    if t_out.saturating and t_in.integer > t_out.integer:
        lut += math.ceil((t_in.integer - t_out.integer + 1) / 6) + t_out.width
    return lut


def _elementwise_cost(layer: Layer, k: Coefficients) -> LayerCost:
    """Activation, merge, clone, zero padding, passthrough: one pipelined pass over the pixels."""
    t_out = layer.types.get("out") or layer.types["in"]
    t_in = layer.types.get("in") or t_out
    out_stream_elems = layer.attrs.get("out_elems") or layer.attrs.get("in_elems") or 1
    r = _zero()
    op = layer.op
    if op == "activation":
        n = layer.attrs.get("n_in", 0)
        act = layer.detail.get("activation", "")
        per = t_out.width + _cast_lut(t_in, t_out)  # zero/select mux + conversion
        if act not in ("relu", "linear"):
            r["BRAM_18K"] += 1  # lookup table of a non-linear activation
            per += 8
        chans = out_stream_elems or 1
        r["LUT"] += per * chans
        r["FF"] += t_out.width * chans
        label = f"Activation {act}"
        px = n // max(chans, 1)
    elif op == "merge":
        t2 = layer.types.get("in2", t_in)
        chans = out_stream_elems or 1
        # ``out = in1 + in2``: C++ adds in the full-precision sum type, then casts once to the result type (a fused
        # ReLU's rounding and clipping happen in that cast).
        frac = max(t_in.width - t_in.integer, t2.width - t2.integer)
        # An unsigned input added to a signed one needs a sign bit more.
        i1 = t_in.integer + int(not t_in.signed and t2.signed)
        i2 = t2.integer + int(not t2.signed and t_in.signed)
        integer = max(i1, i2)
        t_sum = FixedType(integer + 1 + frac, integer + 1, t_in.signed or t2.signed)
        r["LUT"] += chans * (t_sum.width + _cast_lut(t_sum, t_out))
        r["FF"] += chans * t_out.width
        n = layer.attrs.get("n_elem", 0)
        px = n // max(chans, 1)
        label = f"Merge {layer.detail.get('merge_op', '')}"
    elif op == "clone":
        chans = out_stream_elems or 1
        r["FF"] += chans * t_out.width
        px = layer.attrs.get("n_elem", 0) // max(chans, 1)
        label = "Clone"
    elif op == "zeropad":
        chans = layer.attrs.get("n_chan", 1)
        r["LUT"] += chans * t_out.width
        r["FF"] += chans * t_out.width
        px = layer.attrs.get("out_height", 1) * layer.attrs.get("out_width", 1)
        label = "ZeroPadding2D"
    else:
        chans = out_stream_elems or 1
        r["FF"] += chans * t_out.width
        px = layer.attrs.get("n_elem", 0) // max(chans, 1)
        label = layer.function
    r["LUT"] += k.layer_control_lut
    r["FF"] += k.layer_control_ff
    return LayerCost(layer.name, op, label, r, int(px + 3), 3, {})


def _pool_cost(layer: Layer, k: Coefficients) -> LayerCost:
    a = layer.attrs
    t_in, t_out = layer.types["in"], layer.types["out"]
    acc = layer.types.get("accum", t_out)
    c = a.get("n_filt", 1)
    r = _zero()
    if layer.op == "global_pool":
        r["LUT"] += c * acc.width  # adders
        r[_FF_STORAGE] += c * acc.width  # accumulators
        px = a.get("in_height", 1) * a.get("in_width", 1)
        if "Average" in str(layer.detail.get("pool_op")) and px & (px - 1):
            r["LUT"] += c * acc.width * 4  # division by a non power of two
        cycles, fill, label = px + c + 4, px + 4, "GlobalPooling2D"
    else:
        ph, pw, in_w = a.get("pool_height", 2), a.get("pool_width", 2), a.get("in_width", 1)
        r[_LUT_STORAGE] += (ph - 1) * c * t_in.width * math.ceil(in_w / 32)  # line buffer
        r[_FF_STORAGE] += ph * pw * c * t_in.width
        r["LUT"] += c * (ph * pw - 1) * t_in.width  # comparators / adders
        px = a.get("in_height", 1) * in_w
        cycles, fill, label = px + 4, (ph - 1) * in_w + pw + 4, f"Pooling2D {ph}x{pw}"
    r["LUT"] += k.layer_control_lut + k.conv_control_lut / 2
    r["FF"] += k.layer_control_ff + k.conv_control_ff / 2
    return LayerCost(layer.name, layer.op, label, r, int(cycles), int(fill), {})


def _softmax_cost(layer: Layer, k: Coefficients, family: str) -> LayerCost:
    n = layer.attrs.get("n_in", 10)
    t_in = layer.types["in"]
    r = _mults(n, 18, 18, k, family)  # exp(x) * 1/sum
    r["BRAM_18K"] += 2  # exp and inverse tables (1024 x 18 each)
    r["LUT"] += n * t_in.width * 2 + k.layer_control_lut
    r["FF"] += n * 18 * 2 + k.layer_control_ff
    return LayerCost(layer.name, layer.op, "Softmax", r, n + 12, n + 12, {})


def fifo_cost(stream: Stream, hls_tool: str, k: Coefficients) -> dict[str, float]:
    """Resources of one stream's FIFO(s) (Vitis: one aggregated FIFO; Vivado HLS: one per array element).

    Storage per bit of width, after Vivado synthesis: depth 1 is a register (1 FF); depth 2 two registers and a
    2:1 read mux (2 FF, 0.5 LUT: Vivado infers SRLs only from 3 stages on, ``synth_design -shreg_min_size 3``);
    depth 3 to 32 one SRL16E/SRLC32E LUT (1 LUT); deeper SRLs one LUT per 32 words; BRAM FIFOs the RAMB18 tiling.
    The published Vivado 2020.1 synthesis of the hls4ml-tutorial pruned CNN has exactly as many SRL16E (2816) as
    its depth-4 and depth-16 FIFO bits plus its line-buffer bits (see calibration.json).
    """
    r = _zero()
    if stream.depth <= 0:
        return r
    fifos = [stream.width_bits] if hls_tool == "vitis" else [stream.elem.width] * stream.n_elem
    d = stream.depth
    ptr = max(1, math.ceil(math.log2(d + 1)))
    for width in fifos:
        if hls_tool == "vitis":
            srl = d <= k.fifo_srl_max_depth or d * width <= k.fifo_srl_max_bits
        else:
            srl = d <= k.vivado_hls_fifo_srl_max_depth
        if not srl:
            r["BRAM_18K"] += bram18_count(d, width)
            r["LUT"] += 2 * ptr + 12
            r["FF"] += 2 * ptr + 16
        elif d == 1:
            r[_FF_STORAGE] += width
            r["FF"] += 2
            r["LUT"] += 2
        elif d == 2:
            r[_FF_STORAGE] += 2 * width
            r[_LUT_STORAGE] += 0.5 * width
            r["FF"] += 3
            r["LUT"] += 3
        else:
            r[_LUT_STORAGE] += width * math.ceil(d / 32)
            r["LUT"] += ptr + 4
            r["FF"] += ptr + 4
    return r


# ---------------------------------------------------------------------------------------------- the estimate
@dataclass
class Estimate:
    """The ESTIMATE of a design: per-layer rows, FIFOs, totals, interval and latency.

    Attributes:
        project: the hls4ml project.
        board: the board it is compared with (None for a bare estimate).
        clock_mhz: the clock used for times and rates.
        rows: one :class:`LayerCost` per dataflow process (AXI wrapper loops included when present).
        fifo: resources of all stream FIFOs together.
        fifo_detail: per stream: depth, width, storage, resources.
        interval_cycles: the dataflow pipeline's initiation interval (its slowest process).
        bottleneck: the slowest process.
        latency_cycles: approximate cycles from the first input word to the last output word of one image.
        layer_config: the ReuseFactor/Strategy each conv/dense/batchnorm layer was estimated with.
        fifo_depths: the FIFO depths it was estimated with (C++ stream name -> depth).
        warnings: precision warnings (:func:`check_precision`).
        summary: what the model was calibrated against and its typical error.
        parts: LUT and FF before the fitted scales, split into ``mac`` (multiply-accumulate logic, scaled),
            ``other`` (unscaled logic) and ``storage`` (counted exactly: registers, SRLs), for calibration.
    """

    project: str
    board: BoardSpec | None
    clock_mhz: float
    rows: list[LayerCost]
    fifo: dict[str, float]
    fifo_detail: list[dict[str, Any]]
    interval_cycles: int
    bottleneck: str
    latency_cycles: int
    layer_config: dict[str, dict[str, Any]]
    fifo_depths: dict[str, int]
    warnings: list[PrecisionWarning] = field(default_factory=list)
    summary: str = ""
    parts: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, int]:
        """Total resources (rounded up to whole units)."""
        tot = _zero()
        for row in self.rows:
            tot = _add(tot, row.resources)
        tot = _add(tot, self.fifo)
        return {r: int(math.ceil(tot.get(r, 0.0) - 1e-9)) for r in RESOURCE_NAMES}

    def totals_by_op(self) -> dict[str, dict[str, float]]:
        """Resources summed per kind of layer: where a design's budget goes.

        Returns:
            ``op`` (``conv2d``, ``activation``, ...; ``fifo`` for the streams) -> resources and ``count``.
        """
        out: dict[str, dict[str, float]] = {}
        for row in self.rows:
            agg = out.setdefault(row.op, {**_zero(), "count": 0})
            for k in RESOURCE_NAMES:
                agg[k] += row.resources.get(k, 0.0)
            agg["count"] += 1
        out["fifo"] = {**{k: self.fifo.get(k, 0.0) for k in RESOURCE_NAMES}, "count": len(self.fifo_detail)}
        return out

    @property
    def available(self) -> dict[str, int] | None:
        """The board's resources (None without a board)."""
        return self.board.budget.as_dict() if self.board else None

    def utilization(self) -> dict[str, float | None]:
        """Percent of the board per resource (None where the board has none of it)."""
        avail = self.available or {}
        return {r: (100.0 * self.totals[r] / avail[r] if avail.get(r) else None) for r in RESOURCE_NAMES}

    def fits(self, margin: float = 0.0) -> bool:
        """Whether every resource stays within ``(1 - margin)`` of the board's."""
        if self.board is None:
            raise EstimateError("no board to fit")
        avail = self.board.budget.as_dict()
        return all(self.totals[r] <= (1.0 - margin) * avail[r] for r in RESOURCE_NAMES)

    @property
    def images_per_s(self) -> float:
        """Modeled throughput: clock / interval (the accelerator alone, no DMA or driver overhead)."""
        return self.clock_mhz * 1e6 / max(self.interval_cycles, 1)

    @property
    def latency_ms(self) -> float:
        """Approximate latency of one image in ms at the clock."""
        return self.latency_cycles / (self.clock_mhz * 1e3)

    @property
    def interval_ms(self) -> float:
        """The initiation interval in ms at the clock."""
        return self.interval_cycles / (self.clock_mhz * 1e3)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (per-layer rows included)."""
        return {
            "kind": "estimated",
            "project": self.project,
            "board": self.board.name if self.board else None,
            "clock_mhz": self.clock_mhz,
            "totals": self.totals,
            "available": self.available,
            "utilization_pct": self.utilization() if self.board else None,
            "interval_cycles": self.interval_cycles,
            "bottleneck": self.bottleneck,
            "latency_cycles": self.latency_cycles,
            "latency_ms": self.latency_ms,
            "images_per_s": self.images_per_s,
            "layers": [
                {
                    "name": r.name,
                    "op": r.op,
                    "label": r.label,
                    "cycles": r.cycles,
                    "resources": {k: round(v, 1) for k, v in r.resources.items()},
                    "detail": r.detail,
                }
                for r in self.rows
            ],  # fmt: skip
            "fifo": {k: round(v, 1) for k, v in self.fifo.items()},
            "fifos": self.fifo_detail,
            "layer_config": self.layer_config,
            "fifo_depths": self.fifo_depths,
            "precision_warnings": [w.message for w in self.warnings],
            "calibration": self.summary,
        }

    def to_manifest_entry(self) -> dict[str, Any]:
        """The manifest ``resources`` entry: ``kind: estimated`` (this model, before any synthesis)."""
        return {
            "kind": "estimated",
            "stage": "pre_synthesis",
            "source": "hls_build.estimate (analytical model of the hls4ml firmware; see hls_build/README.md)",
            "scope": "the accelerator IP alone, expected post-synthesis usage (no AXI DMA / interconnect)",
            **self.totals,
            "available": self.available,
            "utilization_pct": {k: (round(v, 1) if v is not None else None) for k, v in self.utilization().items()}
            if self.board
            else None,
            "interval_cycles": self.interval_cycles,
            "latency_cycles": self.latency_cycles,
            "clock_mhz": self.clock_mhz,
            "images_per_s": round(self.images_per_s, 1),
            "latency_ms": round(self.latency_ms, 3),
            "bottleneck": self.bottleneck,
            "layer_config": self.layer_config,
            "calibration": self.summary,
        }


def _layer_setting(layer: Layer, overrides: Mapping[str, Mapping[str, Any]]) -> tuple[int, str | None]:
    """The (ReuseFactor, strategy) a layer is estimated with.

    Without an override, the firmware's own values (as hls4ml wrote them, even an RF it did not validate, e.g. on a
    PointwiseConv2D). With one, a Resource ReuseFactor is made valid the way hls4ml does for Conv2D/Dense.
    """
    rf = int(layer.reuse_factor or 1)
    strategy = layer.strategy
    o = overrides.get(layer.name)
    if not o:
        return rf, strategy
    if "Strategy" in o and layer.op in ("conv2d", "dense"):
        strategy = str(o["Strategy"]).lower()
        if strategy not in ("resource", "latency"):
            raise EstimateError(f"{layer.name}: strategy {o['Strategy']!r} is not Resource or Latency")
    if "ReuseFactor" in o:
        rf = int(o["ReuseFactor"])
        if rf < 1:
            raise EstimateError(f"{layer.name}: ReuseFactor {rf} < 1")
        if layer.op in ("conv2d", "dense") and strategy == "resource":
            n_in, n_out = layer.mult_size  # type: ignore[misc]
            rf = closest_reuse_factor(n_in, n_out, rf)
    return rf, strategy


def estimate_design(
    graph: DesignGraph,
    board: str | BoardSpec | None = None,
    layer_config: Mapping[str, Mapping[str, Any]] | None = None,
    fifo_depths: Mapping[str, int] | None = None,
    coefficients: Coefficients | None = None,
    clock_mhz: float | None = None,
    check: bool = True,
) -> Estimate:
    """ESTIMATE the resources, interval and latency of ``graph``, optionally with other settings.

    Args:
        graph: the design (:func:`graph_from_project` and friends).
        board: a board name or spec to compare with (``UnknownBoardError`` for an unknown name).
        layer_config: per-layer ``{"ReuseFactor": rf, "Strategy": "Resource"|"Latency"}`` replacing the
            firmware's (a Resource ReuseFactor is made valid the way hls4ml does).
        fifo_depths: C++ stream name -> depth, replacing the firmware's depths.
        coefficients: the model's constants (default: ``calibration.json``).
        clock_mhz: clock for times and rates (default: the design's).
        check: run :func:`check_precision` and keep its warnings (logged as warnings).

    Returns:
        The :class:`Estimate`.
    """
    spec = board_spec(board) if isinstance(board, str) else board
    k = coefficients or load_coefficients()
    family = dsp_family(spec.part if spec else graph.part)
    overrides = dict(layer_config or {})
    unknown = set(overrides) - {layer.name for layer in graph.layers}
    if unknown:
        raise EstimateError(f"layer_config names unknown layers: {sorted(unknown)}")
    rows: list[LayerCost] = []
    used_config: dict[str, dict[str, Any]] = {}
    for layer in graph.layers:
        rf, strategy = _layer_setting(layer, overrides)
        if layer.op == "conv2d":
            row = _conv_cost(layer, rf, strategy or "resource", k, family)
        elif layer.op == "dense":
            row = _dense_cost(layer, rf, strategy or "resource", k, family)
        elif layer.op == "batchnorm":
            row = _batchnorm_cost(layer, rf, k, family)
        elif layer.op in ("global_pool", "pool2d"):
            row = _pool_cost(layer, k)
        elif layer.op == "softmax":
            row = _softmax_cost(layer, k, family)
        else:
            row = _elementwise_cost(layer, k)
        if layer.tunable:
            used_config[layer.name] = {"ReuseFactor": rf}
            if layer.op in ("conv2d", "dense"):
                used_config[layer.name]["Strategy"] = (strategy or "resource").capitalize()
        rows.append(row)
    if graph.axi:
        in_s, out_s = graph.streams.get("in_local"), graph.streams.get("out_local")
        wrapper = _zero()
        wrapper["LUT"] += (
            2 * k.layer_control_lut + (in_s.width_bits if in_s else 0) + (out_s.width_bits if out_s else 0)
        )
        wrapper["FF"] += 2 * k.layer_control_ff + (in_s.width_bits if in_s else 0) + (out_s.width_bits if out_s else 0)
        n_in, n_out = graph.axi.get("n_in", 0), graph.axi.get("n_out", 0)
        rows.insert(0, LayerCost("axi_in", "axi", "AXI-Stream input loop", wrapper, n_in + 2, 2))
        rows.append(LayerCost("axi_out", "axi", "AXI-Stream output loop", _zero(), n_out + 2, 2))
    depths = {s.name: s.depth for s in graph.fifo_streams()}
    for name, d in (fifo_depths or {}).items():
        if name not in graph.streams:
            raise EstimateError(f"fifo_depths names unknown stream {name!r}")
        if int(d) < 1:
            raise EstimateError(f"FIFO depth of {name} must be >= 1 (got {d})")
        depths[name] = int(d)
    fifo_total = _zero()
    fifo_detail = []
    for s in graph.fifo_streams():
        sized = replace(s, depth=depths[s.name])
        cost = fifo_cost(sized, graph.hls_tool, k)
        fifo_total = _add(fifo_total, cost)
        kind = "BRAM" if cost["BRAM_18K"] else ("registers" if sized.depth <= 2 else "SRL")
        fifo_detail.append({
            "stream": s.name, "key": graph.keys.get(s.name), "depth": sized.depth, "width_bits": s.width_bits,
            "storage": kind, **{r: round(v, 1) for r, v in _finish(cost, k).items()},
        })  # fmt: skip
    raw_parts = {r: {"mac": 0.0, "other": 0.0, "storage": 0.0} for r in ("LUT", "FF")}
    for res in [row.resources for row in rows] + [fifo_total]:
        for r, mac, storage in (("LUT", _LUT_MAC, _LUT_STORAGE), ("FF", _FF_MAC, _FF_STORAGE)):
            raw_parts[r]["mac"] += res.get(mac, 0.0)
            raw_parts[r]["other"] += res.get(r, 0.0)
            raw_parts[r]["storage"] += res.get(storage, 0.0)
    for row in rows:
        row.resources = _finish(row.resources, k)
    fifo_total = _finish(fifo_total, k)
    slowest = max(rows, key=lambda r: r.cycles)
    latency = slowest.cycles + sum(r.fill_cycles for r in rows if r is not slowest)
    est = Estimate(
        project=graph.project,
        board=spec,
        clock_mhz=float(clock_mhz or graph.clock_mhz),
        rows=rows,
        fifo=fifo_total,
        fifo_detail=fifo_detail,
        interval_cycles=int(slowest.cycles),
        bottleneck=slowest.name,
        latency_cycles=int(latency),
        layer_config=used_config,
        fifo_depths=depths,
        summary=calibration_summary(),
        parts=raw_parts,
    )
    if check:
        est.warnings = check_precision(graph)
        for w in est.warnings:
            log.warning("%s", w.message)
    return est


# ------------------------------------------------------------------------------------------- precision check
@dataclass(frozen=True)
class PrecisionWarning:
    """A type that static value bounds say can overflow.

    Attributes:
        layer: the layer.
        what: ``result`` or ``accumulator``.
        type: the C++ type.
        type_range: what the type holds.
        bound: the static bound of the values it may receive.
        message: the warning text.
    """

    layer: str
    what: str
    type: str
    type_range: tuple[float, float]
    bound: tuple[float, float]
    message: str


def _interval_matmul(layer: Layer, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-output bounds of ``sum_i w[i, j] * x_i`` for ``x_i in [lo, hi]`` (without the bias).

    The flat C weight array is placed at its (input, output) positions by replaying the kernel's loops
    (:func:`hls_build.firmware_graph.kernel_index_map`), as the C-simulation reads it. For a kernel whose loops are
    not replayed, a layout-free bound is used for every output: the ``n_in`` largest ``|w|`` times ``max |x|``.
    """
    from hls_build.firmware_graph import kernel_index_map

    n_in, n_out = layer.mult_size  # type: ignore[misc]
    w = layer.weights["weight"]
    kernel = layer.detail.get("kernel") or ("DenseLatency" if layer.strategy == "latency" else None)
    try:
        if kernel is None or w.size != n_in * n_out:
            raise FirmwareGraphError("layout unknown")
        _, out_idx = kernel_index_map(kernel, n_in, n_out, int(layer.reuse_factor or 1))
    except FirmwareGraphError:
        top = np.sort(np.abs(w))[::-1][:n_in].sum() * max(abs(lo), abs(hi))
        return np.full(n_out, -top), np.full(n_out, top)
    a, b = w * lo, w * hi
    return (
        np.bincount(out_idx, weights=np.minimum(a, b), minlength=n_out),
        np.bincount(out_idx, weights=np.maximum(a, b), minlength=n_out),
    )


def check_precision(graph: DesignGraph) -> list[PrecisionWarning]:
    """Warn where a wrapping type can overflow, by static bounds from the weights and the input type's range.

    Interval arithmetic from the input type's range through every layer: convolution and dense outputs from
    ``sum |w| * |x| + |b|`` per output channel (the accumulator sees the same bound), batch normalization from its
    scale and bias, ReLU clips below at 0, Add adds bounds, averaging keeps them (its accumulator holds the sum).
    Saturating types clip by design (QKeras quantizers do too) and are not reported; a wrapping (``AP_WRAP``)
    type whose range the bound exceeds is. The bound is an upper bound: a calibration pass can only produce less.

    Returns:
        One :class:`PrecisionWarning` per offending type (also usable as log messages).
    """
    bounds: dict[str, tuple[float, float]] = {}
    for name in graph.inputs:
        t = graph.streams[name].elem
        bounds[name] = (t.lo, t.hi)
    warnings: list[PrecisionWarning] = []

    def flag(layer: Layer, what: str, t: FixedType, lo: float, hi: float) -> tuple[float, float]:
        if lo >= t.lo - 1e-12 and hi <= t.hi + 1e-12:
            return lo, hi
        if t.saturating:
            return max(lo, t.lo), min(hi, t.hi)
        msg = (
            f"precision too narrow: layer {layer.name} {what} type {t} holds [{t.lo:g}, {t.hi:g}] but static "
            f"bounds say its values may reach [{lo:.6g}, {hi:.6g}]; {t} wraps on overflow (widen its integer "
            "bits or make it saturate)"
        )
        warnings.append(PrecisionWarning(layer.name, what, str(t), (t.lo, t.hi), (lo, hi), msg))
        return max(lo, t.lo), min(hi, t.hi)

    for layer in graph.layers:
        ins = [bounds.get(s, (-math.inf, math.inf)) for s in layer.inputs]
        lo, hi = ins[0] if ins else (-math.inf, math.inf)
        out_t = layer.types.get("out")
        if layer.op in ("conv2d", "dense") and "weight" in layer.weights:
            n_out = layer.mult_size[1]  # type: ignore[index]
            los, his = _interval_matmul(layer, lo, hi)
            b = layer.weights.get("bias")
            if b is not None and b.size == n_out:
                los, his = los + b, his + b
            lo, hi = float(np.min(los)), float(np.max(his))
            if "accum" in layer.types:
                flag(layer, "accumulator", layer.types["accum"], lo, hi)
        elif layer.op == "batchnorm" and "scale" in layer.weights:
            s, b = layer.weights["scale"], layer.weights.get("bias", np.zeros_like(layer.weights["scale"]))
            cand = np.stack([s * lo, s * hi])
            lo, hi = float(np.min(cand.min(axis=0) + b)), float(np.max(cand.max(axis=0) + b))
        elif layer.op == "merge" and len(ins) == 2:
            (l1, h1), (l2, h2) = ins
            op = layer.detail.get("merge_op", "add")
            if op == "add":
                lo, hi = l1 + l2, h1 + h2
            elif op == "subtract":
                lo, hi = l1 - h2, h1 - l2
            elif op == "multiply":
                c = [l1 * l2, l1 * h2, h1 * l2, h1 * h2]
                lo, hi = min(c), max(c)
            else:
                lo, hi = min(l1, l2), max(h1, h2)
        elif layer.op == "activation" and layer.detail.get("activation") == "relu":
            lo, hi = max(lo, 0.0), max(hi, 0.0)
        elif layer.op == "global_pool":
            px = layer.attrs.get("in_height", 1) * layer.attrs.get("in_width", 1)
            if "accum" in layer.types and "Average" in str(layer.detail.get("pool_op", "Average")):
                flag(layer, "accumulator", layer.types["accum"], px * min(lo, 0.0), px * max(hi, 0.0))
        elif layer.op == "zeropad":
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        elif layer.op in ("softmax",) or (layer.op == "activation" and layer.detail.get("activation") != "linear"):
            lo, hi = (out_t.lo, out_t.hi) if out_t else (lo, hi)
        if out_t is not None and math.isfinite(lo) and math.isfinite(hi):
            lo, hi = flag(layer, "result", out_t, lo, hi)
        for s in layer.outputs:
            bounds[s] = (lo, hi)
    return warnings


# ------------------------------------------------------------------------------------------------------ table
def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{int(math.ceil(v - 1e-9)):d}"


def format_table(est: Estimate, title: str | None = None) -> str:
    """The estimate as an HLS-report-style table.

    Columns Name / BRAM_18K / DSP48E / FF / LUT / URAM (and cycles per image), one row per layer, the FIFOs, Total,
    Available and Utilization (%), under an ESTIMATE banner, followed by interval, latency and throughput.
    """
    label = title or f"ESTIMATE (pre-synthesis, {est.summary})"
    name_w = max(28, *(len(f"{r.name} ({r.label})") for r in est.rows)) + 1
    cols = (*TABLE_COLUMNS, "Cycles/img")
    widths = (9, 7, 9, 9, 6, 11)
    sep = "+" + "-" * name_w + "+" + "+".join("-" * w for w in widths) + "+"

    def line(name: str, values: Iterable[str]) -> str:
        cells = "|".join(v.rjust(w) for v, w in zip(values, widths))
        return f"|{name.ljust(name_w)}|{cells}|"

    out = [f"== {label}", f"== project {est.project}; clock {est.clock_mhz:g} MHz"]
    if est.board:
        out[-1] += f"; board {est.board.name} ({est.board.part})"
    out += [sep, line("Name".center(name_w), [c.center(w) for c, w in zip(cols, widths)]), sep]
    for r in est.rows:
        res = r.resources
        out.append(line(f"{r.name} ({r.label})", [*(_fmt(res[k]) for k in RESOURCE_NAMES), str(r.cycles)]))
    n_fifo = len(est.fifo_detail)
    n_bram = sum(1 for f in est.fifo_detail if f["storage"] == "BRAM")
    out.append(line(f"FIFO ({n_fifo} streams, {n_bram} in BRAM)", [*(_fmt(est.fifo[k]) for k in RESOURCE_NAMES), ""]))
    out.append(sep)
    tot = est.totals
    out.append(line("Total", [*(str(tot[k]) for k in RESOURCE_NAMES), str(est.interval_cycles)]))
    if est.board:
        avail = est.board.budget.as_dict()
        out.append(sep)
        out.append(line("Available", [*(str(avail[k]) for k in RESOURCE_NAMES), ""]))
        out.append(sep)
        util = est.utilization()
        out.append(
            line("Utilization (%)", [*("-" if util[k] is None else f"{util[k]:.0f}" for k in RESOURCE_NAMES), ""])
        )
    out.append(sep)
    out.append(
        f"Interval: {est.interval_cycles} cycles = {est.interval_ms:.3f} ms at {est.clock_mhz:g} MHz "
        f"(bottleneck {est.bottleneck}) -> {est.images_per_s:.1f} images/s; latency ~{est.latency_cycles} cycles "
        f"= {est.latency_ms:.3f} ms (ESTIMATE; accelerator only, without DMA and driver time)"
    )
    by_op = sorted(est.totals_by_op().items(), key=lambda kv: -(kv[1]["LUT"] + kv[1]["FF"]))
    out.append(
        "By kind of layer (count: FF / LUT): "
        + "; ".join(f"{op} ({int(v['count'])}): {v['FF']:.0f} / {v['LUT']:.0f}" for op, v in by_op)
    )
    if est.board and not est.fits():
        over = [k for k in RESOURCE_NAMES if tot[k] > est.board.budget.as_dict()[k]]
        out.append(f"DOES NOT FIT {est.board.name} by the estimate: {', '.join(over)} over budget")
    for w in est.warnings:
        out.append(f"WARNING: {w.message}")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------- calibration
def build_calibration_graph(design: Mapping[str, Any], work_dir: str | Path) -> DesignGraph:
    """Rebuild a published design from its description in ``calibration.json`` and read its firmware.

    The description names a plain Keras model (``layers``: ``conv2d`` with ``filters``/``kernel``/``strides``/
    ``padding``, ``relu``, ``maxpool``, ``flatten``, ``dense`` with ``units``; ``nonzero`` keeps exactly that many
    non-zero weights, at seeded random positions, for pruned designs), the hls4ml settings (``precision`` for every
    type, ``strategy``, ``reuse_factor``, ``backend``, ``part`` or ``board``, ``clock_period_ns``) and the HLS tool
    (``hls_tool``). Needs TensorFlow and hls4ml (host environment).
    """
    # isort: off
    from training.keras_compat import keras  # first: selects tf-keras for hls4ml
    import hls4ml

    # isort: on

    rng = np.random.default_rng(int(design.get("seed", 0)))
    layers_api = keras.layers
    inp = layers_api.Input(tuple(design["input_shape"]), name="input_image")
    x = inp
    nonzero: dict[str, int] = {}
    for i, spec in enumerate(design["layers"]):
        kind, name = spec["type"], spec.get("name", f"{spec['type']}_{i}")
        if kind == "conv2d":
            x = layers_api.Conv2D(spec["filters"], spec["kernel"], strides=spec.get("strides", 1),
                                  padding=spec.get("padding", "valid"), name=name)(x)  # fmt: skip
        elif kind == "dense":
            x = layers_api.Dense(spec["units"], name=name)(x)
        elif kind == "relu":
            x = layers_api.Activation("relu", name=name)(x)
        elif kind == "maxpool":
            x = layers_api.MaxPooling2D(spec.get("size", 2), name=name)(x)
        elif kind == "flatten":
            x = layers_api.Flatten(name=name)(x)
        else:
            raise EstimateError(f"calibration design layer type {kind!r} is not supported")
        if "nonzero" in spec:
            nonzero[name] = int(spec["nonzero"])
    model = keras.Model(inp, x)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        w, b = weights
        flat = rng.uniform(0.1, 0.9, w.size) * rng.choice([-1.0, 1.0], w.size)
        if layer.name in nonzero:
            keep = rng.choice(w.size, nonzero[layer.name], replace=False)
            mask = np.zeros(w.size, bool)
            mask[keep] = True
            flat[~mask] = 0.0
        layer.set_weights([flat.reshape(w.shape), rng.uniform(-0.5, 0.5, b.shape)])
    backend = design.get("backend", "Vivado")
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend,
                                               default_precision=design["precision"])  # fmt: skip
    cfg["Model"]["Strategy"] = design["strategy"]
    cfg["Model"]["ReuseFactor"] = design["reuse_factor"]
    for entry in cfg["LayerName"].values():
        entry["Precision"] = design["precision"]
        entry["ReuseFactor"] = design["reuse_factor"]
        entry["Strategy"] = design["strategy"]
    out_dir = Path(work_dir) / design.get("id", "design")
    kwargs: dict[str, Any] = {"board": design["board"]} if "board" in design else {"part": design["part"]}
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=str(out_dir), backend=backend, io_type=design.get("io_type", "io_stream"),
        clock_period=design["clock_period_ns"], **kwargs,
    )  # fmt: skip
    hls_model.write()
    project = hls_model.config.get_project_name()
    clock = 1000.0 / design["clock_period_ns"]
    return graph_from_project(out_dir, project, clock_mhz=clock, part=design.get("part"),
                              hls_tool=design.get("hls_tool", "vitis"))  # fmt: skip


def _predict(parts: Mapping[str, float], scale: float) -> float:
    """LUT or FF of a calibration point from its stored parts and a MAC scale."""
    return parts["storage"] + parts["other"] + scale * parts["mac"]


def _pct(pred: float, ref: float) -> float:
    return round(100.0 * (pred - ref) / ref, 1) if ref else 0.0


def calibration_errors(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-resource errors of the calibrated model on every point of ``calibration.json`` (from stored numbers).

    For each point with a ``model`` block: ``predicted = storage + scale * logic`` (LUT, FF) with the stored
    coefficients, BRAM/DSP/interval as stored, compared with the point's ``target``. Returns
    ``{point_id: {resource: percent error}}`` (positive = the estimate is higher).
    """
    coeff = data["model"]["coefficients"]
    out: dict[str, dict[str, Any]] = {}
    for point in data["points"]:
        model, target = point.get("model"), point.get("target")
        if not model or not target:
            continue
        errs: dict[str, Any] = {}
        for res, scale in (("LUT", coeff["lut_scale"]), ("FF", coeff["ff_scale"])):
            if res in target:
                errs[res] = _pct(_predict(model[res], scale), target[res])
                errs[f"{res}_before_fit"] = _pct(_predict(model[res], 1.0), target[res])
        for res in ("BRAM_18K", "DSP", "interval_cycles", "images_per_s"):
            if res in target and res in model:
                errs[res] = _pct(model[res], target[res])
        out[point["id"]] = errs
    return out


def calibrate(path: str | Path | None = None, work_dir: str | Path | None = None, write: bool = False) -> dict:
    """Rebuild every calibration design, re-fit ``lut_scale``/``ff_scale`` and recompute the errors.

    The scales of the multiply-accumulate logic are fitted on the points marked ``"use": "fit"`` (least squares
    on the relative error: ``scale = sum(mac*(target-fixed)/target^2) / sum(mac^2/target^2)`` with ``fixed =
    storage + other``); with several fit points the leave-one-out error is computed too. BRAM and DSP have no
    fitted factor.

    Args:
        path: the calibration file (default ``hls_build/calibration.json``).
        work_dir: scratch folder for the hls4ml projects (default: a temporary folder).
        write: write the refreshed file back.

    Returns:
        The refreshed calibration data.
    """
    import tempfile

    path = Path(path) if path is not None else CALIBRATION_FILE
    data = json.loads(path.read_text())
    raw_k = replace(load_coefficients(path), lut_scale=1.0, ff_scale=1.0)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for point in data["points"]:
            design = point.get("design")
            if not design:
                continue
            graph = build_calibration_graph({**design, "id": point["id"]}, tmp)
            est = estimate_design(graph, None, coefficients=raw_k, check=False)
            point["model"] = {
                "LUT": {k: round(v, 1) for k, v in est.parts["LUT"].items()},
                "FF": {k: round(v, 1) for k, v in est.parts["FF"].items()},
                "BRAM_18K": est.totals["BRAM_18K"],
                "DSP": est.totals["DSP"],
                "interval_cycles": est.interval_cycles,
                "images_per_s": round(est.images_per_s, 1),
            }
    fit = [p for p in data["points"] if p.get("use") == "fit" and p.get("model")]

    def fit_scale(points: list[dict], res: str) -> float:
        def fixed(p: dict) -> float:
            return p["model"][res]["storage"] + p["model"][res]["other"]

        num = sum(p["model"][res]["mac"] * (p["target"][res] - fixed(p)) / p["target"][res] ** 2 for p in points)
        den = sum((p["model"][res]["mac"] / p["target"][res]) ** 2 for p in points)
        return round(num / den, 3) if den else 1.0

    coeff = data["model"]["coefficients"]
    loo: dict[str, Any] = {}
    for res, key in (("LUT", "lut_scale"), ("FF", "ff_scale")):
        coeff[key] = fit_scale(fit, res)
        if len(fit) >= 2:
            errs = []
            for held in fit:
                scale = fit_scale([p for p in fit if p is not held], res)
                errs.append(_pct(_predict(held["model"][res], scale), held["target"][res]))
            loo[res] = errs
    data["errors"] = {"per_point_pct": calibration_errors(data), "leave_one_out_pct": loo or None}
    if write:
        path.write_text(json.dumps(data, indent=1) + "\n")
    return data
