"""What an experiment is, what it returns, and what it is given.

An experiment is a function ``run(ctx) -> Result`` registered for one chapter. It trains
or computes something small but real, measures it, draws figures through ``ctx`` and
states checks (a metric against a threshold) that the tests assert too.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import time
from typing import Callable

import numpy as np


def plain_number(v):
    """``v`` as a Python int or float (NumPy scalars and bools included), for JSON."""
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    return float(v)


@dataclasses.dataclass
class Check:
    """A stated claim: ``metric`` compared with ``threshold`` by ``op``. ``note`` says
    where the threshold comes from when the text alone does not (e.g. the relaxed
    threshold of quick mode)."""

    description: str
    value: float
    threshold: float
    op: str = ">="
    note: str = ""

    def __post_init__(self):
        if self.op not in (">=", "<=", ">", "<"):
            raise ValueError(f"Check: op must be one of >=, <=, >, <; got {self.op!r}")
        self.value, self.threshold = plain_number(self.value), plain_number(self.threshold)

    @property
    def passed(self) -> bool:
        v, t = self.value, self.threshold
        return bool({">=": v >= t, "<=": v <= t, ">": v > t, "<": v < t}[self.op])

    def as_dict(self):
        out = {"description": self.description, "value": self.value,
               "threshold": self.threshold, "op": self.op, "passed": self.passed}
        if self.note:
            out["note"] = self.note
        return out


@dataclasses.dataclass
class Figure:
    path: str           # relative to the output folder
    caption: str


@dataclasses.dataclass
class Result:
    metrics: dict
    summary: str
    checks: list = dataclasses.field(default_factory=list)
    figures: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(all(c.passed for c in self.checks))


@dataclasses.dataclass
class Experiment:
    chapter: str          # "ch2", "appA", ...
    title: str
    run: Callable
    order: int = 0


class Context:
    """What an experiment may use: its output folder, quick mode, a seed, figures,
    and a progress callback."""

    def __init__(self, out_dir: str, quick: bool = False, seed: int = 0, progress=None,
                 chapter: str = "", options=None, inspect=None):
        self.out_dir = out_dir
        self.quick = quick
        self.options = dict(options or {})
        self.seed = seed
        self.chapter = chapter
        self._progress = progress
        self._inspect = inspect
        self.figures = []

    def pick(self, full, quick):
        """``quick`` in quick mode, ``full`` otherwise."""
        return quick if self.quick else full

    def check(self, description, value, full, quick=None, op=">=", seeds=None) -> Check:
        """A :class:`Check` against ``full`` (``quick`` in quick mode). When the two
        thresholds differ, a quick run's check names both, so a reader sees which claim
        was checked. ``seeds`` says where the thresholds come from: ``(full, quick)``
        texts, each the spread of the check's value over seeds 0–4 of such a run and the
        rule that set the threshold from it (see docs/tour.md)."""
        quick = full if quick is None else quick
        notes = []
        if seeds is not None:
            basis = self.pick(*seeds) if isinstance(seeds, tuple) else seeds
            if basis:
                notes.append(basis)
        if self.quick and quick != full:
            notes.append(f"quick-mode threshold; a full run checks {op} {full:.4g}")
        return Check(description, value, self.pick(full, quick), op, "; ".join(notes))

    def status(self, text: str) -> None:
        if self._progress is not None:
            self._progress(text)

    def figure(self, name: str, caption: str):
        """Return a new matplotlib figure; it is saved as ``figures/<chapter>-<name>.png``
        by :meth:`save`."""
        from .plotting import plt

        fig = plt.figure()
        fig._wl_name = name
        fig._wl_caption = caption
        return fig

    def save(self, fig) -> Figure:
        from .plotting import plt

        folder = os.path.join(self.out_dir, "figures")
        os.makedirs(folder, exist_ok=True)
        rel = os.path.join("figures", f"{self.chapter}-{fig._wl_name}.png")
        if not fig.subfigs and fig.get_layout_engine() is None:
            fig.tight_layout()
        fig.savefig(os.path.join(self.out_dir, rel), dpi=110)
        if self._inspect is not None:        # e.g. the tests' checks of labels and legends
            self._inspect(fig, fig._wl_caption, rel)
        plt.close(fig)
        entry = Figure(rel, fig._wl_caption)
        self.figures.append(entry)
        return entry


def seeds(lo, hi, mean, sd, rule="threshold: mean − 3 sd") -> str:
    """Where a trained check's threshold comes from, in words: the range, mean and
    standard deviation of its value over tour seeds 0–4 of one kind of run, and the rule
    that set the threshold from them (docs/tour.md has the table)."""
    return f"seeds 0–4 gave {lo:.3g}–{hi:.3g}, mean {mean:.3g} ± {sd:.2g}; {rule}"


def figure_files(out_dir, chapter) -> list:
    """The figure files a run of ``chapter`` wrote in ``out_dir`` (``figures/<chapter>-*``)."""
    return sorted(glob.glob(os.path.join(glob.escape(out_dir), "figures",
                                         glob.escape(chapter) + "-*.png")))


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
