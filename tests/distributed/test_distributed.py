"""Data-parallel training under MPI: real ``mpiexec`` jobs of 2 and 3 processes.

Each test writes a small script, runs it with ``mpiexec -n N`` (with a timeout, so a hang
fails the test instead of stalling the suite) and reads one JSON line per rank. The
reference values come from a single process training on the concatenated batches with
plain wonderland (no DDP), in float64.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import wonderland as wl
from wonderland import distributed as dist

from conftest import MPIEXEC, needs_mpi

PREAMBLE = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import wonderland as wl
    from wonderland import nn
    rank, world = wl.distributed.init()
    wl.set_default_dtype(wl.float64)

    def report(**values):
        with open("result_%d.json" % rank, "w") as f:
            json.dump(dict(rank=rank, world=world, **values), f)

    def fingerprint(model):
        return [float(np.abs(p.numpy()).sum()) + float(p.numpy().ravel()[0])
                for p in model.parameters()]

    def max_diff(a, b):
        return max(float(np.abs(p.numpy() - q.numpy()).max())
                   for p, q in zip(a.parameters(), b.parameters()))

    def cnn(seed):
        wl.random.seed(seed)
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(4 * 4 * 4, 16), nn.Tanh(), nn.Linear(16, 3))
""")


def run_mpi(n, body, tmp_path, timeout=120, env=None, expect_ok=True):
    folder = tmp_path / f"job_{n}_{time.monotonic_ns()}"
    folder.mkdir()
    script = folder / "job.py"
    script.write_text(PREAMBLE + textwrap.dedent(body))
    full_env = dict(os.environ, WONDERLAND_DIST_TIMEOUT="30", WONDERLAND_NUM_THREADS="1",
                    PYTHONUNBUFFERED="1")
    full_env.update(env or {})
    start = time.monotonic()
    run = subprocess.run([MPIEXEC, "-n", str(n), sys.executable, str(script)],
                         capture_output=True, text=True, timeout=timeout, env=full_env,
                         cwd=str(folder))
    run.elapsed = time.monotonic() - start
    run.folder = folder
    if expect_ok:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def results(run):
    rows = [json.loads(f.read_text()) for f in run.folder.glob("result_*.json")]
    return sorted(rows, key=lambda r: r["rank"])


# ----------------------------------------------------------------------------- equality
DDP_VS_SINGLE = """
    sizes = [4, 3, 5][:world]                  # uneven batches with three ranks
    rng = np.random.default_rng(0)
    steps = 3
    X = [rng.normal(size=(sum(sizes), 8, 8, 1)) for _ in range(steps)]
    Y = [rng.integers(0, 3, size=sum(sizes)) for _ in range(steps)]
    lo = sum(sizes[:rank]); hi = lo + sizes[rank]

    # every rank starts from different weights: DDP must broadcast rank 0's
    model = nn.parallel.DistributedDataParallel(cnn(100 + rank), bucket_cap_mb=BUCKET)
    opt = wl.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for s in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(wl.tensor(X[s][lo:hi])), wl.tensor(Y[s][lo:hi])).backward()
        opt.step()

    ref = cnn(100)                             # one process, the concatenated batches
    ropt = wl.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for s in range(steps):
        ropt.zero_grad()
        nn.functional.cross_entropy(ref(wl.tensor(X[s])), wl.tensor(Y[s])).backward()
        ropt.step()
    start_diff = max_diff(cnn(100 + rank), ref)
    report(diff=max_diff(model, ref), start_diff=start_diff, fp=fingerprint(model),
           buckets=len(model._buckets))
"""


@needs_mpi
@pytest.mark.parametrize("n, bucket", [(2, 4.0), (3, 0.0001)])
def test_ddp_equals_one_process_on_the_concatenated_batch(tmp_path, n, bucket):
    rows = results(run_mpi(n, DDP_VS_SINGLE.replace("BUCKET", str(bucket)), tmp_path))
    assert [r["rank"] for r in rows] == list(range(n))
    for r in rows:
        assert r["diff"] < 1e-12, r
    assert rows[1]["start_diff"] > 1e-3           # rank 1 really started elsewhere
    assert all(r["fp"] == rows[0]["fp"] for r in rows)   # bit-identical on every rank
    assert rows[0]["buckets"] == (1 if bucket == 4.0 else 6)   # one bucket, or one per parameter


