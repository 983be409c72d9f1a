"""Decoder of Deep-Compression weight files (``.dcw``): canonical Huffman, relative sparse indices, shared codebooks.

A Deep-Compression model (Han et al., ICLR 2016) stores each pruned and weight-shared kernel as

* a **codebook** of at most ``2^bits`` shared values (the cluster centroids; zero is never in it),
* the **cluster index** of every nonzero weight, Huffman-coded,
* the **position** of every nonzero weight as the gap to the previous nonzero one (flat C order of the kernel), also
  Huffman-coded. A gap is stored in ``gap_bits`` bits as ``gap - 1`` (gaps 1..2^gap_bits); a longer gap is bridged
  with *filler* entries of gap ``2^gap_bits`` whose cluster index is the extra symbol ``len(codebook)``, meaning
  "a zero weight here" (Han et al.'s filler zeros).

Everything else (BatchNorm parameters, biases) is stored raw. The training side writes the file
(``training.compression.container``); this module reads it, so the board can decode the weights where it needs them.
Pure numpy and the standard library: runs on the board (Python 3.10, numpy 1.x).

File layout (little-endian)::

    b"DCW1" | uint32 header length | zlib-compressed JSON header | payload

The header lists every layer and weight with its shape, encoding and byte ranges in the payload, the Huffman tables
(symbols and code lengths; the codes are canonical, so lengths define them), and the payload's sha256, checked on
read. Huffman bitstreams are packed most significant bit first.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from board.errors import BoardError

__all__ = [
    "MAGIC",
    "CompressedWeightsError",
    "CompressedWeights",
    "canonical_codes",
    "huffman_decode",
    "relative_index_decode",
    "decode_kernel",
    "read_compressed",
    "decode_compressed",
    "decode_layers",
]

MAGIC = b"DCW1"
FORMAT_VERSION = 1
#: Longest code decoded through a lookup table of 2^length entries; longer codes are decoded bit by bit.
TABLE_DECODE_MAX_LENGTH = 16


class CompressedWeightsError(BoardError, ValueError):
    """A compressed weight file or stream is malformed, truncated or modified."""


def canonical_codes(symbols: Sequence[int], lengths: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Canonical Huffman codes for symbols with the given code lengths.

    Codes are assigned in order of (length, symbol): the first gets all zeros, each next one the previous code plus
    one, shifted left when the length grows (as in DEFLATE). So the lengths alone define the code.

    Args:
        symbols: distinct non-negative symbols.
        lengths: code length of each symbol (>= 1).

    Returns:
        ``{symbol: (code, length)}``; ``code`` is an integer whose ``length`` low bits are the code, MSB first.

    Raises:
        CompressedWeightsError: mismatched lengths, repeated symbols, lengths < 1, or lengths that violate Kraft's
            inequality (no prefix code has them).
    """
    symbols = [int(s) for s in symbols]
    lengths = [int(n) for n in lengths]
    if len(symbols) != len(lengths):
        raise CompressedWeightsError(f"{len(symbols)} symbols but {len(lengths)} code lengths")
    if len(set(symbols)) != len(symbols):
        raise CompressedWeightsError("a Huffman table lists a symbol twice")
    if any(n < 1 for n in lengths):
        raise CompressedWeightsError(f"code lengths must be >= 1, got {min(lengths)}")
    if lengths and sum(2.0**-n for n in lengths) > 1.0 + 1e-12:
        raise CompressedWeightsError("code lengths violate Kraft's inequality; not a prefix code")
    codes: dict[int, tuple[int, int]] = {}
    code, prev_len = 0, 0
    for length, symbol in sorted(zip(lengths, symbols)):
        code <<= length - prev_len
        codes[symbol] = (code, length)
        code += 1
        prev_len = length
    return codes


def _unpack_bits(data: bytes, nbits: int) -> np.ndarray:
    if nbits < 0 or nbits > 8 * len(data):
        raise CompressedWeightsError(f"bitstream claims {nbits} bits but holds {8 * len(data)}")
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:nbits]


