"""Huffman coding and Han et al.'s relative sparse indices, as pure numpy functions (the encoding side).

The decoding side lives in :mod:`board.compressed_weights` (numpy only, so the board can decode), and is re-exported
here; the tests round-trip one against the other.

* :func:`huffman_code_lengths` builds an optimal prefix code from symbol frequencies (ties broken by symbol, so the
  result is deterministic); codes are canonical (:func:`board.compressed_weights.canonical_codes`), so the lengths
  define them and are all a file needs to store.
* :func:`huffman_encode` packs symbols into bytes, most significant bit first.
* :func:`relative_index_encode` turns the positions of the nonzero weights into gaps of at most ``2^gap_bits``,
  with filler entries where a gap is longer (Han et al., ICLR 2016, section 2: "when we need an index difference
  larger than the bound, we use the zero padding solution").
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from board.compressed_weights import canonical_codes, huffman_decode, relative_index_decode

__all__ = [
    "HuffmanTable",
    "huffman_code_lengths",
    "build_table",
    "huffman_encode",
    "huffman_decode",
    "canonical_codes",
    "relative_index_encode",
    "relative_index_decode",
    "huffman_bits",
    "fixed_width_bits",
]


@dataclass(frozen=True)
class HuffmanTable:
    """A canonical Huffman code: symbols (ascending) and their code lengths."""

    symbols: tuple[int, ...]
    lengths: tuple[int, ...]

    def codes(self) -> dict[int, tuple[int, int]]:
        """``{symbol: (code, length)}`` (see :func:`board.compressed_weights.canonical_codes`)."""
        return canonical_codes(self.symbols, self.lengths)

    def to_dict(self) -> dict[str, list[int]]:
        """JSON-ready form."""
        return {"symbols": list(self.symbols), "lengths": list(self.lengths)}


def huffman_code_lengths(frequencies: Mapping[int, int]) -> dict[int, int]:
    """Code length of each symbol in an optimal (Huffman) prefix code.

    The two least frequent subtrees are merged until one is left; among equal frequencies the subtree holding the
    smallest symbol is taken first, so equal inputs always give equal codes. A lone symbol gets a 1-bit code.

    Args:
        frequencies: ``{symbol: count}``; symbols with count 0 are left out of the code.

    Returns:
        ``{symbol: length}`` for every symbol with a positive count.

    Raises:
        ValueError: a negative count.
    """
    items = sorted((int(s), int(f)) for s, f in frequencies.items())
    if any(f < 0 for _, f in items):
        raise ValueError("symbol frequencies must be >= 0")
    items = [(s, f) for s, f in items if f > 0]
    if not items:
        return {}
    if len(items) == 1:
        return {items[0][0]: 1}
    # Heap entries: (frequency, smallest symbol in the subtree, symbols in the subtree).
    heap = [(f, s, [s]) for s, f in items]
    heapq.heapify(heap)
    depth = {s: 0 for s, _ in items}
    while len(heap) > 1:
        f1, m1, s1 = heapq.heappop(heap)
        f2, m2, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            depth[s] += 1
        heapq.heappush(heap, (f1 + f2, min(m1, m2), s1 + s2))
    return depth


def build_table(symbols: np.ndarray) -> HuffmanTable:
    """The Huffman code of the symbols' own frequencies."""
    values, counts = np.unique(np.asarray(symbols, dtype=np.int64), return_counts=True)
    lengths = huffman_code_lengths(dict(zip(values.tolist(), counts.tolist())))
    ordered = sorted(lengths)
    return HuffmanTable(tuple(ordered), tuple(lengths[s] for s in ordered))


