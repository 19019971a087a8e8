"""The tour: one small, real experiment per chapter of the book.

``EXPERIMENTS`` maps a chapter name (``ch2``, ``appA`` …) to its experiment, in book
order; :func:`run_tour` runs a selection and writes the report. A chapter's module (and
matplotlib with it) is imported only when its experiment runs (``catalog.py``), so
listing the chapters is cheap.
"""

from .base import Check, Context, Experiment, Figure, Result
from .catalog import CHAPTER_ORDER, EXPERIMENTS, available
from .runner import run_experiment, run_tour

__all__ = ["EXPERIMENTS", "CHAPTER_ORDER", "available", "run_tour", "run_experiment", "Check",
           "Context", "Experiment", "Figure", "Result"]
