"""``wonderland train CONFIG``: train a model described by a TOML file.

The config (see :mod:`wonderland.config`) names a data set, a model, an optimiser, an
optional schedule and the training settings. The command builds them, trains with
:class:`wonderland.train.Trainer` (progress bar, metrics as JSON lines, a checkpoint at
every epoch end) and prints a summary. ``--resume`` continues from
``<checkpoint_dir>/last.safetensors`` (an error when there is none); without it an existing
checkpoint is never overwritten unless ``--restart`` says so. A run that starts from
epoch 1 never truncates an earlier run's metrics log: that needs ``--restart`` too, and
the old log is then kept beside the new one (``metrics.1.jsonl``, ...).

Under ``mpiexec -n N`` the same command trains data-parallel: every rank loads the
data, wraps the model in ``DistributedDataParallel`` and takes its shard of each epoch
through a ``DistributedSampler``; ``batch_size`` is the *global* batch, split across the
ranks, so the run sees the batches a single process sees (to rounding, when the number
of training samples is a multiple of the number of ranks; otherwise a few samples are
repeated per epoch, see ``DistributedSampler``). Rank 0 prints and writes files.
"""

from __future__ import annotations

import inspect
import math
import os
import sys

import numpy as np

from .config import OPTIMIZERS, SCHEDULES, ConfigError, load_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


# ----------------------------------------------------------------------------- data
def _read_data(d, gen):
    """The ``[data]`` section's inputs and targets, as NumPy arrays."""
    import wonderland as wl

    name = d["name"]
    if name in ("moons", "circles", "spirals", "xor"):
        maker = getattr(wl.data, f"make_{name}")
        x, y = maker(d["n"], noise=d["noise"], generator=gen)
    elif name == "npz":
        try:
            arrays = wl.data.read_npz(d["path"], [d["x"], d["y"]])
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"[data] path: {exc}") from None
        x, y = arrays[d["x"]], arrays[d["y"]]
    elif name == "csv":
        try:
            x, y = wl.data.read_csv(d["path"], target=d["target"], delimiter=d["delimiter"])
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"[data] path: {exc}") from None
    else:
        x, y = getattr(wl.data, f"load_{name}")()
    x = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
    y = np.asarray(y.numpy() if hasattr(y, "numpy") else y)
    return x, y


def load_data(cfg, dtype):
    """``(x_train, y_train, x_val, y_val, classes)`` as NumPy arrays; ``classes`` is the
    number of classes (0 for regression). ``x_val`` is ``None`` without a split."""
    import wonderland as wl

    d = cfg["data"]
    name = d["name"]
    gen = wl.random.Generator(cfg["train"]["seed"])
    x, y = _read_data(d, gen)
    if x.ndim < 1 or y.ndim < 1 or x.shape[0] != y.shape[0]:
        raise ConfigError(f"[data] {name}: need inputs and targets with one row per sample, got "
                          f"shapes {x.shape} and {y.shape}")
    if x.shape[0] < 2:
        raise ConfigError(f"[data] {name}: need at least 2 samples, got {x.shape[0]}")
    classification = y.dtype.kind in "iub"
    if classification and y.ndim != 1:
        raise ConfigError(f"[data] {name}: integer targets must be one label per sample, got "
                          f"shape {y.shape}")
    x = x.reshape(len(x), -1).astype(dtype)
    y = y.astype(np.int64) if classification else y.reshape(len(y), -1).astype(dtype)
    classes = int(y.max()) + 1 if classification else 0
    if classification and y.min() < 0:
        raise ConfigError(f"[data] {name}: class labels must be 0, 1, ...; got {int(y.min())}")
    if d["test_size"] > 0:
        strat = wl.tensor(y) if classification and np.bincount(y).min() >= 2 else None
        x_tr, x_va, y_tr, y_va = wl.data.train_test_split(
            wl.tensor(x), wl.tensor(y), test_size=d["test_size"], stratify=strat, generator=gen)
        x_tr, x_va, y_tr, y_va = (np.array(t.numpy()) for t in (x_tr, x_va, y_tr, y_va))
    else:
        x_tr, y_tr, x_va, y_va = x, y, None, None
    if d["standardize"]:
        mean = x_tr.mean(0, keepdims=True)
        std = x_tr.std(0, keepdims=True)
        std = np.where(std < 1e-8, 1.0, std).astype(dtype)
        x_tr = (x_tr - mean) / std
        x_va = (x_va - mean) / std if x_va is not None else None
    shape = tuple(d["image_shape"])
    if shape:
        if math.prod(shape) != x.shape[1]:
            raise ConfigError(f"[data] image_shape: {list(shape)} holds {math.prod(shape)} "
                              f"values, but each sample has {x.shape[1]}")
        x_tr = x_tr.reshape((len(x_tr),) + shape)
        x_va = x_va.reshape((len(x_va),) + shape) if x_va is not None else None
    return x_tr.astype(dtype), y_tr, (None if x_va is None else x_va.astype(dtype)), y_va, classes


