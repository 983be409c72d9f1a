"""Multi-trial experiments over a grid of configs, with the mean +- std table and plots the field reports.

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

Every (config, trial) is one training run in ``<out>/runs/<config_id>/trial<k>/`` with its own resolved config,
seed (``seed + k``), versions, history and checkpoints, run as a task of :mod:`training.sweep` (inline, or on
Ray: a local instance or a cluster). A finished run (its ``result.json`` record, of the same config) is never
redone, and an unfinished one resumes from its checkpoint, so a sweep killed at any point is finished by running
the same command again. ``<out>/sweep.json`` records the grid and every run's status; a folder holding another grid
is refused.

Outputs: ``summary.csv`` and ``summary.md`` (per config: trials, mean and std of the max and final test top-1),
``accuracy_per_epoch.png`` (train and test top-1 per epoch, mean over trials) and, for skip methods,
``accuracy_vs_skips.png`` (test top-1 against the number of skips removed or shortened).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


#: Grid keys that say how runs are scheduled, not what they compute: changing them keeps the sweep the same.
SCHEDULING_KEYS = ("cpus_per_run", "gpus_per_run", "retries")


class GridError(ValueError):
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
            train_limit, test_limit: passed to every run's ``TrainConfig``.
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
                                )  # fmt: skip
                            )
                        except (ValueError, KeyError) as exc:
                            raise GridError(f"{_config_id(model, quant, method)}: {exc}") from exc
                    out[_config_id(model, quant, method)] = cfgs
        return out


def grid_identity(grid: dict[str, Any]) -> dict[str, Any]:
    """The identity of a grid given as a dict (e.g. read from an older ``sweep.json``)."""
    return json.loads(json.dumps({k: v for k, v in grid.items() if k not in SCHEDULING_KEYS}))


def _yaml(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _config_id(model: str, quant: str, method: str) -> str:
    from training.quant import QuantSpec

    tag = "float" if quant == "float" else QuantSpec.parse(quant).tag
    return f"{model}_{tag}_{method}"


@dataclass
class RunRecord:
    """One finished run, as the tables read it."""

    config_id: str
    trial: int
    seed: int
    test_top1_max: float
    test_top1_final: float
    epochs: int
    history: dict[str, list[float]] = field(default_factory=dict)


def run_grid(grid: Grid, out_dir: str | os.PathLike, train_fn=None, scheduler=None, retries: int | None = None
             ) -> list[RunRecord]:  # fmt: skip
    """Run every missing (config, trial) of ``grid`` under ``out_dir`` and write the tables and plots.

    Args:
        grid: the sweep.
        out_dir: the sweep folder.
        train_fn: ``train(cfg, out_dir)`` to call (default ``training.train.train``).
        scheduler: a :class:`training.sweep.Scheduler` (default: inline, one run after the other in this process).
        retries: attempts after a failed run (default: the grid's ``retries``).

    Returns:
        The records of every finished run of the grid (failed runs are in ``sweep.json`` with their error).

    Raises:
        GridError: ``out_dir`` holds another grid.
        training.sweep.SweepError: the scheduler cannot start.
    """
    from training.sweep import run_sweep

    return run_sweep(grid, out_dir, scheduler, train_fn, retries).records


def collect(out_dir: str | os.PathLike) -> list[RunRecord]:
    """Read every finished run under ``<out_dir>/runs`` from its record (``result.json``).

    A record whose config fingerprint differs from the one ``sweep.json`` lists for that run is left out (it is
    not this sweep's). Runs of sweeps written before records existed are read from their ``metrics.json``.
    """
    from training.sweep import RECORD, read_manifest

    out = Path(out_dir)
    manifest = read_manifest(out) or {}
    expected = {k: v.get("fingerprint") for k, v in manifest.get("runs", {}).items() if isinstance(v, dict)}
    records = []
    for run_dir in sorted({p.parent for p in out.glob("runs/*/trial*/metrics.json")}
                          | {p.parent for p in out.glob(f"runs/*/trial*/{RECORD}")}):  # fmt: skip
        key = f"{run_dir.parent.name}/{run_dir.name}"
        trial = int(run_dir.name.removeprefix("trial"))
        record_path = run_dir / RECORD
        if record_path.is_file():
            record = json.loads(record_path.read_text())
            if key in expected and record.get("fingerprint") != expected[key]:
                log.warning("%s: record of another config; left out of the tables", record_path)
                continue
            metrics, history, seed = record["result"]["metrics"], record["result"]["history"], record["seed"]
        else:  # an older sweep's run
            if expected:  # this sweep records its runs: one without a record is not finished
                continue
            metrics = json.loads((run_dir / "metrics.json").read_text())
            seed = json.loads((run_dir / "config.json").read_text())["config"]["seed"]
            history_path = run_dir / "history_partial.json"
            history = json.loads(history_path.read_text()) if history_path.is_file() else {}
        records.append(
            RunRecord(
                config_id=run_dir.parent.name,
                trial=trial,
                seed=seed,
                test_top1_max=metrics["test_top1_max"],
                test_top1_final=metrics["test_top1_final"],
                epochs=metrics["epochs"],
                history=history,
            )
        )
    return records


def summarize(records: list[RunRecord]) -> list[dict[str, Any]]:
    """Per config: trials, mean and (sample) std of the max and final test top-1, in percent."""
    by_cfg: dict[str, list[RunRecord]] = {}
    for r in records:
        by_cfg.setdefault(r.config_id, []).append(r)
    rows = []
    for cfg_id, rs in by_cfg.items():
        mx = np.array([r.test_top1_max for r in rs]) * 100
        fin = np.array([r.test_top1_final for r in rs]) * 100
        std = lambda a: float(a.std(ddof=1)) if len(a) > 1 else 0.0  # noqa: E731
        rows.append({
            "config": cfg_id, "trials": len(rs), "epochs": rs[0].epochs,
            "max_top1_mean": float(mx.mean()), "max_top1_std": std(mx),
            "final_top1_mean": float(fin.mean()), "final_top1_std": std(fin),
        })  # fmt: skip
    return rows


def write_summary(records: list[RunRecord], out_dir: str | os.PathLike, name: str) -> None:
    """Write ``summary.csv``, ``summary.md`` and the PNG plots for ``records``."""
    out = Path(out_dir)
    rows = summarize(records)
    with (out / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["config"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()})
    lines = [
        f"# {name}: CIFAR-10 test top-1 (%)",
        "",
        "Mean +- sample std over trials; 'max' is the best epoch of each run, 'final' its last epoch.",
        "",
        "| config | trials | epochs | max top-1 | final top-1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['trials']} | {r['epochs']} | {r['max_top1_mean']:.2f} +- {r['max_top1_std']:.2f} "
            f"| {r['final_top1_mean']:.2f} +- {r['final_top1_std']:.2f} |"
        )
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    _plots(records, out, name)


def _plots(records: list[RunRecord], out: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_cfg: dict[str, list[RunRecord]] = {}
    for r in records:
        if r.history.get("val_accuracy"):
            by_cfg.setdefault(r.config_id, []).append(r)
    if not by_cfg:
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    for cfg_id, rs in sorted(by_cfg.items()):
        n = min(len(r.history["val_accuracy"]) for r in rs)
        epochs = np.arange(1, n + 1)
        val = np.mean([r.history["val_accuracy"][:n] for r in rs], axis=0) * 100
        line = ax.plot(epochs, val, label=f"{cfg_id} test")[0]
        if all("accuracy" in r.history for r in rs):
            tr = np.mean([r.history["accuracy"][:n] for r in rs], axis=0) * 100
            ax.plot(epochs, tr, linestyle="--", color=line.get_color(), label=f"{cfg_id} train")
    ax.set(xlabel="epoch", ylabel="top-1 (%)", title=f"{name}: accuracy per epoch (mean over trials)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "accuracy_per_epoch.png", dpi=120)
    plt.close(fig)

    skip_cfgs = {k: v for k, v in by_cfg.items() if all("skips_changed" in r.history for r in v)}
    if skip_cfgs:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for cfg_id, rs in sorted(skip_cfgs.items()):
            levels = np.unique(np.concatenate([r.history["skips_changed"] for r in rs]))
            # Best test top-1 reached while k skips were changed, mean over trials.
            best = [np.mean([max((v for c, v in zip(r.history["skips_changed"], r.history["val_accuracy"])
                                  if c == k), default=np.nan) for r in rs]) * 100 for k in levels]  # fmt: skip
            ax.plot(levels, best, marker="o", label=cfg_id)
        ax.set(xlabel="skips removed / shortened", ylabel="best test top-1 (%)", title=f"{name}: accuracy vs skips")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "accuracy_vs_skips.png", dpi=120)
        plt.close(fig)
