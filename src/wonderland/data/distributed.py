"""``DistributedSampler``: each rank of a data-parallel job its own part of the data.

::

    sampler = wl.data.DistributedSampler(train_set, shuffle=True, seed=0)
    loader = wl.data.DataLoader(train_set, batch_size=32, sampler=sampler)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)          # the Trainer does this for you
        for x, y in loader: ...

Every rank draws the same permutation of the dataset (from ``seed`` and the epoch, not
from a shared random state) and takes every ``world_size``-th index starting at its rank.
So at step ``j`` the ranks' batches together are exactly the ``j``-th slice of
``world_size × batch_size`` indices of that permutation: data-parallel training on
``world_size`` ranks sees the batches a single process sees with the larger batch.

Uneven sizes: when the dataset's size is not a multiple of the number of ranks, the
permutation is padded with its own first indices (a few samples appear twice per epoch)
so that every rank has the same number of samples and therefore the same number of
batches — a rank with one batch fewer would leave the others waiting in an all-reduce.
``drop_last=True`` drops the tail instead. Ranks' last batches may then be smaller than
``batch_size``; ``DistributedDataParallel`` weights each rank by its batch size, so the
gradient is still the one of the concatenated batch.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DistributedSampler"]


class DistributedSampler:
    """Indices of this rank's shard of a dataset (or of ``range(n)`` for an int)."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        from .. import distributed as dist

        n = dataset if isinstance(dataset, (int, np.integer)) else len(dataset)
        if num_replicas is None:
            num_replicas = dist.world_size()
        if rank is None:
            rank = dist.rank()
        for name, value in (("num_replicas", num_replicas), ("rank", rank), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"DistributedSampler: {name} must be an integer, got {value!r}")
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be at least 1, got "
                             f"{num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: rank must be in [0, {num_replicas - 1}], "
                             f"got {rank}")
        self.n, self.num_replicas, self.rank = int(n), int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0
        self.num_samples = (self.n // self.num_replicas if self.drop_last
                            else -(-self.n // self.num_replicas))
        if self.num_samples == 0:
            raise ValueError(f"DistributedSampler: {self.n} samples cannot give each of "
                             f"{self.num_replicas} ranks one"
                             f"{' with drop_last=True' if self.drop_last else ''}")

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation the next iteration uses."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"DistributedSampler.set_epoch: expected a non-negative integer, "
                             f"got {epoch!r}")
        self.epoch = int(epoch)

    def global_order(self) -> np.ndarray:
        """The whole epoch's (padded or truncated) order that the ranks share out."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        total = self.num_samples * self.num_replicas
        if total <= self.n:
            return order[:total]
        reps = -(-(total - self.n) // self.n)
        return np.concatenate([order] + [order] * reps)[:total]

    def __iter__(self):
        return iter(self.global_order()[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self):
        return (f"DistributedSampler({self.n} samples, rank {self.rank} of "
                f"{self.num_replicas}, {self.num_samples} each, shuffle={self.shuffle})")
