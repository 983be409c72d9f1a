"""Export what the generated firmware computes, so a numpy engine can reproduce it bit for bit without hls4ml.

After ``hls_model.write()`` the hls4ml ``ModelGraph`` holds the final network: the layers in the order the top
function calls them (including the ``ZeroPadding2D`` and ``Clone`` layers hls4ml inserts for ``io_stream``), their
geometry, and the *resolved* fixed-point type of every variable (``auto`` precisions have been inferred by then).
This module writes that description as JSON plus the weights as exact raw integers (``.npz``), and checks it
against the generated C++ instead of trusting it:

* every type is compared with its ``typedef`` in ``firmware/defines.h`` (width, integer bits, signedness,
  quantization and overflow modes), the AXI-Stream types with ``<project>_axi.h``;
* every layer's geometry and reuse factor are compared with its ``config`` struct in ``firmware/parameters.h``,
  and the matrix-multiply kernel named there (``DenseResource_rf_leq_nin`` ...) is replayed index by index
  (the loops of ``nnet_dense_resource.h`` / ``nnet_dense_latency.h``) to place each element of the flat C weight
  array at its (input, output) position: no assumption about hls4ml's weight transposition;
* the weights are the strings of ``firmware/weights/*.txt`` that the C-simulation reads, converted the way
  ``operator>>(istream, ap_fixed)`` does (``double``, then the weight type's quantization and overflow).

A mismatch raises :class:`FirmwareGraphError`: a graph that disagrees with the C++ would make the numpy engine
wrong, which is worse than no graph. Layers the engine does not implement are recorded with ``op: null`` and the
engine refuses the bundle with a clear message, so an exotic model still builds.

The consumer is ``board.fast_engine`` (numpy only, runs on the board).
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from board.errors import CheckFailedError, ProjectError
from board.fixed_point import FixedPoint

__all__ = [
    "GRAPH_FILE",
    "GRAPH_FORMAT",
    "GRAPH_VERSION",
    "WEIGHTS_FILE",
    "FirmwareGraphError",
    "export_firmware_graph",
    "depthwise_index_map",
    "kernel_index_map",
    "parse_cpp_type",
    "write_firmware_graph",
]

log = logging.getLogger(__name__)

GRAPH_FORMAT = "hls4ml-firmware-graph"
GRAPH_VERSION = 1
GRAPH_FILE = "graph.json"
WEIGHTS_FILE = "weights.npz"

#: Widest type the exporter quantizes weights to (raw codes are stored as int64).
_MAX_WEIGHT_WIDTH = 62


class FirmwareGraphError(ProjectError, RuntimeError):
    """The hls4ml model and the generated C++ disagree, or the model holds a type the export cannot represent."""


class FirmwareMismatchError(FirmwareGraphError, CheckFailedError):
    """Converting a bundle's model again does not give the bundle's firmware (a failed check: exit code 1)."""


class UnsupportedLayer(FirmwareGraphError):
    """A layer the export can describe only partly (unknown kernel, binary weights): recorded with ``op: null``."""


# ------------------------------------------------------------------------------------------------------ types
_MODE_PREFIX = "AP_"


def _mode(name: str) -> str:
    """``RND_CONV`` / ``AP_RND_CONV`` -> ``AP_RND_CONV``."""
    name = name.strip().upper()
    return name if name.startswith(_MODE_PREFIX) else _MODE_PREFIX + name


def parse_cpp_type(text: str) -> dict[str, Any]:
    """The JSON record of a scalar HLS type (``ap_fixed<16,6>``, ``ap_ufixed<8,3,AP_RND_CONV,AP_SAT>``, ``ap_uint<1>``).

    Parsed by :meth:`board.fixed_point.FixedPoint.parse`; ``nnet::array<T, N>`` (hls4ml's packed stream element) is
    unwrapped to ``T``.

    Returns:
        ``{"cpp", "kind", "width", "integer", "signed", "rounding", "saturation", "saturation_bits"}``; integer
        types have ``integer == width`` and the ap_int conversion modes (``AP_TRN``, ``AP_WRAP``).

    Raises:
        FirmwareGraphError: not such a type.
    """
    s = text.strip()
    m = re.match(r"^nnet::array\s*<\s*(.*)\s*,\s*[\w\s*+]+>\s*$", s)
    if m:
        s = m.group(1).strip()
    try:
        fp = FixedPoint.parse(s)
    except ValueError as exc:
        raise FirmwareGraphError(f"cannot parse HLS type {text!r}: {exc}") from exc
    return {
        "cpp": str(fp) if fp.is_int else s,
        "kind": "int" if fp.is_int else "fixed",
        "width": fp.width,
        "integer": fp.integer,
        "signed": fp.signed,
        "rounding": fp.rounding.value,
        "saturation": fp.saturation.value,
        "saturation_bits": 0,
    }


def _precision_dict(precision: Any) -> dict[str, Any]:
    """The JSON record of an hls4ml precision object (the same keys as :func:`parse_cpp_type`)."""
    from hls4ml.model.types import (
        ExponentPrecisionType,
        FixedPrecisionType,
        IntegerPrecisionType,
        XnorPrecisionType,
    )

    if isinstance(precision, (XnorPrecisionType, ExponentPrecisionType)):
        # Binary / power-of-two weights: recorded, and the engine refuses layers that use them.
        return {"cpp": precision.definition_cpp(), "kind": type(precision).__name__}
    if isinstance(precision, FixedPrecisionType):
        d = {
            "cpp": precision.definition_cpp(),
            "kind": "fixed",
            "width": int(precision.width),
            "integer": int(precision.integer),
            "signed": bool(precision.signed),
            "rounding": _mode(precision.rounding_mode.name),
            "saturation": _mode(precision.saturation_mode.name),
            "saturation_bits": int(precision.saturation_bits or 0),
        }
    elif isinstance(precision, IntegerPrecisionType):
        d = {
            "cpp": precision.definition_cpp(),
            "kind": "int",
            "width": int(precision.width),
            "integer": int(precision.width),
            "signed": bool(precision.signed),
            "rounding": "AP_TRN",
            "saturation": "AP_WRAP",
            "saturation_bits": 0,
        }
    else:
        # Float types: recorded, and the engine refuses layers that use them.
        d = {"cpp": precision.definition_cpp(), "kind": type(precision).__name__}
    return d


_COMPARED_KEYS = ("kind", "width", "integer", "signed", "rounding", "saturation", "saturation_bits")


def _same_type(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in _COMPARED_KEYS)


def read_typedefs(defines_h: Path) -> dict[str, dict[str, Any]]:
    """All ``typedef <HLS type> <name>;`` of ``defines.h``, parsed (element type for packed arrays)."""
    out = {}
    for m in re.finditer(r"^\s*typedef\s+(.+?)\s+(\w+)\s*;", Path(defines_h).read_text(), re.MULTILINE):
        try:
            out[m.group(2)] = parse_cpp_type(m.group(1))
        except FirmwareGraphError:
            continue  # e.g. nested structs we do not need
    return out


def read_config_structs(parameters_h: Path) -> dict[str, dict[str, str]]:
    """The ``struct configN : nnet::..._config { ... };`` blocks of ``parameters.h``.

    Returns:
        struct name -> {member: value text}, from ``static const <type> <member> = <value>;``, ``typedef <T>
        <member>;`` and ``using kernel = nnet::<Kernel><...>;`` (as ``kernel``).
    """
    text = Path(parameters_h).read_text()
    structs = {}
    for m in re.finditer(r"^struct\s+(\w+)\s*:\s*[\w:]+\s*\{(.*?)^\};", text, re.MULTILINE | re.DOTALL):
        body = m.group(2)
        members = {}
        for sm in re.finditer(r"static\s+const\s+[\w:<>\s*]+?\s+(\w+)\s*=\s*([^;]+);", body):
            members[sm.group(1)] = sm.group(2).strip()
        for tm in re.finditer(r"typedef\s+([\w:<>,\s]+?)\s+(\w+)\s*;", body):
            members[tm.group(2)] = tm.group(1).strip()
        km = re.search(r"using\s+kernel\s*=\s*nnet::(\w+)\s*<", body)
        if km:
            members["kernel"] = km.group(1)
        structs[m.group(1)] = members
    return structs


# ---------------------------------------------------------------------------------------- matrix-multiply kernels
def kernel_index_map(kernel: str, n_in: int, n_out: int, reuse_factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Replay a dense kernel's loops: which ``data[]`` element and output each flat weight index meets.

    The loops and index updates are those of ``nnet_dense_resource.h`` (``dense_resource_rf_leq_nin``,
    ``dense_resource_rf_gt_nin_rem0``) and ``nnet_dense_latency.h`` in hls4ml 1.3.0, replayed literally.

    Args:
        kernel: the ``using kernel = nnet::<name>`` of the layer's config struct.
        n_in: inputs of the matrix multiply.
        n_out: outputs.
        reuse_factor: the config's ``reuse_factor``.

    Returns:
        ``(in_index, out_index)``, each of length ``n_in * n_out``, indexed by the flat weight index.

    Raises:
        FirmwareGraphError: unknown kernel, or a weight is met twice or never (the replay found an inconsistent
            configuration).
    """
    nw = n_in * n_out
    in_idx = np.full(nw, -1, np.int64)
    out_idx = np.full(nw, -1, np.int64)

    def hit(w: int, i: int, o: int) -> None:
        if not (0 <= w < nw) or in_idx[w] != -1:
            raise FirmwareGraphError(
                f"{kernel}: weight index {w} met twice or out of range (n_in={n_in}, n_out={n_out})"
            )
        in_idx[w], out_idx[w] = i, o

    def div_roundup(a: int, b: int) -> int:
        return (a + b - 1) // b

    if kernel == "DenseLatency":
        for ii in range(n_in):
            for jj in range(n_out):
                hit(ii * n_out + jj, ii, jj)
    elif kernel == "DenseResource_rf_leq_nin":
        rufactor = reuse_factor
        multfactor = min(n_in, reuse_factor)
        multiplier_limit = div_roundup(nw, multfactor)
        block_factor = div_roundup(nw, reuse_factor)
        multscale = multiplier_limit // n_out
        for ir in range(rufactor):
            w_index, in_index, out_index, acc_step = ir, ir, 0, 0
            for _ in range(block_factor):
                hit(w_index, in_index, out_index)
                w_index += rufactor
                in_index += rufactor
                if in_index >= n_in:
                    in_index = ir
                if acc_step + 1 >= multscale:
                    acc_step = 0
                    out_index += 1
                else:
                    acc_step += 1
    elif kernel == "DenseResource_rf_gt_nin_rem0":
        rufactor = min(reuse_factor, nw)
        block_factor = div_roundup(nw, reuse_factor)
        outscale = rufactor // n_in
        outidx, outstep = [], 0
        for ir in range(rufactor):
            outidx.append(outstep)
            if (ir + 1) % n_in == 0:
                outstep += 1
        in_index = 0
        for ir in range(rufactor):
            w_index, out_index = ir, outidx[ir]
            for _ in range(block_factor):
                hit(w_index, in_index, out_index)
                w_index += rufactor
                if w_index >= nw:
                    break
                out_index += outscale
            in_index += 1
            if in_index >= n_in:
                in_index = 0
    else:
        raise UnsupportedLayer(f"matrix-multiply kernel {kernel!r} is not known to the firmware-graph export")
    if np.any(in_idx < 0):
        raise FirmwareGraphError(
            f"{kernel}: {int(np.sum(in_idx < 0))} weights are never used (n_in={n_in}, n_out={n_out})"
        )
    if np.any(in_idx >= n_in) or np.any(out_idx >= n_out):
        raise FirmwareGraphError(f"{kernel}: index out of range (n_in={n_in}, n_out={n_out})")
    pairs = in_idx * n_out + out_idx
    if len(np.unique(pairs)) != nw:
        raise FirmwareGraphError(f"{kernel}: some (input, output) pairs get two weights and others none")
    return in_idx, out_idx


def depthwise_index_map(kernel: str, n_in: int, n_out: int, reuse_factor: int) -> np.ndarray:
    """Replay a depthwise kernel's loops: the output each weight (and the ``data[]`` element of the same index) meets.

    The loops of ``nnet_depthwise_product.h`` in hls4ml 1.3.0 (``depthwise_product_latency``,
    ``..._resource_rf_leq_nout``, ``..._rf_gt_nout_rem0``, ``..._gt_nout``), replayed literally: weight ``i``
    multiplies ``data[i]`` (the window in (row, column, channel) order) and is added to one output channel.

    Returns:
        ``out_index`` of length ``n_in``, indexed by the flat weight index.

    Raises:
        FirmwareGraphError: unknown kernel, or a weight met twice, never, or out of range.
    """
    out_idx = np.full(n_in, -1, np.int64)

    def hit(i: int, o: int) -> None:
        if not (0 <= i < n_in) or not (0 <= o < n_out) or out_idx[i] != -1:
            raise FirmwareGraphError(
                f"{kernel}: weight {i} -> output {o} met twice or out of range (n_in={n_in}, n_out={n_out})"
            )
        out_idx[i] = o

    def div_roundup(a: int, b: int) -> int:
        return (a + b - 1) // b

    if kernel == "DepthwiseDenseLatency":
        for ii in range(n_in // n_out):
            for jj in range(n_out):
                hit(ii * n_out + jj, jj)
    elif kernel == "DepthwiseDenseResource_rf_leq_nout":
        for ir in range(reuse_factor):
            in_index, out_index = ir, ir
            for _ in range(div_roundup(n_in, reuse_factor)):
                hit(in_index, out_index)
                in_index += reuse_factor
                out_index += reuse_factor
                if out_index >= n_out:
                    out_index -= n_out
    elif kernel in ("DepthwiseDenseResource_rf_gt_nout_rem0", "DepthwiseDenseResource_rf_gt_nout"):
        rufactor = min(reuse_factor, n_in)
        remainder = reuse_factor % n_out if kernel.endswith("_gt_nout") else 0
        outidx, outstep = [], 0
        for _ in range(rufactor):
            outidx.append(outstep)
            outstep = 0 if outstep + 1 == n_out else outstep + 1
        for ir in range(rufactor):
            in_index, out_index = ir, outidx[ir]
            for _ in range(div_roundup(n_in, rufactor)):
                hit(in_index, out_index)
                in_index += rufactor
                out_index += remainder
                if out_index >= n_out:
                    out_index -= n_out
    else:
        raise UnsupportedLayer(f"depthwise kernel {kernel!r} is not known to the firmware-graph export")
    if np.any(out_idx < 0):
        raise FirmwareGraphError(f"{kernel}: {int(np.sum(out_idx < 0))} weights are never used (n_in={n_in})")
    return out_idx


# ---------------------------------------------------------------------------------------------------- weights
def _quantize_doubles(values: np.ndarray, t: dict[str, Any]) -> np.ndarray:
    """Raw codes of doubles assigned to type ``t`` (``ap_fixed(double)``: quantization, then overflow).

    Exact: scaling by a power of two, floor and the fraction are exact in binary floating point, and the integer
    steps are done on Python ints.
    """
    width, frac, signed = t["width"], t["width"] - t["integer"], t["signed"]
    if width > _MAX_WEIGHT_WIDTH:
        raise FirmwareGraphError(f"weight type {t['cpp']} is wider than {_MAX_WEIGHT_WIDTH} bits")
    mode, sat = t["rounding"], t["saturation"]
    lo = -(1 << (width - 1)) if signed else 0
    hi = (1 << (width - 1)) - 1 if signed else (1 << width) - 1
    out = np.empty(values.shape, np.int64)
    for k, x in enumerate(values.ravel().tolist()):
        if not math.isfinite(x):
            raise FirmwareGraphError(f"non-finite weight {x!r}")
        s = math.ldexp(x, frac)
        f = math.floor(s)
        d = s - f  # exact
        q = int(f)
        if mode == "AP_TRN":
            pass
        elif mode == "AP_TRN_ZERO":
            q += int(d > 0 and s < 0)
        elif mode == "AP_RND":
            q += int(d >= 0.5)
        elif mode == "AP_RND_MIN_INF":
            q += int(d > 0.5)
        elif mode == "AP_RND_ZERO":
            q += int(d > 0.5 or (d == 0.5 and s < 0))
        elif mode == "AP_RND_INF":
            q += int(d > 0.5 or (d == 0.5 and s > 0))
        elif mode == "AP_RND_CONV":
            q += int(d > 0.5 or (d == 0.5 and q % 2 == 1))
        else:
            raise FirmwareGraphError(f"unknown quantization mode {mode}")
        if q < lo or q > hi:
            if sat == "AP_WRAP":
                q = q & ((1 << width) - 1)
                if signed and q > hi:
                    q -= 1 << width
            elif sat == "AP_SAT":
                q = min(max(q, lo), hi)
            elif sat == "AP_SAT_ZERO":
                q = 0
            elif sat == "AP_SAT_SYM":
                q = min(max(q, -hi if signed else lo), hi)
            else:
                raise FirmwareGraphError(f"unsupported overflow mode {sat}")
        out.flat[k] = q
    return out


def _weight_tokens(var: Any, weights_dir: Path) -> list[str]:
    """The decimal strings the C-simulation parses for ``var`` (its ``.txt`` file, else the writer's strings)."""
    txt = weights_dir / f"{var.name}.txt"
    if txt.is_file():
        return [tok for tok in txt.read_text().strip().split(",") if tok.strip()]
    return [str(x) for x in var]


def _raw_weights(var: Any, t: dict[str, Any], weights_dir: Path) -> np.ndarray:
    """Raw codes of a weight variable exactly as the C-simulation loads them (flat C order)."""
    tokens = _weight_tokens(var, weights_dir)
    if t.get("kind") == "int":
        vals = []
        for tok in tokens:
            v = float(tok)
            if v != math.floor(v):
                raise FirmwareGraphError(f"{var.name}: integer weight type {t['cpp']} given {tok.strip()!r}")
            vals.append(v)
        t = {**t, "rounding": "AP_TRN", "saturation": "AP_WRAP"}
        raw = _quantize_doubles(np.asarray(vals, np.float64), t)
    elif t.get("kind") == "fixed":
        raw = _quantize_doubles(np.asarray([float(tok) for tok in tokens], np.float64), t)
    else:
        raise UnsupportedLayer(f"{var.name}: weights of type {t['cpp']} are not supported")
    expected = int(np.prod(var.shape)) if getattr(var, "shape", None) is not None else len(raw)
    if raw.size != expected:
        raise FirmwareGraphError(f"{var.name}: {raw.size} weights in the file, {expected} expected")
    return raw


def _compact(raw: np.ndarray) -> np.ndarray:
    """The smallest signed integer dtype holding ``raw`` (the npz stays small; the engine widens to int64)."""
    lo, hi = (int(raw.min()), int(raw.max())) if raw.size else (0, 0)
    for dt in (np.int8, np.int16, np.int32, np.int64):
        if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
            return raw.astype(dt)
    raise AssertionError("unreachable")  # pragma: no cover


# ----------------------------------------------------------------------------------------------------- layers
def _function_name(function_cpp: Any) -> str | None:
    if isinstance(function_cpp, (list, tuple)):
        function_cpp = " ".join(function_cpp)
    if not function_cpp:
        return None
    m = re.match(r"\s*(nnet::\w+)\s*<", function_cpp)
    return m.group(1) if m else None


def _config_name(function_cpp: Any) -> str | None:
    """The config struct of a call like ``nnet::conv_2d_cl<in_t, out_t, config2>(...)``."""
    if isinstance(function_cpp, (list, tuple)):
        function_cpp = " ".join(function_cpp)
    m = re.match(r"\s*nnet::\w+\s*<([^()]*)>\s*\(", function_cpp or "")
    if not m:
        return None
    last = m.group(1).split(",")[-1].strip()
    return last if re.fullmatch(r"\w+", last) and not last.isdigit() else None


_ATTR_KEYS = {
    "zeropad2d": (
        "in_height",
        "in_width",
        "n_chan",
        "out_height",
        "out_width",
        "pad_top",
        "pad_bottom",
        "pad_left",
        "pad_right",
    ),
    "conv2d": (
        "in_height",
        "in_width",
        "n_chan",
        "filt_height",
        "filt_width",
        "n_filt",
        "stride_height",
        "stride_width",
        "out_height",
        "out_width",
        "pad_top",
        "pad_bottom",
        "pad_left",
        "pad_right",
    ),
    "batchnorm": ("n_in", "n_filt"),
    "pooling2d": (
        "in_height",
        "in_width",
        "n_filt",
        "stride_height",
        "stride_width",
        "pool_height",
        "pool_width",
        "out_height",
        "out_width",
        "pad_top",
        "pad_bottom",
        "pad_left",
        "pad_right",
    ),
    "global_pooling2d": ("in_height", "in_width", "n_filt"),
    "dense": ("n_in", "n_out"),
}
_ATTR_KEYS["pointwise_conv2d"] = _ATTR_KEYS["conv2d"]
_ATTR_KEYS["depthwise_conv2d"] = _ATTR_KEYS["conv2d"]
#: Ops computed by a matrix multiply over a window (the engine's ``_MatmulStep``).
_CONV_OPS = ("conv2d", "pointwise_conv2d", "depthwise_conv2d")

_OPS = {
    "nnet::zeropad2d_cl": "zeropad2d",
    "nnet::conv_2d_cl": "conv2d",
    "nnet::pointwise_conv_2d_cl": "pointwise_conv2d",
    "nnet::depthwise_conv_2d_cl": "depthwise_conv2d",
    "nnet::normalize": "batchnorm",
    "nnet::relu": "relu",
    "nnet::linear": "linear",
    "nnet::clone_stream": "clone",
    "nnet::add": "add",
    "nnet::subtract": "subtract",
    "nnet::multiply": "multiply",
    "nnet::average": "average",
    "nnet::maximum": "maximum",
    "nnet::minimum": "minimum",
    "nnet::global_pooling2d_cl": "global_pooling2d",
    "nnet::pooling2d_cl": "pooling2d",
    "nnet::concatenate1d": "concatenate",
    "nnet::concatenate3d": "concatenate",
    "nnet::repack_stream": "reshape",
    "nnet::dense": "dense",
}


def _int_expr(text: str) -> int | None:
    """Value of a config member like ``32*32*16`` or ``54``; None for anything symbolic."""
    if not re.fullmatch(r"\s*\d+(\s*\*\s*\d+)*\s*", text):
        return None
    return math.prod(int(t) for t in text.split("*"))


def _check_int(layer: str, what: str, ours: Any, cfg: dict[str, str], key: str) -> None:
    """Compare an attribute with the config struct member (when the struct has it)."""
    if key not in cfg:
        return
    text = cfg[key]
    theirs = _int_expr(text)
    if theirs is None:  # a symbolic expression (DIV_ROUNDUP(...)): not checked
        return
    if int(ours) != theirs:
        raise FirmwareGraphError(f"{layer}: {what} {key} is {ours} in the hls4ml model but {text} in parameters.h")


def _export_weights(
    layer: Any,
    entry: dict[str, Any],
    op: str | None,
    function_cpp: Any,
    config: dict[str, str],
    structs: dict[str, dict[str, str]],
    weights_dir: Path,
    arrays: dict[str, np.ndarray],
    checked: Any,
) -> None:
    """Add a layer's weights to ``entry`` and ``arrays`` (matrix layers: replayed into ``[n_in, n_out]``)."""
    for wkey, var in layer.weights.items():
        t = checked(var.type, f"{layer.name} {wkey}")
        raw = _raw_weights(var, t, weights_dir)
        info: dict[str, Any] = {"key": f"{layer.name}/{wkey}", "cpp_name": var.name, "type": t}
        if op in (*_CONV_OPS, "dense") and wkey == "weight":
            mult = structs.get(f"{_config_name(function_cpp)}_mult", config) if op != "dense" else config
            kernel = mult.get("kernel")
            if kernel is None:
                raise UnsupportedLayer(f"{layer.name}: no matrix-multiply kernel found in parameters.h")
            n_in, n_out, rf = (_int_expr(mult.get(k, "")) for k in ("n_in", "n_out", "reuse_factor"))
            if n_in is None or n_out is None or rf is None:
                raise FirmwareGraphError(f"{layer.name}: cannot read n_in/n_out/reuse_factor from parameters.h")
            if op == "depthwise_conv2d":
                # One weight per window element (n_in of them), each added to one channel: the matrix holds it
                # there and zeros elsewhere (a zero product adds nothing, whatever the types).
                if n_in != raw.size:
                    raise FirmwareGraphError(f"{layer.name}: {raw.size} depthwise weights but n_in = {n_in}")
                in_idx, out_idx = np.arange(n_in), depthwise_index_map(kernel, n_in, n_out, rf)
            else:
                if n_in * n_out != raw.size:
                    raise FirmwareGraphError(f"{layer.name}: {raw.size} weights but n_in*n_out = {n_in * n_out}")
                in_idx, out_idx = kernel_index_map(kernel, n_in, n_out, rf)
            matrix = np.zeros((n_in, n_out), np.int64)
            matrix[in_idx, out_idx] = raw
            raw = matrix
            info.update(layout="matrix[n_in, n_out]", kernel=kernel, reuse_factor=rf, n_in=n_in, n_out=n_out)
            if op != "dense":
                # data[] of the kernel is the window in (row, column, channel) order (nnet_conv_stream.h).
                info["data_order"] = "filt_height, filt_width, n_chan"
            entry["attributes"]["strategy"] = str(layer.get_attr("strategy", ""))
        else:
            info["layout"] = "flat"
        info["shape"] = list(raw.shape)
        arrays[info["key"]] = _compact(raw)
        entry["weights"][wkey] = info


def export_firmware_graph(hls_model: Any) -> dict[str, Any]:
    """Describe the firmware of a converted and written hls4ml model.

    Call after ``hls_model.write()`` (and the project's source fixes): the types are read from the final model,
    as the writer does, and checked against the files it wrote.

    Args:
        hls_model: an hls4ml ``ModelGraph`` (``io_stream``, Vivado or VivadoAccelerator backend).

    Returns:
        ``{"graph": <JSON-ready dict>, "arrays": {key: int ndarray}}``: the graph names each weight array by key.

    Raises:
        FirmwareGraphError: the model and the generated C++ disagree, or a weight cannot be represented.
    """
    import hls4ml

    cfg = hls_model.config
    project_dir = Path(cfg.get_output_dir())
    project = cfg.get_project_name()
    firmware = project_dir / "firmware"
    typedefs = read_typedefs(firmware / "defines.h")
    structs = read_config_structs(firmware / "parameters.h")
    weights_dir = firmware / "weights"
    # Recorded as is: the fast engine implements io_stream only and refuses other graphs.
    io_type = cfg.get_config_value("IOType")

    def checked(t: Any, where: str) -> dict[str, Any]:
        """The record of a named type, after checking it against defines.h."""
        d = {"name": t.name, **_precision_dict(t.precision)}
        cpp = typedefs.get(t.name)
        if cpp is None:
            raise FirmwareGraphError(f"{where}: type {t.name} is not declared in {firmware / 'defines.h'}")
        if d.get("kind") in ("fixed", "int") and not _same_type(d, cpp):
            raise FirmwareGraphError(
                f"{where}: type {t.name} is {d['cpp']} in the hls4ml model but {cpp['cpp']} in defines.h"
            )
        return d

    arrays: dict[str, np.ndarray] = {}
    layers = []
    model_inputs = set(hls_model.inputs)
    for layer in hls_model.get_layers():
        function_cpp = layer.get_attr("function_cpp", None)
        fname = _function_name(function_cpp)
        op = _OPS.get(fname) if fname else ("input" if layer.name in model_inputs else None)
        if fname is None and layer.class_name == "Reshape" and layer.name not in model_inputs:
            # io_stream: a Reshape/Flatten whose stream keeps its packing is an alias of its input (no call).
            op = "reshape"
        entry: dict[str, Any] = {
            "name": layer.name,
            "index": int(layer.index),
            "class": layer.class_name,
            "hls_class": type(layer).__name__,
            "keras_class": layer.get_attr("class_name", layer.class_name),
            "op": op,
            "function": fname,
            "function_cpp": function_cpp if isinstance(function_cpp, str) else None,
            "inputs": list(layer.inputs) if layer.name not in model_inputs else [],
            "outputs": [],
            "types": {},
            "weights": {},
            "attributes": {},
        }
        for out_name in layer.outputs:
            var = layer.get_output_variable(out_name)
            entry["outputs"].append(
                {
                    "name": out_name,
                    "cpp_name": var.name,
                    "shape": [int(s) for s in var.shape],
                    "size": int(np.prod(var.shape)),
                    "type": checked(var.type, f"{layer.name} output {out_name}"),
                }
            )
        for key, t in layer.types.items():
            if key == "result_t":
                continue
            entry["types"][key[:-2] if key.endswith("_t") else key] = checked(t, f"{layer.name} {key}")
        config = structs.get(_config_name(function_cpp) or "", {})
        for key in _ATTR_KEYS.get(op or "", ()):
            if layer.get_attr(key, None) is not None:
                entry["attributes"][key] = int(layer.get_attr(key))
                _check_int(layer.name, "attribute", entry["attributes"][key], config, key)
        if layer.get_attr("fused_activation", None) is not None:
            # hls_build.fuse: this layer's result type does a ReLU's work; it streams that ReLU's output.
            entry["fused_activation"] = str(layer.get_attr("fused_activation"))
        if layer.class_name == "Activation":
            entry["attributes"]["activation"] = str(layer.get_attr("activation", "")).lower()
        if op == "concatenate":
            axis = config.get("axis")
            if axis is not None and axis.strip() not in ("-1", str(len(layer.get_output_variable().shape) - 1)):
                raise FirmwareGraphError(f"{layer.name}: concatenation on axis {axis}; the engine joins channels")
            entry["attributes"]["axis"] = -1
        if op in ("global_pooling2d", "pooling2d"):
            entry["attributes"]["pool_op"] = str(layer.get_attr("pool_op"))
            pool = config.get("pool_op", "")
            if pool and not pool.endswith(entry["attributes"]["pool_op"]):
                raise FirmwareGraphError(f"{layer.name}: pool_op {pool} in parameters.h")
        if op in ("add", "subtract", "multiply", "average", "maximum", "minimum"):
            entry["attributes"]["merge_op"] = str(layer.get_attr("op", op))
        if op in _CONV_OPS:
            entry["attributes"]["implementation"] = str(layer.get_attr("implementation", "linebuffer")).lower()
            impl = config.get("implementation", "")
            if impl and not impl.endswith(entry["attributes"]["implementation"]):
                raise FirmwareGraphError(f"{layer.name}: implementation {impl} in parameters.h")
        # Weights: raw codes as the C-simulation loads them, rearranged to the math layout.
        try:
            _export_weights(layer, entry, op, function_cpp, config, structs, weights_dir, arrays, checked)
        except UnsupportedLayer as exc:
            # Still a valid bundle: the fast engine refuses it, naming this reason.
            entry["op"], entry["unsupported"] = None, str(exc)
        layers.append(entry)

    graph_in = hls_model.get_input_variables()
    graph_out = hls_model.get_output_variables()
    axi = _axi_types(hls_model, firmware / f"{project}_axi.h")
    axi["n_in"] = int(sum(np.prod(v.shape) for v in graph_in))
    axi["n_out"] = int(sum(np.prod(v.shape) for v in graph_out))
    graph = {
        "format": GRAPH_FORMAT,
        "version": GRAPH_VERSION,
        "hls4ml_version": hls4ml.__version__,
        "backend": type(cfg.backend).__name__,
        "project_name": project,
        "io_type": io_type,
        "axi": axi,
        "inputs": list(hls_model.inputs),
        "outputs": list(hls_model.outputs),
        "output_cpp_names": [v.name for v in graph_out],
        "layers": layers,
        "unsupported_layers": [
            f"{e['name']} ({e['class']}{': ' + e['unsupported'] if e.get('unsupported') else ''})"
            for e in layers
            if e["op"] is None
        ],
    }
    return {"graph": graph, "arrays": arrays}


def _axi_types(hls_model: Any, axi_header: Path) -> dict[str, Any]:
    """The AXI-Stream element types ``T_in``/``T_out`` (VivadoAccelerator); the model's own types otherwise."""
    out: dict[str, Any] = {}
    declared = {}
    if axi_header.is_file():
        for m in re.finditer(r"typedef\s+(.+?)\s+(T_in|T_out)\s*;", axi_header.read_text()):
            declared[m.group(2)] = parse_cpp_type(m.group(1))
    acc = hls_model.config.get_config_value("AcceleratorConfig") or {}
    prec = acc.get("Precision", {}) if isinstance(acc, dict) else {}
    for key, cfg_key, var in (
        ("in", "Input", hls_model.get_input_variables()[0]),
        ("out", "Output", hls_model.get_output_variables()[0]),
    ):
        t_name = "T_in" if key == "in" else "T_out"
        if prec.get(cfg_key):
            t = parse_cpp_type(prec[cfg_key])
        else:
            t = {"name": var.type.name, **_precision_dict(var.type.precision)}
        if t_name in declared and not _same_type(t, declared[t_name]):
            theirs = declared[t_name]["cpp"]
            raise FirmwareGraphError(
                f"AXI type {t_name} is {t['cpp']} in the hls4ml config but {theirs} in {axi_header.name}"
            )
        t["name"] = t_name if t_name in declared else t.get("name", t_name)
        out[key] = t
    return out


def write_firmware_graph(hls_model: Any, out_dir: str | Path) -> dict[str, str]:
    """Write ``graph.json`` and ``weights.npz`` describing ``hls_model``'s firmware into ``out_dir``.

    Args:
        hls_model: the written hls4ml model (see :func:`export_firmware_graph`).
        out_dir: destination folder (created), e.g. ``<bundle>/firmware``.

    Returns:
        ``{"graph": path, "weights": path}`` of the two files.

    A model the export does not understand (an unexpected error, not a disagreement with the C++) still builds:
    the graph then records the error, and the fast engine refuses the bundle with it.

    Raises:
        FirmwareGraphError: see :func:`export_firmware_graph`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        exported = export_firmware_graph(hls_model)
    except FirmwareGraphError:
        raise  # the model and its C++ disagree: no bundle
    except Exception as exc:  # noqa: BLE001 - a model this export does not understand must not stop the build
        log.warning("firmware graph export failed (%s); the fast engine will refuse this bundle", exc, exc_info=True)
        exported = {
            "graph": {
                "format": GRAPH_FORMAT,
                "version": GRAPH_VERSION,
                "error": f"{type(exc).__name__}: {exc}",
                "layers": [],
                "unsupported_layers": [],
            },
            "arrays": {},
        }
    graph = dict(exported["graph"])
    graph["weights_file"] = WEIGHTS_FILE
    (out / GRAPH_FILE).write_text(json.dumps(graph, indent=1) + "\n")
    np.savez_compressed(out / WEIGHTS_FILE, **exported["arrays"])
    return {"graph": str(out / GRAPH_FILE), "weights": str(out / WEIGHTS_FILE)}


# ------------------------------------------------------------------------------------------ existing bundles
#: Generated files whose bytes must match for a re-conversion to describe an existing bundle's firmware.
_FIRMWARE_FILES = ("firmware/defines.h", "firmware/parameters.h", "firmware/{p}.cpp", "firmware/{p}_axi.h")


def differing_firmware_files(ours: str | Path, theirs: str | Path, project: str = "myproject") -> list[str]:
    """The generated files (types, layer configs, top function, every weight file) that differ between two projects.

    Args:
        ours: a freshly written hls4ml project.
        theirs: the project it should reproduce.
        project: the hls4ml project name.

    Returns:
        Project-relative paths of the files that differ or are missing in ``theirs`` (empty: the same firmware).
    """
    ours, theirs = Path(ours), Path(theirs)
    names = [f.format(p=project) for f in _FIRMWARE_FILES]
    names += sorted(p.relative_to(ours).as_posix() for p in (ours / "firmware" / "weights").glob("*.txt"))
    return [n for n in names if not (theirs / n).is_file() or (theirs / n).read_bytes() != (ours / n).read_bytes()]


def graph_for_bundle(bundle_dir: str | Path, out_dir: str | Path, work_dir: str | Path | None = None) -> dict[str, str]:
    """Write the firmware graph of a bundle built before bundles carried one, without touching the bundle.

    The bundle's ``model.h5`` is converted again with the settings its manifest records; the graph is written only
    if the regenerated firmware (types, layer configs, top function, every weight file) is byte-identical to the
    bundle's, so it describes exactly the firmware the bundle's C-simulation was compiled from.

    Args:
        bundle_dir: the overlay bundle.
        out_dir: where ``graph.json`` and ``weights.npz`` go (outside the bundle: its manifest hashes every file).
        work_dir: scratch folder for the re-conversion (default: a temporary folder).

    Returns:
        Paths of the two files.

    Raises:
        FirmwareGraphError: the re-conversion differs from the bundle's firmware.
    """
    import tempfile

    from board.bundle import load_bundle
    from training.keras_compat import keras  # noqa: F401  (before hls4ml: selects tf-keras)
    from training.train import load_trained_model

    bundle = load_bundle(bundle_dir)
    from hls_build.config import HlsSettings, convert, prepare_model, write_project
    from hls_build.csim import fix_generated_sources

    m = bundle.manifest
    hls = m.hls
    project = hls.get("project_name", "myproject")
    settings = HlsSettings(
        board=m.board,
        clock_mhz=float(hls.get("clock_mhz", 100.0)),
        reuse_factor=int(hls.get("reuse_factor", 64)),
        strategy=str(hls.get("strategy", "Resource")),
        io_type=str(hls.get("io_type", "io_stream")),
        fuse_relu=bool(hls.get("fused_relus")),  # bundles from before hls_build.fuse have none
    )
    model = load_trained_model(bundle.path("model.h5"))
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        project_dir = Path(tmp) / "hls"
        hls_model = convert(
            prepare_model(model)[0],
            settings,
            project_dir,
            project_name=project,
            backend=hls.get("backend", "VivadoAccelerator"),
            input_type=m.input.fixed_point,
            output_type=m.output.fixed_point,
        )
        write_project(hls_model)
        fix_generated_sources(project_dir, project)
        differ = differing_firmware_files(project_dir, bundle.path(hls.get("project_dir", "hls")), project)
        if differ:
            raise FirmwareMismatchError(
                f"{bundle.root}: converting its model.h5 again gives different firmware ({', '.join(differ[:5])}); "
                "rebuild the bundle instead"
            )
        return write_firmware_graph(hls_model, out_dir)


def main(argv: list[str] | None = None) -> int:
    """``python -m hls_build.firmware_graph BUNDLE --out DIR``: a graph for an existing bundle (see above)."""
    import argparse

    parser = argparse.ArgumentParser(description=graph_for_bundle.__doc__.splitlines()[0])
    parser.add_argument("bundle", help="overlay bundle folder")
    parser.add_argument("--out", required=True, help="folder for graph.json and weights.npz (outside the bundle)")
    args = parser.parse_args(argv)

    def work() -> int:
        files = graph_for_bundle(args.bundle, args.out)
        print(f"wrote {files['graph']} and {files['weights']}")
        return 0

    from board.cli import run

    return run(work)  # exit 1: the re-conversion differs (FirmwareMismatchError); 2: bad input


if __name__ == "__main__":
    raise SystemExit(main())
