"""``python -m board bench --mlperf``: figures measured the way MLPerf Tiny's image-classification benchmark does.

MLPerf Tiny (mlcommons/tiny, EEMBC's runner) measures a CIFAR-10 classifier on a 200-image subset of the test set
(20 per class; the official index list is ``board/data/mlperf_tiny_ic_perf_samples.json``, with its source):

* **performance**: five windows, each on one input of the subset: one warm-up inference, then inferences one at a
  time (batch 1) for at least 10 seconds; a window's throughput is inferences / seconds; the result is the
  **median** over the windows. Here the windows use the first five images of the official list, in its order;
* **energy**: the same windows with the board's supply metered; energy per inference = energy / inferences, median
  over windows. Here: the ZCU104's PMBus rails or an external meter's figures (``board/power.py``); gross energy,
  as MLPerf meters the whole board;
* **accuracy**: top-1 over the 200 images (MLPerf's accuracy mode). This command also gives top-1 over the test
  set (its first ``-n`` images, default all 10,000; the subset is always evaluated whole).

The report places these next to the published hls4ml PYNQ-Z2 result (``board/data/mlperf_tiny_published.json``:
the figures are parsed out of the results files' lines, quoted with repository, commit and path), and next to the
bundle's ESTIMATE for the board. A run on an emulated bundle is labelled **emulated on the host**: its throughput is
the host's, not the board's. ``--mlperf-duration`` shortens the windows (tests); a report with windows under 10 s
says that it does not meet MLPerf's minimum.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from board.board_estimate import board_estimate, estimate_lines
from board.bundle import Bundle
from board.errors import BoardError, DatasetError, InputError

__all__ = [
    "MIN_WINDOW_S",
    "PERF_SAMPLES_FILE",
    "PUBLISHED_FILE",
    "load_perf_samples",
    "load_published",
    "mlperf_benchmark",
    "render_mlperf",
    "run_mlperf",
]

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parent / "data"
PERF_SAMPLES_FILE = DATA / "mlperf_tiny_ic_perf_samples.json"
PUBLISHED_FILE = DATA / "mlperf_tiny_published.json"
#: MLPerf Tiny's minimum duration of a performance window.
MIN_WINDOW_S = 10.0
WINDOWS = 5
EMULATED_LABEL = "emulated on the host"


def load_perf_samples(path: str | os.PathLike = PERF_SAMPLES_FILE) -> tuple[np.ndarray, dict[str, Any]]:
    """The official 200 test-set indices and their source.

    Raises:
        DatasetError: the file is missing or not 200 distinct indices into the 10,000 test images.
    """
    try:
        data = json.loads(Path(path).read_text())
        idx = np.asarray(data["indices"], np.int64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: cannot read MLPerf Tiny's performance subset: {exc}") from exc
    if idx.shape != (200,) or len(set(idx.tolist())) != 200 or idx.min() < 0 or idx.max() >= 10_000:
        raise DatasetError(f"{path}: expected 200 distinct indices into the 10,000 CIFAR-10 test images")
    return idx, dict(data.get("source", {}))


_NUMBER = {
    "accuracy": re.compile(r"Top-1:\s*([\d.]+)%"),
    "throughput": re.compile(r"Median throughput is\s*([\d.]+)\s*inf\./sec"),
    "energy": re.compile(r"Median energy cost is\s*([\d.]+)\s*uJ/inf"),
}


def load_published(path: str | os.PathLike = PUBLISHED_FILE) -> list[dict[str, Any]]:
    """Published results, each figure parsed out of its quoted results-file line.

    Returns:
        ``[{"id", "system", "top1_pct", "images_per_s", "energy_uj", "sources": {metric: "repo@commit:path"}}]``.

    Raises:
        DatasetError: the file is unreadable or a quoted line does not hold its figure.
    """
    try:
        results = json.loads(Path(path).read_text())["results"]
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"{path}: cannot read the published MLPerf Tiny results: {exc}") from exc
    out = []
    for r in results:
        row: dict[str, Any] = {"id": r["id"], "system": r["system"], "sources": {}}
        for metric, key in (("accuracy", "top1_pct"), ("throughput", "images_per_s"), ("energy", "energy_uj")):
            item = r.get(metric)
            if not item:
                row[key] = None
                continue
            m = _NUMBER[metric].search(item["line"])
            if m is None:
                raise DatasetError(f"{path}: {r['id']} {metric}: no figure in the quoted line {item['line']!r}")
            row[key] = float(m.group(1))
            row["sources"][metric] = f"{r['repository']}@{r['commit']}:{item['path']}"
        out.append(row)
    return out


def _window(acc: Any, image: np.ndarray, duration_s: float, session: Any) -> dict[str, Any]:
    """One performance window: a warm-up inference, then inferences one at a time for ``duration_s`` seconds."""
    acc.predict_raw(image)  # warm-up, not timed (as the runner's "m-warmup")
    count = 0
    with session.during_run():
        t0 = time.perf_counter()
        while True:
            acc.predict_raw(image)
            count += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= duration_s:
                break
    acc.take_timings()
    window: dict[str, Any] = {"inferences": count, "seconds": elapsed, "images_per_s": count / elapsed}
    power = session.report(elapsed, count)
    if power.get("available"):
        window["energy_uj"] = 1e3 * float(power["gross_energy_per_inference_mj"])
        window["power_w"] = float(power["run_w"])
    return window


def mlperf_benchmark(
    bundle: Bundle,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    accelerator: Any,
    duration_s: float = MIN_WINDOW_S,
    windows: int = WINDOWS,
    batch_size: int = 100,
    power: Any = None,
    power_meter_factory: Any = None,
    running_on: str = "host",
    n_test: int | None = None,
) -> dict[str, Any]:
    """Accuracy (perf subset and the test set) and MLPerf-style throughput/energy of an open accelerator.

    Args:
        bundle: the bundle.
        test_images: the CIFAR-10 test images in order; must include every index of the perf subset.
        test_labels: their labels.
        accelerator: an open :class:`board.driver.Accelerator`.
        duration_s: minimum length of a performance window (MLPerf: 10 s).
        windows: performance windows (MLPerf: 5), on the first ``windows`` images of the official list.
        batch_size: images per DMA transfer for the accuracy pass (the performance windows run batch 1).
        power: :class:`board.power.PowerOptions`.
        power_meter_factory: PMBus meter factory (tests).
        running_on: the machine's board name.
        n_test: top-1 "on the test set" over its first ``n_test`` images (default all of ``test_images``).

    Raises:
        InputError: bad durations or window counts, or too few test images for the subset.
    """
    from board.power import PowerSession

    if not duration_s > 0 or not 1 <= windows <= 200:
        raise InputError(f"--mlperf-duration must be > 0 and windows 1..200 (got {duration_s}, {windows})")
    idx, source = load_perf_samples()
    if len(test_images) <= int(idx.max()):
        raise InputError(
            f"the performance subset indexes the test set up to {int(idx.max())}; only {len(test_images)} test "
            "images were given (pass the whole test set)"
        )
    m = bundle.manifest
    emulated = bool(m.emulated)

    def top1(images: np.ndarray, labels: np.ndarray) -> float:
        preds = np.concatenate(
            [accelerator.classify(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        )
        return float(np.mean(preds == labels))

    top1_subset = top1(test_images[idx], test_labels[idx])
    n_full = len(test_images) if n_test is None else max(1, min(int(n_test), len(test_images)))
    top1_full = top1(test_images[:n_full], test_labels[:n_full])
    accelerator.take_timings()

    session = PowerSession(power, emulated=emulated, board=m.board, meter_factory=power_meter_factory)
    session.measure_idle()
    rows = []
    for w in range(windows):
        i = int(idx[w])
        log.info("MLPerf window %d/%d: test image %d for >= %.3g s", w + 1, windows, i, duration_s)
        rows.append({"test_index": i, **_window(accelerator, test_images[i], duration_s, session)})
    median_ips = statistics.median(r["images_per_s"] for r in rows)
    energies = [r["energy_uj"] for r in rows if "energy_uj" in r]
    published = load_published()
    return {
        "kind": "mlperf_tiny_ic",
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "bundle": {"path": str(bundle.root), "board": m.board, "model_id": m.model_id, "emulated": emulated},
        "running_on": running_on,
        "label": EMULATED_LABEL if emulated else f"measured on the {m.board}",
        "what_runs": getattr(accelerator, "engine_description", None)
        or ("host emulation" if emulated else "the FPGA, through the AXI DMA"),
        "perf_subset": {"images": len(idx), "source": source},
        "accuracy": {
            "top1_perf_subset": top1_subset,
            "top1_test_set": top1_full,
            "test_images": n_full,
        },
        "performance": {
            "windows": rows,
            "window_min_s": duration_s,
            "median_images_per_s": median_ips,
            "meets_mlperf_minimum": duration_s >= MIN_WINDOW_S,
            "batch": 1,
        },
        "energy": {
            "median_energy_uj": statistics.median(energies) if len(energies) == len(rows) else None,
            "source": session.source,
            "reason": None if energies else (session.reason or "not measured"),
        },
        "board_estimate": board_estimate(m),
        "published": published,
    }


def _f(x: Any, fmt: str) -> str:
    return "n/a" if x is None else f"{x:{fmt}}"


def render_mlperf(report: dict[str, Any]) -> str:
    """The MLPerf report as Markdown."""
    b, acc, perf, energy = report["bundle"], report["accuracy"], report["performance"], report["energy"]
    label = report["label"]
    ours = f"{b['model_id']} on {b['board']} ({label})"
    lines = [
        f"# MLPerf Tiny image classification: {b['model_id']} ({b['board']}, {label})",
        "",
    ]
    if b["emulated"]:
        lines += [
            f"**{label.upper()}**: the bundle has no bitstream; its outputs are the firmware's, computed on this "
            f"machine ({report['what_runs']}), so accuracy is the design's and throughput is the host's, not the "
            "board's.",
            "",
        ]
    if not perf["meets_mlperf_minimum"]:
        lines += [
            f"Windows of {perf['window_min_s']:g} s: shorter than MLPerf Tiny's {MIN_WINDOW_S:g} s minimum "
            "(--mlperf-duration); not comparable as a throughput figure.",
            "",
        ]
    src = report["perf_subset"]["source"]
    lines += [
        f"Method: the {report['perf_subset']['images']}-image performance subset of MLPerf Tiny "
        f"({src.get('repository')}@{str(src.get('commit', ''))[:12]}:{src.get('path')}); {len(perf['windows'])} "
        f"windows of one image each (the list's first {len(perf['windows'])}), a warm-up inference, then batch-1 "
        f"inferences for at least {perf['window_min_s']:g} s; median over windows. Energy: gross, whole board.",
        "",
        "| | top-1, 200-image subset | top-1, test set | inferences/s (median) | energy per inference, uJ |",
        "|---|---:|---:|---:|---:|",
        f"| {ours} | {_f(100 * acc['top1_perf_subset'], '.1f')} % | {_f(100 * acc['top1_test_set'], '.2f')} % "
        f"({acc['test_images']} images) | {_f(perf['median_images_per_s'], '.1f')} | "
        f"{_f(energy['median_energy_uj'], ',.0f')} |",
    ]
    est = report.get("board_estimate")
    if est:
        lines.append(
            f"| ESTIMATE for {b['board']} (this bundle's pre-synthesis model) | | | "
            f"{est['images_per_s']:.1f}"
            + (
                f" (range {est['images_per_s_range'][0]:.1f} to {est['images_per_s_range'][1]:.1f})"
                if est.get("images_per_s_range")
                else (f" (+-{est['band_pct']:g} %)" if est.get("band_pct") is not None else "")
            )
            + " | |"
        )
    for p in report["published"]:
        lines.append(
            f"| published: {p['system']} (measured on the board) | {_f(p['top1_pct'], '.1f')} % | | "
            f"{_f(p['images_per_s'], '.1f')} | {_f(p['energy_uj'], ',.0f')} |"
        )
    lines += ["", "Sources of the published figures:"]
    for p in report["published"]:
        for metric, where in p["sources"].items():
            lines.append(f"- {p['id']} {metric}: {where}")
    if energy["median_energy_uj"] is None:
        lines += ["", f"Energy: {energy['reason']}."]
    lines += ["", "## Performance windows", "", "| window | test image | inferences | seconds | inferences/s |"]
    lines.append("|---:|---:|---:|---:|---:|")
    for k, w in enumerate(perf["windows"], 1):
        lines.append(f"| {k} | {w['test_index']} | {w['inferences']} | {w['seconds']:.3f} | {w['images_per_s']:.1f} |")
    lines += [""] + estimate_lines(est, b["board"])
    return "\n".join(lines).rstrip() + "\n"


def run_mlperf(
    spec: str | os.PathLike,
    *,
    n: int | None = None,
    out_dir: str | os.PathLike | None = None,
    cifar10_dir: str | os.PathLike | None = None,
    duration_s: float = MIN_WINDOW_S,
    windows: int = WINDOWS,
    batch_size: int = 100,
    timeout_s: float | None = None,
    board: str | None = None,
    engine: str = "auto",
    power: Any = None,
) -> tuple[dict[str, Any], Path]:
    """Open the bundle, load the test set, run :func:`mlperf_benchmark`, write ``mlperf.json`` and ``mlperf.md``.

    Raises:
        BoardError: the bundle, the data, the accelerator or the report folder failed (a typed error).
    """
    from board.cifar10 import load_split
    from board.driver import Accelerator
    from board.registry import HOST, detect_board, normalise_board, open_bundle

    running_on = normalise_board(board) if board else detect_board()
    bundle = open_bundle(spec, running_on)
    test = load_split("test", directory=cifar10_dir)  # all of it: the subset's indices reach 9,964
    if n is not None and n < 1:
        raise InputError(f"-n must be >= 1, got {n}")
    kwargs: dict[str, Any] = {"batch_size": batch_size, "timeout_s": timeout_s}
    if engine != "auto":
        kwargs["engine"] = engine
    with Accelerator(bundle, **kwargs) as acc:
        report = mlperf_benchmark(
            bundle,
            test.images,
            test.labels,
            accelerator=acc,
            duration_s=duration_s,
            windows=windows,
            batch_size=batch_size,
            power=power,
            running_on=running_on or HOST,
            n_test=n,
        )
    m = bundle.manifest
    out = Path(out_dir) if out_dir else Path("build") / "reports" / m.board / m.model_id / "mlperf"
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "mlperf.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "mlperf.md").write_text(render_mlperf(report))
    except OSError as exc:
        raise BoardError(f"cannot write the MLPerf report into {out}: {exc}") from exc
    return report, out
