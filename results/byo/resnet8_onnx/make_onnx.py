"""Write ``results/byo/resnet8_avgpool_raw``'s Keras ResNet-8 as an NCHW ONNX graph, to run the ONNX route at scale.

Not a PyTorch export (no PyTorch here): the same trained network written with the operators and layout
``torch.onnx.export`` uses (NCHW ``Conv`` with explicit ``pads``, ``BatchNormalization``, ``Relu``, ``Add``,
``AveragePool``, ``Flatten``, ``Gemm(transB=1)``, ``Softmax``; opset 17). Keras's ``same`` padding of a stride-2
convolution pads one pixel at the bottom/right only, so those convolutions get asymmetric ``pads`` (a PyTorch
model would pad symmetrically: a different function). The script checks the ONNX graph against the Keras model on
test images with onnxruntime and prints the largest difference.

Run from the repository root (``PYTHONPATH=.``, ``CIFAR10_DIR`` set)::

    .venv-host/bin/python results/byo/resnet8_onnx/make_onnx.py results/byo/resnet8_avgpool_raw/model.h5 \
        build/byo/resnet8_onnx.onnx
"""

from __future__ import annotations

import math
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.keras_compat import keras


def _pads(layer) -> list[int]:
    if layer.padding == "valid":
        return [0, 0, 0, 0]
    pads = []
    for dim in (0, 1):
        n, k, s = layer.input_shape[1 + dim], layer.kernel_size[dim], layer.strides[dim]
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    (t, b), (left, r) = pads
    return [t, left, b, r]


def to_onnx(model: keras.Model) -> onnx.ModelProto:
    """The Keras model as an NCHW ONNX graph (the layers results/byo/resnet8_avgpool_raw uses)."""
    nodes, inits, out_of = [], [], {}

    def init(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    for layer in model.layers:
        kind, name = type(layer).__name__, layer.name
        ins = [out_of[n.name] for n in _inbound(layer)]
        out = f"/{name}/{kind}_output_0"
        if kind == "InputLayer":
            out_of[name] = "input"
            continue
        if kind == "Conv2D":
            w, *b = layer.get_weights()
            args = [ins[0], init(f"{name}.weight", w.transpose(3, 2, 0, 1))] + (
                [init(f"{name}.bias", b[0])] if b else []
            )
            nodes.append(
                helper.make_node(
                    "Conv",
                    args,
                    [out],
                    name=f"/{name}/Conv",
                    kernel_shape=list(layer.kernel_size),
                    strides=list(layer.strides),
                    pads=_pads(layer),
                    dilations=[1, 1],
                    group=1,
                )
            )
        elif kind == "BatchNormalization":
            g, be, m, v = layer.get_weights()
            args = [
                ins[0],
                init(f"{name}.weight", g),
                init(f"{name}.bias", be),
                init(f"{name}.running_mean", m),
                init(f"{name}.running_var", v),
            ]
            nodes.append(
                helper.make_node(
                    "BatchNormalization", args, [out], name=f"/{name}/BatchNormalization", epsilon=float(layer.epsilon)
                )
            )
        elif kind in ("Activation", "ReLU"):
            assert kind == "ReLU" or layer.get_config()["activation"] == "relu"
            nodes.append(helper.make_node("Relu", ins, [out], name=f"/{name}/Relu"))
        elif kind == "Add":
            nodes.append(helper.make_node("Add", ins, [out], name=f"/{name}/Add"))
        elif kind == "AveragePooling2D":
            nodes.append(
                helper.make_node(
                    "AveragePool",
                    ins,
                    [out],
                    name=f"/{name}/AveragePool",
                    kernel_shape=list(layer.pool_size),
                    strides=list(layer.strides),
                    pads=[0, 0, 0, 0],
                    ceil_mode=0,
                )
            )
        elif kind == "Flatten":
            assert layer.input_shape[1:3] == (1, 1), "a Flatten of a 1x1 map flattens alike in NCHW and NHWC"
            nodes.append(helper.make_node("Flatten", ins, [out], name=f"/{name}/Flatten", axis=1))
        elif kind == "Dense":
            w, b = layer.get_weights()
            gemm = out if layer.get_config()["activation"] == "linear" else f"/{name}/Gemm_output_0"
            nodes.append(
                helper.make_node(
                    "Gemm",
                    [ins[0], init(f"{name}.weight", w.T), init(f"{name}.bias", b)],
                    [gemm],
                    name=f"/{name}/Gemm",
                    alpha=1.0,
                    beta=1.0,
                    transB=1,
                )
            )
            if gemm != out:
                assert layer.get_config()["activation"] == "softmax"
                nodes.append(helper.make_node("Softmax", [gemm], [out], name=f"/{name}/Softmax", axis=1))
        else:
            raise ValueError(f"{name}: {kind} is not written by this script")
        out_of[name] = out
    graph = helper.make_graph(
        nodes,
        "main_graph",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info(out_of[model.layers[-1].name], TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="keras-to-nchw")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _inbound(layer):
    nodes = layer._inbound_nodes
    if not nodes:
        return []
    inb = nodes[0].inbound_layers
    return list(inb) if isinstance(inb, (list, tuple)) else [inb]


def main() -> None:
    """Write the ONNX file and check it against the Keras model on 1,000 test images."""
    import onnxruntime as ort

    from board.cifar10 import load_split

    src, dst = sys.argv[1], sys.argv[2]
    model = keras.models.load_model(src, compile=False)
    m = to_onnx(model)
    onnx.save(m, dst)
    x = load_split("test").head(1000).images.astype(np.float32)  # raw pixels, as the model takes them
    want = model.predict(x, batch_size=250, verbose=0)
    got = ort.InferenceSession(dst).run(None, {"input": x.transpose(0, 3, 1, 2)})[0]
    print(
        f"{dst}: onnxruntime vs Keras on 1000 test images: max |diff| {np.abs(got - want).max():.3g}, "
        f"argmax agreement {np.mean(got.argmax(1) == want.argmax(1)):.4f}"
    )


if __name__ == "__main__":
    main()
