"""The ``wonderland`` command."""

from __future__ import annotations

import argparse
import os
import sys


def _info(_args) -> int:
    import platform

    import numpy as np

    import wonderland as wl
    from wonderland import backend
    from wonderland.backend import threads
    from wonderland.experiments.runner import blas_libraries

    libraries = blas_libraries()           # NumPy's and SciPy's each bring one
    blas_rows = [(f"BLAS ({b['owner']})" if len(libraries) > 1 else "BLAS",
                  f"{b['library']} {b['version']} ({b['path']})") for b in libraries] or \
        [("BLAS", "none found")]
    blas_rows.append(("BLAS threads", ", ".join(f"{b['threads']} ({b['owner']})"
                                                for b in libraries) or "—"))
    rows = [
        ("wonderland", wl.__version__),
        ("python", platform.python_version()),
        ("backend", f"{backend.name} {np.__version__}"),
        ("device", backend.device),
        ("default float dtype", str(wl.get_default_dtype())),
        *blas_rows,
        ("wonderland threads", f"{wl.get_num_threads()} (cores available: "
                               f"{threads.available_cores()})"),
        ("allocator", _allocator_status()),
        ("compiled kernels", _kernels_status()),
        ("jit fusion", _fusion_status()),
        ("GPU (cuda)", _gpu_status()),
        ("MPI", _mpi_status()),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


def _allocator_status() -> str:
    from wonderland.backend import memory

    s = memory.allocator_settings()
    if not s:
        return f"system defaults ({memory.MALLOC_TUNING_ENV}=0, or not glibc)"
    return (f"keeps freed memory (mmap threshold {s.get('mmap_threshold', 0) >> 20} MiB, "
            f"trim threshold {s.get('trim_threshold', 0) >> 20} MiB)")


def _kernels_status() -> str:
    from wonderland.backend import compiled

    if compiled.ENABLED:
        return "numba"
    return "off (NumPy references: numba missing or WONDERLAND_KERNELS=numpy)"


def _fusion_status() -> str:
    from wonderland.backend import compiled
    from wonderland.core import fusion

    if not fusion.enabled():
        return "off (WONDERLAND_FUSION=0, or compiled kernels off)"
    try:
        return f"on (loops cached in {compiled.cache_dir()})"
    except OSError as exc:
        return f"on, but {exc}"


def _gpu_status() -> str:
    from wonderland.backend.cupy_backend import unavailable_reason

    why = unavailable_reason()
    return "available (CuPy)" if why is None else f"not available: {why}"


def _mpi_status() -> str:
    try:
        import mpi4py
    except ImportError:
        return "mpi4py not installed (pip install \"wonderland[mpi]\"); runs as one process"
    return f"mpi4py {mpi4py.__version__} (launch with mpiexec -n N)"


def _demo(args) -> int:
    from wonderland.demo import run

    return run(steps=args.steps)


# exit statuses of ``wonderland tour``
EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_OUTPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _fail(message, code) -> int:
    print(f"wonderland tour: {message}", file=sys.stderr)
    return code


def _output_problem(out) -> str | None:
    """Why ``out`` cannot hold the report (None when it can): checked by writing there."""
    import tempfile

    if os.path.exists(out) and not os.path.isdir(out):
        return f"{out} is a file, not a folder"
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".wonderland-probe-"):
            pass
    except OSError as exc:
        return f"cannot write to {out} ({exc.strerror or exc})"
    return None