def huffman_decode(data: bytes, nbits: int, symbols: Sequence[int], lengths: Sequence[int], count: int) -> np.ndarray:
    """Decode ``count`` symbols from a canonical-Huffman bitstream.

    Args:
        data: the packed bitstream (MSB first).
        nbits: bits used in ``data`` (the rest of the last byte is padding).
        symbols: the code's symbols.
        lengths: their code lengths (see :func:`canonical_codes`).
        count: number of symbols encoded.

    Returns:
        int64 array of ``count`` symbols.

    Raises:
        CompressedWeightsError: a bit pattern that is no code, a stream that ends early, or bits left over.
    """
    if count < 0:
        raise CompressedWeightsError(f"symbol count must be >= 0, got {count}")
    bits = _unpack_bits(data, nbits)
    if count == 0:
        if nbits:
            raise CompressedWeightsError(f"an empty stream has {nbits} bits")
        return np.zeros(0, dtype=np.int64)
    codes = canonical_codes(symbols, lengths)
    if not codes:
        raise CompressedWeightsError(f"{count} symbols to decode but the Huffman table is empty")
    max_len = max(length for _, length in codes.values())
    if max_len <= TABLE_DECODE_MAX_LENGTH:
        out = _decode_with_table(bits, codes, max_len, count)
    else:
        out = _decode_bitwise(bits, codes, count)
    return out


def _decode_with_table(bits: np.ndarray, codes: dict[int, tuple[int, int]], max_len: int, count: int) -> np.ndarray:
    # window[i] = the max_len bits starting at bit i (zero-padded past the end): one table lookup per symbol.
    nbits = len(bits)
    padded = np.concatenate([bits.astype(np.int64), np.zeros(max_len, dtype=np.int64)])
    window = np.zeros(nbits + 1, dtype=np.int64)
    for j in range(max_len):
        window = (window << 1) | padded[j : j + nbits + 1]
    table_sym = np.full(1 << max_len, -1, dtype=np.int64)
    table_len = np.zeros(1 << max_len, dtype=np.int64)
    for symbol, (code, length) in codes.items():
        start = code << (max_len - length)
        stop = (code + 1) << (max_len - length)
        table_sym[start:stop] = symbol
        table_len[start:stop] = length
    window_l, sym_l, len_l = window.tolist(), table_sym.tolist(), table_len.tolist()
    out = [0] * count
    pos = 0
    for i in range(count):
        if pos >= nbits:
            raise CompressedWeightsError(f"bitstream ended after {i} of {count} symbols")
        v = window_l[pos]
        length = len_l[v]
        if length == 0:
            raise CompressedWeightsError(f"bit pattern at bit {pos} is no code of this table")
        out[i] = sym_l[v]
        pos += length
    if pos != nbits:
        raise CompressedWeightsError(f"decoded {count} symbols in {pos} bits, but the stream has {nbits}")
    return np.asarray(out, dtype=np.int64)


def _decode_bitwise(bits: np.ndarray, codes: dict[int, tuple[int, int]], count: int) -> np.ndarray:
    lookup = {(length, code): symbol for symbol, (code, length) in codes.items()}
    max_len = max(length for _, length in codes.values())
    out = [0] * count
    code = length = 0
    n = 0
    for pos, bit in enumerate(bits.tolist()):
        code = (code << 1) | bit
        length += 1
        symbol = lookup.get((length, code))
        if symbol is not None:
            if n == count:
                raise CompressedWeightsError(f"bits left over after {count} symbols")
            out[n] = symbol
            n += 1
            code = length = 0
        elif length >= max_len:
            raise CompressedWeightsError(f"bit pattern ending at bit {pos} is no code of this table")
    if n != count or length:
        raise CompressedWeightsError(f"bitstream holds {n} complete symbols, expected {count}")
    return np.asarray(out, dtype=np.int64)


