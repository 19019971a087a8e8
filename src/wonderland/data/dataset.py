"""Datasets and the DataLoader.

A dataset has ``len(ds)`` and ``ds[i]``; datasets that can gather a whole batch at once
(``TensorDataset``, ``Subset`` of one) also have ``get_batch(indices)``, which the
loader uses instead of collating item by item.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.pytree import flatten, unflatten
from ..core.tensor import Tensor, from_array
from ..random import Generator, get_generator


class Dataset:
    """Base class: subclasses define ``__len__`` and ``__getitem__``."""

    def __len__(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index):  # pragma: no cover - abstract
        raise NotImplementedError


class TensorDataset(Dataset):
    """Samples are the i-th rows of each tensor: ``TensorDataset(x, y)[i] == (x[i], y[i])``."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: need at least one tensor")
        ts = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
        n = ts[0].shape[0] if ts[0].ndim else None
        for i, t in enumerate(ts):
            if t.ndim == 0 or t.shape[0] != n:
                raise ValueError(f"TensorDataset: every tensor needs the same first dimension; "
                                 f"tensor 0 has {n} rows, tensor {i} has shape {t.shape}")
        self.tensors = tuple(ts)

    def __len__(self):
        return self.tensors[0].shape[0]

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def get_batch(self, indices):
        idx = np.asarray(indices)
        return tuple(from_array(t.data[idx]) for t in self.tensors)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        n = len(dataset)
        if self.indices.size and (self.indices.min() < -n or self.indices.max() >= n):
            raise IndexError(f"Subset: index out of range for a dataset of {n} samples")

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[int(self.indices[i])]

    def get_batch(self, indices):
        inner = self.indices[np.asarray(indices)]
        if hasattr(self.dataset, "get_batch"):
            return self.dataset.get_batch(inner)
        return default_collate([self.dataset[int(i)] for i in inner])


def random_split(dataset, lengths, generator=None):
    """Split into non-overlapping random subsets of the given lengths (or fractions
    summing to 1)."""
    n = len(dataset)
    lengths = list(lengths)
    if all(0 <= f <= 1 for f in lengths) and math.isclose(sum(lengths), 1.0) and sum(lengths) != n:
        counts = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise ValueError(f"random_split: lengths sum to {sum(lengths)}, the dataset has {n} samples")
    perm = get_generator(generator).permutation(n).data
    out, start = [], 0
    for length in lengths:
        out.append(Subset(dataset, perm[start:start + length]))
        start += length
    return out


def default_collate(samples):
    """Stack a list of samples (pytrees of tensors, arrays or numbers) leafwise."""
    if not samples:
        raise ValueError("default_collate: no samples")
    first, tree = flatten(samples[0])
    columns = [[] for _ in first]
    for s in samples:
        leaves, t = flatten(s)
        if t != tree:
            raise ValueError("default_collate: samples have different structures")
        for c, leaf in zip(columns, leaves):
            c.append(leaf.data if isinstance(leaf, Tensor) else np.asarray(leaf))
    return unflatten(tree, [from_array(np.stack(c)) for c in columns])


class DataLoader:
    """Mini-batches from a dataset, optionally shuffled with a seeded generator.

    ``for x, y in DataLoader(TensorDataset(X, Y), batch_size=32, shuffle=True)``.
    Shuffling draws one permutation per epoch from ``generator`` (a
    ``wl.random.Generator``; the global one by default), so a seed fixes the order.
    ``collate_fn`` turns a list of samples into a batch (default: stack leafwise);
    ``transform`` is applied to every batch (e.g. ``wl.data.MixUp(10)``). ``sampler``
    (e.g. ``wl.data.DistributedSampler``) gives the order of the indices instead of
    ``shuffle``; its ``set_epoch`` is called by the Trainer.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, collate_fn=None,
                 generator=None, transform=None, sampler=None):
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if generator is not None and not isinstance(generator, Generator):
            raise TypeError("DataLoader: generator must be a wonderland.random.Generator")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.collate_fn = collate_fn
        self.generator = generator
        self.transform = transform
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: give shuffle=True or a sampler, not both (the "
                             "sampler decides the order)")
        self.sampler = sampler

    def __len__(self):
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        if self.sampler is not None:
            order = np.fromiter(iter(self.sampler), dtype=np.int64)
            n = len(order)
        else:
            n = len(self.dataset)
            order = get_generator(self.generator).permutation(n).data if self.shuffle else np.arange(n)
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        fast = self.collate_fn is None and hasattr(self.dataset, "get_batch")
        for start in range(0, stop, self.batch_size):
            idx = order[start:start + self.batch_size]
            if fast:
                batch = self.dataset.get_batch(idx)
            else:
                collate = self.collate_fn or default_collate
                batch = collate([self.dataset[int(i)] for i in idx])
            yield self.transform(batch) if self.transform is not None else batch
