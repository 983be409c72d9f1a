"""Shared test helpers of the board runtime tests: the toy C "C-simulation" kernel and its references.

The toy library stands in for hls4ml's compiled C-simulation: ``toy_float(float in[3072], float out[10])`` with

    out[k] = sum(in[k*307 : k*307 + 8]) - 4        for k < 9
    out[9] = in[3070] + in[3071] - 1

With ``ap_ufixed<8,0>`` in (raw = pixel, value = raw/256) and ``ap_fixed<16,6>`` out (value = raw/1024) every
value is exact, and in raw codes ``out[k] = 4*sum(raw) - 4096`` and ``out[9] = 4*(raw[3070] + raw[3071]) - 1024``
(:func:`toy_raw`). The same map as a linear ONNX model is :func:`toy_weights` (written by ``board_onnx``).
These live in a uniquely named module, not conftest.py, so imports never clash with other folders' conftests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_CIFAR = ROOT.parent / "shared" / "datasets" / "cifar-10-batches-py"
N_IN, N_OUT = 3072, 10


def missing_test_bundle(message: str) -> NoReturn:
    """Skip a test whose real bundle is missing, or fail it where that bundle is required.

    ``make test`` sets ``REQUIRE_TEST_BUNDLE``: its host half has just built the bundle, so a missing one (or one
    without what the test needs) is a failure there, never a silent skip. Run alone, the board tests skip.
    """
    if os.environ.get("REQUIRE_TEST_BUNDLE"):
        pytest.fail(f"{message} (REQUIRE_TEST_BUNDLE is set: the host tests should have built it)")
    pytest.skip(message)


TOY_CPP = r"""
extern "C" void toy_float(float* in, float* out) {
    for (int k = 0; k < 9; ++k) {
        float s = 0.0f;
        for (int j = 0; j < 8; ++j) s += in[k * 307 + j];
        out[k] = s - 4.0f;
    }
    out[9] = in[3070] + in[3071] - 1.0f;
}
// Not a multiple of ap_fixed<16,6>'s LSB: the kernel must refuse it.
extern "C" void toy_bad(float* in, float* out) {
    for (int k = 0; k < 10; ++k) out[k] = 0.1f;
}
"""


def toy_raw(raw_in: np.ndarray) -> np.ndarray:
    """The toy kernel in raw codes: uint8 (B, 3072) -> int16 (B, 10)."""
    r = np.asarray(raw_in, np.int64).reshape(-1, N_IN)
    out = np.empty((len(r), N_OUT), np.int64)
    for k in range(9):
        out[:, k] = 4 * r[:, k * 307 : k * 307 + 8].sum(axis=1) - 4096
    out[:, 9] = 4 * (r[:, 3070] + r[:, 3071]) - 1024
    return out.astype(np.int16)


def toy_weights() -> tuple[np.ndarray, np.ndarray]:
    """The toy kernel as ``logits = flat(x) @ W + b`` on model inputs x = pixel / 256."""
    w = np.zeros((N_IN, N_OUT), np.float32)
    for k in range(9):
        w[k * 307 : k * 307 + 8, k] = 1.0
    w[3070:3072, 9] = 1.0
    return w, np.array([-4.0] * 9 + [-1.0], np.float32)
