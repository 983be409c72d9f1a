"""A CIFAR-10 ResNet-8 written in plain PyTorch and in Brevitas, trained briefly and exported the way users export.

Runs in the optional PyTorch environment (``make env-torch``: ``.venv-torch`` with torch, Brevitas, qonnx; pinned in
``requirements/torch.txt``), not in ``.venv-host``. It writes what ``python -m hls_build import --model <file>.onnx``
takes:

* ``resnet8_float.onnx``: a float ResNet-8 (MLPerf Tiny layout: stem conv 16, three stacks of 16/32/64 filters with
  BatchNormalization, a 1x1 strided shortcut convolution where the shape changes, global average pooling, a linear
  classifier) exported by ``torch.onnx.export`` with its defaults (the ``torch.export``-based exporter in
  torch >= 2.9). Input: ``pixel / 255`` (``transforms.ToTensor()``), NCHW. Import with ``--input-scale 255``.
* ``resnet8_brevitas.onnx``: the same network quantization-aware trained with Brevitas (``QuantConv2d``,
  ``QuantReLU``, ``QuantLinear``): 8-bit weights, 8-bit unsigned ReLU outputs, 16-bit biases, every scale a power of
  two (Brevitas's ``*FixedPoint`` quantizers), BatchNormalization folded into the convolutions before the
  quantization-aware training (it starts from the trained float network). Exported by
  ``brevitas.export.export_qonnx`` and cleaned by ``qonnx.util.cleanup``. Input: ``pixel / 256``. Import with
  ``--input-scale 256``: its quantizers become QKeras quantizers as trained (``hls_build/onnx_import.py``).

Why power-of-two scales: the overlay computes in fixed point (``ap_fixed``); a float scale (Brevitas's default
``Int8WeightPerTensorFloat``) has no exact fixed-point form, and the import refuses it naming the node.

Recipe (CPU, bounded): SGD momentum 0.9, nesterov, weight decay 5e-4 on kernels, one-cycle learning rate, batch
128, pad-4 random crop and horizontal flip; ``--float-epochs`` epochs for the float model, then ``--qat-epochs`` for
the Brevitas one. Top-1 on the 10,000 test images of both, and of the exported files (onnxruntime for the float ONNX,
qonnx's executor on ``--check-images`` images for the QONNX), go to ``metrics.json``; the logits of both models on the
first ``--reference-images`` test images to ``logits.npz`` (the import's tests compare against them without torch).

Run (from the repository root, ``CIFAR10_DIR`` set)::

    PYTHONPATH=. nice -n 10 .venv-torch/bin/python byo/pytorch/resnet8.py --out results/byo/torch_resnet8

``--float-epochs 0 --qat-epochs 0`` exports untrained models (seeded), as the tests do.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as _exc:  # run with a Python that lacks torch: one line, not a traceback
    if __name__ == "__main__":
        print(f"error: {_exc}; this script runs in .venv-torch (make env-torch creates it)", file=sys.stderr)
        sys.exit(2)
    raise

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # board.cifar10 (numpy only) reads and checks the CIFAR-10 batches
    sys.path.insert(0, str(ROOT))

FLOAT_FILE = "resnet8_float.onnx"
BREVITAS_FILE = "resnet8_brevitas.onnx"
TS_FILE = "resnet8_float_torchscript.onnx"
STAGES = ((16, 1), (32, 2), (64, 2))


# ---------------------------------------------------------------------------------------------------- float model
class Block(nn.Module):
    """He et al.'s basic block with an option-B (1x1 convolution) shortcut where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet8(nn.Module):
    """MLPerf Tiny's CIFAR-10 ResNet-8 in plain PyTorch (NCHW, ``pixel / 255`` in, logits out)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin, blocks = 16, []
        for cout, stride in STAGES:
            blocks.append(Block(cin, cout, stride))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


# ------------------------------------------------------------------------------------------------- Brevitas model
def _quantizers() -> dict[str, Any]:
    """Power-of-two (fixed-point) quantizers: 8-bit weights, 8-bit unsigned activations, 16-bit biases."""
    from brevitas.quant.fixed_point import (
        Int8BiasPerTensorFixedPointInternalScaling,
        Int8WeightPerTensorFixedPoint,
        Uint8ActPerTensorFixedPoint,
    )

    class Int16BiasFixedPoint(Int8BiasPerTensorFixedPointInternalScaling):
        bit_width = 16

    return {"weight": Int8WeightPerTensorFixedPoint, "bias": Int16BiasFixedPoint, "act": Uint8ActPerTensorFixedPoint}


def _qconv(cin: int, cout: int, k: int, stride: int, pad: int) -> nn.Module:
    import brevitas.nn as qnn

    q = _quantizers()
    return qnn.QuantConv2d(cin, cout, k, stride, pad, bias=True, weight_quant=q["weight"], bias_quant=q["bias"])


def _qrelu() -> nn.Module:
    import brevitas.nn as qnn

    return qnn.QuantReLU(act_quant=_quantizers()["act"])


class QuantBlock(nn.Module):
    """:class:`Block` with BatchNormalization folded into biased quantized convolutions and quantized ReLUs."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.relu1 = _qconv(cin, cout, 3, stride, 1), _qrelu()
        self.conv2, self.relu2 = _qconv(cout, cout, 3, 1, 1), _qrelu()
        self.shortcut = _qconv(cin, cout, 1, stride, 0) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu2(self.conv2(self.relu1(self.conv1(x))) + self.shortcut(x))


