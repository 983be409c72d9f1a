"""Magnitude pruning (Han et al., NIPS 2015) with masks that keep pruned weights at exactly zero through retraining.

Two per-layer thresholds, as in the seeds' ``prune_by_percentile`` / ``prune_by_std``:

* :func:`percentile_mask`: prune the weights whose magnitude is below the ``q``-th percentile of the layer's
  nonzero magnitudes (``q = 80`` prunes 80 % of them);
* :func:`sensitivity_mask`: prune the weights whose magnitude is below ``s`` times the standard deviation of the
  layer's weights (Han et al.'s "quality parameter multiplied by the standard deviation").

Both are pure numpy. The Keras glue prunes a model's kernels (conv and dense; QKeras layers too) and keeps them
pruned: :class:`MaskCallback` re-applies the masks after every training step, so a pruned weight is exactly zero
after any number of steps, whatever the optimizer's momentum holds. QKeras layers train a float kernel and quantize
it in the forward pass; their quantizers map 0 to 0 (tested), so a zero kernel entry is a zero deployed weight.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from training.compression.errors import CompressionError
from training.keras_compat import keras, tf

PRUNE_METHODS = ("percentile", "sensitivity")


def _check_percentile(q: float) -> float:
    if isinstance(q, bool) or not isinstance(q, (int, float, np.floating, np.integer)) or not math.isfinite(q):
        raise CompressionError(f"percentile must be a number in [0, 100], got {q!r}")
    if not 0 <= q <= 100:
        raise CompressionError(f"percentile must be in [0, 100], got {q:g}")
    return float(q)


def _check_sensitivity(s: float) -> float:
    if isinstance(s, bool) or not isinstance(s, (int, float, np.floating, np.integer)) or not math.isfinite(s):
        raise CompressionError(f"sensitivity must be a finite number >= 0, got {s!r}")
    if s < 0:
        raise CompressionError(f"sensitivity must be >= 0, got {s:g}")
    return float(s)


def percentile_mask(weights: np.ndarray, q: float) -> np.ndarray:
    """Keep-mask of the weights at or above the ``q``-th percentile of the nonzero magnitudes.

    Args:
        weights: a layer's weights, any shape.
        q: percentile in [0, 100] (numpy's linear interpolation); 0 keeps every nonzero weight, 100 only the largest.

    Returns:
        bool array of ``weights``' shape: True where the weight is kept. Weights that are already zero stay pruned.

    Raises:
        ValueError: ``q`` outside [0, 100] or not a number.
    """
    q = _check_percentile(q)
    w = np.asarray(weights)
    alive = w != 0
    if not alive.any():
        return alive
    threshold = np.percentile(np.abs(w[alive]), q)
    return alive & (np.abs(w) >= threshold)


def sensitivity_mask(weights: np.ndarray, s: float) -> np.ndarray:
    """Keep-mask of the weights whose magnitude is at least ``s`` times the layer's standard deviation.

    Args:
        weights: a layer's weights, any shape.
        s: sensitivity (Han et al.'s quality parameter), >= 0; the standard deviation is over all of the layer's
            weights (population, ``ddof=0``), as in the seeds' ``prune_by_std``.

    Returns:
        bool array of ``weights``' shape: True where the weight is kept. Weights that are already zero stay pruned.

    Raises:
        ValueError: ``s`` negative or not a finite number.
    """
    s = _check_sensitivity(s)
    w = np.asarray(weights)
    threshold = s * float(np.std(w))
    return (w != 0) & (np.abs(w) >= threshold)


def prune_mask(weights: np.ndarray, method: str, value: float) -> np.ndarray:
    """:func:`percentile_mask` or :func:`sensitivity_mask` by name."""
    if method == "percentile":
        return percentile_mask(weights, value)
    if method == "sensitivity":
        return sensitivity_mask(weights, value)
    raise CompressionError(f"unknown pruning method {method!r}; use one of {PRUNE_METHODS}")


@dataclass(frozen=True)
class PruneSpec:
    """How to prune: a method, its value for every layer, and per-layer overrides.

    Attributes:
        method: ``percentile`` or ``sensitivity``.
        value: the percentile (0..100) or sensitivity (>= 0).
        overrides: ``{layer name: value}`` for layers pruned differently (e.g. a sensitive first layer).
    """

    method: str
    value: float
    overrides: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in PRUNE_METHODS:
            raise CompressionError(f"unknown pruning method {self.method!r}; use one of {PRUNE_METHODS}")
        check = _check_percentile if self.method == "percentile" else _check_sensitivity
        check(self.value)
        for v in self.overrides.values():
            check(v)

    @classmethod
    def parse(cls, text: str, overrides: Mapping[str, float] | None = None) -> PruneSpec:
        """Parse ``percentile:80`` or ``sensitivity:0.75``.

        Raises:
            ValueError: another form, an unknown method or a value out of range.
        """
        method, sep, value = text.partition(":")
        if not sep:
            raise CompressionError(f"--prune takes METHOD:VALUE, e.g. percentile:80 or sensitivity:0.75; got {text!r}")
        try:
            number = float(value)
        except ValueError as exc:
            raise CompressionError(f"pruning value {value!r} is not a number") from exc
        return cls(method.strip(), number, dict(overrides or {}))

    def value_for(self, layer: str) -> float:
        """The value used for ``layer``."""
        return float(self.overrides.get(layer, self.value))


def has_kernel(layer: keras.layers.Layer) -> bool:
    """Whether a layer has a trainable ``kernel`` (conv and dense layers, QKeras ones included)."""
    return isinstance(getattr(layer, "kernel", None), tf.Variable)


def kernel_layers(model: keras.Model, names: Iterable[str] | None = None) -> list[keras.layers.Layer]:
    """The layers whose kernels are pruned and shared: all conv/dense layers, or the ones named.

    Raises:
        ValueError: a named layer that does not exist, or one without a kernel (an activation, BatchNorm, ...).
    """
    if names is None:
        return [layer for layer in model.layers if has_kernel(layer)]
    out = []
    available = [layer.name for layer in model.layers if has_kernel(layer)]
    for name in names:
        try:
            layer = model.get_layer(name)
        except ValueError as exc:
            msg = f"no layer named {name!r} in {model.name}; layers with weights: {available}"
            raise CompressionError(msg) from exc
        if not has_kernel(layer):
            raise CompressionError(
                f"layer {name!r} ({type(layer).__name__}) has no kernel to prune or share; "
                f"layers with kernels: {available}"
            )
        out.append(layer)
    return out


def effective_kernel(layer: keras.layers.Layer) -> np.ndarray:
    """The kernel the layer computes with: quantized for QKeras layers, the float kernel otherwise."""
    quantizer = getattr(layer, "kernel_quantizer_internal", None)
    kernel = layer.kernel
    if quantizer is None:
        return kernel.numpy()
    return np.asarray(quantizer(kernel), dtype=kernel.dtype.as_numpy_dtype)


def prune_model(
    model: keras.Model,
    method: str,
    value: float,
    layers: Iterable[str] | None = None,
    overrides: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Prune the kernels of ``model`` in place by magnitude and return the keep-masks.

    Every value is checked before any weight changes, so a bad argument leaves the model untouched.

    Args:
        model: a Keras/QKeras model.
        method: ``percentile`` or ``sensitivity``.
        value: percentile in [0, 100] or sensitivity >= 0, for every layer.
        layers: names of the layers to prune (default: every conv and dense layer).
        overrides: ``{layer name: value}`` for layers pruned with another value.

    Returns:
        ``{layer name: bool keep-mask of the kernel's shape}``.

    Raises:
        ValueError: an unknown method, a value out of range, a named layer that does not exist or has no kernel.
    """
    spec = PruneSpec(method, value, dict(overrides or {}))
    targets = kernel_layers(model, layers)
    names = {layer.name for layer in targets}
    stray = set(spec.overrides) - names
    if stray:
        kernel_layers(model, sorted(stray))  # a clear error for names without a kernel
        raise CompressionError(f"overrides for layers that are not being pruned: {sorted(stray)}")
    masks = {}
    for layer in targets:
        kernel = layer.kernel.numpy()
        masks[layer.name] = prune_mask(kernel, spec.method, spec.value_for(layer.name))
    apply_masks(model, masks)
    return masks


def apply_masks(model: keras.Model, masks: Mapping[str, np.ndarray]) -> None:
    """Set the pruned kernel entries of ``model`` to zero."""
    for name, mask in masks.items():
        kernel = model.get_layer(name).kernel
        kernel.assign(kernel * tf.constant(mask, dtype=kernel.dtype))


class MaskCallback(keras.callbacks.Callback):
    """Keeps pruned weights at exactly zero: masks before training and after every training step.

    Args:
        target: the model whose kernels are masked (may be wrapped in another model that ``fit`` trains).
        masks: ``{layer name: bool keep-mask}`` from :func:`prune_model`.
    """

    def __init__(self, target: keras.Model, masks: Mapping[str, np.ndarray]):
        super().__init__()
        self._pairs = [
            (target.get_layer(name).kernel, tf.constant(mask, dtype=target.get_layer(name).kernel.dtype))
            for name, mask in masks.items()
        ]

    def _apply(self) -> None:
        for kernel, mask in self._pairs:
            kernel.assign(kernel * mask)

    def on_train_begin(self, logs=None):
        self._apply()

    def on_train_batch_end(self, batch, logs=None):
        self._apply()
