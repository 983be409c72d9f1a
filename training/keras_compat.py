"""The one place that prepares TensorFlow, tf-keras, QKeras and hls4ml to work together.

TF 2.21 ships Keras 3, but QKeras 0.9.0 and hls4ml's QKeras parser need Keras 2 (``tf-keras``). Two things must
happen before anything imports TensorFlow or hls4ml:

* ``TF_USE_LEGACY_KERAS=1``, so ``tf.keras`` is tf-keras;
* ``sys.modules["keras"] = tf_keras``, or hls4ml picks its Keras-3 parser and fails
  (``'Node' object has no attribute 'arguments'``).

Every host entry point imports this module first; the rest of the code imports ``keras`` from here.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ start-up chatter hides the messages users need to see.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_keras as keras  # noqa: E402

sys.modules["keras"] = keras

import tensorflow as tf  # noqa: E402

__all__ = ["keras", "tf"]
