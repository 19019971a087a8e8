"""Which experiment belongs to which chapter of the book (``EXPERIMENTS``, in book order).

A chapter's module (and matplotlib with it) is imported only when its experiment runs,
so listing the chapters is cheap.
"""

import importlib

from .base import Experiment

CHAPTER_ORDER = [f"ch{i}" for i in range(1, 14)] + ["appA", "appB"]

_CATALOG = [
    ("ch1", "The power of scaling", "ch01_scaling"),
    ("ch2", "Gradients and gradient descent", "ch02_gradients"),
    ("ch3", "Datasets, losses and the Bayesian view", "ch03_datasets_losses"),
    ("ch4", "Linear models", "ch04_linear"),
    ("ch5", "Fully-connected models", "ch05_mlp"),
    ("ch6", "Automatic differentiation", "ch06_autodiff"),
    ("ch7", "Convolutional layers", "ch07_convolutions"),
    ("ch8", "Convolutions beyond images", "ch08_sequences"),
    ("ch9", "Scaling up the models", "ch09_scaling"),
    ("ch10", "Transformer models", "ch10_transformers"),
    ("ch11", "Transformers in practice", "ch11_transformers_in_practice"),
    ("ch12", "Graph models", "ch12_graphs"),
    ("ch13", "Recurrent models", "ch13_recurrent"),
    ("appA", "Probability", "appA_probability"),
    ("appB", "Universal approximation in 1-D", "appB_universal"),
]


def _lazy_run(module_name):
    def run(ctx):
        return importlib.import_module(f"{__package__}.{module_name}").run(ctx)

    run.__name__ = f"{module_name}.run"
    return run


EXPERIMENTS = {chapter: Experiment(chapter, title, _lazy_run(module))
               for chapter, title, module in _CATALOG}


def available() -> list:
    """Chapters with an experiment, in book order."""
    return [c for c in CHAPTER_ORDER if c in EXPERIMENTS]