def relative_index_decode(gap_symbols: np.ndarray, fillers: np.ndarray) -> np.ndarray:
    """Absolute positions of the nonzero weights from relative (gap) indices.

    Args:
        gap_symbols: one per entry, ``gap - 1`` where ``gap`` is the distance to the previous entry (the first
            entry's gap counts from position -1).
        fillers: bool per entry, True for filler entries (no weight there).

    Returns:
        int64 positions (flat, C order) of the non-filler entries, strictly increasing.
    """
    gap_symbols = np.asarray(gap_symbols, dtype=np.int64)
    fillers = np.asarray(fillers, dtype=bool)
    if gap_symbols.shape != fillers.shape:
        raise CompressedWeightsError(f"{gap_symbols.size} gaps but {fillers.size} index symbols")
    if gap_symbols.size and gap_symbols.min() < 0:
        raise CompressedWeightsError("negative gap symbol")
    positions = np.cumsum(gap_symbols + 1) - 1
    return positions[~fillers]


def decode_kernel(
    shape: Sequence[int],
    codebook: np.ndarray,
    index_symbols: np.ndarray,
    gap_symbols: np.ndarray,
    dtype: str = "float32",
) -> np.ndarray:
    """Rebuild a dense kernel from its codebook, cluster indices and gap symbols.

    Args:
        shape: the kernel's shape.
        codebook: shared values; index ``len(codebook)`` marks a filler entry.
        index_symbols: cluster index per entry.
        gap_symbols: ``gap - 1`` per entry.
        dtype: dtype of the result.

    Returns:
        The kernel: ``codebook[index]`` at every decoded position, zero elsewhere.

    Raises:
        CompressedWeightsError: an index past the codebook, or a position past the kernel's end.
    """
    codebook = np.asarray(codebook)
    index_symbols = np.asarray(index_symbols, dtype=np.int64)
    size = int(np.prod(shape, dtype=np.int64))
    if index_symbols.size and (index_symbols.min() < 0 or index_symbols.max() > len(codebook)):
        raise CompressedWeightsError(f"cluster index outside 0..{len(codebook)} (codebook of {len(codebook)})")
    fillers = index_symbols == len(codebook)
    positions = relative_index_decode(gap_symbols, fillers)
    if positions.size and positions[-1] >= size:
        raise CompressedWeightsError(f"position {int(positions[-1])} is past the kernel's {size} weights")
    flat = np.zeros(size, dtype=dtype)
    flat[positions] = codebook[index_symbols[~fillers]]
    return flat.reshape(tuple(shape))


