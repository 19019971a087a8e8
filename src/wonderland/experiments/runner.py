"""Running experiments and writing the tour's report.

The report (``report.html``) and the metrics (``results.json``) are rewritten after every
chapter, so a crash or an interruption keeps the chapters that finished; ``results.json``
says whether the run is complete.
"""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np

import wonderland as wl

from .catalog import EXPERIMENTS, available
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
    result = exp.run(ctx)
    result.seconds = time.perf_counter() - start
    result.figures = list(ctx.figures)
    return result


def environment() -> dict:
    from wonderland import backend

    blas = backend.blas_info()
    return {"wonderland": wl.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "blas": blas["library"], "blas_threads": blas["threads"],
            "threads": wl.get_num_threads(), "machine": platform.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M")}


def write_outputs(out_dir, results, env, quick, seed, status="complete", pending=()):
    """Write ``results.json`` and ``report.html`` for the chapters in ``results``;
    ``status`` is ``"complete"``, ``"running"``, ``"interrupted"`` or ``"failed"``, and
    ``pending`` names the chapters not (yet) run."""
    payload = {"environment": env, "quick": quick, "seed": seed, "status": status,
               "pending": list(pending), "chapters": {
                   ch: {"title": EXPERIMENTS[ch].title, "seconds": r.seconds, "passed": r.passed,
                        "metrics": r.metrics, "checks": [c.as_dict() for c in r.checks],
                        "figures": [f.path for f in r.figures], "summary": r.summary}
                   for ch, r in results.items()}}
    _write_atomically(os.path.join(out_dir, "results.json"),
                      json.dumps(payload, indent=2, default=float))
    write_html(os.path.join(out_dir, "report.html"), results, env, quick, status=status,
               pending=pending)


def _write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


class _Progress:
    """The tour's progress bar: one line naming the chapter and its latest status."""

    def __init__(self, chapters, enabled):
        from tqdm.auto import tqdm

        self.bar = tqdm(chapters, desc="tour", unit="chapter", disable=not enabled, leave=False)

    def start(self, chapter, title):
        self.bar.set_postfix_str("", refresh=False)        # no status left from the last one
        self.bar.set_description(f"{chapter}: {title}")

    def status(self, text):
        self.bar.set_postfix_str(text[:40])

    def done(self):
        self.bar.update(1)

    def close(self):
        self.bar.close()


def run_tour(chapters=None, out_dir="wonderland-out", quick=False, seed=0, progress=True,
             echo=print, options=None):
    """Run the chapters' experiments (all when ``chapters`` is empty) and write
    ``out_dir/report.html``, ``out_dir/results.json`` and the figures, updated after
    every chapter."""
    from tqdm.auto import tqdm

    chosen = list(chapters) if chapters else available()
    unknown = [c for c in chosen if c not in EXPERIMENTS]
    if unknown:
        raise KeyError(f"unknown chapter(s) {', '.join(unknown)}; available: {', '.join(available())}")
    os.makedirs(out_dir, exist_ok=True)
    results, env = {}, environment()
    bar = _Progress(chosen, progress)
    status = "failed"
    try:
        for i, ch in enumerate(chosen):
            exp = EXPERIMENTS[ch]
            bar.start(ch, exp.title)
            results[ch] = r = run_experiment(ch, out_dir, quick=quick, seed=seed,
                                             status=bar.status, options=options)
            bar.done()
            write_outputs(out_dir, results, env, quick, seed, "running", chosen[i + 1:])
            line = (f"{ch:5s} {exp.title:42s} {r.seconds:6.1f} s  "
                    f"{sum(c.passed for c in r.checks)}/{len(r.checks)} checks "
                    f"{'ok' if r.passed else 'FAILED'}")
            if progress:
                tqdm.write(line)
            elif echo:
                echo(line)
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        bar.close()
        write_outputs(out_dir, results, env, quick, seed, status,
                      [c for c in chosen if c not in results])
    return results