OVERLAP = """
    # record, at each all-reduce DDP starts, how many parameters had reported so far
    starts = []
    original = wl.distributed.iall_reduce
    checked = []
    def recording(buffer, op="sum", **options):
        starts.append(model._reported)
        checked.append(options.get("check", True))
        return original(buffer, op, **options)
    wl.distributed.iall_reduce = recording
    from wonderland.backend.fake_device import load
    load()                                     # the stand-in device plays "cuda"
    model = nn.parallel.DistributedDataParallel(cnn(0).to("cuda"), bucket_cap_mb=0.0001)
    opt = wl.optim.Adam(model.parameters(), lr=0.01)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2 * world, 8, 8, 1)); y = rng.integers(0, 3, size=2 * world)
    mine = slice(2 * rank, 2 * rank + 2)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(wl.tensor(x[mine]).to("cuda")),
                                    wl.tensor(y[mine]).to("cuda")).backward()
        opt.step()
    ref = cnn(0); ropt = wl.optim.Adam(ref.parameters(), lr=0.01)
    for _ in range(2):
        ropt.zero_grad()
        nn.functional.cross_entropy(ref(wl.tensor(x)), wl.tensor(y)).backward()
        ropt.step()
    report(starts=starts[:len(model._buckets)], total=len(model._params), checked=any(checked),
           diff=max(float(np.abs(p.to("cpu").numpy() - q.numpy()).max())
                    for p, q in zip(model.parameters(), ref.parameters())),
           on_device=all(p.device == "cuda" and p.grad.device == "cuda"
                         for p in model.parameters()))
"""


@needs_mpi
def test_buckets_start_during_the_backward_pass_and_work_on_a_device(tmp_path):
    rows = results(run_mpi(2, OVERLAP, tmp_path))
    for r in rows:
        # the first bucket starts while the earlier layers' gradients are still being
        # computed (one bucket per parameter here)
        assert r["starts"][0] <= 2 < r["total"], r      # once the last layer's two are final
        assert r["diff"] < 1e-12 and r["on_device"], r
        assert not r["checked"]        # the layout was agreed once: no header per bucket


ACCUMULATION = """
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4, world * 3, 5)); Y = rng.normal(size=(4, world * 3, 2))
    def mlp():
        wl.random.seed(7)
        return nn.MLP([5, 8, 2], activation="tanh")
    model = nn.parallel.DistributedDataParallel(mlp())
    opt = wl.optim.Adam(model.parameters(), lr=0.05)
    mine = slice(rank * 3, rank * 3 + 3)
    for step in range(2):                      # two micro-batches per optimiser step
        opt.zero_grad()
        with model.no_sync():
            (nn.functional.mse_loss(model(wl.tensor(X[2 * step][mine])),
                                    wl.tensor(Y[2 * step][mine])) * 0.5).backward()
        (nn.functional.mse_loss(model(wl.tensor(X[2 * step + 1][mine])),
                                wl.tensor(Y[2 * step + 1][mine])) * 0.5).backward()
        opt.step()
    ref = mlp(); ropt = wl.optim.Adam(ref.parameters(), lr=0.05)
    for step in range(2):
        ropt.zero_grad()
        for k in (2 * step, 2 * step + 1):
            (nn.functional.mse_loss(ref(wl.tensor(X[k])), wl.tensor(Y[k])) * 0.5).backward()
        ropt.step()
    report(diff=max_diff(model, ref), fp=fingerprint(model))
"""


@needs_mpi
def test_gradient_accumulation_with_no_sync(tmp_path):
    rows = results(run_mpi(2, ACCUMULATION, tmp_path))
    assert all(r["diff"] < 1e-12 for r in rows), rows
    assert rows[0]["fp"] == rows[1]["fp"]


