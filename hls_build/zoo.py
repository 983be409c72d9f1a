"""The model zoo: committed trained models, the designs built from them, and their results per board.

A **design** is a committed trained model on a board with the fit planner's options: ``make bundle
DESIGN=pynq-z2/resnet8_q8_3`` plans and bundles it from the committed ``model.h5`` without training, ``make bench
DESIGN=...`` benchmarks it on the 10,000 test images, and ``make zoo-results`` does both for every design and then
writes the results (``python -m hls_build.zoo results``).

Layout::

    zoo/designs.json                 the registry: models (folder, training command), designs (board, model,
                                     plan options)
    zoo/models/<model>/              model.h5, config.json, metrics.json, history.csv, train.log,
                                     training_command.txt
    build/plans/zoo/<board>/<name>.json        the design's plan          (build outputs, not committed)
    overlays/zoo/<board>/<name>/               its bundle
    build/reports/zoo/<board>/<name>/          its `board bench` report
    results/designs/<board>/zoo/<name>.json    the summary of all three    (committed, written by `results`)
    results/designs/<board>/pareto.{md,png}    top-1 vs modeled images/s and resources, with published references
    results/designs/zoo.md                     which design to flash on which board

Commands: ``list [--names]``; ``make-vars DESIGN`` (the Makefile's paths and plan options of one design); ``add``
(copy a training output folder into the zoo and register designs for it); ``results`` (summaries, Pareto tables and
plots, the which-to-flash table, from the build outputs above; ``--from-summaries`` redraws from committed summaries).

Figures: top-1 is measured by ``board bench`` on the **emulated** overlay (the bit-exact fast engine behind the real
pynq DMA driver); images/s and resources are the pre-synthesis **ESTIMATE** (``hls_build.estimate``), with the
calibration's throughput band. Published results are drawn as references, **measured elsewhere**, parsed from the
quoted lines of ``hls_build/published_board_results.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from board.errors import ProjectError

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = Path("zoo/designs.json")
PUBLISHED = Path(__file__).resolve().parent / "published_board_results.json"
#: Files copied from a training output folder into ``zoo/models/<model>/`` (model.h5 and config.json required).
MODEL_FILES = ("model.h5", "config.json", "metrics.json", "history.csv", "train.log")
RESOURCES = ("BRAM_18K", "DSP", "FF", "LUT")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
#: Plan options a design may set, and the ``python -m hls_build plan`` flags they become.
PLAN_OPTIONS = {"margin": "--margin", "hls_tool": "--hls-tool", "bind_multipliers": "--no-bind-multipliers"}


class ZooError(ProjectError):
    """The zoo's registry, a design name, or a design's build output is missing or malformed (exit 2)."""


@dataclass(frozen=True)
class Design:
    """One zoo design: a committed trained model on a board with the planner's options.

    Attributes:
        name: ``<board>/<short name>``, e.g. ``pynq-z2/resnet8_q8_3``.
        board: the board (``pynq-z2`` or ``zcu104``).
        short: the name within the board; the bundle's id.
        model: the zoo model's name (a key of the registry's ``models``).
        model_dir: the committed model folder (``zoo/models/<model>``), relative to the repository.
        plan_options: ``margin`` (float), ``hls_tool`` (``vitis``/``vivado_hls``), ``bind_multipliers`` (bool).
        description: one line for tables.
        training_command: the exact command that trained the model.
    """

    name: str
    board: str
    short: str
    model: str
    model_dir: str
    plan_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    training_command: str = ""

    def plan_args(self) -> list[str]:
        """The extra ``python -m hls_build plan`` flags of this design's options."""
        args: list[str] = []
        for key, value in self.plan_options.items():
            if key == "bind_multipliers":
                args += [] if value else [PLAN_OPTIONS[key]]
            else:
                args += [PLAN_OPTIONS[key], str(value)]
        return args

    def plan_path(self, root: Path = Path()) -> Path:
        """The plan ``make plan DESIGN=...`` writes."""
        return root / "build" / "plans" / "zoo" / self.board / f"{self.short}.json"

    def bundle_path(self, root: Path = Path()) -> Path:
        """The bundle ``make bundle DESIGN=...`` writes (``--overlays overlays/zoo --model-id <short>``)."""
        return root / "overlays" / "zoo" / self.board / self.short

    def report_dir(self, root: Path = Path()) -> Path:
        """The folder of the report ``make bench DESIGN=...`` writes."""
        return root / "build" / "reports" / "zoo" / self.board / self.short