class QuantResNet8(nn.Module):
    """The ResNet-8 in Brevitas (``pixel / 256`` in, logits out); every tensor the overlay holds is quantized."""

    def __init__(self) -> None:
        import brevitas.nn as qnn

        super().__init__()
        q = _quantizers()
        self.conv1, self.relu1 = _qconv(3, 16, 3, 1, 1), _qrelu()
        cin, blocks = 16, []
        for cout, stride in STAGES:
            blocks.append(QuantBlock(cin, cout, stride))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)  # 8x8 = 64 values: an exact shift in fixed point
        self.fc = qnn.QuantLinear(64, 10, bias=True, weight_quant=q["weight"], bias_quant=q["bias"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.relu1(self.conv1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return conv.weight * g[:, None, None, None], bn.bias - bn.running_mean * g


@torch.no_grad()
def quant_from_float(fm: ResNet8, input_scale_ratio: float = 255.0 / 256.0) -> QuantResNet8:
    """A :class:`QuantResNet8` holding ``fm``'s weights with BatchNormalization folded in.

    ``fm`` reads ``pixel / 255``, the quantized model ``pixel / 256``: the stem's kernel is scaled by ``256 / 255``
    so the starting point computes the same function.
    """
    qm = QuantResNet8()
    w, b = _fold(fm.conv1, fm.bn1)
    qm.conv1.weight.copy_(w / input_scale_ratio)
    qm.conv1.bias.copy_(b)
    for fb, qb in zip(fm.blocks, qm.blocks):
        for c, bn, qc in ((fb.conv1, fb.bn1, qb.conv1), (fb.conv2, fb.bn2, qb.conv2)):
            w, b = _fold(c, bn)
            qc.weight.copy_(w)
            qc.bias.copy_(b)
        if isinstance(fb.shortcut, nn.Sequential):
            w, b = _fold(fb.shortcut[0], fb.shortcut[1])
            qb.shortcut.weight.copy_(w)
            qb.shortcut.bias.copy_(b)
    qm.fc.weight.copy_(fm.fc.weight)
    qm.fc.bias.copy_(fm.fc.bias)
    return qm


# --------------------------------------------------------------------------------------------------------- training
def to_tensor(pixels: np.ndarray, scale: float) -> torch.Tensor:
    """uint8 NHWC pixels -> float32 NCHW ``pixel / scale``."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))).float() / scale


def _augment(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pad 4, random 32x32 crop, horizontal flip with p = 0.5 (He et al.)."""
    n = len(pixels)
    padded = np.pad(pixels, ((0, 0), (4, 4), (4, 4), (0, 0)))
    dy, dx = rng.integers(0, 9, n), rng.integers(0, 9, n)
    out = np.empty_like(pixels)
    for i in range(n):
        out[i] = padded[i, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
    flip = rng.random(n) < 0.5
    out[flip] = out[flip, :, ::-1]
    return out


def train(model: nn.Module, train_split: Any, epochs: int, scale: float, lr: float, seed: int, log: Any) -> None:
    """SGD with a one-cycle learning rate over ``epochs`` on the augmented training images."""
    if epochs <= 0:
        return
    rng = np.random.default_rng(seed)
    batch = 128
    steps = len(train_split.images) // batch
    # Weight decay on kernels only: not on biases, BatchNormalization, or Brevitas's learned scales (decaying a
    # power-of-two scale's log2 parameter would pull every scale towards 1).
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0.0}]
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps, pct_start=0.25)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(train_split.images))
        t0, total = time.monotonic(), 0.0
        for s in range(steps):
            idx = order[s * batch : (s + 1) * batch]
            x = to_tensor(_augment(train_split.images[idx], rng), scale)
            y = torch.from_numpy(train_split.labels[idx].astype(np.int64))
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss)
        log(f"epoch {epoch + 1}/{epochs}: loss {total / steps:.4f}, {time.monotonic() - t0:.0f} s")


