"""Every Python block of docs/interop.md runs as written (in order, in one namespace, in a
temporary working folder). Its examples build references with torch and transformers, and
run exported ONNX graphs with onnxruntime."""

import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "interop.md"


def blocks():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_doc_has_examples_of_every_part():
    text = "\n".join(blocks())
    for name in ("GPT.from_pretrained", "save_pretrained", "ViT.from_pretrained",
                 "BPETokenizer.from_pretrained", '"generate"', "load_torch_state_dict",
                 "wl.from_dlpack", "torch.from_dlpack", "wl.onnx.export"):
        assert name in text, name


def test_every_python_block_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch", reason="the examples compare with torch models")
    pytest.importorskip("transformers", reason="the examples build transformers models")
    pytest.importorskip("onnx", reason="the ONNX examples export models")
    pytest.importorskip("onnxruntime", reason="the ONNX examples run the exported graphs")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__interop_doc__"}
    for i, code in enumerate(blocks()):
        try:
            exec(compile(code, f"{DOC.name} block {i + 1}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{DOC.name}: block {i + 1} failed: {exc!r}\n{code}") from exc
    out = capsys.readouterr().out
    assert "Alice was" in out and "tensor([10.,  1.,  2.,  3.])" in out
