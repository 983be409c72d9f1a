# One Makefile for the whole pipeline. `make demo` runs it end to end on the emulated overlay; `make test` runs the
# tests. Both create the two pinned environments first (quick when they are already up to date).
SHELL := /bin/bash
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

comma := ,
PYTHON ?= python3
# The board side mirrors a PYNQ image (Python 3.10, numpy 1.x): use a 3.10 interpreter when the machine has one.
BOARD_PYTHON ?= $(firstword $(foreach p,python3.10 $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) $(PYTHON),$(shell $(p) -c 'print("$(p)")' 2>/dev/null)))
HOST_VENV := .venv-host
BOARD_VENV := .venv-board
HOST_PY := $(CURDIR)/$(HOST_VENV)/bin/python
BOARD_PY := $(CURDIR)/$(BOARD_VENV)/bin/python
export PYTHONPATH := $(CURDIR)
export PYTHONUNBUFFERED := 1
# The real CIFAR-10 next to the checkout (shared/datasets) when there; otherwise the loader tries Keras's cache.
SHARED_CIFAR := $(abspath $(CURDIR)/../shared/datasets/cifar-10-batches-py)
ifneq ($(wildcard $(SHARED_CIFAR)/test_batch),)
export CIFAR10_DIR ?= $(SHARED_CIFAR)
endif

# Demo knobs: `make demo MODEL=resnet20 QUANT=8,3 EPOCHS=30 N=2000`.
MODEL ?= resnet8
QUANT ?= 8,3
EPOCHS ?= 12
# BatchNormalization folded into the quantized convolutions during training: the model trained is the model deployed
# (results/resnet8_short_recipes: 80.36 % deployed vs 78.65 % folded after training, same 12 epochs). Empty: unfolded.
TRAIN_ARGS ?= --fold-bn
BOARD ?= pynq-z2
N ?= 10000
BATCH ?= 100
MODEL_ID := $(MODEL)_q$(subst $(comma),_,$(QUANT))
MODEL_DIR := build/models/$(MODEL_ID)
BUNDLE := overlays/$(BOARD)/$(MODEL_ID)
REPORT_DIR := build/reports/$(BOARD)/$(MODEL_ID)

# A zoo design (zoo/designs.json, hls_build/zoo.py): `make bundle DESIGN=pynq-z2/resnet8_q8_3` (plan, bundle, bench)
# builds from the committed trained model, never trains; DESIGN overrides MODEL_DIR, BOARD, the plan's options and
# the output folders (overlays/zoo/, build/plans/zoo/, build/reports/zoo/). An unknown DESIGN stops make (exit 2).
DESIGN ?=
ifneq ($(DESIGN),)
ZOO := $(shell $(HOST_PY) -m hls_build.zoo make-vars '$(DESIGN)')
ifneq ($(.SHELLSTATUS),0)
$(error DESIGN=$(DESIGN): not a usable zoo design (see the error above; `make env` first if $(HOST_VENV) is missing))
endif
override MODEL_DIR := $(word 1,$(ZOO))
override BOARD := $(word 2,$(ZOO))
override MODEL_ID := $(word 3,$(ZOO))
ZOO_PLAN := $(word 4,$(ZOO))
override BUNDLE := $(word 5,$(ZOO))
override REPORT_DIR := $(word 6,$(ZOO))
PLAN_ARGS := $(wordlist 7,$(words $(ZOO)),$(ZOO))
BUNDLE_ARGS := --overlays overlays/zoo --work-dir build/hls/zoo/$(BOARD) --model-id $(MODEL_ID)
endif

.PHONY: help env env-torch test-torch demo train plan bundle bench zoo-results bitstream byo experiment compress bench-training bench-sweep test test-slow test-vivado lint format clean clean-demo

help:
	@echo "make demo        train $(MODEL) <$(QUANT)>, build its emulated $(BOARD) overlay, benchmark it (N=$(N) images)"
	@echo "make test        run the tests (host and board environments)"
	@echo "make test-slow   the tests marked slow (longer training, C-simulation and Ray runs)"
	@echo "make env-torch   optional .venv-torch (PyTorch CPU, Brevitas, qonnx) for byo/pytorch; make test-torch its tests"
	@echo "make bundle      DESIGN=pynq-z2/resnet8_q8_3: plan + bundle a zoo design (zoo/designs.json), no training"
	@echo "make bench       DESIGN=...: the same, then benchmark it (N=$(N) images)"
	@echo "make zoo-results every zoo design bundled and benchmarked; results/designs/zoo.md + Pareto per board"
	@echo "make bitstream   HLS + Vivado for $(BUNDLE): adds .bit/.hwh + measured resources (needs Xilinx tools)"
	@echo "make byo         KERAS_MODEL=my_cnn.h5|.keras|.onnx [INPUT_SCALE=255]: import your model, build its overlay"
	@echo "make experiment  GRID=training/grids/<grid>.yaml OUT=results/<name>: trials over a grid, tables + plots"
	@echo "                 SCHEDULER=auto|ray|inline WORKERS=2 ADDRESS=host:6379 RETRIES=1 (Ray: local or a cluster)"
	@echo "make compress    Deep Compression of COMPRESS_MODEL_DIR into COMPRESS_OUT (COMPRESS_ARGS=...)"
	@echo "make bench-training  training images/s of the ResNets on this machine"
	@echo "make bench-sweep     the same small grid with 1 and 2 Ray workers: wall time and ratio"
	@echo "make lint        ruff check + format check"
	@echo "make clean-demo  forget the demo's model, bundle and report (the next demo starts from scratch)"

