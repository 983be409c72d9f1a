"""The tables and plots of an experiment sweep, read from its run records.

:func:`collect` reads every finished run of a sweep folder, :func:`summarize` gives per config the trials and the
mean and std of the max and final test top-1, :func:`write_summary` writes ``summary.csv``, ``summary.md``,
``accuracy_per_epoch.png`` (train and test top-1 per epoch, mean over trials) and, for skip methods,
``accuracy_vs_skips.png`` (test top-1 against the number of skips removed or shortened).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.sweep.records import RECORD, read_manifest

log = logging.getLogger(__name__)


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


def collect(out_dir: str | os.PathLike) -> list[RunRecord]:
    """Read every finished run under ``<out_dir>/runs`` from its record (``result.json``).

    A record whose config fingerprint differs from the one ``sweep.json`` lists for that run is left out (it is
    not this sweep's). Runs of sweeps written before records existed are read from their ``metrics.json``.
    """
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
