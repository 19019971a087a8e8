"""Running experiments and writing the tour's report."""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np

import wonderland as wl

from . import EXPERIMENTS, available
from .base import Context
from .report import write_html


def run_experiment(chapter: str, out_dir: str, quick: bool = False, seed: int = 0, status=None,
                   options=None):
    """Run one chapter's experiment; returns its :class:`Result` (figures saved).
    ``options`` carries user choices, e.g. ``{"text": path}`` for chapter 8."""
    if chapter not in EXPERIMENTS:
        raise KeyError(f"unknown chapter {chapter!r}; available: {', '.join(available())}")
    exp = EXPERIMENTS[chapter]
    ctx = Context(out_dir, quick=quick, seed=seed, progress=status, chapter=chapter,
                  options=options)
    wl.random.seed(seed)
    start = time.perf_counter()
    with np.errstate(all="ignore"):
        result = exp.run(ctx)
    result.seconds = time.perf_counter() - start
    result.figures = list(ctx.figures)
    return result


def environment() -> dict:
    from wonderland import backend

    blas = backend.blas_info()
    return {"wonderland": wl.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "blas": blas["library"], "blas_threads": blas["threads"],
            "machine": platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M")}


def run_tour(chapters=None, out_dir="wonderland-out", quick=False, seed=0, progress=True,
             echo=print, options=None):
    """Run the chapters' experiments (all when ``chapters`` is empty) and write
    ``out_dir/report.html``, ``out_dir/results.json`` and the figures."""
    from tqdm.auto import tqdm

    chosen = list(chapters) if chapters else available()
    unknown = [c for c in chosen if c not in EXPERIMENTS]
    if unknown:
        raise KeyError(f"unknown chapter(s) {', '.join(unknown)}; available: {', '.join(available())}")
    os.makedirs(out_dir, exist_ok=True)
    results = {}
    bar = tqdm(chosen, desc="tour", unit="chapter", disable=not progress, leave=False)
    for ch in bar:
        exp = EXPERIMENTS[ch]
        bar.set_description(f"{ch}: {exp.title}")

        def status(text, ch=ch):
            bar.set_postfix_str(text[:40])

        results[ch] = run_experiment(ch, out_dir, quick=quick, seed=seed, status=status,
                                     options=options)
        r = results[ch]
        mark = "ok" if r.passed else "FAILED"
        line = f"{ch:5s} {exp.title:42s} {r.seconds:6.1f} s  {sum(c.passed for c in r.checks)}/{len(r.checks)} checks {mark}"
        if progress:
            tqdm.write(line)
        elif echo:
            echo(line)
    bar.close()
    env = environment()
    payload = {"environment": env, "quick": quick, "seed": seed, "chapters": {
        ch: {"title": EXPERIMENTS[ch].title, "seconds": r.seconds, "passed": r.passed,
             "metrics": r.metrics, "checks": [c.as_dict() for c in r.checks],
             "figures": [f.path for f in r.figures], "summary": r.summary}
        for ch, r in results.items()}}
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(payload, f, indent=2, default=float)
    write_html(os.path.join(out_dir, "report.html"), results, env, quick)
    return results
