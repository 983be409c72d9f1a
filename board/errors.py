"""The project's typed errors, each with a message a user can act on.

Every stage (training, hls_build, board) raises subclasses of :class:`ProjectError`, so one runner
(:mod:`board.cli`) turns any of them into one ``error: ...`` line and a named exit code. This module lives in
``board/`` because every stage may import ``board`` (it needs neither TensorFlow nor hls4ml).
"""

# Named exit codes of every CLI in the project (board/cli.py maps errors to them).
EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # the command ran, and a check it makes did not pass (a gate, a doctor check, a bit-exact test)
EXIT_BAD_INPUT = 2  # bad input, a missing file or a missing tool: nothing was changed
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it


class ProjectError(Exception):
    """Base class of every error this project raises on purpose.

    Attributes:
        exit_code: the process exit status the CLI runner returns for this error.
    """

    exit_code: int = EXIT_BAD_INPUT


class CheckFailedError(ProjectError):
    """A check the command exists to make did not pass (the input itself was fine)."""

    exit_code = EXIT_CHECK_FAILED


class BoardError(ProjectError):
    """Base class of the board runtime's errors."""


class DatasetError(BoardError):
    """The CIFAR-10 data is missing, corrupt or not where it was looked for."""


class BundleError(BoardError):
    """An overlay bundle is missing, incomplete, modified or does not match this board."""


class InputError(BoardError, ValueError):
    """An input array has the wrong shape, dtype or values (e.g. NaN)."""


class DmaError(BoardError):
    """The DMA engine reported an error bit (internal, slave or decode error)."""


class DmaTimeoutError(DmaError):
    """A DMA transfer did not complete in time: the accelerator stalled or never asserted TLAST."""


class ToolMissingError(BoardError):
    """A required external tool or package is not installed."""
