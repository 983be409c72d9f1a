"""Bring your own model saved by Keras 3 (``.keras``): rebuilt with tf-keras layers, same function and weights."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from hls_build.keras3_bridge import Keras3ReadError, is_keras3_file
from hls_build.ptq import check_float_model, load_model_file

_MAKE = r"""
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "0"
import numpy as np, keras
keras.utils.set_random_seed(0)
L = keras.layers
inp = keras.Input((32, 32, 3))
x = L.Conv2D(8, 3, strides=2, padding="valid", use_bias=False)(L.ZeroPadding2D(1)(inp))
x = L.ReLU()(L.BatchNormalization()(x))
y = L.Conv2D(8, 3, padding="same", activation="relu")(x)
x = L.Add()([x, y])
x = L.AveragePooling2D(2)(L.MaxPooling2D(2)(x))
x = L.Concatenate()([L.GlobalAveragePooling2D()(x), L.GlobalMaxPooling2D()(x)])
model = keras.Model(inp, L.Dense(10, activation="softmax")(L.Dropout(0.1)(x)))
bn = model.layers[3]
bn.set_weights([w + np.float32(0.3) for w in bn.get_weights()])
model.save(sys.argv[1])
x = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype("float32")
np.save(sys.argv[2], x)
np.save(sys.argv[3], model.predict(x, verbose=0))
"""


@pytest.fixture(scope="module")
def keras3_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("k3")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    files = [tmp / "model.keras", tmp / "x.npy", tmp / "y.npy"]
    res = subprocess.run([sys.executable, "-c", _MAKE, *map(str, files)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    return files


def test_keras3_file_is_rebuilt_with_the_same_function(keras3_file):
    path, x, y = keras3_file
    assert is_keras3_file(path)
    model = load_model_file(path)
    check_float_model(model)  # the import takes it
    np.testing.assert_allclose(model.predict(np.load(x), verbose=0), np.load(y), rtol=1e-5, atol=1e-6)


def test_unreadable_keras3_file_is_refused(tmp_path):
    import zipfile

    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("metadata.json", '{"keras_version": "3.15.1"}')
    with pytest.raises(Keras3ReadError, match="Keras 3 could not read it"):
        load_model_file(bad)


_MAKE_DEPTHWISE = r"""
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "0"
import numpy as np, keras
keras.utils.set_random_seed(0)
L = keras.layers
inp = keras.Input((32, 32, 3))
x = L.SeparableConv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)))
model = keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x)))
model.save(sys.argv[1])
x = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype("float32")
np.save(sys.argv[2], x)
np.save(sys.argv[3], model.predict(x, verbose=0))
"""


def test_keras3_depthwise_and_separable_are_rebuilt_with_the_same_function(tmp_path):
    """Keras 3 writes depthwise/pointwise initializers tf-keras cannot read: dropped, the weights carried over."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    path, x, y = tmp_path / "dw.keras", tmp_path / "x.npy", tmp_path / "y.npy"
    res = subprocess.run([sys.executable, "-c", _MAKE_DEPTHWISE, str(path), str(x), str(y)], capture_output=True,
                         text=True, env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    model = load_model_file(path)
    check_float_model(model)
    assert {type(lyr).__name__ for lyr in model.layers} >= {"SeparableConv2D", "DepthwiseConv2D"}
    np.testing.assert_allclose(model.predict(np.load(x), verbose=0), np.load(y), rtol=1e-5, atol=1e-6)
