"""Deep Compression: pruning masks, k-means sharing, Huffman / sparse coding, the .dcw file, the report, the CLI.

Pinned seeds and literal expected arrays; the Keras tests use tiny QKeras models so they stay fast.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from board.compressed_weights import (
    CompressedWeightsError,
    decode_compressed,
    decode_layers,
    huffman_decode,
    read_compressed,
)
from training.compression.container import encode_kernel, pack_codebook, write_compressed
from training.compression.huffman import (
    build_table,
    canonical_codes,
    huffman_code_lengths,
    huffman_encode,
    relative_index_decode,
    relative_index_encode,
)
from training.compression.prune import (
    MaskCallback,
    PruneSpec,
    effective_kernel,
    kernel_layers,
    percentile_mask,
    prune_model,
    sensitivity_mask,
)
from training.compression.report import build_report, layer_stats, to_markdown, write_report
from training.compression.share import finetune_centroids, kmeans_1d, share_weights, snap_codebooks
from training.keras_compat import keras, tf
from training.quant import QuantSpec

# A literal 3x3 layer: mean 0, sum of squares 28.5, so std = sqrt(28.5 / 9) = 1.7795.
W3 = np.array([[3.0, -1.0, 0.5], [-0.5, 1.0, -3.0], [2.0, -2.0, 0.0]])


# --- pruning masks ------------------------------------------------------------------------------------------------


def test_percentile_mask_literal():
    # Nonzero magnitudes 0.5 0.5 1 1 2 2 3 3: the 25th percentile is 0.5 + 0.75 * 0.5 = 0.875, the 50th is 1.5.
    assert percentile_mask(W3, 25).tolist() == [[True, True, False], [False, True, True], [True, True, False]]
    assert percentile_mask(W3, 50).tolist() == [[True, False, False], [False, False, True], [True, True, False]]
    # 0 keeps every nonzero weight (the zero stays pruned); 100 keeps only the largest magnitude.
    assert percentile_mask(W3, 0).tolist() == (W3 != 0).tolist()
    assert percentile_mask(W3, 100).tolist() == [[True, False, False], [False, False, True], [False, False, False]]


def test_sensitivity_mask_literal():
    # s = 0.5: threshold 0.8898; s = 1: threshold 1.7795.
    assert sensitivity_mask(W3, 0.5).tolist() == [[True, True, False], [False, True, True], [True, True, False]]
    assert sensitivity_mask(W3, 1.0).tolist() == [[True, False, False], [False, False, True], [True, True, False]]
    assert sensitivity_mask(W3, 0.0).tolist() == (W3 != 0).tolist()


@pytest.mark.parametrize(
    "call, message",
    [
        pytest.param(lambda: percentile_mask(W3, 101), r"percentile must be in \[0, 100\], got 101", id="pct-101"),
        pytest.param(lambda: percentile_mask(W3, -0.5), r"percentile must be in \[0, 100\]", id="pct-negative"),
        pytest.param(lambda: percentile_mask(W3, float("nan")), "percentile must be a number", id="pct-nan"),
        pytest.param(lambda: sensitivity_mask(W3, -1), "sensitivity must be >= 0", id="sens-negative"),
        pytest.param(lambda: PruneSpec.parse("magnitude:3"), "unknown pruning method", id="method"),
        pytest.param(lambda: PruneSpec.parse("percentile"), "METHOD:VALUE", id="no-value"),
        pytest.param(lambda: PruneSpec.parse("percentile:abc"), "not a number", id="not-number"),
        pytest.param(lambda: kmeans_1d(np.ones(3), 0), "k must be an integer >= 1", id="k-0"),
        pytest.param(lambda: relative_index_encode(np.array([1, 2]), 0), "gap_bits must be", id="gap-bits-0"),
        pytest.param(lambda: relative_index_encode(np.array([3, 3]), 2), "strictly increasing", id="gap-order"),
    ],
)
def test_bad_inputs_are_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- k-means ------------------------------------------------------------------------------------------------------


def test_kmeans_linear_init_literal():
    # Linear init: [-0.8, -0.2333, 0.3333, 0.9] -> means [-0.75, -0.1, 0.4, 0.9]; the next assignment is the same.
    values = np.array([-0.8, -0.7, -0.1, 0.2, 0.6, 0.9])
    codebook, idx = kmeans_1d(values, 4, init="linear")
    np.testing.assert_allclose(codebook, [-0.75, -0.1, 0.4, 0.9], atol=1e-12)
    assert idx.tolist() == [0, 0, 1, 2, 2, 3]


def test_kmeans_relocates_or_drops_empty_clusters_and_density_init():
    # Linear init [0, 1/3, 2/3, 1]: the middle two clusters get nothing -> [0.05, 1.0]. Refilled, the cluster with the
    # largest squared error, {0, 0.1}, is split at its mean; 3 distinct values leave no room for a fourth cluster.
    codebook, idx = kmeans_1d(np.array([0.0, 0.1, 1.0]), 4)
    np.testing.assert_allclose(codebook, [0.0, 0.1, 1.0])
    assert idx.tolist() == [0, 1, 2]
    codebook, idx = kmeans_1d(np.array([0.0, 0.1, 1.0]), 4, refill=False)
    np.testing.assert_allclose(codebook, [0.05, 1.0])
    assert idx.tolist() == [0, 0, 1]
    codebook, idx = kmeans_1d(np.array([0.0, 0.1, 0.2, 10.0]), 2, init="density")
    np.testing.assert_allclose(codebook, [0.1, 10.0])
    assert idx.tolist() == [0, 0, 0, 1]


def test_codebook_of_few_distinct_values_is_exact():
    # 81 distinct fixed-point values, pruned around zero: at most 2^bits clusters, all of them when there is room.
    values = np.random.default_rng(0).integers(-50, 50, 5000) / 32
    values = values[np.abs(values) > 0.3]
    for k, expected in ((4, 4), (32, 32), (128, 81)):
        codebook, idx = kmeans_1d(values, k)
        assert len(codebook) == expected
    assert np.array_equal(codebook[idx], values)  # k >= distinct values: sharing is lossless


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6])
def test_codebook_has_at_most_2_to_the_bits_values(bits):
    values = np.random.default_rng(7).normal(size=5000)
    codebook, idx = kmeans_1d(values, 2**bits)
    assert len(codebook) == 2**bits and np.all(np.diff(codebook) > 0)  # no cluster lost on 5000 distinct values
    assert idx.min() >= 0 and idx.max() < len(codebook)
    # Every value goes to its nearest centroid.
    nearest = np.abs(values[:, None] - codebook[None, :]).argmin(1)
    assert np.array_equal(codebook[nearest], codebook[idx])


# --- Huffman and relative indices ---------------------------------------------------------------------------------


def test_huffman_code_lengths_literal():
    # CLRS's example: a:45 b:13 c:12 d:16 e:9 f:5.
    assert huffman_code_lengths({0: 45, 1: 13, 2: 12, 3: 16, 4: 9, 5: 5}) == {0: 1, 1: 3, 2: 3, 3: 3, 4: 4, 5: 4}
    assert huffman_code_lengths({7: 10}) == {7: 1}
    assert huffman_code_lengths({1: 0, 2: 0}) == {}
    # Canonical codes: a=0, b=100, c=101, d=110, e=1110, f=1111.
    codes = canonical_codes([0, 1, 2, 3, 4, 5], [1, 3, 3, 3, 4, 4])
    assert codes == {0: (0, 1), 1: (4, 3), 2: (5, 3), 3: (6, 3), 4: (14, 4), 5: (15, 4)}


def test_huffman_encode_literal_bytes():
    table = build_table(np.repeat(np.arange(6), [45, 13, 12, 16, 9, 5]))
    data, nbits = huffman_encode(np.array([0, 1, 5]), table)  # 0 100 1111
    assert (data, nbits) == (b"\x4f", 8)
    assert huffman_decode(data, nbits, table.symbols, table.lengths, 3).tolist() == [0, 1, 5]


@pytest.mark.parametrize("n, alphabet", [(0, 3), (1, 1), (7, 2), (1000, 5), (20000, 40)])
def test_huffman_round_trips_exactly(n, alphabet):
    symbols = np.random.default_rng(n).integers(0, alphabet, n)
    table = build_table(symbols)
    data, nbits = huffman_encode(symbols, table)
    assert np.array_equal(huffman_decode(data, nbits, table.symbols, table.lengths, n), symbols)


def test_huffman_long_codes_decode_bit_by_bit():
    # Fibonacci frequencies make the deepest code 24 bits long, past the lookup table's 16.
    fib = [1, 1]
    while len(fib) < 25:
        fib.append(fib[-1] + fib[-2])
    symbols = np.repeat(np.arange(25), fib)
    np.random.default_rng(3).shuffle(symbols)
    table = build_table(symbols)
    assert max(table.lengths) == 24
    data, nbits = huffman_encode(symbols, table)
    assert np.array_equal(huffman_decode(data, nbits, table.symbols, table.lengths, symbols.size), symbols)


def test_corrupt_huffman_streams_are_refused():
    table = build_table(np.array([0, 0, 1, 2]))  # codes: 0 -> 0, 1 -> 10, 2 -> 11
    data, nbits = huffman_encode(np.array([0, 1, 2]), table)
    with pytest.raises(CompressedWeightsError, match="ended"):
        huffman_decode(data, nbits, table.symbols, table.lengths, 4)
    with pytest.raises(CompressedWeightsError, match="stream has"):
        huffman_decode(data, nbits, table.symbols, table.lengths, 2)
    with pytest.raises(CompressedWeightsError, match="Kraft"):
        canonical_codes([0, 1, 2], [1, 1, 1])


def test_relative_index_literal_with_filler():
    # Han et al.'s figure: positions 1, 4, 15 with 3-bit gaps (1..8): gaps 2, 3, 11 -> 2, 3, 8 (filler), 3.
    gaps, fillers = relative_index_encode(np.array([1, 4, 15]), 3)
    assert (gaps + 1).tolist() == [2, 3, 8, 3]
    assert fillers.tolist() == [False, False, True, False]
    assert relative_index_decode(gaps, fillers).tolist() == [1, 4, 15]
    # A gap of exactly 2^bits needs no filler; 2^bits + 1 needs one.
    assert relative_index_encode(np.array([7]), 3)[1].tolist() == [False]
    assert relative_index_encode(np.array([8]), 3)[1].tolist() == [True, False]


@pytest.mark.parametrize("density, gap_bits", [(0.0, None), (0.02, 2), (0.1, 3), (0.3, None), (1.0, 1)])
def test_sparse_kernels_round_trip_exactly(density, gap_bits, tmp_path):
    rng = np.random.default_rng(11)
    kernel = np.zeros((3, 3, 16, 32), np.float32)
    alive = rng.random(kernel.shape) < density
    kernel[alive] = rng.choice(np.arange(-40, 41)[np.arange(-40, 41) != 0] / 32, alive.sum())
    enc = encode_kernel(kernel, gap_bits)
    if density == 0.02:
        assert enc.fillers > 0  # gaps overflow 2 bits
    assert len(enc.codebook) == len(np.unique(kernel[kernel != 0]))
    assert np.array_equal(enc.decode(), kernel)
    bias = rng.normal(size=10).astype(np.float32)
    write_compressed(tmp_path / "k.dcw", {"conv": [kernel], "dense": [kernel[0, 0], bias]},
                     {"conv": enc, "dense": encode_kernel(kernel[0, 0])})  # fmt: skip
    layers = decode_layers(tmp_path / "k.dcw")
    assert np.array_equal(layers["conv"][0], kernel) and layers["conv"][0].dtype == np.float32
    assert np.array_equal(layers["dense"][0], kernel[0, 0]) and np.array_equal(layers["dense"][1], bias)
    assert set(decode_compressed(tmp_path / "k.dcw")) == {"conv", "dense"}


def test_float_codebook_and_fixed_point_codebook_are_stored_exactly():
    raw, exp = pack_codebook(np.array([-0.25, 0.03125, 3.96875], np.float32))
    assert raw.dtype == np.int8 and raw.tolist() == [-8, 1, 127] and exp == -5
    floats = np.array([-0.123456, 0.987654], np.float32)
    raw, exp = pack_codebook(floats)
    assert raw.dtype == np.float32 and exp == 0 and np.array_equal(raw, floats)


def test_modified_file_is_refused(tmp_path):
    kernel = np.array([[0.0, 0.5], [0.25, 0.0]], np.float32)
    path = tmp_path / "m.dcw"
    write_compressed(path, {"d": [kernel]}, {"d": encode_kernel(kernel)})
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CompressedWeightsError, match="does not match its header"):
        read_compressed(path)
    path.write_bytes(b"PK\x03\x04 not ours")
    with pytest.raises(CompressedWeightsError, match="magic"):
        read_compressed(path)


def test_writer_refuses_an_encoding_of_another_kernel(tmp_path):
    kernel = np.array([[0.0, 0.5]], np.float32)
    with pytest.raises(ValueError, match="does not reproduce"):
        write_compressed(tmp_path / "x.dcw", {"d": [kernel]}, {"d": encode_kernel(kernel * 2)})


# --- report arithmetic on a hand-checkable toy layer --------------------------------------------------------------

TOY = np.array([[0.0, 0.25, 0.0, 0.0], [0.0, 0.0, 0.0, -0.25]], np.float32)


def test_toy_layer_encoding_literal(tmp_path):
    enc = encode_kernel(TOY, gap_bits=2)
    # Positions 1 and 7: gaps 2 and 6; 2-bit gaps hold 1..4, so 6 = filler 4 + 2.
    assert enc.codebook.tolist() == [-0.25, 0.25]
    assert enc.index_symbols.tolist() == [1, 2, 0]  # 0.25, filler, -0.25
    assert enc.gap_symbols.tolist() == [1, 3, 1]
    assert (enc.entries, enc.fillers, enc.nonzeros) == (3, 1, 2)
    # Index code {2: "0", 0: "10", 1: "11"} -> 11 0 10 = 5 bits; gap code {1: "0", 3: "1"} -> 0 1 0 = 3 bits.
    assert enc.index_table.codes() == {2: (0, 1), 0: (2, 2), 1: (3, 2)}
    assert huffman_encode(enc.index_symbols, enc.index_table) == (b"\xd0", 5)
    assert huffman_encode(enc.gap_symbols, enc.gap_table) == (b"\x40", 3)


def test_report_arithmetic_on_toy_layer(tmp_path):
    enc = encode_kernel(TOY, gap_bits=2)
    row = layer_stats("toy", enc, weight_bits=8)
    assert (row["total"], row["nonzeros"], row["pruned"], row["nonzero_pct"]) == (8, 2, 6, 25.0)
    assert row["rate_pruning"] == 4.0  # 8 / 2
    assert row["bits_dense_ref"] == 256 and row["bits_dense"] == 64  # 8 weights x 32 / x 8 bits
    assert row["bits_shared"] == 18  # Han eq. 1: 2 alive x log2(2) + 2 centroids x 8 bits
    assert row["rate_sharing"] == pytest.approx(256 / 18)
    assert row["bits_shared_sparse"] == 28  # 3 entries x (2 index bits for 3 symbols + 2 gap bits) + 16
    assert row["bits_sparse"] == 30  # 3 entries x (8 + 2)
    assert row["bits_huffman"] == 24  # 5 index bits + 3 gap bits + 16 codebook bits
    assert row["rate_huffman"] == pytest.approx(256 / 24)
    assert row["rate_huffman_vs_b"] == pytest.approx(64 / 24)
    report = build_report({"toy": enc, "toy2": enc}, 8, {"before_pruning": 0.5, "after_huffman": 0.5},
                          {"model_id": "toy"}, container_bytes=100, other_params=4)  # fmt: skip
    t = report["totals"]
    assert (t["alive"], t["pruned"], t["total"], t["pruned_pct"]) == (4, 12, 16, 75.0)
    assert t["rate_huffman"] == pytest.approx(512 / 48) and t["rate_pruning"] == 4.0
    assert t["dense_float32_bytes"] == 80 and t["rate_container"] == pytest.approx(0.8)
    md = to_markdown(report)
    assert "| toy | (2, 4) | 2 / 8 (25.00 %) | 6 | 2 | 2 | 4.00x | 14.22x | 10.67x |" in md
    assert "alive: 4, pruned: 12, total: 16, compression rate: 4.00x (75.00 % pruned)" in md
    paths = write_report(report, tmp_path)
    lines = paths["csv"].read_text().splitlines()
    assert lines[0].startswith("layer,shape,total,nonzeros") and lines[-1].startswith("TOTAL,,16,4,")
    assert json.loads(paths["json"].read_text())["totals"]["total"] == 16


# --- Keras glue: masks through training, sharing, fine-tuning -----------------------------------------------------


def _tiny_qmodel(seed: int = 0) -> keras.Model:
    from qkeras import QActivation, QConv2D, QDense

    keras.utils.set_random_seed(seed)
    q = QuantSpec.parse("<8,3>")
    inp = keras.Input((8, 8, 3), name="image")
    x = QConv2D(8, 3, padding="same", use_bias=False, kernel_quantizer=q.weight_quantizer(), name="conv")(inp)
    x = QActivation(q.relu_quantizer(), name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = QDense(4, kernel_quantizer=q.weight_quantizer(), bias_quantizer=q.weight_quantizer(), name="logits")(x)
    return keras.Model(inp, out)


def _toy_data(n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 3), dtype=np.float32), rng.integers(0, 4, n).astype(np.int32)


def test_quantizers_map_zero_to_zero():
    q = QuantSpec.parse("<8,3>").weight_quantizer()
    assert np.asarray(q(tf.zeros(4))).tolist() == [0.0, 0.0, 0.0, 0.0]


def test_masks_survive_sgd_momentum_steps_on_a_qkeras_model():
    model = _tiny_qmodel()
    before = {n: model.get_layer(n).kernel.numpy().copy() for n in ("conv", "logits")}
    masks = prune_model(model, "percentile", 70)
    assert all(abs(m.mean() - 0.3) < 0.05 for m in masks.values())
    model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9, nesterov=True),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    x, y = _toy_data()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[MaskCallback(model, masks)])  # 16 steps
    for name, mask in masks.items():
        layer = model.get_layer(name)
        kernel = layer.kernel.numpy()
        assert np.all(kernel[~mask] == 0.0)  # exactly zero after every step
        assert np.all(effective_kernel(layer)[~mask] == 0.0)  # and so is the deployed (quantized) weight
        assert not np.array_equal(kernel[mask], before[name][mask])  # the alive weights did train
    # Without the callback momentum moves the pruned weights off zero: the test above is not vacuous.
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.any(model.get_layer("conv").kernel.numpy()[~masks["conv"]] != 0)


def test_named_layer_without_weights_is_a_clear_error():
    model = _tiny_qmodel()
    before = model.get_layer("conv").kernel.numpy().copy()
    with pytest.raises(ValueError, match="layer 'relu' .* has no kernel"):
        prune_model(model, "percentile", 50, layers=["relu"])
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        kernel_layers(model, ["nope"])
    with pytest.raises(ValueError, match="percentile must be in"):
        prune_model(model, "percentile", 101)
    with pytest.raises(ValueError, match="bits must be an integer >= 1"):
        share_weights(model, 0)
    assert np.array_equal(model.get_layer("conv").kernel.numpy(), before)  # nothing was touched


def test_sharing_then_finetuning_keeps_codebook_indices_and_zeros():
    model = _tiny_qmodel(1)
    masks = prune_model(model, "sensitivity", 0.5)
    shared = snap_codebooks(model, share_weights(model, 2))
    for name in shared:
        eff = effective_kernel(model.get_layer(name))
        assert np.array_equal(eff, model.get_layer(name).kernel.numpy())  # the grid values are stored exactly
        assert len(np.unique(eff[eff != 0])) <= 4 and np.all(eff[~masks[name]] == 0)
    x, y = _toy_data(16, 2)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    # One plain SGD step with Han's sum: each centroid moves by -lr * (sum of its cluster's kernel gradients).
    kernels = [model.get_layer(n).kernel for n in shared]
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    grads = dict(zip(shared, tape.gradient(loss, kernels)))
    old = {n: sk.codebook.copy() for n, sk in shared.items()}
    positions = {n: sk.positions.copy() for n, sk in shared.items()}
    finetune_centroids(model, shared, ds, epochs=1, lr=0.05, momentum=0.0, steps_per_epoch=1, reduction="sum")
    for name, sk in shared.items():
        expected = old[name] - 0.05 * np.bincount(sk.indices, grads[name].numpy().ravel()[sk.positions],
                                                  minlength=len(old[name]))  # fmt: skip
        np.testing.assert_allclose(sk.codebook, expected, rtol=1e-5, atol=1e-7)
        assert np.array_equal(sk.positions, positions[name])
        kernel = model.get_layer(name).kernel.numpy().ravel()
        assert np.all(np.delete(kernel, sk.positions) == 0)  # pruned zeros stay zero
        assert np.array_equal(kernel[sk.positions], sk.codebook[sk.indices])


def _literal_finetune_step(reduction: str) -> tuple[list[float], np.ndarray]:
    """One plain SGD step (lr 0.1) on a float Dense(2) with a literal kernel in two clusters of 1 and 7 weights."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2, use_bias=False, name="fc")(inp))
    kernel = np.array([[0.25, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]], dtype=np.float32)
    model.get_layer("fc").set_weights([kernel])
    shared = share_weights(model, 1)  # k-means on {0.25, 0.5 x 7}: exactly these two values
    sk = shared["fc"]
    assert sk.codebook.tolist() == [0.25, 0.5] and np.bincount(sk.indices).tolist() == [1, 7]
    ds = tf.data.Dataset.from_tensor_slices((np.ones((1, 4), np.float32), np.array([0], np.int32))).batch(1)
    finetune_centroids(model, shared, ds, epochs=1, lr=0.1, momentum=0.0, steps_per_epoch=1, reduction=reduction)
    assert np.array_equal(shared["fc"].indices, sk.indices) and shared["fc"].positions.tolist() == list(range(8))
    return shared["fc"].codebook.tolist(), model.get_layer("fc").kernel.numpy()


