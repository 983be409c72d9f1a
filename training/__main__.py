"""Command line: ``python -m training train|experiment|compress|list-models ...``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from board.cli import run


def _skips(text: str) -> str | tuple[bool, ...]:
    if text in ("all", "none"):
        return text
    if set(text) <= {"0", "1"}:
        return tuple(c == "1" for c in text)
    raise argparse.ArgumentTypeError(f"--skips takes 'all', 'none' or a 0/1 string per block, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m training`` argument parser (light: no TensorFlow)."""
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list-models", help="print the registered model names")
    tr = sub.add_parser("train", help="train one model and write it to --out")
    tr.add_argument("--model", default="resnet8")
    tr.add_argument("--quant", default="<8,3>", help="'<total,integer>' (sign counted as ap_fixed does) or 'float'")
    tr.add_argument("--skips", type=_skips, default="all", help="'all', 'none' or e.g. 101 (one flag per block)")
    tr.add_argument("--epochs", type=int, default=12, help="epochs (0 with --recipe he: its 164)")
    tr.add_argument("--recipe", choices=["short", "he"], default="short")
    tr.add_argument("--method", choices=["plain", "kd", "skip_remover", "skip_shortener"], default="plain")
    tr.add_argument("--teacher", help="teacher model.h5 (kd, skip_remover, skip_shortener)")
    tr.add_argument(
        "--kd-loss",
        choices=["hinton", "tailor", "ce"],
        default=None,
        help="default: hinton for kd, tailor for the skip methods",
    )
    tr.add_argument("--kd-temperature", type=float, default=4.0)
    tr.add_argument("--kd-alpha", type=float, default=0.9)
    tr.add_argument("--init-from-teacher", action="store_true", help="start the student from the teacher's weights")
    tr.add_argument("--skip-every", type=int, default=3, help="epochs between two skip removals/shortenings")
    tr.add_argument("--restart", action="store_true", help="ignore checkpoints of an earlier run in --out")
    tr.add_argument("--fold-bn", action="store_true",
                    help="train each convolution with its BatchNormalization folded in (QConv2DBatchnorm): the "
                    "model trained is the model deployed (quantized models only)")  # fmt: skip
    tr.add_argument(
        "--bn-freeze-epoch",
        type=float,
        default=0.0,
        help="with --fold-bn: freeze the BatchNormalization statistics from this epoch on (0 = never)",
    )
    tr.add_argument("--label-smoothing", type=float, default=0.0, help="of the hard-label cross-entropy (0 = none)")
    tr.add_argument("--init-from", help="start from this trained model.h5's weights (folded or not), e.g. to fine-tune")
    tr.add_argument("--weight-decay", type=float, default=5e-5, help="L2 factor on kernels (Keras adds wd * sum(w^2))")
    tr.add_argument("--batch-size", type=int, default=128)
    tr.add_argument("--lr", type=float, default=0.1, help="peak learning rate")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--train-limit", type=int, default=0, help="use only the first N training images (0 = all)")
    tr.add_argument("--test-limit", type=int, default=0, help="evaluate on the first N test images (0 = all)")
    tr.add_argument("--out", required=True, help="output folder (model.h5, config.json, metrics.json)")
    ex = sub.add_parser("experiment", help="run N trials over a grid of configs; write tables and plots")
    ex.add_argument("--grid", required=True, help="grid file (YAML or JSON), see training/grid.py")
    ex.add_argument("--out", required=True, help="sweep folder (re-run the same command to resume)")
    ex.add_argument(
        "--scheduler",
        choices=["auto", "ray", "inline"],
        default="auto",
        help="ray: every run a Ray task (a local instance, or the cluster at --address); inline: one run after the "
        "other in this process; auto (default): ray when installed, else inline",
    )
    ex.add_argument(
        "--address",
        help="existing Ray cluster, host:port of its head or ray://host:10001 (default: $RAY_ADDRESS when set, else "
        "a local instance on this machine; 'local' forces one). Give --out as a path every node sees",
    )
    ex.add_argument("--workers", type=int, help="runs at once (local Ray: default CPUs // cpus_per_run)")
    ex.add_argument("--retries", type=int, help="attempts after a failed run (default: the grid's `retries`, 0)")
    co = sub.add_parser("compress", help="Deep Compression: prune, retrain, share weights, fine-tune, Huffman-code")
    from training.compression.cli import add_cli_arguments

    add_cli_arguments(co)
    return parser


def _list_models(args: argparse.Namespace, argv: list[str] | None) -> int:
    from training.models import list_models

    print("\n".join(list_models()))
    return 0


def _train(args: argparse.Namespace, argv: list[str] | None) -> int:
    from training.train import TrainConfig, train

    cfg = TrainConfig(
        model=args.model, quant=None if args.quant == "float" else args.quant, skips=args.skips,
        epochs=args.epochs, batch_size=args.batch_size, lr_peak=args.lr, seed=args.seed, recipe=args.recipe,
        method=args.method, teacher=args.teacher,
        kd_loss=args.kd_loss or ("tailor" if args.method.startswith("skip") else "hinton"),
        kd_temperature=args.kd_temperature, kd_alpha=args.kd_alpha, init_from_teacher=args.init_from_teacher,
        skip_every_epochs=args.skip_every, train_limit=args.train_limit, test_limit=args.test_limit,
        fold_bn=args.fold_bn, bn_freeze_epoch=args.bn_freeze_epoch, label_smoothing=args.label_smoothing,
        weight_decay=args.weight_decay, init_from=args.init_from,
    )  # fmt: skip
    result = train(cfg, args.out, restart=args.restart)
    print(json.dumps({"model_id": result.model_id, "test_top1": result.test_top1_final}, indent=2))
    return 0


def _experiment(args: argparse.Namespace, argv: list[str] | None) -> int:
    from training.experiments import Grid, run_sweep, summarize
    from training.sweep import make_scheduler

    grid = Grid.load(args.grid)  # every config is validated here, before anything starts
    scheduler = make_scheduler(args.scheduler, args.address, args.workers)
    report = run_sweep(grid, args.out, scheduler, retries=args.retries)
    print(json.dumps(summarize(report.records), indent=2))
    if report.failed:
        for key, error in report.failed.items():
            print(f"  {key}: {error}", file=sys.stderr)
        print(f"error: {len(report.failed)} runs failed (details in {args.out}/sweep.json); the tables hold the "
              "others. Run the same command again to retry them.", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _compress(args: argparse.Namespace, argv: list[str] | None) -> int:
    from training.compression.cli import run_cli

    return run_cli(args, argv)


#: Each command: its function, and what Ctrl-C leaves behind.
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace, list[str] | None], int], str]] = {
    "list-models": (_list_models, ""),
    "train": (_train, "run the same command again to resume from the last checkpoint"),
    "experiment": (_experiment, "run the same command again to resume the sweep"),
    "compress": (_compress, "nothing in --out is complete"),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 1 runs of a sweep failed, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "experiment" and args.retries is not None and args.retries < 0:
        parser.error("--retries must be >= 0")
    work, interrupted_note = COMMANDS[args.command]
    # TensorFlow is imported by the commands, not here: `--help` should not wait for it. Library code raises
    # ValueError / OSError on malformed user files or unwritable folders (a grid, a config.json), hence
    # value_errors_are_input.
    return run(lambda: work(args, argv), interrupted_note=interrupted_note, value_errors_are_input=True)


if __name__ == "__main__":
    sys.exit(main())