def huffman_bits(symbols: np.ndarray, table: HuffmanTable | None = None) -> int:
    """Length in bits of the encoded symbols (without encoding them); ``table`` defaults to their own code."""
    symbols = np.asarray(symbols, dtype=np.int64)
    table = table or build_table(symbols)
    if symbols.size == 0:
        return 0
    lookup = dict(zip(table.symbols, table.lengths))
    values, counts = np.unique(symbols, return_counts=True)
    try:
        return int(sum(lookup[v] * c for v, c in zip(values.tolist(), counts.tolist())))
    except KeyError as exc:
        raise ValueError(f"symbol {exc.args[0]} is not in the Huffman table") from exc


def huffman_encode(symbols: np.ndarray, table: HuffmanTable) -> tuple[bytes, int]:
    """Encode symbols with a canonical Huffman table.

    Args:
        symbols: integer symbols, each in ``table``.
        table: the code.

    Returns:
        ``(data, nbits)``: the bitstream packed MSB first (zero-padded to whole bytes) and its length in bits.

    Raises:
        ValueError: a symbol that is not in the table.
    """
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    if symbols.size == 0:
        return b"", 0
    codes = table.codes()
    max_len = max(length for _, length in codes.values())
    alphabet = np.array(sorted(codes), dtype=np.int64)
    pos = np.searchsorted(alphabet, symbols)
    pos = np.clip(pos, 0, len(alphabet) - 1)
    if not np.array_equal(alphabet[pos], symbols):
        bad = symbols[alphabet[pos] != symbols][0]
        raise ValueError(f"symbol {int(bad)} is not in the Huffman table")
    code_of = np.array([codes[s][0] for s in alphabet.tolist()], dtype=np.int64)[pos]
    len_of = np.array([codes[s][1] for s in alphabet.tolist()], dtype=np.int64)[pos]
    # Bit j (MSB first) of each code, laid out as a (symbols, max_len) matrix; keep the first len_of bits per row.
    shifts = len_of[:, None] - 1 - np.arange(max_len)[None, :]
    bits = (code_of[:, None] >> np.maximum(shifts, 0)) & 1
    keep = shifts >= 0
    stream = bits[keep].astype(np.uint8)
    return np.packbits(stream).tobytes(), int(stream.size)


def relative_index_encode(positions: np.ndarray, gap_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Han et al.'s relative indices: gaps between nonzero positions, with filler entries for long gaps.

    Each entry stores ``gap - 1`` in ``gap_bits`` bits, so gaps 1..2^gap_bits fit; the first gap counts from -1.
    A gap ``g`` longer than ``M = 2^gap_bits`` is preceded by ``ceil(g / M) - 1`` filler entries of gap ``M``.

    Args:
        positions: strictly increasing flat positions of the nonzero weights.
        gap_bits: bits per stored gap (>= 1).

    Returns:
        ``(gap_symbols, fillers)``: ``gap - 1`` per entry, and a bool per entry that is True for fillers.

    Raises:
        ValueError: ``gap_bits < 1`` or positions that are negative or not strictly increasing.
    """
    if int(gap_bits) != gap_bits or gap_bits < 1:
        raise ValueError(f"gap_bits must be an integer >= 1, got {gap_bits!r}")
    positions = np.asarray(positions, dtype=np.int64).ravel()
    if positions.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    if positions[0] < 0:
        raise ValueError("positions must be >= 0")
    gaps = np.diff(np.concatenate([[-1], positions]))
    if gaps.min() < 1:
        raise ValueError("positions must be strictly increasing")
    span = 1 << int(gap_bits)
    n_fill = (gaps - 1) // span
    per_entry = n_fill + 1
    total = int(per_entry.sum())
    gap_out = np.full(total, span, dtype=np.int64)
    last = np.cumsum(per_entry) - 1
    gap_out[last] = gaps - n_fill * span
    fillers = np.ones(total, dtype=bool)
    fillers[last] = False
    return gap_out - 1, fillers


def fixed_width_bits(n_symbols: int) -> int:
    """Bits of a fixed-width code for an alphabet of ``n_symbols`` (at least 1)."""
    return max(1, math.ceil(math.log2(max(n_symbols, 1))))