UNUSED = """
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(3, 4); self.used = nn.Linear(4, 1); self.spare = nn.Linear(4, 1)
            self.scale = nn.Parameter(wl.ones(1))
        def forward(self, x):
            h = wl.tanh(self.body(x))
            # the parent reads a child's weight directly, and the body's weight twice
            return self.used(h) * self.scale + (h @ self.used.weight) * 0.5 + \
                (x @ self.body.weight).sum(axis=1, keepdims=True) * 0.1
    def make():
        wl.random.seed(3)
        return TwoHeads()
    rng = np.random.default_rng(4)
    xs = [rng.normal(size=(4 * world, 3)) for _ in range(3)]
    model = nn.parallel.DistributedDataParallel(make())
    opt = wl.optim.SGD(model.parameters(), lr=0.1)
    mine = slice(4 * rank, 4 * rank + 4)
    for x in xs:
        opt.zero_grad()
        model(wl.tensor(x[mine])).mean().backward()
        opt.step()
    spare = float(np.abs(model.module.spare.weight.grad.numpy()).sum())
    ref = make(); ropt = wl.optim.SGD(ref.parameters(), lr=0.1)
    for x in xs:
        ropt.zero_grad()
        ref(wl.tensor(x)).mean().backward()
        ropt.step()
    report(fp=fingerprint(model), spare_grad=spare, diff=max_diff(model, ref))
"""


@needs_mpi
def test_unused_shared_and_parent_read_parameters(tmp_path):
    rows = results(run_mpi(2, UNUSED, tmp_path))
    for r in rows:
        assert r["diff"] < 1e-12 and r["spare_grad"] == 0.0, r
    assert rows[0]["fp"] == rows[1]["fp"]


TWO_BACKWARDS = """
    wl.random.seed(0)
    model = nn.parallel.DistributedDataParallel(nn.Linear(3, 2))
    x = wl.random.normal((4, 3))
    a = model(x).sum()
    b = model(x).sum()                          # a second forward before any backward
    (a + b).backward()
    report(ok=True)
"""


@needs_mpi
def test_two_forwards_before_one_backward_is_an_error(tmp_path):
    run = run_mpi(2, TWO_BACKWARDS, tmp_path, expect_ok=False)
    assert run.returncode != 0 and not results(run)
    assert "call the module once per backward pass" in run.stderr


# ----------------------------------------------------------------------------- failures
@needs_mpi
def test_mismatched_parameter_shapes_are_an_error_on_every_rank(tmp_path):
    body = """
        wl.random.seed(0)
        model = nn.Linear(4, 3 if rank == 0 else 5)
        nn.parallel.DistributedDataParallel(model)
        report(ok=True)
    """
    run = run_mpi(2, body, tmp_path, expect_ok=False, timeout=120)
    assert run.returncode != 0 and not results(run)
    assert "differs from the model on rank" in run.stderr
    assert "(4, 3)" in run.stderr and "(4, 5)" in run.stderr
    assert run.elapsed < 100                       # a hang would run into the timeout


@needs_mpi
def test_a_rank_that_raises_stops_the_whole_job(tmp_path):
    body = """
        model = nn.parallel.DistributedDataParallel(cnn(0))
        opt = wl.optim.SGD(model.parameters(), lr=0.1)
        for step in range(50):
            if rank == 1 and step == 2:
                raise RuntimeError("the data file on rank 1 is damaged")
            opt.zero_grad()
            model(wl.random.normal((2, 8, 8, 1))).sum().backward()
            opt.step()
        report(ok=True)
    """
    run = run_mpi(2, body, tmp_path, expect_ok=False, timeout=120)
    assert run.returncode != 0 and not results(run)
    assert "rank 1 of 2 stopped with an error" in run.stderr
    assert "the data file on rank 1 is damaged" in run.stderr
    assert run.elapsed < 100                       # a hang would run into the timeout