@torch.no_grad()
def predict(model: nn.Module, pixels: np.ndarray, scale: float) -> np.ndarray:
    """Logits of ``model`` in evaluation mode, in batches of 500."""
    model.eval()
    return np.concatenate([model(to_tensor(pixels[i : i + 500], scale)).numpy() for i in range(0, len(pixels), 500)])


# ---------------------------------------------------------------------------------------------------------- export
def export_float(model: ResNet8, path: Path, dynamo: bool = True) -> None:
    """``torch.onnx.export`` with its defaults (the dynamo exporter unless ``dynamo=False``), batch dimension free."""
    model.eval()
    x = torch.zeros(1, 3, 32, 32)
    kwargs: dict[str, Any] = {"input_names": ["input"], "output_names": ["logits"]}
    if dynamo:
        kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch")}}
    else:
        kwargs["dynamic_axes"] = {"input": {0: "batch"}, "logits": {0: "batch"}}
    torch.onnx.export(model, (x,), str(path), dynamo=dynamo, **kwargs)
    _strip_metadata(path)


def export_brevitas(model: QuantResNet8, path: Path) -> None:
    """``brevitas.export.export_qonnx`` (its default exporter), then ``qonnx.util.cleanup`` (shapes, constants)."""
    from brevitas.export import export_qonnx
    from qonnx.util.cleanup import cleanup

    model.eval()
    export_qonnx(model, torch.zeros(1, 3, 32, 32), export_path=str(path))
    cleanup(str(path), out_file=str(path))
    _strip_metadata(path)


def _strip_metadata(path: Path) -> None:
    """Drop the exporter's free-text docs (paths of this machine); write the weights inline, in one file."""
    import onnx

    m = onnx.load(str(path))
    for node in m.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    m.graph.doc_string = ""
    del m.metadata_props[:]
    onnx.save(m, str(path))  # the weights inline: one self-contained file
    path.with_name(path.name + ".data").unlink(missing_ok=True)  # the dynamo exporter's external-data file


def onnx_logits(path: Path, pixels: np.ndarray, scale: float) -> np.ndarray:
    """Logits of an exported file: onnxruntime for plain ONNX, qonnx's executor for a QONNX graph."""
    import onnx

    model = onnx.load(str(path))
    x = to_tensor(pixels, scale).numpy()
    if any(n.domain.startswith("qonnx") for n in model.graph.node):
        import qonnx.core.onnx_exec as qexec
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.util.basic import qonnx_make_model

        # qonnx 1.0.0 runs each node as a model made with onnx's newest IR version (14 with onnx 1.23), which
        # onnxruntime 1.31 refuses (it reads up to 13); the nodes need nothing newer than IR 10.
        qexec.qonnx_make_model = lambda graph, **kw: qonnx_make_model(graph, ir_version=10, **kw)
        execute_onnx = qexec.execute_onnx
        w = ModelWrapper(model)
        iname, oname = model.graph.input[0].name, model.graph.output[0].name
        return np.concatenate([execute_onnx(w, {iname: x[i : i + 1]})[oname] for i in range(len(x))])
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