def test_centroid_step_does_not_grow_with_the_cluster_size():
    # Input ones, label 0: logits (1.75, 2.0), p1 = sigmoid(0.25) = 0.562177; dL/dW[:, 0] = -p1, dL/dW[:, 1] = +p1.
    # Cluster 0 = {W[0, 0]} (gradient -p1); cluster 1 = the other 7 weights (3 x -p1, 4 x +p1: sum p1, mean p1 / 7).
    # With the cluster mean each tied weight moves as far as plain SGD moves it on average, whatever the cluster's size.
    codebook, kernel = _literal_finetune_step("mean")
    np.testing.assert_allclose(codebook, [0.25 + 0.1 * 0.562177, 0.5 - 0.1 * 0.562177 / 7], rtol=1e-5)
    np.testing.assert_allclose(kernel, [[0.3062177, 0.4919689]] + [[0.4919689, 0.4919689]] * 3, rtol=1e-5)
    # Han's plain sum moves the 7-weight cluster 7x further (the defect that made fine-tuning lose top-1 on ResNet20,
    # whose clusters hold hundreds to thousands of weights): kept as reduction="sum".
    codebook, _ = _literal_finetune_step("sum")
    np.testing.assert_allclose(codebook, [0.25 + 0.1 * 0.562177, 0.5 - 0.1 * 0.562177], rtol=1e-5)
    with pytest.raises(ValueError, match="unknown centroid gradient reduction 'median'"):
        _literal_finetune_step("median")


