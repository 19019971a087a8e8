"""Training configurations: a TOML file read into checked, complete settings.

``wonderland train CONFIG`` reads a TOML file (Python's own ``tomllib``; YAML would need
PyYAML, which wonderland does not depend on). Every table and key is checked: an
unknown key, a wrong type or a value out of range is a :class:`ConfigError` naming the
file, the table, the key, what it got and what it expects. Missing keys take the
defaults below, so the smallest config is ``[data] name = "digits"``.

::

    [data]
    name = "digits"            # digits iris wine breast_cancer diabetes moons circles
                               # spirals xor, or "npz" / "csv" with path = "file"
    test_size = 0.2            # held out for validation
    standardize = true
    image_shape = [8, 8, 1]    # reshape each sample (for a CNN)

    [model]
    type = "mlp"               # "mlp", "cnn", or a class of wl.models ("ResNet", ...)
    hidden = [128, 128]        # mlp: hidden widths
    activation = "relu"
    dropout = 0.0
    channels = [16, 32]        # cnn: channels per conv layer (each followed by pooling)
    kernel_size = 3
    options = {}               # keyword arguments of a wl.models class

    [optimizer]
    name = "adam"              # sgd adam adamw rmsprop adagrad
    lr = 1e-3                  # and any keyword of that optimiser (momentum, betas, ...)

    [schedule]                 # optional
    name = "cosine"            # step multistep exponential cosine linear (warm-up)
    # and that schedule's keywords (step_size, gamma, milestones, T_max, ...)

    [train]
    epochs = 10
    batch_size = 64            # the global batch: split across the ranks under mpiexec
    seed = 0
    dtype = "float32"          # or "float64"
    device = "cpu"             # or "cuda"
    loss = "auto"              # cross_entropy for integer targets, mse otherwise
    metrics = ["accuracy"]     # default: accuracy for classification, mse for regression
    checkpoint_dir = "runs/digits"
    log_file = ""              # default: <checkpoint_dir>/metrics.jsonl
    log_every = 0              # also log every n optimiser steps (0: epochs only)
    clip_grad_norm = 0.0       # 0: no clipping
    accumulate_steps = 1
    patience = 0               # early stopping on val_loss (0: off)
    jit = false                # loss and gradients through wl.jit (one process only)
"""

from __future__ import annotations

import os

__all__ = ["ConfigError", "load_config", "parse_config", "DEFAULTS", "DATASETS", "OPTIMIZERS",
           "SCHEDULES"]


class ConfigError(ValueError):
    """A configuration file that cannot be used, with the reason."""


DATASETS = ("digits", "iris", "wine", "breast_cancer", "diabetes", "moons", "circles",
            "spirals", "xor", "npz", "csv")
OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop",
              "adagrad": "Adagrad"}
SCHEDULES = {"step": "StepLR", "multistep": "MultiStepLR", "exponential": "ExponentialLR",
             "cosine": "CosineAnnealingLR", "linear": "LinearLR"}

# table -> key -> (default, accepted types, description of what is expected)
_NUM = (int, float)
SPEC = {
    "data": {
        "name": (None, str, f"one of {', '.join(DATASETS)}"),
        "path": ("", str, "a file path (for npz and csv)"),
        "x": ("x", str, "the inputs' array name in the npz file"),
        "y": ("y", str, "the targets' array name in the npz file"),
        "target": ("", (str, int), "the target column of the csv file (name or index)"),
        "delimiter": (",", str, "the csv delimiter"),
        "n": (400, int, "a positive number of samples (synthetic data sets)"),
        "noise": (0.1, _NUM, "a non-negative noise level (synthetic data sets)"),
        "test_size": (0.2, _NUM, "a fraction in [0, 1) held out for validation"),
        "standardize": (True, bool, "true or false"),
        "image_shape": ([], list, "a list of positive ints (the shape of one sample)"),
    },
    "model": {
        "type": ("mlp", str, "'mlp', 'cnn' or a class name of wl.models"),
        "hidden": ([128], list, "a list of positive ints"),
        "activation": ("relu", str, "an activation name (relu, gelu, tanh, ...)"),
        "dropout": (0.0, _NUM, "a probability in [0, 1)"),
        "channels": ([16, 32], list, "a list of positive ints"),
        "kernel_size": (3, int, "a positive int"),
        "options": ({}, dict, "a table of keyword arguments"),
    },
    "optimizer": {"name": ("adam", str, f"one of {', '.join(OPTIMIZERS)}"),
                  "lr": (1e-3, _NUM, "a positive number")},
    "schedule": {"name": ("", str, f"one of {', '.join(SCHEDULES)}")},
    "train": {
        "epochs": (10, int, "a positive int"),
        "batch_size": (64, int, "a positive int"),
        "seed": (0, int, "an int"),
        "dtype": ("float32", str, "'float32' or 'float64'"),
        "device": ("cpu", str, "'cpu' or 'cuda'"),
        "loss": ("auto", str, "'auto', 'cross_entropy' or 'mse'"),
        "metrics": (None, list, "a list of metric names"),
        "checkpoint_dir": ("runs/train", str, "a folder path"),
        "log_file": ("", str, "a file path"),
        "log_every": (0, int, "a non-negative int"),
        "clip_grad_norm": (0.0, _NUM, "a non-negative number"),
        "accumulate_steps": (1, int, "a positive int"),
        "patience": (0, int, "a non-negative int"),
        "jit": (False, bool, "true or false"),
    },
}
OPEN_TABLES = ("optimizer", "schedule")          # further keys go to the constructor
DEFAULTS = {table: {k: v[0] for k, v in keys.items()} for table, keys in SPEC.items()}