@needs_mpi
def test_a_rank_that_leaves_early_gives_a_timeout_error_not_a_hang(tmp_path):
    body = """
        if rank == 1:
            sys.exit(0)                             # leaves without taking part
        wl.distributed.all_reduce(wl.tensor([1.0]))
        report(ok=True)
    """
    run = run_mpi(2, body, tmp_path, expect_ok=False, timeout=120,
                  env={"WONDERLAND_DIST_TIMEOUT": "3"})
    assert run.returncode != 0 and not results(run)
    assert "did not complete within 3 s" in run.stderr
    assert run.elapsed < 100                       # a hang would run into the timeout


@needs_mpi
def test_a_killed_rank_stops_the_whole_job(tmp_path):
    body = """
        import signal
        model = nn.parallel.DistributedDataParallel(cnn(0))
        if rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        for step in range(1000):
            model(wl.random.normal((2, 8, 8, 1))).sum().backward()
        report(ok=True)
    """
    run = run_mpi(2, body, tmp_path, expect_ok=False, timeout=120)
    assert run.returncode != 0 and not results(run)
    assert run.elapsed < 100                       # a hang would run into the timeout


# ----------------------------------------------------------------------------- collectives
@needs_mpi
def test_collectives(tmp_path):
    body = """
        d = wl.distributed
        t = d.all_reduce(wl.tensor([1.0, float(rank)]))
        m = d.all_reduce(np.array([float(rank)]), op="mean")
        mx = d.all_reduce(rank * 10, op="max")
        b = d.broadcast(wl.tensor([float(rank) + 5.0]), src=1)
        objs = d.all_gather_object({"rank": rank, "name": "r%d" % rank})
        cfg = d.broadcast_object({"from": rank}, src=0)
        d.barrier()
        report(t=t.tolist(), m=m.tolist(), mx=mx, b=b.tolist(), objs=objs, cfg=cfg,
               main=d.is_main_process(), threads=wl.get_num_threads())
    """
    rows = results(run_mpi(3, body, tmp_path))
    for r in rows:
        assert r["t"] == [3.0, 3.0]                # 1+1+1, 0+1+2
        assert r["m"] == [1.0] and r["mx"] == 20 and r["b"] == [6.0]
        assert r["objs"] == [{"rank": i, "name": f"r{i}"} for i in range(3)]
        assert r["cfg"] == {"from": 0}
        assert r["main"] == (r["rank"] == 0)


# ----------------------------------------------------------------------------- disagreement
# Each job runs one collective that the two ranks call differently. Every rank catches the
# error, reports it, and then runs one agreeing all-reduce: the failed collective left
# nothing half-started, so the job can go on.
DISAGREE = """
    d = wl.distributed
    def call():
        CALL
    try:
        call()
    except Exception as e:
        error, message = type(e).__name__, str(e)
    else:
        error, message = None, None
    after = d.all_reduce(wl.tensor([1.0])).tolist()
    report(error=error, message=message, after=after)
"""

# (call on rank 0, call on rank 1, the collective each rank names, each rank's description)
DISAGREEMENTS = {
    "shape": ("d.all_reduce(np.zeros(3, np.float32))", "d.all_reduce(np.zeros(4, np.float32))",
              ("all_reduce", "all_reduce"),
              ("all_reduce(sum) float32[3]", "all_reduce(sum) float32[4]")),
    "dtype": ("d.all_reduce(np.zeros(3, np.float32))", "d.all_reduce(np.zeros(3, np.float64))",
              ("all_reduce", "all_reduce"),
              ("all_reduce(sum) float32[3]", "all_reduce(sum) float64[3]")),
    "op": ("d.all_reduce(wl.tensor([1.0, 2.0]), op='sum')",
           "d.all_reduce(wl.tensor([1.0, 2.0]), op='max')",
           ("all_reduce", "all_reduce"),
           ("all_reduce(sum) float64[2]", "all_reduce(max) float64[2]")),
    "collective": ("d.all_reduce(wl.tensor([1.0, 2.0]))", "d.barrier()",
                   ("all_reduce", "barrier"),
                   ("all_reduce(sum) float64[2]", "barrier")),
    "broadcast_shape": ("d.broadcast(np.zeros((2, 3), np.float32))",
                        "d.broadcast(np.zeros((3, 2), np.float32))",
                        ("broadcast", "broadcast"),
                        ("broadcast(src=0) float32[2, 3]", "broadcast(src=0) float32[3, 2]")),
    "broadcast_src": ("d.broadcast(np.zeros(3), src=0)", "d.broadcast(np.zeros(3), src=1)",
                      ("broadcast", "broadcast"),
                      ("broadcast(src=0) float64[3]", "broadcast(src=1) float64[3]")),
    "iall_reduce": ("d.iall_reduce(np.zeros(5, np.float32)).wait()",
                    "d.iall_reduce(np.zeros(6, np.float32)).wait()",
                    ("iall_reduce", "iall_reduce"),
                    ("iall_reduce(sum) float32[5]", "iall_reduce(sum) float32[6]")),
    "objects": ("d.all_gather_object({'a': 1})", "d.broadcast_object({'a': 1})",
                ("all_gather_object", "broadcast_object"),
                ("all_gather_object", "broadcast_object(src=0)")),
}


