"""Weight sharing (Han et al., ICLR 2016, section 3): per-layer 1-D k-means, then fine-tuning of the centroids.

* :func:`kmeans_1d` (pure numpy) clusters a layer's nonzero weights into ``k = 2^bits`` clusters, starting from
  centroids spaced linearly between the smallest and the largest weight (Han et al.'s best initialisation: it keeps
  the rare large weights, which matter most, in clusters of their own).
* :func:`share_weights` replaces every nonzero weight of each kernel by its centroid; pruned weights are not
  clustered: they stay a fixed zero outside the codebook.
* :func:`finetune_centroids` trains the centroids with the cluster indices fixed; BatchNorm parameters and biases,
  which are not shared, train with them. A centroid's gradient is the sum of its cluster's weight gradients (Han et
  al., eq. 3), by default divided by the cluster's size (``reduction="mean"``): the sum makes a centroid's step grow
  with its cluster, so one learning rate is either too small for the rare large weights (clusters of a few) or far
  too large for the clusters of hundreds to thousands of weights near zero, whose whole cluster then jumps by
  several grid steps of a fixed-point layer at once (on ResNet20 ``<8,3>``, 65 % pruned, two epochs at lr 1e-3 with
  the sum lost 1.25 points of top-1). The mean is the sum with a learning rate of ``lr / size`` per cluster: every
  tied weight moves by ``lr`` times its cluster's average gradient, the projection onto the tied weights of the
  step plain SGD at ``lr`` would take, whatever the cluster's size. ``reduction="sum"`` keeps Han's plain sum.
* For QKeras layers the deployed weight is ``quantizer(centroid)``; :func:`snap_codebooks` stores the centroids
  on the fixed-point grid, which can merge clusters (never split them) and sends a centroid that rounds to 0 to the
  pruned zeros. The codebook therefore never has more than ``2^bits`` values.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from training.compression.errors import CompressionError
from training.compression.prune import effective_kernel, kernel_layers
from training.keras_compat import keras, tf

log = logging.getLogger(__name__)

KMEANS_INITS = ("linear", "density")
CENTROID_REDUCTIONS = ("mean", "sum")


def kmeans_1d(
    values: np.ndarray, k: int, iters: int = 100, init: str = "linear", refill: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """One-dimensional k-means (Lloyd's algorithm) with a deterministic initialisation.

    In 1-D the nearest centroid is found exactly by comparing with the midpoints between sorted centroids; a value
    on a midpoint goes to the lower cluster. Lloyd iterations stop when no assignment changes; clusters left empty
    are dropped. With linear initialisation on pruned weights many initial centroids fall into the pruned gap around
    zero and end empty, so with ``refill`` the codebook is then refilled: the cluster with the largest squared error
    is split at its mean and Lloyd's iterations run again, until ``k`` clusters are in use or every distinct value
    has its own. The codebook is shorter than ``k`` only when there are fewer distinct values (or without refill).

    Args:
        values: the values to cluster (flattened).
        k: number of clusters, >= 1.
        iters: maximum Lloyd iterations per run, >= 1.
        init: ``linear`` (``k`` centroids evenly spaced over [min, max]; Han et al.) or ``density`` (at the
            quantiles ``i / (k - 1)``, so each starts with about as many values).
        refill: split clusters to use every one of the ``k`` centroids (see above).

    Returns:
        ``(codebook, indices)``: ascending float64 centroids (at most ``k``) and, per value, the index of its
        centroid, so ``codebook[indices]`` is the shared version of ``values``.

    Raises:
        ValueError: ``k < 1``, ``iters < 1``, an unknown ``init``, or non-finite values.
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if int(iters) != iters or iters < 1:
        raise ValueError(f"iters must be an integer >= 1, got {iters!r}")
    if init not in KMEANS_INITS:
        raise CompressionError(f"unknown k-means init {init!r}; use one of {KMEANS_INITS}")
    v = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(v)):
        raise ValueError("k-means needs finite values")
    if v.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    k = int(k)
    if init == "linear":
        start = np.linspace(v.min(), v.max(), k)
    else:
        start = np.quantile(v, np.linspace(0.0, 1.0, k))
    codebook, idx = _lloyd(v, start, int(iters))
    if refill:
        target = min(k, np.unique(v).size)
        for _ in range(4 * k):  # each split adds a cluster; Lloyd may empty one again, so bound the rounds
            if codebook.size >= target:
                break
            sse = np.bincount(idx, weights=(v - codebook[idx]) ** 2, minlength=codebook.size)
            j = int(np.argmax(sse))
            if sse[j] == 0:
                break
            members = v[idx == j]
            mean = members.mean()
            halves = [members[members <= mean].mean(), members[members > mean].mean()]
            codebook, idx = _lloyd(v, np.concatenate([np.delete(codebook, j), halves]), int(iters))
    return codebook, idx


