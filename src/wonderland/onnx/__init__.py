"""ONNX export: ``wl.onnx.export(model, example_args, "model.onnx")`` writes the program
that ``wl.jit`` traces as an ONNX graph, which ONNX Runtime and other engines run.

Every primitive declares its own translation (``Primitive(..., onnx=rule)``, beside its
forward and derivative rules in ``ops/``); a rule adds the ONNX nodes of one step to an
:class:`ExportGraph`. The ``onnx`` package (``pip install 'wonderland[onnx]'``) is
imported only when exporting. See docs/interop.md for a worked example.
"""

from .exporter import DEFAULT_OPSET, MIN_OPSET, export, supported_primitives
from .graph import Dim, ExportError, ExportGraph

__all__ = ["export", "supported_primitives", "ExportGraph", "ExportError", "Dim",
           "DEFAULT_OPSET", "MIN_OPSET"]