@needs_mpi
@pytest.mark.parametrize("case", list(DISAGREEMENTS))
def test_disagreeing_ranks_are_an_error_on_every_rank(tmp_path, case):
    first, second, names, descriptions = DISAGREEMENTS[case]
    call = f"{first} if rank == 0 else {second}"
    run = run_mpi(2, DISAGREE.replace("CALL", call), tmp_path, timeout=60,
                  env={"WONDERLAND_DIST_TIMEOUT": "20"}, expect_ok=False)
    rows = results(run)
    assert [r["rank"] for r in rows] == [0, 1], run.stdout[-2000:] + run.stderr[-2000:]
    for r in rows:
        message = r["message"] or ""
        assert r["error"] == "DistributedError", r
        assert message.startswith(f"{names[r['rank']]}: ranks disagree: "), message
        assert f"rank 0 has {descriptions[0]}," in message, message
        assert f"rank 1 has {descriptions[1]}" in message, message
        assert r["after"] == [2.0], r              # the next agreeing collective works
    assert run.returncode == 0
    assert run.elapsed < 20                        # no rank waited for its timeout


@needs_mpi
def test_disagreement_among_three_ranks_groups_the_ranks(tmp_path):
    body = DISAGREE.replace("CALL", "d.all_reduce(np.zeros(2 if rank < 2 else 1))")
    rows = results(run_mpi(3, body, tmp_path, timeout=60, env={"WONDERLAND_DIST_TIMEOUT": "20"}))
    for r in rows:
        assert r["error"] == "DistributedError", r
        assert "ranks 0, 1 have all_reduce(sum) float64[2], rank 2 has all_reduce(sum) " \
               "float64[1]" in r["message"], r
        assert r["after"] == [3.0]


@needs_mpi
@pytest.mark.parametrize("option, expected", [
    ("bucket_cap_mb=4.0 if rank == 0 else 0.0001",
     ["the gradient buckets on rank", "1 bucket(s)", "6 bucket(s)",
      "(bucket_cap_mb=", "must pass the same bucket_cap_mb"]),
    ("average='examples' if rank == 0 else 'ranks'",
     ["the options differ", "average='examples'", "average='ranks'"])],
    ids=["bucket_cap_mb", "average"])
def test_ddp_ranks_with_different_bucket_layouts_or_options_are_an_error_on_every_rank(
        tmp_path, option, expected):
    body = """
        try:
            nn.parallel.DistributedDataParallel(cnn(0), OPTION)
        except Exception as e:
            report(error=type(e).__name__, message=str(e))
        else:
            report(error=None, message=None)
    """.replace("OPTION", option)
    run = run_mpi(2, body, tmp_path, timeout=60, env={"WONDERLAND_DIST_TIMEOUT": "20"},
                  expect_ok=False)
    rows = results(run)
    assert [r["rank"] for r in rows] == [0, 1], run.stdout[-2000:] + run.stderr[-2000:]
    for r in rows:
        assert r["error"] == "DistributedError", r
        assert r["message"].startswith("DistributedDataParallel: "), r
        for words in expected:
            assert words in r["message"], r


