"""Write the board notebooks (nbformat 4.5 JSON) from the cell sources below: ``python -m board.notebooks._generate``.

The notebooks are committed; this script is their source, and a test checks that the committed files are what it
writes. Cells are kept short and each notebook reads its parameters from environment variables, so the tests can
run them headless on the emulated overlay with a handful of images (see ``host_tests/board/test_notebooks.py``).
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent

_PARAMS = """
import os

from board.registry import detect_board, first_bundle, open_bundle

# Parameters: edit here, or set the environment variables before starting Jupyter.
BUNDLE = os.environ.get("ZYNQ_RESNET_BUNDLE")  # a folder, <board>/<model_id> or a model id; None: the first found
N_IMAGES = os.environ.get("ZYNQ_RESNET_NB_IMAGES")  # test images; None: the notebook's default
CIFAR10_DIR = os.environ.get("CIFAR10_DIR")  # the CIFAR-10 python batches (None: Keras's cache)

board_name = detect_board()
bundle = open_bundle(BUNDLE, board_name) if BUNDLE else first_bundle(board_name)
m = bundle.manifest
print(f"this machine: {board_name}")
print(f"bundle: {m.board}/{m.model_id} at {bundle.root}")
print("FPGA path:", "HOST EMULATION (no bitstream; not board timings)" if m.emulated else "bitstream")
"""


def _md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": textwrap.dedent(text).strip("\n")}


def _code(text: str) -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {},
        "outputs": [],
        "source": textwrap.dedent(text).strip("\n"),
    }


QUICK_START = [
    _md(
        """
        # Quick start: CIFAR-10 on the FPGA

        This notebook loads an overlay bundle for this board (`overlays/<board>/<model_id>/`), streams a few CIFAR-10
        test images through the accelerator with the AXI DMA, and shows the predictions.

        On a PYNQ board the bundle's bitstream is loaded with `pynq.Overlay`. On a machine without a board (the
        "host") an *emulated* bundle runs instead, behind the same `pynq` DMA driver: by default the bit-exact numpy
        engine (`board.fast_engine`), or the hls4ml C-simulation with `Accelerator(..., engine="csim")` (a few
        hundred times slower; the default too for a bundle without a firmware graph). The results are the design's,
        but the timings are host timings, not board timings. `acc.engine` says which engine ran.

        The same steps on the command line: `python -m board demo`.
        """
    ),
    _code(_PARAMS),
    _code(
        """
        import numpy as np

        from board.cifar10 import CLASSES, load_split

        n = int(N_IMAGES) if N_IMAGES else 16
        classes = list(m.classes) or list(CLASSES)
        test = load_split("test", directory=CIFAR10_DIR).head(n)
        print(f"{len(test)} test images, shape {test.images.shape}, {test.images.dtype}")
        """
    ),
    _md(
        """
        ## Classify

        `Accelerator` validates the uint8 images, encodes them to the input stream's fixed-point codes, sends each
        batch as one DMA transfer, waits for the output packet and decodes the logits.
        """
    ),
    _code(
        """
        from board.driver import Accelerator

        with Accelerator(bundle, batch_size=min(len(test), 100)) as acc:  # emulated: engine="csim" for the C-sim
            print(f"engine: {acc.engine} ({acc.engine_description})")
            logits = acc.predict(test.images)
            timings = acc.take_timings()
        preds = np.argmax(logits.reshape(len(test), -1), axis=1)
        for i, (label, pred) in enumerate(zip(test.labels, preds)):
            mark = "ok" if label == pred else "WRONG"
            print(f"{i:3d}  label {classes[label]:<10}  predicted {classes[pred]:<10}  {mark}")
        top1 = float(np.mean(preds == test.labels))
        ms = sum(t.seconds for t in timings) / len(test) * 1e3
        what = f"host emulation, {acc.engine} engine" if m.emulated else f"{m.board} DMA round trip"
        print(f"top-1 {100 * top1:.1f} % on {len(test)} images; {ms:.2f} ms per image ({what})")
        """
    ),
    _code(
        """
        %matplotlib inline
        import matplotlib.pyplot as plt

        k = min(len(test), 8)
        fig, axes = plt.subplots(1, k, figsize=(2 * k, 2.4))
        for ax, img, label, pred in zip(np.atleast_1d(axes), test.images, test.labels, preds):
            ax.imshow(img)
            ax.set_title(f"{classes[pred]}\\n({classes[label]})", color="green" if pred == label else "red", fontsize=9)
            ax.axis("off")
        fig.suptitle("prediction (label)")
        plt.show()
        """
    ),
    _md(
        """
        Next: `02_fpga_vs_cpu.ipynb` compares the FPGA with ONNX Runtime on the ARM cores, and
        `03_power_zcu104.ipynb` measures power on the ZCU104.
        """
    ),
]

FPGA_VS_CPU = [
    _md(
        """
        # FPGA vs CPU

        The same test images through the accelerator and through ONNX Runtime on the board's ARM cores (the float
        ONNX export of the quantized Keras model in the bundle): top-1, argmax agreement, latency per image (p50,
        p99) and throughput, optionally for several batch sizes. The first batch of every pass is a warm-up and is
        not timed.

        ONNX Runtime has no wheel for the PYNQ-Z2's 32-bit ARM (armv7l): there the CPU side is reported as not
        available, and `python -m board bench --reference-only` on a host or a ZCU104 gives CPU figures for the
        same bundle (that machine's, not the Cortex-A9's).

        The same on the command line: `python -m board bench --bundle <bundle> --batch-sizes 1,10,100`.
        """
    ),
    _code(_PARAMS),
    _code(
        """
        from pathlib import Path

        from board.bench import DEFAULT_BATCH_SIZES, benchmark, parse_batch_sizes, render_markdown, write_report
        from board.cifar10 import load_split

        n = int(N_IMAGES) if N_IMAGES else (32 if m.emulated else 1000)
        sweep_env = os.environ.get("ZYNQ_RESNET_NB_SWEEP")  # e.g. "1,10,100"; default: that on a board, none emulated
        default_sweep = () if m.emulated else DEFAULT_BATCH_SIZES
        batch_sizes = parse_batch_sizes(sweep_env) if sweep_env is not None else default_sweep
        out_dir = Path(os.environ.get("ZYNQ_RESNET_NB_OUT", "reports")) / m.board / m.model_id
        test = load_split("test", directory=CIFAR10_DIR).head(n)
        print(f"{len(test)} images, batch 100, sweep {batch_sizes or 'off'}; report into {out_dir}")
        """
    ),
    _code(
        """
        report = benchmark(
            bundle,
            test.images,
            test.labels,
            batch_size=min(100, len(test)),
            batch_sizes=batch_sizes,
            sweep_images=min(len(test), 1000),
            progress=False,
            running_on=board_name,
        )
        write_report(report, out_dir)
        acc = report["accuracy"]

        print(f"FPGA engine: {report['engine']['name']} ({report['engine']['description']})")
        keys = ("fpga_top1", "onnx_top1", "onnx_int8_top1")
        shown = {k: "n/a" if acc[k] is None else f"{100 * acc[k]:.2f} %" for k in keys}
        print("top-1 FPGA", shown["fpga_top1"], "| ONNX float", shown["onnx_top1"], "| 8-bit", shown["onnx_int8_top1"])
        ref = report["reference"]
        print("CPU references:", ref["engine_description"] or "none ran", "on", ref["cpu"])
        for kind, key in (("float", "onnx_unavailable"), ("8-bit", "onnx_int8_unavailable")):
            if report[key]:
                print(f"ONNX reference ({kind}) not available:", report[key])
        """
    ),
    _code(
        """
        from IPython.display import Image, Markdown, display

        display(Markdown(render_markdown(report).split("## Plots")[0]))
        for name, file in report["plots"].items():
            if name in ("fpga_vs_cpu", "throughput_vs_batch", "latency_histogram"):
                display(Image(filename=str(out_dir / file)))
        """
    ),
]

POWER = [
    _md(
        """
        # Power and energy per inference on the ZCU104

        The ZCU104's power regulators report voltage, current and power over PMBus; PYNQ reads them with
        `pynq.get_rails()` and records them with `pynq.DataRecorder`. The benchmark records the `12V` rail (the
        whole board's input) for an idle baseline with the overlay loaded, then during the FPGA pass, and reports

        energy per inference = (mean power during the run - idle power) x run time / images

        i.e. the energy the inference adds on top of an idle board (the gross figure is reported too).

        * **PYNQ-Z2**: no power sensor on the board. Measure the supply with an external meter and enter the
          readings: `python -m board bench ... --external-power-watts 2.9 --external-idle-watts 2.4` (labelled
          "external meter (user-entered)"). Without them: "not available".
        * **Host (emulated overlay)**: "not available (host emulation)". Nothing is invented.
        """
    ),
    _code(_PARAMS),
    _code(
        """
        from board.power import DEFAULT_RAILS, PmbusMeter, PowerUnavailable

        RAILS = tuple(os.environ.get("ZYNQ_RESNET_NB_RAILS", ",".join(DEFAULT_RAILS)).split(","))
        if board_name == "zcu104":
            try:
                meter = PmbusMeter.from_pynq(RAILS)
                print("PMBus rails", ", ".join(meter.rail_names), "now:", [f"{w:.3f} W" for w in meter.read()])
            except PowerUnavailable as exc:
                print("Power: not available:", exc)
        elif board_name == "pynq-z2":
            print("Power: not available on the PYNQ-Z2 (no sensor); enter an external meter's readings below.")
        else:
            print(f"Power: not available ({board_name}{' emulation' if board_name == 'host' else ''}).")
        """
    ),
    _md(
        """
        ## Benchmark with power

        On the ZCU104 this samples the rails (idle for `IDLE_S` seconds, then during the FPGA pass). On a PYNQ-Z2,
        set `EXTERNAL_W` / `EXTERNAL_IDLE_W` to your meter's readings (watts) taken during such a run.
        """
    ),
    _code(
        """
        from pathlib import Path

        from board.bench import benchmark, write_report
        from board.cifar10 import load_split
        from board.power import PowerOptions

        n = int(N_IMAGES) if N_IMAGES else (16 if m.emulated else 10000)
        IDLE_S = float(os.environ.get("ZYNQ_RESNET_NB_IDLE_S", "2"))
        EXTERNAL_W = os.environ.get("ZYNQ_RESNET_NB_EXTERNAL_W")  # PYNQ-Z2: meter reading during the run, W
        EXTERNAL_IDLE_W = os.environ.get("ZYNQ_RESNET_NB_EXTERNAL_IDLE_W")  # PYNQ-Z2: meter reading idle, W
        options = PowerOptions(
            rails=RAILS,
            idle_s=IDLE_S,
            external_watts=float(EXTERNAL_W) if EXTERNAL_W and not m.emulated else None,
            external_idle_watts=float(EXTERNAL_IDLE_W) if EXTERNAL_IDLE_W and EXTERNAL_W and not m.emulated else None,
        )
        test = load_split("test", directory=CIFAR10_DIR).head(n)
        report = benchmark(
            bundle,
            test.images,
            test.labels,
            batch_size=min(100, n),
            power=options,
            reference="off",
            progress=False,
            running_on=board_name,
        )
        out_dir = Path(os.environ.get("ZYNQ_RESNET_NB_OUT", "reports")) / m.board / m.model_id / "power"
        write_report(report, out_dir)
        print(f"FPGA engine: {report['engine']['name']} ({report['engine']['description']})")
        power = report["power"]
        if power["available"]:
            print(f"source: {power['source']}")
            print(f"idle {power['idle_w']} W, run {power['run_w']:.3f} W over {power['run_s']:.2f} s")
            net, gross = power["energy_per_inference_mj"], power["gross_energy_per_inference_mj"]
            print(f"energy per inference: {net} mJ (net), {gross:.4g} mJ (gross)")
        else:
            print("Power:", power["reason"])
        """
    ),
    _code(
        """
        from IPython.display import Image, display

        if "power_trace" in report["plots"]:
            display(Image(filename=str(out_dir / report["plots"]["power_trace"])))
        else:
            print("no power trace to plot:", power.get("reason") or power.get("source"))
        """
    ),
]

NOTEBOOKS = {
    "01_quick_start.ipynb": QUICK_START,
    "02_fpga_vs_cpu.ipynb": FPGA_VS_CPU,
    "03_power_zcu104.ipynb": POWER,
}


def notebook_json(cells: list[dict], stem: str) -> str:
    """The nbformat 4.5 JSON text of a notebook (cell ids derived from the file stem)."""
    nb = {
        "cells": [{"id": f"{stem.replace('_', '-')}-{i:02d}", **c} for i, c in enumerate(cells)],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    for cell in nb["cells"]:  # Jupyter's own layout: source as a list of lines
        cell["source"] = cell["source"].splitlines(keepends=True)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(out_dir: Path = HERE) -> int:
    """Write every notebook into ``out_dir``."""
    for name, cells in NOTEBOOKS.items():
        (out_dir / name).write_text(notebook_json(cells, Path(name).stem))
        print(f"wrote {out_dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE))