def load_registry(path: Path = REGISTRY, root: Path = ROOT) -> dict[str, Design]:
    """Read ``zoo/designs.json``: every design by name, each checked (board, model folder, options).

    Raises:
        ZooError: the file is missing or not JSON, a design names an unknown model or board, a name is not
            ``<board>/<lowercase_name>``, an option is unknown, or a model folder lacks ``model.h5``/``config.json``.
    """
    from hls_build.boards import BOARDS

    file = path if path.is_absolute() else root / path
    try:
        data = json.loads(file.read_text())
        models, designs = data["models"], data["designs"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ZooError(f"{file}: not a zoo registry with 'models' and 'designs' ({exc})") from exc
    out: dict[str, Design] = {}
    for name, entry in designs.items():
        board, _, short = name.partition("/")
        if board not in BOARDS or not _NAME.match(short):
            raise ZooError(
                f"{file}: design {name!r} is not <board>/<name> (boards: {', '.join(BOARDS)}; name: a-z0-9_)"
            )
        model = entry.get("model")
        if model not in models:
            raise ZooError(f"{file}: design {name!r} names model {model!r}, which is not in 'models'")
        options = dict(entry.get("plan_options") or {})
        unknown = sorted(set(options) - set(PLAN_OPTIONS))
        if unknown:
            raise ZooError(f"{file}: design {name!r}: unknown plan options {unknown} (known: {sorted(PLAN_OPTIONS)})")
        folder = models[model].get("folder", f"zoo/models/{model}")
        for needed in ("model.h5", "config.json"):
            if not (root / folder / needed).is_file():
                raise ZooError(f"{file}: design {name!r}: {folder}/{needed} is missing")
        out[name] = Design(
            name=name,
            board=board,
            short=short,
            model=model,
            model_dir=folder,
            plan_options=options,
            description=entry.get("description", ""),
            training_command=models[model].get("training_command", ""),
        )
    return out


def find_design(name: str, path: Path = REGISTRY, root: Path = ROOT) -> Design:
    """The design called ``name``; a :class:`ZooError` naming the designs there are otherwise."""
    designs = load_registry(path, root)
    if name not in designs:
        raise ZooError(
            f"DESIGN={name!r} is not a zoo design; the designs ({path}): {', '.join(sorted(designs)) or 'none'}"
        )
    return designs[name]


# --- adding a model ------------------------------------------------------------------------------------------------
def add_model(
    model_dir: Path,
    model: str,
    training_command: str,
    designs: list[str],
    description: str = "",
    registry: Path = REGISTRY,
    root: Path = ROOT,
) -> list[Design]:
    """Copy a training output folder into ``zoo/models/<model>/`` and register a design per ``board/name``.

    Args:
        model_dir: the training output folder (``model.h5``, ``config.json``; ``metrics.json``, ``history.csv``,
            ``train.log`` when there).
        model: the zoo model's name (a-z0-9_).
        training_command: the exact command that trained it (written to ``training_command.txt``).
        designs: ``<board>/<name>`` for each design to register (default plan options).
        description: one line for tables.
        registry: the registry file (created when missing).
        root: the repository root.

    Returns:
        The designs registered, as :func:`load_registry` reads them back.

    Raises:
        ZooError: a bad name, a missing file, or a design or model that is already registered.
    """
    if not _NAME.match(model):
        raise ZooError(f"model name {model!r}: use a-z, 0-9 and _")
    if not training_command.strip():
        raise ZooError("--train-command is required: the exact command that trained the model")
    for needed in ("model.h5", "config.json"):
        if not (model_dir / needed).is_file():
            raise ZooError(f"{model_dir}/{needed} is missing: not a training output folder")
    file = root / registry
    data = json.loads(file.read_text()) if file.is_file() else {"what": _REGISTRY_WHAT, "models": {}, "designs": {}}
    if model in data["models"]:
        raise ZooError(f"model {model!r} is already in {registry}")
    for d in designs:
        if d in data["designs"]:
            raise ZooError(f"design {d!r} is already in {registry}")
    folder = Path("zoo") / "models" / model
    (root / folder).mkdir(parents=True, exist_ok=False)
    for name in MODEL_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, root / folder / name)
    (root / folder / "training_command.txt").write_text(training_command.strip() + "\n")
    data["models"][model] = {
        "folder": folder.as_posix(),
        "training_command": training_command.strip(),
        "copied_from": str(model_dir),
        "description": description,
    }
    for d in designs:
        data["designs"][d] = {"model": model, "plan_options": {}, "description": description}
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(data, indent=1) + "\n")
    registered = load_registry(registry, root)  # checks what was written
    return [registered[d] for d in designs]


