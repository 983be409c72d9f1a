r"""The board runtime's own overhead per 1,000 images: encode, copy in, DMA submit, wait, copy out, decode.

The accelerator is replaced by a zero-cost kernel (it returns zeros at once) behind the emulated device, so what
is left is the runtime: input validation and the pixel->code table lookup, the copy into the reused DMA buffer,
pynq's ``transfer`` (cache flush, register writes), polling until both channels are idle plus pynq's ``wait``
(cache invalidate), the copy out of the output buffer, and the fixed-point decode. Each phase is the sum over
the batches of one ``Accelerator.predict`` call on 1,000 images (``BatchTiming``'s phase split), the median of
``--repeats`` runs after one warm-up run.

What the emulated figures mean for a board: encode, copies and decode are the same numpy code there (an ARM
core is several times slower than a host core). Submit and wait here include the emulated device's Python
register file and its kernel thread hand-off; on a board the registers are memory-mapped (``pynq.MMIO``), so
those two phases shrink to pynq's Python overhead and the cache maintenance, and wait then also holds the
accelerator's real compute time, which is not runtime overhead.

Usage (board environment)::

    PYTHONPATH=. .venv-board/bin/python benchmarks/runtime_overhead.py [--images 1000] \
        [--batch-sizes 1,10,100,1000] [--repeats 5] [--bundle overlays/pynq-z2/resnet8_q8_3] [--json out.json]

``--bundle`` takes the stream types and DMA settings from a bundle's manifest (its files are not needed);
by default they are the ResNet-8 overlay's: ``ap_ufixed<8,0>`` uint8 in (3,072 per image), ``ap_fixed<16,6>``
int16 out (10 per image).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from board.bench import parse_batch_sizes  # noqa: E402
from board.bundle import Bundle, Manifest, TensorSpec, read_manifest  # noqa: E402
from board.driver import Accelerator  # noqa: E402
from board.emulated_device import EmulatedDevice, FunctionKernel  # noqa: E402
from board.errors import BoardError  # noqa: E402

PHASES = ("encode", "copy_in", "submit", "wait", "copy_out", "decode", "other")


def default_manifest() -> Manifest:
    """The ResNet-8 overlay's stream types and DMA settings, without any files."""
    return Manifest(
        model_id="overhead",
        board="pynq-z2",
        input=TensorSpec("image", [32, 32, 3], "ap_ufixed<8,0>", "uint8"),
        output=TensorSpec("logits", [10], "ap_fixed<16,6>", "int16"),
        preprocessing={"input_scale": 0.00390625, "input_offset": 0.0},
        emulated=True,
        dma={"max_transfer_bytes": 67108863, "length_width_bits": 26},
    )


def measure(manifest: Manifest, images: np.ndarray, batch_size: int, repeats: int) -> dict[str, float]:
    """Median milliseconds per phase for one ``predict`` of ``images`` (one warm-up run first)."""
    n_in, n_out = int(np.prod(manifest.input.shape)), int(np.prod(manifest.output.shape))
    out_dtype = np.dtype(manifest.output.container)
    kernel = FunctionKernel(
        lambda raw: np.zeros((len(raw), n_out), out_dtype), n_in, n_out, manifest.input.container, out_dtype
    )
    device = EmulatedDevice(kernel, manifest.dma)
    runs: dict[str, list[float]] = {p: [] for p in (*PHASES, "total")}
    try:
        with Accelerator(Bundle(Path("."), manifest), batch_size=batch_size, device=device) as acc:
            for rep in range(repeats + 1):
                acc.take_timings()
                t0 = time.perf_counter()
                raw, _ = acc.encode(images)
                t1 = time.perf_counter()
                out = acc.run_raw(raw)
                t2 = time.perf_counter()
                acc.decode(out)
                t3 = time.perf_counter()
                timings = acc.take_timings()
                if rep == 0:
                    continue  # warm-up: first-touch page faults, pynq's first-transfer bookkeeping
                phases = {
                    "encode": t1 - t0,
                    "copy_in": sum(t.copy_in_s for t in timings),
                    "submit": sum(t.submit_s for t in timings),
                    "wait": sum(t.wait_s for t in timings),
                    "copy_out": sum(t.copy_out_s for t in timings),
                    "decode": t3 - t2,
                }
                phases["other"] = (t2 - t1) - sum(phases[p] for p in ("copy_in", "submit", "wait", "copy_out"))
                phases["total"] = t3 - t0
                for k, v in phases.items():
                    runs[k].append(v * 1e3)
    finally:
        device.close()
    return {k: statistics.median(v) for k, v in runs.items()}


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print a table (ms per 1,000 images, per phase and batch size)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="images per predict call (default 1000)")
    parser.add_argument("--batch-sizes", default="1,10,100,1000", help="DMA batch sizes (default 1,10,100,1000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per batch size (median; default 5)")
    parser.add_argument("--bundle", help="take stream types and DMA settings from this bundle's manifest")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        manifest = read_manifest(args.bundle) if args.bundle else default_manifest()
        sizes = parse_batch_sizes(args.batch_sizes)
        if args.images < 1 or args.repeats < 1 or not sizes:
            raise BoardError("--images, --repeats and --batch-sizes must be positive")
    except BoardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    images = np.random.default_rng(0).integers(0, 256, (args.images, *manifest.input.shape), dtype=np.uint8)
    scale = 1000.0 / args.images
    print(
        f"runtime overhead, ms per 1,000 images ({args.images} images per call, median of {args.repeats}), "
        f"zero-cost kernel behind the emulated device; {platform.machine()}, Python {platform.python_version()}"
    )
    header = ("batch", *PHASES, "total")
    print("  ".join(f"{h:>8}" for h in header))
    results = []
    for b in sizes:
        ms = measure(manifest, images, b, args.repeats)
        row = {k: v * scale for k, v in ms.items()}
        results.append({"batch_size": b, **row})
        print("  ".join([f"{b:>8}", *(f"{row[k]:8.3f}" for k in (*PHASES, "total"))]))
    print(
        "encode/copy_in/copy_out/decode are the board's numpy code; submit/wait include the emulated register file "
        "and kernel thread (memory-mapped registers on a board)."
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "unit": "ms per 1000 images",
                    "images_per_call": args.images,
                    "repeats": args.repeats,
                    "machine": platform.machine(),
                    "python": platform.python_version(),
                    "rows": results,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