env: $(HOST_VENV)/.done $(BOARD_VENV)/.done

# Optional third environment: PyTorch (CPU), Brevitas, qonnx, to train and export PyTorch models for
# `hls_build import` (byo/pytorch/). Not needed by `make test` or CI; the tests that use it run with `make test-torch`.
TORCH_VENV := .venv-torch
TORCH_PY := $(CURDIR)/$(TORCH_VENV)/bin/python
TORCH_PYTHON ?= python3.11
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
env-torch: $(TORCH_VENV)/.done
$(TORCH_VENV)/.done: requirements/torch.txt
	@test -x $(TORCH_PY) || $(TORCH_PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_PY) -m pip install -q --disable-pip-version-check $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -r requirements/torch.txt
	@touch $@

# A stamp per environment, remade only when its pinned requirements change.
$(HOST_VENV)/.done: requirements/host.txt
	@test -x $(HOST_PY) || $(PYTHON) -m venv $(HOST_VENV)
	$(HOST_PY) -m pip install -q --disable-pip-version-check -r requirements/host.txt
	@touch $@

$(BOARD_VENV)/.done: requirements/board.txt
	@test -n "$(BOARD_PYTHON)" || { echo "error: no Python interpreter found for the board environment"; exit 2; }
	@test -x $(BOARD_PY) || $(BOARD_PYTHON) -m venv $(BOARD_VENV)
	$(BOARD_PY) -m pip install -q --disable-pip-version-check -r requirements/board.txt
	@touch $@

# --- the pipeline: training -> hls_build -> overlays -> board -----------------------------------------------------
$(MODEL_DIR)/model.h5: | $(HOST_VENV)/.done
	$(if $(DESIGN),@echo "error: DESIGN=$(DESIGN) builds from its committed $@ and never trains" >&2; exit 2)
	$(HOST_PY) -m training train --model $(MODEL) --quant '<$(QUANT)>' --epochs $(EPOCHS) $(TRAIN_ARGS) --out $(MODEL_DIR)

# The fit planner picks per-layer ReuseFactor/Strategy/FIFO depths so the design fits the board by the
# (pre-synthesis) estimate; the bundle is built with that plan.
PLAN := $(or $(ZOO_PLAN),build/plans/$(BOARD)/$(MODEL_ID).json)
$(PLAN): $(MODEL_DIR)/model.h5 | $(HOST_VENV)/.done
	@mkdir -p $(dir $@)
	$(HOST_PY) -m hls_build plan --model-dir $(MODEL_DIR) --board $(BOARD) --json $@ $(PLAN_ARGS)

$(BUNDLE)/manifest.json: $(MODEL_DIR)/model.h5 $(PLAN) | $(HOST_VENV)/.done
	$(HOST_PY) -m hls_build bundle --model-dir $(MODEL_DIR) --board $(BOARD) --plan $(PLAN) $(BUNDLE_ARGS)

train: $(MODEL_DIR)/model.h5
plan: $(PLAN)
bundle: $(BUNDLE)/manifest.json

bench: $(BUNDLE)/manifest.json | $(BOARD_VENV)/.done
	$(BOARD_PY) -m board bench --bundle $(BUNDLE) -n $(N) --batch-size $(BATCH) --out $(REPORT_DIR)

# Vitis HLS + Vivado on the bundle (source the tools' settings64.sh first); without them: exit 2, bundle untouched.
bitstream: $(BUNDLE)/manifest.json | $(HOST_VENV)/.done
	$(HOST_PY) -m hls_build bitstream --bundle $(BUNDLE) --work-dir build/vivado

# Bring your own float Keras model (hls_build/ptq.py): post-training quantization, then the same bundle build and gate.
KERAS_MODEL ?=
INPUT_SCALE ?= 255
BYO_ARGS ?=
BYO_DIR := build/models/$(basename $(notdir $(KERAS_MODEL)))_ptq
BYO_PLAN := build/plans/byo/$(BOARD)/$(notdir $(BYO_DIR)).json
# Planned like the demo (ReuseFactor, DSP/LUT binding within the calibrated caps): without a plan the bundle's
# default settings need not fit the board. A model that fits at no setting still gets its emulated bundle, at the
# plan's slowest settings, with "does not fit" in the plan, the log and the manifest's estimate; any other plan
# error (exit 2 without a plan written) stops here.
byo: | $(HOST_VENV)/.done
	@test -n "$(KERAS_MODEL)" || { echo "usage: make byo KERAS_MODEL=path/to/model.h5|.keras|.onnx [INPUT_SCALE=255 (1: raw pixels)] [BYO_ARGS=...] [BOARD=...]"; exit 2; }
	$(HOST_PY) -m hls_build import --model $(KERAS_MODEL) --out $(BYO_DIR) --input-scale $(INPUT_SCALE) $(BYO_ARGS)
	@mkdir -p $(dir $(BYO_PLAN)) && rm -f $(BYO_PLAN)
	$(HOST_PY) -m hls_build plan --model-dir $(BYO_DIR) --board $(BOARD) --json $(BYO_PLAN) || { rc=$$?; \
	  test $$rc -eq 2 -a -f $(BYO_PLAN) || exit $$rc; \
	  echo "warning: by the ESTIMATE, $(BYO_DIR) fits $(BOARD) at no setting within the calibrated caps; bundling the plan's slowest settings for the emulated overlay only" >&2; }
	$(HOST_PY) -m hls_build bundle --model-dir $(BYO_DIR) --board $(BOARD) --plan $(BYO_PLAN)