def load_config(path) -> dict:
    """Read and check a TOML config file; returns the complete settings."""
    import tomllib

    path = os.fspath(path)
    if path.lower().endswith((".yaml", ".yml")):
        raise ConfigError(f"{path}: YAML configs are not supported (they would need PyYAML, "
                          f"which wonderland does not depend on); write the config in TOML "
                          f"(see docs/scale.md)")
    if not os.path.exists(path):
        raise ConfigError(f"{path}: no such config file")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    return parse_config(raw, where=path)


def _fail(where, table, key, message):
    raise ConfigError(f"{where}: [{table}] {key}: {message}")


def parse_config(raw: dict, where: str = "config") -> dict:
    """Check a config given as nested dicts (as TOML reads it) and fill in defaults."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected tables, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SPEC))
    if unknown:
        raise ConfigError(f"{where}: unknown table(s) {unknown}; known tables: "
                          f"{', '.join(SPEC)}")
    out = {}
    for table, keys in SPEC.items():
        given = raw.get(table, {})
        if not isinstance(given, dict):
            raise ConfigError(f"{where}: {table} must be a table ([{table}]), got "
                              f"{type(given).__name__}")
        values = dict(DEFAULTS[table])
        extra = {}
        for key, value in given.items():
            if key not in keys:
                if table in OPEN_TABLES:
                    extra[key] = value
                    continue
                _fail(where, table, key, f"unknown key; known keys: {', '.join(keys)}")
            types = keys[key][1]
            ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in
                                                   (types if isinstance(types, tuple) else (types,)))
            if not ok:
                _fail(where, table, key, f"expected {keys[key][2]}, got {value!r}")
            values[key] = value
        if table in OPEN_TABLES:
            values["options"] = extra
        out[table] = values
    _check_values(out, where)
    return out


def _positive_ints(where, table, key, values, allow_empty=True):
    if (not values and not allow_empty) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        _fail(where, table, key, f"expected a list of positive ints, got {values!r}")


def _check_values(c, where):
    d, m, o, s, t = c["data"], c["model"], c["optimizer"], c["schedule"], c["train"]
    if d["name"] is None:
        raise ConfigError(f"{where}: [data] name is required: one of {', '.join(DATASETS)}")
    if d["name"] not in DATASETS:
        _fail(where, "data", "name", f"expected one of {', '.join(DATASETS)}, got {d['name']!r}")
    if d["name"] in ("npz", "csv") and not d["path"]:
        _fail(where, "data", "path", f"a {d['name']} data set needs path = \"file\"")
    if d["name"] == "csv" and d["target"] == "":
        _fail(where, "data", "target", "a csv data set needs the target column")
    if not 0 <= d["test_size"] < 1:
        _fail(where, "data", "test_size", f"expected a fraction in [0, 1), got {d['test_size']!r}")
    if d["n"] <= 0:
        _fail(where, "data", "n", f"expected a positive number of samples, got {d['n']!r}")
    if d["noise"] < 0:
        _fail(where, "data", "noise", f"expected a non-negative number, got {d['noise']!r}")
    _positive_ints(where, "data", "image_shape", d["image_shape"])
    _positive_ints(where, "model", "hidden", m["hidden"])
    _positive_ints(where, "model", "channels", m["channels"], allow_empty=False)
    if not 0 <= m["dropout"] < 1:
        _fail(where, "model", "dropout", f"expected a probability in [0, 1), got {m['dropout']!r}")
    if m["kernel_size"] <= 0:
        _fail(where, "model", "kernel_size", f"expected a positive int, got {m['kernel_size']!r}")
    if m["type"] == "cnn" and len(d["image_shape"]) not in (2, 3):
        _fail(where, "data", "image_shape", "a cnn needs each sample's shape, e.g. [8, 8, 1] "
                                             "(height, width, channels)")
    if o["name"] not in OPTIMIZERS:
        _fail(where, "optimizer", "name", f"expected one of {', '.join(OPTIMIZERS)}, got "
                                          f"{o['name']!r}")
    if not o["lr"] > 0:
        _fail(where, "optimizer", "lr", f"expected a positive number, got {o['lr']!r}")
    if s["name"] and s["name"] not in SCHEDULES:
        _fail(where, "schedule", "name", f"expected one of {', '.join(SCHEDULES)}, got "
                                         f"{s['name']!r}")
    if s["options"] and not s["name"]:
        _fail(where, "schedule", "name", "the schedule has settings but no name")
    for key in ("epochs", "batch_size", "accumulate_steps"):
        if t[key] <= 0:
            _fail(where, "train", key, f"expected a positive int, got {t[key]!r}")
    for key in ("log_every", "patience"):
        if t[key] < 0:
            _fail(where, "train", key, f"expected a non-negative int, got {t[key]!r}")
    if t["clip_grad_norm"] < 0:
        _fail(where, "train", "clip_grad_norm", f"expected a non-negative number, got "
                                                f"{t['clip_grad_norm']!r}")
    if t["dtype"] not in ("float32", "float64"):
        _fail(where, "train", "dtype", f"expected 'float32' or 'float64', got {t['dtype']!r}")
    if t["device"] not in ("cpu", "cuda"):
        _fail(where, "train", "device", f"expected 'cpu' or 'cuda', got {t['device']!r}")
    if t["loss"] not in ("auto", "cross_entropy", "mse"):
        _fail(where, "train", "loss", f"expected 'auto', 'cross_entropy' or 'mse', got "
                                      f"{t['loss']!r}")
    if t["metrics"] is not None:
        from .metrics import METRICS

        bad = [x for x in t["metrics"] if x not in METRICS]
        if bad:
            _fail(where, "train", "metrics", f"unknown metric(s) {bad}; known: {sorted(METRICS)}")
    if not t["checkpoint_dir"]:
        _fail(where, "train", "checkpoint_dir", "expected a folder path")
