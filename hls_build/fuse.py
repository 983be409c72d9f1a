"""Fuse each ReLU into the layer that produces its input: the producer's result type does the ReLU's work.

hls4ml streams a convolution's (or an Add's) exact result to a separate ReLU process, which clamps and rounds it
to the quantizer's unsigned, saturating type (``ap_ufixed<8,3,AP_RND_CONV,AP_SAT>`` for ``quantized_relu(8,3)``).
Casting straight to that type gives the same values: saturation to an unsigned type maps every value <= 0 to 0,
and every positive value rounds as the ReLU would round it. So when a ReLU's type is unsigned and saturating and
its producer feeds nothing else, the producer's result type becomes the ReLU's and the ReLU process goes.

What it saves (see ``hls_build/README.md``, "Estimates"): one dataflow process per ReLU (its control and output
register), and the wide FIFO that carried the exact value: a stage-3 ResNet20 convolution streams 64 channels of
20 bits (1,280) to its ReLU, where the fused design streams 64 of 8 (512). The rounding and clipping logic moves
into the producer. The C-simulation still equals the Keras model bit for bit (the build's gate checks it); a fused
layer's output is the ReLU's, so the gate compares it with the Keras ReLU (:func:`keras_outputs`).

This is what hls4ml's own ``MergeLinearActivation`` pass does for linear quantizers; hls4ml has none for ReLU.

The rounding and clipping that moved into a convolution run on all its output channels at once in hls4ml's
kernel; :func:`serialize_result_casts` makes the fully serial kernel convert each one as it completes instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: hls4ml layer classes whose result is one cast of an exact value (the ReLU's cast can take its place).
PRODUCERS = ("Conv2D", "PointwiseConv2D", "Conv1D", "Dense", "Merge")
#: Attribute set on a producer that absorbed a ReLU: the ReLU's name (the Keras layer its output now equals).
FUSED_ATTR = "fused_activation"


def _fusable_type(precision: Any) -> bool:
    """An unsigned fixed-point type that saturates: casting to it clamps every value <= 0 to 0."""
    sat = getattr(precision, "saturation_mode", None)
    return (
        hasattr(precision, "integer")
        and not getattr(precision, "signed", True)
        and sat is not None
        and getattr(sat, "name", str(sat)).upper() in ("SAT", "SAT_ZERO", "SAT_SYM")
    )


def fuse_relus(hls_model: Any, keep: Iterable[str] = ()) -> dict[str, str]:
    """Fuse every ReLU whose producer feeds only it and whose type is unsigned and saturating (see module doc).

    Args:
        hls_model: a converted hls4ml ``ModelGraph`` (not yet written).
        keep: producers whose result type was set by hand (a ``Precision`` override): left as they are.

    Returns:
        Producer name -> name of the ReLU it absorbed (empty when nothing could be fused).
    """
    fused: dict[str, str] = {}
    for node in list(hls_model.get_layers()):
        if node.class_name != "Activation" or str(node.get_attr("activation", "")).lower() != "relu":
            continue
        producer = node.get_input_node(node.inputs[0])
        if producer is None or producer.class_name not in PRODUCERS or producer.name in keep:
            continue
        if producer.class_name == "Merge" and str(producer.get_attr("op", "")).lower() != "add":
            continue
        if len(producer.outputs) != 1 or node.outputs[0] in hls_model.outputs:
            continue
        consumers = [n for n in hls_model.get_layers() if producer.outputs[0] in n.inputs]
        if consumers != [node]:
            continue
        relu_precision = node.get_output_variable().type.precision
        if not _fusable_type(relu_precision):
            continue
        producer.get_output_variable().type.precision = relu_precision
        producer.set_attr(FUSED_ATTR, node.name)
        hls_model.remove_node(node)
        fused[producer.name] = node.name
    if fused:
        # The C++ calls and config structs were rendered during conversion and still name the removed streams.
        hls_model.apply_flow(f"{_backend_prefix(hls_model)}:apply_templates", reapply="single")
        log.info("fused %d ReLUs into the layers before them", len(fused))
    return fused


def _backend_prefix(hls_model: Any) -> str:
    """The flow namespace that renders this model's templates (VivadoAccelerator reuses Vivado's)."""
    name = type(hls_model.config.backend).__name__.replace("Backend", "").lower()
    return "vivado" if name in ("vivado", "vivadoaccelerator", "vitis", "vitisaccelerator") else name


def keras_outputs(hls_model: Any) -> dict[str, str]:
    """Firmware layer name -> the Keras layer whose output it streams, where they differ (fused ReLUs)."""
    return {
        node.name: str(node.get_attr(FUSED_ATTR))
        for node in hls_model.get_layers()
        if node.get_attr(FUSED_ATTR, None) is not None
    }


# ------------------------------------------------------------------------------------ serial result conversions
#: Marks a project whose fully serial Resource kernel converts each result as it completes (read by the estimate).
SERIAL_CAST_MARKER = "hls_build: result conversion in the reuse loop"

#: The product line of hls4ml 1.3.0's MultLoop (indented 16).
_PRODUCT = (
    " " * 16
    + "CONFIG_T::template product<data_T, typename CONFIG_T::weight_t>::product(data[in_index], weights[w_index]));\n"
)
_ACCUMULATE = "            acc[out_index] += static_cast<typename CONFIG_T::accum_t>(\n" + _PRODUCT

_ACCUMULATE_AND_CONVERT = f"""            // {SERIAL_CAST_MARKER}: a result that rounds or clips (a fused ReLU's)
            // is converted by this lane when its last input is in, through the select the accumulation already
            // has, instead of by n_out converters at once after the loop.
            typename CONFIG_T::accum_t sum = acc[out_index] + static_cast<typename CONFIG_T::accum_t>(
{_PRODUCT}            acc[out_index] = sum;
            if (!std::is_same<typename CONFIG_T::accum_t, res_T>::value && in_index == nin - 1) {{
                res[out_index] = cast<data_T, res_T, CONFIG_T>(sum);
            }}
"""

_RESULT = """// Cast to "res_t" type
Result:
    for (int ires = 0; ires < CONFIG_T::n_out; ires++) {
        #pragma HLS UNROLL
        res[ires] = cast<data_T, res_T, CONFIG_T>(acc[ires]);
    }
}"""

_RESULT_IF_COPY = """// Cast to "res_t" type: only a result of the accumulator's own type (a plain copy) is left here.
    if (std::is_same<typename CONFIG_T::accum_t, res_T>::value) {
    Result:
        for (int ires = 0; ires < CONFIG_T::n_out; ires++) {
            #pragma HLS UNROLL
            res[ires] = cast<data_T, res_T, CONFIG_T>(acc[ires]);
        }
    }
}"""


def serialize_result_casts(project_dir: str | Path) -> bool:
    """Convert each result of the fully serial Resource kernel as it completes (``nnet_dense_resource.h``).

    hls4ml's ``dense_resource_rf_gt_nin_rem0`` (ReuseFactor a multiple of ``n_in`` and above it: what a fit plan
    picks for a small board) sums for RF cycles with ``ceil(n_in*n_out/RF)`` multipliers, then converts all
    ``n_out`` accumulators to the result type at once. With a fused ReLU that conversion rounds and clips, about
    20 LUTs per channel, 64 channels in parallel for a stage-3 ResNet convolution. Here each multiplier lane
    converts its sum in the cycle its last input arrives: as many converters as lanes (one, fully serial), no
    extra cycles, and the value comes through the accumulator select the accumulation already needs; the results
    wait in ``n_out`` registers. A result of the accumulator's own type is a plain copy and stays after the loop.
    The arithmetic is the same (``a += b`` is ``a = a + b`` cast to ``a``'s type), so the C-simulation computes
    the same values; the build's gate checks them.

    Args:
        project_dir: a project written by ``hls_model.write()``.

    Returns:
        True when the kernel was changed (False when it already was).

    Raises:
        FileNotFoundError: the project has no ``nnet_dense_resource.h``.
        ValueError: the kernel is not in the form hls4ml 1.3.0 writes.
    """
    header = Path(project_dir) / "firmware" / "nnet_utils" / "nnet_dense_resource.h"
    text = header.read_text()
    if SERIAL_CAST_MARKER in text:
        return False
    start = text.find("void dense_resource_rf_gt_nin_rem0(")
    end = text.find("void dense_resource_rf_gt_nin(", start)
    block = text[start:end] if start >= 0 and end > start else ""
    if block.count(_ACCUMULATE) != 1 or block.count(_RESULT) != 1:
        raise ValueError(f"{header}: dense_resource_rf_gt_nin_rem0 is not in the form hls4ml 1.3.0 writes")
    block = block.replace(_ACCUMULATE, _ACCUMULATE_AND_CONVERT).replace(_RESULT, _RESULT_IF_COPY)
    new = text[:start] + block + text[end:]
    if "#include <type_traits>" not in new:
        new = new.replace('#include "nnet_mult.h"\n', '#include "nnet_mult.h"\n#include <type_traits>\n', 1)
    header.write_text(new)
    return True
