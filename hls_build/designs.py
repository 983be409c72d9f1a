"""Plan every candidate design on every board and write ``results/designs/<board>/`` (ESTIMATES).

``python -m hls_build.designs [--out results/designs] [--readme-only]`` converts each candidate model with hls4ml
(no C-simulation compile), plans it with :func:`hls_build.planner.plan_design` on each board and writes, per
board and candidate, ``<candidate>.json`` (the plan: per-layer ReuseFactor, strategy and multiplier binding, FIFO
depths, the ESTIMATE, the caps, the binding resource) and ``results/designs/README.md`` (the table and what binds
for the issue's targets). Two plans per candidate:

* ``calibrated``: the default plan, each resource within the calibration's measured band plus the board wrapper
  (:func:`hls_build.planner.calibrated_margins`); this decides "fits";
* ``estimate_alone``: the same search with no margin at all, what the estimate by itself would allow (for
  comparison only: the estimate's own error is not covered).

Candidates are the registry models (``training.models.create_model``), untrained unless ``--model-dir`` gives a
trained one: an untrained model's weights are random, so its derived weight types (integer bits) may differ
from a trained model's by a bit; each plan says which it is. Every figure is an ESTIMATE.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BOARDS = ("pynq-z2", "zcu104")
#: The issue's targets (issue 18): modeled images/s at 100 MHz per board.
TARGET_IMAGES_PER_S = {"pynq-z2": 300.0, "zcu104": 2500.0}
#: Published board measurements of the same class of chip (measured elsewhere; /work/shared/docs/targets.md).
REFERENCES = (
    ("hls4ml MLPerf Tiny RN08 (v1.0), PYNQ-Z2", "83.5 %", 130.8),
    ("FINN CNV-W1A1, PYNQ-Z2", "84.5 %", 661.0),
    ("fpgaConvNet ResNet-8 INT8, ZedBoard (xc7z020)", "86.0 %", 2431.0),
)


@dataclass(frozen=True)
class Candidate:
    """One design candidate: a registry model at a precision."""

    name: str
    model: str
    quant: str
    skips: str = "all"
    label: str = ""


CANDIDATES = (
    Candidate("resnet8_q8_3", "resnet8", "<8,3>", label="ResNet-8 <8,3>"),
    Candidate("resnet8_q6_2", "resnet8", "<6,2>", label="ResNet-8 <6,2>"),
    Candidate("resnet8_q4_2", "resnet8", "<4,2>", label="ResNet-8 <4,2>"),
    Candidate("resnet20_noskip_q8_3", "resnet20", "<8,3>", "none", "ResNet20 without skips <8,3>"),
    Candidate("resnet20_noskip_q6_2", "resnet20", "<6,2>", "none", "ResNet20 without skips <6,2>"),
    Candidate("resnet20_noskip_q4_2", "resnet20", "<4,2>", "none", "ResNet20 without skips <4,2>"),
    Candidate("resnet20_q8_3", "resnet20", "<8,3>", "all", "ResNet20 with skips <8,3>"),
)


def _graph(c: Candidate, work: Path) -> Any:
    # isort: off
    from training.keras_compat import keras  # noqa: F401  (first: tf-keras for hls4ml)

    # isort: on
    from hls_build.config import HlsSettings
    from hls_build.estimate import convert_keras_model, graph_from_hls_model
    from training.models import create_model

    model = create_model(c.model, quant=c.quant, skips=c.skips)
    return graph_from_hls_model(convert_keras_model(model, HlsSettings(), work / c.name), write=False)


def plan_candidate(c: Candidate, graph: Any, board: str) -> dict[str, Any]:
    """Both plans of one candidate on one board, as the JSON written to ``<board>/<candidate>.json``."""
    from hls_build.planner import plan_design

    plan = plan_design(graph, board)
    alone = plan_design(graph, board, margin=0.0)
    return {
        "kind": "estimated",
        "label": "ESTIMATE (pre-synthesis model of the accelerator; see hls_build/README.md)",
        "candidate": c.name,
        "description": c.label,
        "model": {
            "registry_name": c.model,
            "quant": c.quant,
            "skips": c.skips,
            "trained": False,
            "note": "untrained registry model: planned before its trained model exists",
        },  # fmt: skip
        "target_images_per_s": TARGET_IMAGES_PER_S.get(board),
        "throughput_band": _throughput_band(),
        "calibration_held_out_errors_pct": held_out_errors(),
        "calibrated": plan.to_dict(),
        "estimate_alone": {
            "fits": alone.fits,
            "images_per_s": alone.images_per_s,
            "binding_resource": alone.binding,
            "limit": alone.limit,
            "utilization_pct": alone.estimate.utilization(),
            "note": "no margin: what the estimate alone allows, its own error not covered",
        },
        "command": "python -m hls_build.designs",
    }


def _throughput_band() -> dict[str, Any]:
    from hls_build.estimate.design import throughput_band

    return throughput_band()


def held_out_errors() -> dict[str, dict[str, list[float]]]:
    """The calibration's signed held-out errors per resource (``calibration_fit.json``; read, not refitted)."""
    from hls_build.calibration_fit import load_fit

    designs = (load_fit() or {}).get("designs", [])
    out: dict[str, dict[str, list[float]]] = {}
    for r in ("BRAM_18K", "DSP", "FF", "LUT"):
        csynth = [d["held_out_error_pct"]["csynth"].get(r) for d in designs]
        post = [(d["held_out_error_pct"].get("synth") or {}).get(r) for d in designs]
        out[r] = {
            "csynth": sorted(e for e in csynth if e is not None),
            "post_synthesis": sorted(e for e in post if e is not None),
        }
    return out