_REGISTRY_WHAT = (
    "The model zoo (hls_build/zoo.py): each model is a committed training output folder with its exact training "
    "command; each design is a model on a board with the fit planner's options. `make bundle DESIGN=<design>` builds "
    "its plan and bundle without training; `make zoo-results` builds and benchmarks every design and writes "
    "results/designs/."
)


# --- results -------------------------------------------------------------------------------------------------------
def _read_json(path: Path, what: str, design: Design) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ZooError(f"{design.name}: no {what} at {path}; run `make bench DESIGN={design.name}` first") from exc
    except ValueError as exc:
        raise ZooError(f"{design.name}: {path} is not JSON ({exc})") from exc


def _get(d: dict[str, Any], dotted: str, where: str) -> Any:
    """``d['a']['b']`` for ``'a.b'``; a :class:`ZooError` naming the file and the key when absent."""
    cur: Any = d
    for key in dotted.split("."):
        if not isinstance(cur, dict) or key not in cur:
            raise ZooError(f"{where}: no {dotted!r}")
        cur = cur[key]
    return cur


def summarize(design: Design, root: Path = ROOT) -> dict[str, Any]:
    """The committed summary of one design: its plan, bundle manifest and `board bench` report in one record.

    Raises:
        ZooError: the plan, bundle or report is missing (run ``make bench DESIGN=...``), or was made from another
            model or board than the registry says.
    """
    import hashlib

    plan_file, bundle, report_dir = design.plan_path(root), design.bundle_path(root), design.report_dir(root)
    plan = _read_json(plan_file, "plan", design)
    manifest = _read_json(bundle / "manifest.json", "bundle manifest", design)
    report = _read_json(report_dir / "report.json", "bench report", design)
    model_dir = root / design.model_dir
    metrics = json.loads((model_dir / "metrics.json").read_text()) if (model_dir / "metrics.json").is_file() else {}
    m, r = f"{bundle}/manifest.json", f"{report_dir}/report.json"
    for what, board in (
        ("plan", plan.get("board")),
        ("bundle", manifest.get("board")),
        ("report", _get(report, "bundle.board", r)),
    ):
        if board != design.board:
            raise ZooError(f"{design.name}: the {what} is for {board!r}, not {design.board!r}; rebuild it")

    def sha(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    # The bundle's model.h5 is the folded model it computes; the training record it copies names the source run.
    files = _get(manifest, "files", m)
    copied = {"training_config.json": model_dir / "config.json", "training_metrics.json": model_dir / "metrics.json"}
    for name, source in copied.items():
        if source.is_file() and files.get(name) != sha(source):
            raise ZooError(
                f"{design.name}: the bundle was built from another training run than {design.model_dir} "
                f"({name} differs); rebuild it"
            )
    h5 = sha(model_dir / "model.h5")
    if _get(report, "bundle.created_utc", r) != manifest.get("created_utc"):
        raise ZooError(
            f"{design.name}: the bench report is of an older build of the bundle; run `make bench DESIGN={design.name}`"
        )
    est = _get(manifest, "resources.estimate", m)
    board_est = _get(report, "board_estimate", r)
    mm = _get(manifest, "metrics", m)
    csim = _get(report, "engine", r).get("csim_check") or {}
    return {
        "design": design.name,
        "board": design.board,
        "description": design.description,
        "labels": {
            "top1": "measured here on the EMULATED overlay (board bench, bit-exact fast engine behind the pynq DMA "
            "driver), CIFAR-10 test images",
            "images_per_s": "ESTIMATE (pre-synthesis model of the accelerator at the plan's clock; not measured)",
            "resources": "ESTIMATE (pre-synthesis, the accelerator IP alone; the plan's caps add the calibration band "
            "and the board wrapper)",
        },
        "model": {
            "name": design.model,
            "folder": design.model_dir,
            "model_h5_sha256": h5,
            "training_command": design.training_command,
            "trained_top1": metrics.get("test_top1_final"),
            "epochs": metrics.get("epochs"),
        },
        "plan_options": design.plan_options,
        "commands": {
            "bundle": f"make bundle DESIGN={design.name}",
            "bench": f"make bench DESIGN={design.name}",
            "results": "make zoo-results",
        },
        "top1": {
            "emulated_fpga": _get(report, "accuracy.fpga_top1", r),
            "images": _get(report, "images", r),
            "keras_folded": mm.get("keras_top1"),
            "keras_before_folding": mm.get("keras_top1_before_folding"),
            "onnx_float": report["accuracy"].get("onnx_top1"),
            "onnx_int8": report["accuracy"].get("onnx_int8_top1"),
        },
        "gate": {
            "firmware_vs_keras_agreement": mm.get("firmware_vs_keras_agreement"),
            "firmware_vs_keras_images": mm.get("firmware_vs_keras_images"),
            "firmware_vs_keras_max_abs_logit_diff": mm.get("firmware_vs_keras_max_abs_logit_diff"),
            "first_layer_differing_from_keras": mm.get("first_layer_differing_from_keras"),
            "csim_vs_fast_engine_identical": mm.get("csim_vs_fast_engine_identical"),
            "bench_fpga_vs_keras": (report.get("agreement") or {}).get("fpga_vs_keras"),
            "bench_csim_check": {k: csim.get(k) for k in ("images", "identical", "bit_exact")} if csim else None,
        },
        "estimate": {
            "images_per_s": _get(est, "images_per_s", m),
            "images_per_s_range": board_est.get("images_per_s_range"),
            "throughput_band_pct": board_est.get("band_pct"),
            "throughput_range_factors": board_est.get("range_factors"),
            "throughput_band_source": board_est.get("band_source"),
            "clock_mhz": est.get("clock_mhz"),
            "interval_cycles": est.get("interval_cycles"),
            "latency_ms": est.get("latency_ms"),
            "totals": {k: est.get(k) for k in (*RESOURCES, "URAM")},
            "available": est.get("available"),
            "utilization_pct": _get(est, "utilization_pct", m),
            "binding_resource": plan.get("binding_resource"),
            "limit": plan.get("limit"),
            "cap": plan.get("cap"),
            "cap_use": plan.get("cap_use"),
            "multipliers": plan.get("multipliers"),
            "plan_images_per_s": plan.get("images_per_s"),
        },
        "sources": {
            "plan": design.plan_path().as_posix(),
            "bundle_manifest": (design.bundle_path() / "manifest.json").as_posix(),
            "bundle_created_utc": manifest.get("created_utc"),
            "report": (design.report_dir() / "report.json").as_posix(),
            "report_created_utc": report.get("created_utc"),
            "report_engine": _get(report, "engine", r).get("name"),
            "emulated": report.get("emulated"),
        },
    }


def published_references(path: Path = PUBLISHED) -> list[dict[str, Any]]:
    """The published board results, with top-1 (%) and images/s parsed out of their quoted result lines."""
    data = json.loads(path.read_text())
    out = []
    for r in data["results"]:
        top1 = re.search(r"Top-1: ([0-9.]+)%", r["accuracy"]["line"])
        ips = re.search(r"Median throughput is ([0-9.]+) inf\./sec\.", r["throughput"]["line"])
        if not (top1 and ips):
            raise ZooError(f"{path}: {r['id']}: a quoted line does not hold its figure")
        src = f"{r['repository']}@{r['commit'][:12]}"
        out.append(
            {
                "id": r["id"],
                "label": r["label"],
                "board": r["board"],
                "top1_pct": float(top1.group(1)),
                "images_per_s": float(ips.group(1)),
                "source": f"{src}: {r['accuracy']['path']}, {r['throughput']['path']}",
            }
        )
    return out


def pareto_optimal(points: list[tuple[float, float]]) -> list[bool]:
    """For each (top-1, images/s), whether no other point is at least as good in both and better in one."""
    return [
        not any(a2 >= a and s2 >= s and (a2 > a or s2 > s) for j, (a2, s2) in enumerate(points) if j != i)
        for i, (a, s) in enumerate(points)
    ]


def _pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f} %"


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _range(s: dict[str, Any]) -> str:
    lo_hi = s["estimate"].get("images_per_s_range")
    return "-" if not lo_hi else f"{lo_hi[0]:,.0f} - {lo_hi[1]:,.0f}"


