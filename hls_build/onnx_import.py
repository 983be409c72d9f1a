"""Bring your own PyTorch model through ONNX: an NCHW ONNX graph translated into an equivalent float Keras model.

hls4ml 1.3's ONNX frontend takes QONNX graphs (it needs the ``qonnx`` package and its cleanup passes, not installed
here), and a Brevitas/PyTorch environment is several GB of wheels; so this project takes the route it can test: the
operators a PyTorch export of a CIFAR-10 CNN emits (``torch.onnx.export`` of a ResNet) are translated one by one into
Keras layers with the same weights, NCHW turned into NHWC, and the Keras model then goes through the same
post-training quantization, exact types and gate as any float Keras model (``hls_build.ptq``).

Operators: ``Conv`` (any stride, explicit ``pads`` become a ``ZeroPadding2D``; no groups or dilation),
``BatchNormalization``, ``Relu``, ``Add``, ``MaxPool``/``AveragePool`` (no padding), ``GlobalAveragePool``,
``GlobalMaxPool``, ``Flatten`` (and ``Reshape`` to ``[N, -1]`` by a constant shape), ``Gemm`` (``y = x W^T + b`` or
``x W + b``), ``Concat`` on channels, ``Softmax`` last, ``Identity``/``Dropout`` (removed). A ``Flatten`` of a
``C x H x W`` map flattens channel-major in PyTorch and channel-minor in Keras: the following ``Gemm``'s rows are
permuted so the product is the same. Anything else is refused naming the node and what to do.

Not tested here with a real ``torch.onnx.export`` (no PyTorch in these environments): the tests use ONNX graphs in
the layout and with the operator attributes that export writes, made by
``host_tests/hls_build/fixtures/onnx_byo/make_fixtures.py``, checked against onnxruntime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from board.errors import ProjectError
from training.keras_compat import keras

L = keras.layers

SUPPORTED_OPS = (
    "Conv, BatchNormalization, Relu, Add, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, Flatten, Reshape "
    "(to [N, -1]), Gemm, Concat (channels), Softmax (last), Identity, Dropout"
)


class OnnxImportError(ProjectError, ValueError):
    """An ONNX graph this translation cannot take (the node and what to do are named)."""


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def onnx_to_keras(path: str | Path) -> keras.Model:
    """Translate an NCHW ONNX CNN for 3x32x32 images into a float Keras model (NHWC) with the same function.

    Raises:
        OnnxImportError: unreadable file, wrong input, or an operator/attribute outside :data:`SUPPORTED_OPS`.
    """
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises protobuf errors of several kinds
        raise OnnxImportError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise OnnxImportError(f"{path}: {len(inputs)} graph inputs; the overlay takes one image")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if dims[1:] != [3, 32, 32]:
        raise OnnxImportError(f"{path}: input shape {dims}; expected NCHW [N, 3, 32, 32] (a CIFAR-10 image)")
    for node in g.node:  # constants as initializers
        if node.op_type == "Constant":
            inits[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])

    inp = keras.Input((32, 32, 3), name="image")
    # ONNX tensor name -> (Keras tensor in NHWC, ONNX rank, (C, H, W) before a Flatten that changed the order)
    t: dict[str, Any] = {inputs[0].name: inp}
    flat_from: dict[str, tuple[int, int, int]] = {}
    weights: list[tuple[keras.layers.Layer, list[np.ndarray]]] = []
    last = g.node[-1]

    def const(name: str, node: Any) -> np.ndarray:
        if name not in inits:
            raise OnnxImportError(
                f"{node.name or node.op_type}: input {name!r} is computed, not a constant; export with constant "
                "folding (torch.onnx.export(..., do_constant_folding=True))"
            )
        return inits[name]

    for node in g.node:
        op, a, name = node.op_type, _attrs(node), node.name or node.output[0]
        where = f"node {name!r} ({op})"
        if op == "Constant":
            continue
        x = t.get(node.input[0]) if node.input else None
        if x is None and op not in ("Constant",):
            raise OnnxImportError(f"{where}: input {node.input[0]!r} comes from an operator this import does not "
                                  f"take; supported: {SUPPORTED_OPS}")  # fmt: skip
        if op == "Conv":
            w = const(node.input[1], node)
            if a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1])):
                raise OnnxImportError(f"{where}: grouped or dilated convolutions are not supported; use group=1")
            if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise OnnxImportError(f"{where}: auto_pad is not supported; export with explicit pads")
            top, left, bottom, right = a.get("pads", [0, 0, 0, 0])
            if any((top, left, bottom, right)):
                x = L.ZeroPadding2D(((top, bottom), (left, right)), name=f"{_k(name)}_pad")(x)
            b = const(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
            layer = L.Conv2D(w.shape[0], tuple(w.shape[2:]), strides=tuple(a.get("strides", [1, 1])),
                             padding="valid", use_bias=b is not None, name=_k(name))  # fmt: skip
            y = layer(x)
            weights.append((layer, [w.transpose(2, 3, 1, 0)] + ([b] if b is not None else [])))
        elif op == "BatchNormalization":
            gamma, beta, mean, var = (const(i, node) for i in node.input[1:5])
            layer = L.BatchNormalization(epsilon=float(a.get("epsilon", 1e-5)), name=_k(name))
            y = layer(x)
            weights.append((layer, [gamma, beta, mean, var]))
        elif op == "Relu":
            y = L.ReLU(name=_k(name))(x)
        elif op in ("Add", "Concat"):
            xs = [t.get(i) for i in node.input]
            if any(v is None for v in xs):
                raise OnnxImportError(f"{where}: an input is a constant or unsupported; only tensor + tensor")
            if op == "Add":
                y = L.Add(name=_k(name))(xs)
            else:
                rank = len(xs[0].shape)
                if a.get("axis") not in (1, 1 - rank):
                    raise OnnxImportError(f"{where}: Concat on axis {a.get('axis')}; only channels (axis 1)")
                y = L.Concatenate(axis=-1, name=_k(name))(xs)
        elif op in ("MaxPool", "AveragePool"):
            if any(a.get("pads", [0])) or a.get("ceil_mode", 0):
                raise OnnxImportError(f"{where}: padded or ceil_mode pooling is not supported; use padding=0")
            kernel = tuple(a["kernel_shape"])
            cls = L.MaxPooling2D if op == "MaxPool" else L.AveragePooling2D
            y = cls(kernel, strides=tuple(a.get("strides", kernel)), padding="valid", name=_k(name))(x)
        elif op in ("GlobalAveragePool", "GlobalMaxPool"):
            cls = L.GlobalAveragePooling2D if op == "GlobalAveragePool" else L.GlobalMaxPooling2D
            y = cls(keepdims=True, name=_k(name))(x)
        elif op in ("Flatten", "Reshape"):
            if op == "Reshape":
                shape = const(node.input[1], node).tolist()
                if len(shape) != 2 or shape[1] not in (-1, int(np.prod(x.shape[1:]))):
                    raise OnnxImportError(f"{where}: only a Reshape to [N, -1] (a flatten) is supported")
            elif a.get("axis", 1) != 1:
                raise OnnxImportError(f"{where}: Flatten axis {a.get('axis')}; only axis 1")
            if len(x.shape) == 4 and (x.shape[1] != 1 or x.shape[2] != 1):
                h, w_, c = (int(s) for s in x.shape[1:])
                flat_from[node.output[0]] = (c, h, w_)
            y = L.Flatten(name=_k(name))(x)
        elif op == "Gemm":
            w = const(node.input[1], node).astype(np.float32)
            if a.get("transA", 0) or float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0:
                raise OnnxImportError(f"{where}: only y = x W^T + b (transA=0, alpha=beta=1) is supported")
            kernel = w.T if a.get("transB", 0) else w  # (n_in, n_out)
            if node.input[0] in flat_from:
                c, h, w_ = flat_from[node.input[0]]
                # PyTorch row index c*H*W + h*W + w; Keras Flatten of NHWC gives h*W*C + w*C + c.
                order = np.arange(c * h * w_).reshape(c, h, w_).transpose(1, 2, 0).reshape(-1)
                kernel = kernel[order]
            b = const(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
            layer = L.Dense(kernel.shape[1], use_bias=b is not None, name=_k(name))
            y = layer(x)
            weights.append((layer, [kernel] + ([b.astype(np.float32)] if b is not None else [])))
        elif op == "Softmax":
            if node is not last:
                raise OnnxImportError(f"{where}: Softmax is supported only as the last node")
            y = L.Softmax(name=_k(name))(x)
        elif op in ("Identity", "Dropout"):
            y = x
        else:
            raise OnnxImportError(f"{where}: operator {op} is not supported; supported: {SUPPORTED_OPS}")
        t[node.output[0]] = y
    out_name = g.output[0].name
    if out_name not in t:
        raise OnnxImportError(f"{path}: graph output {out_name!r} was not produced by a supported operator")
    out = t[out_name]
    if len(out.shape) == 4:  # a [N, C, 1, 1] output (no Flatten before it)
        out = L.Flatten(name="output_flatten")(out)
    km = keras.Model(inp, out, name=_k(path.stem))
    for layer, ws in weights:
        layer.set_weights([np.asarray(w_, np.float32) for w_ in ws])
    # GlobalPooling with keepdims then Flatten: collapse to the plain Keras form the import expects.
    return _drop_keepdims(km)


def _drop_keepdims(model: keras.Model) -> keras.Model:
    """``GlobalPooling(keepdims=True) -> Flatten`` becomes ``GlobalPooling()`` (the form ``hls_build.ptq`` takes)."""
    config = model.get_config()
    by_name = {e["name"]: e for e in config["layers"]}
    renames = {}
    for e in config["layers"]:
        if e["class_name"] == "Flatten":
            src = by_name[e["inbound_nodes"][0][0][0]]
            if src["class_name"].startswith("Global") and src["config"].get("keepdims"):
                src["config"]["keepdims"] = False
                renames[e["name"]] = src["name"]
    for e in config["layers"]:
        if e["class_name"].startswith("Global") and e["config"].get("keepdims"):
            raise OnnxImportError(f"{e['name']}: a global pooling not followed by Flatten is not supported")
    config["layers"] = [e for e in config["layers"] if e["name"] not in renames]
    for e in config["layers"]:
        for n in e["inbound_nodes"]:
            for ref in n:
                ref[0] = renames.get(ref[0], ref[0])
    config["output_layers"] = [[renames.get(r[0], r[0]), *r[1:]] for r in config["output_layers"]]
    out = keras.Model.from_config(config)
    for layer in out.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return out


def _k(name: str) -> str:
    """A Keras layer name from an ONNX node name (``/layer1/conv/Conv`` -> ``layer1_conv_Conv``)."""
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in str(name)).strip("_")
    return s if s and not s[0].isdigit() else f"n_{s}"
