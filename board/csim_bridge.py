"""The one ctypes call into an hls4ml C-simulation library: ``<project>_double`` (or ``_float``), one image a call.

hls4ml's bridge exports ``<project>_float(float in[], float out[])`` and its ``_double`` twin. A bundle's manifest
names the float one (``csim_entry``); the double one is used whenever the library has it, because a double holds
every code of a fixed-point type of up to 53 bits exactly and a float only up to 24 (the logits' exact types are
wider). Used by the emulated device's kernel (``board.emulated_device``), the C-simulation runner
(``board.csim_runner``) and the build's gate (``hls_build.csim``).
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from board.errors import BundleError


class CSimBridge:
    """Load a C-simulation library and call its bridge on one image at a time.

    Args:
        library: path of the shared library.
        entry: the manifest's ``csim_entry`` (``<project>_float``); its ``_double`` twin is used when present.
        n_in: input values per image.
        n_out: output values per image.

    Raises:
        BundleError: the library cannot be loaded or exports neither entry point.
    """

    def __init__(self, library: str | os.PathLike, entry: str, n_in: int, n_out: int) -> None:
        try:
            self.lib = ctypes.CDLL(str(library))
        except OSError as exc:
            raise BundleError(f"cannot load C-simulation library {library}: {exc}") from exc
        base = entry[: -len("_float")] if entry.endswith("_float") else entry
        candidates = ((f"{base}_double", ctypes.c_double, np.float64), (entry, ctypes.c_float, np.float32))
        found = [(n, c, t) for n, c, t in candidates if getattr(self.lib, n, None) is not None]
        if not found:
            raise BundleError(f"{library} has no function {entry!r} (manifest csim_entry)")
        name, ctype, np_type = found[0]
        fn = getattr(self.lib, name)
        fn.argtypes = [ctypes.POINTER(ctype), ctypes.POINTER(ctype)]
        fn.restype = None
        self.fn, self.ctype, self.np_type, self.name = fn, ctype, np_type, name
        self.n_in, self.n_out = int(n_in), int(n_out)

    @property
    def max_exact_bits(self) -> int:
        """Widest fixed-point type whose every code passes through this entry point exactly."""
        return 53 if self.np_type is np.float64 else 24

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Input values ``(N, n_in)`` -> float64 output values ``(N, n_out)``.

        Not thread-safe: the library's static state (line buffers, stream counters) is per process; callers
        serialize.
        """
        x = np.ascontiguousarray(values, dtype=self.np_type).reshape(-1, self.n_in)
        out = np.zeros((len(x), self.n_out), self.np_type)
        pointer = ctypes.POINTER(self.ctype)
        for i in range(len(x)):  # ctypes releases the GIL while C runs
            self.fn(x[i].ctypes.data_as(pointer), out[i].ctypes.data_as(pointer))
        return out.astype(np.float64)