# ------------------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    """Train (optionally), export both models, write ``metrics.json``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--float-epochs", type=int, default=4)
    p.add_argument("--qat-epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--qat-lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--test-images", type=int, default=10_000)
    p.add_argument("--check-images", type=int, default=50, help="images the QONNX executor checks (slow)")
    p.add_argument("--reference-images", type=int, default=100, help="test images whose logits go to logits.npz")
    p.add_argument(
        "--also-torchscript",
        action="store_true",
        help=f"also export the float model with the TorchScript exporter (dynamo=False): {TS_FILE}",
    )
    p.add_argument("--cifar10-dir", default=None)
    args = p.parse_args(argv)
    from board.cli import run

    return run(lambda: _export(args))


def _export(args: argparse.Namespace) -> int:
    """The work of ``main``: bad counts are refused before anything is trained (one error line, exit 2)."""
    from board.errors import InputError

    for name in ("float_epochs", "qat_epochs", "reference_images"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 0")
    for name in ("threads", "test_images", "check_images"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1")

    import brevitas

    from board.cifar10 import load_split

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - start:6.0f} s] {msg}", flush=True)

    train_split = load_split("train", args.cifar10_dir)
    test = load_split("test", args.cifar10_dir).head(args.test_images)
    fm = ResNet8()
    log(f"float ResNet-8: {sum(p.numel() for p in fm.parameters())} parameters; training {args.float_epochs} epochs")
    train(fm, train_split, args.float_epochs, 255.0, args.lr, args.seed, log)
    y_float = predict(fm, test.images, 255.0)
    qm = quant_from_float(fm)
    top1_folded_start = float(np.mean(predict(qm, test.images, 256.0).argmax(1) == test.labels))
    log(f"float top-1 {np.mean(y_float.argmax(1) == test.labels):.4f}; Brevitas start {top1_folded_start:.4f}")
    train(qm, train_split, args.qat_epochs, 256.0, args.qat_lr, args.seed + 1, log)
    y_quant = predict(qm, test.images, 256.0)

    export_float(fm, args.out / FLOAT_FILE)
    export_brevitas(qm, args.out / BREVITAS_FILE)
    if args.also_torchscript:
        export_float(fm, args.out / TS_FILE, dynamo=False)
    y_onnx = onnx_logits(args.out / FLOAT_FILE, test.images, 255.0)
    n_check = min(args.check_images, len(test))
    y_qonnx = onnx_logits(args.out / BREVITAS_FILE, test.images[:n_check], 256.0)
    metrics = {
        "torch": torch.__version__,
        "brevitas": brevitas.__version__,
        "float_epochs": args.float_epochs,
        "qat_epochs": args.qat_epochs,
        "seed": args.seed,
        "test_images": len(test),
        "top1_torch_float": float(np.mean(y_float.argmax(1) == test.labels)),
        "top1_onnx_float": float(np.mean(y_onnx.argmax(1) == test.labels)),
        "max_abs_diff_onnx_vs_torch": float(np.abs(y_onnx - y_float).max()),
        "top1_brevitas_before_qat": top1_folded_start,
        "top1_torch_brevitas": float(np.mean(y_quant.argmax(1) == test.labels)),
        "qonnx_check_images": n_check,
        "max_abs_diff_qonnx_vs_brevitas": float(np.abs(y_qonnx - y_quant[:n_check]).max()),
        "argmax_agreement_qonnx_vs_brevitas": float(np.mean(y_qonnx.argmax(1) == y_quant[:n_check].argmax(1))),
        "wall_s": round(time.monotonic() - start, 1),
        "cpu_s": round(time.process_time(), 1),  # this process, all threads, training + checks
    }
    n_ref = min(args.reference_images, len(test))
    # The first test images' logits, for the tests that import the exports without torch (tiny: 2 x n x 10 floats).
    np.savez(args.out / "logits.npz", float=y_float[:n_ref], brevitas=y_quant[:n_ref], labels=test.labels[:n_ref])
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
