"""Fourier transforms (``wl.fft``): ``fft``, ``ifft``, ``fft2``, ``ifft2``, ``fftn``,
``rfft``, ``irfft`` — differentiable in both modes.

Complex values are pairs of real tensors: the transforms take ``(re, im=None)`` and
return ``(re, im)`` (``irfft`` returns a real tensor). ``norm`` follows NumPy
(``"backward"``, ``"ortho"``, ``"forward"``). See ``wonderland/ops/fft.py``.
"""

from .ops.fft import fft, fft2, fftn, ifft, ifft2, irfft, rfft

__all__ = ["fft", "ifft", "fft2", "ifft2", "fftn", "rfft", "irfft"]
