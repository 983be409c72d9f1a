"""Read a Keras 3 ``.keras`` file into the tf-keras (Keras 2) model this project's QKeras/hls4ml stack needs.

TF 2.21 ships Keras 3 as ``keras``, but QKeras and hls4ml's QKeras parser run on tf-keras
(``training.keras_compat``), which cannot deserialize a Keras 3 file (``Could not deserialize class
'Functional'``). So the file is read by Keras 3 itself, in a child process (the two cannot share one), which writes
each layer's class, config, inbound layers and weights; this process rebuilds the same functional model from them
with tf-keras layers. Only what inference needs crosses over: initializers, regularizers, constraints and dtype
policies are dropped. Layers whose class tf-keras lacks are refused by name.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from board.errors import ProjectError

_CHILD = r"""
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "0"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras

src, out = sys.argv[1], sys.argv[2]
model = keras.saving.load_model(src, compile=False)
cfg = model.get_config()

def history(obj, acc):
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            acc.append(obj["config"]["keras_history"][0])
        else:
            for v in obj.values():
                history(v, acc)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            history(v, acc)
    return acc

layers, arrays = [], {}
for i, (entry, layer) in enumerate(zip(cfg["layers"], model.layers)):
    inbound = history([n.get("args", n) for n in entry.get("inbound_nodes", [])], [])
    layers.append({"class_name": entry["class_name"], "name": layer.name, "config": layer.get_config(),
                   "inbound": inbound, "n_weights": len(layer.get_weights())})
    for j, w in enumerate(layer.get_weights()):
        arrays[f"{i}_{j}"] = w
outs = cfg["output_layers"]
outputs = [o[0] for o in (outs if isinstance(outs[0], list) else [outs])]
json.dump({"name": model.name, "layers": layers, "outputs": outputs}, open(out + ".json", "w"), default=str)
np.savez(out + ".npz", **arrays)
"""

#: Config keys that only matter for training or that Keras 3 writes in a form tf-keras does not read.
_DROP = ("dtype", "kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer",
         "activity_regularizer", "kernel_constraint", "bias_constraint", "beta_initializer", "gamma_initializer",
         "moving_mean_initializer", "moving_variance_initializer", "beta_regularizer", "gamma_regularizer",
         "beta_constraint", "gamma_constraint", "quantization_config", "synchronized", "build_config",
         "depthwise_initializer", "pointwise_initializer", "depthwise_regularizer", "pointwise_regularizer",
         "depthwise_constraint", "pointwise_constraint")  # fmt: skip


class Keras3ReadError(ProjectError, ValueError):
    """A Keras 3 file that cannot be rebuilt with tf-keras (the layer is named)."""


def is_keras3_file(path: str | Path) -> bool:
    """Whether ``path`` is a Keras 3 ``.keras`` archive (its ``metadata.json`` says ``keras_version`` 3.x)."""
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("metadata.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return False
    return str(meta.get("keras_version", "")).startswith("3.")


def load_keras3_model(path: str | Path) -> Any:
    """Read a Keras 3 ``.keras`` file as a tf-keras functional model with the same layers and weights.

    Raises:
        Keras3ReadError: Keras 3 cannot read the file, or a layer has no tf-keras counterpart.
    """
    from training.keras_compat import keras

    with tempfile.TemporaryDirectory() as tmp:
        base = str(Path(tmp) / "model")
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        res = subprocess.run([sys.executable, "-c", _CHILD, str(path), base], capture_output=True, text=True, env=env)
        if res.returncode:
            last = (res.stderr.strip().splitlines() or ["no message"])[-1]
            raise Keras3ReadError(f"{path}: Keras 3 could not read it ({last})")
        desc = json.loads(Path(base + ".json").read_text())
        arrays = dict(np.load(base + ".npz"))
    tensors: dict[str, Any] = {}
    built: list[tuple[Any, int]] = []
    inputs = []
    for i, spec in enumerate(desc["layers"]):
        kind, name, cfg = spec["class_name"], spec["name"], dict(spec["config"])
        if kind == "InputLayer":
            shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
            t = keras.Input(tuple(shape[1:]), name=name)
            tensors[name] = t
            inputs.append(t)
            continue
        cls = getattr(keras.layers, kind, None)
        if cls is None:
            raise Keras3ReadError(f"{name}: layer class {kind} has no tf-keras counterpart")
        accepted = set(inspect.signature(cls.__init__).parameters) | {"name", "trainable"}
        kwargs = {k: v for k, v in cfg.items() if k not in _DROP and k in accepted}
        for k in ("kernel_size", "strides", "pool_size", "dilation_rate", "padding", "target_shape", "cropping"):
            if isinstance(kwargs.get(k), list):
                kwargs[k] = tuple(tuple(v) if isinstance(v, list) else v for v in kwargs[k])
        try:
            layer = cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise Keras3ReadError(f"{name}: {kind} could not be rebuilt with tf-keras ({exc})") from exc
        ins = [tensors[n] for n in spec["inbound"]]
        tensors[name] = layer(ins if len(ins) > 1 else ins[0])
        built.append((layer, i))
    model = keras.Model(inputs, [tensors[n] for n in desc["outputs"]] if len(desc["outputs"]) > 1
                        else tensors[desc["outputs"][0]], name=desc["name"])  # fmt: skip
    for layer, i in built:
        n = desc["layers"][i]["n_weights"]
        if n:
            layer.set_weights([arrays[f"{i}_{j}"] for j in range(n)])
    return model
