"""What an experiment is, what it returns, and what it is given.

An experiment is a function ``run(ctx) -> Result`` registered for one chapter. It trains
or computes something small but real, measures it, draws figures through ``ctx`` and
states checks (a metric against a threshold) that the tests assert too.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable


@dataclasses.dataclass
class Check:
    """A stated claim: ``metric`` compared with ``threshold`` by ``op``."""

    description: str
    value: float
    threshold: float
    op: str = ">="

    @property
    def passed(self) -> bool:
        v, t = self.value, self.threshold
        return {">=": v >= t, "<=": v <= t, ">": v > t, "<": v < t}[self.op]

    def as_dict(self):
        return {"description": self.description, "value": self.value,
                "threshold": self.threshold, "op": self.op, "passed": self.passed}


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
        return all(c.passed for c in self.checks)


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
                 chapter: str = "", options=None):
        self.out_dir = out_dir
        self.quick = quick
        self.options = dict(options or {})
        self.seed = seed
        self.chapter = chapter
        self._progress = progress
        self.figures = []

    def pick(self, full, quick):
        """``quick`` in quick mode, ``full`` otherwise."""
        return quick if self.quick else full

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
        if not fig.subfigs:
            fig.tight_layout()
        fig.savefig(os.path.join(self.out_dir, rel), dpi=110)
        plt.close(fig)
        entry = Figure(rel, fig._wl_caption)
        self.figures.append(entry)
        return entry


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
