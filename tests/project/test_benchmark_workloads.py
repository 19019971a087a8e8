"""Every benchmark workload builds a step for every contender it names (the benchmarks
are not run by the suite; this catches a workload broken by a change in the library)."""

import importlib.util
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "benchmarks"))
from workloads import WORKLOADS  # noqa: E402

# PyTorch's and PyG's own notices when the reference contenders are built (sparse tensors
# in beta, torch.jit.script inside PyG): not about this library
pytestmark = pytest.mark.filterwarnings("ignore:Sparse:UserWarning",
                                        "ignore:`torch.jit.script` is deprecated:DeprecationWarning")

NEEDS = {"torch": "torch", "torch_channels_last": "torch", "torch_loop": "torch",
         "torch_cumsum": "torch", "pyg": "torch_geometric", "jax": "jax"}
CASES = [(w, c) for w, (_, contenders) in sorted(WORKLOADS.items()) for c in contenders]


@pytest.mark.parametrize("workload,contender", CASES, ids=[f"{w}-{c}" for w, c in CASES])
def test_workload_builds_a_step(workload, contender):
    needed = NEEDS.get(contender)
    if needed and importlib.util.find_spec(needed) is None:
        pytest.skip(f"{needed} is not installed")
    build, _ = WORKLOADS[workload]
    step = build(contender)
    assert callable(step), f"{workload}/{contender}: build returned {step!r}, not a step"


def test_fusion_benchmark_runs_and_rejects_unknown_models(capsys):
    path = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "benchmarks", "fusion.py")
    spec = importlib.util.spec_from_file_location("fusion_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["rwkv", "--rounds", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| rwkv")]
    assert len(rows) == 1
    n_fused = int(rows[0].rsplit("(", 1)[1].split(")")[0])      # "| 411 → 309 (47) |"
    assert n_fused > 0
    with pytest.raises(SystemExit):
        bench.main(["no-such-model"])


@pytest.mark.parametrize("contender", ["numpy", "jax"])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_contenders_compute_what_wonderland_computes(contender, causal):
    """The hand-written NumPy and JAX attention steps give the output and the three
    cotangents that wonderland's ``scaled_dot_product_attention`` gives."""
    if contender == "jax" and importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    import numpy as np

    import wonderland as wl
    import workloads

    rng = np.random.default_rng(0)
    q, k, v, g = (rng.standard_normal((2, 3, 24, 8)).astype(np.float32) for _ in range(4))
    make = workloads._numpy_attention_step if contender == "numpy" else workloads._jax_attention_step
    result = make(q, k, v, g, causal)()
    theirs = list(result) if contender == "numpy" else [result[0], *result[1]]
    Q, K, V = (wl.tensor(a, requires_grad=True) for a in (q, k, v))
    out = wl.nn.functional.scaled_dot_product_attention(Q, K, V, is_causal=causal)
    out.backward(wl.tensor(g))
    ours = [out.numpy(), Q.grad.numpy(), K.grad.numpy(), V.grad.numpy()]
    for a, b in zip(theirs, ours):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=2e-6)
