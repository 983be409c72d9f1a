"""A small textual progress bar on stderr for long runs (no dependency: PYNQ images need not have tqdm).

On a terminal the bar redraws in place (carriage return); elsewhere (logs, CI, notebooks) it prints a line at most every
``min_interval_s`` seconds, so a 10,000-image board run shows where it is without flooding the output::

    fpga [##########----------]  5000/10000 images  50%  812.3 img/s  ETA 6s

Enable or disable it explicitly with ``enabled=``; by default it is on when the stream is a terminal, and the
environment variable ``ZYNQ_RESNET_PROGRESS`` (``1``/``0``) overrides that.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

__all__ = ["Progress", "progress_enabled"]

PROGRESS_ENV = "ZYNQ_RESNET_PROGRESS"


def progress_enabled(stream: TextIO | None = None, requested: bool | None = None) -> bool:
    """Whether to draw a progress bar: ``requested`` if given, else ``$ZYNQ_RESNET_PROGRESS``, else a TTY check."""
    if requested is not None:
        return bool(requested)
    env = os.environ.get(PROGRESS_ENV)
    if env is not None and env.strip() != "":
        return env.strip().lower() not in ("0", "false", "no", "off")
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts work done out of ``total`` and draws a bar.

    Use as a context manager, calling :meth:`update` with the number of items just finished::

        with Progress(n, "fpga", unit="images") as bar:
            for batch in batches:
                ...
                bar.update(len(batch))
    """

    def __init__(
        self,
        total: int,
        label: str,
        *,
        unit: str = "images",
        stream: TextIO | None = None,
        enabled: bool | None = None,
        min_interval_s: float | None = None,
        width: int = 20,
    ) -> None:
        """Create the bar (nothing is drawn until the first update).

        Args:
            total: items expected.
            label: what is running, e.g. ``fpga`` or ``onnxruntime``.
            unit: name of the items.
            stream: where to draw (default ``sys.stderr``).
            enabled: force on/off (default: see :func:`progress_enabled`).
            min_interval_s: least time between redraws (default 0.2 s on a terminal, 5 s otherwise).
            width: characters of the bar itself.
        """
        self.total, self.label, self.unit, self.width = max(int(total), 0), label, unit, width
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = progress_enabled(self.stream, enabled)
        try:
            self._tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self._tty = False
        self.min_interval_s = min_interval_s if min_interval_s is not None else (0.2 if self._tty else 5.0)
        self.done = 0
        self._start = time.perf_counter()
        self._last_draw = float("-inf")
        self._drawn = False

    def render(self) -> str:
        """The bar as text (without the leading carriage return or trailing newline)."""
        frac = min(self.done / self.total, 1.0) if self.total else 1.0
        filled = int(round(frac * self.width))
        elapsed = time.perf_counter() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        digits = len(str(self.total))
        text = (
            f"{self.label} [{'#' * filled}{'-' * (self.width - filled)}] {self.done:>{digits}}/{self.total} "
            f"{self.unit} {100 * frac:3.0f}%"
        )
        if rate > 0:
            text += f"  {rate:.1f} {'img' if self.unit == 'images' else self.unit}/s"
            if self.done < self.total:
                text += f"  ETA {_duration((self.total - self.done) / rate)}"
            else:
                text += f"  in {_duration(elapsed)}"
        return text

    def update(self, n: int = 1) -> None:
        """Record ``n`` more items done and redraw if enough time has passed (always at the end)."""
        self.done += int(n)
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.done < self.total and now - self._last_draw < self.min_interval_s:
            return
        self._last_draw = now
        self._write(self.render())

    def _write(self, text: str) -> None:
        try:
            if self._tty:
                self.stream.write("\r" + text + " " * 4)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
            self._drawn = True
        except (OSError, ValueError):  # a closed stream must never break a benchmark
            self.enabled = False

    def close(self) -> None:
        """Finish the line on a terminal. Idempotent."""
        if self.enabled and self._drawn and self._tty:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
