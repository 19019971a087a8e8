"""Every primitive declares what it is in one place, on the Primitive object: its forward,
its rules, its save plan, its batching rule, its fast first-order kernel, its scalar form
for fusion and its device kernel. This test walks all of them."""

import wonderland  # noqa: F401 - builds every primitive of the library
import wonderland.models  # noqa: F401
from wonderland import backend as B
from wonderland.core.primitive import ALL_PRIMITIVES, Primitive

# primitives that vmap runs one example at a time (the fallback), on purpose: factorisations
# and solves of single matrices, and the hook DDP attaches to gradients
LOOPED_UNDER_VMAP = {"cholesky", "grad_ready", "logabsdet", "lstsq", "solve", "solve_triangular"}


def _library_primitives():
    """The primitives the library's modules hold (module globals, and the closures of
    their functions), each once."""
    import sys

    found = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("wonderland") and module is not None:
            for value in vars(module).values():
                cells = getattr(value, "__closure__", None) or ()
                for v in [value] + [c.cell_contents for c in cells]:
                    if isinstance(v, Primitive):
                        found[id(v)] = v
    assert set(found) <= {id(p) for p in ALL_PRIMITIVES}
    return sorted(found.values(), key=lambda p: p.name)


def test_there_are_the_library_s_primitives():
    names = {p.name for p in _library_primitives()}
    assert len(names) >= 90
    for expected in ("add", "matmul", "conv", "attention", "recurrent_layer", "segment_sum",
                     "normalize_affine", "selective_scan", "wkv", "gather_rows"):
        assert expected in names


def test_rules_are_declared_for_every_differentiable_primitive():
    for p in _library_primitives():
        assert callable(p.forward), p.name
        if not p.differentiable:
            assert p.vjp_kernel is None, p.name
            continue
        assert p.vjp is not None or p.vjp_all is not None, p.name
        assert p.linear or p.jvp is not None or p.jvp_all is not None, p.name
        if p.vjp_kernel is not None:          # a fast first order needs the composite rules
            assert callable(p.vjp_kernel), p.name
        if p.multiple_results:
            assert p.vjp_all is not None, p.name


def test_batching_rules_are_declared_or_the_fallback_is_chosen():
    without = {p.name for p in _library_primitives() if p.batch is None}
    assert without == LOOPED_UNDER_VMAP


def test_scalar_forms_are_well_formed():
    for p in _library_primitives():
        if p.scalar is not None:
            template, cast = p.scalar
            assert "{0}" in template, p.name
            assert cast in ("out", "common") or isinstance(cast, tuple), p.name
    fused = {p.name for p in _library_primitives() if p.scalar is not None}
    assert {"add", "multiply", "where", "relu", "masked_scale", "greater"} <= fused


def test_numpy_only_forwards_declare_their_device_kernel():
    declared = 0
    for p in _library_primitives():
        device = getattr(p.forward, "device", None)
        if getattr(p.forward, "__wrapped__", None) is not None and \
                f"{p.forward.__module__}.{p.forward.__qualname__}" in B.NUMPY_KERNELS:
            assert callable(device) or isinstance(device, B.HostOnly), p.name
            declared += 1
    assert declared >= 10


def test_a_primitive_without_rules_is_refused():
    import pytest

    with pytest.raises(ValueError, match="needs a vjp rule"):
        Primitive("broken", lambda x: x)
