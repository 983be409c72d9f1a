"""What pruning saves in the hls4ml design, per layer, read from hls4ml's own conversion (no synthesis).

For each conv/dense layer the model is converted with hls4ml 1.3 (Vivado backend, ``io_stream``, the project's
precisions from :func:`hls_build.config.build_hls_config`) under three strategies, and the figures hls4ml puts into
the generated code are collected:

* **Latency**: the multiplier allocation limit of the generated config,
  ``DIV_ROUNDUP(n_in * n_out, RF) - n_zeros / RF`` (``backends/vivado/passes/convolution_templates.py`` and
  ``core_templates.py``), where ``n_zeros`` is hls4ml's count of zero (quantized) weights; the weights are
  compile-time constants of a fully unrolled product loop, so HLS removes the products by zero;
* **Resource**: ``block_factor = DIV_ROUNDUP(n_in * n_out, RF)`` multipliers, whatever the zeros
  (``nnet_dense_resource.h`` never reads ``n_zeros``); all ``n_in * n_out`` weights, zeros included, sit in a
  BRAM ROM;
* **resource_unrolled** (hls4ml's zero-aware Resource variant): the allocation limit its code generator writes,
  ``mult_limit - zero_rows`` (``backends/vivado/passes/unrolled_codegen.py``), where a multiplier is saved only
  when all ``RF`` weights it would serve are zero; products by zero are left out of the generated code.

Products per image are ``(n_in * n_out - n_zeros) * output positions``. The training side needs hls4ml here
only; the estimates are the generated code's, not a synthesis report.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from training.keras_compat import keras

#: Strategies compared (hls4ml's spelling).
STRATEGIES = ("Latency", "Resource", "resource_unrolled")
#: The PYNQ-Z2's part (the Vivado backend needs one; the VivadoAccelerator backend cannot generate resource_unrolled).
PART = "xc7z020clg400-1"


def _convert(model: keras.Model, strategy: str, reuse_factor: int, work_dir: str):
    import hls4ml

    from hls_build.config import HlsSettings, build_hls_config, prepare_model

    base = "Latency" if strategy == "Latency" else "Resource"
    # As hls_build converts it: BatchNormalization folded (a pruned zero stays zero when scaled).
    model, _ = prepare_model(model)
    cfg = build_hls_config(model, HlsSettings(strategy=base, reuse_factor=reuse_factor))
    if strategy == "resource_unrolled":
        cfg["Model"]["Strategy"] = strategy
        for entry in cfg["LayerName"].values():
            entry["Strategy"] = strategy
    # hls4ml prints its reuse-factor adjustments; they are recorded in the table instead.
    with contextlib.redirect_stdout(io.StringIO()):
        return hls4ml.converters.convert_from_keras_model(
            model, hls_config=cfg, output_dir=work_dir, project_name="estimate", backend="Vivado", part=PART,
            io_type="io_stream",
        )  # fmt: skip


def multiplier_table(model: keras.Model, reuse_factor: int = 64) -> list[dict[str, Any]]:
    """Per conv/dense layer: sizes, zero weights and the multipliers hls4ml generates under each strategy.

    Args:
        model: a (Q)Keras model.
        reuse_factor: the ReuseFactor requested (hls4ml moves it to the closest valid one per layer; recorded).

    Returns:
        One dict per layer with ``layer``, ``n_in``, ``n_out``, ``positions`` (output pixels), ``weights``,
        ``zeros``, ``products_dense`` / ``products_nonzero`` (multiplications per image), ``weight_bits`` and, per
        strategy ``s``, ``{s}_rf`` and ``{s}_multipliers``; Resource also ``resource_rom_bits``; resource_unrolled
        also ``resource_unrolled_min_multipliers`` (``ceil(nonzero weights / RF)``).
    """
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in STRATEGIES:
            hm = _convert(model, strategy, reuse_factor, f"{tmp}/{strategy}")
            backend = hm.config.backend
            for node in hm.get_layers():
                w = node.weights.get("weight")
                if w is None or not any(k in node.class_name for k in ("Conv2D", "Dense")):
                    continue
                n_in, n_out = backend.get_layer_mult_size(node)
                rf = int(node.get_attr("reuse_factor"))
                size = n_in * n_out
                out_shape = node.get_output_variable().shape
                positions = int(math.prod(out_shape[:-1])) if len(out_shape) > 1 else 1
                row = rows.setdefault(
                    node.name,
                    {"layer": node.name, "kind": node.class_name, "n_in": n_in, "n_out": n_out,
                     "positions": positions, "weights": size, "zeros": int(w.nzeros),
                     "weight_bits": int(w.type.precision.width), "products_dense": size * positions,
                     "products_nonzero": (size - int(w.nzeros)) * positions},
                )  # fmt: skip
                key = strategy.lower()
                row[f"{key}_rf"] = rf
                if strategy == "Latency":
                    row[f"{key}_multipliers"] = math.ceil(size / rf) - int(w.nzeros) // rf
                elif strategy == "Resource":
                    row[f"{key}_multipliers"] = math.ceil(size / rf)
                    row["resource_rom_bits"] = size * int(w.type.precision.width)
                else:
                    code = node.get_attr("resource_unrolled_dense_codegen")
                    limits = re.findall(r"instances=mul limit=(\d+)", str(code)) if code is not None else []
                    row[f"{key}_multipliers"] = int(limits[0]) if limits else math.ceil(size / rf)
                    # All products of the layer share RF cycles: fewer multipliers than this cannot do them.
                    row[f"{key}_min_multipliers"] = math.ceil((size - int(w.nzeros)) / rf)
    return list(rows.values())


def compare(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Join two :func:`multiplier_table` results (dense model, compressed model) by layer."""
    after_by = {r["layer"]: r for r in after}
    out = []
    for b in before:
        a = after_by[b["layer"]]
        row = {k: b[k] for k in ("layer", "kind", "n_in", "n_out", "positions", "weights", "weight_bits")}
        for k in ("zeros", "products_nonzero", "resource_rom_bits", "resource_unrolled_min_multipliers"):
            row[f"{k}_before"], row[f"{k}_after"] = b[k], a[k]
        for s in STRATEGIES:
            key = s.lower()
            row[f"{key}_rf"] = b[f"{key}_rf"]
            row[f"{key}_multipliers_before"] = b[f"{key}_multipliers"]
            row[f"{key}_multipliers_after"] = a[f"{key}_multipliers"]
        out.append(row)
    return out


