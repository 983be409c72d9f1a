"""What pruning saves in the hls4ml design, per layer, read from hls4ml's own conversion (no synthesis).

The hardware side of a Deep-Compression run (``python -m training compress``, ``training/compression/``): given the
run's folder, the dense model it started from and the compressed model (decoded from its ``compressed_weights.dcw``)
are each converted with hls4ml 1.3 (Vivado backend, ``io_stream``, the project's precisions from
:func:`hls_build.config.build_hls_config`) under three strategies, and the figures hls4ml puts into the generated code
are collected:

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

Products per image are ``(n_in * n_out - n_zeros) * output positions``. The estimates are the generated code's,
not a synthesis report.

Command line: ``python -m hls_build compression-report --compressed results/compression/<run>`` writes
``hardware.md`` and ``hardware.json`` into the run's folder (:func:`write_hardware_report`).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from board.errors import ProjectError
from hls_build.config import HlsSettings, build_hls_config, prepare_model
from training.keras_compat import keras

#: The compressed weights of a Deep-Compression run (``training.compression.pipeline.COMPRESSED_FILE``).
COMPRESSED_FILE = "compressed_weights.dcw"
#: The files written into the run's folder.
REPORT_MD, REPORT_JSON = "hardware.md", "hardware.json"
#: ReuseFactor requested when neither the command nor the run's config.json names one (what runs used so far).
DEFAULT_REUSE_FACTOR = 64


class CompressionReportError(ProjectError):
    """A Deep-Compression folder without what the report needs: its ``.dcw``, its config or the source model."""


#: Strategies compared (hls4ml's spelling).
STRATEGIES = ("Latency", "Resource", "resource_unrolled")
#: The PYNQ-Z2's part (the Vivado backend needs one; the VivadoAccelerator backend cannot generate resource_unrolled).
PART = "xc7z020clg400-1"


def _convert(model: keras.Model, strategy: str, reuse_factor: int, work_dir: str):
    import hls4ml

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


def compressed_models(compressed_dir: str | os.PathLike, model_dir: str | os.PathLike | None = None
                      ) -> tuple[keras.Model, keras.Model, dict[str, Any]]:  # fmt: skip
    """The dense source model and the compressed model of a Deep-Compression run, and the run's settings.

    The compressed model is the source model with the weights decoded from the run's ``compressed_weights.dcw``
    (what ``python -m training compress`` itself decodes into its ``model.h5``), so the committed ``.dcw`` and the
    source model are all it takes.

    Args:
        compressed_dir: the run's folder (``compressed_weights.dcw``, ``config.json``).
        model_dir: the trained model it compressed (default: ``compression.source`` of its ``config.json``).

    Returns:
        ``(before, after, compression)``: the two models and the ``compression`` record of ``config.json``.

    Raises:
        CompressionReportError: no ``.dcw`` or no source ``model.h5``, or a ``.dcw`` of other layers.
    """
    from board.compressed_weights import CompressedWeightsError, decode_layers

    run = Path(compressed_dir)
    dcw = run / COMPRESSED_FILE
    if not dcw.is_file():
        raise CompressionReportError(f"{run}: no {COMPRESSED_FILE}; give the folder `python -m training compress` "
                                     "wrote (--out)")  # fmt: skip
    config_path = run / "config.json"
    try:
        record = json.loads(config_path.read_text()) if config_path.is_file() else {}
    except ValueError as exc:
        raise CompressionReportError(f"{config_path}: not JSON ({exc})") from exc
    compression = dict(record.get("compression") or {})
    source = Path(model_dir) if model_dir is not None else compression.get("source")
    if source is None:
        raise CompressionReportError(f"{config_path}: no compression.source; give --model-dir (the trained model)")
    weights = Path(source) / "model.h5"
    if not weights.is_file():
        raise CompressionReportError(
            f"{weights}: the source model of {run} is not here; give --model-dir, or train it again "
            "(results/compression/README.md names each run's source)"
        )
    from training.train import load_trained_model

    before = load_trained_model(weights)
    after = load_trained_model(weights)
    try:
        for name, arrays in decode_layers(dcw).items():
            after.get_layer(name).set_weights(arrays)
    except (CompressedWeightsError, ValueError) as exc:
        raise CompressionReportError(f"{dcw} does not fit {weights}: {exc}") from exc
    compression.setdefault("source_model_id", record.get("model_id", Path(source).name).removesuffix("_dc"))
    return before, after, compression


def write_hardware_report(compressed_dir: str | os.PathLike, model_dir: str | os.PathLike | None = None,
                          reuse_factor: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Write ``hardware.md`` and ``hardware.json`` into a Deep-Compression run's folder.

    Args:
        compressed_dir: the run's folder.
        model_dir: the trained model it compressed (default: the one its ``config.json`` names).
        reuse_factor: ReuseFactor requested (default: the run's recorded one, else 64).

    Returns:
        The :func:`compare` rows written to ``hardware.json``.

    Raises:
        CompressionReportError: see :func:`compressed_models`.
    """
    before, after, compression = compressed_models(compressed_dir, model_dir)
    rf = int(reuse_factor or compression.get("reuse_factor") or DEFAULT_REUSE_FACTOR)
    if rf < 1:
        raise CompressionReportError(f"reuse factor must be >= 1, got {rf}")
    rows = compare(multiplier_table(before, rf), multiplier_table(after, rf))
    out = Path(compressed_dir)
    title = (
        f"Multipliers hls4ml 1.3 generates for {compression['source_model_id']} (ReuseFactor {rf} requested, io_stream)"
    )
    _write_atomic(out / REPORT_MD, to_markdown(rows, title))
    _write_atomic(out / REPORT_JSON, json.dumps(rows, indent=2) + "\n")
    return rows


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_cli(args) -> int:
    """Run ``python -m hls_build compression-report`` from parsed arguments; returns the exit code."""
    rows = write_hardware_report(args.compressed, args.model_dir, args.reuse_factor)
    print(json.dumps({"layers": len(rows), "out": [str(Path(args.compressed) / f) for f in (REPORT_MD, REPORT_JSON)]},
                     indent=2))  # fmt: skip
    return 0
