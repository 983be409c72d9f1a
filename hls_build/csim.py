"""Compile and call the hls4ml C-simulation of the AXI-stream accelerator as a relocatable shared library.

hls4ml's own ``compile()`` bakes the absolute path of the weight files into the library (``WEIGHTS_DIR``) and the
C-simulation calls ``exit(1)`` when they are missing, so a library copied into an overlay bundle would kill whoever
loads it. We compile the same sources (the network, the AXI wrapper ``myproject_axi`` and hls4ml's bridge) with
``WEIGHTS_DIR`` replaced by a function that finds ``weights/`` next to the library at run time (``dladdr``). The
bundle then carries ``<lib>.so`` and ``weights/`` side by side and works wherever it is unpacked.

The library exports hls4ml's bridge ``<project>_float(float in[N_IN], float out[N_OUT])``: one image through the
AXI top function, floats converted exactly to and from the AXI stream's fixed-point types.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from board.csim_bridge import CSimBridge
from board.errors import ProjectError, ToolMissingError

#: Forced-include header: declares the run-time weights folder before hls4ml's nnet_helpers.h uses WEIGHTS_DIR.
_WEIGHTS_DIR_HEADER = """\
#pragma once
const char *hls4ml_csim_weights_dir();
"""

#: Defines it: ``<directory of this .so>/weights``.
_WEIGHTS_DIR_SOURCE = """\
#include <dlfcn.h>
#include <string>

