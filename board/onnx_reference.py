"""The ONNX reference: a bundle's ONNX models on the CPU, fed the same preprocessed pixels as the accelerator.

A bundle carries two: ``reference.onnx``, the quantized Keras model exported to ONNX (its quantizers become
Round/Min/Max/Mul, computed in float32), and ``reference_int8.onnx``, the same network quantized to 8 bits by
onnxruntime's static quantization (QDQ; ``hls_build.int8_reference``). Both take ``image`` of shape
``(None, 32, 32, 3)`` float32 (preprocessed pixels) and give logits ``(N, 10)``: a CPU baseline for accuracy and
speed, float and 8-bit, without TensorFlow.

Two engines run them (:data:`ENGINES`):

* ``ort``: onnxruntime, where it installs (x86_64, aarch64: a host, the ZCU104). It runs the 8-bit model with its
  integer kernels.
* ``numpy``: :mod:`board.onnx_numpy`, a numpy evaluator of the graph, for the PYNQ-Z2: PyPI has no onnxruntime
  (nor onnx) wheel for its 32-bit ARM (armv7l), and building one there takes hours and more memory than the board
  has. It runs the 8-bit model as the ONNX standard defines QDQ (dequantize, float operator, quantize).

``auto`` (the default) takes onnxruntime when it imports and the numpy evaluator otherwise. Reports name the
engine that ran (:attr:`OnnxReference.engine_description`).
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
from board.errors import BundleError, InputError, ToolMissingError
from board.preprocess import Preprocessing, validate_pixels

__all__ = ["ENGINES", "PRECISIONS", "OnnxReference", "onnxruntime_unavailable_reason", "resolve_engine"]

#: Reference engines: ``auto`` (onnxruntime when it imports, else numpy), ``ort`` or ``numpy``.
ENGINES = ("auto", "ort", "numpy")
#: The bundle's two references: ``float`` (``onnx_reference``) and ``int8`` (``onnx_reference_int8``).
PRECISIONS = ("float", "int8")


def onnxruntime_unavailable_reason(exc: BaseException | None = None, machine: str | None = None) -> str:
    """Why onnxruntime cannot run here (and what runs instead)."""
    machine = (machine or platform.machine()).lower()
    detail = f" ({exc})" if exc is not None else ""
    if machine.startswith("armv7") or machine == "armhf":
        return (
            f"onnxruntime is not available on {machine}: PyPI has no onnxruntime wheel for 32-bit ARM (e.g. the "
            f"PYNQ-Z2's Cortex-A9){detail}; use --reference-engine numpy (the default picks it by itself)"
        )
    return (
        f"onnxruntime is not installed{detail}; pip install onnxruntime (PyPI has wheels for x86_64 and aarch64), "
        "or use --reference-engine numpy"
    )


def _onnxruntime() -> Any:
    import onnxruntime

    return onnxruntime


def resolve_engine(engine: str) -> str:
    """``ort`` or ``numpy`` for ``auto``/``ort``/``numpy``.

    Raises:
        InputError: an unknown engine.
        ToolMissingError: ``ort`` asked for where onnxruntime does not import.
    """
    if engine not in ENGINES:
        raise InputError(f"reference engine must be one of {ENGINES}, got {engine!r}")
    if engine == "numpy":
        return "numpy"
    try:
        _onnxruntime()
    except ImportError as exc:
        if engine == "ort":
            raise ToolMissingError(onnxruntime_unavailable_reason(exc)) from exc
        return "numpy"
    return "ort"


class OnnxReference:
    """An ONNX model of a bundle run on the CPU by onnxruntime or by the numpy evaluator.

    Attributes:
        path: the ``.onnx`` file.
        preprocessing: how uint8 pixels become the model's float input.
        input_name: the model's input name.
        image_shape: shape of one image, e.g. ``(32, 32, 3)``.
        engine: the engine that runs it, ``ort`` or ``numpy``.
        engine_description: that engine in words, with its version (for reports).
        precision: ``float`` or ``int8`` when it came from a bundle (None otherwise).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        preprocessing: Preprocessing | Mapping[str, Any] | None = None,
        threads: int | None = None,
        image_shape: tuple[int, ...] = (32, 32, 3),
        engine: str = "auto",
    ) -> None:
        """Load the model.

        Args:
            path: the ``.onnx`` file.
            preprocessing: a :class:`~board.preprocess.Preprocessing` or the manifest's dict (default: pixel / 256).
            threads: onnxruntime intra-op threads (default: its own choice, all cores); the numpy evaluator uses
                numpy's BLAS threads.
            image_shape: shape of one image.
            engine: ``auto`` (onnxruntime when it imports, else numpy), ``ort`` or ``numpy``.

        Raises:
            ToolMissingError: ``engine="ort"`` and onnxruntime is not installed (e.g. on the PYNQ-Z2).
            BundleError: the file is missing or not a model the engine can load, or it has several inputs; with
                the numpy engine, :class:`~board.onnx_numpy.UnsupportedOperatorError` names the operators it lacks.
        """
        self.engine = resolve_engine(engine)
        if isinstance(preprocessing, Mapping):
            preprocessing = Preprocessing.from_dict(preprocessing)
        self.preprocessing = preprocessing or Preprocessing()
        self.path = os.fspath(path)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.precision: str | None = None
        if not os.path.isfile(self.path):
            raise BundleError(f"ONNX reference {self.path} does not exist")
        if self.engine == "ort":
            inputs = self._load_ort(threads)
        else:
            from board.onnx_numpy import OnnxNumpyModel

            self._numpy = OnnxNumpyModel.load(self.path)
            inputs = self._numpy.input_names
            self.engine_description = f"numpy evaluator (board.onnx_numpy, numpy {np.__version__})"
        if len(inputs) != 1:
            raise BundleError(f"{self.path}: expected one input, found {inputs}")
        self.input_name = inputs[0]
        self._timings: list[BatchTiming] = []

    def _load_ort(self, threads: int | None) -> list[str]:
        ort = _onnxruntime()
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(self.path, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
            raise BundleError(f"ONNX Runtime cannot load {self.path}: {exc}") from exc
        self.engine_description = f"onnxruntime {ort.__version__}"
        return [i.name for i in self._session.get_inputs()]

    @classmethod
    def from_bundle(
        cls, bundle: Bundle, threads: int | None = None, engine: str = "auto", precision: str = "float"
    ) -> OnnxReference:
        """The float or 8-bit reference named by a bundle's manifest.

        Raises:
            BundleError: the manifest names no such reference, or it cannot be loaded.
            ToolMissingError: ``engine="ort"`` and onnxruntime is not installed.
        """
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        m = bundle.manifest
        rel = m.onnx_reference if precision == "float" else m.onnx_reference_int8
        if not rel:
            key = "onnx_reference" if precision == "float" else "onnx_reference_int8"
            raise BundleError(f"{bundle.root}: the manifest names no {key}")
        ref = cls(bundle.path(rel), m.preprocessing, threads, tuple(m.input.shape), engine)
        ref.precision = precision
        return ref

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.engine == "ort":
            return self._session.run(None, {self.input_name: x})[0]
        return self._numpy.run({self.input_name: x})[0]

    def predict(self, pixels: Any, batch_size: int = 256) -> np.ndarray:
        """Float32 logits for uint8 images (same validation and preprocessing as the accelerator).

        Args:
            pixels: ``(N, 32, 32, 3)`` or ``(32, 32, 3)`` uint8 images (or whole numbers in [0, 255]).
            batch_size: images per engine call; each call is timed (:meth:`take_timings`).

        Raises:
            InputError: bad shape, dtype or values.
        """
        images, single = validate_pixels(pixels, self.image_shape)
        outs = []
        for start in range(0, len(images), max(1, batch_size)):
            x = self.preprocessing.to_float(images[start : start + batch_size])
            t0 = time.perf_counter()
            y = self._run(x)
            self._timings.append(BatchTiming(len(x), time.perf_counter() - t0))
            outs.append(np.asarray(y, np.float32))
        if not outs:
            return np.empty((0, *self._run(np.zeros((1, *self.image_shape), np.float32)).shape[1:]), np.float32)
        logits = np.concatenate(outs)
        return logits[0] if single else logits

    def take_timings(self) -> list[BatchTiming]:
        """Timings of the engine calls since the last call, oldest first."""
        timings, self._timings = self._timings, []
        return timings
