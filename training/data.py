"""CIFAR-10 input pipelines for training: the scaling stored with the model, pad-4 random crop and horizontal flip.

Preprocessing is one fixed affine map, ``x = pixel * INPUT_SCALE + INPUT_OFFSET`` with ``INPUT_SCALE = 1/256``: every
pixel value is then exactly representable as ``ap_ufixed<8,0>``, so the FPGA's input stream carries the raw uint8
pixels unchanged and the Keras model, the ONNX reference and the hardware all see bit-identical inputs. Per-channel
normalisation is left to the stem's BatchNormalization, which hls_build folds into fixed point.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import numpy as np

from board.cifar10 import Split, load_split
from training.keras_compat import tf

INPUT_SCALE = 1.0 / 256.0
INPUT_OFFSET = 0.0
#: The hls4ml type that holds every preprocessed pixel exactly (raw bits == the uint8 pixel).
INPUT_FIXED_POINT = "ap_ufixed<8,0>"


#: An imported model's own input stream, when it is not this project's (``hls_build.ptq``: a per-channel mean
#: subtracted before a first convolution that zero-pads): ``(fixed-point type, manifest preprocessing)``, set with
#: :func:`model_input` while that model is quantized or bundled. None: ``INPUT_FIXED_POINT`` and pixel / 256.
_MODEL_INPUT: contextvars.ContextVar[tuple[str, dict] | None] = contextvars.ContextVar("model_input", default=None)


@contextlib.contextmanager
def model_input(fixed_point: str | None, preprocessing: dict | None) -> Iterator[None]:
    """Within the block, :func:`input_fixed_point`, :func:`preprocessing_spec` and :func:`preprocess` are those given.

    An imported model records its own in ``config.json`` (``input_fixed_point``, ``preprocessing``); the bundle
    build and the import run inside this so the exact-type derivation, the gate images and the manifest follow it.
    With ``fixed_point`` None, nothing changes (this project's own input).
    """
    token = _MODEL_INPUT.set(None if fixed_point is None else (fixed_point, dict(preprocessing or {})))
    try:
        yield
    finally:
        _MODEL_INPUT.reset(token)


def input_fixed_point() -> str:
    """The input stream's fixed-point type: ``INPUT_FIXED_POINT`` unless inside :func:`model_input`."""
    current = _MODEL_INPUT.get()
    return INPUT_FIXED_POINT if current is None else current[0]


def preprocessing_spec() -> dict:
    """The preprocessing as recorded in a bundle manifest (``board`` applies it from there)."""
    current = _MODEL_INPUT.get()
    if current is not None:
        return dict(current[1])
    return {
        "input_scale": INPUT_SCALE,
        "input_offset": INPUT_OFFSET,
        "layout": "NHWC",
        "channel_order": "RGB",
        "pixel_dtype": "uint8",
    }


def preprocess(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC pixels -> float32 model input (:func:`preprocessing_spec`'s)."""
    current = _MODEL_INPUT.get()
    if current is not None:
        from board.preprocess import Preprocessing

        return Preprocessing.from_dict(current[1]).to_float(images)
    return images.astype(np.float32) * np.float32(INPUT_SCALE) + np.float32(INPUT_OFFSET)


def _augment(image: tf.Tensor) -> tf.Tensor:
    # He et al.: pad 4 pixels on each side, take a random 32x32 crop, flip horizontally with p = 0.5.
    image = tf.pad(image, [[4, 4], [4, 4], [0, 0]])
    image = tf.image.random_crop(image, [32, 32, 3])
    return tf.image.random_flip_left_right(image)


def train_dataset(split: Split, batch_size: int, seed: int, augment: bool = True) -> tf.data.Dataset:
    """Shuffled, augmented, batched training data (one pass = one epoch).

    Args:
        split: training images (uint8) and labels.
        batch_size: examples per step.
        seed: shuffle and augmentation seed.
        augment: apply pad-4 random crop and horizontal flip.
    """
    ds = tf.data.Dataset.from_tensor_slices((preprocess(split.images), split.labels.astype(np.int32)))
    ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    if augment:
        ds = ds.map(lambda x, y: (_augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def eval_dataset(split: Split, batch_size: int = 500) -> tf.data.Dataset:
    """Batched evaluation data in the split's order."""
    ds = tf.data.Dataset.from_tensor_slices((preprocess(split.images), split.labels.astype(np.int32)))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def run_splits(
    train_split: Split | None, test_split: Split | None, train_limit: int = 0, test_limit: int = 0
) -> tuple[Split, Split]:
    """The training and test images a run uses: the given splits (loaded when None), cut to their limits (0: all)."""
    train_split = train_split if train_split is not None else load_split("train")
    test_split = test_split if test_split is not None else load_split("test")
    if train_limit:
        train_split = train_split.head(train_limit)
    if test_limit:
        test_split = test_split.head(test_limit)
    return train_split, test_split
