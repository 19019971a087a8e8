"""Meeting other libraries: safetensors files written by any of them, and arrays
exchanged through DLPack.

* :func:`read_safetensors` reads a safetensors file whoever wrote it (PyTorch,
  ``transformers``, NumPy, ``wl.io.save``), bfloat16 included, without pickle;
  :func:`write_safetensors` writes one atomically.
* :func:`from_dlpack` (also ``wl.from_dlpack``) wraps an array of another library
  (torch, NumPy, JAX, CuPy) as a tensor without copying; ``Tensor.__dlpack__`` goes the
  other way.

The converters built on them live with what they convert: PyTorch state dicts in
``wonderland.nn.torch_port`` (``Module.load_torch_state_dict``), Hugging Face folders
in ``wonderland.models.pretrained`` (``GPT.from_pretrained``, ``ViT.from_pretrained``).
"""

from .dlpack import from_dlpack
from .safetensors_files import parse_size, read_safetensors, write_safetensors

__all__ = ["from_dlpack", "read_safetensors", "write_safetensors", "parse_size"]