def _utilization_cells(u: dict[str, Any]) -> str:
    """The table cells of the estimate's utilization, one per resource in RESOURCES order."""
    return "".join(f"| {'-' if u.get(k) is None else f'{u[k]:.0f} %'} " for k in RESOURCES)


def _has_factors(s: dict[str, Any]) -> bool:
    return bool(s["estimate"].get("throughput_range_factors"))


def pareto_markdown(board: str, summaries: list[dict[str, Any]], refs: list[dict[str, Any]]) -> str:
    """``results/designs/<board>/pareto.md``: the board's designs, which are Pareto-optimal, and the references."""
    from hls_build.designs import TARGET_IMAGES_PER_S

    rows = sorted(summaries, key=lambda s: s["estimate"]["images_per_s"])
    optimal = pareto_optimal([(s["top1"]["emulated_fpga"], s["estimate"]["images_per_s"]) for s in rows])
    band = next(
        (s["estimate"].get("throughput_band_source") for s in rows if s["estimate"].get("throughput_band_source")), None
    )
    factors = next((s["estimate"]["throughput_range_factors"] for s in rows if _has_factors(s)), None)
    if factors and all(_has_factors(s) for s in rows):
        # The bundles' manifests carry the signed range (board.board_estimate uses it): say so, not the band.
        range_text = (
            f"the range is images/s x the smallest and largest true/estimated factor the calibration measured "
            f"({factors[0]:g}x to {factors[1]:g}x; `throughput_range_factors`, hls_build/calibration_fit.json)."
        )
    else:
        range_text = "the range is the calibration's throughput band" + (f" ({band})." if band else ".")
    lines = [
        f"# {board}: top-1 vs modeled images/s (zoo designs)",
        "",
        "Generated by `make zoo-results` (`python -m hls_build.zoo results`; do not edit by hand). Plot: "
        "[`pareto.png`](pareto.png); per-design records: [`zoo/`](zoo/).",
        "",
        "* **Top-1**: measured here on the **emulated** overlay (`board bench`, bit-exact fast engine), CIFAR-10 test "
        "images (count in the table).",
        "* **Images/s and resources: ESTIMATE** (`hls_build.estimate`, pre-synthesis, accelerator at the plan's "
        "clock), not measured; " + range_text,
        f"* Target of issue 18 for this board: {TARGET_IMAGES_PER_S.get(board, 0):,.0f} images/s (modeled).",
        "",
        "| Design | Model | Top-1 (emulated) | Images | Images/s (ESTIMATE) | Band | Binding "
        "| BRAM_18K | DSP | FF | LUT | Pareto-optimal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s, opt in zip(rows, optimal, strict=True):
        u = s["estimate"]["utilization_pct"]
        lines.append(
            f"| `{s['design']}` | {s['description'] or s['model']['name']} | {_pct(s['top1']['emulated_fpga'])} "
            f"| {s['top1']['images']:,} | {_rate(s['estimate']['images_per_s'])} | {_range(s)} "
            f"| {s['estimate'].get('binding_resource') or '-'} "
            + _utilization_cells(u)
            + f"| {'yes' if opt else 'no'} |"
        )
    lines += [
        "",
        "Resources: percent of the board's resources in the estimate (the plan keeps each under its calibrated cap).",
        "",
        "## References: measured elsewhere",
        "",
        "Published board measurements (MLPerf Tiny; top-1 on its own accuracy image set, median measured throughput), "
        "not made by this project and not comparable one to one with an estimate: drawn on the plot for scale. "
        "Figures parsed from the quoted result lines in `hls_build/published_board_results.json`.",
        "",
        "| Design | Board | Top-1 (measured elsewhere) | Images/s (measured elsewhere) "
        "| Source (repository@commit: files) |",
        "|---|---|---|---|---|",
        *(
            f"| {r['label']} | {r['board']} | {r['top1_pct']:.1f} % | {r['images_per_s']:,.1f} | {r['source']} |"
            for r in refs
        ),
        "",
    ]
    return "\n".join(lines)


def pareto_plot(board: str, summaries: list[dict[str, Any]], refs: list[dict[str, Any]], out: Path) -> Path:
    """``pareto.png``: top-1 vs images/s, and each design's estimated resources as bars.

    Ours: images/s ESTIMATE with the calibration band as an error bar, top-1 on the emulated overlay; references:
    measured elsewhere (grey squares).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hls_build.designs import TARGET_IMAGES_PER_S

    fig = Figure(figsize=(13, 5.6))
    FigureCanvasAgg(fig)
    ax, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    rows = sorted(summaries, key=lambda s: s["estimate"]["images_per_s"])
    optimal = pareto_optimal([(s["top1"]["emulated_fpga"], s["estimate"]["images_per_s"]) for s in rows])
    xs_all = [r["images_per_s"] for r in refs] + [
        v for s in rows for v in (s["estimate"].get("images_per_s_range") or [s["estimate"]["images_per_s"]])
    ]
    ys_all = [r["top1_pct"] for r in refs] + [100 * s["top1"]["emulated_fpga"] for s in rows]
    x_lo, x_hi = min(xs_all) / 2, max(xs_all) * 4
    mid = (x_lo * x_hi) ** 0.5

    def label(x: float, y: float, text: str, color: str, dy: int) -> None:
        # right of the point in the left half, left of it in the right half, so no label leaves the axes
        left = x > mid
        ax.annotate(text, (x, y), fontsize=7, color=color, xytext=(-6 if left else 6, dy), textcoords="offset points",
                    ha="right" if left else "left")  # fmt: skip

    for r in refs:
        ax.scatter(r["images_per_s"], r["top1_pct"], marker="s", color="grey", s=40, zorder=3)
        label(r["images_per_s"], r["top1_pct"], f"{r['label']}\nmeasured elsewhere", "dimgrey", 4)
    for s, opt in zip(rows, optimal, strict=True):
        x, y = s["estimate"]["images_per_s"], 100 * s["top1"]["emulated_fpga"]
        lo_hi = s["estimate"].get("images_per_s_range")
        xerr = [[x - lo_hi[0]], [lo_hi[1] - x]] if lo_hi else None
        ax.errorbar(x, y, xerr=xerr, fmt="o", color="tab:blue" if opt else "tab:cyan", capsize=3, zorder=4)
        label(x, y, f"{s['design']}: ESTIMATE images/s,\ntop-1 emulated" + ("" if opt else " (not Pareto-optimal)"),
              "tab:blue", -18)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(min(ys_all) - 1.5, max(ys_all) + 1.5)
    target = TARGET_IMAGES_PER_S.get(board)
    if target:
        ax.axvline(target, color="tab:red", linestyle="--", linewidth=1)
        ax.text(target, min(ys_all) - 1.4, f" issue-18 target {target:,.0f}/s", color="tab:red", fontsize=7)
    ax.set_xlabel("images/s, log scale\n(ours: ESTIMATE at the plan's clock, bar = calibration band; "
                  "grey: measured elsewhere)", fontsize=8)  # fmt: skip
    ax.set_ylabel("top-1 % (ours: emulated overlay, CIFAR-10 test images)", fontsize=8)
    ax.set_title(f"{board}: zoo designs (ESTIMATE) and published boards (measured elsewhere)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    width = 0.8 / max(1, len(rows))
    for i, s in enumerate(rows):
        u, est = s["estimate"]["utilization_pct"], s["estimate"]
        xs = [k + (i - (len(rows) - 1) / 2) * width for k in range(len(RESOURCES))]
        bars.bar(xs, [u.get(k) or 0.0 for k in RESOURCES], width=width, label=s["design"])
        cap, avail = est.get("cap") or {}, est.get("available") or {}
        caps = [(x, 100 * cap[k] / avail[k]) for x, k in zip(xs, RESOURCES, strict=True) if cap.get(k) and avail.get(k)]
        if caps:
            bars.scatter(*zip(*caps, strict=True), marker="_", s=300, color="black", zorder=3,
                         label="cap of the calibrated plan" if i == 0 else None)  # fmt: skip
    bars.axhline(100, color="black", linewidth=0.8)
    bars.set_ylim(0, 110)
    bars.set_xticks(range(len(RESOURCES)), RESOURCES)
    bars.set_ylabel("% of the board (ESTIMATE, pre-synthesis)", fontsize=8)
    bars.set_title("resources (ESTIMATE)", fontsize=9)
    bars.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = out / "pareto.png"
    fig.savefig(path, dpi=110)
    return path


def flash_markdown(summaries: list[dict[str, Any]], boards: list[str]) -> str:
    """``results/designs/zoo.md``: which design to flash on which board, and every zoo design."""
    from hls_build.designs import TARGET_IMAGES_PER_S

    lines = [
        "# Which design to flash",
        "",
        "Generated by `make zoo-results` (`python -m hls_build.zoo results`; do not edit by hand) from the zoo",
        "([`zoo/`](../../zoo/README.md)): every design is a committed trained model with its fit plan; `make bundle",
        "DESIGN=<design>` rebuilds its bundle without training and `make bench DESIGN=<design>` benchmarks it.",
        "",
        "Top-1: measured on the **emulated** overlay (bit-exact fast engine, CIFAR-10 test images). Images/s and",
        "resources: **ESTIMATE** (pre-synthesis), not measured on a board. The pick per board: the highest top-1, then",
        "the higher images/s. Pareto tables and plots with published board results (measured elsewhere):",
        ", ".join(f"[{b}]({b}/pareto.md)" for b in boards) + ".",
        "",
        "| Board | Flash this design | Top-1 (emulated) | Images/s (ESTIMATE) | Issue-18 target met (images/s) "
        "| Binding | BRAM_18K | DSP | FF | LUT | Build it |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for board in boards:
        mine = [s for s in summaries if s["board"] == board]
        if not mine:
            lines.append(f"| {board} | no zoo design yet | | | | | | | | | |")
            continue
        best = max(mine, key=lambda s: (s["top1"]["emulated_fpga"], s["estimate"]["images_per_s"]))
        u = best["estimate"]["utilization_pct"]
        ips, target = best["estimate"]["images_per_s"], TARGET_IMAGES_PER_S.get(board)
        lines.append(
            f"| {board} | `{best['design']}` ({best['description'] or best['model']['name']}) "
            f"| {_pct(best['top1']['emulated_fpga'])} | {_rate(ips)} ({_range(best)}) "
            f"| {'-' if target is None else ('yes' if ips >= target else 'no')} ({_rate(target)}) "
            f"| {best['estimate'].get('binding_resource') or '-'} "
            + _utilization_cells(u)
            + f"| `make bundle DESIGN={best['design']}` |"
        )
    lines += [
        "",
        "## Every zoo design",
        "",
        "| Design | Model folder | Trained top-1 | Top-1 (emulated) | Firmware = Keras (gate) | Images/s (ESTIMATE) "
        "| Record |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sorted(summaries, key=lambda s: s["design"]):
        g = s["gate"]
        gate = (
            f"{_pct(g['firmware_vs_keras_agreement'])} of {g['firmware_vs_keras_images']:,}"
            if g.get("firmware_vs_keras_images")
            else "-"
        )
        lines.append(
            f"| `{s['design']}` | [`{s['model']['folder']}`](../../{s['model']['folder']}) "
            f"| {_pct(s['model']['trained_top1'])} | {_pct(s['top1']['emulated_fpga'])} | {gate} "
            f"| {_rate(s['estimate']['images_per_s'])} | [{s['board']}/zoo/{s['design'].split('/')[1]}.json]"
            f"({s['board']}/zoo/{s['design'].split('/')[1]}.json) |"
        )
    return "\n".join([*lines, ""])


def write_results(summaries: list[dict[str, Any]], out: Path, refs: list[dict[str, Any]] | None = None) -> list[Path]:
    """Write each summary, each board's Pareto table and plot, and the which-to-flash table under ``out``."""
    from hls_build.boards import BOARDS

    refs = published_references() if refs is None else refs
    written = []
    for s in summaries:
        path = out / s["board"] / "zoo" / f"{s['design'].split('/')[1]}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(s, indent=1) + "\n")
        written.append(path)
    boards = [b for b in BOARDS if any(s["board"] == b for s in summaries)]
    for board in boards:
        mine = [s for s in summaries if s["board"] == board]
        (out / board / "pareto.md").write_text(pareto_markdown(board, mine, refs))
        written += [out / board / "pareto.md", pareto_plot(board, mine, refs, out / board)]
    (out / "zoo.md").write_text(flash_markdown(summaries, list(BOARDS)))
    return [*written, out / "zoo.md"]


def read_summaries(out: Path, designs: dict[str, Design]) -> list[dict[str, Any]]:
    """The committed summaries of the registry's designs (``out/<board>/zoo/<name>.json``)."""
    found = []
    for d in designs.values():
        path = out / d.board / "zoo" / f"{d.short}.json"
        if not path.is_file():
            raise ZooError(f"{d.name}: no summary at {path}; run `make zoo-results`")
        found.append(json.loads(path.read_text()))
    return found


# --- command line --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``python -m hls_build.zoo list|make-vars|add|results``."""
    from board.cli import run as run_cli

    p = argparse.ArgumentParser(prog="python -m hls_build.zoo", description=__doc__.split("\n\n")[0])
    p.add_argument("--registry", default=str(REGISTRY), help="the registry (default zoo/designs.json)")
    p.add_argument("--root", default=str(ROOT), help="repository root the registry's paths are relative to")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="the designs")
    ls.add_argument("--names", action="store_true", help="only the names, one per line")
    mv = sub.add_parser("make-vars", help="for the Makefile: model folder, board, id, plan, bundle, report, plan flags")
    mv.add_argument("design")
    ad = sub.add_parser("add", help="copy a training output folder into the zoo and register designs for it")
    ad.add_argument("--model-dir", required=True, help="the training output folder (model.h5, config.json, ...)")
    ad.add_argument("--model", required=True, help="the zoo model's name, e.g. resnet8_q8_3_foldbn_e40")
    ad.add_argument("--train-command", required=True, help="the exact command that trained it")
    ad.add_argument("--design", action="append", required=True, help="<board>/<name>, repeatable")
    ad.add_argument("--description", default="", help="one line for the tables")
    rs = sub.add_parser("results", help="summaries, Pareto tables and plots, the which-to-flash table")
    rs.add_argument("--out", default="results/designs", help="where to write (default results/designs)")
    rs.add_argument(
        "--from-summaries", action="store_true", help="redraw tables and plots from the summaries already in --out"
    )
    args = p.parse_args(argv)
    registry, root = Path(args.registry), Path(args.root)

    def work() -> int:
        if args.command == "list":
            for d in load_registry(registry, root).values():
                print(d.name if args.names else f"{d.name}\t{d.model_dir}\t{' '.join(d.plan_args()) or '-'}")
        elif args.command == "make-vars":
            d = find_design(args.design, registry, root)
            print(d.model_dir, d.board, d.short, d.plan_path(), d.bundle_path(), d.report_dir(), *d.plan_args())
        elif args.command == "add":
            for d in add_model(Path(args.model_dir), args.model, args.train_command, args.design, args.description,
                               registry, root):  # fmt: skip
                print(f"registered {d.name}: make bundle DESIGN={d.name}")
        else:
            designs = load_registry(registry, root)
            out = Path(args.out) if Path(args.out).is_absolute() else root / args.out
            if args.from_summaries:
                summaries = read_summaries(out, designs)
            else:
                summaries = [summarize(d, root) for d in designs.values()]
            for path in write_results(summaries, out):
                print(path)
        return 0

    return run_cli(work, value_errors_are_input=True)


if __name__ == "__main__":
    sys.exit(main())
