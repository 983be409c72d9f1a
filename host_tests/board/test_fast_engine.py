"""The fast numpy engine against the hls4ml C-simulation: bit-identical raw outputs on real CIFAR-10 test images.

Runs in the board environment (numpy, pynq; no TensorFlow, no hls4ml). The bundles compared:

* ``test``: the small real ResNet-8 <8,3> bundle the host tests build into ``--test-overlays``;
* ``overlay``: the trained ``overlays/pynq-z2/resnet8_q8_3`` when present, with its own firmware graph or one
  written beside it by ``python -m hls_build.firmware_graph <bundle> --out build/firmware-graphs/<board>/<id>``;
* ``resnet20``: ``build/test-overlays-r20/pynq-z2/resnet20_q8_3`` when someone built it (slow tests only).

When outputs differ, the failure names the first diverging layer, found by tracing every layer of a recompiled
C-simulation (``board.csim_runner``) and of the engine on the first differing image.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from board_toys import missing_test_bundle

from board.bundle import load_bundle
from board.csim_runner import CSimRunner, CSimTracer, first_divergence
from board.errors import BundleError, InputError
from board.fast_engine import FastEngine
from board.fixed_point import FixedPoint, Rounding, Saturation, cast_raw

ROOT = Path(__file__).resolve().parents[2]
GRAPHS = ROOT / "build" / "firmware-graphs"
TRACE_BUILD = ROOT / "build" / "csim-trace"


def _candidates(test_overlays: Path) -> dict[str, tuple[Path, Path | None]]:
    """name -> (bundle folder, graph folder or None for the bundle's own)."""
    overlay = ROOT / "overlays" / "pynq-z2" / "resnet8_q8_3"
    return {
        "test": (test_overlays / "pynq-z2" / "resnet8_q8_3", None),
        "overlay": (overlay, GRAPHS / "pynq-z2" / "resnet8_q8_3"),
        "resnet20": (ROOT / "build" / "test-overlays-r20" / "pynq-z2" / "resnet20_q8_3", None),
    }


def _open(name: str, test_overlays: Path) -> tuple[object, FastEngine]:
    root, graph_dir = _candidates(test_overlays)[name]
    # Only the host tests' bundle is required (under `make test`); the others are compared when someone built them.
    missing = missing_test_bundle if name == "test" else pytest.skip
    if not (root / "manifest.json").is_file():
        missing(f"no {name} bundle at {root}")
    bundle = load_bundle(root)
    try:
        return bundle, FastEngine.from_bundle(bundle)
    except BundleError:
        if graph_dir is None or not (graph_dir / "graph.json").is_file():
            missing(f"{root} carries no firmware graph (built before bundles had one) and none is in {graph_dir}")
        return bundle, FastEngine.from_bundle(bundle, graph_dir=graph_dir)


@pytest.fixture(scope="session")
def test_images(cifar10_dir) -> np.ndarray:
    from board.cifar10 import load_split

    return load_split("test", cifar10_dir).images


@pytest.fixture(scope="session", params=["test", "overlay"])
def engine_case(request, test_overlays):
    return request.param, *_open(request.param, test_overlays)


def _explain(bundle, engine: FastEngine, raw: np.ndarray) -> str:
    """Name the first diverging layer on these images (recompiles the C-simulation with traces)."""
    try:
        tracer = CSimTracer.from_bundle(bundle, engine.graph, TRACE_BUILD)
        div = first_divergence(tracer.trace(raw), engine.trace(raw), engine.layers)
    except Exception as exc:  # noqa: BLE001 - the comparison failed already; say why the diagnosis did too
        return f"(could not trace the C-simulation: {exc})"
    return str(div) if div else "every layer agrees on the first differing image (the AXI output cast differs)"


def _assert_identical(bundle, engine: FastEngine, raw: np.ndarray, processes: int) -> None:
    fast = engine.predict_raw(raw)
    with CSimRunner.from_bundle(bundle, processes=processes) as csim:
        ref = csim.run(raw)
    assert fast.dtype == ref.dtype and fast.shape == ref.shape
    bad = np.flatnonzero((fast != ref).any(axis=1))
    if len(bad):
        pytest.fail(
            f"{len(bad)} of {len(raw)} images differ from the C-simulation (first: image {bad[0]}); "
            + _explain(bundle, engine, raw[bad[:1]])
        )


# --------------------------------------------------------------------------------------------- bit exactness
def test_bit_identical_to_csim_on_100_test_images(engine_case, test_images):
    _, bundle, engine = engine_case
    _assert_identical(bundle, engine, test_images[:100].reshape(100, -1), processes=2)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test", "overlay", "resnet20"])
def test_bit_identical_to_csim_on_500_test_images(name, test_overlays, test_images):
    bundle, engine = _open(name, test_overlays)
    _assert_identical(bundle, engine, test_images[:500].reshape(500, -1), processes=2)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test", "overlay", "resnet20"])
def test_every_layer_matches_the_traced_csim(name, test_overlays, test_images):
    bundle, engine = _open(name, test_overlays)
    raw = test_images[100:103].reshape(3, -1)
    ref = CSimTracer.from_bundle(bundle, engine.graph, TRACE_BUILD).trace(raw)
    cand = engine.trace(raw)
    assert set(ref) == set(engine.layers) - set(engine.graph["inputs"])
    assert first_divergence(ref, cand, engine.layers) is None


def test_first_divergence_names_the_layer_with_a_changed_weight(engine_case, test_images):
    _, _, engine = engine_case
    conv = [la for la in engine.graph["layers"] if la["op"] == "conv2d"][1]
    arrays = {k: v.copy() for k, v in _arrays(engine).items()}
    arrays[conv["weights"]["weight"]["key"]][0, :] += 1  # one more LSB on every filter's first tap
    broken = FastEngine(engine.graph, arrays)
    raw = test_images[:4].reshape(4, -1)
    div = first_divergence(engine.trace(raw), broken.trace(raw), engine.layers)
    assert div is not None and div.layer == conv["outputs"][0]["name"]
    assert div.previous is not None and div.differing > 0
    assert repr(conv["name"]) in str(div)


def test_graph_types_are_the_ones_in_defines_h(engine_case):
    _, bundle, engine = engine_case
    defines = bundle.path("hls/firmware/defines.h").read_text()
    typedefs = dict((m.group(2), m.group(1)) for m in re.finditer(r"typedef\s+(.+?)\s+(\w+);", defines))
    for layer in engine.graph["layers"]:
        for o in layer["outputs"]:
            t = o["type"]
            cpp = typedefs[t["name"]]
            inner = re.match(r"nnet::array<(.*),\s*[\d*]+>", cpp).group(1)
            m = re.match(r"ap_(u?)fixed<(\d+),(-?\d+)(?:,(\w+),(\w+))?", inner)
            assert m, inner
            assert (m.group(1) == "", int(m.group(2)), int(m.group(3))) == (t["signed"], t["width"], t["integer"])
            assert (m.group(4) or "AP_TRN", m.group(5) or "AP_WRAP") == (t["rounding"], t["saturation"])


# --------------------------------------------------------------------------------------------------- the API
def test_predict_is_predict_raw_decoded(engine_case, test_images):
    _, _, engine = engine_case
    logits = engine.predict(test_images[:8])
    raw = engine.predict_raw(test_images[:8].reshape(8, -1))
    out = FixedPoint.parse(str(engine.bundle.manifest.output.fixed_point))
    np.testing.assert_array_equal(logits, out.decode(raw))
    assert engine.predict(test_images[0]).shape == (10,)


def test_chunks_and_threads_do_not_change_results(engine_case, test_images):
    _, _, engine = engine_case
    raw = test_images[:20].reshape(20, -1)
    ref = engine.predict_raw(raw)
    other = FastEngine(engine.graph, _arrays(engine), engine.in_dtype, engine.out_dtype, chunk=3, threads=2)
    np.testing.assert_array_equal(other.predict_raw(raw), ref)


def _arrays(engine: FastEngine) -> dict[str, np.ndarray]:
    b = engine.bundle
    path = b.path(b.manifest.hls["firmware_weights"]) if "firmware_weights" in b.manifest.hls else None
    if path is None or not path.is_file():
        path = GRAPHS / b.manifest.board / b.manifest.model_id / "weights.npz"
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def test_is_a_kernel_of_the_emulated_device(engine_case):
    from board.emulated_device import Kernel

    _, bundle, engine = engine_case
    assert isinstance(engine, Kernel)
    # The logits travel in the container of their (derived, exact) type: int16 or int32.
    out = np.dtype(bundle.manifest.output.container)
    assert (engine.n_in, engine.n_out, engine.in_dtype, engine.out_dtype) == (3072, 10, np.dtype("uint8"), out)


def test_bad_raw_input_is_refused(engine_case):
    _, _, engine = engine_case
    with pytest.raises(InputError):
        engine.predict_raw(np.zeros((2, 100), np.uint8))
    with pytest.raises(InputError):
        engine.predict_raw(np.zeros((2, 3072), np.float32))


def test_bundle_without_graph_says_to_rebuild(make_bundle):
    root = make_bundle("nograph")
    with pytest.raises(BundleError, match="Rebuild it"):
        FastEngine.from_bundle(root)


def test_csim_runner_processes_agree_with_in_process(engine_case, test_images):
    _, bundle, _ = engine_case
    raw = test_images[:12].reshape(12, -1)
    with CSimRunner.from_bundle(bundle) as one, CSimRunner.from_bundle(bundle, processes=2) as two:
        np.testing.assert_array_equal(two.run(raw), one.run(raw))


# --------------------------------------------------------------------------------------- ap_fixed cast rules
@pytest.mark.parametrize("rounding", list(Rounding))
@pytest.mark.parametrize("saturation", list(Saturation))
def test_cast_agrees_with_the_float_codec(rounding, saturation):
    """Two independent implementations of ap_fixed assignment: integer shifts here, float64 in board.fixed_point."""
    rng = np.random.default_rng(7)
    for width, integer, signed in ((8, 3, False), (8, 3, True), (16, 6, True), (12, -2, True), (10, 12, False)):
        fp = FixedPoint(width, integer, signed, rounding, saturation)
        t = fp
        for extra in (0, 1, 3, 9, -2):
            src_frac = fp.frac_bits + extra
            raw = rng.integers(-(1 << (width + 4)), 1 << (width + 4), 4000)
            # Ties and extremes on purpose: exact halves, the range ends, zero.
            raw[:8] = [
                0,
                1,
                -1,
                1 << max(extra - 1, 0),
                -(1 << max(extra - 1, 0)),
                3 << max(extra - 1, 0),
                1 << 40,
                -(1 << 40),
            ]
            expected = fp.quantize_raw(np.ldexp(raw.astype(np.float64), -src_frac))
            np.testing.assert_array_equal(cast_raw(raw, src_frac, t), expected, err_msg=f"{fp} from F={src_frac}")
            # The int32 path the engine takes for small ranges computes the same codes.
            small = np.abs(raw) < (1 << 28)
            got = cast_raw(raw[small].astype(np.int32), src_frac, t, work=np.int32)
            np.testing.assert_array_equal(got, expected[small], err_msg=f"{fp} int32 from F={src_frac}")


def test_runs_behind_the_emulated_dma(engine_case, test_images):
    """The engine as the emulated device's kernel: the real pynq DMA driver path gives the same raw codes."""
    from board.driver import Accelerator
    from board.emulated_device import EmulatedDevice

    _, bundle, engine = engine_case
    device = EmulatedDevice.from_bundle(bundle, kernel=engine)
    acc = Accelerator(bundle, batch_size=50, device=device)
    try:
        got = acc.predict_raw(test_images[:120])
    finally:
        acc.close()
        device.close()
    np.testing.assert_array_equal(got, engine.predict_raw(test_images[:120].reshape(120, -1)))


def test_unsupported_layer_is_refused_by_name(engine_case):
    _, _, engine = engine_case
    graph = {**engine.graph, "layers": [dict(la) for la in engine.graph["layers"]]}
    graph["layers"][3].update(op=None, unsupported="matrix-multiply kernel 'DenseMystery' is not known")
    with pytest.raises(BundleError, match=rf"{graph['layers'][3]['name']}.*DenseMystery"):
        FastEngine(graph, _arrays(engine))


def test_graph_that_failed_to_export_is_refused_with_the_reason():
    graph = {"format": "hls4ml-firmware-graph", "version": 1, "error": "KeyError: 'n_filt'", "layers": []}
    with pytest.raises(BundleError, match="could not be exported.*n_filt"):
        FastEngine(graph, {})
