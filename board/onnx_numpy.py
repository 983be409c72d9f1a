"""A small numpy evaluator of ONNX graphs: the ONNX reference where onnxruntime does not install.

PyPI has no onnxruntime (and no onnx) wheel for 32-bit ARM, so on the PYNQ-Z2's Cortex-A9 the bundle's
``reference.onnx`` runs here instead: this module reads the ``.onnx`` file with a minimal protobuf reader (the
``ModelProto`` fields an inference graph uses, field numbers from ``onnx/onnx.proto``) and evaluates its nodes in
order with numpy, in float32 as onnxruntime does. It needs Python 3.10 and numpy 1.x, nothing else.

It implements the operators of the bundles' float export (tf2onnx of the QKeras model: Conv, Add, Relu, Round,
Min, Max, Mul, Transpose, Reshape, MatMul, ReduceMean, ...), of their 8-bit export (onnxruntime's static
quantization, QDQ format: QuantizeLinear and DequantizeLinear around them), and of the bring-your-own path
(AveragePool, MaxPool, GlobalAveragePool, GlobalMaxPool, Flatten, Concat, Gemm, Pad, Softmax, Clip,
BatchNormalization, ...): :data:`SUPPORTED_OPERATORS`. A graph with any other operator is refused when it is
loaded, with :class:`UnsupportedOperatorError` naming every missing operator.

The 8-bit graphs are evaluated as the ONNX standard defines QDQ: DequantizeLinear to float, the float operator,
QuantizeLinear back. onnxruntime instead fuses each DequantizeLinear -> Conv -> QuantizeLinear group into an
integer kernel whose requantization rounds a little differently, so on the 8-bit model the two engines can
disagree on an occasional image (the benchmark reports the agreement it measured).

Example::

    model = OnnxNumpyModel.load("overlays/pynq-z2/resnet8_q8_3/reference.onnx")
    (logits,) = model.run({model.input_names[0]: images_float32})
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from board.errors import BundleError, InputError

__all__ = [
    "SUPPORTED_OPERATORS",
    "Graph",
    "Node",
    "OnnxFormatError",
    "OnnxNumpyModel",
    "UnsupportedOperatorError",
    "ValueInfo",
    "parse_model",
]


class OnnxFormatError(BundleError):
    """The file is not an ONNX model this reader can parse (bad protobuf, external data, unknown tensor type)."""


class UnsupportedOperatorError(BundleError):
    """The graph uses operators (or operator variants) the numpy evaluator does not implement.

    Attributes:
        operators: the operator names, e.g. ``["com.microsoft.QLinearConv", "Loop"]``.
    """

    def __init__(self, message: str, operators: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.operators = list(operators)


# ------------------------------------------------------------------------------------------------- protobuf
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise OnnxFormatError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise OnnxFormatError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of one message: int, 4 or 8 raw bytes, or a memoryview slice."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == _LEN:
            size, pos = _read_varint(buf, pos)
            if pos + size > end:
                raise OnnxFormatError(f"field {num}: length {size} runs past the end of its message")
            value, pos = buf[pos : pos + size], pos + size
        elif wire == _FIXED32:
            value, pos = bytes(buf[pos : pos + 4]), pos + 4
        elif wire == _FIXED64:
            value, pos = bytes(buf[pos : pos + 8]), pos + 8
        else:
            raise OnnxFormatError(f"field {num}: unsupported protobuf wire type {wire}")
        if pos > end:
            raise OnnxFormatError(f"field {num} runs past the end of its message")
        yield num, wire, value


def _signed(n: int) -> int:
    """An int64 field's varint as a signed number (two's complement over 64 bits)."""
    return n - (1 << 64) if n >= 1 << 63 else n


def _ints(wire: int, value: Any) -> list[int]:
    """A repeated int64/int32 field element: one varint, or a packed run of them."""
    if wire == _VARINT:
        return [_signed(value)]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _read_varint(value, pos)
        out.append(_signed(v))
    return out


def _floats(wire: int, value: Any, fmt: str = "<f") -> list[float]:
    if wire in (_FIXED32, _FIXED64):
        return [struct.unpack(fmt, value)[0]]
    return list(np.frombuffer(bytes(value), dtype=np.dtype(fmt)))


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8", errors="replace")


# ONNX TensorProto.DataType -> numpy dtype (BFLOAT16 and the float8 types have no numpy equivalent).
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.uint8),
    3: np.dtype(np.int8),
    4: np.dtype(np.uint16),
    5: np.dtype(np.int16),
    6: np.dtype(np.int32),
    7: np.dtype(np.int64),
    9: np.dtype(np.bool_),
    10: np.dtype(np.float16),
    11: np.dtype(np.float64),
    12: np.dtype(np.uint32),
    13: np.dtype(np.uint64),
}


def _dtype(code: int, what: str) -> np.dtype:
    try:
        return _DTYPES[code]
    except KeyError:
        raise OnnxFormatError(f"{what}: ONNX tensor data type {code} is not supported by the numpy evaluator") from None


def _tensor(buf: memoryview) -> tuple[str, np.ndarray]:
    """Name and array of a TensorProto.

    Fields: dims=1, data_type=2, float_data=4, int32_data=5, int64_data=7, name=8, raw_data=9, double_data=10,
    uint64_data=11, data_location=14.
    """
    dims: list[int] = []
    code, name, raw = 1, "", None
    f32: list[float] = []
    i32: list[int] = []
    i64: list[int] = []
    f64: list[float] = []
    u64: list[int] = []
    for num, wire, value in _fields(buf):
        if num == 1:
            dims += _ints(wire, value)
        elif num == 2:
            code = value
        elif num == 4:
            f32 += _floats(wire, value)
        elif num == 5:
            i32 += _ints(wire, value)
        elif num == 7:
            i64 += _ints(wire, value)
        elif num == 8:
            name = _text(value)
        elif num == 9:
            raw = bytes(value)
        elif num == 10:
            f64 += _floats(wire, value, "<d")
        elif num == 11:
            u64 += [v & ((1 << 64) - 1) for v in _ints(wire, value)]
        elif num == 14 and value == 1:
            raise OnnxFormatError(f"tensor {name or '?'}: external data is not supported (save the model in one file)")
        elif num == 6:
            raise OnnxFormatError(f"tensor {name or '?'}: string tensors are not supported")
    dtype = _dtype(code, f"tensor {name or '?'}")
    if raw is not None:
        array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
    elif dtype == np.float32:
        array = np.array(f32, np.float32)
    elif dtype == np.float64:
        array = np.array(f64, np.float64)
    elif dtype == np.int64:
        array = np.array(i64, np.int64)
    elif dtype in (np.dtype(np.uint32), np.dtype(np.uint64)):
        array = np.array(u64, dtype)
    elif dtype == np.float16:  # stored as the uint16 bit patterns in int32_data
        array = np.array(i32, np.uint16).view(np.float16)
    else:
        array = np.array(i32, np.int64).astype(dtype)
    count = int(np.prod(dims)) if dims else 1
    if array.size != count:
        raise OnnxFormatError(f"tensor {name or '?'}: {array.size} values for dims {dims}")
    return name, array.reshape(dims)


@dataclass(frozen=True)
class ValueInfo:
    """A graph input or output: name, numpy dtype (None when not a tensor) and shape (str for symbolic dims)."""

    name: str
    dtype: np.dtype | None = None
    shape: tuple[int | str | None, ...] | None = None


def _value_info(buf: memoryview) -> ValueInfo:
    """ValueInfoProto{name=1, type=2: TypeProto{tensor_type=1: {elem_type=1, shape=2: {dim=1: {value=1|param=2}}}}}."""
    name, dtype, shape = "", None, None
    for num, _, value in _fields(buf):
        if num == 1:
            name = _text(value)
        elif num == 2:
            for tnum, _, tval in _fields(value):
                if tnum != 1:
                    continue
                for knum, _, kval in _fields(tval):
                    if knum == 1:
                        dtype = _DTYPES.get(kval)
                    elif knum == 2:
                        dims: list[int | str | None] = []
                        for dnum, _, dval in _fields(kval):
                            if dnum != 1:
                                continue
                            dim: int | str | None = None
                            for fnum, _, fval in _fields(dval):
                                dim = _signed(fval) if fnum == 1 else _text(fval) if fnum == 2 else dim
                            dims.append(dim)
                        shape = tuple(dims)
    return ValueInfo(name, dtype, shape)


@dataclass
class Node:
    """One NodeProto: input=1, output=2, name=3, op_type=4, attribute=5, domain=7."""

    op_type: str
    inputs: list[str]
    outputs: list[str]
    name: str = ""
    domain: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def qualified_op(self) -> str:
        """``op_type`` with its domain when not the default one (``com.microsoft.QLinearConv``)."""
        return self.op_type if self.domain in ("", "ai.onnx") else f"{self.domain}.{self.op_type}"


def _attribute(buf: memoryview) -> tuple[str, Any]:
    """AttributeProto: name=1, f=2, i=3, s=4, t=5, g=6, floats=7, ints=8, strings=9, tensors=10, graphs=11, type=20."""
    name, kind = "", 0
    f = i = s = t = None
    floats: list[float] = []
    ints: list[int] = []
    strings: list[bytes] = []
    graph = False
    for num, wire, value in _fields(buf):
        if num == 1:
            name = _text(value)
        elif num == 2:
            f = struct.unpack("<f", value)[0]
        elif num == 3:
            i = _signed(value)
        elif num == 4:
            s = bytes(value)
        elif num == 5:
            t = _tensor(value)[1]
        elif num in (6, 11):
            graph = True
        elif num == 7:
            floats += _floats(wire, value)
        elif num == 8:
            ints += _ints(wire, value)
        elif num == 9:
            strings.append(bytes(value))
        elif num == 20:
            kind = value
    by_kind = {1: f, 2: i, 3: s, 4: t, 6: floats, 7: ints, 8: strings}
    if graph or kind in (5, 10):
        return name, _SUBGRAPH
    if kind in by_kind:
        return name, by_kind[kind]
    # No type field (old writers): whichever value is present.
    for v in (f, i, s, t):
        if v is not None:
            return name, v
    return name, floats or ints or strings


_SUBGRAPH = object()  # an attribute holding a graph (If, Loop, Scan): refused by the operator check


def _node(buf: memoryview) -> Node:
    node = Node("", [], [])
    for num, _, value in _fields(buf):
        if num == 1:
            node.inputs.append(_text(value))
        elif num == 2:
            node.outputs.append(_text(value))
        elif num == 3:
            node.name = _text(value)
        elif num == 4:
            node.op_type = _text(value)
        elif num == 5:
            key, val = _attribute(value)
            node.attrs[key] = val
        elif num == 7:
            node.domain = _text(value)
    return node


@dataclass
class Graph:
    """The parts of a ModelProto the evaluator uses.

    Attributes:
        nodes: in file order (ONNX requires a topological order).
        initializers: constant tensors by name.
        inputs: the graph inputs that are not initializers.
        outputs: the graph outputs.
        opset: default-domain opset version (operator semantics depend on it).
        producer: ``producer_name`` and ``producer_version``, e.g. ``"tf2onnx 1.16.1"``.
    """

    nodes: list[Node]
    initializers: dict[str, np.ndarray]
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    opset: int
    producer: str = ""


def parse_model(data: bytes) -> Graph:
    """Parse a serialized ModelProto.

    Fields: ModelProto graph=7, opset_import=8; GraphProto node=1, initializer=5, input=11, output=12.

    Raises:
        OnnxFormatError: not a parseable model, or one without a graph.
    """
    buf = memoryview(data)
    graph_buf = None
    opset: int | None = None
    producer = []
    try:
        for num, _, value in _fields(buf):
            if num == 7:
                graph_buf = value
            elif num == 8:
                domain, version = "", 1
                for onum, _, oval in _fields(value):
                    if onum == 1:
                        domain = _text(oval)
                    elif onum == 2:
                        version = oval
                if domain in ("", "ai.onnx"):
                    opset = version
            elif num in (2, 3):
                producer.append(_text(value))
        if graph_buf is None:
            raise OnnxFormatError("no graph in the file (not an ONNX model?)")
        nodes: list[Node] = []
        inits: dict[str, np.ndarray] = {}
        inputs: list[ValueInfo] = []
        outputs: list[ValueInfo] = []
        for num, _, value in _fields(graph_buf):
            if num == 1:
                nodes.append(_node(value))
            elif num == 5:
                name, array = _tensor(value)
                inits[name] = array
            elif num == 11:
                inputs.append(_value_info(value))
            elif num == 12:
                outputs.append(_value_info(value))
            elif num == 15:
                raise OnnxFormatError("sparse initializers are not supported")
    except (UnicodeDecodeError, struct.error, ValueError) as exc:
        raise OnnxFormatError(f"not a valid ONNX protobuf: {exc}") from exc
    if not nodes or not outputs:
        raise OnnxFormatError("the graph has no nodes or no outputs (not an ONNX model?)")
    return Graph(
        nodes=nodes,
        initializers=inits,
        inputs=[v for v in inputs if v.name not in inits],
        outputs=outputs,
        opset=opset if opset is not None else 1,
        producer=" ".join(producer),
    )


# ------------------------------------------------------------------------------------------------ operators
_Inputs = list  # list[np.ndarray | None]: a node's inputs, None for an omitted optional one
_Op = Callable[[Node, _Inputs, int], list]


def _attr(node: Node, name: str, default: Any = None) -> Any:
    return node.attrs.get(name, default)


def _unsupported(node: Node, why: str) -> UnsupportedOperatorError:
    return UnsupportedOperatorError(
        f"ONNX operator {node.qualified_op} (node {node.name or '?'}): {why} is not supported by the numpy evaluator",
        [node.qualified_op],
    )


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> _Op:
    return lambda node, x, opset: [fn(x[0])]


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> _Op:
    return lambda node, x, opset: [fn(x[0], x[1])]


def _variadic(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> _Op:
    def op(node: Node, x: _Inputs, opset: int) -> list:
        out = x[0]
        for y in x[1:]:
            out = fn(out, y)
        return [out]

    return op


def _same_dtype(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A binary arithmetic operator whose result keeps the first input's dtype (ONNX inputs share one type)."""
    return lambda a, b: np.asarray(fn(a, b)).astype(np.result_type(a), copy=False)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(np.result_type(a), np.integer):
        return np.trunc(np.true_divide(a, b)).astype(np.result_type(a))  # C-like integer division
    return np.divide(a, b)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def _clip(node: Node, x: _Inputs, opset: int) -> list:
    if opset < 11:
        lo, hi = _attr(node, "min", -np.inf), _attr(node, "max", np.inf)
    else:
        lo = x[1] if len(x) > 1 and x[1] is not None else None
        hi = x[2] if len(x) > 2 and x[2] is not None else None
    out = x[0]
    if lo is not None:
        out = np.maximum(out, np.asarray(lo, out.dtype))
    if hi is not None:
        out = np.minimum(out, np.asarray(hi, out.dtype))
    return [out]


