"""Bind each layer's multipliers to DSP48 slices or to LUT fabric, as a fit plan chooses (``"Multiplier"``).

hls4ml leaves the binding of a layer's products to the HLS tool, which puts narrow products (``<8,3>`` weights
times 8-bit activations) in LUTs: a plan for a small board then runs out of LUTs while its DSP48 slices sit idle.
A plan (:mod:`hls_build.planner`) chooses per conv/dense layer ``{"Multiplier": "dsp"}`` or ``"fabric"``; this
module makes the written project do it:

* two product classes are added to the project's ``nnet_utils/nnet_mult.h``, ``nnet::product::mult_dsp`` and
  ``mult_fabric``. Each computes exactly what hls4ml's ``mult`` computes (``a * w`` in the product's own type,
  so the C-simulation and the fast engine are unchanged bit for bit) into a variable that carries the binding
  pragma of the HLS tool that synthesizes it:

  * Vitis HLS (UG1399, ``pragma HLS bind_op``): ``#pragma HLS BIND_OP variable=p op=mul impl=dsp`` or
    ``impl=fabric``;
  * Vivado HLS (UG902, ``pragma HLS resource``): ``#pragma HLS RESOURCE variable=p core=DSP48`` or
    ``core=Mul_LUT``.

  hls4ml 1.3's own templates bind only storage, in the Vivado HLS form (``#pragma HLS RESOURCE variable=weights
  core=ROM_nP_BRAM`` in ``nnet_dense_resource.h``), and have no ``BIND_OP``; FINN's hlslib binds its products
  with the same ``RESOURCE variable=<product> core=Mul_LUT|DSP48`` form used here for Vivado HLS.
  The bundle is written before the flow picks its HLS tool (``hls_build.vivado.tools.find_tools``), so both are
  emitted, chosen by the preprocessor: Vitis HLS defines ``__VITIS_HLS__``, Vivado HLS does not (g++ ignores
  both pragmas).
* the chosen layer's config struct in ``parameters.h`` names that class: ``using product =
  nnet::product::mult_dsp<x_T, y_T>;`` instead of hls4ml's ``nnet::product::mult<x_T, y_T>``. The product is
  called from the matrix-multiply kernel the layer uses (``nnet_dense_resource.h``, ``nnet_dense_latency.h``), so
  the binding follows the layer whatever its ReuseFactor.

Not emitted: two 8-bit products packed into one DSP48E2 (Xilinx WP486). It needs a wide multiply and a
correction of the lower product's sign in the kernel, which is not written here; the estimate therefore counts
one DSP48 per product too (``hls_build.estimate.cost``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from board.errors import ProjectError

log = logging.getLogger(__name__)

#: The multiplier bindings a plan may choose per conv/dense layer (``layer_config[name]["Multiplier"]``).
MULTIPLIER_IMPLS = ("dsp", "fabric")
#: Attribute set on an hls4ml layer whose products are bound (read back by :func:`bindings_of`).
MULTIPLIER_ATTR = "hls_build_multiplier"
#: Marks a project whose ``nnet_mult.h`` has the bound product classes.
BIND_MARKER = "hls_build: bound multipliers (hls_build.bind)"

#: Per binding: the product class, the Vitis HLS pragma and the Vivado HLS pragma.
_PRAGMAS = {
    "dsp": ("mult_dsp", "#pragma HLS BIND_OP variable=p op=mul impl=dsp", "#pragma HLS RESOURCE variable=p core=DSP48"),
    "fabric": (
        "mult_fabric",
        "#pragma HLS BIND_OP variable=p op=mul impl=fabric",
        "#pragma HLS RESOURCE variable=p core=Mul_LUT",
    ),
}
#: hls4ml 1.3.0's product line of a conv/dense config struct.
_PRODUCT_RE = re.compile(r"(using\s+product\s*=\s*nnet::product::)(\w+)(\s*<\s*x_T\s*,\s*y_T\s*>\s*;)")
_NAMESPACE_END = "} // namespace product\n"


class BindError(ProjectError, ValueError):
    """A binding names an unknown implementation, or the project is not in the form hls4ml 1.3.0 writes."""


def product_class(impl: str) -> str:
    """The ``nnet::product`` class of a binding (``dsp`` -> ``mult_dsp``)."""
    if impl not in _PRAGMAS:
        raise BindError(f"multiplier binding {impl!r} is not one of {', '.join(MULTIPLIER_IMPLS)}")
    return _PRAGMAS[impl][0]


def impl_of_product_class(name: str | None) -> str | None:
    """The binding a ``using product = nnet::product::<name>`` stands for (None: the HLS tool decides)."""
    for impl, (cls, _, _) in _PRAGMAS.items():
        if name == cls:
            return impl
    return None


def pragmas(impl: str) -> tuple[str, str]:
    """The (Vitis HLS, Vivado HLS) pragma lines of a binding."""
    product_class(impl)
    return _PRAGMAS[impl][1], _PRAGMAS[impl][2]


def _product_classes_cpp() -> str:
    out = [f"// {BIND_MARKER}: the 'Normal' product with its multiplier bound; the same arithmetic as mult."]
    for cls, vitis, vivado in _PRAGMAS.values():
        out.append(
            f"template <class x_T, class w_T> class {cls} : public Product {{\n"
            "  public:\n"
            "    static auto product(x_T a, w_T w) -> decltype(a * w) {\n"
            "        #pragma HLS INLINE\n"
            "        decltype(a * w) p;\n"
            "#ifdef __VITIS_HLS__\n"
            f"        {vitis}\n"
            "#else\n"
            f"        {vivado}\n"
            "#endif\n"
            "        p = a * w;\n"
            "        return p;\n"
            "    }\n"
            "};\n"
        )
    return "\n".join(out) + "\n"


def add_product_classes(project_dir: str | Path) -> bool:
    """Add ``mult_dsp`` and ``mult_fabric`` to the project's ``nnet_mult.h`` (False when already there).

    Raises:
        BindError: the header is missing or has no ``} // namespace product``.
    """
    header = Path(project_dir) / "firmware" / "nnet_utils" / "nnet_mult.h"
    if not header.is_file():
        raise BindError(f"{header} not found: not a written hls4ml project")
    text = header.read_text()
    if BIND_MARKER in text:
        return False
    if text.count(_NAMESPACE_END) != 1:
        raise BindError(f"{header}: not in the form hls4ml 1.3.0 writes (no single '{_NAMESPACE_END.strip()}')")
    header.write_text(text.replace(_NAMESPACE_END, _product_classes_cpp() + _NAMESPACE_END, 1))
    return True


def _layer_sections(text: str) -> dict[str, tuple[int, int]]:
    """``parameters.h``'s per-layer sections: layer name -> (start, end) offsets (hls4ml's ``// <name>`` lines)."""
    start = text.find("// hls-fpga-machine-learning insert layer-config")
    if start < 0:
        raise BindError("parameters.h has no '// hls-fpga-machine-learning insert layer-config' section")
    heads = [(m.group(1), m.start()) for m in re.finditer(r"^// (\w+)\s*$", text[start:], re.MULTILINE)]
    sections = {}
    for i, (name, pos) in enumerate(heads):
        end = heads[i + 1][1] if i + 1 < len(heads) else len(text) - start
        sections[name] = (start + pos, start + end)
    return sections


