"""Collect the PyTorch route's figures into ``summary.json``, each with the file it was read from.

Run by ``run.sh`` after the benchmarks:
``python results/byo/torch_resnet8/summarize.py results/byo/torch_resnet8 overlays/pynq-z2`` (the bundles' manifests
hold the build's gate figures).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(folder: str, overlays: str) -> None:
    """Write ``<folder>/summary.json`` from ``metrics.json``, each route's reports and its bundle's manifest."""
    root = Path(folder)
    torch_metrics = json.loads((root / "metrics.json").read_text())
    out: dict = {"source": "metrics.json (byo/pytorch/resnet8.py)", "torch": torch_metrics["torch"],
                 "brevitas": torch_metrics["brevitas"], "routes": {}}  # fmt: skip
    for kind, source_key in (("float", "top1_torch_float"), ("brevitas", "top1_torch_brevitas")):
        report = json.loads((root / kind / "report.json").read_text())
        ptq = json.loads((root / kind / "ptq_report.json").read_text())
        manifest_path = Path(overlays) / f"torch_resnet8_{kind}" / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        acc, m = report["accuracy"], manifest["metrics"]
        out["routes"][kind] = {
            "torch_top1": torch_metrics[source_key],
            "imported_keras_top1_source": ptq["top1_float"],
            "imported_keras_top1": ptq["top1_quantized"],
            "calibration": ptq["calibration"],
            "fpga_top1_emulated": acc["fpga_top1"],
            "fpga_minus_torch_points": round(100 * (acc["fpga_top1"] - torch_metrics[source_key]), 2),
            "fpga_vs_keras_agreement": report["agreement"]["fpga_vs_keras"],
            "onnx_float_reference_top1": acc["onnx_top1"],
            "onnx_int8_reference_top1": acc["onnx_int8_top1"],
            "gate_firmware_vs_keras_agreement": m["firmware_vs_keras_agreement"],
            "gate_firmware_vs_keras_max_abs_logit_diff": m["firmware_vs_keras_max_abs_logit_diff"],
            "gate_csim_vs_fast_engine_identical": m["csim_vs_fast_engine_identical"],
            "gate_csim_images": m["csim_vs_keras_images"],
            "test_images": report["images"],
            "files": [f"{kind}/report.json", f"{kind}/ptq_report.json", f"{manifest_path} (the bundle, not versioned)"],
        }
    (root / "summary.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