# ----------------------------------------------------------------------------- model
def build_model(cfg, sample_shape, outputs):
    import wonderland as wl
    from wonderland import nn

    m = cfg["model"]
    kind = m["type"]
    try:
        nn.activation(m["activation"])
    except ValueError as exc:
        raise ConfigError(f"[model] activation: {exc}") from None
    if kind == "mlp":
        layers = [nn.Flatten()] if len(sample_shape) > 1 else []
        layers.append(nn.MLP([math.prod(sample_shape), *m["hidden"], outputs],
                             activation=m["activation"], dropout=m["dropout"]))
        return nn.Sequential(*layers)
    if kind == "cnn":
        if len(sample_shape) not in (2, 3):
            raise ConfigError("[data] image_shape: a cnn needs (height, width, channels) or "
                              "(time, channels)")
        conv = nn.Conv2d if len(sample_shape) == 3 else nn.Conv1d
        pool = nn.MaxPool2d if len(sample_shape) == 3 else nn.MaxPool1d
        layers, cin = [], sample_shape[-1]
        smallest = min(sample_shape[:-1])
        for i, c in enumerate(m["channels"]):
            layers += [conv(cin, c, m["kernel_size"], padding="same"), nn.activation(m["activation"])]
            if smallest >= 2:
                layers.append(pool(2))
                smallest //= 2
            cin = c
        layers += [nn.GlobalAvgPool(), nn.Linear(cin, outputs)]
        return nn.Sequential(*layers)
    cls = getattr(wl.models, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        known = sorted(n for n in dir(wl.models) if isinstance(getattr(wl.models, n), type)
                       and issubclass(getattr(wl.models, n), nn.Module))
        raise ConfigError(f"[model] type: expected 'mlp', 'cnn' or one of {', '.join(known)}, "
                          f"got {kind!r}")
    try:
        return cls(**m["options"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[model] options: {kind}({_kwargs(m['options'])}) failed: {exc}") from None


def _kwargs(options):
    return ", ".join(f"{k}={v!r}" for k, v in options.items())


def _construct(table, cls, first, options, **fixed):
    """``cls(first, **fixed, **options)`` with unknown settings named in the error."""
    accepted = inspect.signature(cls).parameters
    bad = [k for k in options if k not in accepted]
    if bad:
        known = [k for k in accepted if k not in ("params", "optimizer", "last_epoch")]
        raise ConfigError(f"[{table}] {bad[0]}: not a setting of {cls.__name__}; its settings "
                          f"are {', '.join(known)}")
    try:
        return cls(first, **fixed, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{table}] {cls.__name__}: {exc}") from None


# ----------------------------------------------------------------------------- running
def run(config_path, resume=False, restart=False, epochs=None, device=None, progress=True):
    """Train as ``config_path`` says; returns the Trainer (raises ConfigError and
    friends; :func:`main` turns them into exit statuses). The default dtype is restored
    afterwards."""
    import wonderland as wl

    before = wl.get_default_dtype()
    try:
        return _run(config_path, resume, restart, epochs, device, progress)
    finally:
        wl.set_default_dtype(before)


def _run(config_path, resume, restart, epochs, device, progress):
    import wonderland as wl
    from wonderland import nn, optim
    from wonderland import distributed as dist

    cfg = load_config(config_path)
    t = cfg["train"]
    if epochs is not None:
        t["epochs"] = epochs
    if device is not None:
        t["device"] = device
    rank, world = dist.init()
    dtype = _check_settings(t, world)
    folder = t["checkpoint_dir"]
    last = os.path.join(folder, "last.safetensors")
    log_file = t["log_file"] or os.path.join(folder, "metrics.jsonl")
    resume_from, kept_log = _start(last, log_file, resume, restart)
    wl.random.seed(t["seed"])
    x_tr, y_tr, x_va, y_va, classes = load_data(cfg, dtype)
    model = build_model(cfg, x_tr.shape[1:], classes if classes else y_tr.shape[1])
    model.to(t["device"])
    n_params = model.num_parameters()
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    o, s = cfg["optimizer"], cfg["schedule"]
    opt = _construct("optimizer", getattr(optim, OPTIMIZERS[o["name"]]), model.parameters(),
                     o["options"], lr=o["lr"])
    schedule = _construct("schedule", getattr(optim, SCHEDULES[s["name"]]), opt,
                          s["options"]) if s["name"] else None
    loss_fn, metrics = _loss_and_metrics(t, classes)
    train_loader, val_loader = _loaders(t, (x_tr, y_tr, x_va, y_va), rank, world)
    callbacks = [wl.train.JSONLinesLogger(log_file, every_n_steps=t["log_every"] or None)]
    stopper = wl.train.EarlyStopping(patience=t["patience"]) if t["patience"] and val_loader \
        else None
    trainer = wl.train.Trainer(model, opt, loss_fn, metrics=metrics if val_loader else (),
                               scheduler=schedule, progress=progress, checkpoint_dir=folder,
                               callbacks=callbacks, accumulate_steps=t["accumulate_steps"],
                               clip_grad_norm=t["clip_grad_norm"] or None, jit=t["jit"])
    if rank == 0:
        print(f"wonderland train: {cfg['data']['name']} ({len(x_tr)} training samples"
              f"{f', {len(x_va)} validation' if x_va is not None else ''}), "
              f"{cfg['model']['type']} with {n_params} parameters, {o['name']} lr {o['lr']:g}, "
              f"{t['epochs']} epochs, batch {t['batch_size']}"
              f"{f' over {world} ranks' if world > 1 else ''}, {t['device']}, {t['dtype']}")
        _keep_earlier(resume_from, log_file, kept_log)
    trainer.fit(train_loader, t["epochs"], val_loader=val_loader, early_stopping=stopper,
                resume_from=resume_from)
    if rank == 0:
        row = {k: v[-1] for k, v in trainer.history.records.items() if v}
        shown = "  ".join(f"{k} {v:.4g}" for k, v in row.items()
                          if k not in ("epoch", "time") and isinstance(v, float))
        print(f"wonderland train: epoch {trainer.epoch}  {shown}")
        print(f"wonderland train: checkpoint {last}; metrics {log_file}")
    return trainer


def _check_settings(t, world):
    """Check ``[train]`` against the processes and the device; set the default dtype and
    return it."""
    import wonderland as wl

    if t["jit"] and world > 1:
        raise ConfigError(f"[train] jit: true needs one process (got {world} ranks): jit's "
                          f"gradients do not run the data-parallel averaging hooks")
    if t["batch_size"] % world:
        raise ConfigError(f"[train] batch_size: {t['batch_size']} is the global batch and must "
                          f"split evenly over the {world} ranks")
    wl.set_default_dtype(wl.float64 if t["dtype"] == "float64" else wl.float32)
    if t["device"] == "cuda":
        try:
            wl.backend.for_device("cuda")
        except RuntimeError as exc:
            raise ConfigError(f"[train] device: 'cuda' is not available here ({exc})") from None
    return np.float64 if t["dtype"] == "float64" else np.float32


def _loss_and_metrics(t, classes):
    from wonderland import nn

    loss_name = t["loss"] if t["loss"] != "auto" else ("cross_entropy" if classes else "mse")
    if loss_name == "cross_entropy" and not classes:
        raise ConfigError("[train] loss: cross_entropy needs integer class labels; these "
                          "targets are real numbers (use 'mse')")
    loss_fn = nn.functional.cross_entropy if loss_name == "cross_entropy" else nn.functional.mse_loss
    metrics = t["metrics"] if t["metrics"] is not None else (["accuracy"] if classes else ["mse"])
    return loss_fn, metrics


def _loaders(t, arrays, rank, world):
    """The training loader (this rank's share of each global batch) and the validation
    loader (or ``None``), both moving batches to the device."""
    import wonderland as wl
    from wonderland import data

    x_tr, y_tr, x_va, y_va = arrays

    def to_device(batch):
        return tuple(b.to(t["device"]) for b in batch) if t["device"] != "cpu" else batch

    train_set = data.TensorDataset(wl.tensor(x_tr), wl.tensor(y_tr))
    sampler = data.DistributedSampler(train_set, world, rank, shuffle=True, seed=t["seed"])
    train_loader = data.DataLoader(train_set, t["batch_size"] // world, sampler=sampler,
                                   transform=to_device)
    val_loader = None
    if x_va is not None:
        val_loader = data.DataLoader(data.TensorDataset(wl.tensor(x_va), wl.tensor(y_va)),
                                     t["batch_size"], transform=to_device)
    return train_loader, val_loader


def _keep_earlier(resume_from, log_file, kept_log):
    if resume_from:
        print(f"wonderland train: resuming from {resume_from}")
    if kept_log:
        os.replace(log_file, kept_log)
        print(f"wonderland train: starting over; the earlier metrics log is kept as "
              f"{kept_log}")


def _start(last, log_file, resume, restart):
    """``(checkpoint to resume from or None, where to keep an earlier run's log or None)``.

    ``--resume`` needs the checkpoint; an existing checkpoint needs ``--resume`` or
    ``--restart``. A run that starts from epoch 1 never truncates a log holding an earlier
    run's metrics: without ``--restart`` that is an error, with it the old log is kept
    beside the new one (``metrics.1.jsonl``, ``metrics.2.jsonl``, ...)."""
    if os.path.exists(last):
        if resume:
            return last, None
        if not restart:
            raise ConfigError(f"[train] checkpoint_dir: {last} exists; pass --resume to continue "
                              f"from it or --restart to start over (it will be overwritten)")
    elif resume:
        raise ConfigError(f"--resume: there is no checkpoint to resume from ({last} does not "
                          f"exist); run without --resume to start from epoch 1")
    if not (os.path.isfile(log_file) and os.path.getsize(log_file) > 0):
        return None, None
    stem, ext = os.path.splitext(log_file)
    n = 1
    while os.path.exists(f"{stem}.{n}{ext}"):
        n += 1
    kept = f"{stem}.{n}{ext}"
    if not restart:
        raise ConfigError(f"[train] log_file: {log_file} already holds the metrics of an earlier "
                          f"run (and there is no checkpoint to resume); pass --restart to start "
                          f"over (the earlier log is then kept as {kept}) or choose another "
                          f"log_file")
    return None, kept


def main(args) -> int:
    """The ``train`` subcommand (``args`` from the parser in ``cli.py``)."""
    from wonderland import distributed as dist
    from wonderland.io import CheckpointError

    code, message = EXIT_OK, None
    try:
        run(args.config, resume=args.resume, restart=args.restart, epochs=args.epochs,
            device=args.device, progress=not args.no_progress)
    except ConfigError as exc:
        code, message = EXIT_USAGE, str(exc)
    except (CheckpointError, FloatingPointError) as exc:
        code, message = EXIT_FAILED, str(exc)
    except KeyboardInterrupt:
        code, message = EXIT_INTERRUPTED, "interrupted"
    if message:
        where = f" (rank {dist.rank()})" if dist.world_size() > 1 else ""
        print(f"wonderland train{where}: {message}", file=sys.stderr)
        if dist.world_size() > 1:
            dist.abort(code)                     # the other ranks would wait for this one
    return code
