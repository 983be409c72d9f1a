"""The Xilinx tools: finding them on PATH and running one with progress, a timeout and a clear failure."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from board.errors import CheckFailedError, ToolMissingError

log = logging.getLogger(__name__)


STEP_MARKER = "@@overlay:"
_CONTAINER_BITS = {"uint8": 8, "int8": 8, "uint16": 16, "int16": 16, "uint32": 32, "int32": 32, "float32": 32}
_TOOL_HELP = (
    "Install AMD Vivado with Vitis HLS (the AMD Unified Installer; Vivado/Vitis HLS 2020.2 or later) and make them "
    "visible in this shell: `source <install>/Vivado/<version>/settings64.sh` and, for HLS, "
    "`source <install>/Vitis_HLS/<version>/settings64.sh` (2020.2-2024.1) or "
    "`source <install>/Vitis/<version>/settings64.sh` (2024.2 and later)."
)


class VivadoFlowError(CheckFailedError):
    """HLS or Vivado ran and failed, or produced something unusable; the message holds the log's tail (exit 1)."""


# --- tools ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class XilinxTools:
    """The tools found on PATH.

    Attributes:
        hls_name: ``vitis_hls``, ``vitis-run`` or ``vivado_hls``.
        hls_path: its path.
        hls_flavor: ``vitis`` or ``vivado_hls`` (which wrapper and Tcl variant to use).
        vivado_path: path of ``vivado``.
    """

    hls_name: str
    hls_path: str
    hls_flavor: str
    vivado_path: str

    def hls_command(self, script: Path) -> list[str]:
        """Command line that runs an HLS Tcl script."""
        if self.hls_name == "vitis-run":
            return [self.hls_path, "--mode", "hls", "--tcl", str(script)]
        return [self.hls_path, "-f", str(script)]

    def vivado_command(self, script: Path) -> list[str]:
        """Command line that runs a Vivado Tcl script in batch mode."""
        return [self.vivado_path, "-mode", "batch", "-nojournal", "-notrace", "-source", str(script)]


#: HLS front ends in order of preference: (executable, flavor).
HLS_TOOLS = (("vitis_hls", "vitis"), ("vitis-run", "vitis"), ("vivado_hls", "vivado_hls"))


def find_tools(hls_tool: str = "auto") -> XilinxTools:
    """Find the HLS tool and Vivado on PATH.

    Args:
        hls_tool: ``auto`` (the first of ``vitis_hls``, ``vitis-run``, ``vivado_hls``) or one of those names.

    Raises:
        ToolMissingError: a needed tool is not on PATH; the message says what to install and source.
        ValueError: ``hls_tool`` is not a known name.
    """
    names = [n for n, _ in HLS_TOOLS]
    if hls_tool != "auto" and hls_tool not in names:
        raise ValueError(f"unknown HLS tool {hls_tool!r}; choose auto or one of {', '.join(names)}")
    candidates = [(n, f) for n, f in HLS_TOOLS if hls_tool in ("auto", n)]
    hls = next(((n, shutil.which(n), f) for n, f in candidates if shutil.which(n)), None)
    vivado = shutil.which("vivado")
    missing = []
    if hls is None:
        missing.append("an HLS tool (" + " or ".join(n for n, _ in candidates) + ")")
    if vivado is None:
        missing.append("vivado")
    if missing:
        raise ToolMissingError(
            f"the Vivado flow needs Xilinx tools on PATH and did not find {' and '.join(missing)}. {_TOOL_HELP} "
            "(`bitstream --scripts-only` writes the scripts without running them.)"
        )
    assert hls is not None and vivado is not None
    return XilinxTools(hls_name=hls[0], hls_path=str(hls[1]), hls_flavor=hls[2], vivado_path=vivado)


_PROGRESS = re.compile(
    r"^(ERROR|CRITICAL WARNING)|Waiting for \w+ to finish|\b\w+_1 finished|launch_runs|write_bitstream completed"
    r"|Finished (C synthesis|synthesizing|Generating)|HLS 200-111",
)


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop a tool started by :func:`run_tool` and everything it started (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def run_tool(
    argv: Sequence[str], cwd: Path, log_path: Path, what: str, verbose: bool = False, timeout_s: float | None = None
) -> None:
    """Run a Xilinx tool, writing its output to ``log_path`` and showing progress lines as it goes.

    Lines the scripts mark with :data:`STEP_MARKER`, errors, critical warnings and the run launcher's messages are
    logged at INFO/WARNING; with ``verbose`` every line is.

    Raises:
        VivadoFlowError: the tool exited non-zero or ran past ``timeout_s``; the message quotes its errors and the
            tail of the log.
    """
    log.info("%s: %s (log: %s)", what, " ".join(argv), log_path)
    tail: deque[str] = deque(maxlen=30)
    errors: list[str] = []
    start = time.monotonic()
    with log_path.open("w") as out:
        # Its own process group: the tools are shell wrappers around the real binaries, and a stop must reach those.
        proc = subprocess.Popen(
            list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            start_new_session=True,
        )  # fmt: skip
        assert proc.stdout is not None
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            _kill_group(proc)

        # A watchdog, so that a tool that hangs without printing is stopped too.
        watchdog = threading.Timer(timeout_s, stop) if timeout_s is not None else None
        if watchdog is not None:
            watchdog.daemon = True
            watchdog.start()
        try:
            for line in proc.stdout:
                out.write(line)
                line = line.rstrip("\n")
                tail.append(line)
                if line.startswith("ERROR") and len(errors) < 10:
                    errors.append(line)
                if STEP_MARKER in line:
                    log.info("%s: %s", what, line.split(STEP_MARKER, 1)[1].strip())
                elif verbose or _PROGRESS.search(line):
                    level = logging.WARNING if line.startswith(("ERROR", "CRITICAL")) else logging.INFO
                    log.log(level, "%s: %s", what, line)
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            rc = proc.wait()
            if watchdog is not None:
                watchdog.cancel()
    elapsed = time.monotonic() - start
    if timed_out.is_set() or rc != 0:
        why = f"ran past {timeout_s:g} s and was stopped" if timed_out.is_set() else f"exited with status {rc}"
        shown = "\n".join([*errors, "--- last lines of the log ---", *tail] if errors else tail)
        raise VivadoFlowError(f"{what} {why} after {elapsed:.0f} s; full log: {log_path}\n{shown}")
    log.info("%s finished in %.0f s", what, elapsed)