def _band_lines(plan: dict[str, Any], errors: dict[str, dict[str, list[float]]]) -> list[str]:
    """The band each cap comes from, and which way the calibration's held-out errors go."""
    margins = plan["margins"]
    lines = [
        "## The caps and the errors they cover",
        "",
        "Each cap is `available / (1 + band) - wrapper` (`hls_build.planner.calibrated_margins`). The band is the",
        "calibration's symmetric |error|; the signed held-out errors of `calibration_fit.json` show which way they go",
        "(negative: the estimate was too low, the case a margin is for).",
        "",
        "| Resource | Band used | Cap (share of the board) | Held-out errors % (csynth; post-synthesis) "
        "| Largest under-estimate |",
        "|---|---|---|---|---|",
    ]
    for r, e in errors.items():
        low = min(e["csynth"] + e["post_synthesis"], default=None)
        band = (margins.get("band_pct") or {}).get(r)
        lines.append(
            f"| {r} | {'-' if band is None else f'{band} %'} | {100 * (1 - margins['fraction'][r]):.0f} % | "
            + ", ".join(f"{x:+.1f}" for x in e["csynth"])
            + "; "
            + (", ".join(f"{x:+.1f}" for x in e["post_synthesis"]) or "-")
            + f" | {'-' if low is None or low >= 0 else f'{low:.1f} %'} |"
        )
    return [*lines, ""]


