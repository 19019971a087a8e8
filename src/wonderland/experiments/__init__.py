"""The tour: one small, real experiment per chapter of the book.

``EXPERIMENTS`` maps a chapter name (``ch2``, ``appA`` …) to its experiment, in book
order; :func:`run_tour` runs a selection and writes the report.
"""

from . import (appA_probability, appB_universal, ch02_gradients, ch03_datasets_losses, ch04_linear,
               ch05_mlp, ch06_autodiff, ch07_convolutions, ch08_sequences, ch09_scaling,
               ch12_graphs)
from .base import Check, Context, Experiment, Figure, Result

CHAPTER_ORDER = [f"ch{i}" for i in range(1, 14)] + ["appA", "appB"]

EXPERIMENTS = {e.chapter: e for e in [
    Experiment("ch2", "Gradients and gradient descent", ch02_gradients.run),
    Experiment("ch3", "Datasets, losses and the Bayesian view", ch03_datasets_losses.run),
    Experiment("ch4", "Linear models", ch04_linear.run),
    Experiment("ch5", "Fully-connected models", ch05_mlp.run),
    Experiment("ch6", "Automatic differentiation", ch06_autodiff.run),
    Experiment("ch7", "Convolutional layers", ch07_convolutions.run),
    Experiment("ch8", "Convolutions beyond images", ch08_sequences.run),
    Experiment("ch9", "Scaling up the models", ch09_scaling.run),
    Experiment("ch12", "Graph models", ch12_graphs.run),
    Experiment("appA", "Probability", appA_probability.run),
    Experiment("appB", "Universal approximation in 1-D", appB_universal.run),
]}


def available() -> list:
    """Chapters with an experiment, in book order."""
    return [c for c in CHAPTER_ORDER if c in EXPERIMENTS]


from .runner import run_experiment, run_tour  # noqa: E402

__all__ = ["EXPERIMENTS", "CHAPTER_ORDER", "available", "run_tour", "run_experiment", "Check",
           "Context", "Experiment", "Figure", "Result"]
