"""Matplotlib set up for files (no screen) with one consistent look, and small helpers
that keep the tour's figures readable (see ``figcheck.py`` for what is checked)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.container import Container  # noqa: E402
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator  # noqa: E402

plt.rcParams.update({
    "figure.figsize": (6.0, 4.0),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
})

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]


def explained(artists, *words):
    """Mark ``artists`` (one, or the list a plotting call returns) as described by the
    caption, which must contain one of ``words``; returns ``artists``."""
    gid = "caption:" + "|".join(words)
    for a in _leaves(artists):
        a.set_gid(gid)
    return artists


def _leaves(a):
    if isinstance(a, Container):                 # bars, error bars: every part
        yield from a.get_children()
        if getattr(a, "errorbar", None) is not None:        # bars drawn with yerr
            yield from _leaves(a.errorbar)
    elif isinstance(a, (list, tuple)):
        for item in a:
            yield from _leaves(item)
    elif a is not None:
        yield a


def plain_ticks(ax, values, axis="x", fmt=str):
    """Ticks exactly at ``values``, labelled plainly (``fmt(v)``), and no minor ticks or
    labels: on log axes matplotlib's own minor labels (“3×10¹”) crowd each other."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(list(values)))
    target.set_ticklabels([fmt(v) for v in values])
    target.set_minor_locator(NullLocator())
    target.set_minor_formatter(NullFormatter())


def value_labels(ax, xs, values, fmt="{:.1%}", tops=None, fontsize=7, offset=0.01):
    """Write each bar's value above it (above ``tops``, e.g. the error bars, if given)."""
    tops = values if tops is None else tops
    for x, v, top in zip(xs, values, tops):
        ax.text(x, top + offset, fmt.format(v), ha="center", va="bottom", fontsize=fontsize)
