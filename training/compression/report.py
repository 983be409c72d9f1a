"""The compression report: per-layer table, totals, compression rates at each stage, top-1 at each stage.

Pure Python/numpy: the pipeline hands in one :class:`~training.compression.container.EncodedKernel` per layer and the
measured accuracies; :func:`build_report` does the arithmetic, :func:`to_markdown` / :func:`write_report` write
``report.md``, ``report.csv`` and ``report.json``.

Sizes follow Han et al. (ICLR 2016) and the seeds:

* ``n`` weights of ``b_ref`` bits (32: the float model the seeds and the paper start from) or of ``b`` bits (the
  model's own fixed-point weight width; 32 for a float model) are the dense baselines;
* after pruning, the seeds' rate is ``total / alive`` (a count ratio);
* after sharing, Han et al.'s eq. 1 on the alive weights: ``n * b_ref / (alive * log2(k) + k * b)`` (codebook of
  ``k`` values of ``b`` bits; positions not counted), and the same with the sparse positions stored as fixed-width
  ``gap_bits`` gaps (fillers included) next to fixed-width cluster indices;
* after Huffman: Huffman-coded cluster indices + Huffman-coded gaps + codebook (Huffman tables not counted, as in
  the paper); the ``.dcw`` file's size, which counts everything (tables, header, BatchNorm parameters, biases), is
  reported next to it.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from training.compression.container import EncodedKernel, kernel_bits_summary

REFERENCE_BITS = 32
STAGES = (
    ("before_pruning", "before pruning"),
    ("after_pruning", "after pruning (no retraining)"),
    ("after_retraining", "after retraining"),
    ("after_sharing", "after sharing (k-means, before fine-tuning)"),
    ("after_finetuning", "after sharing + centroid fine-tuning"),
    ("after_huffman", "after Huffman (decoded from the file)"),
)
CSV_FIELDS = (
    "layer", "shape", "total", "nonzeros", "nonzero_pct", "pruned", "codebook_size", "gap_bits", "entries",
    "fillers", "bits_dense_ref", "bits_dense", "bits_sparse", "bits_shared", "bits_shared_sparse", "bits_huffman",
    "rate_pruning", "rate_sharing", "rate_sharing_sparse", "rate_huffman", "rate_huffman_vs_b",
)  # fmt: skip


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("inf")


def layer_stats(name: str, enc: EncodedKernel, weight_bits: int, reference_bits: int = REFERENCE_BITS) -> dict:
    """One row of the per-layer table.

    Args:
        name: layer name.
        enc: the layer's encoded (final) kernel.
        weight_bits: ``b``, bits of one weight in the model (fixed-point width, or 32 for float).
        reference_bits: ``b_ref``, bits of one weight in the dense reference (32, as in the seeds).

    Returns:
        A dict with the fields of :data:`CSV_FIELDS`.
    """
    bits = kernel_bits_summary(enc, weight_bits)
    dense_ref = enc.size * reference_bits
    return {
        "layer": name,
        "shape": list(enc.shape),
        "total": enc.size,
        "nonzeros": enc.nonzeros,
        "nonzero_pct": 100.0 * enc.nonzeros / enc.size if enc.size else 0.0,
        "pruned": enc.size - enc.nonzeros,
        "codebook_size": len(enc.codebook),
        "gap_bits": enc.gap_bits,
        "entries": enc.entries,
        "fillers": enc.fillers,
        "bits_dense_ref": float(dense_ref),
        "bits_dense": bits["dense"],
        "bits_sparse": bits["sparse"],
        "bits_shared": bits["shared"],
        "bits_shared_sparse": bits["shared_sparse"],
        "bits_huffman": bits["huffman"],
        "rate_pruning": _ratio(enc.size, enc.nonzeros),
        "rate_sharing": _ratio(dense_ref, bits["shared"]),
        "rate_sharing_sparse": _ratio(dense_ref, bits["shared_sparse"]),
        "rate_huffman": _ratio(dense_ref, bits["huffman"]),
        "rate_huffman_vs_b": _ratio(bits["dense"], bits["huffman"]),
    }


def build_report(
    encoded: Mapping[str, EncodedKernel],
    weight_bits: int,
    accuracy: Mapping[str, float] | None = None,
    meta: Mapping[str, Any] | None = None,
    container_bytes: int | None = None,
    other_params: int = 0,
    reference_bits: int = REFERENCE_BITS,
) -> dict[str, Any]:
    """Per-layer rows, totals and rates for a compressed model.

    Args:
        encoded: ``{layer name: encoded final kernel}`` in model order.
        weight_bits: ``b`` (see :func:`layer_stats`).
        accuracy: top-1 per stage (keys of :data:`STAGES`).
        meta: anything else to record (model id, settings, command, stage nonzeros, times).
        container_bytes: size of the ``.dcw`` file, when written.
        other_params: parameters stored raw next to the kernels (BatchNorm, biases).
        reference_bits: ``b_ref``.

    Returns:
        ``{"layers": [...], "totals": {...}, "accuracy": {...}, "meta": {...}}`` (JSON-ready).
    """
    rows = [layer_stats(name, enc, weight_bits, reference_bits) for name, enc in encoded.items()]
    total = sum(r["total"] for r in rows)
    alive = sum(r["nonzeros"] for r in rows)
    sums = {k: sum(r[k] for r in rows) for k in CSV_FIELDS if k.startswith("bits_")}
    totals: dict[str, Any] = {
        "alive": alive,
        "pruned": total - alive,
        "total": total,
        "pruned_pct": 100.0 * (total - alive) / total if total else 0.0,
        "weight_bits": weight_bits,
        "reference_bits": reference_bits,
        **sums,
        "rate_pruning": _ratio(total, alive),
        "rate_sparse": _ratio(sums["bits_dense_ref"], sums["bits_sparse"]),
        "rate_sharing": _ratio(sums["bits_dense_ref"], sums["bits_shared"]),
        "rate_sharing_sparse": _ratio(sums["bits_dense_ref"], sums["bits_shared_sparse"]),
        "rate_huffman": _ratio(sums["bits_dense_ref"], sums["bits_huffman"]),
        "rate_sparse_vs_b": _ratio(sums["bits_dense"], sums["bits_sparse"]),
        "rate_sharing_vs_b": _ratio(sums["bits_dense"], sums["bits_shared"]),
        "rate_sharing_sparse_vs_b": _ratio(sums["bits_dense"], sums["bits_shared_sparse"]),
        "rate_huffman_vs_b": _ratio(sums["bits_dense"], sums["bits_huffman"]),
        "other_params": int(other_params),
    }
    if container_bytes is not None:
        all_float32_bytes = 4 * (total + other_params)
        # The same model stored dense: kernels at b bits, everything else (BatchNorm, biases) as float32.
        dense_b_bytes = (total * weight_bits + 32 * other_params) / 8
        totals.update(
            container_bytes=int(container_bytes),
            dense_float32_bytes=all_float32_bytes,
            dense_b_bytes=dense_b_bytes,
            rate_container=_ratio(all_float32_bytes, container_bytes),
            rate_container_vs_b=_ratio(dense_b_bytes, container_bytes),
        )
    return {"layers": rows, "totals": totals, "accuracy": dict(accuracy or {}), "meta": dict(meta or {})}


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _x(rate: float) -> str:
    return f"{rate:.2f}x"


def to_markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown: settings, per-layer table (the seeds' form), rates per stage, top-1 per stage."""
    meta, t, acc = report["meta"], report["totals"], report["accuracy"]
    b, b_ref = t["weight_bits"], t["reference_bits"]
    lines = [f"# Deep Compression: {meta.get('model_id', 'model')}", ""]
    if meta.get("command"):
        lines += ["Command:", "", "```", meta["command"], "```", ""]
    settings = meta.get("settings")
    if settings:
        lines += ["Settings: " + ", ".join(f"`{k}={v}`" for k, v in settings.items()), ""]
    if meta.get("test_images"):
        lines += [f"Top-1 on the first {meta['test_images']} CIFAR-10 test images; retraining and fine-tuning on "
                  f"{meta.get('train_images', '?')} training images.", ""]  # fmt: skip
    lines += [
        "## Per layer",
        "",
        f"Final kernels (after pruning, sharing and fine-tuning). Rates per layer are against {b_ref}-bit dense "
        f"weights; `k` is the codebook size, `gap bits` the width of a stored position gap.",
        "",
        "| layer | shape | nonzeros / total (%) | pruned | k | gap bits | pruning | sharing | Huffman |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["layers"]:
        lines.append(
            f"| {r['layer']} | {_shape(r['shape'])} | {r['nonzeros']} / {r['total']} ({r['nonzero_pct']:.2f} %) "
            f"| {r['pruned']} | {r['codebook_size']} | {r['gap_bits']} | {_x(r['rate_pruning'])} "
            f"| {_x(r['rate_sharing'])} | {_x(r['rate_huffman'])} |"
        )
    lines += [
        "",
        f"alive: {t['alive']}, pruned: {t['pruned']}, total: {t['total']}, compression rate: "
        f"{_x(t['rate_pruning'])} ({t['pruned_pct']:.2f} % pruned)",
        "",
        "## Compression rate",
        "",
        f"Kernels only (conv and dense), as in Han et al. `b_ref = {b_ref}` (the float model of the seeds), "
        f"`b = {b}` (this model's weight width).",
        "",
        f"| stage | kernel bits | vs {b_ref}-bit dense | vs {b}-bit dense |",
        "|---|---:|---:|---:|",
        f"| dense, {b_ref}-bit | {t['bits_dense_ref']:.0f} | 1.00x | - |",
        f"| dense, {b}-bit (the model as trained) | {t['bits_dense']:.0f} "
        f"| {_x(_ratio(t['bits_dense_ref'], t['bits_dense']))} | 1.00x |",
        f"| after pruning (count: total / alive, as the seeds) | - | {_x(t['rate_pruning'])} "
        f"| {_x(t['rate_pruning'])} |",
        f"| after pruning, stored sparse (values + gaps) | {t['bits_sparse']:.0f} | {_x(t['rate_sparse'])} "
        f"| {_x(t['rate_sparse_vs_b'])} |",
        f"| after sharing, Han eq. 1 (alive * log2 k + k * b) | {t['bits_shared']:.0f} | {_x(t['rate_sharing'])} "
        f"| {_x(t['rate_sharing_vs_b'])} |",
        f"| after sharing, fixed-width indices + gaps + codebooks | {t['bits_shared_sparse']:.0f} "
        f"| {_x(t['rate_sharing_sparse'])} | {_x(t['rate_sharing_sparse_vs_b'])} |",
        f"| after Huffman (indices + gaps + codebooks) | {t['bits_huffman']:.0f} | {_x(t['rate_huffman'])} "
        f"| {_x(t['rate_huffman_vs_b'])} |",
    ]
    if "container_bytes" in t:
        lines += [
            "",
            f"Whole file `compressed_weights.dcw`: {t['container_bytes']} bytes (kernels, Huffman tables, header, "
            f"and {t['other_params']} BatchNorm/bias parameters stored as float32): "
            f"{_x(t['rate_container'])} smaller than all parameters as float32 ({t['dense_float32_bytes']:.0f} "
            f"bytes), {_x(t['rate_container_vs_b'])} smaller than kernels at {b} bits + the rest as float32 "
            f"({t['dense_b_bytes']:.0f} bytes).",
        ]
    if acc:
        lines += ["", "## Top-1", "", "| stage | top-1 | alive kernel weights |", "|---|---:|---:|"]
        alive = meta.get("stage_nonzeros", {})
        for key, label in STAGES:
            if key in acc:
                lines.append(f"| {label} | {100 * acc[key]:.2f} % | {alive.get(key, '')} |")
    notes = meta.get("notes")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv`` (one row per layer, then a ``TOTAL`` row) and ``report.json``.

    Returns:
        ``{"md": path, "csv": path, "json": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "csv": out / "report.csv", "json": out / "report.json"}
    paths["md"].write_text(to_markdown(report))
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in report["layers"]:
            writer.writerow({**r, "shape": "x".join(str(s) for s in r["shape"])})
        t = report["totals"]
        writer.writerow(
            {"layer": "TOTAL", "total": t["total"], "nonzeros": t["alive"], "pruned": t["pruned"],
             "nonzero_pct": 100.0 - t["pruned_pct"],
             **{k: t[k] for k in CSV_FIELDS if k.startswith("bits_")},
             **{k: t[k] for k in ("rate_pruning", "rate_sharing", "rate_sharing_sparse", "rate_huffman",
                                  "rate_huffman_vs_b")}}
        )  # fmt: skip
    return paths
