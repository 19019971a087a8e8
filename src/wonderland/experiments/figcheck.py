"""What a reader needs from a figure, checked on matplotlib's own objects.

:func:`figure_problems` lists, for a drawn figure and its caption:

* axes without a label: every visible x or y axis that shows tick labels needs a label
  (an axis sharing it may carry it, as a twin axis does), a colour bar needs a label, and
  an image needs a colour bar with its colour map (or the caption must say what its
  colours are, see below);
* tick labels that overlap: the window extents of the tick labels of one axis, after a
  draw, must not intersect;
* marks nobody explains: every line, set of points, band, set of bars or error bars
  must carry a label shown in a legend of the figure, or be marked with
  :func:`~wonderland.experiments.plotting.explained` by a word that the caption contains;
* a legend that covers bars, and bars whose value axis does not start at 0 (a cut axis
  exaggerates the gaps between bars).

The tour's tests run it on every figure of a quick tour.
"""

from __future__ import annotations

from matplotlib.collections import Collection
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

CAPTION_GID = "caption:"


def figure_problems(fig, caption: str = "") -> list:
    """Every problem :mod:`figcheck` finds in ``fig`` (drawn here), as sentences."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend_texts = _legend_texts(fig)
    colorbar_cmaps = {ax._colorbar.mappable.get_cmap().name
                      for ax in fig.axes if getattr(ax, "_colorbar", None) is not None}
    problems = []
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        name = _name(ax, i)
        colorbar = getattr(ax, "_colorbar", None)
        if colorbar is not None:
            if not (ax.get_ylabel() or ax.get_xlabel()):
                problems.append(f"{name}: colour bar without a label")
            problems += _overlaps(ax, name, renderer)
            continue
        for image in ax.images:
            if not (image.get_cmap().name in colorbar_cmaps or _explained(image, caption)):
                problems.append(f"{name}: image without a colour bar for its colour map "
                                f"{image.get_cmap().name!r} (or a caption word for it)")
        if ax.axison:
            problems += _missing_labels(ax, name)
            problems += _overlaps(ax, name, renderer)
        problems += _unexplained(ax, name, caption, legend_texts)
        problems += _legend_over_bars(ax, name, renderer)
        problems += _bars_not_from_zero(ax, name)
    return problems


def _name(ax, i):
    title = ax.get_title()
    return f"axes {i}" + (f" ({title!r})" if title else "")


def _legend_texts(fig) -> set:
    legends = list(fig.legends)
    for ax in fig.axes:
        if ax.get_legend() is not None:
            legends.append(ax.get_legend())
    for sub in getattr(fig, "subfigs", []):
        legends += list(sub.legends)
    return {t.get_text() for leg in legends for t in leg.get_texts()}


def _shows_tick_labels(axis) -> bool:
    return axis.get_visible() and any(t.get_visible() and t.get_text()
                                      for t in axis.get_ticklabels(which="both"))


def _missing_labels(ax, name) -> list:
    problems = []
    for letter, axis, shared in (("x", ax.xaxis, ax.get_shared_x_axes()),
                                 ("y", ax.yaxis, ax.get_shared_y_axes())):
        if not _shows_tick_labels(axis):
            continue
        siblings = shared.get_siblings(ax)
        if not any((s.get_xlabel() if letter == "x" else s.get_ylabel()) for s in siblings):
            problems.append(f"{name}: no {letter} label")
    return problems


def _visible_tick_labels(ax, axis, lo, hi):
    lo, hi = min(lo, hi), max(lo, hi)
    out = []
    for tick in axis.get_major_ticks() + axis.get_minor_ticks():
        loc = tick.get_loc()
        if loc is None or not (lo - 1e-12 * abs(lo) <= loc <= hi + 1e-12 * abs(hi)):
            continue
        for label in (tick.label1, tick.label2):
            if label.get_visible() and label.get_text():
                out.append(label)
    return out


def _overlaps(ax, name, renderer) -> list:
    problems = []
    for letter, axis, lim in (("x", ax.xaxis, ax.get_xlim()), ("y", ax.yaxis, ax.get_ylim())):
        if not axis.get_visible():
            continue
        labels = _visible_tick_labels(ax, axis, *lim)
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
        for j, (ta, a) in enumerate(boxes):
            for tb, b in boxes[j + 1:]:
                if (min(a.x1, b.x1) - max(a.x0, b.x0) > 0.5
                        and min(a.y1, b.y1) - max(a.y0, b.y0) > 0.5):
                    problems.append(f"{name}: {letter} tick labels {ta!r} and {tb!r} overlap")
    return problems


def _explained(artist, caption) -> bool:
    gid = (artist.get_gid() if hasattr(artist, "get_gid") else None) or ""
    if not gid.startswith(CAPTION_GID):
        return False
    words = gid[len(CAPTION_GID):].split("|")
    return any(w and w.lower() in caption.lower() for w in words)


def _marks(ax):
    """The things drawn on ``ax`` a reader must be told about: containers (bars, error
    bars) as one mark each, then lines, collections and loose patches."""
    marks, inside = [], set()
    for c in ax.containers:
        if isinstance(c, (BarContainer, ErrorbarContainer)):
            marks.append(c)
            for child in c.get_children():
                inside.add(id(child))
    for artist in list(ax.lines) + list(ax.collections) + list(ax.patches):
        if id(artist) in inside or not artist.get_visible():
            continue
        if isinstance(artist, Line2D) and len(artist.get_xdata()) == 0:
            continue
        if isinstance(artist, (Line2D, Collection, Rectangle)):
            marks.append(artist)
    return marks


def _describe(mark):
    kind = type(mark).__name__
    label = mark.get_label()
    return f"{kind}{f' {label!r}' if label and not label.startswith('_') else ''}"


def _unexplained(ax, name, caption, legend_texts) -> list:
    problems = []
    for mark in _marks(ax):
        label = mark.get_label() or ""
        if label and not label.startswith("_") and label in legend_texts:
            continue
        if _explained(mark, caption):
            continue
        if isinstance(mark, (BarContainer, ErrorbarContainer)):
            children = mark.get_children()
            if children and all(_explained(c, caption) for c in children):
                continue
        problems.append(f"{name}: {_describe(mark)} is in no legend and not named in the "
                        f"caption")
    return problems


def _bars_not_from_zero(ax, name) -> list:
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    if not bars:
        return []
    vertical = getattr(bars[0], "orientation", "vertical") != "horizontal"
    lo, hi = ax.get_ylim() if vertical else ax.get_xlim()
    if min(lo, hi) > 0 or max(lo, hi) < 0:
        return [f"{name}: the bars' axis does not start at 0 ({min(lo, hi):.3g})"]
    return []


def _legend_over_bars(ax, name, renderer) -> list:
    legend = ax.get_legend()
    if legend is None or not legend.get_visible():
        return []
    box = legend.get_window_extent(renderer)
    problems = []
    for c in ax.containers:
        if not isinstance(c, BarContainer):
            continue
        for bar in c.patches:
            b = bar.get_window_extent(renderer)
            if min(box.x1, b.x1) - max(box.x0, b.x0) > 1 and min(box.y1, b.y1) - max(box.y0, b.y0) > 1:
                problems.append(f"{name}: the legend covers a bar")
                return problems
    return problems


__all__ = ["figure_problems", "CAPTION_GID"]