def _leaky_relu(node: Node, x: _Inputs, opset: int) -> list:
    alpha = np.asarray(_attr(node, "alpha", 0.01), x[0].dtype)
    return [np.where(x[0] >= 0, x[0], x[0] * alpha)]


def _prelu(node: Node, x: _Inputs, opset: int) -> list:
    return [np.where(x[0] >= 0, x[0], x[0] * x[1])]


def _cast(node: Node, x: _Inputs, opset: int) -> list:
    return [x[0].astype(_dtype(_attr(node, "to"), f"Cast node {node.name}"))]


def _constant(node: Node, x: _Inputs, opset: int) -> list:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            v = node.attrs[key]
            if key.startswith("value_float"):
                return [np.array(v, np.float32)]
            if key.startswith("value_int"):
                return [np.array(v, np.int64)]
            return [np.array(v)]
    raise _unsupported(node, "a Constant without value, value_float(s) or value_int(s)")


def _constant_of_shape(node: Node, x: _Inputs, opset: int) -> list:
    value = _attr(node, "value", np.zeros(1, np.float32))
    return [np.full(tuple(int(d) for d in x[0]), value.reshape(-1)[0], value.dtype)]


def _shape(node: Node, x: _Inputs, opset: int) -> list:
    shape = np.array(x[0].shape, np.int64)
    start, end = _attr(node, "start", 0), _attr(node, "end", None)
    return [shape[start:end]]


