"""The design graph of an hls4ml ``io_stream`` project: its fixed-point types, streams and dataflow processes.

What :mod:`hls_build.estimate.read` builds from the generated C++ and every other part of the estimator works on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from board.errors import ProjectError
from board.fixed_point import FixedPoint


class EstimateError(ProjectError, ValueError):
    """The firmware could not be read, or a layer or setting cannot be estimated."""


# ------------------------------------------------------------------------------------------------------ types
def parse_type(text: str) -> FixedPoint:
    """A scalar HLS type of the generated C++ (:meth:`board.fixed_point.FixedPoint.parse`).

    Raises:
        EstimateError: not a fixed-point or integer type.
    """
    try:
        return FixedPoint.parse(text)
    except ValueError as exc:
        raise EstimateError(f"cannot estimate with type {text!r}: {exc}") from exc


def array_type(text: str) -> tuple[FixedPoint, int]:
    """``nnet::array<ap_fixed<8,3>, 16*1>`` -> (element type, 16); a scalar type -> (type, 1)."""
    m = re.match(r"^\s*nnet::array\s*<\s*(.*)\s*,\s*([\d\s*+]+)>\s*$", text)
    if m:
        n = math.prod(int(t) for t in re.findall(r"\d+", m.group(2))) if "*" in m.group(2) else int(m.group(2))
        return parse_type(m.group(1)), n
    return parse_type(text), 1


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
    elem: FixedPoint
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
    types: dict[str, FixedPoint] = field(default_factory=dict)
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
