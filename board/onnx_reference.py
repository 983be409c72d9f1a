"""ONNX Runtime reference: the float model of a bundle, fed the same preprocessed pixels as the accelerator.

The bundle's ``reference.onnx`` is the quantized Keras model exported to ONNX (quantizers become
Round/Min/Max/Mul), with input ``image`` of shape ``(None, 32, 32, 3)`` float32 (preprocessed pixels) and logits
``(N, 10)`` out. It gives the board a CPU baseline for accuracy and speed without TensorFlow.

onnxruntime has no wheel for the PYNQ-Z2's 32-bit ARM (armv7l), and building it from source on the board takes
hours and gigabytes the board does not have. The decision: on armv7l the reference is skipped, not emulated.
:class:`OnnxReference` raises :class:`~board.errors.ToolMissingError` with :data:`ARMV7L_MESSAGE`, the benchmark
reports the reference as "not available" with that reason, and the FPGA figures are unaffected. The CPU figures
for the same bundle and images come from ``python -m board bench --reference-only`` on a machine that has
onnxruntime (a host or a ZCU104); that report says which machine measured them (they are not Cortex-A9 timings).
The ``board`` extra installs onnxruntime only where ``platform_machine != "armv7l"``, so ``pip install .[board]``
succeeds on the PYNQ-Z2.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from board.bundle import Bundle
from board.driver import BatchTiming
from board.errors import BundleError, ToolMissingError
from board.preprocess import Preprocessing, validate_pixels

__all__ = ["ARMV7L_MESSAGE", "OnnxReference", "onnxruntime_unavailable_reason"]

ARMV7L_MESSAGE = (
    "not available: no onnxruntime wheel for armv7l (32-bit ARM, e.g. the PYNQ-Z2's Cortex-A9); run "
    "`python -m board bench --reference-only --bundle <bundle>` on a host or a ZCU104 for the CPU figures "
    "(they are that machine's, not this board's)"
)


def onnxruntime_unavailable_reason(exc: BaseException | None = None, machine: str | None = None) -> str:
    """Why the ONNX reference cannot run here: the armv7l decision, or onnxruntime missing elsewhere."""
    machine = (machine or platform.machine()).lower()
    if machine.startswith("armv7") or machine == "armhf":
        return ARMV7L_MESSAGE
    detail = f": {exc}" if exc is not None else ""
    return (
        "onnxruntime is not installed, so the ONNX reference is not available (pip install onnxruntime; PyPI has "
        f"wheels for x86_64 and aarch64, not for 32-bit ARM){detail}"
    )


class OnnxReference:
    """A float ONNX model run by ONNX Runtime on the CPU.

    Attributes:
        path: the ``.onnx`` file.
        preprocessing: how uint8 pixels become the model's float input.
        input_name: the model's input name.
        image_shape: shape of one image, e.g. ``(32, 32, 3)``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        preprocessing: Preprocessing | Mapping[str, Any] | None = None,
        threads: int | None = None,
        image_shape: tuple[int, ...] = (32, 32, 3),
    ) -> None:
        """Load the model.

        Args:
            path: the ``.onnx`` file.
            preprocessing: a :class:`~board.preprocess.Preprocessing` or the manifest's dict (default: pixel / 256).
            threads: ONNX Runtime intra-op threads (default: its own choice, all cores).
            image_shape: shape of one image.

        Raises:
            ToolMissingError: onnxruntime is not installed (e.g. on the PYNQ-Z2).
            BundleError: the file is missing or not a model ONNX Runtime can load, or it has several inputs.
        """
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ToolMissingError(onnxruntime_unavailable_reason(exc)) from exc
        if isinstance(preprocessing, Mapping):
            preprocessing = Preprocessing.from_dict(preprocessing)
        self.preprocessing = preprocessing or Preprocessing()
        self.path = os.fspath(path)
        self.image_shape = tuple(int(s) for s in image_shape)
        if not os.path.isfile(self.path):
            raise BundleError(f"ONNX reference {self.path} does not exist")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(self.path, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
            raise BundleError(f"ONNX Runtime cannot load {self.path}: {exc}") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise BundleError(f"{self.path}: expected one input, found {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        self._timings: list[BatchTiming] = []

    @classmethod
    def from_bundle(cls, bundle: Bundle, threads: int | None = None) -> OnnxReference:
        """The reference named by a bundle's manifest.

        Raises:
            BundleError: the manifest names no ONNX reference.
            ToolMissingError: onnxruntime is not installed.
        """
        m = bundle.manifest
        if not m.onnx_reference:
            raise BundleError(f"{bundle.root}: the manifest names no onnx_reference")
        return cls(bundle.path(m.onnx_reference), m.preprocessing, threads, tuple(m.input.shape))

    def predict(self, pixels: Any, batch_size: int = 256) -> np.ndarray:
        """Float32 logits for uint8 images (same validation and preprocessing as the accelerator).

        Args:
            pixels: ``(N, 32, 32, 3)`` or ``(32, 32, 3)`` uint8 images (or whole numbers in [0, 255]).
            batch_size: images per ONNX Runtime call; each call is timed (:meth:`take_timings`).

        Raises:
            InputError: bad shape, dtype or values.
        """
        images, single = validate_pixels(pixels, self.image_shape)
        outs = []
        for start in range(0, len(images), max(1, batch_size)):
            x = self.preprocessing.to_float(images[start : start + batch_size])
            t0 = time.perf_counter()
            (y,) = self._session.run(None, {self.input_name: x})[:1]
            self._timings.append(BatchTiming(len(x), time.perf_counter() - t0))
            outs.append(np.asarray(y, np.float32))
        if not outs:
            shape = self._session.get_outputs()[0].shape
            return np.empty((0, *[d if isinstance(d, int) else 0 for d in shape[1:]]), np.float32)
        logits = np.concatenate(outs)
        return logits[0] if single else logits

    def take_timings(self) -> list[BatchTiming]:
        """Timings of the ONNX Runtime calls since the last call, oldest first."""
        timings, self._timings = self._timings, []
        return timings
