"""Encode pruned, weight-shared kernels and write them, with a model's other weights, into a ``.dcw`` file.

The format is described in :mod:`board.compressed_weights`, which reads it. Pure numpy: the Keras side hands in
``{layer name: layer.get_weights()}``.

A kernel's codebook is the set of its distinct nonzero values, so any kernel can be encoded; after weight sharing
it has at most ``2^bits`` entries. Each kernel's ``gap_bits`` is chosen (1..16) to minimise its Huffman-coded size
unless given.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from board.compressed_weights import FORMAT_VERSION, MAGIC, decode_kernel
from training.compression.huffman import (
    HuffmanTable,
    build_table,
    fixed_width_bits,
    huffman_bits,
    huffman_encode,
    relative_index_encode,
)

#: gap_bits tried when a kernel's gap width is chosen automatically.
GAP_BITS_CHOICES = tuple(range(1, 17))


@dataclass(frozen=True)
class EncodedKernel:
    """One kernel in Deep-Compression form (see :mod:`board.compressed_weights`).

    Attributes:
        shape: the kernel's shape.
        dtype: its numpy dtype name.
        codebook: the distinct nonzero values, ascending.
        index_symbols: cluster index per entry (``len(codebook)`` for fillers).
        gap_symbols: ``gap - 1`` per entry.
        gap_bits: bits of a stored gap.
        index_table: Huffman code of ``index_symbols``.
        gap_table: Huffman code of ``gap_symbols``.
    """

    shape: tuple[int, ...]
    dtype: str
    codebook: np.ndarray
    index_symbols: np.ndarray
    gap_symbols: np.ndarray
    gap_bits: int
    index_table: HuffmanTable
    gap_table: HuffmanTable

    @property
    def size(self) -> int:
        """Weights in the kernel."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def entries(self) -> int:
        """Stored entries: nonzero weights plus fillers."""
        return int(self.index_symbols.size)

    @property
    def fillers(self) -> int:
        """Filler entries (gaps longer than ``2^gap_bits``)."""
        return int(np.count_nonzero(self.index_symbols == len(self.codebook)))

    @property
    def nonzeros(self) -> int:
        """Nonzero weights."""
        return self.entries - self.fillers

    @property
    def index_bits_fixed(self) -> int:
        """Bits of a fixed-width cluster index (the filler symbol included when there are fillers)."""
        return fixed_width_bits(len(self.codebook) + (1 if self.fillers else 0))

    @property
    def index_huffman_bits(self) -> int:
        """Bits of the Huffman-coded cluster indices."""
        return huffman_bits(self.index_symbols, self.index_table)

    @property
    def gap_huffman_bits(self) -> int:
        """Bits of the Huffman-coded gaps."""
        return huffman_bits(self.gap_symbols, self.gap_table)

    def decode(self) -> np.ndarray:
        """The dense kernel back (exactly the encoded one)."""
        return decode_kernel(self.shape, self.codebook, self.index_symbols, self.gap_symbols, self.dtype)


def _entries(flat: np.ndarray, codebook: np.ndarray, gap_bits: int) -> tuple[np.ndarray, np.ndarray]:
    positions = np.flatnonzero(flat)
    gap_symbols, fillers = relative_index_encode(positions, gap_bits)
    index_symbols = np.full(gap_symbols.size, len(codebook), dtype=np.int64)
    index_symbols[~fillers] = np.searchsorted(codebook, flat[positions])
    return index_symbols, gap_symbols


def encode_kernel(kernel: np.ndarray, gap_bits: int | None = None) -> EncodedKernel:
    """Encode a kernel: codebook of its nonzero values, Huffman-coded cluster indices and relative positions.

    Args:
        kernel: any array (after pruning and sharing it has few distinct values and many zeros).
        gap_bits: bits per stored gap; None chooses, among 1..16, the one that minimises the Huffman-coded size.

    Returns:
        The encoded kernel; ``decode()`` gives ``kernel`` back exactly.

    Raises:
        ValueError: non-finite weights, or ``gap_bits < 1``.
    """
    kernel = np.asarray(kernel)
    if not np.all(np.isfinite(kernel)):
        raise ValueError("cannot encode a kernel with NaN or infinite weights")
    flat = kernel.ravel()
    codebook = np.unique(flat[flat != 0])
    if gap_bits is None:
        best = None
        for p in GAP_BITS_CHOICES:
            idx, gaps = _entries(flat, codebook, p)
            bits = huffman_bits(idx) + huffman_bits(gaps)
            if best is None or bits < best[0]:
                best = (bits, p)
            if gaps.size and (1 << p) > int(gaps.max()) + 1:
                break  # no fillers left; wider gaps only cost more
        gap_bits = best[1] if best else 1
    idx, gaps = _entries(flat, codebook, int(gap_bits))
    return EncodedKernel(
        shape=tuple(int(s) for s in kernel.shape),
        dtype=kernel.dtype.name,
        codebook=codebook,
        index_symbols=idx,
        gap_symbols=gaps,
        gap_bits=int(gap_bits),
        index_table=build_table(idx),
        gap_table=build_table(gaps),
    )


