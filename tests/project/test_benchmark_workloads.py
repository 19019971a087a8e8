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
