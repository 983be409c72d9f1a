"""SkipRemover and SkipShortener: change one more skip every k epochs, from the input end, in ONE training run.

The model is the gated one (``create_model(..., gated=True)``): a schedule only assigns 0/1 to non-trainable gate
variables at the start of an epoch, so the compiled training step, the optimizer and its momentum carry on untouched.
This is what the previous Keras work could not do: it rebuilt the model between removals and lost the optimizer.

Schedule (Tailor, Weng et al. 2024): during epochs ``[0, k)`` every block keeps its long skip; at the start of epoch
``j*k`` the first ``j`` blocks (input end first) are switched to ``target`` (``none`` for SkipRemover, ``short`` for
SkipShortener). After the last block has changed, training goes on with all of them changed.
"""

from __future__ import annotations

import logging

from training.keras_compat import keras
from training.models import block_names, depth_of_model, set_skip_modes

log = logging.getLogger(__name__)

SKIP_METHODS = {"skip_remover": "none", "skip_shortener": "short"}


def modes_at_epoch(n_blocks: int, epoch: int, every: int, target: str) -> tuple[str, ...]:
    """Skip modes during ``epoch`` (0-based): ``min(n_blocks, epoch // every)`` blocks switched to ``target``."""
    changed = min(n_blocks, epoch // every)
    return (target,) * changed + ("long",) * (n_blocks - changed)


def epochs_to_finish(n_blocks: int, every: int) -> int:
    """First epoch (0-based) at which every block has changed; a run needs more epochs than this to train on it."""
    return n_blocks * every


class SkipSchedule(keras.callbacks.Callback):
    """Sets the gates of ``model`` from :func:`modes_at_epoch` at the start of every epoch (resume-safe).

    Args:
        model: the gated student.
        method: ``skip_remover`` or ``skip_shortener``.
        every: epochs between two changes (k).
    """

    def __init__(self, model: keras.Model, method: str, every: int):
        super().__init__()
        if method not in SKIP_METHODS:
            raise ValueError(f"unknown skip method {method!r}; use one of {sorted(SKIP_METHODS)}")
        if every < 1:
            raise ValueError(f"skip_every_epochs must be >= 1, got {every}")
        self.student, self.target, self.every = model, SKIP_METHODS[method], every
        self.n_blocks = len(block_names(depth_of_model(model)))
        self.changed_per_epoch: list[int] = []

    def on_epoch_begin(self, epoch, logs=None):
        modes = modes_at_epoch(self.n_blocks, epoch, self.every, self.target)
        set_skip_modes(self.student, modes)
        changed = sum(m == self.target for m in modes)
        if epoch % self.every == 0 and changed:
            log.info("epoch %d: %d of %d skips now %s", epoch + 1, changed, self.n_blocks,
                     "removed" if self.target == "none" else "shortened")  # fmt: skip

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["skips_changed"] = float(sum(m == self.target for m in modes_at_epoch(
                self.n_blocks, epoch, self.every, self.target)))  # fmt: skip
