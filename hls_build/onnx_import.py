"""Bring your own PyTorch model through ONNX: an NCHW ONNX or QONNX graph translated into an equivalent Keras model.

Two kinds of file, both read without PyTorch (the host environment has onnx, not torch):

* **Float ONNX** (``torch.onnx.export`` of a float model, either exporter: the ``torch.export``-based default of
  torch >= 2.9, which folds BatchNormalization into the convolutions and writes ``ReduceMean`` for the global
  pooling, or the TorchScript one, ``dynamo=False``): translated operator by operator into a float Keras model with
  the same weights, NCHW turned into NHWC, which then goes through the same post-training quantization, exact types
  and gate as any float Keras model (``hls_build.ptq``, route 1).
* **QONNX** (``brevitas.export.export_qonnx`` of a Brevitas model, optionally after ``qonnx.util.cleanup``): its
  ``Quant`` nodes become QKeras quantizers holding exactly the values Brevitas computes, so the model goes through
  the QKeras route as trained (route 2: no post-training quantization, the same exact-type derivation and gate).
  A ``Quant`` of a weight or bias is evaluated here (QONNX's definition: ``clip(round(x / scale + zp)) - zp) *
  scale``) and stored already quantized, with a ``quantized_bits`` quantizer of the narrowest fixed-point format
  that holds those values exactly (an 8-bit weight whose scale is ``2^-10`` keeps its 8 significant bits but needs
  ``ap_fixed<11,1>``: QKeras's format has at least the sign as integer bit); ``Relu -> Quant(unsigned)`` becomes
  ``QActivation(quantized_relu(bits, bits - f))``, which rounds (half to even, as Brevitas's ``ROUND``) and
  saturates exactly as the ``Quant`` does. Only what has an exact fixed-point form is taken: per-tensor scales that
  are powers of two (Brevitas's ``*FixedPoint`` quantizers), zero points of 0, ``rounding_mode="ROUND"``, biases
  quantized too (a float bias is refused), no quantizer on the image (the overlay streams ``pixel / 256`` exactly)
  and no signed activation quantizer (``QuantIdentity``); every refusal names the node and what to do instead.

Why this route, not hls4ml's QONNX frontend: that frontend builds an hls4ml model straight from the graph, bypassing
the Keras model this project derives its exact types from, gates the firmware against and exports the ONNX
references from; it also needs the ``qonnx`` package in the host environment. Translating the quantizers into QKeras
keeps every check of the QKeras route and needs only ``onnx``.

Operators: ``Conv`` (any stride, explicit ``pads`` become a ``ZeroPadding2D``; no groups or dilation),
``BatchNormalization``, ``Relu``, ``Add``, ``MaxPool``/``AveragePool`` (no padding), ``GlobalAveragePool``,
``GlobalMaxPool``, ``ReduceMean``/``ReduceMax`` over the spatial axes, ``Flatten`` (and ``Reshape`` to ``[N, -1]``
by a constant shape), ``Gemm`` (``y = x W^T + b`` or ``x W + b``), ``Concat`` on channels, ``Softmax`` last,
``Identity``/``Dropout`` (removed), and QONNX's ``Quant`` as above. A ``Flatten`` of a ``C x H x W`` map flattens
channel-major in PyTorch and channel-minor in Keras: the following ``Gemm``'s rows are permuted so the product is the
same. Anything else is refused naming the node.

Tested with files written by the real exporters (torch 2.13, Brevitas 0.13.4, qonnx 1.0.0; ``byo/pytorch/`` and
``make env-torch``): ``results/byo/torch_resnet8/``'s trained exports are imported by the default tests, and the
``torch``-marked tests re-export and compare where ``.venv-torch`` exists. Small graphs in the export's layout for
the refusals and the operators a ResNet export does not use are made by
``host_tests/hls_build/fixtures/onnx_byo/make_fixtures.py``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from board.errors import ProjectError
from training.keras_compat import keras

L = keras.layers

SUPPORTED_OPS = (
    "Conv, BatchNormalization, Relu, Add, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, ReduceMean/ReduceMax "
    "(spatial axes), Flatten, Reshape (to [N, -1]), Gemm, Concat (channels), Softmax (last), Identity, Dropout, "
    "and QONNX Quant (power-of-two per-tensor scale)"
)
#: Widest fixed-point format a quantized weight or bias may need (the firmware engine's limit, as hls_build.fold).
MAX_CONST_BITS = 32


class OnnxImportError(ProjectError, ValueError):
    """An ONNX graph this translation cannot take (the node and what to do are named)."""


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _is_quant(node: Any) -> bool:
    return node.op_type == "Quant" and (node.domain.startswith("qonnx") or node.domain.startswith("finn"))


def quant_values(x: np.ndarray, scale: float, zero_point: float, bits: int, signed: bool, narrow: bool) -> np.ndarray:
    """QONNX ``Quant`` with ``rounding_mode="ROUND"`` (half to even, as ``torch.round``), in float32 as Brevitas."""
    if signed:
        lo, hi = -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    else:
        lo, hi = 0, 2**bits - 1 - int(narrow)
    s, z = np.float32(scale), np.float32(zero_point)
    q = np.clip(np.round(x.astype(np.float32) / s + z), lo, hi)
    return ((q - z) * s).astype(np.float32)


def exact_format(values: np.ndarray) -> tuple[int, int]:
    """``(total, integer incl. sign)`` of the narrowest signed ``ap_fixed`` holding every value exactly.

    At least the sign as integer bit (QKeras's ``quantized_bits`` counts integer bits without the sign, from 0) and
    at least one fractional bit (so the type has two bits at the least).
    """
    v = np.asarray(values, np.float64).ravel()
    frac = 0
    while frac < 64 and np.any(v * 2.0**frac != np.round(v * 2.0**frac)):
        frac += 1
    frac = max(frac, 1) if frac == 0 else frac  # ap_fixed<1,1> is no type: at least two bits in all
    hi, lo = (float(v.max()), float(v.min())) if v.size else (0.0, 0.0)
    integer = 1  # ap_fixed<W, I> holds [-2^(I-1), 2^(I-1) - 2^-(W-I)]
    while hi > 2.0 ** (integer - 1) - 2.0**-frac or lo < -(2.0 ** (integer - 1)):
        integer += 1
    return integer + frac, integer


class _Quants:
    """The graph's QONNX ``Quant`` nodes: weights quantized here, ReLU outputs kept as quantizers."""

    def __init__(self, graph: Any, inits: dict[str, np.ndarray]) -> None:
        self.const_format: dict[str, tuple[int, int]] = {}  # quantized constant -> (total, integer incl. sign)
        self.relu_quant: dict[str, Any] = {}  # Relu output name -> the Quant node that quantizes it
        self.skip: set[str] = set()  # Quant outputs already handled (constants)
        self.present = False
        consumers: dict[str, list[Any]] = {}
        producers: dict[str, Any] = {}
        for node in graph.node:
            for i in node.input:
                consumers.setdefault(i, []).append(node)
            for o in node.output:
                producers[o] = node
        graph_inputs = {i.name for i in graph.input}
        for node in graph.node:
            if node.domain and node.domain != "ai.onnx" and not _is_quant(node):
                raise OnnxImportError(
                    f"node {node.name or node.output[0]!r} ({node.domain}.{node.op_type}): operator "
                    f"{node.op_type} is not supported; of QONNX's operators only Quant (per-tensor, power-of-two "
                    "scale) is, e.g. Brevitas's *FixedPoint quantizers with bit widths >= 2"
                )
            if not _is_quant(node):
                continue
            self.present = True
            where = f"node {node.name or node.output[0]!r} (Quant)"
            params = []
            for i, what in zip(node.input[1:4], ("scale", "zero point", "bit width")):
                if i not in inits:
                    raise OnnxImportError(f"{where}: its {what} is computed, not a constant; export the model in "
                                          "evaluation mode and run qonnx's cleanup (qonnx.util.cleanup)")  # fmt: skip
                params.append(np.asarray(inits[i], np.float64))
            scale, zp, bw = params
            a = _attrs(node)
            if scale.size != 1:
                raise OnnxImportError(
                    f"{where}: a per-channel scale ({scale.size} values); hls4ml 1.3 gives a layer one weight type, "
                    "so use a per-tensor quantizer (e.g. Brevitas's Int8WeightPerTensorFixedPoint)"
                )
            s = float(scale.ravel()[0])
            if s <= 0 or math.log2(s) != round(math.log2(s)):
                raise OnnxImportError(
                    f"{where}: scale {s!r} is not a power of two, so its values have no exact fixed-point form; "
                    "use power-of-two (fixed-point) quantizers, e.g. Brevitas's Int8WeightPerTensorFixedPoint, "
                    "Uint8ActPerTensorFixedPoint, Int8BiasPerTensorFixedPointInternalScaling"
                )
            if np.any(zp != 0):
                raise OnnxImportError(f"{where}: zero point {zp.ravel().tolist()}; only 0 (symmetric) is supported")
            if bw.size != 1 or float(bw.ravel()[0]) != int(bw.ravel()[0]) or int(bw.ravel()[0]) < 2:
                raise OnnxImportError(f"{where}: bit width {bw.ravel().tolist()}; an integer >= 2 is needed")
            bits = int(bw.ravel()[0])
            rounding = a.get("rounding_mode", b"ROUND")
            rounding = rounding.decode() if isinstance(rounding, bytes) else str(rounding)
            if rounding != "ROUND":
                raise OnnxImportError(f"{where}: rounding_mode {rounding}; only ROUND (half to even) is supported")
            signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
            src = node.input[0]
            if src in inits:  # a weight or bias: quantized once, here
                q = quant_values(inits[src], s, 0.0, bits, signed, narrow)
                total, integer = exact_format(q)
                if total > MAX_CONST_BITS:
                    raise OnnxImportError(f"{where}: its values need a {total}-bit fixed-point type (at most "
                                          f"{MAX_CONST_BITS}); use a narrower quantizer or a larger scale")  # fmt: skip
                inits[node.output[0]] = q
                self.const_format[node.output[0]] = (total, integer)
                self.skip.add(node.output[0])
                continue
            prod = producers.get(src)
            if src in graph_inputs:
                raise OnnxImportError(
                    f"{where}: a quantizer on the image; the overlay streams pixel / 256 exactly, so remove it "
                    "(train on pixel / 256, or pixel / 2^m, and give that scale with --input-scale)"
                )
            if prod is None or prod.op_type != "Relu" or len(consumers.get(src, [])) != 1:
                raise OnnxImportError(
                    f"{where}: quantizes the output of {prod.op_type if prod is not None else src!r}; only a ReLU's "
                    "output (Brevitas QuantReLU) is supported as an activation quantizer, not QuantIdentity or "
                    "QuantHardTanh"
                )
            if signed or narrow:
                raise OnnxImportError(f"{where}: a ReLU output quantized signed={int(signed)}, narrow={int(narrow)}; "
                                      "use an unsigned quantizer, not narrow: Uint8ActPerTensorFixedPoint")  # fmt: skip
            integer = bits + int(round(math.log2(s)))
            if integer < 0:
                raise OnnxImportError(
                    f"{where}: ReLU output scale 2^{int(round(math.log2(s)))} at {bits} bits has {integer} integer "
                    "bits; QKeras's quantized_relu needs at least 0 (a largest value of at least 1 - 2^-bits): "
                    "retrain with a wider activation range"
                )
            self.relu_quant[src] = (node, bits, integer)


def onnx_to_keras(path: str | Path) -> keras.Model:
    """Translate an NCHW ONNX or QONNX CNN for 3x32x32 images into a Keras model (NHWC) with the same function.

    A float graph gives a float Keras model; a QONNX graph (with ``Quant`` nodes) a QKeras model whose quantizers
    compute what the ``Quant`` nodes compute.

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
        elif node.op_type == "Identity" and node.input[0] in inits:  # TorchScript's alias of a shared weight
            inits[node.output[0]] = inits[node.input[0]]
    quants = _Quants(g, inits)
    if quants.present:
        from qkeras import QActivation, QConv2D, QDense
        from qkeras.quantizers import quantized_relu

        from hls_build.fold import _qbits_config

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

    def quantizers(node: Any, where: str, w_name: str, b_name: str | None) -> dict[str, Any]:
        """QKeras kernel/bias quantizers of a layer in a QONNX graph (its weights must all be quantized)."""
        for name, what in ((w_name, "weight"), (b_name, "bias")):
            if name and name not in quants.const_format:
                raise OnnxImportError(
                    f"{where}: its {what} is not quantized (no Quant node on it); in a QONNX graph every weight and "
                    "bias needs a power-of-two quantizer, e.g. Brevitas's bias_quant="
                    "Int8BiasPerTensorFixedPointInternalScaling (bit_width 16)"
                )
        out = {"kernel_quantizer": _qbits_config(*quants.const_format[w_name])}
        if b_name:
            out["bias_quantizer"] = _qbits_config(*quants.const_format[b_name])
        return out

    def dense(node: Any, name: str, x: Any, kernel: np.ndarray, b_name: str | None, w_name: str) -> Any:
        if node.input[0] in flat_from:
            c, h, w_ = flat_from[node.input[0]]
            # PyTorch row index c*H*W + h*W + w; Keras Flatten of NHWC gives h*W*C + w*C + c.
            order = np.arange(c * h * w_).reshape(c, h, w_).transpose(1, 2, 0).reshape(-1)
            kernel = kernel[order]
        b = const(b_name, node) if b_name else None
        if quants.present:
            layer = QDense(kernel.shape[1], use_bias=b is not None, name=_k(name),
                           **quantizers(node, f"node {name!r} ({node.op_type})", w_name, b_name))  # fmt: skip
        else:
            layer = L.Dense(kernel.shape[1], use_bias=b is not None, name=_k(name))
        weights.append((layer, [kernel] + ([b.astype(np.float32)] if b is not None else [])))
        return layer(x)

    skip_nodes: set[int] = set()
    for idx, node in enumerate(g.node):
        op, a, name = node.op_type, _attrs(node), node.name or node.output[0]
        where = f"node {name!r} ({op})"
        if op == "Constant" or idx in skip_nodes or (_is_quant(node) and node.output[0] in quants.skip):
            continue
        if op == "Identity" and node.input[0] in inits:
            continue
        x = t.get(node.input[0]) if node.input else None
        if x is None:
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
            b_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
            b = const(b_name, node) if b_name else None
            kw = dict(strides=tuple(a.get("strides", [1, 1])), padding="valid", use_bias=b is not None, name=_k(name))
            if quants.present:
                layer = QConv2D(w.shape[0], tuple(w.shape[2:]), **kw, **quantizers(node, where, node.input[1], b_name))
            else:
                layer = L.Conv2D(w.shape[0], tuple(w.shape[2:]), **kw)
            y = layer(x)
            weights.append((layer, [w.transpose(2, 3, 1, 0)] + ([b] if b is not None else [])))
        elif op == "BatchNormalization":
            gamma, beta, mean, var = (const(i, node) for i in node.input[1:5])
            layer = L.BatchNormalization(epsilon=float(a.get("epsilon", 1e-5)), name=_k(name))
            y = layer(x)
            weights.append((layer, [gamma, beta, mean, var]))
        elif op == "Relu":
            if node.output[0] in quants.relu_quant:  # Relu -> Quant: one quantized ReLU, named after the Quant
                qnode, bits, integer = quants.relu_quant[node.output[0]]
                qname = qnode.name or qnode.output[0]
                y = QActivation(quantized_relu(bits, integer), name=_k(qname))(x)
                t[qnode.output[0]] = y
                skip_nodes.add(list(g.node).index(qnode))
            else:
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
        elif op in ("ReduceMean", "ReduceMax"):
            # torch.export writes x.mean((2, 3), keepdim=True) / AdaptiveAvgPool2d(1) as ReduceMean over H, W.
            axes = a.get("axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                axes = const(node.input[1], node).tolist()
            if len(x.shape) != 4 or sorted(int(v) % 4 for v in (axes or [])) != [2, 3]:
                raise OnnxImportError(f"{where}: {op} over axes {axes}; only over the spatial axes (2, 3) as a "
                                      "global pooling")  # fmt: skip
            cls = L.GlobalAveragePooling2D if op == "ReduceMean" else L.GlobalMaxPooling2D
            y = cls(keepdims=bool(a.get("keepdims", 1)), name=_k(name))(x)
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
            y = L.Flatten(name=_k(name))(x) if len(x.shape) != 2 else x
            if node.input[0] in flat_from:
                flat_from[node.output[0]] = flat_from[node.input[0]]
        elif op == "Gemm":
            w = const(node.input[1], node).astype(np.float32)
            if a.get("transA", 0) or float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0:
                raise OnnxImportError(f"{where}: only y = x W^T + b (transA=0, alpha=beta=1) is supported")
            kernel = w.T if a.get("transB", 0) else w  # (n_in, n_out)
            b_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
            y = dense(node, name, x, kernel, b_name, node.input[1])
        elif op == "Softmax":
            if node is not last:
                raise OnnxImportError(f"{where}: Softmax is supported only as the last node")
            y = L.Softmax(name=_k(name))(x)
        elif op in ("Identity", "Dropout"):
            y = x
        elif _is_quant(node):  # an activation Quant not after a ReLU was refused in _Quants
            raise OnnxImportError(f"{where}: a Quant this import cannot place")
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
    custom: dict[str, Any] = {}
    if any(e["class_name"].startswith("Q") for e in config["layers"]):
        from qkeras.utils import _add_supported_quantized_objects

        _add_supported_quantized_objects(custom)
        for e in config["layers"]:  # QKeras parses quantizers given as strings (its live configs hold dicts)
            layer = model.get_layer(e["name"])
            for key, attr in (("kernel_quantizer", "kernel_quantizer_internal"),
                              ("bias_quantizer", "bias_quantizer_internal"), ("activation", "quantizer")):  # fmt: skip
                if e["class_name"].startswith("Q") and getattr(layer, attr, None) is not None:
                    e["config"][key] = str(getattr(layer, attr))
    with keras.utils.custom_object_scope(custom):
        out = keras.Model.from_config(config)
    for layer in out.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return out


def _k(name: str) -> str:
    """A Keras layer name from an ONNX node name (``/layer1/conv/Conv`` -> ``layer1_conv_Conv``)."""
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in str(name)).strip("_")
    return s if s and not s[0].isdigit() else f"n_{s}"