def bind_multipliers(project_dir: str | Path, bindings: Mapping[str, str]) -> dict[str, str]:
    """Bind the products of the named layers (``{layer: "dsp" | "fabric"}``) in a written project.

    Args:
        project_dir: a project written by ``hls_model.write()``.
        bindings: layer name -> binding; an empty mapping changes nothing.

    Returns:
        Layer name -> the product class its config struct now names.

    Raises:
        BindError: an unknown binding, a layer that is not in ``parameters.h``, or a layer without hls4ml's plain
            ``nnet::product::mult`` (binary, ternary or exponential weights: nothing to bind).
    """
    if not bindings:
        return {}
    classes = {name: product_class(impl) for name, impl in bindings.items()}
    params = Path(project_dir) / "firmware" / "parameters.h"
    if not params.is_file():
        raise BindError(f"{params} not found: not a written hls4ml project")
    text = params.read_text()
    sections = _layer_sections(text)
    edits: list[tuple[int, int, str]] = []
    for name, cls in classes.items():
        if name not in sections:
            raise BindError(f"multiplier binding names {name!r}, which has no config in {params}")
        lo, hi = sections[name]
        found = list(_PRODUCT_RE.finditer(text, lo, hi))
        if len(found) != 1 or found[0].group(2) not in ("mult", *(c for c, _, _ in _PRAGMAS.values())):
            what = found[0].group(2) if len(found) == 1 else f"{len(found)} product lines"
            raise BindError(f"{name}: cannot bind its multipliers ({what}; only hls4ml's plain 'mult' product)")
        m = found[0]
        edits.append((m.start(2), m.end(2), cls))
    for lo, hi, cls in sorted(edits, reverse=True):
        text = text[:lo] + cls + text[hi:]
    add_product_classes(project_dir)
    params.write_text(text)
    log.info("bound the multipliers of %d layers (%s)", len(classes),
             ", ".join(f"{n}: {b}" for n, b in sorted(bindings.items())))  # fmt: skip
    return classes


def bindings_from_layer_config(layer_config: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``{layer: binding}`` from a plan's ``layer_config`` (its ``"Multiplier"`` entries).

    Raises:
        BindError: an entry that is not one of :data:`MULTIPLIER_IMPLS`.
    """
    out = {}
    for name, cfg in layer_config.items():
        impl = cfg.get("Multiplier")
        if impl is None:
            continue
        product_class(str(impl))
        out[name] = str(impl)
    return out


def mark_bindings(hls_model: Any, bindings: Mapping[str, str]) -> None:
    """Record each layer's binding on the hls4ml layer (:func:`bindings_of` reads it back when writing)."""
    for node in hls_model.get_layers():
        if node.name in bindings:
            node.set_attr(MULTIPLIER_ATTR, bindings[node.name])


def bindings_of(hls_model: Any) -> dict[str, str]:
    """The bindings recorded on an hls4ml model by :func:`mark_bindings`."""
    return {
        node.name: str(node.get_attr(MULTIPLIER_ATTR))
        for node in hls_model.get_layers()
        if node.get_attr(MULTIPLIER_ATTR, None) is not None
    }
