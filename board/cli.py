"""One runner for every command line of the project: logging set-up, one ``error:`` line, named exit codes.

Each CLI (``python -m training``, ``python -m hls_build``, ``python -m board``) parses its arguments and hands
the work to :func:`run`::

    def main(argv=None) -> int:
        args = build_parser().parse_args(argv)
        return run(lambda: args.func(args), verbosity=args.verbose)

Exit codes: 0 ok, 1 a check failed, 2 bad input or a missing tool (a :class:`~board.errors.ProjectError`), 130
interrupted. An unexpected exception is not caught: its traceback is the bug report.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from board.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, ProjectError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: int = logging.INFO, packages: Sequence[str] = ("board", "hls_build", "training")) -> None:
    """Configure logging once for a CLI process.

    The project's own packages log at ``level``; other libraries (TensorFlow, QKeras, tf2onnx, pynq) only
    when they warn, so a run prints our progress and not theirs.

    Args:
        level: the level of the project's loggers.
        packages: the project's top-level packages.
    """
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, datefmt="%H:%M:%S", stream=sys.stderr)
    for name in packages:
        logging.getLogger(name).setLevel(level)


def log_level(verbose: bool = False, quiet: bool = False) -> int:
    """The level for ``--verbose`` / ``--quiet`` (INFO when neither is given)."""
    return logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO


def run(
    work: Callable[[], int | None],
    *,
    level: int = logging.INFO,
    interrupted_note: str = "",
    error_note: str = "",
    value_errors_are_input: bool = False,
) -> int:
    """Run one CLI command and map its outcome to an exit code.

    Args:
        work: the command; returns an exit code (``None`` means 0).
        level: log level of the project's loggers.
        interrupted_note: said after ``interrupted`` on Ctrl-C (e.g. what was kept).
        error_note: said after the error's message (e.g. what was left unchanged).
        value_errors_are_input: also report ``ValueError`` and ``OSError`` (a missing file, a folder that cannot
            be written) as bad input, for commands whose library code raises them on malformed user files.

    Returns:
        The process exit status.
    """
    setup_logging(level)
    expected: tuple[type[BaseException], ...] = (ProjectError,)
    if value_errors_are_input:
        expected += (ValueError, OSError)
    try:
        code = work()
    except expected as exc:
        print(f"error: {exc}" + (f" {error_note}" if error_note else ""), file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print("interrupted" + (f"; {interrupted_note}" if interrupted_note else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if code is None else int(code)
