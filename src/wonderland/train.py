"""A training loop: ``Trainer.fit`` with a progress bar, metrics, validation, history,
callbacks, per-epoch and per-step schedules, gradient accumulation and clipping, JSON-lines
logs and resumable checkpoints.

::

    trainer = wl.train.Trainer(model, wl.optim.Adam(model.parameters(), 1e-3),
                               wl.nn.functional.cross_entropy, metrics=["accuracy"])
    history = trainer.fit(train_loader, epochs=20, val_loader=val_loader,
                          early_stopping=wl.train.EarlyStopping(patience=3))

By default batches are ``(inputs, targets)`` and the loss is
``loss_fn(model(inputs), targets)``; ``compute_loss=fn`` with ``fn(model, batch) -> loss``
trains on batches of any structure. A checkpoint taken at the end of an epoch holds the
model, the optimiser, the schedules, the random generators and the history, so that
resuming from it reaches exactly the parameters an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings

import numpy as np

from . import backend as B
from . import distributed as dist
from . import io
from .core.modes import no_grad
from .core.pytree import flatten
from .core.tracing import jit
from .core.transforms import value_and_grad
from .core.tensor import Tensor
from .metrics import METRICS
from .nn.module import swapped
from .nn.utils import clip_grad_norm_, clip_grad_value_


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


# ----------------------------------------------------------------------------- callbacks
class Callback:
    """Hooks that :meth:`Trainer.fit` calls; override the ones you need.

    ``on_step_end`` gets ``{"epoch", "step", "loss", "lr"}`` after every optimiser step;
    ``on_epoch_end`` gets the epoch's history row. Setting ``trainer.stop_training = True``
    ends training after the current epoch.
    """

    def on_train_begin(self, trainer) -> None:
        pass

    def on_step_end(self, trainer, logs: dict) -> None:
        pass

    def on_epoch_end(self, trainer, logs: dict) -> None:
        pass

    def on_train_end(self, trainer) -> None:
        pass


def _better(value, best, mode, min_delta=0.0) -> bool:
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _monitored(owner, monitor, logs):
    value = logs.get(monitor)
    if value is None:
        raise KeyError(f"{owner}: metric {monitor!r} was not computed (is there a validation "
                       f"loader?); this epoch has {sorted(logs)}")
    if isinstance(value, float) and math.isnan(value):
        raise FloatingPointError(f"{owner}: the monitored {monitor!r} is NaN at epoch "
                                 f"{logs.get('epoch')}; the model has diverged")
    return value


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs;
    with ``restore_best`` the best epoch's parameters are put back at the end."""

    def __init__(self, monitor="val_loss", patience=5, mode="min", min_delta=0.0,
                 restore_best=True):
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be a non-negative integer, got "
                             f"{patience!r}")
        self.monitor, self.patience, self.mode = monitor, patience, mode
        self.min_delta, self.restore_best = min_delta, restore_best
        self.best = None
        self.best_epoch = None
        self.best_state = None
        self.wait = 0

    def improved(self, value) -> bool:
        return _better(value, self.best, self.mode, self.min_delta)

    def update(self, epoch, value, model) -> bool:
        """Record ``value`` for ``epoch``; return True when training should stop."""
        value = _monitored("EarlyStopping", self.monitor, {self.monitor: value, "epoch": epoch})
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = {k: v.data.copy() for k, v in model.state_dict().items()}
            return False
        self.wait += 1
        return self.wait > self.patience

    def on_epoch_end(self, trainer, logs):
        if self.update(trainer.epoch, logs.get(self.monitor), trainer.model):
            trainer.stop_training = True

    def on_train_end(self, trainer):
        if self.restore_best and self.best_state:
            trainer.model.load_state_dict(self.best_state)


