"""Helpers shared by experiments: standardised splits and a small training loop."""

from __future__ import annotations

import numpy as np

import wonderland as wl


def split_standardized(x, y, test_size=0.25, seed=0, stratify=True):
    """Stratified train/test split with features standardised on the training part."""
    g = wl.random.Generator(seed)
    x_tr, x_te, y_tr, y_te = wl.data.train_test_split(x, y, test_size=test_size,
                                                      stratify=y if stratify else None, generator=g)
    scaler = wl.data.Standardizer().fit(x_tr)
    return scaler.transform(x_tr), scaler.transform(x_te), y_tr, y_te


def train_classifier(model, x_tr, y_tr, x_te, y_te, epochs, lr=1e-3, batch_size=64,
                     weight_decay=0.0, seed=0, loss=None, record=False):
    """Adam on mini-batches; returns (test accuracy, per-epoch test accuracies)."""
    loss = loss or wl.nn.functional.cross_entropy
    loader = wl.data.DataLoader(wl.data.TensorDataset(x_tr, y_tr), batch_size, shuffle=True,
                                generator=wl.random.Generator(seed))
    opt = wl.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    trainer = wl.train.Trainer(model, opt, loss, progress=False)
    curve = []
    for epoch in range(epochs):
        trainer.fit(loader, epoch + 1)
        if record:
            curve.append(accuracy(model, x_te, y_te))
    return accuracy(model, x_te, y_te), curve


def accuracy(model, x, y):
    model.eval()
    with wl.no_grad():
        out = model(x)
    model.train()
    if out.ndim == 1:
        return float(((out.numpy() > 0).astype(np.int64) == y.numpy()).mean())
    return wl.metrics.accuracy(out, y)
