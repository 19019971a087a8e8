"""A training loop: ``Trainer.fit`` with a progress bar, metrics, validation, history,
early stopping, schedules, gradient clipping and resumable checkpoints.

::

    trainer = wl.train.Trainer(model, wl.optim.Adam(model.parameters(), 1e-3),
                               wl.nn.functional.cross_entropy, metrics=["accuracy"])
    history = trainer.fit(train_loader, epochs=20, val_loader=val_loader,
                          early_stopping=wl.train.EarlyStopping(patience=3))

Batches are ``(inputs, targets)``; the loss is ``loss_fn(model(inputs), targets)``.
A checkpoint taken at the end of an epoch holds the model, the optimiser, the schedule,
the random generators and the history, so that resuming from it reaches exactly the
parameters an uninterrupted run would.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from . import io
from .core.modes import no_grad
from .metrics import METRICS
from .nn.utils import clip_grad_norm_


class History:
    """Per-epoch records: ``history["val_loss"]`` is a list with one value per epoch."""

    def __init__(self, records=None):
        self.records = {k: list(v) for k, v in (records or {}).items()}

    def append(self, row: dict) -> None:
        for k, v in row.items():
            self.records.setdefault(k, []).append(v)

    def __getitem__(self, key):
        return self.records[key]

    def __contains__(self, key):
        return key in self.records

    def __len__(self):
        return len(self.records.get("epoch", []))

    def last(self, key, default=None):
        values = self.records.get(key)
        return values[-1] if values else default

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in self.records.items()}

    def __repr__(self):
        return f"History({len(self)} epochs: {', '.join(self.records)})"


class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs;
    with ``restore_best`` the best epoch's parameters are put back at the end."""

    def __init__(self, monitor="val_loss", patience=5, mode="min", min_delta=0.0,
                 restore_best=True):
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}")
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be non-negative, got {patience}")
        self.monitor, self.patience, self.mode = monitor, patience, mode
        self.min_delta, self.restore_best = min_delta, restore_best
        self.best = None
        self.best_epoch = None
        self.best_state = None
        self.wait = 0

    def improved(self, value) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, epoch, value, model) -> bool:
        """Record ``value`` for ``epoch``; return True when training should stop."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise KeyError(f"EarlyStopping: metric {self.monitor!r} was not computed (is there "
                           f"a validation loader?)")
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = {k: v.data.copy() for k, v in model.state_dict().items()}
            return False
        self.wait += 1
        return self.wait > self.patience


def _as_batch(batch):
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError("Trainer: batches must be (inputs, targets) pairs")
    return batch


class Trainer:
    """Train ``model`` with ``optimizer`` on ``loss_fn(model(x), y)``.

    ``metrics`` names entries of ``wl.metrics.METRICS`` (or gives ``name: fn`` pairs)
    computed on validation data each epoch. ``scheduler`` steps once per epoch.
    ``checkpoint_dir`` keeps ``last.safetensors`` (and ``best.safetensors`` with early
    stopping) up to date.
    """

    def __init__(self, model, optimizer, loss_fn, metrics=(), scheduler=None,
                 clip_grad_norm=None, progress=True, checkpoint_dir=None):
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.metrics = self._resolve(metrics)
        self.scheduler = scheduler
        self.clip_grad_norm = clip_grad_norm
        self.progress = progress
        self.checkpoint_dir = checkpoint_dir
        self.history = History()
        self.epoch = 0
        self.step_count = 0

    @staticmethod
    def _resolve(metrics):
        if isinstance(metrics, dict):
            return dict(metrics)
        out = {}
        for m in metrics:
            if m not in METRICS:
                raise ValueError(f"Trainer: unknown metric {m!r}; known: {sorted(METRICS)}")
            out[m] = METRICS[m]
        return out

    # ------------------------------------------------------------------ steps
    def train_step(self, x, y) -> float:
        """One optimisation step on a batch; returns the batch loss."""
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(x), y)
        if loss.ndim != 0:
            raise ValueError(f"Trainer: the loss must be a scalar, got shape {loss.shape}")
        loss.backward()
        if self.clip_grad_norm is not None:
            clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        self.optimizer.step()
        self.step_count += 1
        return float(loss.item())

    def evaluate(self, loader) -> dict:
        """Mean loss and every metric over ``loader`` (in eval mode, without recording)."""
        was_training = self.model.training
        self.model.eval()
        total, count, outs, targets = 0.0, 0, [], []
        with no_grad():
            for batch in loader:
                x, y = _as_batch(batch)
                out = self.model(x)
                n = len(y)
                total += float(self.loss_fn(out, y).item()) * n
                count += n
                if self.metrics:
                    outs.append(out.data)
                    targets.append(y.data)
        self.model.train(was_training)
        if count == 0:
            raise ValueError("Trainer.evaluate: the loader yielded no samples")
        result = {"loss": total / count}
        if self.metrics:
            o, t = np.concatenate(outs), np.concatenate(targets)
            for name, fn in self.metrics.items():
                result[name] = float(fn(o, t))
        return result

    def predict(self, x):
        """The model's output on ``x`` in eval mode, without recording."""
        was_training = self.model.training
        self.model.eval()
        with no_grad():
            out = self.model(x)
        self.model.train(was_training)
        return out

    # ------------------------------------------------------------------ fit
    def fit(self, train_loader, epochs, val_loader=None, early_stopping=None, resume_from=None):
        """Train for ``epochs`` epochs in total; returns the :class:`History`."""
        from tqdm.auto import tqdm

        if epochs <= 0:
            raise ValueError(f"Trainer.fit: epochs must be positive, got {epochs}")
        if resume_from is not None:
            self.load_checkpoint(resume_from, loader=train_loader)
        self.model.train()
        while self.epoch < epochs:
            start = time.perf_counter()
            total, count = 0.0, 0
            bar = tqdm(total=len(train_loader), desc=f"epoch {self.epoch + 1}/{epochs}",
                       leave=False, disable=not self.progress, unit="batch")
            for batch in train_loader:
                x, y = _as_batch(batch)
                loss = self.train_step(x, y)
                if not math.isfinite(loss):
                    bar.close()
                    raise FloatingPointError(
                        f"Trainer: the loss became {loss} at epoch {self.epoch + 1}, step "
                        f"{self.step_count}; lower the learning rate or run under "
                        f"wl.detect_anomaly() to find the operation")
                total += loss * len(y)
                count += len(y)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
            bar.close()
            self.epoch += 1
            row = {"epoch": self.epoch, "train_loss": total / max(count, 1),
                   "lr": self.optimizer.param_groups[0]["lr"]}
            if val_loader is not None:
                row.update({f"val_{k}": v for k, v in self.evaluate(val_loader).items()})
            row["time"] = time.perf_counter() - start
            self.history.append(row)
            if self.scheduler is not None:
                self.scheduler.step()
            if self.progress:
                shown = "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "time"))
                tqdm.write(f"epoch {self.epoch}/{epochs}  {shown}")
            stop = False
            if early_stopping is not None:
                stop = early_stopping.update(self.epoch, row.get(early_stopping.monitor), self.model)
                if self.checkpoint_dir and early_stopping.best_epoch == self.epoch:
                    self.save_checkpoint(os.path.join(self.checkpoint_dir, "best.safetensors"),
                                         train_loader)
            if self.checkpoint_dir:
                self.save_checkpoint(os.path.join(self.checkpoint_dir, "last.safetensors"),
                                     train_loader)
            if stop:
                break
        if early_stopping is not None and early_stopping.restore_best and early_stopping.best_state:
            self.model.load_state_dict(early_stopping.best_state)
        return self.history

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path, loader=None) -> None:
        """Everything needed to resume at the end of the current epoch."""
        gen = getattr(loader, "generator", None)
        extra = {"epoch": self.epoch, "step": self.step_count, "history": self.history.to_dict(),
                 "loader_rng": gen.get_state() if gen is not None else None}
        io.save_checkpoint(path, self.model, self.optimizer, self.scheduler, extra)

    def load_checkpoint(self, path, loader=None) -> None:
        extra = io.load_checkpoint(path, self.model, self.optimizer, self.scheduler)
        self.epoch = int(extra.get("epoch", 0))
        self.step_count = int(extra.get("step", 0))
        self.history = History(extra.get("history"))
        gen = getattr(loader, "generator", None)
        if gen is not None and extra.get("loader_rng") is not None:
            gen.set_state(extra["loader_rng"])


def fit(model, optimizer, loss_fn, train_loader, epochs, **kwargs):
    """Shortcut: ``Trainer(model, optimizer, loss_fn, ...).fit(train_loader, epochs, ...)``."""
    fit_keys = {"val_loader", "early_stopping", "resume_from"}
    fit_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in fit_keys}
    return Trainer(model, optimizer, loss_fn, **kwargs).fit(train_loader, epochs, **fit_kwargs)


__all__ = ["Trainer", "History", "EarlyStopping", "fit"]