def _fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def markdown(results: dict[str, list[dict[str, Any]]]) -> str:
    """``results/designs/README.md``: per board, every candidate's plans, then what binds for the targets."""
    band = next((r["throughput_band"] for rs in results.values() for r in rs if r.get("throughput_band")), {})
    lines = [
        "# Design candidates per board (ESTIMATES)",
        "",
        "Generated by `python -m hls_build.designs` (do not edit by hand). Every figure is an ESTIMATE of the",
        'accelerator at 100 MHz before synthesis (`hls_build/README.md`, "Estimates"), planned on the untrained',
        "registry models (no trained model of these candidates is committed yet), so no top-1 is given here.",
        "",
        "* **calibrated**: the plan that counts. Every resource of the estimate plus the published PYNQ-Z2 board",
        "  wrapper, widened by the calibration's measured error band (post-synthesis leave-one-out p90 per resource,",
        "  `hls_build/calibration_fit.json`), stays within the board; multipliers bound per layer to DSP48 or LUT",
        "  fabric (`hls_build/bind.py`).",
        "* **estimate alone**: the same search with no margin (the estimate's own error not covered), for comparison.",
        "* The modeled images/s carry the throughput band of the calibration: "
        f"+-{band.get('throughput_band_pct', '?')} % ({band.get('throughput_band_source', 'no band')}).",
        "",
    ]
    for board, rows in results.items():
        caps = rows[0]["calibrated"]["cap"] if rows else {}
        lines += [
            f"## {board} (target {TARGET_IMAGES_PER_S[board]:,.0f} images/s)",
            "",
            "Caps of the calibrated plans (units of the estimate): "
            + ", ".join(f"{r} {v:,.0f}" for r, v in caps.items() if v),
            "",
            "| Candidate | Fits (calibrated) | Images/s (calibrated) | Binding resource | BRAM_18K | DSP | FF | LUT "
            "| DSP / LUT multipliers | Images/s (estimate alone) | Binding (estimate alone) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            p, a = r["calibrated"], r["estimate_alone"]
            util = p["utilization_pct"]
            mult = p["multipliers"]
            lines.append(
                f"| {r['description']} (untrained) | {'yes' if p['fits'] else '**no**'} "
                f"| {_fmt_rate(p['images_per_s']) if p['fits'] else '-'} | {p['binding_resource'] or 'none'} "
                + " ".join(f"| {util[x]:.0f} %" for x in ("BRAM_18K", "DSP", "FF", "LUT"))
                + f" | {mult['DSP48']} / {mult['LUT']} | {_fmt_rate(a['images_per_s']) if a['fits'] else '-'} "
                f"| {a['binding_resource'] or 'none'} |"
            )
        lines += ["", "Utilization: percent of the board used by the estimate (the cap is lower, see above).", ""]
    first = next(iter(results.values()))[0]
    lines += _band_lines(first["calibrated"], first["calibration_held_out_errors_pct"])
    lines += ["## What binds for the issue's targets", ""]
    for board, rows in results.items():
        target = TARGET_IMAGES_PER_S[board]
        fitting = [r for r in rows if r["calibrated"]["fits"]]
        best = max(fitting, key=lambda r: r["calibrated"]["images_per_s"], default=None)
        reach = [r["description"] for r in fitting if r["calibrated"]["images_per_s"] >= target]
        if best is None:
            lines.append(f"* **{board}**: no candidate fits within the calibrated caps.")
            continue
        p = best["calibrated"]
        lines.append(
            f"* **{board}** (target {target:,.0f} images/s): the fastest calibrated plan is {best['description']} at "
            f"{p['images_per_s']:,.0f} images/s (ESTIMATE), limited by {p['limit']}. Candidates at or above the "
            f"target: {', '.join(reach) if reach else 'none'}."
        )
        for r in rows:
            q = r["calibrated"]
            if not q["fits"]:
                lines.append(f"  * {r['description']}: does not fit; {q['notes'][-1] if q['notes'] else q['limit']}")
            elif q["images_per_s"] < target:
                lines.append(f"  * {r['description']}: {q['images_per_s']:,.0f} images/s; {q['limit']}")
    lines += [
        "",
        "Published board results on the same class of chip (measured elsewhere, not by this project):",
        "",
        "| Design | Top-1 | Images/s (measured) |",
        "|---|---|---|",
        *(f"| {n} | {t} | {v:,.1f} |" for n, t, v in REFERENCES),
        "",
        "Not modeled (every plan lists it in `not_modeled`): "
        + "; ".join(next(iter(results.values()))[0]["calibrated"]["not_modeled"])
        + ".",
        "",
    ]
    return "\n".join(lines)


def run(out: Path, work: Path | None = None, only: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Plan every candidate (or those named in ``only``) on every board; write the JSON files and README."""
    results: dict[str, list[dict[str, Any]]] = {b: [] for b in BOARDS}
    chosen = [c for c in CANDIDATES if not only or c.name in only]
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for c in chosen:
            log.info("converting %s (%s)", c.name, c.label)
            graph = _graph(c, Path(tmp))
            for board in BOARDS:
                entry = plan_candidate(c, graph, board)
                results[board].append(entry)
                folder = out / board
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{c.name}.json").write_text(json.dumps(entry, indent=1, default=str) + "\n")
    (out / "README.md").write_text(markdown(results))
    return results


def rewrite_readme(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Write ``README.md`` again from the plans already in ``out`` (no conversion, no planning)."""
    from hls_build.planner import PlanError

    results: dict[str, list[dict[str, Any]]] = {}
    for board in BOARDS:
        files = [out / board / f"{c.name}.json" for c in CANDIDATES]
        results[board] = [json.loads(f.read_text()) for f in files if f.is_file()]
        if not results[board]:
            raise PlanError(f"no plans in {out / board}: run `python -m hls_build.designs` first")
    (out / "README.md").write_text(markdown(results))
    return results


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m hls_build.designs [--out DIR] [--only NAME ...]``."""
    from board.cli import run as run_cli

    p = argparse.ArgumentParser(prog="python -m hls_build.designs", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/designs", help="output folder (default results/designs)")
    p.add_argument("--work-dir", default=None, help="where the converted hls4ml projects go (default: temp)")
    p.add_argument("--only", nargs="*", default=None, help="candidate names (default: all)")
    p.add_argument("--readme-only", action="store_true", help="only write README.md again from the plans in --out")
    args = p.parse_args(argv)

    def work() -> int:
        if args.readme_only:
            rewrite_readme(Path(args.out))
        else:
            run(Path(args.out), Path(args.work_dir) if args.work_dir else None, args.only)
        return 0

    return run_cli(work, value_errors_are_input=True)


if __name__ == "__main__":
    sys.exit(main())
