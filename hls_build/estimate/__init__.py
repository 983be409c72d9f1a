"""Pre-synthesis resource and throughput ESTIMATES of an hls4ml ``io_stream`` design (no Vivado needed).

Everything here is an estimate made before synthesis and is labelled so wherever it is printed or stored. The
method, the published designs it is calibrated on and the error are in ``hls_build/README.md`` ("Estimates") and
``hls_build/calibration_fit.json`` (``python -m hls_build calibrate --write``), the one calibration every estimate
uses.

What is estimated, per layer and in total: BRAM_18K, DSP, FF, LUT, URAM (the manifest's resource names,
:data:`hls_build.boards.RESOURCE_NAMES`; the table prints DSP as ``DSP48E`` like an HLS report), the cycles one
image spends in each dataflow process, the pipeline's initiation interval (the slowest process), an approximate
latency, and images/s at the clock.

Input: the C++ hls4ml 1.3 writes (``firmware/<project>.cpp``, ``parameters.h``, ``defines.h``, ``weights/*.txt``,
``<project>_axi.cpp``), read by :func:`graph_from_project`. The same reader serves a freshly converted model
(:func:`graph_from_hls_model` writes it first) and an existing overlay bundle (:func:`graph_from_bundle`, no
hls4ml needed): every figure is derived from the generated firmware -- geometry, resolved precisions, reuse
factors, strategies, matrix-multiply kernels and stream depths -- never set by hand per model.

The model follows the hls4ml 1.3 templates (``nnet_utils``):

* **Conv2D / PointwiseConv2D** (``nnet_conv_stream.h``, line buffer): the input stream is shifted through
  ``filt_height-1`` rows of ``ap_shift_reg`` (SRL shift registers in LUTs) into a register window; when a window
  is complete the matrix-multiply kernel runs. ``Resource`` strategy: ``nnet_dense_resource.h`` -- the weights are
  reshaped into a ROM of depth ``RF`` and width ``ceil(n_in*n_out/RF)`` words (``#pragma HLS RESOURCE
  core=ROM_nP_BRAM``, so BRAM whenever RF > 1), ``ceil(n_in*n_out/RF)`` multiply-accumulate lanes, ``ReuseLoop``
  pipelined at II=1 for RF iterations per output pixel; the pixel loop is not pipelined. ``Latency`` strategy:
  weights are constants in the fabric, ``multiplier_limit`` multipliers, the pixel loop pipelined at II=RF.
* **Dense** (``nnet_dense_stream.h``): the same kernels after reading the whole input vector.
* **BatchNormalization** (unfolded, ``nnet_batchnorm_stream.h``): per pixel II = ``n_in / ceil(n_in/RF)``; HLS
  shares the ``n_chan`` multipliers over that II, so ``ceil(n_chan/II)`` multipliers (scale width x input width).
* **ReLU / linear activations, Add/Merge, Clone, ZeroPadding2D, GlobalPooling2D, Pooling2D**: II=1 per pixel
  pipelines; costs are the bit-level operators they contain (comparators, rounding adders, saturation muxes,
  accumulators).
* **FIFOs**: every ``hls::stream`` between layers (``#pragma HLS STREAM depth=``). Vitis HLS keeps a stream of
  ``nnet::array<T, N>`` as one FIFO of ``N*width(T)`` bits and binds it to SRLs when ``depth <= 2`` or
  ``depth*width <= 1024`` bits (``config_storage fifo`` defaults, UG1399), otherwise to BRAM. Vivado HLS splits the
  array into N FIFOs of ``width(T)`` bits (seen in published csynth reports) and uses SRLs up to depth 16.

Multipliers: a product goes to DSP48 slices by the binding rule fitted on published csynth DSP counts (operand
widths together at least ``dsp_min_sum_bits``), otherwise to LUT fabric (``lut_per_mult_bit * a * b`` LUTs; a
constant weight at RF 1: a few shifted adds); a DSP48E1 multiplies 25x18 bits, a DSP48E2 27x18, wider products
take several. BRAM_18K for a memory of depth D and width W is the cheapest tiling of the RAMB18 shapes 512x36,
1Kx18, 2Kx9, 4Kx4, 8Kx2, 16Kx1.

LUT and FF are bit-level operator costs in five categories (multiply-accumulate arithmetic, reuse-loop selects,
other datapath logic, control, storage), each times its factor fitted on published csynth reports
(``calibration_fit.json``): that is the csynth-level figure (``Estimate.csynth_totals``); times the published
post-synthesis/csynth ratio it is the predicted post-synthesis usage of the accelerator (``Estimate.totals``).
``Estimate.whole_design`` adds the published PYNQ-Z2 board wrapper (AXI DMA, interconnect, PS glue), and
``Estimate.fits()`` decides on that whole design widened by the post-synthesis error band.

The package, one module per job; each imports only modules listed before it (no import circle):

* :mod:`~hls_build.estimate.graph`: the design graph (:class:`DesignGraph`, :class:`Layer`, :class:`Stream`) and
  :class:`EstimateError`;
* :mod:`~hls_build.estimate.read`: reading it from hls4ml's C++ (:func:`graph_from_project`, ...);
* :mod:`~hls_build.estimate.cost`: the cost model of one process or FIFO and hls4ml's rules (public for the
  planner);
* :mod:`~hls_build.estimate.precision_check`: static value bounds (:func:`check_precision`);
* :mod:`~hls_build.estimate.design`: the whole design's :class:`Estimate` (:func:`estimate_design`);
* :mod:`~hls_build.estimate.table`: the HLS-report-style table (:func:`format_table`);
* :mod:`~hls_build.estimate.calibration`: rebuilding a published design from its description (the fit itself is
  :mod:`hls_build.calibration_fit`).
"""

