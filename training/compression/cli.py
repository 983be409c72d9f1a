"""``python -m training compress``: options and the run (light to import; TensorFlow loads only when it runs)."""

from __future__ import annotations

import json

from training.compression.errors import CompressionError


def _overrides(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CompressionError(f"--prune-layer takes LAYER=VALUE, e.g. stem_conv=50; got {item!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError as exc:
            raise CompressionError(f"--prune-layer {item!r}: {value!r} is not a number") from exc
    return out


def add_cli_arguments(parser) -> None:
    """The ``python -m training compress`` options (an ``argparse`` subparser)."""
    parser.add_argument("--model-dir", required=True, help="training output folder with model.h5 (and config.json)")
    parser.add_argument("--prune", default="percentile:80",
                        help="percentile:Q (prune below the Q-th percentile of |w|, Q in [0, 100]) or sensitivity:S "
                             "(prune |w| < S * std(w)), per layer")  # fmt: skip
    parser.add_argument("--prune-layer", action="append", default=[], metavar="LAYER=VALUE",
                        help="another pruning value for one layer (repeatable), e.g. stem_conv=50")  # fmt: skip
    parser.add_argument("--layers", help="comma-separated layers to prune (default: every conv and dense layer)")
    parser.add_argument("--retrain-epochs", type=int, default=1, help="retraining epochs with the masks fixed")
    parser.add_argument("--retrain-lr", type=float, default=0.01, help="peak learning rate of retraining")
    parser.add_argument("--share-bits", type=int, default=5, help="cluster-index bits (k = 2^bits shared values)")
    parser.add_argument("--kmeans-init", choices=["linear", "density"], default="linear")
    parser.add_argument("--finetune-epochs", type=int, default=1, help="epochs of centroid fine-tuning")
    parser.add_argument("--finetune-lr", type=float, default=1e-3, help="peak learning rate of centroid fine-tuning")
    parser.add_argument("--centroid-grad", choices=["mean", "sum"], default="mean",
                        help="a centroid's gradient: its cluster's mean weight gradient (default) or the sum (Han et "
                             "al.'s eq. 3; the step then grows with the cluster's size)")  # fmt: skip
    parser.add_argument("--gap-bits", type=int, default=None, help="bits per position gap (default: best per layer)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-limit", type=int, default=0, help="use only the first N training images (0 = all)")
    parser.add_argument("--test-limit", type=int, default=0, help="evaluate on the first N test images (0 = all)")
    parser.add_argument("--out", required=True, help="output folder (compressed_weights.dcw, model.h5, report.*)")


def run_cli(args, argv: list[str] | None = None) -> int:
    """Run ``python -m training compress`` from parsed arguments; returns the exit code.

    Errors are the caller's (``training.__main__`` runs this through :func:`board.cli.run`).
    """
    import shlex
    import sys

    from training.compression.pipeline import CompressConfig, compress

    command = "python -m training " + shlex.join(argv if argv is not None else sys.argv[1:])
    cfg = CompressConfig(
        prune=args.prune, prune_overrides=_overrides(args.prune_layer),
        prune_layers=tuple(s.strip() for s in args.layers.split(",") if s.strip()) if args.layers else None,
        retrain_epochs=args.retrain_epochs, retrain_lr=args.retrain_lr, share_bits=args.share_bits,
        kmeans_init=args.kmeans_init, finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
        centroid_grad=args.centroid_grad,
        gap_bits=args.gap_bits, batch_size=args.batch_size, seed=args.seed, train_limit=args.train_limit,
        test_limit=args.test_limit,
    )  # fmt: skip
    report = compress(args.model_dir, args.out, cfg, command=command)
    t = report["totals"]
    print(json.dumps({"model_id": report["meta"]["model_id"], "top1": report["accuracy"],
                      "rate_huffman": t["rate_huffman"], "rate_huffman_vs_b": t["rate_huffman_vs_b"],
                      "container_bytes": t.get("container_bytes"), "out": str(args.out)}, indent=2))  # fmt: skip
    return 0
