#!/usr/bin/env bash
# The PyTorch route at full scale: train + export (torch, Brevitas), then each export through
# `hls_build import` -> `bundle` -> `board bench` on the 10,000 test images. From the repository root:
#   bash results/byo/torch_resnet8/run.sh            (needs `make env env-torch`; CIFAR10_DIR set or found)
set -euo pipefail
export PYTHONPATH=$PWD
R=results/byo/torch_resnet8
FLOAT_EPOCHS=${FLOAT_EPOCHS:-4}
QAT_EPOCHS=${QAT_EPOCHS:-2}
# 1. train briefly and export (.venv-torch): resnet8_float.onnx, resnet8_brevitas.onnx, metrics.json, logits.npz
nice -n 10 .venv-torch/bin/python byo/pytorch/resnet8.py --out $R --float-epochs $FLOAT_EPOCHS \
    --qat-epochs $QAT_EPOCHS 2>&1 | grep -v "torchvision is not installed" > $R/train.log

route() {  # import -> bundle -> bench of one export
    local kind=$1 args=$2
    mkdir -p $R/$kind
    # the float export is quantized after training (pixel / 255 folded into the stem); the Brevitas QONNX keeps its
    # quantizers (pixel / 256, the QKeras route)
    nice -n 10 .venv-host/bin/python -m hls_build import --model $R/resnet8_$kind.onnx \
        --out build/models/torch_resnet8_$kind $args 2>&1 | grep -v "^WARNING\|^E0000\|^I0000\|oneDNN\|TF-TRT\|cuda" \
        > $R/$kind/import.log
    cp build/models/torch_resnet8_$kind/ptq_report.json $R/$kind/
    # gate: C-simulation = fast engine on 100 images, firmware = Keras on 1,000
    nice -n 10 .venv-host/bin/python -m hls_build bundle --model-dir build/models/torch_resnet8_$kind --board pynq-z2 \
        > build/models/torch_resnet8_$kind.bundle.log 2>&1
    # all 10,000 test images through the pynq DMA driver into the emulated overlay (board environment)
    nice -n 10 .venv-board/bin/python -m board bench --bundle overlays/pynq-z2/torch_resnet8_$kind -n 10000 \
        --batch-size 100 --out $R/$kind > build/models/torch_resnet8_$kind.bench.log 2>&1
}
# 2.-4. both routes at once (two cores)
route float "--input-scale 255 --calibration best" &
pid=$!
route brevitas ""
wait $pid
.venv-host/bin/python $R/summarize.py $R overlays/pynq-z2