const char *hls4ml_csim_weights_dir() {
    static std::string dir;
    if (dir.empty()) {
        Dl_info info;
        if (dladdr((void *)&hls4ml_csim_weights_dir, &info) && info.dli_fname) {
            std::string lib(info.dli_fname);
            size_t slash = lib.find_last_of('/');
            dir = (slash == std::string::npos ? std::string(".") : lib.substr(0, slash)) + "/weights";
        } else {
            dir = "weights";
        }
    }
    return dir.c_str();
}
"""


class CSimBuildError(ProjectError, RuntimeError):
    """g++ failed on the generated HLS sources (the message holds the compiler's first errors)."""


def fix_generated_sources(project_dir: Path, project_name: str = "myproject") -> list[str]:
    """Repair known defects of hls4ml 1.3.0's generated files in place; returns what was changed.

    * ``<project>_axi.h`` declares the AXI data types with hls4ml's generic type names
      (``typedef ufixed<8,0,TRN,WRAP,0> T_in``), which are not C++: they become ``ap_ufixed<8,0,AP_TRN,AP_WRAP,0>``.
    """
    fixes = []
    header = project_dir / "firmware" / f"{project_name}_axi.h"
    text = header.read_text()

    def to_ap(m: re.Match) -> str:
        kind, args = m.group(2), [a.strip() for a in m.group(3).split(",")]
        for i in (2, 3):
            if len(args) > i and not args[i].startswith("AP_"):
                args[i] = "AP_" + args[i]
        return f"typedef ap_{kind}<{','.join(args)}> {m.group(4)};"

    new = re.sub(r"typedef\s+((u?fixed))<([^>]*)>\s+(T_in|T_out)\s*;", to_ap, text)
    if new != text:
        header.write_text(new)
        fixes.append(f"{header.name}: generic fixed types of T_in/T_out rewritten as ap_(u)fixed")
    return fixes


def compile_library(
    project_dir: Path, out_dir: Path, project_name: str = "myproject", build_dir: Path | None = None, jobs: int = 2
) -> Path:
    """Compile the C-simulation into ``out_dir/lib<project>_csim_<hash>.so`` with the weight files beside it.

    Args:
        project_dir: the hls4ml project written by ``hls_model.write()`` (and fixed by :func:`fix_generated_sources`).
        out_dir: folder that receives the library; its ``weights/`` is filled from the project's unless it is the
            project's own ``firmware/`` folder, which already holds them.
        project_name: hls4ml project name.
        build_dir: where object files go (default: ``<project_dir>/csim_build``).
        jobs: source files compiled in parallel.

    Returns:
        Path of the shared library.

    Raises:
        ToolMissingError: no g++ on PATH.
        CSimBuildError: compilation failed.
    """
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        raise ToolMissingError(
            "g++ is needed to compile the hls4ml C-simulation; install a C++ compiler (apt install g++)"
        )
    project_dir, out_dir = Path(project_dir).resolve(), Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    build = Path(build_dir).resolve() if build_dir else project_dir / "csim_build"
    build.mkdir(parents=True, exist_ok=True)
    (build / "weights_dir.h").write_text(_WEIGHTS_DIR_HEADER)
    (build / "weights_dir.cpp").write_text(_WEIGHTS_DIR_SOURCE)
    flags = ["-O3", "-fPIC", "-std=c++14", "-fno-gnu-unique", f"-I{project_dir / 'firmware' / 'ap_types'}",
             f"-I{project_dir}", "-include", str(build / "weights_dir.h"),
             "-DWEIGHTS_DIR=hls4ml_csim_weights_dir()"]  # fmt: skip
    sources = [
        project_dir / "firmware" / f"{project_name}.cpp",
        project_dir / "firmware" / f"{project_name}_axi.cpp",
        project_dir / f"{project_name}_bridge.cpp",
        build / "weights_dir.cpp",
    ]
    objects = [build / (s.stem + ".o") for s in sources]
    procs: list[tuple[subprocess.Popen, Path]] = []
    errors = []
    for src, obj in zip(sources, objects):
        # hls4ml's sources include "firmware/..." and "nnet_utils/..." relative to the project root.
        procs.append((subprocess.Popen([cxx, *flags, "-c", str(src), "-o", str(obj)], cwd=project_dir,
                                       stderr=subprocess.PIPE, text=True), src))  # fmt: skip
        if len(procs) >= jobs or src == sources[-1]:
            for proc, s in procs:
                _, err = proc.communicate()
                if proc.returncode:
                    errors.append(
                        f"{s.name}:\n" + "\n".join(line for line in err.splitlines() if "error" in line)[:2000]
                    )
            procs = []
    if errors:
        raise CSimBuildError("C-simulation compile failed:\n" + "\n".join(errors))
    tmp = out_dir / f"lib{project_name}_csim.so.tmp"
    # -Bsymbolic: the library's own calls bind to its own functions, never to a same-named one of another C-sim
    # library already loaded in this process (two builds of one model differ only in their types).
    res = subprocess.run([cxx, "-shared", "-Wl,-Bsymbolic", *map(str, objects), "-o", str(tmp)], capture_output=True,
                         text=True)  # fmt: skip
    if res.returncode:
        raise CSimBuildError(f"C-simulation link failed:\n{res.stderr[:2000]}")
    # The name carries the content hash: the dynamic loader hands back an already loaded library for a path it
    # has seen, so a rebuild in the same place (a failed gate, a notebook) must not reuse the old file name.
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:12]
    lib = out_dir / f"lib{project_name}_csim_{digest}.so"
    for old in out_dir.glob(f"lib{project_name}_csim*.so"):
        if old != lib:
            old.unlink()
    os.replace(tmp, lib)
    weights, source_weights = out_dir / "weights", project_dir / "firmware" / "weights"
    if weights.resolve() != source_weights.resolve():
        if weights.exists():
            shutil.rmtree(weights)
        shutil.copytree(source_weights, weights, ignore=shutil.ignore_patterns("*.h"))
    return lib


class CSimLibrary:
    """The compiled C-simulation, called one image at a time through hls4ml's bridge (``board.csim_bridge``).

    Args:
        path: the shared library from :func:`compile_library` (its ``weights/`` must sit beside it).
        n_in: input elements per image (3072 for CIFAR-10).
        n_out: output elements per image (10 logits).
        entry: exported float function name; its exact ``_double`` twin is used when present.
    """

    def __init__(self, path: str | os.PathLike, n_in: int, n_out: int, entry: str = "myproject_float"):
        path = Path(path).resolve()
        if not (path.parent / "weights").is_dir():
            # The C-simulation exit()s the whole process on a missing weight file; refuse before loading it.
            raise FileNotFoundError(f"{path.parent / 'weights'}: weight files of the C-simulation are missing")
        self._bridge = CSimBridge(path, entry, n_in, n_out)
        self.n_in, self.n_out = n_in, n_out

    def predict(self, x: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """Run every image of ``x`` (N, ...) through the C-simulation; returns (N, n_out) in ``dtype``."""
        return self._bridge(np.asarray(x, np.float64).reshape(len(x), self.n_in)).astype(dtype)
