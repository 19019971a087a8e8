"""Nested containers of tensors ("pytrees"): dicts, lists, tuples, namedtuples and None.

``flatten(tree) -> (leaves, treedef)`` and ``unflatten(treedef, leaves)`` let the
transforms accept and return any nesting of these containers. As in JAX, a dict's
leaves are ordered by sorted key (so two dicts with the same keys have the same
structure whatever their insertion order); an ``OrderedDict`` keeps its own order.
"""

from __future__ import annotations

from collections import OrderedDict


class TreeDef:
    """The structure of a pytree with its leaves taken out."""

    __slots__ = ("kind", "meta", "children")

    def __init__(self, kind, meta, children):
        self.kind = kind          # "leaf", "none", "tuple", "list", "dict", "namedtuple"
        self.meta = meta          # dict keys or namedtuple class
        self.children = children  # tuple of TreeDef

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)

    def __eq__(self, other):
        return (isinstance(other, TreeDef) and self.kind == other.kind
                and self.meta == other.meta and self.children == other.children)

    def __repr__(self):
        if self.kind == "leaf":
            return "*"
        if self.kind == "none":
            return "None"
        inner = ", ".join(map(repr, self.children))
        if self.kind in ("dict", "ordereddict"):
            inner = ", ".join(f"{k!r}: {c!r}" for k, c in zip(self.meta, self.children))
            return "{" + inner + "}"
        return ("[" + inner + "]") if self.kind == "list" else ("(" + inner + ")")


_LEAF = TreeDef("leaf", None, ())
_NONE = TreeDef("none", None, ())


def flatten(tree):
    """Leaves of ``tree`` in a fixed order, and its structure."""
    leaves = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree, leaves):
    if tree is None:
        return _NONE
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return TreeDef("namedtuple", type(tree), tuple(_flatten(c, leaves) for c in tree))
    if isinstance(tree, tuple):
        return TreeDef("tuple", None, tuple(_flatten(c, leaves) for c in tree))
    if isinstance(tree, list):
        return TreeDef("list", None, tuple(_flatten(c, leaves) for c in tree))
    if isinstance(tree, OrderedDict):
        keys = tuple(tree.keys())
        return TreeDef("ordereddict", keys, tuple(_flatten(tree[k], leaves) for k in keys))
    if isinstance(tree, dict):
        try:
            keys = tuple(sorted(tree.keys()))
        except TypeError:                      # keys that do not compare: keep their order
            keys = tuple(tree.keys())
        return TreeDef("dict", keys, tuple(_flatten(tree[k], leaves) for k in keys))
    leaves.append(tree)
    return _LEAF


def unflatten(treedef: TreeDef, leaves):
    """Rebuild a tree of ``treedef``'s structure from ``leaves``."""
    it = iter(leaves)
    out = _unflatten(treedef, it)
    rest = next(it, _SENTINEL)
    if rest is not _SENTINEL:
        raise ValueError("unflatten: more leaves than the structure holds")
    return out


_SENTINEL = object()


def _unflatten(td, it):
    if td.kind == "leaf":
        try:
            return next(it)
        except StopIteration:
            raise ValueError("unflatten: fewer leaves than the structure holds") from None
    if td.kind == "none":
        return None
    children = [_unflatten(c, it) for c in td.children]
    if td.kind == "tuple":
        return tuple(children)
    if td.kind == "namedtuple":
        return td.meta(*children)
    if td.kind == "list":
        return children
    if td.kind == "ordereddict":
        return OrderedDict(zip(td.meta, children))
    return dict(zip(td.meta, children))


def tree_map(fn, tree, *rest):
    """Apply ``fn`` leafwise to one or more trees of the same structure."""
    leaves, td = flatten(tree)
    others = []
    for r in rest:
        rl, rtd = flatten(r)
        if rtd != td:
            raise ValueError(f"tree_map: structures differ: {td} and {rtd}")
        others.append(rl)
    return unflatten(td, [fn(*xs) for xs in zip(leaves, *others)])