@dataclass(frozen=True)
class CompressedWeights:
    """A parsed ``.dcw`` file: its header and payload (see the module doc for the layout).

    Attributes:
        header: the JSON header (``layers``: list of ``{"name", "weights": [...]}``, ``meta``: free-form).
        payload: the bytes the header's offsets point into.
    """

    header: dict[str, Any]
    payload: bytes

    @property
    def layer_names(self) -> list[str]:
        """Layers stored, in file order."""
        return [layer["name"] for layer in self.header["layers"]]

    def _bytes(self, spec: dict[str, Any]) -> bytes:
        start, n = int(spec["offset"]), int(spec["nbytes"])
        if start < 0 or start + n > len(self.payload):
            raise CompressedWeightsError(f"byte range {start}+{n} is outside the {len(self.payload)}-byte payload")
        return self.payload[start : start + n]

    def decode_weight(self, entry: dict[str, Any]) -> np.ndarray:
        """Decode one weight entry of the header."""
        shape = tuple(int(s) for s in entry["shape"])
        if entry["encoding"] == "raw":
            arr = np.frombuffer(self._bytes(entry), dtype=np.dtype(entry["dtype"]))
            if arr.size != int(np.prod(shape, dtype=np.int64)):
                raise CompressedWeightsError(f"raw weight {entry.get('name')!r} has {arr.size} values for {shape}")
            return arr.reshape(shape).copy()
        if entry["encoding"] != "sparse-huffman":
            raise CompressedWeightsError(f"unknown weight encoding {entry['encoding']!r}")
        cb = entry["codebook"]
        raw = np.frombuffer(self._bytes(cb), dtype=np.dtype(cb["dtype"]))
        if raw.size != int(cb["size"]):
            raise CompressedWeightsError(f"codebook holds {raw.size} values, header says {cb['size']}")
        codebook = np.ldexp(raw.astype(np.float32), np.int32(cb.get("exp", 0))).astype(entry["dtype"])
        n = int(entry["entries"])
        idx_spec, gap_spec = entry["index_code"], entry["gap_code"]
        index_symbols = huffman_decode(
            self._bytes(idx_spec), int(idx_spec["nbits"]), idx_spec["symbols"], idx_spec["lengths"], n
        )
        gap_symbols = huffman_decode(
            self._bytes(gap_spec), int(gap_spec["nbits"]), gap_spec["symbols"], gap_spec["lengths"], n
        )
        if gap_symbols.size and gap_symbols.max() >= (1 << int(entry["gap_bits"])):
            raise CompressedWeightsError(f"a gap symbol does not fit in {entry['gap_bits']} bits")
        return decode_kernel(shape, codebook, index_symbols, gap_symbols, entry["dtype"])

    def decode_layer(self, name: str) -> list[np.ndarray]:
        """All weights of one layer, in the order Keras's ``get_weights()`` lists them."""
        for layer in self.header["layers"]:
            if layer["name"] == name:
                return [self.decode_weight(w) for w in layer["weights"]]
        raise KeyError(f"no layer {name!r} in this file; it has {', '.join(self.layer_names)}")


def read_compressed(path: str | os.PathLike) -> CompressedWeights:
    """Read and verify a ``.dcw`` file (magic, version, header, payload sha256).

    Raises:
        CompressedWeightsError: not a ``.dcw`` file, an unsupported version, a truncated or modified file.
        FileNotFoundError: no such file.
    """
    data = Path(path).read_bytes()
    if len(data) < 8 or data[:4] != MAGIC:
        raise CompressedWeightsError(f"{path}: not a compressed weight file (no {MAGIC!r} magic)")
    (hlen,) = struct.unpack("<I", data[4:8])
    if 8 + hlen > len(data):
        raise CompressedWeightsError(f"{path}: truncated header")
    try:
        header = json.loads(zlib.decompress(data[8 : 8 + hlen]).decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompressedWeightsError(f"{path}: unreadable header ({exc})") from exc
    if header.get("version") != FORMAT_VERSION:
        raise CompressedWeightsError(
            f"{path}: format version {header.get('version')!r} is not supported (this reader: {FORMAT_VERSION})"
        )
    payload = data[8 + hlen :]
    if len(payload) != header.get("payload_bytes") or hashlib.sha256(payload).hexdigest() != header.get(
        "payload_sha256"
    ):
        raise CompressedWeightsError(f"{path}: payload does not match its header (truncated or modified)")
    return CompressedWeights(header, payload)


def decode_compressed(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The Deep-Compression kernels of a ``.dcw`` file, decoded: ``{layer name: kernel}``.

    Only the pruned and weight-shared kernels are returned; :func:`decode_layers` returns every stored weight.
    """
    cw = read_compressed(path)
    out = {}
    for layer in cw.header["layers"]:
        for entry in layer["weights"]:
            if entry["encoding"] == "sparse-huffman":
                out[layer["name"]] = cw.decode_weight(entry)
    return out


def decode_layers(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Every layer's weights, decoded, in Keras ``get_weights()`` order: ``{layer name: [arrays]}``."""
    cw = read_compressed(path)
    return {name: cw.decode_layer(name) for name in cw.layer_names}
