"""Typed errors of the board runtime, each with a message a user can act on."""


class BoardError(Exception):
    """Base class of every error this package raises on purpose."""


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
