"""The board-side decoder of Deep-Compression weight files, on literal bitstreams and a hand-written file.

Runs in the board environment (numpy 1.x, no TensorFlow): nothing here imports the training side's encoder, so the
file format is pinned independently of it.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib

import numpy as np
import pytest

from board.compressed_weights import (
    MAGIC,
    CompressedWeightsError,
    canonical_codes,
    decode_compressed,
    decode_kernel,
    decode_layers,
    huffman_decode,
    read_compressed,
    relative_index_decode,
)


def test_canonical_codes_literal():
    # CLRS's Huffman lengths -> canonical codes a=0, b=100, c=101, d=110, e=1110, f=1111.
    codes = canonical_codes([0, 1, 2, 3, 4, 5], [1, 3, 3, 3, 4, 4])
    assert codes == {0: (0, 1), 1: (4, 3), 2: (5, 3), 3: (6, 3), 4: (14, 4), 5: (15, 4)}


def test_huffman_decode_literal():
    # 0 100 1111 | 101 110 1110 = 0x4f, 0xbb, 0x80 (18 bits).
    data = bytes([0x4F, 0xBB, 0x80])
    out = huffman_decode(data, 18, [0, 1, 2, 3, 4, 5], [1, 3, 3, 3, 4, 4], 6)
    assert out.tolist() == [0, 1, 5, 2, 3, 4]
    assert huffman_decode(b"", 0, [], [], 0).tolist() == []
    assert huffman_decode(b"\x00", 3, [7], [1], 3).tolist() == [7, 7, 7]  # a lone symbol has a 1-bit code


def test_huffman_decode_refuses_bad_streams():
    with pytest.raises(CompressedWeightsError, match="ended"):
        huffman_decode(b"\x4f", 8, [0, 1, 2, 3, 4, 5], [1, 3, 3, 3, 4, 4], 4)
    with pytest.raises(CompressedWeightsError, match="no code"):
        huffman_decode(b"\x80", 1, [7], [1], 1)  # a 1 bit where the only code is 0
    with pytest.raises(CompressedWeightsError, match="claims"):
        huffman_decode(b"\x00", 9, [7], [1], 9)


def test_relative_index_decode_literal():
    # Han et al.'s figure with 3-bit gaps: 2, 3, 8 (filler), 3 -> positions 1, 4, 15.
    assert relative_index_decode(np.array([1, 2, 7, 2]), np.array([0, 0, 1, 0], bool)).tolist() == [1, 4, 15]


def test_decode_kernel_literal():
    kernel = decode_kernel((2, 4), np.array([-0.25, 0.25], np.float32), np.array([1, 2, 0]), np.array([1, 3, 1]))
    assert kernel.tolist() == [[0.0, 0.25, 0.0, 0.0], [0.0, 0.0, 0.0, -0.25]]
    assert kernel.dtype == np.float32
    with pytest.raises(CompressedWeightsError, match="past the kernel"):
        decode_kernel((2, 2), np.array([1.0], np.float32), np.array([0]), np.array([4]))


def _toy_file(path, tamper: bool = False) -> None:
    """A hand-written .dcw: layer "fc" = toy 2x4 kernel (Huffman-coded) + raw float32 bias; layer "bn" raw."""
    codebook = np.array([-1, 1], np.int8).tobytes()  # * 2^-2 -> [-0.25, 0.25]
    index_stream = b"\xd0"  # symbols 1, 2, 0 with codes {2: 0, 0: 10, 1: 11} -> 11 0 10
    gap_stream = b"\x40"  # symbols 1, 3, 1 with codes {1: 0, 3: 1} -> 0 1 0
    bias = np.array([0.5, -1.5], "<f4").tobytes()
    bn = np.array([1.0, 2.0, 3.0], "<f4").tobytes()
    payload = codebook + index_stream + gap_stream + bias + bn
    kernel = {
        "name": "kernel", "encoding": "sparse-huffman", "shape": [2, 4], "dtype": "float32", "entries": 3,
        "nonzeros": 2, "gap_bits": 2,
        "codebook": {"offset": 0, "nbytes": 2, "dtype": "|i1", "exp": -2, "size": 2},
        "index_code": {"offset": 2, "nbytes": 1, "nbits": 5, "symbols": [0, 1, 2], "lengths": [2, 2, 1]},
        "gap_code": {"offset": 3, "nbytes": 1, "nbits": 3, "symbols": [1, 3], "lengths": [1, 1]},
    }  # fmt: skip
    header = {
        "format": "deep-compression-weights", "version": 1, "meta": {},
        "layers": [
            {"name": "fc", "weights": [kernel, {"name": "w1", "encoding": "raw", "shape": [2], "dtype": "<f4",
                                                "offset": 4, "nbytes": 8}]},
            {"name": "bn", "weights": [{"name": "w0", "encoding": "raw", "shape": [3], "dtype": "<f4",
                                        "offset": 12, "nbytes": 12}]},
        ],
        "payload_bytes": len(payload), "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }  # fmt: skip
    head = zlib.compress(json.dumps(header).encode())
    if tamper:
        payload = payload[:-1] + b"\x00"
    path.write_bytes(MAGIC + struct.pack("<I", len(head)) + head + payload)


def test_hand_written_file_decodes(tmp_path):
    path = tmp_path / "toy.dcw"
    _toy_file(path)
    kernels = decode_compressed(path)
    assert list(kernels) == ["fc"]
    assert kernels["fc"].tolist() == [[0.0, 0.25, 0.0, 0.0], [0.0, 0.0, 0.0, -0.25]]
    layers = decode_layers(path)
    assert layers["fc"][1].tolist() == [0.5, -1.5] and layers["bn"][0].tolist() == [1.0, 2.0, 3.0]
    assert read_compressed(path).layer_names == ["fc", "bn"]


def test_tampered_or_foreign_files_are_refused(tmp_path):
    path = tmp_path / "bad.dcw"
    _toy_file(path, tamper=True)
    with pytest.raises(CompressedWeightsError, match="does not match its header"):
        read_compressed(path)
    path.write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(CompressedWeightsError, match="magic"):
        read_compressed(path)
