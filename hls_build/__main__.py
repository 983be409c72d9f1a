"""Command line: ``python -m hls_build bundle --model-dir build/models/<id> [--board pynq-z2]``.

Bring your own float Keras model: ``python -m hls_build import --model my_cnn.h5 --out build/models/my_cnn``, then
``bundle --model-dir build/models/my_cnn``.

And the Vivado flow: ``python -m hls_build bitstream --bundle overlays/<board>/<model_id>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from board.cli import run


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 1 a check failed, 2 bad input, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    notes = {
        "bundle": "the previous bundle (if any) is untouched",
        "import": f"{getattr(args, 'out', '')} is untouched",
        "bitstream": "the bundle is unchanged",
        "compression-report": "hardware.md/json are written only at the end",
    }
    return run(
        lambda: args.func(args),
        interrupted_note=notes.get(args.command, ""),
        error_note=f"The bundle {args.bundle} is unchanged." if args.command == "bitstream" else "",
        # These commands read user files (a plan, a manifest) whose parsers raise ValueError/FileNotFoundError.
        value_errors_are_input=args.command in ("bundle", "bitstream", "estimate", "plan"),
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subparser per command, each with its handler in ``func``."""
    parser = argparse.ArgumentParser(prog="python -m hls_build", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bundle", help="convert a trained model with hls4ml and write its overlay bundle")
    b.set_defaults(func=_bundle)
    b.add_argument("--model-dir", required=True, help="training output folder (model.h5, config.json)")
    b.add_argument("--board", default="pynq-z2")
    b.add_argument("--overlays", default="overlays", help="root of the overlay tree")
    b.add_argument(
        "--model-id", default=None, help="the bundle's id (default: the training config's model_id, else the folder)"
    )
    b.add_argument("--work-dir", default="build/hls")
    b.add_argument("--reuse-factor", type=int, default=64)
    b.add_argument("--no-fuse-relu", action="store_true", help="keep each ReLU a process of its own (hls_build.fuse)")
    b.add_argument("--gate-images", type=int, default=1000, help="test images for the firmware vs Keras gate")
    b.add_argument("--csim-images", type=int, default=100, help="gate images the C-simulation checks bit for bit")
    b.add_argument("--min-agreement", type=float, default=0.99, help="minimum firmware vs Keras argmax agreement")
    b.add_argument(
        "--plan", default=None, help="per-layer ReuseFactor/Strategy from `plan --json FILE` (its layer_config)"
    )
    b.add_argument(
        "--from-step",
        default=None,
        metavar="STEP",
        help="resume at this step, with the earlier steps' outputs on disk from a previous build (--work-dir, the "
        "bundle): fold, derive_types, convert, fuse, firmware_graph, compile, gate, estimate, keras_reference, "
        "onnx_export, int8_reference, manifest (hls_build.build.STEPS)",
    )
    im = sub.add_parser(
        "import",
        help="bring your own model: quantize a float Keras CNN (.h5/.keras) after training, for `bundle`",
        description="Post-training fixed-point quantization of a float Keras model for 32x32x3 CIFAR-10 images: "
        "per-layer formats from weight ranges and from activation ranges on training images (hls_build/ptq.py). "
        "Writes a folder that `bundle --model-dir` takes, with ptq_report.json (formats, top-1 before and after).",
    )
    im.set_defaults(func=_import)
    im.add_argument("--model", required=True, help="the float Keras model file (.h5 or .keras)")
    im.add_argument("--out", required=True, help="folder to write (replaced if it exists)")
    im.add_argument(
        "--input-scale",
        type=float,
        default=None,
        help="the model's own input: pixel / this (1 for raw 0..255 pixels; default 255, and 256 for a QKeras model)",
    )
    im.add_argument(
        "--input-mean",
        type=_three_floats,
        default=None,
        metavar="R,G,B",
        help="per-channel mean subtracted after the scale (folded into the first convolution)",
    )
    im.add_argument(
        "--input-std",
        type=_three_floats,
        default=None,
        metavar="R,G,B",
        help="per-channel std divided by after the mean (folded into the first convolution)",
    )
    im.add_argument(
        "--calibration",
        default="max",
        choices=("max", "percentile", "best"),
        help="ReLU ranges: maximum, a percentile of the positive outputs, or the better of both on "
        "held-out training images (default max)",
    )
    im.add_argument("--percentile", type=float, default=99.99, help="for --calibration percentile/best")
    im.add_argument("--finetune-epochs", type=_epochs_or_auto, default=0,
                    help="quantization-aware fine-tuning epochs after the quantization (default 0: none); 'auto': "
                    "2 epochs only if the quantization loses more than 1 point of top-1 on held-out training "
                    "images")  # fmt: skip
    im.add_argument("--weight-range", choices=("max", "mse", "best"), default="max",
                    help="each kernel's integer bits (one type per layer: hls4ml has no per-channel formats): "
                    "from its largest weight, the least squared error, or the better on held-out training "
                    "images")  # fmt: skip
    im.add_argument("--weight-bits", type=int, default=8)
    im.add_argument("--activation-bits", type=int, default=8)
    im.add_argument("--calibration-images", type=int, default=1000, help="training images for activation ranges")
    im.add_argument("--test-images", type=int, default=10_000, help="test images for top-1 before and after")
    _add_bitstream_parser(sub)
    _add_estimate_parsers(sub)
    cr = sub.add_parser(
        "compression-report",
        help="what a Deep-Compression run saves in the hls4ml design: hardware.md/json into its folder",
    )
    cr.set_defaults(func=_compression_report)
    cr.add_argument("--compressed", required=True, help="the run's folder (python -m training compress --out)")
    cr.add_argument("--model-dir", help="the trained model it compressed (default: its config.json's source)")
    cr.add_argument("--reuse-factor", type=int, help="ReuseFactor requested (default: the run's, else 64)")
    return parser


def _compression_report(args: argparse.Namespace) -> int:
    from hls_build.compression_report import run_cli

    return run_cli(args)


def _read_plan(path: str, board: str) -> tuple[dict, dict]:
    """The ``layer_config`` and FIFO depths of a ``plan --json`` file made for ``board``."""
    import json

    from hls_build.build import BuildError

    try:
        plan = json.loads(Path(path).read_text())
        layer_config, fifo_depths = plan["layer_config"], plan.get("fifo_depths_by_output", {})
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise BuildError(f"--plan {path}: not a plan with a layer_config ({exc})") from exc
    if plan.get("board") not in (None, board):
        raise BuildError(f"--plan {path}: the plan is for {plan['board']}, not {board}")
    return layer_config, fifo_depths


def _bundle(args: argparse.Namespace) -> int:
    from hls_build.boards import board_spec
    from hls_build.build import BuildOptions, build_bundle
    from hls_build.config import HlsSettings

    board_spec(args.board)  # UnknownBoardError names the supported boards
    layer_config, fifo_depths = _read_plan(args.plan, args.board) if args.plan else ({}, {})
    settings = HlsSettings(
        board=args.board,
        reuse_factor=args.reuse_factor,
        layer_config=layer_config,
        fifo_depths=fifo_depths,
        fuse_relu=not args.no_fuse_relu,
    )
    options = BuildOptions(
        settings=settings, gate_images=args.gate_images, csim_images=args.csim_images, min_agreement=args.min_agreement
    )
    print(
        build_bundle(
            args.model_dir, args.overlays, args.work_dir, options, from_step=args.from_step, model_id=args.model_id
        )
    )
    return 0


def _three_floats(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected R,G,B (three numbers), got {text!r}")
    try:
        return tuple(float(p) for p in parts)  # type: ignore[return-value]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected R,G,B (three numbers), got {text!r}") from None


def _epochs_or_auto(text: str) -> int | str:
    """``--finetune-epochs``: a count >= 0 or ``auto``."""
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number of epochs >= 0 or 'auto', got {text!r}")
    return n


def _import(args: argparse.Namespace) -> int:
    from hls_build.ptq import describe, import_float_model

    report = import_float_model(
        args.model, args.out, input_scale=args.input_scale, weight_bits=args.weight_bits,
        activation_bits=args.activation_bits, calibration_images=args.calibration_images,
        test_images=args.test_images, input_mean=args.input_mean, input_std=args.input_std,
        calibration=args.calibration, percentile=args.percentile, finetune_epochs=args.finetune_epochs,
        weight_range=args.weight_range,
    )  # fmt: skip
    print(describe(report))
    print(f"next: python -m hls_build bundle --model-dir {args.out}")
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
    v.set_defaults(func=_bitstream)
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
    from hls_build.vivado import BitstreamOptions, build_bitstream

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
    print(build_bitstream(args.bundle, options))
    return 0


def _add_estimate_parsers(sub: argparse._SubParsersAction) -> None:
    """``estimate``, ``plan`` and ``calibrate``: pre-synthesis ESTIMATES (see hls_build/README.md, "Estimates")."""
    epilog = (
        "All figures are ESTIMATES made before synthesis by hls_build.estimate (calibration and typical error in "
        "hls_build/README.md). Exit codes: 0 done (plan: it fits), 2 bad input (plan: nothing fits the board)."
    )

    def source_args(p: argparse.ArgumentParser, bundle: bool) -> None:
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--model-dir", help="training output folder (model.h5); converted with hls4ml first")
        src.add_argument("--model", help="a registered model name, untrained (e.g. resnet20); with --quant")
        if bundle:
            src.add_argument("--bundle", help="overlay bundle folder: read its hls/ firmware (no hls4ml needed)")
            src.add_argument(
                "--hls-project",
                help="any hls4ml io_stream project folder (hls4ml 0.8-1.3 firmware): calibrated estimate, no hls4ml",
            )
            p.add_argument("--part", default=None, help="with --hls-project: FPGA part (default: the project's)")
        p.add_argument("--quant", default="<8,3>", help="fixed-point spec for --model (default <8,3>)")
        p.add_argument(
            "--skips", default="all", choices=("all", "none", "short"), help="residual skips of --model (default all)"
        )
        p.add_argument(
            "--board", default=None, help="board to compare with (default pynq-z2, or the bundle's; estimate: 'all')"
        )
        p.add_argument("--reuse-factor", type=int, default=64, help="ReuseFactor for the conversion (default 64)")
        p.add_argument("--strategy", default="Resource", choices=("Resource", "Latency"))
        p.add_argument(
            "--no-fuse-relu", action="store_true", help="keep each ReLU a process of its own (hls_build.fuse)"
        )
        p.add_argument("--clock-mhz", type=float, default=None, help="clock for times and rates")
        p.add_argument(
            "--hls-tool",
            default=None,
            choices=("vitis", "vivado_hls"),
            help="how stream FIFOs are built (Vitis HLS: one per stream; Vivado HLS: one per channel); default vitis, "
            "with --hls-project the tool of the project's own HLS report if it has one",
        )
        p.add_argument("--work-dir", default=None, help="where the converted hls4ml project goes (default: temp)")
        p.add_argument("--json", default=None, help="also write the result as JSON to this file")

    e = sub.add_parser(
        "estimate",
        help="pre-synthesis resource/latency ESTIMATE per layer against a board's budget",
        description="Print the ESTIMATE table (Name / BRAM_18K / DSP48E / FF / LUT / URAM, Total, Available, "
        "Utilization %) of a converted model or an existing bundle, with the interval, latency and images/s.",
        epilog=epilog,
    )
    e.set_defaults(func=_estimate_commands)
    source_args(e, bundle=True)
    pl = sub.add_parser(
        "plan",
        help="choose per-layer ReuseFactor, strategy and FIFO depths that fit a board by the ESTIMATE",
        description="Search per-layer ReuseFactor/Strategy, multiplier binding (DSP48 or LUT fabric) and FIFO depths "
        "that maximize modeled throughput while the ESTIMATE of every resource stays within its cap: by default the "
        "calibration's measured error band per resource plus the board wrapper (hls_build/calibration_fit.json), "
        "or --margin on every resource. Names the resource that binds; a plan that cannot fit exits 2.",
        epilog=epilog,
    )
    pl.set_defaults(func=_estimate_commands)
    source_args(pl, bundle=False)
    pl.add_argument(
        "--margin",
        type=float,
        default=None,
        help="the same headroom on every resource, e.g. 0.1 (default: the calibration's measured band per resource)",
    )
    pl.add_argument(
        "--no-bind-multipliers",
        action="store_true",
        help="leave every product's DSP48/LUT binding to the HLS tool (hls4ml's default) instead of choosing it",
    )
    c = sub.add_parser(
        "calibrate",
        help="re-read the published designs of hls_build/calibration_designs, fit, print in-sample and "
        "leave-one-out errors (no hls4ml needed)",
        epilog=epilog,
    )
    c.set_defaults(func=_estimate_commands)
    c.add_argument("--write", action="store_true", help="write the fit to hls_build/calibration_fit.json")
    c.add_argument("--json", default=None, help="also write the whole result as JSON to this file")
    c.add_argument("--rebuild", default=None, help="first rewrite a 'rebuilt' design's firmware (needs hls4ml)")


def _estimate_commands(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from hls_build import estimate as est_mod

    if args.command == "calibrate" or getattr(args, "hls_project", None):
        from hls_build import calibration_fit

        if args.command == "calibrate":
            return calibration_fit.run_calibrate_cli(args.json, args.write, args.rebuild)
        return calibration_fit.run_estimate_cli(args.hls_project, args.part, args.hls_tool, args.json)
    from hls_build.boards import board_spec

    if args.board is not None and not (args.board == "all" and args.command == "estimate"):
        board_spec(args.board)
    if getattr(args, "bundle", None):
        graph = est_mod.graph_from_bundle(args.bundle, hls_tool=args.hls_tool or "vitis")
        board = args.board or json.loads((Path(args.bundle) / "manifest.json").read_text()).get("board")
        return _print_estimate(args, graph, board or "pynq-z2")
    board = args.board or "pynq-z2"
    from hls_build.config import HlsSettings

    settings = HlsSettings(
        board="pynq-z2" if board == "all" else board,
        reuse_factor=args.reuse_factor,
        strategy=args.strategy,
        clock_mhz=args.clock_mhz or 100.0,
        fuse_relu=not args.no_fuse_relu,
    )
    from training.data import model_input

    # An imported model may stream its own input type (hls_build.ptq.input_stream), named in its config.json.
    cfg = Path(args.model_dir) / "config.json" if getattr(args, "model_dir", None) else None
    own = json.loads(cfg.read_text()) if cfg is not None and cfg.is_file() else {}
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp, model_input(own.get("input_fixed_point"),
                                                                          own.get("preprocessing")):  # fmt: skip
        model = _load_model_for_estimate(args)
        hls_model = est_mod.convert_keras_model(model, settings, args.work_dir or tmp)
        graph = est_mod.graph_from_hls_model(
            hls_model, clock_mhz=settings.clock_mhz, hls_tool=args.hls_tool or "vitis", write=False
        )
    if args.command == "estimate":
        return _print_estimate(args, graph, board)
    return _print_plan(args, graph, board)


def _load_model_for_estimate(args: argparse.Namespace):
    if args.model_dir:
        from training.train import load_trained_model

        path = Path(args.model_dir) / "model.h5"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
        return load_trained_model(path)
    from training.models import create_model

    return create_model(args.model, quant=args.quant, skips=args.skips)


def _print_estimate(args: argparse.Namespace, graph, board: str) -> int:
    import json

    from hls_build.boards import BOARDS
    from hls_build.estimate import estimate_design, format_table

    results = []
    for name in BOARDS if board == "all" else [board]:
        est = estimate_design(graph, name, clock_mhz=args.clock_mhz, check=not results)
        print(format_table(est))
        results.append(est.to_dict())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results if board == "all" else results[0], f, indent=1, default=str)
    return 0


def _print_plan(args: argparse.Namespace, graph, board: str) -> int:
    import json

    from hls_build.estimate import format_table
    from hls_build.planner import PlanError, plan_design

    plan = plan_design(graph, board, margin=args.margin, clock_mhz=args.clock_mhz,
                       bind_multipliers=not args.no_bind_multipliers)  # fmt: skip
    print(format_table(plan.estimate))
    verdict = "fits" if plan.fits else "does NOT fit"
    caps = plan.margins.cap(plan.board.budget.as_dict()) if plan.margins else {}
    print(f"PLAN ({verdict} {plan.board.name}, ESTIMATE): {plan.images_per_s:.1f} images/s, latency "
          f"{plan.latency_ms:.3f} ms; binding resource: {plan.binding or 'none'} ({plan.limit})")  # fmt: skip
    print(
        f"caps ({plan.margins.source if plan.margins else ''}): "
        + ", ".join(f"{r} {caps[r]:.0f} (used {100 * plan.cap_use[r]:.0f} %)" for r in caps if caps[r] > 0)
    )
    print("layer_config (for build_hls_config):")
    for name, cfg in plan.layer_config.items():
        print(f"  {name}: {cfg}")
    deep = {k: v for k, v in plan.fifo_depths.items() if v > 3}
    print(f"FIFO depths: {len(plan.fifo_depths)} streams, chain streams 1-3, deeper ones: {deep}")
    for note in plan.notes:
        print(f"note: {note}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(plan.to_dict(), f, indent=1, default=str)
    if not plan.fits:
        raise PlanError(f"no setting fits {plan.board.name} within the caps: {plan.limit} (ESTIMATE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