from hls_build.estimate.calibration import build_calibration_graph
from hls_build.estimate.cost import (
    FIT_FILE,
    PART_KEYS,
    Coefficients,
    LayerCost,
    batchnorm_cost,
    batchnorm_ii,
    bram18_count,
    calibration_bands,
    calibration_summary,
    closest_reuse_factor,
    coefficients_from_fit,
    conv_cost,
    dense_cost,
    dsp_family,
    dsp_per_product,
    fifo_cost,
    finish_resources,
    layer_cost,
    load_coefficients,
    load_fit,
    valid_reuse_factors,
)
from hls_build.estimate.design import FITS_RULE, Estimate, estimate_design, throughput_band
from hls_build.estimate.graph import DesignGraph, EstimateError, Layer, Stream, parse_type
from hls_build.estimate.precision_check import PrecisionWarning, check_precision
from hls_build.estimate.read import convert_keras_model, graph_from_bundle, graph_from_hls_model, graph_from_project
from hls_build.estimate.table import TABLE_COLUMNS, format_table

__all__ = [
    "FITS_RULE",
    "FIT_FILE",
    "PART_KEYS",
    "TABLE_COLUMNS",
    "Coefficients",
    "DesignGraph",
    "Estimate",
    "EstimateError",
    "Layer",
    "LayerCost",
    "PrecisionWarning",
    "Stream",
    "batchnorm_cost",
    "batchnorm_ii",
    "bram18_count",
    "build_calibration_graph",
    "calibration_bands",
    "calibration_summary",
    "check_precision",
    "closest_reuse_factor",
    "coefficients_from_fit",
    "conv_cost",
    "convert_keras_model",
    "dense_cost",
    "dsp_family",
    "dsp_per_product",
    "estimate_design",
    "fifo_cost",
    "finish_resources",
    "format_table",
    "graph_from_bundle",
    "graph_from_hls_model",
    "graph_from_project",
    "layer_cost",
    "load_coefficients",
    "load_fit",
    "parse_type",
    "throughput_band",
    "valid_reuse_factors",
]
