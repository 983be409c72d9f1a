"""The hls4ml C-simulation as the reference engine: raw codes in and out, several processes, layer-by-layer traces.

Three tools to check :mod:`board.fast_engine` against the firmware's own C++ (numpy, ctypes and a C++ compiler
only, so they run in the board environment too):

* :class:`CSimRunner` runs a bundle's compiled C-simulation on raw stream codes, the same contract as the fast
  engine, one image at a time per process. The library keeps static state (weights loaded once, line buffers),
  so it parallelizes with *processes*, each loading its own copy: ``processes=2`` uses both cores of the host.
* :func:`build_traced_library` recompiles the bundle's generated HLS project with hls4ml's trace hooks switched
  on for every layer (``nnet::save_layer_output`` after each layer call, the trace buffers registered in the
  bridge's ``allocate_trace_storage``), as hls4ml's writer does when a layer has ``Trace: true``;
  :class:`CSimTracer` calls it and collects every layer's output (``collect_trace_output``).
* :func:`first_divergence` compares two traces in firmware order and names the first layer whose outputs differ.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from board.bundle import Bundle, load_bundle
from board.csim_bridge import CSimBridge
from board.errors import BundleError, InputError, ToolMissingError
from board.fixed_point import FixedPoint

__all__ = [
    "CSimRunner",
    "CSimTracer",
    "Divergence",
    "build_traced_library",
    "first_divergence",
]


# ------------------------------------------------------------------------------------------------ plain C-sim
class _Worker:
    """One worker process (``python -m board.csim_runner worker ...``) that runs the library on request.

    Not ``multiprocessing``: its spawn mode re-imports the caller's ``__main__`` in every worker (a script without
    a main guard would start workers recursively), and fork copies whatever threads and locks the caller holds.
    The protocol is raw float64 bytes behind an 8-byte length, over the worker's stdin and stdout.
    """

    def __init__(self, library: str, entry: str, n_in: int, n_out: int) -> None:
        root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["OPENBLAS_NUM_THREADS"] = "1"  # the worker does no linear algebra
        cmd = [sys.executable, "-m", "board.csim_runner", "worker", library, entry, str(n_in), str(n_out)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.n_out = n_out

    def __call__(self, values: np.ndarray) -> np.ndarray:
        data = np.ascontiguousarray(values, np.float64).tobytes()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(len(data).to_bytes(8, "little") + data)
            self.proc.stdin.flush()
            out = _read_message(self.proc.stdout)
        except (BrokenPipeError, EOFError) as exc:
            code = self.proc.poll()
            raise BundleError(f"C-simulation worker process died (exit status {code}): {exc}") from None
        return np.frombuffer(out, np.float64).reshape(-1, self.n_out)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def _read_message(stream: Any) -> bytes:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("stream closed")
    size = int.from_bytes(header, "little")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("stream closed mid-message")
    return data


def _worker_main(argv: Sequence[str]) -> int:
    """The worker loop: read input values, write output values, until stdin closes."""
    library, entry, n_in, n_out = argv[0], argv[1], int(argv[2]), int(argv[3])
    # Keep the protocol channel private: anything the C++ prints goes to stderr, not into the byte stream.
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    call = CSimBridge(library, entry, n_in, n_out)
    source = sys.stdin.buffer
    while True:
        try:
            data = _read_message(source)
        except EOFError:
            return 0
        out = call(np.frombuffer(data, np.float64).reshape(-1, n_in)).astype(np.float64).tobytes()
        channel.write(len(out).to_bytes(8, "little") + out)
        channel.flush()


class CSimRunner:
    """A bundle's C-simulation on raw stream codes, in this process or in ``processes`` worker processes.

    Args:
        library: path of the compiled C-simulation (its ``weights/`` beside it).
        entry: the manifest's ``csim_entry`` (``<project>_float``); the ``_double`` twin is used when present.
        n_in: input stream elements per image.
        n_out: output stream elements per image.
        in_type: input stream type.
        out_type: output stream type.
        in_dtype: container of one input element (default: ``in_type``'s).
        out_dtype: container of one output element (default: ``out_type``'s).
        processes: worker processes for large batches (1: run in this process).

    Use as a context manager, or call :meth:`close`, to stop the workers.
    """

    #: Below this many images per worker, the in-process path is faster than starting workers.
    MIN_IMAGES_PER_PROCESS = 4
    #: Images per request to a worker (small pieces keep both workers busy to the end).
    PIECE_IMAGES = 32

    def __init__(
        self,
        library: str | os.PathLike,
        entry: str,
        n_in: int,
        n_out: int,
        in_type: FixedPoint,
        out_type: FixedPoint,
        in_dtype: np.dtype | str | None = None,
        out_dtype: np.dtype | str | None = None,
        processes: int = 1,
    ) -> None:
        self.library, self.entry = str(Path(library).resolve()), entry
        if not (Path(self.library).parent / "weights").is_dir():
            # The C-simulation exit()s the whole process on a missing weight file; refuse before loading it.
            raise BundleError(f"{Path(self.library).parent / 'weights'}: weight files of the C-simulation are missing")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.in_type, self.out_type = in_type, out_type
        self.in_dtype = np.dtype(in_dtype) if in_dtype is not None else in_type.container_dtype
        self.out_dtype = np.dtype(out_dtype) if out_dtype is not None else out_type.container_dtype
        self.processes = max(1, int(processes))
        self._local: CSimBridge | None = None
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()

    @classmethod
    def from_bundle(cls, bundle: Bundle | str | os.PathLike, processes: int = 1) -> CSimRunner:
        """The C-simulation named by a bundle's manifest.

        Raises:
            BundleError: the manifest names no library, or a type string is malformed.
        """
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle)
        m = bundle.manifest
        if not m.csim_library or not m.csim_entry:
            raise BundleError(f"{bundle.root}: bundle names no csim_library/csim_entry")
        return cls(
            bundle.path(m.csim_library),
            m.csim_entry,
            int(np.prod(m.input.shape)),
            int(np.prod(m.output.shape)),
            FixedPoint.parse(m.input.fixed_point),
            FixedPoint.parse(m.output.fixed_point),
            m.input.container,
            m.output.container,
            processes=processes,
        )

    def __enter__(self) -> CSimRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes (the in-process library stays loaded)."""
        workers, self._workers = getattr(self, "_workers", []), []
        for w in workers:
            w.close()

    def __del__(self) -> None:
        self.close()

    def _call_local(self, values: np.ndarray) -> np.ndarray:
        # One caller at a time: the library's static state (line buffers, stream counters) is per process.
        with self._lock:
            if self._local is None:
                self._local = CSimBridge(self.library, self.entry, self.n_in, self.n_out)
            return self._local(values)

    def run_values(self, values: np.ndarray) -> np.ndarray:
        """Input values ``(N, n_in)`` (exact codes of the input type) -> float64 output values ``(N, n_out)``."""
        values = np.asarray(values, np.float64).reshape(-1, self.n_in)
        n = len(values)
        if self.processes == 1 or n < self.processes * self.MIN_IMAGES_PER_PROCESS:
            return self._call_local(values)
        with self._lock:  # one batch at a time through the workers too
            return self._run_workers(values)

    def _run_workers(self, values: np.ndarray) -> np.ndarray:
        n = len(values)
        while len(self._workers) < self.processes:
            self._workers.append(_Worker(self.library, self.entry, self.n_in, self.n_out))
        # Several pieces per worker, handed out as workers finish: balanced even when one core is busier.
        pieces = np.array_split(values, min(n, max(self.processes * 4, -(-n // self.PIECE_IMAGES))))
        results: list[np.ndarray | None] = [None] * len(pieces)
        todo = iter(range(len(pieces)))
        lock = threading.Lock()

        def serve(worker: _Worker) -> None:
            while True:
                with lock:
                    k = next(todo, None)
                if k is None:
                    return
                results[k] = worker(pieces[k])

        with ThreadPoolExecutor(len(self._workers)) as pool:
            for f in [pool.submit(serve, w) for w in self._workers]:
                f.result()
        return np.concatenate(results)

    def run(self, raw_in: np.ndarray) -> np.ndarray:
        """Raw input codes ``(N, n_in)`` -> raw output codes ``(N, n_out)`` in ``out_dtype``.

        Raises:
            InputError: ``raw_in`` has the wrong shape or dtype.
            BundleError: an output is not a code of the output type (library and manifest disagree).
        """
        raw_in = np.asarray(raw_in)
        if raw_in.ndim != 2 or raw_in.shape[1] != self.n_in or raw_in.dtype.kind not in "iu":
            raise InputError(f"expected integer raw input of shape (N, {self.n_in}), got {raw_in.dtype} {raw_in.shape}")
        y = self.run_values(self.in_type.decode(raw_in))
        ok = self.out_type.representable(y)
        if not np.all(ok):
            raise BundleError(
                f"{self.library}: returned values that are not {self.out_type} codes (e.g. {y[~ok][:3].tolist()}); "
                "the library does not match the manifest's output type"
            )
        return self.out_type.encode(y, dtype=self.out_dtype)

    predict_raw = run


# ------------------------------------------------------------------------------------------------- traced C-sim
def _cxx() -> str:
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        raise ToolMissingError("g++ is needed to compile the traced C-simulation; install a C++ compiler")
    return cxx


def _traced_outputs(graph: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every layer output the firmware computes (the input layer has no call to trace)."""
    outs = []
    for layer in graph["layers"]:
        if not layer.get("function_cpp"):
            continue
        for o in layer["outputs"]:
            outs.append({"layer": layer["name"], **o})
    return outs


def _patch_sources(project_dir: Path, graph: Mapping[str, Any]) -> tuple[str, str]:
    """The top function and bridge sources with hls4ml's trace hooks added for every layer output."""
    project = graph.get("project_name", "myproject")
    top = (project_dir / "firmware" / f"{project}.cpp").read_text()
    bridge = (project_dir / f"{project}_bridge.cpp").read_text()
    outs = _traced_outputs(graph)
    by_layer: dict[str, list[dict[str, Any]]] = {}
    for o in outs:
        by_layer.setdefault(o["layer"], []).append(o)
    for layer, layer_outs in by_layer.items():
        # hls4ml writes each call as "    nnet::f<...>(...); // <layer name>".
        pattern = re.compile(rf"^(\s*nnet::[^\n]*;\s*//\s*{re.escape(layer)}\s*)$", re.MULTILINE)
        if len(pattern.findall(top)) != 1:
            raise BundleError(f"cannot find the call of layer {layer!r} in {project}.cpp to trace it")
        saves = "".join(
            f'    nnet::save_layer_output<{o["type"]["name"]}>({o["cpp_name"]}, "{o["name"]}", {o["size"]});\n'
            for o in layer_outs
        )
        top = pattern.sub(lambda m, saves=saves: m.group(1) + "\n#ifndef __SYNTHESIS__\n" + saves + "#endif", top)
    anchor = "nnet::trace_type_size = element_size;"
    if anchor not in bridge:
        raise BundleError(f"{project}_bridge.cpp has no allocate_trace_storage to register the trace buffers in")
    inserts = "".join(
        f'\n    nnet::trace_outputs->insert(std::pair<std::string, void *>("{o["name"]}", '
        f"(void *) malloc({o['size']} * element_size)));"
        for o in outs
    )
    bridge = bridge.replace(anchor, anchor + inserts, 1)
    return top, bridge


def build_traced_library(
    project_dir: str | os.PathLike, graph: Mapping[str, Any], build_dir: str | os.PathLike
) -> Path:
    """Compile the HLS project with every layer's output traced; cached by the sources' hash.

    Args:
        project_dir: the generated hls4ml project (a bundle's ``hls/``), with ``firmware/weights/*.txt``.
        graph: the firmware graph (names the layers, their output streams and types).
        build_dir: where the library and objects go (one sub-folder per distinct source).

    Returns:
        Path of the traced shared library.

    Raises:
        ToolMissingError: no g++.
        BundleError: the sources cannot be patched or do not compile.
    """
    project_dir = Path(project_dir).resolve()
    project = graph.get("project_name", "myproject")
    firmware = project_dir / "firmware"
    top, bridge = _patch_sources(project_dir, graph)
    cxx = _cxx()
    # -O1 compiles the template-heavy top function much faster than -O3 and computes the same ap_fixed bits;
    # -fno-gnu-unique keeps the static state of template functions private to this library when the plain
    # C-simulation is loaded in the same process.
    flags = [
        "-O1",
        "-fPIC",
        "-std=c++14",
        "-fno-gnu-unique",
        f"-I{firmware / 'ap_types'}",
        f"-I{project_dir}",
        f"-I{firmware}",
        f'-DWEIGHTS_DIR="{firmware / "weights"}"',
    ]
    # Cache key: everything the compiler reads (the patched sources, the project's headers and nnet_utils, the
    # flags, which name the weights folder); a rebuilt bundle in the same place gets a new library.
    digest = hashlib.sha256()
    for part in (top, bridge, " ".join(flags), cxx):
        digest.update(part.encode())
    for path in sorted([*firmware.glob("*.h"), *firmware.glob("*.cpp"), *(firmware / "nnet_utils").glob("*.h")]):
        digest.update(path.name.encode() + path.read_bytes())
    out = Path(build_dir).resolve() / f"{project}-traced-{digest.hexdigest()[:16]}"
    lib = out / f"lib{project}_traced.so"
    if lib.is_file():
        return lib
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{project}.cpp").write_text(top)
    (out / f"{project}_bridge.cpp").write_text(bridge)
    sources = [out / f"{project}.cpp", firmware / f"{project}_axi.cpp", out / f"{project}_bridge.cpp"]
    procs = []
    for src in sources:
        obj = out / (src.stem + ".o")
        procs.append(
            (
                subprocess.Popen(
                    [cxx, *flags, "-c", str(src), "-o", str(obj)], cwd=project_dir, stderr=subprocess.PIPE, text=True
                ),
                obj,
            )
        )
    errors = []
    for proc, obj in procs:
        _, err = proc.communicate()
        if proc.returncode:
            errors.append(f"{obj.stem}: " + "\n".join(line for line in err.splitlines() if "error" in line)[:1500])
    if errors:
        raise BundleError("traced C-simulation does not compile:\n" + "\n".join(errors))
    tmp = lib.with_suffix(".so.tmp")
    res = subprocess.run(
        [cxx, "-shared", "-Wl,-Bsymbolic", *(str(o) for _, o in procs), "-o", str(tmp)], capture_output=True, text=True
    )
    if res.returncode:
        raise BundleError(f"traced C-simulation does not link:\n{res.stderr[:1500]}")
    os.replace(tmp, lib)
    return lib


class _TraceData(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("data", ctypes.c_void_p)]


class CSimTracer:
    """Every layer's output from the traced C-simulation, one image at a time.

    Args:
        library: from :func:`build_traced_library`.
        graph: the firmware graph it was built from.
        in_type: input stream type (raw codes are decoded with it).
    """

    def __init__(self, library: str | os.PathLike, graph: Mapping[str, Any], in_type: FixedPoint) -> None:
        self.lib = ctypes.CDLL(str(library))
        project = graph.get("project_name", "myproject")
        self.fn = getattr(self.lib, f"{project}_double")
        self.fn.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double)]
        self.fn.restype = None
        for name, args in (
            ("allocate_trace_storage", [ctypes.c_size_t]),
            ("free_trace_storage", []),
            ("collect_trace_output", [ctypes.POINTER(_TraceData)]),
        ):
            getattr(self.lib, name).argtypes = args
            getattr(self.lib, name).restype = None
        self.outputs = _traced_outputs(graph)
        self.shapes = {o["name"]: tuple(o["shape"]) for o in self.outputs}
        self.sizes = {o["name"]: int(o["size"]) for o in self.outputs}
        self.n_in, self.n_out = int(graph["axi"]["n_in"]), int(graph["axi"]["n_out"])
        self.in_type = in_type

    @classmethod
    def from_bundle(cls, bundle: Bundle, graph: Mapping[str, Any], build_dir: str | os.PathLike) -> CSimTracer:
        """Build (or reuse) the traced library of a bundle's HLS project."""
        project_dir = bundle.path(bundle.manifest.hls.get("project_dir", "hls"))
        lib = build_traced_library(project_dir, graph, build_dir)
        return cls(lib, graph, FixedPoint.parse(bundle.manifest.input.fixed_point))

    def trace(self, raw_in: np.ndarray) -> dict[str, np.ndarray]:
        """Raw input codes ``(N, n_in)`` -> {output name: float64 values ``(N, *shape)``}, firmware order."""
        values = self.in_type.decode(np.asarray(raw_in).reshape(-1, self.n_in))
        result: dict[str, list[np.ndarray]] = {o["name"]: [] for o in self.outputs}
        data = (_TraceData * len(self.outputs))()
        out = np.zeros(self.n_out, np.float64)
        self.lib.allocate_trace_storage(ctypes.sizeof(ctypes.c_double))
        try:
            for x in values:
                x = np.ascontiguousarray(x, np.float64)
                self.fn(
                    x.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                    out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                )
                self.lib.collect_trace_output(data)
                for d in data:
                    name = d.name.decode()
                    arr = np.ctypeslib.as_array(
                        ctypes.cast(d.data, ctypes.POINTER(ctypes.c_double)), (self.sizes[name],)
                    )
                    result[name].append(arr.copy().reshape(self.shapes[name]))
        finally:
            self.lib.free_trace_storage()
        return {name: np.stack(v) for name, v in result.items()}


# ----------------------------------------------------------------------------------------------- comparison
@dataclass(frozen=True)
class Divergence:
    """Where two traces first differ.

    Attributes:
        layer: the first tensor (layer output) in firmware order whose values differ.
        differing: how many of its values differ (over all images).
        total: how many values it has (over all images).
        image: index of the first image with a difference.
        position: index (in the layer's output shape) of the first differing value of that image.
        reference: the reference's value there.
        candidate: the candidate's value there.
        max_abs_diff: the largest absolute difference in the layer.
        previous: the last tensor before it that matched (None if it is the first).
    """

    layer: str
    differing: int
    total: int
    image: int
    position: tuple[int, ...]
    reference: float
    candidate: float
    max_abs_diff: float
    previous: str | None

    def __str__(self) -> str:
        after = f" (all tensors up to {self.previous!r} agree)" if self.previous else ""
        return (
            f"first diverging layer: {self.layer!r}{after}: {self.differing} of {self.total} values differ, max |diff| "
            f"{self.max_abs_diff:.6g}; first at image {self.image}, index {self.position}: reference "
            f"{self.reference!r}, candidate {self.candidate!r}"
        )


def first_divergence(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], order: Sequence[str] | None = None
) -> Divergence | None:
    """Compare two layer traces bit for bit and name the first layer (in firmware order) that differs.

    Args:
        reference: e.g. :meth:`CSimTracer.trace` — name -> values ``(N, *shape)``.
        candidate: e.g. ``FastEngine.trace`` on the same raw inputs.
        order: tensor names in firmware order (default: the reference's order); names missing on either side
            are skipped.

    Returns:
        None when every common tensor is identical, else the first :class:`Divergence`.

    Raises:
        ValueError: a common tensor has different shapes on the two sides.
    """
    previous = None
    for name in order if order is not None else list(reference):
        if name not in reference or name not in candidate:
            continue
        a = np.asarray(reference[name], np.float64)
        b = np.asarray(candidate[name], np.float64)
        if a.shape != b.shape:
            raise ValueError(f"{name}: reference has shape {a.shape}, candidate {b.shape}")
        diff = a != b
        if not np.any(diff):
            previous = name
            continue
        flat = np.flatnonzero(diff.reshape(len(a), -1).any(axis=1))
        image = int(flat[0])
        pos = tuple(int(i) for i in np.argwhere(diff[image])[0])
        return Divergence(
            layer=name,
            differing=int(diff.sum()),
            total=int(diff.size),
            image=image,
            position=pos,
            reference=float(a[image][pos]),
            candidate=float(b[image][pos]),
            max_abs_diff=float(np.max(np.abs(a - b))),
            previous=previous,
        )
    return None


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "worker":
        raise SystemExit(_worker_main(sys.argv[2:]))
    raise SystemExit("usage: python -m board.csim_runner worker LIBRARY ENTRY N_IN N_OUT (started by CSimRunner)")