def _size(node: Node, x: _Inputs, opset: int) -> list:
    return [np.array(x[0].size, np.int64)]


def _gather(node: Node, x: _Inputs, opset: int) -> list:
    axis = _axis(_attr(node, "axis", 0), x[0].ndim)
    idx = np.where(x[1] < 0, x[1] + x[0].shape[axis], x[1])
    return [np.take(x[0], idx, axis=axis)]


def _slice(node: Node, x: _Inputs, opset: int) -> list:
    data = x[0]
    if opset < 10:
        starts, ends = _attr(node, "starts"), _attr(node, "ends")
        axes, steps = _attr(node, "axes"), None
    else:
        starts, ends = list(x[1]), list(x[2])
        axes = list(x[3]) if len(x) > 3 and x[3] is not None else None
        steps = list(x[4]) if len(x) > 4 and x[4] is not None else None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    index = [slice(None)] * data.ndim
    big = np.iinfo(np.int64).max
    for a, s, e, st in zip(axes, starts, ends, steps):
        a = _axis(int(a), data.ndim)
        s, e, st = int(s), int(e), int(st)
        if st < 0 and e <= -big:  # "to the beginning" going backwards
            e = None
        index[a] = slice(s, None if e is not None and e >= big else e, st)
    return [data[tuple(index)]]