def to_markdown(rows: Sequence[Mapping[str, Any]], title: str = "Multipliers hls4ml generates") -> str:
    """A per-layer table of :func:`compare` rows, with totals."""
    lines = [
        f"## {title}",
        "",
        "Before → after compression. `products/img`: multiplications per image by nonzero weights; multipliers: "
        "what the generated code allocates (Latency, resource_unrolled: `ALLOCATION limit`; Resource: "
        "`block_factor`); the unrolled floor is `ceil(nonzero weights / RF)`, the fewest multipliers that do a "
        "layer's products in its RF cycles. Weight width "
        f"{rows[0]['weight_bits'] if rows else '?'} bits: below 9 bits Vivado builds multipliers from LUTs, "
        "not DSPs.",
        "",
        "| layer | n_in x n_out | zero weights | products/img | Latency RF | Latency mults | Resource RF "
        "| Resource mults | Resource ROM bits | unrolled RF | unrolled mults (limit) | unrolled mults (floor) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tot: dict[str, int] = {}
    for r in rows:
        for k, v in r.items():
            if isinstance(v, int) and k.endswith(("_before", "_after")):
                tot[k] = tot.get(k, 0) + v
        lines.append(
            f"| {r['layer']} | {r['n_in']} x {r['n_out']} | {r['zeros_before']} → {r['zeros_after']} "
            f"| {r['products_nonzero_before']:,} → {r['products_nonzero_after']:,} | {r['latency_rf']} "
            f"| {r['latency_multipliers_before']} → {r['latency_multipliers_after']} | {r['resource_rf']} "
            f"| {r['resource_multipliers_before']} → {r['resource_multipliers_after']} "
            f"| {r['resource_rom_bits_before']:,} → {r['resource_rom_bits_after']:,} | {r['resource_unrolled_rf']} "
            f"| {r['resource_unrolled_multipliers_before']} → {r['resource_unrolled_multipliers_after']} "
            f"| {r['resource_unrolled_min_multipliers_before']} → {r['resource_unrolled_min_multipliers_after']} |"
        )
    if rows:
        lines.append(
            f"| **total** | | {tot['zeros_before']:,} → {tot['zeros_after']:,} "
            f"| {tot['products_nonzero_before']:,} → {tot['products_nonzero_after']:,} | "
            f"| {tot['latency_multipliers_before']:,} → {tot['latency_multipliers_after']:,} | "
            f"| {tot['resource_multipliers_before']:,} → {tot['resource_multipliers_after']:,} "
            f"| {tot['resource_rom_bits_before']:,} → {tot['resource_rom_bits_after']:,} | "
            f"| {tot['resource_unrolled_multipliers_before']:,} → {tot['resource_unrolled_multipliers_after']:,} "
            f"| {tot['resource_unrolled_min_multipliers_before']:,} → "
            f"{tot['resource_unrolled_min_multipliers_after']:,} |"
        )
    return "\n".join(lines) + "\n"
