"""Helpers for the three graph tasks: node classification (masks and accuracy), link
prediction (edge splits, negative sampling, ROC-AUC) and graph classification
(stratified k-fold cross-validation)."""

from __future__ import annotations

import numpy as np

from ..core.tensor import Tensor
from .utils import as_edge_index, num_nodes_of

__all__ = ["negative_sampling", "link_split", "roc_auc_score", "stratified_kfold",
           "masked_accuracy"]


def _rng(generator):
    from ..random import Generator, default_generator

    if generator is None:
        generator = default_generator()
    elif not isinstance(generator, Generator):
        generator = Generator(generator)
    return np.random.default_rng(int(np.asarray(generator.randint(0, 2 ** 62).data)))


def negative_sampling(edge_index, num_nodes=None, num_neg_samples=None, generator=None,
                      undirected=False) -> np.ndarray:
    """Node pairs ``(2, k)`` that are *not* edges of the graph (and not self-loops),
    drawn uniformly; ``num_neg_samples`` defaults to the number of edges. With
    ``undirected``, each pair is returned with source < target and is not an edge in
    either direction. Draws candidates in vectorised rounds (no loop over edges)."""
    ei = as_edge_index(edge_index, "negative_sampling")
    n = num_nodes_of(ei, num_nodes)
    k = ei.shape[1] if num_neg_samples is None else int(num_neg_samples)
    possible = n * (n - 1) // (2 if undirected else 1) - \
        (len(np.unique(np.sort(ei, axis=0)[0] * n + np.sort(ei, axis=0)[1])) if undirected
         else len(np.unique(ei[0] * n + ei[1])))
    if k > possible:
        raise ValueError(f"negative_sampling: asked for {k} non-edges but the graph "
                         f"({n} nodes, {ei.shape[1]} edges) has only {possible}")
    rng = _rng(generator)
    existing = np.unique(np.concatenate([ei[0] * n + ei[1], ei[1] * n + ei[0]])
                         if undirected else ei[0] * n + ei[1])
    chosen = np.zeros(0, dtype=np.int64)
    while chosen.size < k:
        m = max(2 * (k - chosen.size), 64)
        a = rng.integers(0, n, m)
        b = rng.integers(0, n, m)
        if undirected:
            a, b = np.minimum(a, b), np.maximum(a, b)
        key = a * n + b
        ok = (a != b) & ~np.isin(key, existing) & ~np.isin(key, chosen)
        key = key[ok]
        _, first = np.unique(key, return_index=True)
        chosen = np.concatenate([chosen, key[np.sort(first)]])
    chosen = chosen[:k]
    return np.stack([chosen // n, chosen % n]).astype(np.int64)


def link_split(edge_index, num_nodes=None, val_ratio=0.05, test_ratio=0.1, generator=None):
    """Split the edges of an undirected graph for link prediction.

    Each undirected edge is assigned to training, validation or test; the training
    graph keeps both directions of its edges only (message passing never sees a
    held-out edge). Validation and test get as many negative pairs as positives, drawn
    from pairs that are not edges of the *full* graph. Returns a dict with
    ``train_edge_index`` (2, 2·E_train), ``train_pos`` (2, E_train), and
    ``val_pos``, ``val_neg``, ``test_pos``, ``test_neg`` (each (2, k), source < target).
    """
    ei = as_edge_index(edge_index, "link_split")
    n = num_nodes_of(ei, num_nodes)
    lo, hi = np.minimum(ei[0], ei[1]), np.maximum(ei[0], ei[1])
    keep = lo != hi
    und = np.unique(lo[keep] * n + hi[keep])
    rng = _rng(generator)
    und = und[rng.permutation(und.size)]
    n_val = int(round(val_ratio * und.size))
    n_test = int(round(test_ratio * und.size))
    parts = {"val": und[:n_val], "test": und[n_val:n_val + n_test],
             "train": und[n_val + n_test:]}
    pairs = {k: np.stack([v // n, v % n]).astype(np.int64) for k, v in parts.items()}
    neg = negative_sampling(ei, n, n_val + n_test, generator=rng.integers(0, 2 ** 31),
                            undirected=True)
    tr = pairs["train"]
    return {"train_edge_index": np.concatenate([tr, tr[::-1]], axis=1), "train_pos": tr,
            "val_pos": pairs["val"], "val_neg": neg[:, :n_val],
            "test_pos": pairs["test"], "test_neg": neg[:, n_val:]}


def roc_auc_score(y_true, scores) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a
    random negative (ties count one half) — the Mann–Whitney statistic from ranks."""
    y = np.asarray(y_true.data if isinstance(y_true, Tensor) else y_true).astype(bool).ravel()
    s = np.asarray(scores.data if isinstance(scores, Tensor) else scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"roc_auc_score: {y.shape[0]} labels for {s.shape[0]} scores")
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise ValueError("roc_auc_score: needs both positive and negative examples")
    from scipy.stats import rankdata

    ranks = rankdata(s)                      # average ranks for ties
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def stratified_kfold(y, k=10, generator=None) -> list:
    """``k`` folds of ``(train_idx, test_idx)`` in which every class is spread as evenly
    as possible (each class's shuffled members dealt round-robin to the folds)."""
    labels = np.asarray(y.data if isinstance(y, Tensor) else y).ravel()
    if k < 2 or k > labels.size:
        raise ValueError(f"stratified_kfold: k must be in [2, {labels.size}], got {k}")
    rng = _rng(generator)
    fold = np.empty(labels.size, dtype=np.int64)
    start = 0
    for c in np.unique(labels):             # one pass per class, not per example
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(members.size)]
        fold[members] = (start + np.arange(members.size)) % k
        start = (start + members.size) % k
    idx = np.arange(labels.size)
    return [(idx[fold != f], idx[fold == f]) for f in range(k)]


def masked_accuracy(logits, y, mask) -> float:
    """Accuracy of ``argmax(logits)`` against ``y`` on the nodes in ``mask`` (a boolean
    mask or index array); nodes labelled −1 are not counted."""
    out = np.asarray(logits.data if isinstance(logits, Tensor) else logits)
    labels = np.asarray(y.data if isinstance(y, Tensor) else y)
    m = np.asarray(mask.data if isinstance(mask, Tensor) else mask)
    idx = np.flatnonzero(m) if m.dtype == bool else m.astype(np.int64)
    idx = idx[labels[idx] >= 0]
    return float((out[idx].argmax(-1) == labels[idx]).mean()) if idx.size else float("nan")
