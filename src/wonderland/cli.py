"""The ``wonderland`` command."""

from __future__ import annotations

import argparse
import sys


def _info(_args) -> int:
    import platform

    import numpy as np

    import wonderland as wl
    from wonderland import backend

    blas = backend.blas_info()
    rows = [
        ("wonderland", wl.__version__),
        ("python", platform.python_version()),
        ("backend", f"{backend.name} {np.__version__}"),
        ("device", backend.device),
        ("default float dtype", str(wl.get_default_dtype())),
        ("BLAS", blas["library"]),
        ("BLAS threads", str(blas["threads"])),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


def _demo(args) -> int:
    from wonderland.demo import run

    return run(steps=args.steps)


def _tour(args) -> int:
    from wonderland.experiments import EXPERIMENTS, available, run_tour

    if args.list:
        for ch in available():
            print(f"{ch:5s} {EXPERIMENTS[ch].title}")
        return 0
    unknown = [c for c in args.chapters if c not in EXPERIMENTS]
    if unknown:
        print(f"wonderland tour: unknown chapter(s) {', '.join(unknown)}; available: "
              f"{', '.join(available())}", file=sys.stderr)
        return 2
    chapters = args.chapters or available()
    options = {}
    if args.text:
        import os
        if not os.path.isfile(args.text):
            print(f"wonderland tour: --text: no such file: {args.text}", file=sys.stderr)
            return 2
        options["text"] = args.text
    print(f"wonderland tour: {len(chapters)} chapter(s) -> {args.out}/report.html"
          f"{' (quick mode)' if args.quick else ''}")
    results = run_tour(chapters, out_dir=args.out, quick=args.quick, seed=args.seed,
                       progress=not args.no_progress, options=options)
    rows = []
    for ch, r in results.items():
        key = next(iter(r.checks), None)
        headline = f"{key.description}: {key.value:.4g}" if key else ""
        rows.append((ch, EXPERIMENTS[ch].title, f"{sum(c.passed for c in r.checks)}/{len(r.checks)}",
                     f"{r.seconds:.1f} s", headline))
    widths = [max(len(row[i]) for row in rows + [("chapter", "experiment", "checks", "time", "")])
              for i in range(4)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(("chapter", "experiment", "checks", "time"), widths))
          + "  first check")
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    failed = [ch for ch, r in results.items() if not r.passed]
    total = sum(r.seconds for r in results.values())
    print(f"\n{len(results)} experiments in {total:.0f} s; report: {args.out}/report.html, "
          f"metrics: {args.out}/results.json")
    if failed:
        print(f"checks failed in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    from wonderland import __version__

    parser = argparse.ArgumentParser(
        prog="wonderland",
        description="Differentiable programming from first principles.")
    parser.add_argument("--version", action="version", version=f"wonderland {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_tour = sub.add_parser(
        "tour", help="run one experiment per chapter and write an HTML report",
        description="Run the book's experiments (all chapters unless some are named) and "
                    "write DIR/report.html, DIR/results.json and DIR/figures/.")
    p_tour.add_argument("chapters", nargs="*", metavar="CHAPTER",
                        help="chapters to run (ch1 ... ch13, appA, appB; default: all available)")
    p_tour.add_argument("--out", default="wonderland-out", metavar="DIR",
                        help="output folder (default: wonderland-out)")
    p_tour.add_argument("--quick", action="store_true", help="smaller settings, for a fast look")
    p_tour.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p_tour.add_argument("--text", metavar="FILE",
                        help="a UTF-8 text file for chapter 8's character model (default: "
                             "Python's own documentation text)")
    p_tour.add_argument("--list", action="store_true", help="list the available chapters and exit")
    p_tour.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_tour.set_defaults(func=_tour)
    p_info = sub.add_parser("info", help="show the backend, dtype defaults and BLAS threads")
    p_info.set_defaults(func=_info)
    p_demo = sub.add_parser("demo", help="train a small model with the core autodiff and "
                                         "check its gradients")
    p_demo.add_argument("--steps", type=int, default=300,
                        help="gradient-descent steps (default: 300)")
    p_demo.set_defaults(func=_demo)
    return parser


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
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