# --- pipeline and CLI ---------------------------------------------------------------------------------------------


def test_cli_bad_inputs_fail_before_any_work(tmp_path, capsys):
    from training.__main__ import main

    out = tmp_path / "out"
    assert main(["compress", "--model-dir", str(tmp_path), "--prune", "percentile:101", "--out", str(out)]) == 2
    assert "percentile must be in [0, 100], got 101" in capsys.readouterr().err
    assert main(["compress", "--model-dir", str(tmp_path), "--share-bits", "0", "--out", str(out)]) == 2
    assert "bits must be an integer >= 1" in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def untrained_resnet8(tmp_path_factory):
    from training.models import create_model

    d = tmp_path_factory.mktemp("resnet8")
    keras.utils.set_random_seed(0)
    create_model("resnet8", quant="<8,3>").save(d / "model.h5", include_optimizer=False)
    (d / "config.json").write_text(json.dumps({"model_id": "resnet8_q8_3", "config": {"quant": "<8,3>"}}))
    return d


def test_cli_named_layer_without_kernel_is_refused(untrained_resnet8, tmp_path, capsys):
    from training.__main__ import main

    args = ["compress", "--model-dir", str(untrained_resnet8), "--layers", "stem_bn", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "layer 'stem_bn' (BatchNormalization) has no kernel" in capsys.readouterr().err


@pytest.mark.slow
def test_pipeline_end_to_end_on_a_small_resnet8(untrained_resnet8, tmp_path, cifar10_dir):
    from board.cifar10 import load_split
    from training.compression.pipeline import CompressConfig, add_compressed_to_bundle, compress
    from training.train import load_trained_model

    cfg = CompressConfig(prune="percentile:80", prune_overrides={"stem_conv": 50}, retrain_epochs=1, share_bits=4,
                         finetune_epochs=1, batch_size=64, train_limit=128, test_limit=100)  # fmt: skip
    out = tmp_path / "dc"
    report = compress(untrained_resnet8, out, cfg, load_split("train", cifar10_dir), load_split("test", cifar10_dir))
    for name in ("compressed_weights.dcw", "model.h5", "config.json", "metrics.json", "report.md", "report.csv",
                 "report.json"):  # fmt: skip
        assert (out / name).is_file(), name
    acc = report["accuracy"]
    assert acc["after_huffman"] == acc["after_finetuning"]  # decoding reproduces the weights exactly
    assert report["totals"]["pruned_pct"] > 75
    decoded = load_trained_model(out / "model.h5")
    kernels = decode_compressed(out / "compressed_weights.dcw")
    for row in report["layers"]:
        layer = decoded.get_layer(row["layer"])
        assert np.array_equal(effective_kernel(layer), kernels[row["layer"]])
        assert row["codebook_size"] <= 16
    assert json.loads((out / "config.json").read_text())["model_id"] == "resnet8_q8_3_dc"
    # The hardware side is hls_build's (training never imports it), from the folder compress wrote.
    from hls_build.compression_report import write_hardware_report

    write_hardware_report(out)
    hw = json.loads((out / "hardware.json").read_text())
    assert all(r["latency_multipliers_after"] <= r["latency_multipliers_before"] for r in hw)
    assert all(r["resource_multipliers_after"] == r["resource_multipliers_before"] for r in hw)
    # The file goes into a bundle and is hashed by its manifest.
    from board.bundle import Manifest, TensorSpec, load_bundle, write_manifest

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    spec = TensorSpec("image", [32, 32, 3], "ap_ufixed<8,0>", "uint8")
    write_manifest(bundle, Manifest("m", "pynq-z2", spec, spec, {}, emulated=True))
    rel = add_compressed_to_bundle(bundle, out / "compressed_weights.dcw")
    loaded = load_bundle(bundle)
    assert rel in loaded.manifest.files and loaded.manifest.hls["compressed_weights"]["path"] == rel
