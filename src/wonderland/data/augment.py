"""Batch augmentations for images ``(b, h, w, c)``: random crops, flips and small
translations, and the label-mixing mixup and cutmix.

Each is a callable on an ``(x, y)`` batch that returns a new ``(x, y)`` batch, so they
plug into ``DataLoader(..., transform=...)`` and compose with :class:`Compose`. They
work on the batch's arrays (augmentation is data preparation, outside the graph), draw
from a seeded generator, and vectorise over the batch.
"""

from __future__ import annotations

import numpy as np

from ..core.tensor import Tensor
from ..random import get_generator


def _arr(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _check_images(x, what):
    if x.ndim != 4:
        raise ValueError(f"{what}: expected images (batch, height, width, channels), got shape {x.shape}")


def _shifted(x, dy, dx, fill):
    """Each image ``i`` shifted by ``(dy[i], dx[i])`` pixels, vacated pixels = ``fill``."""
    b, h, w, c = x.shape
    pad = int(max(np.abs(dy).max(initial=0), np.abs(dx).max(initial=0)))
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=fill)
    rows = (np.arange(h)[None, :] - dy[:, None] + pad)          # (b, h)
    cols = (np.arange(w)[None, :] - dx[:, None] + pad)          # (b, w)
    return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_translate(x, max_shift=2, fill=0.0, generator=None):
    """Shift each image by up to ``max_shift`` pixels in each direction."""
    x = _arr(x)
    _check_images(x, "random_translate")
    g = get_generator(generator)
    dy = g.randint(-max_shift, max_shift + 1, (x.shape[0],)).numpy()
    dx = g.randint(-max_shift, max_shift + 1, (x.shape[0],)).numpy()
    return _shifted(x, dy, dx, fill)


def random_crop(x, size, padding=0, fill=0.0, generator=None):
    """Pad by ``padding`` then crop a random ``size`` window from each image."""
    x = _arr(x)
    _check_images(x, "random_crop")
    sh, sw = (size, size) if isinstance(size, int) else size
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=fill)
    b, h, w, _ = xp.shape
    if sh > h or sw > w:
        raise ValueError(f"random_crop: crop {sh}×{sw} is larger than the padded image {h}×{w}")
    g = get_generator(generator)
    top = g.randint(0, h - sh + 1, (b,)).numpy()
    left = g.randint(0, w - sw + 1, (b,)).numpy()
    rows = top[:, None] + np.arange(sh)[None, :]
    cols = left[:, None] + np.arange(sw)[None, :]
    return xp[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_flip(x, p=0.5, axis=2, generator=None):
    """Flip each image along ``axis`` (2 = horizontally) with probability ``p``."""
    x = _arr(x)
    _check_images(x, "random_flip")
    flip = get_generator(generator).uniform((x.shape[0],), dtype=np.float64).numpy() < p
    out = x.copy()
    out[flip] = np.flip(x[flip], axis=axis)
    return out


def _soft(y, num_classes):
    y = _arr(y)
    if y.dtype.kind in "iu":
        return np.eye(num_classes, dtype=np.float32)[y]
    return y.astype(np.float32)


def mixup(x, y, num_classes, alpha=0.2, generator=None):
    """Convex combinations of pairs: ``λ·(x, y) + (1 − λ)·(x', y')`` with
    ``λ ~ Beta(α, α)`` and ``x'`` a shuffled copy of the batch; labels become soft."""
    g = get_generator(generator)
    x, ys = _arr(x), _soft(y, num_classes)
    if x.dtype.kind != "f":                       # mixing integers (e.g. uint8 pixels) needs floats
        x = x.astype(np.float32)
    lam = float(g.beta(alpha, alpha).item())
    perm = g.permutation(x.shape[0]).numpy()
    return (lam * x + (1 - lam) * x[perm]).astype(x.dtype), (lam * ys + (1 - lam) * ys[perm])


def cutmix(x, y, num_classes, alpha=1.0, generator=None):
    """Paste a random box from a shuffled copy of the batch into each image; labels mix
    by the pasted area's share."""
    x = _arr(x)
    _check_images(x, "cutmix")
    g = get_generator(generator)
    ys = _soft(y, num_classes)
    b, h, w, _ = x.shape
    lam = float(g.beta(alpha, alpha).item())
    ch, cw = int(round(h * np.sqrt(1 - lam))), int(round(w * np.sqrt(1 - lam)))
    cy, cx = int(g.randint(0, h).item()), int(g.randint(0, w).item())
    top, bottom = max(cy - ch // 2, 0), min(cy + (ch - ch // 2), h)
    left, right = max(cx - cw // 2, 0), min(cx + (cw - cw // 2), w)
    perm = g.permutation(b).numpy()
    out = x.copy()
    out[:, top:bottom, left:right] = x[perm, top:bottom, left:right]
    share = (bottom - top) * (right - left) / (h * w)
    return out, (1 - share) * ys + share * ys[perm]


class _Augment:
    def __init__(self, generator=None):
        self.generator = generator

    def __call__(self, batch):
        x, y = batch
        out = self.apply(_arr(x), y)
        if isinstance(out, tuple):
            return Tensor(out[0]), Tensor(out[1])
        return Tensor(out), y


class RandomTranslate(_Augment):
    def __init__(self, max_shift=2, fill=0.0, generator=None):
        super().__init__(generator)
        self.max_shift, self.fill = max_shift, fill

    def apply(self, x, y):
        return random_translate(x, self.max_shift, self.fill, self.generator)


class RandomCrop(_Augment):
    def __init__(self, size, padding=0, fill=0.0, generator=None):
        super().__init__(generator)
        self.size, self.padding, self.fill = size, padding, fill

    def apply(self, x, y):
        return random_crop(x, self.size, self.padding, self.fill, self.generator)


class RandomFlip(_Augment):
    def __init__(self, p=0.5, axis=2, generator=None):
        super().__init__(generator)
        self.p, self.axis = p, axis

    def apply(self, x, y):
        return random_flip(x, self.p, self.axis, self.generator)


class MixUp(_Augment):
    def __init__(self, num_classes, alpha=0.2, generator=None):
        super().__init__(generator)
        self.num_classes, self.alpha = num_classes, alpha

    def apply(self, x, y):
        return mixup(x, y, self.num_classes, self.alpha, self.generator)


class CutMix(_Augment):
    def __init__(self, num_classes, alpha=1.0, generator=None):
        super().__init__(generator)
        self.num_classes, self.alpha = num_classes, alpha

    def apply(self, x, y):
        return cutmix(x, y, self.num_classes, self.alpha, self.generator)


class Compose:
    """Apply batch transforms in order."""

    def __init__(self, *transforms):
        self.transforms = transforms

    def __call__(self, batch):
        for t in self.transforms:
            batch = t(batch)
        return batch