class Checkpoint(Callback):
    """Keep ``dirpath/last.safetensors`` up to date at every epoch end and, with
    ``monitor``, ``dirpath/best.safetensors`` whenever the monitored value improves.

    At every epoch end the trainer runs checkpoints before its other callbacks, so that a
    log line never records an epoch whose checkpoint was not written. Temporary files of
    a write that was killed (never completed nor cleaned up) are removed when training
    starts."""

    def __init__(self, dirpath, monitor=None, mode="min"):
        if mode not in ("min", "max"):
            raise ValueError(f"Checkpoint: mode must be 'min' or 'max', got {mode!r}")
        self.dirpath, self.monitor, self.mode = os.fspath(dirpath), monitor, mode
        self.best = None

    def on_train_begin(self, trainer):
        if dist.is_main_process():
            for name in ("last.safetensors", "best.safetensors"):
                io.remove_temporary_files(os.path.join(self.dirpath, name))

    def on_epoch_end(self, trainer, logs):
        if self.monitor is not None:
            value = _monitored("Checkpoint", self.monitor, logs)
            if _better(value, self.best, self.mode):
                self.best = value
                trainer.save_checkpoint(os.path.join(self.dirpath, "best.safetensors"),
                                        trainer.train_loader)
        trainer.save_checkpoint(os.path.join(self.dirpath, "last.safetensors"),
                                trainer.train_loader)


