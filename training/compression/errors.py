"""The error of a Deep-Compression run that cannot start: a bad setting or a layer that cannot be compressed."""

from __future__ import annotations

from board.errors import ProjectError


class CompressionError(ProjectError, ValueError):
    """A bad compression setting, or a named layer that does not exist or has no kernel; raised before any work.

    Also a ``ValueError``, as these errors were before they had a type of their own.
    """
