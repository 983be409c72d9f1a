"""An experiment grid: models x quantizations x methods, trials and the shared schedule, validated before any run.

A grid file (YAML or JSON; unknown keys are refused) names models x quantizations x methods, the number of trials
and the shared schedule::

    name: resnet20-skips
    trials: 3
    models: [resnet20]
    quants: [float, "<8,3>"]
    methods: [plain, kd, skip_remover]
    teacher: auto            # kd / skip methods: the same model and quant trained `plain` in this sweep
    epochs: 10
    recipe: short
    skip_every_epochs: 3
    kd_loss: tailor

    cpus_per_run: 1          # scheduling (not part of the sweep's identity): CPUs (= TensorFlow threads) per run,
    gpus_per_run: 0          # GPUs per run, and attempts after a failed run
    retries: 0

:class:`Grid` reads and validates one (every config of the grid is built before anything runs); it is run by
:func:`training.experiments.run_grid`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from board.errors import ProjectError

#: Grid keys that say how runs are scheduled, not what they compute: changing them keeps the sweep the same.
SCHEDULING_KEYS = ("cpus_per_run", "gpus_per_run", "retries")
#: Keys added after sweeps were recorded, with their defaults: left out of a grid's identity while at them, so those
#: sweeps keep resuming.
LATER_KEYS = {"fold_bn": False, "bn_freeze_epoch": 0.0, "label_smoothing": 0.0}


class GridError(ProjectError, ValueError):
    """A grid file that cannot run: unknown keys, models, quantizations or methods, or a folder of another grid."""


@dataclass(frozen=True)
class Grid:
    """A sweep: models x quants x methods, each trained ``trials`` times with the shared settings.

    Attributes:
        name: sweep name (recorded, shown in the tables).
        models: registered model names.
        quants: ``float`` or ``"<total,integer>"`` specs.
        methods: ``plain``, ``kd``, ``skip_remover``, ``skip_shortener``.
        trials: runs per config; trial k uses seed ``seed + k``.
        teacher: ``auto`` (the same model and quant trained ``plain`` in this sweep, same trial) or a model.h5 path.
        epochs, recipe, batch_size, lr_peak, weight_decay, seed, kd_loss, kd_temperature, kd_alpha, skip_every_epochs,
            train_limit, test_limit, fold_bn, bn_freeze_epoch, label_smoothing: passed to every run's
            ``TrainConfig`` (``fold_bn``: BatchNormalization folded into the convolutions in training; float configs
            of the grid stay unfolded).
        cpus_per_run: CPUs each run asks for; also its TensorFlow threads (inline too), so a run computes the
            same numbers wherever it runs.
        gpus_per_run: GPUs each run asks for (Ray; fractions share a GPU).
        retries: attempts after a failed run before it is reported as failed.
    """

    name: str
    models: tuple[str, ...]
    quants: tuple[str, ...] = ("float",)
    methods: tuple[str, ...] = ("plain",)
    trials: int = 1
    teacher: str = "auto"
    epochs: int = 10
    recipe: str = "short"
    batch_size: int = 128
    lr_peak: float = 0.1
    weight_decay: float = 5e-5
    seed: int = 0
    kd_loss: str = "tailor"
    kd_temperature: float = 4.0
    kd_alpha: float = 0.9
    skip_every_epochs: int = 3
    train_limit: int = 0
    test_limit: int = 0
    fold_bn: bool = False
    bn_freeze_epoch: float = 0.0
    label_smoothing: float = 0.0
    cpus_per_run: int = 1
    gpus_per_run: float = 0
    retries: int = 0

    @classmethod
    def load(cls, path: str | os.PathLike) -> Grid:
        """Read a YAML or JSON grid file.

        Raises:
            GridError: unreadable file, unknown keys, or a config that cannot be built.
        """
        path = Path(path)
        try:
            text = path.read_text()
            data = json.loads(text) if path.suffix == ".json" else _yaml(text)
        except (OSError, ValueError) as exc:
            raise GridError(f"{path}: cannot read grid ({exc})") from exc
        if not isinstance(data, dict):
            raise GridError(f"{path}: a grid is a mapping of settings")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grid:
        """Build and validate (every config of the grid is resolved before anything runs)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise GridError(f"unknown grid keys: {sorted(unknown)}; known: {sorted(known)}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        try:
            grid = cls(**data)
        except TypeError as exc:
            raise GridError(f"incomplete grid: {exc}") from exc
        if grid.trials < 1:
            raise GridError(f"trials must be >= 1, got {grid.trials}")
        if not isinstance(grid.cpus_per_run, int) or grid.cpus_per_run < 1:
            raise GridError(f"cpus_per_run must be a whole number >= 1, got {grid.cpus_per_run!r}")
        if grid.gpus_per_run < 0 or grid.retries < 0:
            raise GridError(f"gpus_per_run and retries must be >= 0, got {grid.gpus_per_run}, {grid.retries}")
        from training.quant import QuantSpec
        from training.train import METHODS

        for method in grid.methods:
            if method not in METHODS:
                raise GridError(f"unknown method {method!r}; use one of {METHODS}")
        for quant in grid.quants:
            if quant != "float":
                try:
                    QuantSpec.parse(quant)
                except ValueError as exc:
                    raise GridError(f"quants: {exc}") from exc
        for cfg_id, cfgs in grid.runs().items():
            if not cfgs:
                raise GridError(f"{cfg_id}: no runs")
        return grid

    def identity(self) -> dict[str, Any]:
        """What makes two sweeps the same: every setting but the scheduling ones (JSON form)."""
        return grid_identity(asdict(self))

    def runs(self) -> dict[str, list[Any]]:
        """``{config_id: [TrainConfig per trial]}``, validated (raises GridError on a bad model, quant or method)."""
        from training.train import TrainConfig

        out: dict[str, list[Any]] = {}
        order = sorted(self.methods, key=lambda m: m != "plain")
        for method in order:
            for model in self.models:
                for quant in self.quants:
                    if method != "plain" and self.teacher == "auto" and "plain" not in self.methods:
                        raise GridError(f"method {method!r} with teacher 'auto' needs 'plain' in the grid's methods")
                    cfgs = []
                    for trial in range(self.trials):
                        teacher = None
                        if method != "plain":
                            teacher = (
                                f"@{_config_id(model, quant, 'plain')}/trial{trial}"
                                if self.teacher == "auto"
                                else self.teacher
                            )
                        try:
                            cfgs.append(
                                TrainConfig(
                                    model=model,
                                    quant=None if quant == "float" else quant,
                                    method=method,
                                    teacher=teacher,
                                    epochs=self.epochs,
                                    recipe=self.recipe,
                                    batch_size=self.batch_size,
                                    lr_peak=self.lr_peak,
                                    weight_decay=self.weight_decay,
                                    seed=self.seed + trial,
                                    kd_loss=self.kd_loss,
                                    kd_temperature=self.kd_temperature,
                                    kd_alpha=self.kd_alpha,
                                    skip_every_epochs=self.skip_every_epochs,
                                    train_limit=self.train_limit,
                                    test_limit=self.test_limit,
                                    fold_bn=self.fold_bn and quant != "float",
                                    bn_freeze_epoch=self.bn_freeze_epoch if self.fold_bn and quant != "float" else 0.0,
                                    label_smoothing=self.label_smoothing,
                                )  # fmt: skip
                            )
                        except (ValueError, KeyError) as exc:
                            raise GridError(f"{_config_id(model, quant, method)}: {exc}") from exc
                    out[_config_id(model, quant, method)] = cfgs
        return out


def grid_identity(grid: dict[str, Any]) -> dict[str, Any]:
    """The identity of a grid given as a dict (e.g. read from an older ``sweep.json``)."""
    kept = {k: v for k, v in grid.items() if k not in SCHEDULING_KEYS and not (k in LATER_KEYS and v == LATER_KEYS[k])}
    return json.loads(json.dumps(kept))


def _yaml(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _config_id(model: str, quant: str, method: str) -> str:
    from training.quant import QuantSpec

    tag = "float" if quant == "float" else QuantSpec.parse(quant).tag
    return f"{model}_{tag}_{method}"
