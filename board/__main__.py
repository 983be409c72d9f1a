"""Command line of the board runtime: ``python -m board {list,validate,doctor,bench,demo,remote-bench}``.

Examples::

    python -m board list                                   # bundles under the overlay roots, this board's first
    python -m board validate overlays/pynq-z2/resnet8_w8a8
    python -m board doctor --bundle resnet8_w8a8           # bring-up checks: pynq, board, CMA, overlay, DMA, clock
    python -m board bench --bundle resnet8_w8a8 -n 1000 --batch-size 100 --batch-sizes 1,10,100
    python -m board bench --bundle overlays/zcu104/resnet8_w8a8              # power from PMBus on the ZCU104
    python -m board bench --bundle ... --external-power-watts 2.9 --external-idle-watts 2.4   # PYNQ-Z2 + meter
    python -m board bench --bundle resnet8_w8a8 --mlperf          # MLPerf Tiny's method, next to hls4ml's result
    python -m board bench --bundle overlays/pynq-z2/resnet8_w8a8 --reference-only   # CPU figures on this machine
    python -m board demo                                   # classify a few test images with the first bundle
    python -m board remote-bench --host xilinx@192.168.2.99 --bundle overlays/pynq-z2/resnet8_w8a8 -- -n 10000

``bench --bundle`` takes a folder, ``<board>/<model_id>`` or a bare model id looked up in the overlay roots
(``$ZYNQ_RESNET_OVERLAYS``, ``./overlays``, ...; see :mod:`board.registry`). On a board, a bundle built for another
board is refused; ``--board`` overrides the detection.

Every expected failure (a :class:`~board.errors.BoardError`: bad bundle, missing data, DMA error or timeout,
missing tool) ends with one ``error: ...`` line on stderr and exit status 2; a check that fails (``bench``: the
fast engine's outputs differ from the C-simulation's; the report is still written) exits with 1; Ctrl-C exits
with 130. Progress and
diagnostics go to stderr through ``logging`` (and a progress bar on a terminal); results (tables, the report)
go to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from board import __version__
from board.bundle import Bundle, load_bundle
from board.cli import log_level, run
from board.errors import EXIT_OK, BoardError, BundleError, CheckFailedError, InputError

log = logging.getLogger("board")

DEMO_IMAGES = 8
REMOTE_DIR = "zynq_resnet"


def _running_on(args: argparse.Namespace) -> str:
    from board.registry import detect_board, normalise_board

    board = getattr(args, "board", "auto")
    return detect_board() if board in (None, "auto") else normalise_board(board)


# ------------------------------------------------------------------------------------------------------- bench
def _cmd_bench(args: argparse.Namespace) -> int:
    from board.bench import render_markdown, run_bench
    from board.power import PowerOptions

    power = PowerOptions(
        mode=args.power,
        rails=tuple(args.power_rail) if args.power_rail else PowerOptions.rails,
        interval_s=args.power_interval,
        idle_s=args.idle_seconds,
        external_watts=args.external_power_watts,
        external_idle_watts=args.external_idle_watts,
    )
    if args.mlperf:
        # MLPerf Tiny's method (board/mlperf.py): accuracy on the 200-image subset and the test set, batch-1
        # throughput windows of >= 10 s (median), energy where power is available, next to the published result.
        from board.mlperf import render_mlperf, run_mlperf

        mreport, mout = run_mlperf(
            args.bundle,
            n=args.n,
            out_dir=args.out,
            cifar10_dir=args.cifar10_dir,
            duration_s=args.mlperf_duration,
            windows=args.mlperf_windows,
            batch_size=args.batch_size,
            timeout_s=args.timeout,
            board=None if args.board == "auto" else args.board,
            engine=args.engine,
            power=power,
        )
        sys.stdout.write(render_mlperf(mreport))
        log.info("MLPerf report written to %s", mout)
        return EXIT_OK
    reference = "only" if args.reference_only else "off" if args.no_reference else "auto"
    report, out = run_bench(
        args.bundle,
        n=args.n,
        batch_size=args.batch_size,
        out_dir=args.out,
        cifar10_dir=args.cifar10_dir,
        onnx_threads=args.onnx_threads,
        timeout_s=args.timeout,
        batch_sizes=args.batch_sizes,
        sweep_images=args.sweep_images,
        reference=reference,
        power=power,
        board=None if args.board == "auto" else args.board,
        plots=not args.no_plots,
        progress=args.progress,
        engine=args.engine,
        csim_check=args.csim_check,
        reference_engine=args.reference_engine,
    )
    sys.stdout.write(render_markdown(report))
    log.info("report written to %s", out)
    cross_check = (report.get("engine") or {}).get("csim_check")
    if cross_check and not cross_check["bit_exact"]:
        raise CheckFailedError(
            f"the fast engine and the hls4ml C-simulation differ on {cross_check['images'] - cross_check['identical']}"
            f" of {cross_check['images']} images: the emulated figures are not the firmware's (report kept in {out})"
        )
    return EXIT_OK


# -------------------------------------------------------------------------------------------------------- list
def _cmd_list(args: argparse.Namespace) -> int:
    from board.registry import HOST, default_roots, find_bundles

    if args.root is not None:
        roots = [Path(args.root)]
        if not roots[0].is_dir():
            raise BundleError(f"{roots[0]} is not a folder; pass --root with the overlays folder")
    else:
        roots = default_roots()
    running_on = _running_on(args)
    only = None if args.all or running_on == HOST else running_on
    entries = find_bundles(roots, board=only)
    log.info(
        "this machine: %s; overlay roots: %s",
        running_on,
        ", ".join(map(str, roots)) or "none (set $ZYNQ_RESNET_OVERLAYS or pass --root)",
    )
    if not entries:
        which = f" for {only}" if only else ""
        if roots:
            where = ", ".join(map(str, roots))
            print(f"no bundles{which} found under {where} (expected <root>/<board>/<model_id>/manifest.json)")
        else:
            print("no overlay roots exist: set $ZYNQ_RESNET_OVERLAYS, pass --root, or run from a folder with overlays/")
        return EXIT_OK
    rows = []
    for e in entries:
        if e.ok:
            rows.append((e.board, e.model_id, str(e.emulated).lower(), str(e.has_bitstream).lower(), str(e.path)))
        else:
            rows.append((e.board, e.model_id, "?", "?", f"{e.path} (unreadable: {e.error})"))
    header = ("board", "model_id", "emulated", "has_bitstream", "path")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- validate
def _cmd_validate(args: argparse.Namespace) -> int:
    from board.registry import check_board, check_hwh_cache, ensure_fresh_hwh_cache, resolve_bundle

    running_on = _running_on(args)
    target: Any = args.path
    if not Path(target).exists():
        try:
            target = resolve_bundle(target, running_on)
        except BundleError:
            pass  # load_bundle below says what is missing at that path
    bundle = load_bundle(target)
    m = bundle.manifest
    check_board(m, running_on, bundle.root)
    from board.hwh import check_hardware_files

    hardware = check_hardware_files(bundle)  # the .bit's part, the .hwh's design, DMA and accelerator
    cache = check_hwh_cache(bundle)
    if cache.stale:
        cache = ensure_fresh_hwh_cache(bundle, action="clear" if args.clear_stale_cache else "refuse")
    kind = "emulated" if m.emulated else "bitstream"
    print(f"OK {bundle.root}: {m.board}/{m.model_id} ({kind}), {len(m.files)} files match their sha256")
    if hardware:
        bit = hardware["bit"]
        print(f"   .bit: part {bit['part']}, Vivado {bit['version']}, {bit['date']}")
        print(f"   .hwh: DMA {hardware['dma']} ({hardware['dma_vlnv']}), accelerator {hardware['accelerator']}")
    if m.bitstream:
        print(f"   .hwh metadata cache: {cache.state}: {cache.detail}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------------ doctor
def _cmd_doctor(args: argparse.Namespace) -> int:
    from board.doctor import doctor_exit, render_doctor, run_doctor

    report = run_doctor(
        args.bundle,
        board=None if args.board == "auto" else args.board,
        timeout_s=args.timeout,
        check_timeout_s=args.check_timeout,
        engine=args.engine,
    )
    sys.stdout.write(render_doctor(report))
    if args.json:
        try:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise BoardError(f"cannot write {args.json}: {exc}") from exc
    doctor_exit(report)  # exit 1 when a check failed
    return EXIT_OK


# -------------------------------------------------------------------------------------------------------- demo
def _pick_bundle(running_on: str, spec: str | None) -> Bundle:
    from board.registry import first_bundle, open_bundle

    return open_bundle(spec, running_on) if spec else first_bundle(running_on)


def _cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from board.cifar10 import CLASSES, load_split
    from board.driver import Accelerator

    if args.n < 1:
        raise InputError(f"-n must be >= 1, got {args.n}")
    running_on = _running_on(args)
    bundle = _pick_bundle(running_on, args.bundle)
    m = bundle.manifest
    classes = list(m.classes) or list(CLASSES)
    test = load_split("test", directory=args.cifar10_dir).head(args.n)
    print(f"bundle {m.board}/{m.model_id} at {bundle.root} ({'host emulation' if m.emulated else 'bitstream'})")
    t0 = time.perf_counter()
    with Accelerator(bundle, batch_size=min(len(test), 100)) as acc:
        print(f"engine: {acc.engine} ({acc.engine_description})")
        logits = acc.predict(test.images)
        timings = acc.take_timings()
        engine = acc.engine
    seconds = time.perf_counter() - t0
    preds = np.argmax(logits.reshape(len(test), -1), axis=1)
    width = max(len(c) for c in classes)
    print(f"{'#':>3}  {'label':<{width}}  {'prediction':<{width}}")
    for i, (label, pred) in enumerate(zip(test.labels, preds)):
        mark = "ok" if label == pred else "WRONG"
        print(f"{i:>3}  {classes[label]:<{width}}  {classes[pred]:<{width}}  {mark}")
    top1 = float(np.mean(preds == test.labels))
    dma_s = sum(t.seconds for t in timings)
    what = f"host emulation ({engine} engine), not board timings" if m.emulated else f"{m.board} DMA round trips"
    print(f"top-1 {100 * top1:.1f} % on {len(test)} test images; {dma_s / len(test) * 1e3:.2f} ms/image ({what})")
    out = Path(args.out) if args.out else Path("build") / "reports" / m.board / m.model_id / "demo"
    result = {
        "bundle": str(bundle.root),
        "board": m.board,
        "model_id": m.model_id,
        "emulated": bool(m.emulated),
        "engine": engine,
        "running_on": running_on,
        "images": len(test),
        "labels": [int(x) for x in test.labels],
        "predictions": [int(x) for x in preds],
        "classes": classes,
        "top1": top1,
        "dma_seconds": dma_s,
        "wall_seconds": seconds,
        "timing_label": what,
    }
    md = [f"# Demo: {m.model_id} on {m.board}", "", f"Timings: {what}.", ""]
    md += ["| # | label | prediction |", "|---:|---|---|"]
    md += [f"| {i} | {classes[lab]} | {classes[p]} |" for i, (lab, p) in enumerate(zip(test.labels, preds))]
    md += ["", f"top-1 {100 * top1:.1f} % on {len(test)} images."]
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "demo.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "demo.md").write_text("\n".join(md) + "\n")
    except OSError as exc:
        raise BoardError(f"cannot write the demo report into {out}: {exc}") from exc
    print(f"report: {out / 'demo.md'}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ remote-bench
def remote_bench_commands(
    host: str,
    bundle: Path,
    board: str,
    *,
    remote_dir: str = REMOTE_DIR,
    remote_python: str = "python3",
    sudo: bool = True,
    copy_bundle: bool = True,
    copy_runtime: bool = False,
    runtime_dir: Path | None = None,
    bench_args: Sequence[str] = (),
    local_out: Path,
    ssh_options: Sequence[str] = (),
) -> list[list[str]]:
    """The ssh/scp commands that run ``python -m board bench`` on a board and fetch its report.

    1. ``ssh``: remove the old copy of the bundle (a stale extra file would fail the sha256 check) and make the folders;
    2. ``scp -r``: copy the bundle to ``<remote_dir>/overlays/<board>/<name>`` (unless ``copy_bundle`` is False);
    3. ``scp -r``: copy this ``board`` package next to it when ``copy_runtime`` (else the board's installed one runs);
    4. ``ssh``: ``cd <remote_dir> && python3 -m board bench --bundle ... --out reports/<board>/<out name> ...`` in
       a login shell (PYNQ images activate their venv there), under ``sudo`` by default (pynq needs root);
    5. ``scp -r``: fetch the report folder into ``local_out``'s parent.

    ``remote_dir`` is relative to the remote home unless absolute. Nothing here opens a connection.
    """
    q = shlex.quote
    name = bundle.name
    rbundle = f"{remote_dir}/overlays/{board}/{name}"
    rout = f"{remote_dir}/reports/{board}/{local_out.name}"
    ssh = ["ssh", *ssh_options]
    scp = ["scp", "-r", "-q", *ssh_options]
    prepare = f"mkdir -p {q(f'{remote_dir}/overlays/{board}')} {q(f'{remote_dir}/reports/{board}')}"
    if copy_bundle:
        prepare = f"rm -rf {q(rbundle)} && " + prepare
    if copy_runtime:
        prepare += f" && rm -rf {q(f'{remote_dir}/board')}"
    cmds = [[*ssh, host, prepare]]
    if copy_bundle:
        cmds.append([*scp, str(bundle), f"{host}:{remote_dir}/overlays/{board}/"])
    if copy_runtime:
        src = runtime_dir if runtime_dir is not None else Path(__file__).resolve().parent
        cmds.append([*scp, str(src), f"{host}:{remote_dir}/"])
    bench = [remote_python, "-m", "board", "bench", "--bundle", f"overlays/{board}/{name}"]
    bench += ["--out", f"reports/{board}/{local_out.name}", *bench_args]
    inner = f"cd {q(remote_dir)} && " + ("PYTHONPATH=. " if copy_runtime else "") + " ".join(q(a) for a in bench)
    remote = f"sudo -E bash -lc {q(inner)}" if sudo else f"bash -lc {q(inner)}"
    cmds.append([*ssh, *(["-t"] if sudo else []), host, remote])
    cmds.append([*scp, f"{host}:{rout}", str(local_out.parent) + "/"])
    return cmds


def _cmd_remote_bench(args: argparse.Namespace) -> int:
    from board.bundle import read_manifest
    from board.registry import resolve_bundle

    bundle = Path(resolve_bundle(args.bundle, None))
    m = read_manifest(bundle)
    bench_args = list(args.bench_args)
    if bench_args[:1] == ["--"]:
        bench_args = bench_args[1:]
    for forbidden in ("--bundle", "--out"):
        if forbidden in bench_args:
            raise InputError(f"remote-bench sets {forbidden} itself; pass the other bench options after --")
    local_out = Path(args.out) if args.out else Path("build") / "reports" / m.board / f"{m.model_id}-remote"
    cmds = remote_bench_commands(
        args.host,
        bundle,
        m.board,
        remote_dir=args.remote_dir,
        remote_python=args.remote_python,
        sudo=not args.no_sudo,
        copy_bundle=not args.no_copy_bundle,
        copy_runtime=args.copy_runtime,
        bench_args=bench_args,
        local_out=local_out,
        ssh_options=[opt for o in args.ssh_option for opt in shlex.split(o)],
    )
    if args.dry_run:
        for c in cmds:
            print(shlex.join(c))
        return EXIT_OK
    local_out.parent.mkdir(parents=True, exist_ok=True)
    for c in cmds:
        log.info("$ %s", shlex.join(c))
        try:
            proc = subprocess.run(c, check=False)
        except FileNotFoundError as exc:
            raise BoardError(f"{c[0]} is not installed: remote-bench needs OpenSSH's ssh and scp ({exc})") from exc
        if proc.returncode != 0:
            raise BoardError(f"`{shlex.join(c)}` failed with exit status {proc.returncode}")
    print(f"report fetched into {local_out}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------------ parser
def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(prog="python -m board", description="PYNQ board runtime for CIFAR-10 overlays.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True)
    board_opt = argparse.ArgumentParser(add_help=False)
    board_opt.add_argument(
        "--board",
        default="auto",
        help="the board this runs on: auto (default: $ZYNQ_RESNET_BOARD, $BOARD, device tree), pynq-z2, zcu104, host",
    )

    bench = sub.add_parser(
        "bench", parents=[board_opt], help="benchmark a bundle on CIFAR-10 (FPGA or emulation vs ONNX vs Keras)"
    )
    bench.add_argument("--bundle", required=True, help="bundle folder, <board>/<model_id> or a model id")
    bench.add_argument(
        "-n", type=int, help="test images, from the first (default: all 10000 with a bitstream, 1000 emulated)"
    )
    bench.add_argument("--batch-size", type=int, default=100, help="images per DMA transfer (default 100)")
    bench.add_argument(
        "--mlperf",
        action="store_true",
        help="MLPerf Tiny's method: top-1 on its 200-image subset and the test set, batch-1 throughput (median of "
        "windows of >= 10 s), energy per inference where power is available, next to the published PYNQ-Z2 result",
    )
    bench.add_argument(
        "--mlperf-duration", type=_positive_float, default=10.0, help="seconds per MLPerf window (MLPerf: >= 10)"
    )
    bench.add_argument("--mlperf-windows", type=int, default=5, help="MLPerf performance windows (MLPerf: 5)")
    bench.add_argument(
        "--batch-sizes",
        help="batch-size sweep, e.g. 1,10,100 ('off' for none; default: 1,10,100 with a bitstream, off emulated)",
    )
    bench.add_argument("--sweep-images", type=int, help="images timed per swept batch size (default 1000; 20 emulated)")
    bench.add_argument("--out", help="report folder (default build/reports/<board>/<model_id>)")
    bench.add_argument("--cifar10-dir", help="CIFAR-10 python batches folder (default $CIFAR10_DIR, then Keras cache)")
    bench.add_argument("--onnx-threads", type=int, help="ONNX Runtime intra-op threads (default: all cores)")
    bench.add_argument("--timeout", type=float, help="seconds allowed per DMA batch (default scales with batch)")
    ref = bench.add_mutually_exclusive_group()
    ref.add_argument(
        "--reference-only",
        action="store_true",
        help="only the ONNX references, on this machine (no FPGA pass)",
    )
    ref.add_argument("--no-reference", action="store_true", help="skip the ONNX references")
    bench.add_argument(
        "--reference-engine",
        choices=("auto", "ort", "numpy"),
        default="auto",
        help="what runs the ONNX references (float and 8-bit): onnxruntime (ort) or the numpy evaluator (numpy, "
        "for boards without onnxruntime such as the PYNQ-Z2); auto: onnxruntime when it imports, else numpy",
    )
    bench.add_argument("--power", choices=("auto", "off"), default="auto", help="power measurement (default auto)")
    bench.add_argument(
        "--power-rail", action="append", help="PMBus rail to record, repeatable (default 12V: the ZCU104's input)"
    )
    bench.add_argument("--power-interval", type=_positive_float, default=0.05, help="PMBus sampling interval, s")
    bench.add_argument("--idle-seconds", type=float, default=2.0, help="idle baseline before the run, s (default 2)")
    bench.add_argument(
        "--external-power-watts",
        type=_positive_float,
        help="PYNQ-Z2: an external meter's mean reading during the run, in W (reported as user-entered)",
    )
    bench.add_argument(
        "--external-idle-watts", type=_positive_float, help="the same meter's idle reading (overlay loaded), in W"
    )
    bench.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    bench.add_argument(
        "--engine",
        choices=("auto", "fast", "csim"),
        default="auto",
        help="emulated overlay: bit-exact numpy engine (fast) or hls4ml C-simulation (csim); auto: fast when the "
        "bundle has its firmware graph",
    )
    bench.add_argument(
        "--csim-check",
        type=int,
        default=None,
        help="with the fast engine: images also run on the C-simulation and compared bit for bit (default 100, 0: off)",
    )
    prog = bench.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true", default=None, help="force progress bars")
    prog.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    bench.set_defaults(func=_cmd_bench)

    lst = sub.add_parser("list", parents=[board_opt], help="list the bundles in the overlay roots")
    lst.add_argument("--root", help="overlays folder (default: $ZYNQ_RESNET_OVERLAYS, ./overlays, the checkout's)")
    lst.add_argument("--all", action="store_true", help="on a board, list other boards' bundles too")
    lst.set_defaults(func=_cmd_list)

    val = sub.add_parser(
        "validate", parents=[board_opt], help="check a bundle: manifest, sha256 of every file, board, .hwh cache"
    )
    val.add_argument("path", help="bundle folder, <board>/<model_id> or a model id")
    val.add_argument(
        "--clear-stale-cache",
        action="store_true",
        help="remove pynq's cached overlay metadata when it was not parsed from this bundle's .hwh",
    )
    val.set_defaults(func=_cmd_validate)

    doc = sub.add_parser(
        "doctor",
        parents=[board_opt],
        help="check this board (or host) and a bundle: pynq, board, memory, bundle, overlay, DMA, PL clock",
    )
    doc.add_argument("--bundle", help="bundle to check (default: the first for this board; emulated on the host)")
    doc.add_argument("--timeout", type=_positive_float, default=10.0, help="seconds allowed per DMA batch (10)")
    doc.add_argument("--check-timeout", type=_positive_float, default=120.0, help="seconds allowed per check (120)")
    doc.add_argument("--engine", choices=("auto", "fast", "csim"), default="auto", help="emulated bundles' engine")
    doc.add_argument("--json", help="also write the checks to this JSON file")
    doc.set_defaults(func=_cmd_doctor)

    demo = sub.add_parser("demo", parents=[board_opt], help="classify a few test images with the first bundle found")
    demo.add_argument("--bundle", help="bundle (default: the first for this board; emulated on the host)")
    demo.add_argument("-n", type=int, default=DEMO_IMAGES, help=f"test images (default {DEMO_IMAGES})")
    demo.add_argument("--out", help="folder for demo.json/demo.md (default build/reports/<board>/<model_id>/demo)")
    demo.add_argument("--cifar10-dir", help="CIFAR-10 python batches folder (default $CIFAR10_DIR, then Keras cache)")
    demo.set_defaults(func=_cmd_demo)

    rb = sub.add_parser(
        "remote-bench",
        help="run bench on a board over ssh and fetch the report (options after -- go to the remote bench)",
    )
    rb.add_argument("--host", required=True, help="ssh destination, e.g. xilinx@192.168.2.99")
    rb.add_argument("--bundle", required=True, help="local bundle folder, <board>/<model_id> or a model id")
    rb.add_argument("--remote-dir", default=REMOTE_DIR, help=f"working folder on the board (default ~/{REMOTE_DIR})")
    rb.add_argument("--remote-python", default="python3", help="python on the board (default python3 of its venv)")
    rb.add_argument("--no-sudo", action="store_true", help="do not run the remote bench under sudo")
    rb.add_argument("--no-copy-bundle", action="store_true", help="the bundle is already in the remote folder")
    rb.add_argument("--copy-runtime", action="store_true", help="copy this board package too (no install there)")
    rb.add_argument("--ssh-option", action="append", default=[], help="extra ssh and scp option, e.g. '-o Port=2222'")
    rb.add_argument("--out", help="local report folder (default build/reports/<board>/<model_id>-remote)")
    rb.add_argument("--dry-run", action="store_true", help="print the ssh/scp commands, run nothing")
    rb.add_argument("bench_args", nargs=argparse.REMAINDER, help="-- then options for the remote bench")
    rb.set_defaults(func=_cmd_remote_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 a check failed, 2 bad input, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    return run(lambda: args.func(args), level=log_level(args.verbose, args.quiet))


if __name__ == "__main__":
    sys.exit(main())
