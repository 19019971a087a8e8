"""The compiled kernels of the primitives, one module per family: convolution loops,
pooling gathers and scatters, one-pass activation gradients, float32 special functions,
layer norm's row loops, the recurrent layers' steps,
fused optimiser updates. Each is a plain Python loop marked ``@kernel``
(:mod:`wonderland.backend.compiled`) with a NumPy reference the tests compare it with.
"""
