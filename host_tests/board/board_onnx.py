"""A minimal ONNX writer for tests: protobuf wire format by hand, so the board env needs no ``onnx`` package.

Only what a tiny linear model needs: ModelProto, GraphProto, NodeProto, TensorProto (raw_data),
ValueInfoProto with a tensor type. Field numbers are those of onnx/onnx.proto.
"""

from __future__ import annotations

import numpy as np

_ELEM = {np.dtype(np.float32): 1, np.dtype(np.int64): 7}


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative numbers as 64-bit two's complement, as protobuf does
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _str(field: int, text: str) -> bytes:
    return _bytes(field, text.encode())


def tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto: dims=1, data_type=2, name=8, raw_data=9 (little-endian)."""
    a = np.ascontiguousarray(array)
    return b"".join(_int(1, d) for d in a.shape) + _int(2, _ELEM[a.dtype]) + _str(8, name) + _bytes(9, a.tobytes())


def value_info(name: str, dtype: np.dtype, dims: list[int | str]) -> bytes:
    """ValueInfoProto{name=1, type=2: TypeProto{tensor_type=1: {elem_type=1, shape=2: {dim=1: {value=1|param=2}}}}}."""
    shape = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _str(2, d)) for d in dims)
    tensor_type = _int(1, _ELEM[np.dtype(dtype)]) + _bytes(2, shape)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


def node(op_type: str, inputs: list[str], outputs: list[str], name: str) -> bytes:
    """NodeProto: input=1, output=2, name=3, op_type=4."""
    return (
        b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs) + _str(3, name) + _str(4, op_type)
    )


def model(
    nodes: list[bytes], initializers: list[bytes], inputs: list[bytes], outputs: list[bytes], opset: int = 13
) -> bytes:
    """ModelProto: ir_version=1, producer_name=2, graph=7 (node=1, name=2, initializer=5, input=11, output=12),
    opset_import=8 (domain=1, version=2)."""
    graph = (
        b"".join(_bytes(1, n) for n in nodes)
        + _str(2, "toy")
        + b"".join(_bytes(5, t) for t in initializers)
        + b"".join(_bytes(11, v) for v in inputs)
        + b"".join(_bytes(12, v) for v in outputs)
    )
    return _int(1, 8) + _str(2, "host_tests") + _bytes(7, graph) + _bytes(8, _str(1, "") + _int(2, opset))


def linear_image_model(weights: np.ndarray, bias: np.ndarray, image_shape=(32, 32, 3)) -> bytes:
    """``logits = reshape(image, (N, -1)) @ weights + bias`` with input ``image`` and output ``logits``."""
    n_in = int(np.prod(image_shape))
    return model(
        nodes=[
            node("Reshape", ["image", "flat_shape"], ["flat"], "flatten"),
            node("MatMul", ["flat", "W"], ["mm"], "dense"),
            node("Add", ["mm", "b"], ["logits"], "bias"),
        ],
        initializers=[
            tensor("flat_shape", np.array([-1, n_in], np.int64)),
            tensor("W", weights.astype(np.float32)),
            tensor("b", bias.astype(np.float32)),
        ],
        inputs=[value_info("image", np.float32, ["N", *image_shape])],
        outputs=[value_info("logits", np.float32, ["N", weights.shape[1]])],
    )