def _format_number(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


DEFAULT_OUT, QUICK_OUT = "wonderland-out", os.path.join("wonderland-out", "quick")


def _summary(results, experiments) -> list:
    """The summary's lines: one per chapter, then each check with its threshold."""
    rows = [(ch, experiments[ch].title, f"{sum(c.passed for c in r.checks)}/{len(r.checks)}",
             f"{r.seconds:.1f} s") for ch, r in results.items()]
    head = ("chapter", "experiment", "checks", "time")
    widths = [max(len(row[i]) for row in rows + [head]) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    for row, r in zip(rows, results.values()):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        for c in r.checks:
            mark = "ok  " if c.passed else "FAIL"
            lines.append(f"    {mark} {c.description}: {_format_number(c.value)} {c.op} "
                         f"{_format_number(c.threshold)}{f' ({c.note})' if c.note else ''}")
    return lines


def _tour(args) -> int:
    from wonderland.experiments import EXPERIMENTS, available, run_tour

    if args.list:
        for ch in available():
            print(f"{ch:5s} {EXPERIMENTS[ch].title}")
        return EXIT_OK
    unknown = [c for c in args.chapters if c not in EXPERIMENTS]
    if unknown:
        return _fail(f"unknown chapter(s) {', '.join(unknown)}; available: "
                     f"{', '.join(available())}", EXIT_USAGE)
    chapters = args.chapters or available()
    options = {}
    if args.text:
        from wonderland.experiments.ch08_sequences import check_text

        try:
            check_text(args.text)
        except (OSError, ValueError) as exc:
            return _fail(f"--text: {exc}", EXIT_USAGE)
        options["text"] = args.text
    from wonderland.experiments.runner import would_replace

    if args.out is None:            # quick runs keep their own folder beside full ones
        args.out = QUICK_OUT if args.quick else DEFAULT_OUT
    problem = _output_problem(args.out)
    if problem:
        return _fail(f"--out: {problem}", EXIT_OUTPUT)
    replaced = would_replace(args.out, chapters, args.quick)
    if replaced and not args.force:
        return _fail(f"{replaced}. Write this run elsewhere with --out DIR, or pass --force "
                     f"to replace it", EXIT_USAGE)
    print(f"wonderland tour: {len(chapters)} chapter(s) -> {args.out}/report.html"
          f"{' (quick mode)' if args.quick else ''}")
    try:
        results = run_tour(chapters, out_dir=args.out, quick=args.quick, seed=args.seed,
                           progress=not args.no_progress, options=options)
    except OSError as exc:
        return _fail(f"cannot write the report in {args.out}: {exc}", EXIT_OUTPUT)
    print()
    print("\n".join(_summary(results, EXPERIMENTS)))
    failed = [ch for ch, r in results.items() if not r.passed]
    total = sum(r.seconds for r in results.values())
    print(f"\n{len(results)} experiments in {total:.0f} s; report: {args.out}/report.html, "
          f"metrics: {args.out}/results.json")
    if failed:
        return _fail(f"checks failed in: {', '.join(failed)}", EXIT_CHECK_FAILED)
    return EXIT_OK


def _add_tour(sub) -> None:
    """Register ``wonderland tour``."""
    from wonderland.experiments import available

    p_tour = sub.add_parser(
        "tour", help="run one experiment per chapter and write an HTML report",
        description="Run the book's experiments (all chapters unless some are named) and "
                    "write DIR/report.html, DIR/results.json and DIR/figures/ (updated after "
                    "every chapter).",
        epilog="exit status: 0 every check passed; 1 a check failed; 2 bad arguments (an "
               "unknown chapter, an unusable --text file, or a run that would replace a "
               "complete one without --force); 3 the output folder cannot be written; 130 "
               "interrupted.")
    p_tour.add_argument("chapters", nargs="*", metavar="CHAPTER",
                        help=f"chapters to run ({', '.join(available())}; default: all)")
    p_tour.add_argument("--out", default=None, metavar="DIR",
                        help=f"output folder (default: {DEFAULT_OUT}, and {QUICK_OUT} with "
                             f"--quick)")
    p_tour.add_argument("--quick", action="store_true", help="smaller settings, for a fast look")
    p_tour.add_argument("--force", action="store_true",
                        help="replace a complete run in DIR even by a partial or quick one "
                             "(refused otherwise)")
    p_tour.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p_tour.add_argument("--text", metavar="FILE",
                        help="a UTF-8 text file for chapter 8's character model (default: "
                             "Python's own documentation text)")
    p_tour.add_argument("--list", action="store_true", help="list the available chapters and exit")
    p_tour.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_tour.set_defaults(func=_tour)


def build_parser() -> argparse.ArgumentParser:
    from wonderland import __version__

    parser = argparse.ArgumentParser(
        prog="wonderland",
        description="Differentiable programming from first principles.")
    parser.add_argument("--version", action="version", version=f"wonderland {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_tour(sub)
    p_info = sub.add_parser("info", help="show the backend, dtype defaults and BLAS threads")
    p_info.set_defaults(func=_info)
    p_demo = sub.add_parser("demo", help="train a small model with the core autodiff and "
                                         "check its gradients")
    p_demo.add_argument("--steps", type=int, default=300,
                        help="gradient-descent steps (default: 300)")
    p_demo.set_defaults(func=_demo)
    p_train = sub.add_parser(
        "train", help="train a model described by a TOML config file",
        description="Train the model, data set, optimiser and schedule of a TOML config "
                    "(see docs/scale.md): a progress bar, metrics as JSON lines and a "
                    "checkpoint every epoch in the config's checkpoint_dir. Under "
                    "'mpiexec -n N wonderland train CONFIG' the same run is data-parallel "
                    "over N processes.",
        epilog="exit status: 0 trained; 1 training failed (a non-finite loss, a damaged "
               "checkpoint); 2 a bad config or arguments; 130 interrupted.")
    p_train.add_argument("config", metavar="CONFIG", help="a TOML file")
    p_train.add_argument("--resume", action="store_true",
                         help="continue from <checkpoint_dir>/last.safetensors (which must "
                              "exist)")
    p_train.add_argument("--restart", action="store_true",
                         help="start over even if a checkpoint exists (overwriting it) or an "
                              "earlier run's metrics log does (kept as metrics.1.jsonl, ...)")
    p_train.add_argument("--epochs", type=int, metavar="N",
                         help="train until epoch N (overrides the config)")
    p_train.add_argument("--device", choices=("cpu", "cuda"),
                         help="where to train (overrides the config)")
    p_train.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_train.set_defaults(func=_train)
    return _add_generate(sub, parser)


def _add_generate(sub, parser) -> argparse.ArgumentParser:
    """Register ``wonderland generate`` (see ``generate_command.py``); returns ``parser``."""
    from wonderland.generate_command import add_parser

    add_parser(sub).set_defaults(func=_generate)
    return parser


def _generate(args) -> int:
    from wonderland.generate_command import main as generate_main

    return generate_main(args)


def _train(args) -> int:
    from wonderland.train_command import EXIT_USAGE, main as train_main

    if args.resume and args.restart:
        print("wonderland train: --resume and --restart exclude each other", file=sys.stderr)
        return EXIT_USAGE
    if args.epochs is not None and args.epochs <= 0:
        print(f"wonderland train: --epochs must be positive, got {args.epochs}", file=sys.stderr)
        return EXIT_USAGE
    return train_main(args)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
