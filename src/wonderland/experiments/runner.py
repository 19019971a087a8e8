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
from .base import Context, figure_files
from .report import write_html


def run_experiment(chapter: str, out_dir: str, quick: bool = False, seed: int = 0, status=None,
                   options=None, inspect=None):
    """Run one chapter's experiment; returns its :class:`Result` (figures saved).
    ``options`` carries user choices, e.g. ``{"text": path}`` for chapter 8;
    ``inspect(fig, caption, path)``, if given, sees every figure after it is saved."""
    if chapter not in EXPERIMENTS:
        raise KeyError(f"unknown chapter {chapter!r}; available: {', '.join(available())}")
    exp = EXPERIMENTS[chapter]
    ctx = Context(out_dir, quick=quick, seed=seed, progress=status, chapter=chapter,
                  options=options, inspect=inspect)
    wl.random.seed(seed)
    start = time.perf_counter()
    result = exp.run(ctx)
    result.seconds = time.perf_counter() - start
    result.figures = list(ctx.figures)
    return result


def blas_libraries() -> list:
    """Every BLAS library loaded in this process (NumPy's and SciPy's each bring one), as
    threadpoolctl reports them: ``{"library", "version", "owner", "threads", "path"}``.
    SciPy's linear algebra is imported first, so that its BLAS is loaded and listed."""
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS)
    from threadpoolctl import threadpool_info

    out = []
    for pool in threadpool_info():
        if pool.get("user_api") != "blas":
            continue
        path = pool.get("filepath") or ""
        parts = path.replace("\\", "/").split("/")
        owner = next((p[:-len(".libs")] for p in parts if p.endswith(".libs")), None) or \
            next((p for p in parts if p in ("numpy", "scipy")), None) or \
            (os.path.basename(path) or "unknown")
        out.append({"library": pool.get("internal_api") or pool.get("prefix") or "unknown",
                    "version": pool.get("version") or "", "owner": owner,
                    "threads": pool.get("num_threads"), "path": path})
    return out


def describe_blas(libraries) -> str:
    """One line naming every BLAS: ``openblas 0.3.30 (scipy, 1 thread); ...``."""
    if not libraries:
        return "none found"
    return "; ".join(f"{b['library']} {b['version']} ({b['owner']}, {b['threads']} "
                     f"thread{'s' if b['threads'] != 1 else ''})".replace("  ", " ")
                     for b in libraries)


def environment() -> dict:
    libraries = blas_libraries()
    return {"wonderland": wl.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "blas": describe_blas(libraries),
            "blas_libraries": libraries,
            "blas_threads": libraries[0]["threads"] if libraries else None,
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
                      json.dumps(payload, indent=2, default=_json_default))
    write_html(os.path.join(out_dir, "report.html"), results, env, quick, status=status,
               pending=pending)


def _json_default(v):
    """NumPy scalars and arrays as JSON's own types (a NumPy bool stays a bool)."""
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"results.json: cannot write a {type(v).__name__}")


def read_results(out_dir):
    """The ``results.json`` an earlier run left in ``out_dir`` (None when there is none
    or it cannot be read)."""
    try:
        with open(os.path.join(out_dir, "results.json"), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def would_replace(out_dir, chapters, quick):
    """Why running ``chapters`` (quick or not) into ``out_dir`` would replace a complete
    run there that it does not redo in full (None when it would not): a partial or a
    quick run never silently overwrites a complete one."""
    earlier = read_results(out_dir)
    if not earlier or earlier.get("status") != "complete":
        return None
    before = list(earlier.get("chapters") or {})
    missing = [c for c in before if c not in chapters]
    was_quick = bool(earlier.get("quick"))
    downgrade = quick and not was_quick
    if not missing and not downgrade:
        return None
    what = f"{'a quick' if was_quick else 'a full'} run of {len(before)} chapter(s)"
    why = f"this run leaves out {', '.join(missing)}" if missing else \
        "this quick run would replace it"
    return f"{out_dir} holds {what}, complete; {why}"


def remove_figures(out_dir, chapters) -> None:
    """Delete the figures earlier runs of ``chapters`` left in ``out_dir``, so that none
    outlives the run that drew it."""
    for ch in chapters:
        for path in figure_files(out_dir, ch):
            try:
                os.remove(path)
            except OSError:
                pass


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
             echo=print, options=None, inspect=None):
    """Run the chapters' experiments (all when ``chapters`` is empty) and write
    ``out_dir/report.html``, ``out_dir/results.json`` and the figures, updated after
    every chapter. Figures of earlier runs that this report does not hold are removed.
    ``inspect`` is passed to :func:`run_experiment`."""
    from tqdm.auto import tqdm

    chosen = list(chapters) if chapters else available()
    unknown = [c for c in chosen if c not in EXPERIMENTS]
    if unknown:
        raise KeyError(f"unknown chapter(s) {', '.join(unknown)}; available: {', '.join(available())}")
    os.makedirs(out_dir, exist_ok=True)
    earlier = read_results(out_dir)
    # this run's report replaces the earlier one: figures of chapters it does not hold go
    remove_figures(out_dir, [c for c in (earlier or {}).get("chapters", {}) if c not in chosen])
    results, env = {}, environment()
    bar = _Progress(chosen, progress)
    status = "failed"
    try:
        for i, ch in enumerate(chosen):
            exp = EXPERIMENTS[ch]
            bar.start(ch, exp.title)
            remove_figures(out_dir, [ch])
            results[ch] = r = run_experiment(ch, out_dir, quick=quick, seed=seed,
                                             status=bar.status, options=options,
                                             inspect=inspect)
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