def _lloyd(v: np.ndarray, centroids: np.ndarray, iters: int) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's iterations from ``centroids``; returns the used centroids (ascending) and each value's index."""
    k = centroids.size
    idx = None
    for _ in range(iters):
        centroids = np.sort(centroids)
        new_idx = np.searchsorted((centroids[:-1] + centroids[1:]) / 2, v, side="left")
        if idx is not None and np.array_equal(new_idx, idx):
            break
        idx = new_idx
        counts = np.bincount(idx, minlength=k)
        sums = np.bincount(idx, weights=v, minlength=k)
        filled = counts > 0
        centroids = centroids.copy()
        centroids[filled] = sums[filled] / counts[filled]
    used = np.unique(idx)
    remap = np.full(k, -1, dtype=np.int64)
    remap[used] = np.arange(used.size)
    return centroids[used], remap[idx]


def check_bits(bits: int) -> int:
    """``bits`` as an int, or ValueError when it is not an integer in 1..16."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
        raise CompressionError(f"weight-sharing bits must be an integer >= 1, got {bits!r}")
    if bits > 16:
        raise CompressionError(f"weight-sharing bits must be <= 16 (2^16 clusters), got {bits}")
    return int(bits)


@dataclass
class SharedKernel:
    """One layer's shared kernel: the nonzero positions, their fixed cluster indices and the codebook.

    Attributes:
        name: layer name.
        shape: kernel shape.
        positions: flat (C order) positions of the nonzero weights.
        indices: cluster index of each position.
        codebook: centroid values (float32).
    """

    name: str
    shape: tuple[int, ...]
    positions: np.ndarray
    indices: np.ndarray
    codebook: np.ndarray

    def dense(self) -> np.ndarray:
        """The kernel: ``codebook[indices]`` at ``positions``, zero elsewhere."""
        flat = np.zeros(int(np.prod(self.shape)), dtype=np.float32)
        flat[self.positions] = self.codebook[self.indices]
        return flat.reshape(self.shape)


def share_weights(
    model: keras.Model,
    bits: int,
    layers: Iterable[str] | None = None,
    iters: int = 100,
    init: str = "linear",
) -> dict[str, SharedKernel]:
    """Cluster each kernel's nonzero (deployed) weights into at most ``2^bits`` shared values, in place.

    Args:
        model: a Keras/QKeras model (after pruning).
        bits: index bits; ``k = 2^bits`` clusters per layer.
        layers: layers to share (default: every conv and dense layer).
        iters: maximum k-means iterations.
        init: k-means initialisation (see :func:`kmeans_1d`).

    Returns:
        ``{layer name: SharedKernel}``; the model's kernels now hold the shared values.

    Raises:
        ValueError: ``bits < 1`` (or > 16), or a named layer without a kernel.
    """
    bits = check_bits(bits)
    shared = {}
    for layer in kernel_layers(model, layers):
        w = effective_kernel(layer)
        positions = np.flatnonzero(w)
        codebook, indices = kmeans_1d(w.ravel()[positions], 2**bits, iters, init)
        shared[layer.name] = SharedKernel(layer.name, tuple(w.shape), positions, indices, codebook.astype(np.float32))
    apply_shared(model, shared)
    return shared


def apply_shared(model: keras.Model, shared: Mapping[str, SharedKernel]) -> None:
    """Write the shared kernels into the model."""
    for name, sk in shared.items():
        model.get_layer(name).kernel.assign(sk.dense())


def snap_codebooks(model: keras.Model, shared: Mapping[str, SharedKernel]) -> dict[str, SharedKernel]:
    """Store each QKeras layer's centroids on its fixed-point grid (what the layer deploys), merging equal ones.

    A centroid that quantizes to zero turns its weights into pruned zeros. Float layers are returned unchanged.
    The model's kernels are rewritten, so afterwards ``effective_kernel(layer) == kernel`` exactly.

    Returns:
        The updated ``{layer name: SharedKernel}`` (codebooks ascending, at most as long as before).
    """
    out = {}
    for name, sk in shared.items():
        layer = model.get_layer(name)
        quantizer = getattr(layer, "kernel_quantizer_internal", None)
        if quantizer is None or sk.codebook.size == 0:
            out[name] = sk
            continue
        snapped = np.asarray(quantizer(tf.constant(sk.codebook)), dtype=np.float32)
        values, inverse = np.unique(snapped, return_inverse=True)
        idx = inverse.ravel()[sk.indices]
        keep = values[idx] != 0
        nonzero_values = values[values != 0]
        remap = np.searchsorted(nonzero_values, values)
        out[name] = SharedKernel(name, sk.shape, sk.positions[keep], remap[idx[keep]], nonzero_values)
    apply_shared(model, out)
    return out


