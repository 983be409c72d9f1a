"""Command line: ``python -m hls_build bundle --model-dir build/models/<id> [--board pynq-z2]``.

And the Vivado flow: ``python -m hls_build bitstream --bundle overlays/<board>/<model_id>``.
"""

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
    _add_bitstream_parser(sub)
    args = parser.parse_args(argv)
    # Our progress at INFO; other libraries (QKeras, tf2onnx) only when they warn.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("hls_build").setLevel(logging.INFO)
    if args.command == "bitstream":
        return _bitstream(args)

    from hls_build.boards import BOARDS
    from hls_build.build import BuildError, BuildOptions, build_bundle
    from hls_build.config import HlsSettings
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


def _add_bitstream_parser(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser(
        "bitstream",
        help="run HLS and Vivado on a bundle and add its bitstream, .hwh and measured resources",
        description="Run Vitis HLS (or Vivado HLS) and Vivado for an overlay bundle: HLS synthesis of the accelerator, "
        "the board's block design (PS + AXI DMA + accelerator), implementation; then add <model_id>.bit/.hwh and the "
        "measured resources to the bundle. Needs the Xilinx tools on PATH (exit code 2 without them). Exit codes: "
        "0 done, 1 a tool failed or the result is unusable (the bundle is unchanged), 2 bad input or missing tools.",
    )
    v.add_argument("--bundle", required=True, help="overlay bundle folder, e.g. overlays/pynq-z2/resnet8_q8_3")
    v.add_argument("--work-dir", default="build/vivado", help="work folders go to <work-dir>/<board>/<model_id>/")
    v.add_argument("--jobs", type=int, default=2, help="parallel Vivado jobs and thread limit (default 2)")
    v.add_argument(
        "--hls-tool",
        default="auto",
        choices=("auto", "vitis_hls", "vitis-run", "vivado_hls"),
        help="HLS front end (default: the first of vitis_hls, vitis-run, vivado_hls on PATH)",
    )
    v.add_argument("--clock-mhz", type=float, default=None, help="PL and HLS clock (default: the manifest's)")
    v.add_argument("--allow-timing-violation", action="store_true", help="keep a design with negative slack")
    v.add_argument("--timeout-min", type=float, default=None, help="stop a tool that runs longer than this")
    v.add_argument(
        "--scripts-only", action="store_true", help="only write the Tcl scripts and sources (no tools needed)"
    )
    v.add_argument("--verbose", action="store_true", help="show every line of the tools' output")


def _bitstream(args: argparse.Namespace) -> int:
    from board.errors import ToolMissingError
    from hls_build.vivado import BitstreamOptions, VivadoFlowError, build_bitstream

    options = BitstreamOptions(
        work_dir=args.work_dir,
        jobs=args.jobs,
        hls_tool=args.hls_tool,
        clock_mhz=args.clock_mhz,
        allow_timing_violation=args.allow_timing_violation,
        scripts_only=args.scripts_only,
        verbose=args.verbose,
        timeout_s=None if args.timeout_min is None else 60.0 * args.timeout_min,
    )
    try:
        path = build_bitstream(args.bundle, options)
    except ToolMissingError as exc:
        print(f"error: {exc} The bundle {args.bundle} is unchanged. (--scripts-only writes the scripts without "
              "running them.)", file=sys.stderr)  # fmt: skip
        return 2
    except VivadoFlowError as exc:
        print(f"error: {exc}\nThe bundle {args.bundle} is unchanged.", file=sys.stderr)
        return 1
    except (BoardError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the bundle is unchanged", file=sys.stderr)
        return 130
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
