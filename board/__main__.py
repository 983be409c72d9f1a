"""Command line of the board runtime: ``python -m board {bench,list,validate}``.

Examples::

    python -m board list --root overlays
    python -m board validate overlays/pynq-z2/resnet8_w8a8
    python -m board bench --bundle overlays/pynq-z2/resnet8_w8a8 -n 1000 --batch-size 100

Every expected failure (a :class:`~board.errors.BoardError`: bad bundle, missing data, DMA error or timeout,
missing tool) ends with one ``error: ...`` line on stderr and exit status 2; Ctrl-C exits with 130. Progress and
diagnostics go to stderr through ``logging``; results (tables, the report) go to stdout.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from board import __version__
from board.bundle import MANIFEST, load_bundle, read_manifest
from board.errors import BoardError, BundleError

log = logging.getLogger("board")

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 2, 130


def _cmd_bench(args: argparse.Namespace) -> int:
    from board.bench import render_markdown, run_bench

    report, out = run_bench(
        args.bundle,
        n=args.n,
        batch_size=args.batch_size,
        out_dir=args.out,
        cifar10_dir=args.cifar10_dir,
        onnx_threads=args.onnx_threads,
        timeout_s=args.timeout,
    )
    sys.stdout.write(render_markdown(report))
    log.info("report written to %s", out)
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if not root.is_dir():
        raise BundleError(f"{root} is not a folder; pass --root with the overlays folder")
    rows = []
    for manifest_path in sorted(root.glob(f"*/*/{MANIFEST}")):
        folder = manifest_path.parent
        try:
            m = read_manifest(folder)
            rows.append((m.board, m.model_id, str(m.emulated).lower(), str(m.has_bitstream).lower(), str(folder)))
        except BoardError as exc:
            rows.append((folder.parent.name, folder.name, "?", "?", f"{folder} (unreadable: {exc})"))
    if not rows:
        print(f"no bundles found under {root} (expected {root}/<board>/<model_id>/{MANIFEST})")
        return EXIT_OK
    header = ("board", "model_id", "emulated", "has_bitstream", "path")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.path)
    m = bundle.manifest
    kind = "emulated" if m.emulated else "bitstream"
    print(f"OK {bundle.root}: {m.board}/{m.model_id} ({kind}), {len(m.files)} files match their sha256")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(prog="python -m board", description="PYNQ board runtime for CIFAR-10 overlays.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="benchmark a bundle on CIFAR-10 (FPGA or emulation vs ONNX vs Keras)")
    bench.add_argument("--bundle", required=True, help="bundle folder, e.g. overlays/pynq-z2/<model_id>")
    bench.add_argument("-n", type=int, default=1000, help="number of test images, from the first (default 1000)")
    bench.add_argument("--batch-size", type=int, default=100, help="images per DMA transfer (default 100)")
    bench.add_argument("--out", help="report folder (default build/reports/<board>/<model_id>)")
    bench.add_argument("--cifar10-dir", help="CIFAR-10 python batches folder (default $CIFAR10_DIR, then Keras cache)")
    bench.add_argument("--onnx-threads", type=int, help="ONNX Runtime intra-op threads (default: all cores)")
    bench.add_argument("--timeout", type=float, help="seconds allowed per DMA batch (default scales with batch)")
    bench.set_defaults(func=_cmd_bench)

    lst = sub.add_parser("list", help="list the bundles under an overlays folder")
    lst.add_argument("--root", default="overlays", help="overlays folder (default ./overlays)")
    lst.set_defaults(func=_cmd_list)

    val = sub.add_parser("validate", help="check a bundle's manifest and file checksums")
    val.add_argument("path", help="bundle folder")
    val.set_defaults(func=_cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except BoardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
