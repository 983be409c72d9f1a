"""Command line: ``python -m hls_build bundle --model-dir build/models/<id> [--board pynq-z2]``."""

from __future__ import annotations

import argparse
import logging
import sys

from board.errors import BoardError


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m hls_build", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bundle", help="convert a trained model with hls4ml and write its overlay bundle")
    b.add_argument("--model-dir", required=True, help="training output folder (model.h5, config.json)")
    b.add_argument("--board", default="pynq-z2")
    b.add_argument("--overlays", default="overlays", help="root of the overlay tree")
    b.add_argument("--work-dir", default="build/hls")
    b.add_argument("--reuse-factor", type=int, default=64)
    b.add_argument("--gate-images", type=int, default=100, help="test images for the C-sim vs Keras gate")
    b.add_argument("--min-agreement", type=float, default=0.98)
    args = parser.parse_args(argv)
    # Our progress at INFO; other libraries (QKeras, tf2onnx) only when they warn.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("hls_build").setLevel(logging.INFO)

    from hls_build.build import BuildError, BuildOptions, build_bundle
    from hls_build.config import BOARDS, HlsSettings
    from hls_build.csim import CSimBuildError

    if args.board not in BOARDS:
        print(f"error: unknown board {args.board!r}; this build supports: {', '.join(BOARDS)}", file=sys.stderr)
        return 2
    options = BuildOptions(
        settings=HlsSettings(board=args.board, reuse_factor=args.reuse_factor),
        gate_images=args.gate_images,
        min_agreement=args.min_agreement,
    )
    try:
        path = build_bundle(args.model_dir, args.overlays, args.work_dir, options)
    except (BoardError, BuildError, CSimBuildError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the previous bundle (if any) is untouched", file=sys.stderr)
        return 130
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
