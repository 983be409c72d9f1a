"""Top-1 lost to folding BatchNormalization after training, on the CIFAR-10 test set (Keras, no hls4ml build).

For each trained model folder: the top-1 of the model as trained, and of the model the firmware computes (hls_build's
``prepare_model``: BatchNormalization folded, kernels and biases in fixed point; the bundle's gate shows the firmware
equals it bit for bit), their difference and their argmax agreement. A model trained with ``--fold-bn`` should lose
nothing. Usage: ``python benchmarks/folding_loss.py MODEL_DIR [MODEL_DIR ...] [-n 10000] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import training.keras_compat  # noqa: F401  (first: tf-keras for QKeras)


def folding_loss(model_dir: Path, n: int) -> dict:
    """Top-1 (as trained, as deployed) and agreement of one model folder on the first ``n`` test images."""
    import numpy as np

    from board.cifar10 import load_split
    from hls_build.config import prepare_model
    from training.data import preprocess
    from training.train import load_trained_model

    test = load_split("test").head(n)
    x = preprocess(test.images)
    trained = load_trained_model(model_dir / "model.h5")
    deployed, folds = prepare_model(trained)
    y_trained = trained.predict(x, batch_size=500, verbose=0).argmax(1)
    y_deployed = deployed.predict(x, batch_size=500, verbose=0).argmax(1)
    top1_trained = float(np.mean(y_trained == test.labels))
    top1_deployed = float(np.mean(y_deployed == test.labels))
    return {
        "model_dir": str(model_dir),
        "images": len(test),
        "folds": len(folds),
        "folded_in_training": sum(f.in_training for f in folds),
        "top1_trained": top1_trained,
        "top1_deployed": top1_deployed,
        "folding_loss_points": 100 * (top1_trained - top1_deployed),
        "argmax_agreement": float(np.mean(y_trained == y_deployed)),
    }


def main(argv: list[str] | None = None) -> int:
    """Print one line per model folder (and write them as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dirs", nargs="+", type=Path)
    parser.add_argument("-n", type=int, default=10_000, help="test images (first n)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    rows = [folding_loss(d, args.n) for d in args.model_dirs]
    for r in rows:
        print(
            f"{r['model_dir']}: trained {r['top1_trained']:.2%}, deployed {r['top1_deployed']:.2%} "
            f"(folding loss {r['folding_loss_points']:+.2f} points, agreement {r['argmax_agreement']:.2%}, "
            f"{r['folds']} folds, {r['folded_in_training']} of them in training) on {r['images']} test images"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
