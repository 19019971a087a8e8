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


def build_parser() -> argparse.ArgumentParser:
    from wonderland import __version__

    parser = argparse.ArgumentParser(
        prog="wonderland",
        description="Differentiable programming from first principles.")
    parser.add_argument("--version", action="version", version=f"wonderland {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
