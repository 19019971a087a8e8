"""The shape of the source tree, read from its syntax: layers that only point down (no
import circle, imports inside functions included), short functions, few imports of
another package's private names."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2] / "src" / "wonderland"
MAX_LINES = 60                 # per function, outside the tour's experiments
MAX_PRIVATE_IMPORTS = 10       # import statements taking another package's private names


def _modules():
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _owner(name):
    """The module a dotted name lives in (``wonderland.ops.add`` -> ``wonderland.ops``)."""
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name if name in MODULES else None


def _package(module):
    """The first-level package of a module (``wonderland.ops.conv`` -> ``ops``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(module):
    """``(target module, names taken)`` for every import statement of ``module``,
    at any depth (inside functions too)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    here = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("wonderland"):
                    yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = here
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            if not base.startswith("wonderland"):
                continue
            names = [a.name for a in node.names]
            submodules = [n for n in names if f"{base}.{n}" in MODULES]
            for n in submodules:
                yield f"{base}.{n}", []
            rest = [n for n in names if n not in submodules]
            if rest or not submodules:
                yield base, rest


def _graph():
    edges = {m: set() for m in MODULES}
    for m in MODULES:
        for target, _ in _imports(m):
            t = _owner(target)
            if t is not None and t != m:
                edges[m].add(t)
    return edges


def _circles(edges):
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_circle():
    circles = _circles(_graph())
    assert not circles, "import circles (imports inside functions included):\n" + "\n".join(
        " <-> ".join(c) for c in circles)


def test_no_long_function_outside_the_tour():
    long = []
    for module, path in MODULES.items():
        if ".experiments" in module:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{module}.{node.name}: {n} lines")
    assert not long, f"functions over {MAX_LINES} lines:\n" + "\n".join(sorted(long))


def test_few_imports_of_private_names():
    found = []
    for module in MODULES:
        for target, names in _imports(module):
            owner = _owner(target)
            if owner is None or _package(owner) == _package(module):
                continue
            private_module = any(p.startswith("_") and not p.startswith("__")
                                 for p in target.split(".")[1:])
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private or private_module:
                found.append(f"{module} takes {', '.join(private) or target} from {target}")
    assert len(found) <= MAX_PRIVATE_IMPORTS, (
        f"{len(found)} imports of another package's private names (at most "
        f"{MAX_PRIVATE_IMPORTS}):\n" + "\n".join(found))


def test_the_checks_see_what_they_should():
    """The measurements work: a made-up circle is found, the real tree has modules and
    import edges."""
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    edges = _graph()
    assert len(edges) > 100
    assert "wonderland.core.tensor" in edges["wonderland.core.primitive"]