def _json_value(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


class JSONLinesLogger(Callback):
    """Append one JSON object per line to ``path``: ``{"event": "epoch", ...row}`` at each
    epoch end and, with ``every_n_steps``, ``{"event": "step", "step", "loss", "lr",
    "epoch"}`` every n optimiser steps. The file is started afresh when training starts
    from epoch 0 and appended to when it resumes. Non-finite numbers are written as
    ``NaN``/``Infinity``, as Python's ``json`` module reads them.

    Resuming from a checkpoint of epoch k first drops the lines of later epochs (those of
    an interrupted epoch, which is run again) and adds any epoch line up to k the log
    lacks (from the checkpoint's history), so each epoch has exactly one line."""

    def __init__(self, path, every_n_steps=None):
        if every_n_steps is not None and (isinstance(every_n_steps, bool)
                                          or not isinstance(every_n_steps, int)
                                          or every_n_steps < 1):
            raise ValueError(f"JSONLinesLogger: every_n_steps must be a positive integer or None, "
                             f"got {every_n_steps!r}")
        self.path, self.every_n_steps = os.fspath(path), every_n_steps

    def _write(self, record, mode="a"):
        if not dist.is_main_process():            # data-parallel runs: rank 0 writes
            return
        with open(self.path, mode) as f:
            f.write(json.dumps({k: _json_value(v) for k, v in record.items()}) + "\n")

    def on_train_begin(self, trainer):
        if not dist.is_main_process():
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        if trainer.epoch == 0:
            open(self.path, "w").close()
        else:
            self._align(trainer.epoch, trainer.history)

    def _align(self, epoch, history):
        """Make the log end at ``epoch``: no line of a later epoch, one line per epoch
        up to it (missing ones rebuilt from ``history``)."""
        kept, logged = [], set()
        try:
            with open(self.path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                record = json.loads(line)
                n = int(record.get("epoch", 0))
            except (ValueError, TypeError, AttributeError):
                kept.append(line)                # not ours to judge: kept as it is
                continue
            if n > epoch:
                continue
            if record.get("event") == "epoch":
                if n in logged:
                    continue
                logged.add(n)
            kept.append(line)
        rows = history.to_dict()
        for i, n in enumerate(rows.get("epoch", [])):
            if int(n) <= epoch and int(n) not in logged:
                kept.append(json.dumps({"event": "epoch", **{k: _json_value(v[i])
                                                             for k, v in rows.items()
                                                             if i < len(v)}}))
        if kept != lines:
            text = "".join(line + "\n" for line in kept)

            def write(tmp):
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(text)

            io.atomic_write(self.path, write)

    def on_step_end(self, trainer, logs):
        if self.every_n_steps and logs["step"] % self.every_n_steps == 0:
            self._write({"event": "step", **logs})

    def on_epoch_end(self, trainer, logs):
        self._write({"event": "epoch", **logs})


# ----------------------------------------------------------------------------- batches
def _as_batch(batch):
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError(f"Trainer: batches must be (inputs, targets) pairs, got a "
                        f"{type(batch).__name__}; pass compute_loss=fn(model, batch) to train "
                        f"on other batch structures")
    return batch


def _batch_size(batch) -> int:
    """The number of samples in a batch: the leading size of its first array."""
    if isinstance(batch, (Tensor, np.ndarray)):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (tuple, list)):
        for item in batch:
            n = _batch_size(item)
            if n:
                return n
    return 0


def _as_list(schedulers):
    if schedulers is None:
        return []
    return list(schedulers) if isinstance(schedulers, (list, tuple)) else [schedulers]


def _non_negative(owner, name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{owner}: {name} must be a non-negative number or None, got {value!r}")
    return value


class Trainer:
    """Train ``model`` with ``optimizer``.

    * loss: ``loss_fn(model(x), y)`` on ``(x, y)`` batches, or ``compute_loss(model,
      batch) -> scalar tensor`` for any batch structure;
    * ``metrics``: names in ``wl.metrics.METRICS`` (or ``name: fn`` pairs), computed on
      validation data each epoch (they need ``(x, y)`` batches);
    * ``scheduler``: stepped once per epoch; ``step_scheduler``: once per optimiser step
      (warm-up); each may be one schedule or a list;
    * ``accumulate_steps``: gradients of that many batches are averaged into one
      optimiser step; ``clip_grad_norm`` / ``clip_grad_value`` clip them before it;
    * ``callbacks``: :class:`Callback` objects (``EarlyStopping``, ``Checkpoint``,
      ``JSONLinesLogger``, your own); ``checkpoint_dir`` adds a :class:`Checkpoint`,
      ``log_file`` a :class:`JSONLinesLogger`;
    * ``jit=True``: the loss and gradients of a batch come from a ``wl.jit`` program,
      traced on the first batch of each shape and replayed after (the same numbers, less
      Python per step; the loss must not read tensor values in Python, and batch norm in
      training mode cannot be traced).
    """

    def __init__(self, model, optimizer, loss_fn=None, metrics=(), scheduler=None,
                 clip_grad_norm=None, progress=True, checkpoint_dir=None, *, compute_loss=None,
                 step_scheduler=None, callbacks=(), accumulate_steps=1, clip_grad_value=None,
                 log_file=None, jit=False):
        if loss_fn is None and compute_loss is None:
            raise TypeError("Trainer: give loss_fn (for (inputs, targets) batches) or "
                            "compute_loss=fn(model, batch)")
        if isinstance(accumulate_steps, bool) or not isinstance(accumulate_steps, int) \
                or accumulate_steps < 1:
            raise ValueError(f"Trainer: accumulate_steps must be a positive integer, got "
                             f"{accumulate_steps!r}")
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.compute_loss = compute_loss or self._default_loss
        self.metrics = self._resolve(metrics)
        self.scheduler = scheduler
        self.step_scheduler = step_scheduler
        self.clip_grad_norm = _non_negative("Trainer", "clip_grad_norm", clip_grad_norm)
        self.clip_grad_value = _non_negative("Trainer", "clip_grad_value", clip_grad_value)
        self.accumulate_steps = accumulate_steps
        self.progress = progress
        self.checkpoint_dir = checkpoint_dir
        self.callbacks = list(callbacks)
        if log_file is not None:
            self.callbacks.append(JSONLinesLogger(log_file))
        self.jit = bool(jit)
        self._jitted = None
        self.history = History()
        self.epoch = 0
        self.step_count = 0
        self.stop_training = False
        self.train_loader = None

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

    @property
    def schedulers(self) -> list:
        """Every schedule: the per-epoch ones, then the per-step ones."""
        return _as_list(self.scheduler) + _as_list(self.step_scheduler)

    # ------------------------------------------------------------------ steps
    def _default_loss(self, model, batch):
        x, y = _as_batch(batch)
        return self.loss_fn(model(x), y)

    def _loss(self, batch):
        loss = self.compute_loss(self.model, batch)
        if not isinstance(loss, Tensor) or loss.ndim != 0:
            got = f"shape {loss.shape}" if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"Trainer: the loss must be a scalar tensor, got {got}")
        return loss

    def _backward(self, batch, scale) -> float:
        """Forward and backward on one batch, gradients scaled by ``scale``; the loss."""
        if self.jit:
            loss = self._jit_backward(batch, scale)
        else:
            loss = self._loss(batch)
            (loss * scale if scale != 1 else loss).backward()
        value = float(loss.item())
        if not math.isfinite(value):
            raise FloatingPointError(
                f"Trainer: the loss became {value} at epoch {self.epoch + 1}, step "
                f"{self.step_count + 1}; lower the learning rate or run under "
                f"wl.detect_anomaly() to find the operation")
        return value

    def _jit_backward(self, batch, scale):
        """``_backward``'s work through a traced program: loss and gradients as values,
        the gradients added to ``.grad`` (scaled) as ``.backward()`` would."""
        if self._jitted is None:
            if dist.world_size() > 1:
                raise ValueError("Trainer: jit=True computes gradients without .backward(), so "
                                 "data-parallel gradient averaging (its hooks) would not run; "
                                 "use jit=False with several processes")
            model = self.model

            def loss_and_grads(params, batch, training):
                def loss_of(p):
                    with swapped(model, p):
                        return self._loss(batch)
                return value_and_grad(loss_of)(params)

            self._jitted = jit(loss_and_grads)
        params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        loss, grads = self._jitted(params, batch, self.model.training)
        # a parameter the loss does not reach gets no gradient, as with .backward()
        leaves, _ = flatten((loss, grads))
        unreached = {id(t) for t, const in zip(leaves, self._jitted.last_program.constant_outputs)
                     if const}
        for name, p in params.items():
            if id(grads[name]) in unreached:
                continue
            g = grads[name] if scale == 1 else grads[name] * scale
            p.grad = g if p.grad is None else p.grad + g
        return loss

    def _optimizer_step(self, rescale=1.0) -> None:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if rescale != 1.0:
            for p in params:
                if p.grad is not None:
                    p.grad = Tensor(p.grad.data * p.grad.data.dtype.type(rescale))
        if self.clip_grad_value is not None:
            clip_grad_value_(params, self.clip_grad_value)
        if self.clip_grad_norm is not None:
            clip_grad_norm_(params, self.clip_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.step_count += 1
        for s in _as_list(self.step_scheduler):
            s.step()

    def train_step(self, *batch) -> float:
        """One optimisation step on one batch (``train_step(x, y)`` or
        ``train_step(batch)``); returns the batch loss."""
        batch = batch[0] if len(batch) == 1 else batch
        self.optimizer.zero_grad()
        loss = self._backward(batch, 1.0)
        self._optimizer_step()
        return loss

    def evaluate(self, loader) -> dict:
        """Mean loss and every metric over ``loader`` (in eval mode, without recording)."""
        was_training = self.model.training
        self.model.eval()
        total, count, outs, targets = 0.0, 0, [], []
        try:
            with no_grad():
                for batch in loader:
                    n = _batch_size(batch)
                    total += float(self._loss(batch).item()) * n
                    count += n
                    if self.metrics:
                        x, y = _as_batch(batch)
                        outs.append(B.to_numpy(self.model(x).data))     # from any device
                        targets.append(B.to_numpy(y.data) if isinstance(y, Tensor) else np.asarray(y))
        finally:
            self.model.train(was_training)
        if dist.world_size() > 1:                 # every rank's share of the data
            total, count = dist.all_reduce(np.array([total, count], dtype=np.float64)).tolist()
        if count == 0:
            raise ValueError("Trainer.evaluate: the loader yielded no samples")
        result = {"loss": total / count}
        if self.metrics:
            o, t = np.concatenate(outs), np.concatenate(targets)
            if dist.world_size() > 1:
                o, t = _gathered(o), _gathered(t)
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
        """Train until ``epochs`` epochs in total have run; returns the :class:`History`.

        ``epochs`` counts from the start of training, so after resuming from a checkpoint
        of epoch k, ``epochs=n`` runs epochs k+1 … n.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
            raise ValueError(f"Trainer.fit: epochs must be a positive integer, got {epochs!r}")
        _check_not_empty(train_loader)
        if resume_from is not None:
            self.load_checkpoint(resume_from, loader=train_loader)
        if self.epoch >= epochs:
            return self._nothing_to_do(epochs, resume_from)
        callbacks = self._callbacks_for(early_stopping)
        self.train_loader = train_loader
        self.stop_training = False
        self.model.train()
        for cb in callbacks:
            cb.on_train_begin(self)
        while self.epoch < epochs and not self.stop_training:
            start = time.perf_counter()
            row = self._run_epoch(train_loader, epochs, callbacks)
            if val_loader is not None:
                row.update({f"val_{k}": v for k, v in self.evaluate(val_loader).items()})
            row["time"] = time.perf_counter() - start
            self._end_epoch(row, epochs, callbacks)
        for cb in callbacks:
            cb.on_train_end(self)
        return self.history

    def _callbacks_for(self, early_stopping):
        callbacks = list(self.callbacks)
        if early_stopping is not None:
            callbacks.append(early_stopping)
        if self.checkpoint_dir:
            monitor = early_stopping.monitor if early_stopping is not None else None
            mode = early_stopping.mode if early_stopping is not None else "min"
            callbacks.append(Checkpoint(self.checkpoint_dir, monitor, mode))
        return callbacks

    def _nothing_to_do(self, epochs, resume_from):
        where = f"the checkpoint {os.fspath(resume_from)}" if resume_from is not None else \
            "earlier calls to fit"
        if self.epoch > epochs:
            raise ValueError(f"Trainer.fit: training is already at epoch {self.epoch} (from "
                             f"{where}), past epochs={epochs}; epochs is the total to reach, "
                             f"so pass a larger value to continue")
        warnings.warn(f"Trainer.fit: training is already at epoch {self.epoch} (from {where}) "
                      f"= epochs; nothing to train. epochs is the total to reach: pass a larger "
                      f"value to continue", stacklevel=3)
        return self.history

    def _run_epoch(self, train_loader, epochs, callbacks) -> dict:
        from tqdm.auto import tqdm

        total, count, pending, pending_losses = 0.0, 0, 0, []
        k = self.accumulate_steps
        sampler = getattr(train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):          # e.g. a DistributedSampler
            sampler.set_epoch(self.epoch)
        bar = tqdm(total=len(train_loader) if hasattr(train_loader, "__len__") else None,
                   desc=f"epoch {self.epoch + 1}/{epochs}", leave=False,
                   disable=not self.progress or not dist.is_main_process(), unit="batch")
        try:
            self.optimizer.zero_grad()
            for batch in train_loader:
                loss = self._backward(batch, 1.0 / k)
                n = _batch_size(batch)
                total, count, pending = total + loss * n, count + n, pending + 1
                pending_losses.append(loss)
                if pending == k:
                    self._finish_step(pending_losses, 1.0, callbacks)
                    pending, pending_losses = 0, []
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
            if pending:                        # a last, shorter accumulation
                self._finish_step(pending_losses, k / pending, callbacks)
        finally:
            bar.close()
        if count == 0:
            raise ValueError(f"Trainer.fit: the training loader yielded no samples in epoch "
                             f"{self.epoch + 1}{_loader_hint(train_loader)}")
        if dist.world_size() > 1:                 # the mean over every rank's examples
            total, count = dist.all_reduce(np.array([total, count], dtype=np.float64)).tolist()
        return {"epoch": self.epoch + 1, "train_loss": total / count,
                "lr": self.optimizer.param_groups[0]["lr"]}

    def _finish_step(self, losses, rescale, callbacks):
        self._optimizer_step(rescale)
        logs = {"epoch": self.epoch + 1, "step": self.step_count,
                "loss": float(np.mean(losses)), "lr": self.optimizer.param_groups[0]["lr"]}
        for cb in callbacks:
            cb.on_step_end(self, logs)

    def _end_epoch(self, row, epochs, callbacks):
        from tqdm.auto import tqdm

        self.epoch += 1
        self.history.append(row)
        for s in _as_list(self.scheduler):
            s.step()
        if self.progress and dist.is_main_process():
            shown = "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "time"))
            tqdm.write(f"epoch {self.epoch}/{epochs}  {shown}")
        # checkpoints first: a log line is written only for an epoch whose checkpoint is
        # on disk, so resuming never repeats a logged epoch
        for cb in sorted(callbacks, key=lambda c: not isinstance(c, Checkpoint)):
            cb.on_epoch_end(self, row)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path, loader=None) -> None:
        """Everything needed to resume at the end of the current epoch (written by rank 0
        only in a data-parallel run: every rank holds the same values)."""
        if not dist.is_main_process():
            return
        gen = getattr(loader, "generator", None)
        extra = {"epoch": self.epoch, "step": self.step_count, "history": self.history.to_dict(),
                 "loader_rng": gen.get_state() if gen is not None else None}
        io.save_checkpoint(path, self.model, self.optimizer, self.schedulers or None, extra)

    def load_checkpoint(self, path, loader=None) -> None:
        """Restore a checkpoint of :meth:`save_checkpoint`: all of it, or (on a
        :class:`wl.io.CheckpointError`) nothing."""
        gen = getattr(loader, "generator", None)

        def check(extra):
            _check_extra(path, extra, gen)

        extra = io.load_checkpoint(path, self.model, self.optimizer, self.schedulers or None,
                                   check_extra=check)
        self.epoch = int(extra.get("epoch", 0))
        self.step_count = int(extra.get("step", 0))
        self.history = History(extra.get("history"))
        if gen is not None and extra.get("loader_rng") is not None:
            gen.set_state(extra["loader_rng"])


def _gathered(array):
    """The concatenation of every rank's ``array`` (same trailing shape and dtype)."""
    counts = dist.all_gather_object(int(array.shape[0]))
    out = np.zeros((sum(counts),) + array.shape[1:], dtype=array.dtype)
    start = sum(counts[:dist.rank()])
    out[start:start + array.shape[0]] = array
    return dist.all_reduce(out)


def _loader_hint(loader) -> str:
    dataset = getattr(loader, "dataset", None)
    size = getattr(loader, "batch_size", None)
    try:
        n = len(dataset) if dataset is not None else None
    except TypeError:
        n = None
    if n is None or size is None:
        return ""
    drop = " with drop_last=True" if getattr(loader, "drop_last", False) else ""
    return f" (its dataset has {n} samples, batch_size {size}{drop})"


def _check_not_empty(loader) -> None:
    try:
        empty = len(loader) == 0
    except TypeError:
        return                                  # no length: checked after the first epoch
    if empty:
        raise ValueError(f"Trainer.fit: the training loader yields no batches"
                         f"{_loader_hint(loader)}")


def _check_extra(path, extra, generator) -> None:
    for key in ("epoch", "step"):
        value = extra.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise io.CheckpointError(f"load_checkpoint: {key} in {path} must be a non-negative "
                                     f"integer, got {value!r}")
    history = extra.get("history", {})
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        raise io.CheckpointError(f"load_checkpoint: the history in {path} is damaged")
    if generator is not None and extra.get("loader_rng") is not None:
        io.check_generator_state(extra["loader_rng"], generator,
                                 f"the data loader's random state in {path}")


def fit(model, optimizer, loss_fn, train_loader, epochs, **kwargs):
    """Shortcut: ``Trainer(model, optimizer, loss_fn, ...).fit(train_loader, epochs, ...)``."""
    fit_keys = {"val_loader", "early_stopping", "resume_from"}
    fit_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in fit_keys}
    return Trainer(model, optimizer, loss_fn, **kwargs).fit(train_loader, epochs, **fit_kwargs)


__all__ = ["Trainer", "History", "Callback", "EarlyStopping", "Checkpoint", "JSONLinesLogger",
           "fit"]