@needs_mpi
def test_agreeing_collectives_give_the_right_values(tmp_path):
    body = """
        d = wl.distributed
        wl.set_default_dtype(wl.float32)
        # three non-blocking reductions in flight, a blocking one started behind them, then
        # the first ones waited for out of order
        bufs = [np.full((2, 3), float(rank + k), np.float32) for k in range(3)]
        works = [d.iall_reduce(bufs[0]), d.iall_reduce(bufs[1], "max"),
                 d.iall_reduce(bufs[2], check=False)]
        ints = d.all_reduce(np.arange(4, dtype=np.int32).reshape(2, 2) * (rank + 1), op="prod")
        works[2].wait(); d.wait_all(works[:2])
        mean = d.all_reduce(wl.tensor([[1.0, 2.0]]) * (rank + 1), op="mean")
        small = d.all_reduce(rank + 1, op="min")
        big = d.all_reduce(np.full(100_000, rank + 1.0, np.float32))
        b = d.broadcast(np.arange(6, dtype=np.int64).reshape(3, 2) + 10 * rank, src=1)
        d.barrier()
        objs = d.all_gather_object(["x" * (rank + 3), rank])
        cfg = d.broadcast_object({"lr": 0.1 * (rank + 1)}, src=1)
        report(bufs=[x.tolist() for x in bufs], ints=ints.tolist(), mean=mean.tolist(),
               small=small, big=[float(big.min()), float(big.max())], b=b.tolist(),
               objs=objs, cfg=cfg, dtypes=[str(ints.dtype), str(mean.dtype)])
    """
    rows = results(run_mpi(2, body, tmp_path))
    assert len(rows) == 2
    for r in rows:
        assert r["bufs"] == [[[1.0] * 3] * 2, [[2.0] * 3] * 2, [[5.0] * 3] * 2]
        assert r["ints"] == [[0, 2], [8, 18]]      # (k * 1) * (k * 2)
        assert r["mean"] == [[1.5, 3.0]] and r["small"] == 1
        assert r["big"] == [3.0, 3.0]
        assert r["b"] == [[10, 11], [12, 13], [14, 15]]
        assert r["objs"] == [["xxx", 0], ["xxxx", 1]] and r["cfg"] == {"lr": 0.2}
        assert r["dtypes"] == ["int32", "float32"]


# ----------------------------------------------------------------------------- Trainer
TRAINER = """
    from wonderland import data
    n, batch, epochs = 10, 2, 2
    rng = np.random.default_rng(5)
    X = rng.normal(size=(n, 6)); Y = rng.integers(0, 3, size=n)
    def mlp():
        wl.random.seed(11)
        return nn.MLP([6, 8, 3], activation="relu")
    sampler = data.DistributedSampler(n, shuffle=True, seed=4)
    loader = data.DataLoader(data.TensorDataset(wl.tensor(X), wl.tensor(Y)), batch, sampler=sampler)
    model = nn.parallel.DistributedDataParallel(mlp())
    opt = wl.optim.SGD(model.parameters(), lr=0.2, momentum=0.5)
    trainer = wl.train.Trainer(model, opt, nn.functional.cross_entropy, progress=False,
                               checkpoint_dir="ckpt", log_file="log.jsonl")
    history = trainer.fit(loader, epochs=epochs)

    # one process on the same global batches: the padded permutation of each epoch, cut
    # into slices of world * batch (rank r's samples are every world-th of the slice)
    ref = mlp(); ropt = wl.optim.SGD(ref.parameters(), lr=0.2, momentum=0.5)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        order = sampler.global_order()
        for start in range(0, len(order), world * batch):
            idx = order[start:start + world * batch]
            ropt.zero_grad()
            nn.functional.cross_entropy(ref(wl.tensor(X[idx])), wl.tensor(Y[idx])).backward()
            ropt.step()
    report(diff=max_diff(model, ref), fp=fingerprint(model), loss=history["train_loss"],
           files=sorted(os.listdir("ckpt")) if rank == 0 else None, log_lines=len(open("log.jsonl").read().splitlines()))
"""