def _axes_input_or_attr(node: Node, x: _Inputs, opset: int, since: int) -> list[int] | None:
    if opset >= since:
        return [int(a) for a in x[1]] if len(x) > 1 and x[1] is not None else None
    axes = _attr(node, "axes")
    return list(axes) if axes is not None else None


def _squeeze(node: Node, x: _Inputs, opset: int) -> list:
    axes = _axes_input_or_attr(node, x, opset, 13)
    if axes is None:
        return [np.squeeze(x[0])]
    return [np.squeeze(x[0], axis=tuple(_axis(a, x[0].ndim) for a in axes))]


def _unsqueeze(node: Node, x: _Inputs, opset: int) -> list:
    axes = _axes_input_or_attr(node, x, opset, 13) or []
    rank = x[0].ndim + len(axes)
    out = x[0]
    for a in sorted(_axis(a, rank) for a in axes):
        out = np.expand_dims(out, a)
    return [out]


def _reshape(node: Node, x: _Inputs, opset: int) -> list:
    shape = [int(d) for d in x[1]]
    if not _attr(node, "allowzero", 0):
        shape = [x[0].shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [np.reshape(x[0], shape)]


def _flatten(node: Node, x: _Inputs, opset: int) -> list:
    axis = _axis(_attr(node, "axis", 1), x[0].ndim)
    lead = int(np.prod(x[0].shape[:axis])) if axis else 1
    return [np.reshape(x[0], (lead, -1))]


def _transpose(node: Node, x: _Inputs, opset: int) -> list:
    perm = _attr(node, "perm")
    return [np.transpose(x[0], perm)]


def _concat(node: Node, x: _Inputs, opset: int) -> list:
    parts = [a for a in x if a is not None]
    return [np.concatenate(parts, axis=_axis(_attr(node, "axis"), parts[0].ndim))]


def _split(node: Node, x: _Inputs, opset: int) -> list:
    data = x[0]
    axis = _axis(_attr(node, "axis", 0), data.ndim)
    sizes = list(x[1]) if opset >= 13 and len(x) > 1 and x[1] is not None else _attr(node, "split")
    if sizes is None:
        count = _attr(node, "num_outputs", len(node.outputs))
        chunk = -(-data.shape[axis] // count)
        sizes = [min(chunk, data.shape[axis] - i * chunk) for i in range(count)]
    return np.split(data, np.cumsum([int(s) for s in sizes])[:-1], axis=axis)


def _expand(node: Node, x: _Inputs, opset: int) -> list:
    shape = np.broadcast_shapes(x[0].shape, tuple(int(d) for d in x[1]))
    return [np.broadcast_to(x[0], shape)]


def _tile(node: Node, x: _Inputs, opset: int) -> list:
    return [np.tile(x[0], [int(r) for r in x[1]])]


def _where(node: Node, x: _Inputs, opset: int) -> list:
    return [np.where(x[0], x[1], x[2])]


def _pad(node: Node, x: _Inputs, opset: int) -> list:
    data = x[0]
    mode = _attr(node, "mode", b"constant").decode()
    if opset < 11:
        pads, value, axes = list(_attr(node, "pads")), _attr(node, "value", 0.0), None
    else:
        pads = [int(p) for p in x[1]]
        value = x[2].reshape(-1)[0] if len(x) > 2 and x[2] is not None and x[2].size else 0
        axes = [int(a) for a in x[3]] if len(x) > 3 and x[3] is not None else None
    axes = [_axis(a, data.ndim) for a in axes] if axes is not None else list(range(data.ndim))
    half = len(pads) // 2
    widths = [(0, 0)] * data.ndim
    for k, a in enumerate(axes):
        widths[a] = (pads[k], pads[k + half])
    if any(b < 0 or e < 0 for b, e in widths):  # negative pads crop
        index = tuple(slice(-b if b < 0 else 0, e if e < 0 else None) for b, e in widths)
        data = data[index]
        widths = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        return [np.pad(data, widths, mode="constant", constant_values=np.asarray(value, data.dtype))]
    if mode in ("reflect", "edge", "wrap"):
        return [np.pad(data, widths, mode=mode)]
    raise _unsupported(node, f"Pad mode {mode!r}")


# ---------------------------------------------------------------------------------------------- convolution
def _spatial_pads(node: Node, in_shape: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                  dilations: Sequence[int]) -> list[int]:  # fmt: skip
    """Begin and end pads per spatial axis (``[b0, b1, ..., e0, e1, ...]``), resolving ``auto_pad``."""
    auto = _attr(node, "auto_pad", b"NOTSET").decode()
    n = len(in_shape)
    if auto in ("NOTSET", ""):
        return list(_attr(node, "pads", [0] * 2 * n))
    if auto == "VALID":
        return [0] * 2 * n
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise _unsupported(node, f"auto_pad {auto!r}")
    begins, ends = [], []
    for size, k, s, d in zip(in_shape, kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        begins.append(small if auto == "SAME_UPPER" else big)
        ends.append(big if auto == "SAME_UPPER" else small)
    return begins + ends


def _windows(x: np.ndarray, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
             out_shape: Sequence[int]) -> np.ndarray:  # fmt: skip
    """A view ``(N, C, *out_shape, *kernel)`` of the (already padded) ``x``: the window of every output position."""
    n = len(kernel)
    axes = tuple(range(2, 2 + n))
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    w = sliding_window_view(x, span, axis=axes)
    index = (slice(None), slice(None))
    index += tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out_shape, strides))
    index += tuple(slice(None, None, d) for d in dilations)
    return w[index]


def _conv(node: Node, x: _Inputs, opset: int) -> list:
    data, weight = x[0], x[1]
    bias = x[2] if len(x) > 2 else None
    n_sp = data.ndim - 2
    if n_sp < 1 or n_sp > 3:
        raise _unsupported(node, f"a Conv over {n_sp} spatial axes")
    kernel = list(_attr(node, "kernel_shape", weight.shape[2:]))
    strides = list(_attr(node, "strides", [1] * n_sp))
    dilations = list(_attr(node, "dilations", [1] * n_sp))
    group = int(_attr(node, "group", 1))
    pads = _spatial_pads(node, data.shape[2:], kernel, strides, dilations)
    padded = np.pad(data, [(0, 0), (0, 0)] + [(pads[i], pads[i + n_sp]) for i in range(n_sp)])
    out_sp = [(padded.shape[2 + i] - (kernel[i] - 1) * dilations[i] - 1) // strides[i] + 1 for i in range(n_sp)]
    win = _windows(padded, kernel, strides, dilations, out_sp)  # (N, C, *out, *k)
    n, c = data.shape[:2]
    m = weight.shape[0]
    cg, mg = c // group, m // group
    # Move channels next to the kernel axes: rows are output positions, columns (channel, kernel offsets).
    order = (0, *range(2, 2 + n_sp), 1, *range(2 + n_sp, 2 + 2 * n_sp))
    outs = []
    for g in range(group):
        cols = np.transpose(win[:, g * cg : (g + 1) * cg], order).reshape(-1, cg * int(np.prod(kernel)))
        w = weight[g * mg : (g + 1) * mg].reshape(mg, -1)
        outs.append(cols @ w.T)
    y = outs[0] if group == 1 else np.concatenate(outs, axis=1)
    if bias is not None:
        y = y + bias
    y = y.reshape(n, *out_sp, m)
    return [np.moveaxis(y, -1, 1)]


def _pool(node: Node, x: _Inputs, opset: int, kind: str) -> list:
    data = x[0]
    if len(node.outputs) > 1 and node.outputs[1]:
        raise _unsupported(node, "MaxPool's Indices output")
    n_sp = data.ndim - 2
    kernel = list(_attr(node, "kernel_shape"))
    strides = list(_attr(node, "strides", [1] * n_sp))
    dilations = list(_attr(node, "dilations", [1] * n_sp))
    ceil_mode = bool(_attr(node, "ceil_mode", 0))
    pads = _spatial_pads(node, data.shape[2:], kernel, strides, dilations)
    out_sp, extra = [], []
    for i in range(n_sp):
        size = data.shape[2 + i] + pads[i] + pads[i + n_sp]
        span = (kernel[i] - 1) * dilations[i] + 1
        q, r = divmod(size - span, strides[i])
        out = q + 1 + (1 if ceil_mode and r else 0)
        # A window starting in the end padding or beyond is dropped (ONNX and onnxruntime).
        if ceil_mode and (out - 1) * strides[i] >= data.shape[2 + i] + pads[i]:
            out -= 1
        out_sp.append(out)
        extra.append(max(0, (out - 1) * strides[i] + span - size))
    widths = [(0, 0), (0, 0)] + [(pads[i], pads[i + n_sp] + extra[i]) for i in range(n_sp)]
    axes = tuple(range(-n_sp, 0))
    if kind == "max":
        fill = -np.inf if np.issubdtype(data.dtype, np.floating) else np.iinfo(data.dtype).min
        padded = np.pad(data, widths, constant_values=fill)
        return [_windows(padded, kernel, strides, dilations, out_sp).max(axis=axes)]
    padded = np.pad(data, widths)
    total = _windows(padded, kernel, strides, dilations, out_sp).sum(axis=axes, dtype=data.dtype)
    # Divisor: the window's cells inside the input (count_include_pad=0) or inside input + explicit pads (=1).
    mask = np.zeros((1, 1, *padded.shape[2:]), data.dtype)
    if _attr(node, "count_include_pad", 0):
        mask[(0, 0, *(slice(0, padded.shape[2 + i] - extra[i]) for i in range(n_sp)))] = 1
    else:
        mask[(0, 0, *(slice(pads[i], pads[i] + data.shape[2 + i]) for i in range(n_sp)))] = 1
    count = _windows(mask, kernel, strides, dilations, out_sp).sum(axis=axes, dtype=data.dtype)
    return [total / count]


def _global_pool(kind: str) -> _Op:
    def op(node: Node, x: _Inputs, opset: int) -> list:
        axes = tuple(range(2, x[0].ndim))
        fn = np.mean if kind == "avg" else np.max
        return [fn(x[0], axis=axes, keepdims=True).astype(x[0].dtype, copy=False)]

    return op


def _reduce(fn: Callable[..., np.ndarray], axes_input_since: int) -> _Op:
    def op(node: Node, x: _Inputs, opset: int) -> list:
        axes = _axes_input_or_attr(node, x, opset, axes_input_since)
        keep = bool(_attr(node, "keepdims", 1))
        if not axes:
            if _attr(node, "noop_with_empty_axes", 0):
                return [x[0]]
            axes = list(range(x[0].ndim))
        out = fn(x[0], axis=tuple(_axis(a, x[0].ndim) for a in axes), keepdims=keep)
        return [np.asarray(out).astype(x[0].dtype, copy=False)]

    return op


def _matmul(node: Node, x: _Inputs, opset: int) -> list:
    return [np.matmul(x[0], x[1])]


def _gemm(node: Node, x: _Inputs, opset: int) -> list:
    a = x[0].T if _attr(node, "transA", 0) else x[0]
    b = x[1].T if _attr(node, "transB", 0) else x[1]
    alpha, beta = _attr(node, "alpha", 1.0), _attr(node, "beta", 1.0)
    y = a @ b
    if alpha != 1.0:
        y = y * np.asarray(alpha, y.dtype)
    if len(x) > 2 and x[2] is not None:
        y = y + (x[2] if beta == 1.0 else x[2] * np.asarray(beta, y.dtype))
    return [y]


def _batch_norm(node: Node, x: _Inputs, opset: int) -> list:
    data, scale, bias, mean, var = x[:5]
    if len(node.outputs) > 1 and any(node.outputs[1:]):
        raise _unsupported(node, "BatchNormalization in training mode")
    shape = (1, -1) + (1,) * (data.ndim - 2)
    eps = np.asarray(_attr(node, "epsilon", 1e-5), data.dtype)
    inv = (scale / np.sqrt(var + eps)).reshape(shape)
    return [(data - mean.reshape(shape)) * inv + bias.reshape(shape)]


def _softmax(node: Node, x: _Inputs, opset: int, log: bool = False) -> list:
    data = x[0]
    if opset < 13:  # coerced to 2-D at axis (default 1)
        axis = _axis(_attr(node, "axis", 1), data.ndim)
        flat = data.reshape(int(np.prod(data.shape[:axis])), -1)
        return [_softmax_along(flat, 1, log).reshape(data.shape)]
    return [_softmax_along(data, _axis(_attr(node, "axis", -1), data.ndim), log)]


def _softmax_along(data: np.ndarray, axis: int, log: bool) -> np.ndarray:
    shifted = data - data.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    total = e.sum(axis=axis, keepdims=True)
    return shifted - np.log(total) if log else e / total


def _argreduce(fn: Callable[..., np.ndarray]) -> _Op:
    def op(node: Node, x: _Inputs, opset: int) -> list:
        if _attr(node, "select_last_index", 0):
            raise _unsupported(node, "select_last_index=1")
        axis = _axis(_attr(node, "axis", 0), x[0].ndim)
        out = fn(x[0], axis=axis).astype(np.int64)
        return [np.expand_dims(out, axis) if _attr(node, "keepdims", 1) else out]

    return op


def _per_axis(param: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """A scale or zero point broadcast along ``axis`` (per-channel) or as a scalar (per-tensor)."""
    if param.ndim == 0 or param.size == 1:
        return param.reshape(())
    shape = [1] * rank
    shape[axis] = param.size
    return param.reshape(shape)


def _quantize(node: Node, x: _Inputs, opset: int) -> list:
    data, scale = x[0], x[1]
    zp = x[2] if len(x) > 2 and x[2] is not None else np.zeros((), np.uint8)
    if _attr(node, "block_size", 0):
        raise _unsupported(node, "blocked quantization (block_size)")
    if zp.dtype not in (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.uint16), np.dtype(np.int16)):
        raise _unsupported(node, f"QuantizeLinear to {zp.dtype}")
    axis = _axis(_attr(node, "axis", 1), data.ndim)
    s = _per_axis(scale, data.ndim, axis).astype(np.float32)
    z = _per_axis(zp, data.ndim, axis).astype(np.float32)
    info = np.iinfo(zp.dtype)
    # Round half to even (np.rint), then the zero point, then saturation: the ONNX definition.
    q = np.rint(data.astype(np.float32) / s) + z
    return [np.clip(q, info.min, info.max).astype(zp.dtype)]


def _dequantize(node: Node, x: _Inputs, opset: int) -> list:
    data, scale = x[0], x[1]
    zp = x[2] if len(x) > 2 and x[2] is not None else np.zeros((), data.dtype)
    if _attr(node, "block_size", 0):
        raise _unsupported(node, "blocked quantization (block_size)")
    axis = _axis(_attr(node, "axis", 1), data.ndim)
    s = _per_axis(scale, data.ndim, axis)
    z = _per_axis(zp, data.ndim, axis)
    return [(data.astype(np.int32) - z.astype(np.int32)).astype(s.dtype) * s]


def _identity(node: Node, x: _Inputs, opset: int) -> list:
    return [x[0]]


_OPS: dict[str, _Op] = {
    # elementwise
    "Abs": _unary(np.abs),
    "Ceil": _unary(np.ceil),
    "Exp": _unary(np.exp),
    "Floor": _unary(np.floor),
    "Log": _unary(np.log),
    "Neg": _unary(np.negative),
    "Reciprocal": _unary(np.reciprocal),
    "Relu": _unary(lambda a: np.maximum(a, np.zeros((), a.dtype))),
    "Round": _unary(np.rint),  # ONNX Round is round half to even, as np.rint
    "Sigmoid": _unary(_sigmoid),
    "Sign": _unary(np.sign),
    "Sqrt": _unary(np.sqrt),
    "Tanh": _unary(np.tanh),
    "Not": _unary(np.logical_not),
    "Add": _binary(_same_dtype(np.add)),
    "Sub": _binary(_same_dtype(np.subtract)),
    "Mul": _binary(_same_dtype(np.multiply)),
    "Div": _binary(_same_dtype(_div)),
    "Pow": _binary(_same_dtype(np.power)),
    "Equal": _binary(np.equal),
    "Less": _binary(np.less),
    "LessOrEqual": _binary(np.less_equal),
    "Greater": _binary(np.greater),
    "GreaterOrEqual": _binary(np.greater_equal),
    "And": _binary(np.logical_and),
    "Or": _binary(np.logical_or),
    "Max": _variadic(np.maximum),
    "Min": _variadic(np.minimum),
    "Sum": _variadic(np.add),
    "Mean": lambda node, x, opset: [(_variadic(np.add)(node, x, opset)[0] / len(x)).astype(x[0].dtype)],
    "Clip": _clip,
    "LeakyRelu": _leaky_relu,
    "PRelu": _prelu,
    "Where": _where,
    # types, constants, shapes
    "Cast": _cast,
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Dropout": _identity,  # inference: the identity (its mask output is refused below when used)
    "Identity": _identity,
    "Shape": _shape,
    "Size": _size,
    "Gather": _gather,
    "Slice": _slice,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Transpose": _transpose,
    "Concat": _concat,
    "Split": _split,
    "Expand": _expand,
    "Tile": _tile,
    "Pad": _pad,
    # network layers
    "Conv": _conv,
    "MatMul": _matmul,
    "Gemm": _gemm,
    "BatchNormalization": _batch_norm,
    "AveragePool": lambda node, x, opset: _pool(node, x, opset, "avg"),
    "MaxPool": lambda node, x, opset: _pool(node, x, opset, "max"),
    "GlobalAveragePool": _global_pool("avg"),
    "GlobalMaxPool": _global_pool("max"),
    "ReduceMean": _reduce(np.mean, 18),
    "ReduceMax": _reduce(np.max, 18),
    "ReduceMin": _reduce(np.min, 18),
    "ReduceSum": _reduce(np.sum, 13),
    "Softmax": _softmax,
    "LogSoftmax": lambda node, x, opset: _softmax(node, x, opset, log=True),
    "ArgMax": _argreduce(np.argmax),
    "ArgMin": _argreduce(np.argmin),
    # 8-bit (QDQ)
    "QuantizeLinear": _quantize,
    "DequantizeLinear": _dequantize,
}

#: The operators (default ONNX domain) the numpy evaluator implements.
SUPPORTED_OPERATORS: frozenset[str] = frozenset(_OPS)


# ---------------------------------------------------------------------------------------------------- model
class OnnxNumpyModel:
    """An ONNX model evaluated node by node with numpy.

    Attributes:
        path: the file it was loaded from (``None`` when built from bytes).
        graph: the parsed graph.
        input_names: names of the graph inputs (initializers excluded).
        output_names: names of the graph outputs.
    """

    def __init__(self, graph: Graph, path: str | None = None) -> None:
        """Check that every operator is supported and plan when each intermediate tensor can be freed.

        Raises:
            UnsupportedOperatorError: the graph uses operators this evaluator lacks (all of them are named).
        """
        self.graph = graph
        self.path = path
        self.input_names = [v.name for v in graph.inputs]
        self.output_names = [v.name for v in graph.outputs]
        where = f"{path}: " if path else ""
        missing = sorted(
            {
                n.qualified_op
                for n in graph.nodes
                if n.qualified_op not in _OPS or any(v is _SUBGRAPH for v in n.attrs.values())
            }
        )
        if missing:
            raise UnsupportedOperatorError(
                f"{where}the numpy ONNX evaluator does not implement operator(s) {', '.join(missing)} "
                f"(it implements {len(_OPS)}: see board.onnx_numpy.SUPPORTED_OPERATORS)",
                missing,
            )
        dropout_masks = [n for n in graph.nodes if n.op_type == "Dropout" and len(n.outputs) > 1 and n.outputs[1]]
        if dropout_masks:
            raise UnsupportedOperatorError(f"{where}Dropout's mask output is not supported", ["Dropout"])
        known = set(self.input_names) | set(graph.initializers)
        self._last_use: dict[str, int] = {}
        for i, node in enumerate(graph.nodes):
            for name in node.inputs:
                if not name:
                    continue
                if name not in known:
                    raise OnnxFormatError(
                        f"{where}node {node.name or node.op_type} reads {name!r} before any node writes it (the "
                        "graph is not in topological order or misses a tensor)"
                    )
                self._last_use[name] = i
            known.update(o for o in node.outputs if o)
        absent = [o for o in self.output_names if o not in known]
        if absent:
            raise OnnxFormatError(f"{where}graph outputs {absent} are computed by no node")

    @classmethod
    def load(cls, path: str | os.PathLike) -> OnnxNumpyModel:
        """Read and check an ``.onnx`` file.

        Raises:
            BundleError: the file is missing or unreadable.
            OnnxFormatError: not an ONNX model this reader can parse.
            UnsupportedOperatorError: it uses operators this evaluator lacks.
        """
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise BundleError(f"cannot read the ONNX model {path}: {exc}") from exc
        try:
            graph = parse_model(data)
        except OnnxFormatError as exc:
            raise OnnxFormatError(f"{path}: {exc}") from exc
        return cls(graph, path)

    @classmethod
    def from_bytes(cls, data: bytes) -> OnnxNumpyModel:
        """A model from a serialized ModelProto (same errors as :meth:`load`)."""
        return cls(parse_model(data))

    @property
    def operators(self) -> list[str]:
        """The distinct operators of the graph, sorted."""
        return sorted({n.qualified_op for n in self.graph.nodes})

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None) -> list[np.ndarray]:
        """Evaluate the graph.

        Args:
            feeds: one array per graph input, by name.
            output_names: which tensors to return (default: the graph outputs).

        Returns:
            The requested tensors, in order.

        Raises:
            InputError: a graph input is missing from ``feeds``, or an operator fails on the given values.
        """
        wanted = list(output_names) if output_names is not None else self.output_names
        missing = [name for name in self.input_names if name not in feeds]
        if missing:
            raise InputError(f"missing ONNX input(s) {missing}; the model takes {self.input_names}")
        values: dict[str, np.ndarray] = dict(self.graph.initializers)
        values.update({k: np.asarray(v) for k, v in feeds.items()})
        keep = set(wanted)
        opset = self.graph.opset
        for i, node in enumerate(self.graph.nodes):
            args = [values[name] if name else None for name in node.inputs]
            try:
                results = _OPS[node.op_type](node, args, opset)
            except UnsupportedOperatorError:
                raise
            except (ValueError, TypeError, IndexError) as exc:
                raise InputError(
                    f"ONNX node {node.name or '?'} ({node.op_type}) failed on inputs of shapes "
                    f"{[None if a is None else a.shape for a in args]}: {exc}"
                ) from exc
            for name, value in zip(node.outputs, results):
                if name:
                    values[name] = np.asarray(value)
            # Free intermediates after their last reader: peak memory stays a few layers, not the whole net.
            for name in node.inputs:
                if name and self._last_use.get(name) == i and name not in keep and name not in self.graph.initializers:
                    values.pop(name, None)
        return [values[name] for name in wanted]
