"""Every Python block of README.md and docs/*.md runs as written, each on its own: a
fresh namespace and a temporary working folder, so that every block is a complete
example a reader can paste. A block whose modules are not installed (torch,
transformers, onnxruntime …) is skipped with a reason naming them; a block may be left
out on purpose only by a first line ``# not run by the tests: <reason>``, which the
reader sees too."""

import ast
import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP_MARK = "# not run by the tests:"


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def _cases():
    for doc in DOCS:
        for i, code in enumerate(python_blocks(doc)):
            yield pytest.param(doc, code, id=f"{doc.name}-{i + 1}")


def _missing_modules(code):
    """Top-level modules the block imports that are not installed."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


def test_the_docs_have_python_examples():
    counts = {doc.name: len(python_blocks(doc)) for doc in DOCS}
    assert counts["README.md"] >= 1
    assert sum(counts.values()) >= 20, counts


def test_the_interop_page_has_examples_of_every_part():
    text = "\n".join(python_blocks(ROOT / "docs" / "interop.md"))
    for name in ("GPT.from_pretrained", "save_pretrained", "ViT.from_pretrained",
                 "BPETokenizer.from_pretrained", '"generate"', "load_torch_state_dict",
                 "wl.from_dlpack", "torch.from_dlpack", "wl.onnx.export"):
        assert name in text, name


@pytest.mark.parametrize("doc, code", list(_cases()))
def test_python_block_runs_on_its_own(doc, code, tmp_path, monkeypatch):
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    if first.startswith(SKIP_MARK):
        pytest.skip(first[len(SKIP_MARK):].strip() or "marked in the doc")
    missing = _missing_modules(code)
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (not installed)")
    monkeypatch.chdir(tmp_path)
    _run(doc, code)


def _run(doc, code):
    namespace = {"__name__": f"__doc_{doc.stem}__"}
    try:
        exec(compile(code, f"{doc.name} block", "exec"), namespace)
    except Exception as exc:
        raise AssertionError(f"{doc.name}: a Python block failed: {exc!r}\n{code}") from exc


@pytest.mark.parametrize("marker, printed", [
    ('"generate"', "Alice was"),                              # the command streams its text
    ("torch.from_dlpack", "tensor([10.,  1.,  2.,  3.])"),     # a write seen through DLPack
])
def test_interop_examples_print_what_they_say(marker, printed, tmp_path, monkeypatch, capsys):
    code = next(c for c in python_blocks(ROOT / "docs" / "interop.md") if marker in c)
    missing = _missing_modules(code)
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (not installed)")
    monkeypatch.chdir(tmp_path)
    _run(ROOT / "docs" / "interop.md", code)
    assert printed in capsys.readouterr().out


@pytest.mark.slow                       # collects the whole suite: ~10 s
def test_the_readme_quotes_the_suite_size_as_a_bound_that_holds():
    import subprocess
    import sys

    claim = re.search(r"more than ([\d,]+) tests", (ROOT / "README.md").read_text())
    assert claim, "the README states the suite's size as a lower bound"
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                          "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600).stdout
    collected = int(re.search(r"(\d+) tests? collected", out).group(1))
    assert collected > int(claim.group(1).replace(",", ""))