@needs_mpi
def test_trainer_with_a_distributed_sampler_equals_one_process(tmp_path):
    rows = results(run_mpi(3, TRAINER, tmp_path))
    for r in rows:
        assert r["diff"] < 1e-12, r
        assert r["fp"] == rows[0]["fp"] and r["loss"] == rows[0]["loss"]
    assert rows[0]["files"] == ["last.safetensors"]
    assert rows[0]["log_lines"] == 2               # one writer: one line per epoch


# ----------------------------------------------------------------------------- one process
def test_a_world_of_one_without_a_launcher():
    assert dist.init() == (0, 1) and dist.is_main_process()
    t = wl.tensor([1.0, 2.0])
    np.testing.assert_array_equal(dist.all_reduce(t, op="mean").numpy(), [1.0, 2.0])
    assert dist.broadcast(3.5) == 3.5 and dist.all_gather_object({"a": 1}) == [{"a": 1}]
    with pytest.raises(ValueError, match="op must be one of"):
        dist.all_reduce(t, op="median")
    with pytest.raises(TypeError, match="expected a tensor, an array or a number"):
        dist.all_reduce("three")
    buf = np.ones(3)
    assert dist.iall_reduce(buf).test() and dist.iall_reduce(buf, check=False).done
    dist.wait_all([dist.iall_reduce(buf, "max")])
    dist.barrier()
    with pytest.raises(ValueError, match="iall_reduce: op must be one of"):
        dist.iall_reduce(buf, "median")
    wl.random.seed(0)
    inner = wl.nn.Linear(3, 2)
    model = wl.nn.parallel.DistributedDataParallel(inner)
    x = wl.random.normal((4, 3))
    np.testing.assert_array_equal(model(x).numpy(), inner(x).numpy())
    assert list(model.state_dict()) == ["weight", "bias"]
    with pytest.raises(ValueError, match="average must be"):
        wl.nn.parallel.DistributedDataParallel(inner, average="mean")


@pytest.mark.parametrize("n, world, drop_last", [(10, 3, False), (10, 3, True), (9, 3, False),
                                                 (7, 2, False)])
def test_distributed_sampler_shards(n, world, drop_last):
    samplers = [wl.data.DistributedSampler(n, world, r, seed=1, drop_last=drop_last)
                for r in range(world)]
    for s in samplers:
        s.set_epoch(2)
    shards = [list(s) for s in samplers]
    sizes = {len(x) for x in shards}
    assert len(sizes) == 1                         # every rank the same number of samples
    size = sizes.pop()
    assert size == (n // world if drop_last else -(-n // world))
    union = [i for i in sum(shards, [])]
    if drop_last:
        assert len(set(union)) == len(union) == size * world
    else:
        assert set(union) == set(range(n))         # everything seen, a few twice
        assert len(union) - len(set(union)) == size * world - n
    samplers[0].set_epoch(3)
    assert list(samplers[0]) != shards[0]          # a new order every epoch
    # the ranks' batches at step j together are the j-th slice of the global order
    order = samplers[1].global_order()
    assert sorted(order[:world * 2].tolist()) == sorted(sum([x[:2] for x in shards], []))


def test_distributed_sampler_checks_its_arguments():
    with pytest.raises(ValueError, match="rank must be in"):
        wl.data.DistributedSampler(10, 2, 2)
    with pytest.raises(ValueError, match="cannot give each of 4 ranks one"):
        wl.data.DistributedSampler(3, 4, 0, drop_last=True)
    with pytest.raises(ValueError, match="not both"):
        wl.data.DataLoader(wl.data.TensorDataset(wl.ones((4, 1))), 2, shuffle=True,
                           sampler=wl.data.DistributedSampler(4, 1, 0))
    loader = wl.data.DataLoader(wl.data.TensorDataset(wl.arange(10.0)), 3,
                                sampler=wl.data.DistributedSampler(10, 2, 1, shuffle=False))
    assert len(loader) == 2
    assert [b[0].tolist() for b in loader] == [[1.0, 3.0, 5.0], [7.0, 9.0]]