# Experiments: N trials over a grid of configs (resumable: run the same command again after a crash).
GRID ?= training/grids/resnet20_short.yaml
OUT ?= results/$(basename $(notdir $(GRID)))
# Each (config, trial) is a Ray task: a private local Ray by default, a cluster with ADDRESS=host:port (or
# $RAY_ADDRESS), or inline with SCHEDULER=inline.
SCHEDULER ?= auto
WORKERS ?=
ADDRESS ?=
RETRIES ?=
experiment: | $(HOST_VENV)/.done
	$(HOST_PY) -m training experiment --grid $(GRID) --out $(OUT) --scheduler $(SCHEDULER) $(if $(WORKERS),--workers $(WORKERS)) $(if $(ADDRESS),--address $(ADDRESS)) $(if $(RETRIES),--retries $(RETRIES))

bench-sweep: | $(HOST_VENV)/.done
	$(HOST_PY) benchmarks/sweep_scaling.py

# Deep Compression (training/compression/README.md): prune + retrain, share weights + fine-tune, Huffman-code.
COMPRESS_MODEL_DIR ?= $(MODEL_DIR)
COMPRESS_OUT ?= results/compression/$(MODEL_ID)
COMPRESS_ARGS ?= --prune percentile:70 --share-bits 5 --retrain-epochs 1 --finetune-epochs 1
compress: | $(HOST_VENV)/.done
	$(HOST_PY) -m training compress --model-dir $(COMPRESS_MODEL_DIR) $(COMPRESS_ARGS) --out $(COMPRESS_OUT)
	$(HOST_PY) -m hls_build compression-report --compressed $(COMPRESS_OUT)

bench-training: | $(HOST_VENV)/.done
	$(HOST_PY) benchmarks/training_throughput.py

# Every zoo design planned, bundled and benchmarked (10,000 images), then results/designs/<board>/zoo/*.json, the
# Pareto tables and plots and results/designs/zoo.md (which design to flash) written from them.
zoo-results: env
	@for d in $$($(HOST_PY) -m hls_build.zoo list --names); do $(MAKE) --no-print-directory bench DESIGN=$$d || exit $$?; done
	$(HOST_PY) -m hls_build.zoo results

demo: env bench
	@echo "demo done: report in $(REPORT_DIR)/report.md, bundle in $(BUNDLE)"

# --- tests ----------------------------------------------------------------------------------------------------------
# The host tests leave a small real bundle in build/test-overlays; the board tests drive it through pynq's DMA.
TEST_OVERLAYS := $(CURDIR)/build/test-overlays
test: env
	$(HOST_PY) -m pytest host_tests --ignore=host_tests/board -m "not slow and not vivado and not torch" --test-overlays $(TEST_OVERLAYS)
	REQUIRE_TEST_BUNDLE=1 $(BOARD_PY) -m pytest host_tests/board -m "not slow and not vivado" --test-overlays $(TEST_OVERLAYS)

# Needs `make env-torch`: re-exports PyTorch/Brevitas models with the real exporters and imports them.
test-torch: env env-torch
	$(HOST_PY) -m pytest host_tests/hls_build -m "torch" --test-overlays $(TEST_OVERLAYS)

test-slow: env
	$(HOST_PY) -m pytest host_tests --ignore=host_tests/board -m "slow and not vivado" --test-overlays $(TEST_OVERLAYS)
	$(BOARD_PY) -m pytest host_tests/board -m "slow and not vivado" --test-overlays $(TEST_OVERLAYS)

# The real Vivado flow on a tiny model (only where vivado is on PATH).
test-vivado: env
	$(HOST_PY) -m pytest host_tests/hls_build -m vivado --test-overlays $(TEST_OVERLAYS)

lint: $(HOST_VENV)/.done
	$(HOST_VENV)/bin/ruff check .
	$(HOST_VENV)/bin/ruff format --check .

format: $(HOST_VENV)/.done
	$(HOST_VENV)/bin/ruff format .
	$(HOST_VENV)/bin/ruff check --fix .

clean-demo:
	rm -rf $(MODEL_DIR) $(PLAN) $(BUNDLE) $(REPORT_DIR)

clean:
	rm -rf build