def finetune_centroids(
    model: keras.Model,
    shared: Mapping[str, SharedKernel],
    dataset: tf.data.Dataset,
    epochs: int,
    lr: float,
    momentum: float = 0.9,
    steps_per_epoch: int | None = None,
    reduction: str = "mean",
) -> dict[str, list[float]]:
    """Fine-tune the shared centroids (indices fixed, pruned zeros fixed) and the unshared parameters.

    Each step: forward and backward through the model as it deploys (QKeras quantizers pass gradients straight
    through), the gradient of each centroid = the sum of its cluster's kernel gradients (L2 terms included), divided
    by the cluster's size unless ``reduction="sum"``, one SGD step (Nesterov momentum, cosine-decayed learning rate)
    on centroids, BatchNorm parameters and biases, then every kernel is rewritten from its centroids.

    Args:
        model: the model after :func:`share_weights`.
        shared: its shared kernels (updated in place with the trained centroids).
        dataset: batches of (image, label), one pass per epoch.
        epochs: passes over ``dataset``.
        lr: peak learning rate.
        momentum: SGD momentum.
        steps_per_epoch: batches per pass (for the schedule); counted from ``dataset`` when None.
        reduction: ``mean`` (a centroid moves by ``lr`` times its cluster's mean gradient, as each of its weights
            would under plain SGD) or ``sum`` (Han et al.'s eq. 3 as written: ``lr`` times the summed gradient,
            which scales the step by the cluster's size; see the module docstring).

    Returns:
        ``{"loss": [...], "accuracy": [...]}`` per epoch (training batches).

    Raises:
        ValueError: an unknown ``reduction``.
    """
    if reduction not in CENTROID_REDUCTIONS:
        raise CompressionError(f"unknown centroid gradient reduction {reduction!r}; use one of {CENTROID_REDUCTIONS}")
    if epochs <= 0 or not shared:
        return {"loss": [], "accuracy": []}
    if steps_per_epoch is None:
        steps_per_epoch = int(dataset.cardinality().numpy())
        if steps_per_epoch < 0:
            steps_per_epoch = sum(1 for _ in dataset)
    names = list(shared)
    kernels = [model.get_layer(n).kernel for n in names]
    kernel_ids = {id(k) for k in kernels}
    others = [v for v in model.trainable_variables if id(v) not in kernel_ids]
    centroids = [tf.Variable(shared[n].codebook, dtype=tf.float32, name=f"{n}_centroids") for n in names]
    positions = [tf.constant(shared[n].positions, dtype=tf.int64) for n in names]
    indices = [tf.constant(shared[n].indices, dtype=tf.int32) for n in names]
    # Per centroid: 1 / (its cluster's size) for the mean, 1 for the sum (every codebook value has members).
    scales = [
        tf.constant(1.0 / np.maximum(np.bincount(shared[n].indices, minlength=shared[n].codebook.size), 1)
                    if reduction == "mean" else np.ones(shared[n].codebook.size), dtype=tf.float32)
        for n in names
    ]  # fmt: skip
    sizes = [int(np.prod(shared[n].shape)) for n in names]
    shapes = [shared[n].shape for n in names]
    schedule = keras.optimizers.schedules.CosineDecay(lr, max(epochs * steps_per_epoch, 1))
    optimizer = keras.optimizers.SGD(schedule, momentum=momentum, nesterov=True)
    loss_metric = keras.metrics.Mean()
    acc_metric = keras.metrics.SparseCategoricalAccuracy()

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
            if model.losses:
                loss += tf.add_n(model.losses)
        grads = tape.gradient(loss, kernels + others)
        centroid_grads = []
        for g, pos, idx, c, scale in zip(grads[: len(kernels)], positions, indices, centroids, scales):
            flat = tf.gather(tf.reshape(g, [-1]), pos)
            centroid_grads.append(tf.math.unsorted_segment_sum(flat, idx, tf.shape(c)[0]) * scale)
        pairs = list(zip(centroid_grads, centroids)) + [(g, v) for g, v in zip(grads[len(kernels) :], others)]
        optimizer.apply_gradients([(g, v) for g, v in pairs if g is not None])
        for kernel, c, pos, idx, size, shape in zip(kernels, centroids, positions, indices, sizes, shapes):
            flat = tf.scatter_nd(tf.expand_dims(pos, 1), tf.gather(c, idx), [size])
            kernel.assign(tf.reshape(flat, shape))
        loss_metric.update_state(loss)
        acc_metric.update_state(y, logits)

    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    for epoch in range(epochs):
        loss_metric.reset_state()
        acc_metric.reset_state()
        for x, y in dataset:
            step(x, y)
        history["loss"].append(float(loss_metric.result()))
        history["accuracy"].append(float(acc_metric.result()))
        log.info("centroid fine-tuning epoch %d/%d: loss %.4f, train top-1 %.4f", epoch + 1, epochs,
                 history["loss"][-1], history["accuracy"][-1])  # fmt: skip
    for n, c in zip(names, centroids):
        shared[n].codebook = c.numpy().astype(np.float32)
    apply_shared(model, shared)
    return history


def index_bits(codebook_size: int) -> int:
    """``ceil(log2(k))`` bits per cluster index (at least 1)."""
    return max(1, math.ceil(math.log2(max(codebook_size, 1))))