def pack_codebook(codebook: np.ndarray) -> tuple[np.ndarray, int]:
    """The smallest exact storage of a codebook: integers ``raw`` with ``value = raw * 2^exp``, or float32.

    Fixed-point codebooks (a quantized model's) are stored as int8/int16 with their binary exponent; anything else
    as float32 with ``exp = 0``.

    Returns:
        ``(raw, exp)``.
    """
    cb = np.asarray(codebook, dtype=np.float64)
    if cb.size and np.all(cb == cb.astype(np.float32)):
        for frac in range(0, 25):
            scaled = cb * 2.0**frac
            if np.all(scaled == np.round(scaled)):
                peak = float(np.max(np.abs(scaled)))
                for dt in (np.int8, np.int16):  # wider integers would save nothing over float32
                    info = np.iinfo(dt)
                    if peak <= info.max and float(np.min(scaled)) >= info.min:
                        return scaled.astype(dt), -frac
                break
    return np.asarray(codebook, dtype=np.float32), 0


class _Payload:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> dict[str, int]:
        spec = {"offset": self.size, "nbytes": len(data)}
        self.parts.append(data)
        self.size += len(data)
        return spec


def _kernel_entry(name: str, enc: EncodedKernel, payload: _Payload) -> dict[str, Any]:
    raw, exp = pack_codebook(enc.codebook)
    idx_data, idx_bits = huffman_encode(enc.index_symbols, enc.index_table)
    gap_data, gap_bits = huffman_encode(enc.gap_symbols, enc.gap_table)
    return {
        "name": name,
        "encoding": "sparse-huffman",
        "shape": list(enc.shape),
        "dtype": enc.dtype,
        "entries": enc.entries,
        "nonzeros": enc.nonzeros,
        "gap_bits": enc.gap_bits,
        "codebook": {**payload.add(raw.tobytes()), "dtype": raw.dtype.str, "exp": exp, "size": int(raw.size)},
        "index_code": {**payload.add(idx_data), "nbits": idx_bits, **enc.index_table.to_dict()},
        "gap_code": {**payload.add(gap_data), "nbits": gap_bits, **enc.gap_table.to_dict()},
    }


def write_compressed(
    path: str | os.PathLike,
    weights: Mapping[str, list[np.ndarray]],
    encoded: Mapping[str, EncodedKernel],
    meta: Mapping[str, Any] | None = None,
) -> int:
    """Write a model's weights to a ``.dcw`` file: encoded kernels in Deep-Compression form, the rest raw.

    Args:
        path: the file to write (replaced atomically).
        weights: ``{layer name: layer.get_weights()}`` for every layer with weights, in model order.
        encoded: ``{layer name: encoded kernel}``; the kernel is the layer's first weight and must decode to it
            exactly (checked).
        meta: free-form JSON-ready information stored in the header (model id, quantization, stage metrics).

    Returns:
        The file's size in bytes.

    Raises:
        ValueError: an encoded layer that is not in ``weights``, or whose encoding does not reproduce its kernel.
    """
    unknown = set(encoded) - set(weights)
    if unknown:
        raise ValueError(f"encoded layers {sorted(unknown)} are not among the model's weights")
    payload = _Payload()
    layers = []
    for name, arrays in weights.items():
        entries = []
        for i, arr in enumerate(arrays):
            arr = np.ascontiguousarray(arr)
            if i == 0 and name in encoded:
                enc = encoded[name]
                if not np.array_equal(enc.decode(), arr) or enc.dtype != arr.dtype.name:
                    raise ValueError(f"the encoding of {name!r} does not reproduce its kernel exactly")
                entries.append(_kernel_entry("kernel", enc, payload))
            else:
                le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
                entries.append(
                    {"name": f"w{i}", "encoding": "raw", "shape": list(arr.shape), "dtype": le.dtype.str,
                     **payload.add(le.tobytes())}
                )  # fmt: skip
        layers.append({"name": name, "weights": entries})
    body = b"".join(payload.parts)
    header = {
        "format": "deep-compression-weights",
        "version": FORMAT_VERSION,
        "layers": layers,
        "meta": dict(meta or {}),
        "payload_bytes": len(body),
        "payload_sha256": hashlib.sha256(body).hexdigest(),
    }
    head = zlib.compress(json.dumps(header, separators=(",", ":")).encode("utf-8"), 9)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(MAGIC + struct.pack("<I", len(head)) + head + body)
    os.replace(tmp, path)
    return path.stat().st_size


def kernel_bits_summary(enc: EncodedKernel, weight_bits: int) -> dict[str, float]:
    """Storage of one kernel at each stage, in bits (Han et al.'s accounting; Huffman tables not counted).

    Args:
        enc: the encoded kernel.
        weight_bits: ``b``, bits of one stored weight value (32 for float, the fixed-point width otherwise).

    Returns:
        ``dense`` (n*b), ``sparse`` (entries at b + gap bits: pruning only), ``shared`` (Han's eq. 1 on the
        nonzeros: ``nnz*log2(k) + k*b``, no position overhead), ``shared_sparse`` (fixed-width indices and gaps +
        codebook), ``huffman`` (Huffman-coded indices and gaps + codebook).
    """
    k = len(enc.codebook)
    codebook_bits = k * weight_bits
    index_bits = fixed_width_bits(k)
    return {
        "dense": float(enc.size * weight_bits),
        "sparse": float(enc.entries * (weight_bits + enc.gap_bits)),
        "shared": float(enc.nonzeros * index_bits + codebook_bits),
        "shared_sparse": float(enc.entries * (enc.index_bits_fixed + enc.gap_bits) + codebook_bits),
        "huffman": float(enc.index_huffman_bits + enc.gap_huffman_bits + codebook_bits),
    }
