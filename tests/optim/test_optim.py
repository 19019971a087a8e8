"""Optimisers, schedules and clipping against PyTorch, state round trips, errors."""

import numpy as np
import pytest

import wonderland as wl
from wonderland import nn, optim

R = np.random.default_rng(2)
W0 = [R.standard_normal((4, 3)).astype(np.float32), R.standard_normal(3).astype(np.float32)]
GRADS = [[R.standard_normal(w.shape).astype(np.float32) for w in W0] for _ in range(8)]


def _run_ours(make, steps=GRADS):
    ps = [nn.Parameter(w) for w in W0]
    opt = make(ps)
    for gs in steps:
        for p, g in zip(ps, gs):
            p.grad = wl.tensor(g)
        opt.step()
    return ps, opt


def test_sgd_on_a_quadratic_converges():
    x = nn.Parameter(np.array([3.0, -2.0]))
    opt = optim.SGD([x], lr=0.1, momentum=0.9)
    for _ in range(200):
        opt.zero_grad()
        (x * x).sum().backward()
        opt.step()
    assert np.abs(x.numpy()).max() < 1e-3


def test_param_groups_use_their_own_settings():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    a.grad = wl.ones(2, dtype=wl.float64)
    b.grad = wl.ones(2, dtype=wl.float64)
    opt.step()
    np.testing.assert_allclose(a.numpy(), 0.9)
    np.testing.assert_allclose(b.numpy(), 0.0)
    with pytest.raises(ValueError, match="more than one group"):
        opt.add_param_group({"params": [a]})


@pytest.mark.parametrize("name,make", [
    ("sgd", lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("adam", lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True)),
    ("adamw", lambda ps: optim.AdamW(ps, lr=0.01)),
    ("rmsprop", lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.3, centered=True)),
    ("adagrad", lambda ps: optim.Adagrad(ps, lr=0.1)),
])
def test_state_dict_round_trip_continues_identically(name, make):
    ps_full, _ = _run_ours(make)
    ps_a, opt_a = _run_ours(make, GRADS[:4])
    sd = opt_a.state_dict()
    ps_b = [nn.Parameter(p.numpy()) for p in ps_a]
    opt_b = make(ps_b)
    opt_b.load_state_dict(sd)
    for gs in GRADS[4:]:
        for p, g in zip(ps_b, gs):
            p.grad = wl.tensor(g)
        opt_b.step()
    for p, q in zip(ps_full, ps_b):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_optimizer_errors():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Adam: lr must be a finite number of at least 0, got -1"):
        optim.Adam([nn.Parameter(np.ones(1))], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([nn.Parameter(np.ones(1))], lr=0.1, nesterov=True)
    with pytest.raises(TypeError, match="single tensor"):
        optim.SGD(nn.Parameter(np.ones(1)), lr=0.1)
    p = nn.Parameter(np.ones(2))
    p.grad = wl.ones(3)
    with pytest.raises(ValueError, match=r"gradient of shape \(3,\) for a parameter of shape \(2,\)"):
        optim.SGD([p], lr=0.1).step()


def test_schedules():
    p = nn.Parameter(np.ones(1))
    opt = optim.SGD([p], lr=1.0)
    s = optim.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25]
    opt = optim.SGD([p], lr=1.0)
    warm = optim.LinearLR(opt, start_factor=0.25, total_iters=3)
    cos = optim.CosineAnnealingLR(opt, T_max=4)
    seq = optim.SequentialLR(opt, [warm, cos], milestones=[3])
    got = []
    for _ in range(7):
        got.append(round(opt.param_groups[0]["lr"], 6))
        seq.step()
    assert got[:4] == [0.25, 0.5, 0.75, 1.0] and got[-1] == pytest.approx((1 + np.cos(3 * np.pi / 4)) / 2, abs=1e-6)


def test_clip_grad_norm_and_value():
    a, b = nn.Parameter(np.ones(3)), nn.Parameter(np.ones(4))
    a.grad, b.grad = wl.tensor(np.full(3, 3.0)), wl.tensor(np.full(4, 4.0))
    total = optim.clip_grad_norm_([a, b], 1.0)
    assert total.item() == pytest.approx(np.sqrt(27 + 64))
    assert np.sqrt((a.grad.numpy() ** 2).sum() + (b.grad.numpy() ** 2).sum()) == pytest.approx(1.0, rel=1e-5)
    optim.clip_grad_value_([a, b], 0.1)
    assert np.abs(b.grad.numpy()).max() <= 0.1


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, float("inf")])
def test_clip_grad_norm_matches_the_norm_of_all_gradients(norm_type):
    """Against NumPy's norm of every gradient concatenated (float64); float32 gradients."""
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(s).astype(np.float32) for s in [(300, 7), (11,), (2, 3, 4)]]
    params = [nn.Parameter(np.zeros(g.shape, np.float32)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = wl.tensor(g)
    params.append(nn.Parameter(np.zeros(3, np.float32)))          # no gradient: skipped
    flat = np.concatenate([g.astype(np.float64).ravel() for g in grads])
    want = np.linalg.norm(flat, ord=norm_type)
    total = optim.clip_grad_norm_(params, 0.5, norm_type=norm_type)
    assert total.dtype == np.float32
    assert total.item() == pytest.approx(want, rel=1e-6)
    coef = 0.5 / (want + 1e-6)
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.numpy(), g * coef, rtol=1e-6)
    again = optim.clip_grad_norm_(params, 10.0, norm_type=norm_type)   # below: unchanged
    assert again.item() == pytest.approx(0.5, rel=1e-5)
    np.testing.assert_allclose(params[0].grad.numpy(), grads[0] * coef, rtol=1e-6)


def test_clip_grad_norm_reports_a_nonfinite_norm():
    a = nn.Parameter(np.zeros(2, np.float32))
    a.grad = wl.tensor(np.array([1.0, np.inf], np.float32))
    with pytest.raises(RuntimeError, match="clip_grad_norm_: the total gradient norm is inf"):
        optim.clip_grad_norm_([a], 1.0, error_if_nonfinite=True)


torch = pytest.importorskip("torch")


@pytest.mark.torch
@pytest.mark.parametrize("ours,theirs", [
    (lambda ps: optim.SGD(ps, lr=0.1), lambda ps: torch.optim.SGD(ps, lr=0.1)),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
     lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, maximize=True),
     lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    (lambda ps: optim.Adam(ps, lr=0.01), lambda ps: torch.optim.Adam(ps, lr=0.01)),
    (lambda ps: optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True),
     lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True)),
    (lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.05), lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.05)),
    (lambda ps: optim.RMSprop(ps, lr=0.01), lambda ps: torch.optim.RMSprop(ps, lr=0.01)),
    (lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.5, centered=True, weight_decay=0.1),
     lambda ps: torch.optim.RMSprop(ps, lr=0.01, momentum=0.5, centered=True, weight_decay=0.1)),
    (lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1),
     lambda ps: torch.optim.Adagrad(ps, lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)),
])
def test_optimizers_match_pytorch(ours, theirs):
    ps, _ = _run_ours(ours)
    tps = [torch.tensor(w, requires_grad=True) for w in W0]
    topt = theirs(tps)
    for gs in GRADS:
        for p, g in zip(tps, gs):
            p.grad = torch.tensor(g)
        topt.step()
    for p, t in zip(ps, tps):
        np.testing.assert_allclose(p.numpy(), t.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.torch
def test_schedules_match_pytorch():
    def lrs(make_sched, lib):
        p = nn.Parameter(np.ones(1)) if lib is optim else torch.ones(1, requires_grad=True)
        opt = lib.SGD([p], lr=0.5)
        s = make_sched(opt)
        out = []
        for _ in range(12):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            s.step()
        return np.array(out)

    tl = torch.optim.lr_scheduler
    pairs = [
        (lambda o: optim.StepLR(o, 3, 0.3), lambda o: tl.StepLR(o, 3, 0.3)),
        (lambda o: optim.CosineAnnealingLR(o, 10, 0.01), lambda o: tl.CosineAnnealingLR(o, 10, 0.01)),
        (lambda o: optim.LinearLR(o, 0.2, 1.0, 4), lambda o: tl.LinearLR(o, 0.2, 1.0, 4)),
        (lambda o: optim.LambdaLR(o, lambda e: 0.9 ** e), lambda o: tl.LambdaLR(o, lambda e: 0.9 ** e)),
    ]
    for ours, theirs in pairs:
        # closed forms against PyTorch's step-by-step products: ≤ 12 roundings, ~3e-15
        np.testing.assert_allclose(lrs(ours, optim), lrs(theirs, torch.optim), rtol=1e-9, atol=1e-12)


@pytest.mark.torch
def test_clipping_matches_pytorch():
    g1, g2 = R.standard_normal(5), R.standard_normal((2, 3))
    a, b = nn.Parameter(np.zeros(5)), nn.Parameter(np.zeros((2, 3)))
    a.grad, b.grad = wl.tensor(g1), wl.tensor(g2)
    ta, tb = torch.zeros(5, requires_grad=True), torch.zeros((2, 3), dtype=torch.float64, requires_grad=True)
    ta.grad, tb.grad = torch.tensor(g1, dtype=torch.float32), torch.tensor(g2)
    ta = ta.double().detach().requires_grad_()
    ta.grad = torch.tensor(g1)
    n1 = optim.clip_grad_norm_([a, b], 0.5)
    n2 = torch.nn.utils.clip_grad_norm_([ta, tb], 0.5)
    assert n1.item() == pytest.approx(n2.item())
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=0.1, amsgrad=True),
    lambda ps: optim.AdamW(ps, lr=1e-2),
    lambda ps: optim.SGD(ps, lr=1e-2, momentum=0.9, nesterov=True),
    lambda ps: optim.RMSprop(ps, lr=1e-2, momentum=0.5, centered=True),
    lambda ps: optim.Adagrad(ps, lr=1e-2),
])
@pytest.mark.parametrize("shapes", [[(400, 300), (300,), (70000,)],      # one flat buffer
                                    [(400, 400), (100000,)]])            # parameter by parameter
def test_sliced_parallel_update_equals_whole_update(make, shapes, set_threads):
    """Large parameters are updated in slices on several threads; the result must be
    bitwise what one whole-array update gives."""
    init = [R.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[R.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(3)]

    def run():
        ps = [nn.Parameter(w) for w in init]
        opt = make(ps)
        for gs in grads:
            for p, g in zip(ps, gs):
                p.grad = wl.tensor(g)
            opt.step()
        return [p.numpy().copy() for p in ps]

    set_threads(3)
    sliced = run()
    set_threads(1)
    whole = run()
    for a, b in zip(sliced, whole):
        np.testing.assert_array_equal(a, b)


@pytest.mark.torch
def test_parameters_without_gradients_are_skipped_like_pytorch():
    """A step where one parameter has no gradient leaves it (and its step count) alone."""
    shapes = [(5, 4), (4,), (3,)]
    init = [R.standard_normal(s).astype(np.float32) for s in shapes]
    ps = [nn.Parameter(w) for w in init]
    tps = [torch.tensor(w, requires_grad=True) for w in init]
    opt, topt = optim.Adam(ps, lr=0.05), torch.optim.Adam(tps, lr=0.05)
    for step in range(6):
        for i, (p, tp) in enumerate(zip(ps, tps)):
            if step in (2, 3) and i == 1:
                p.grad, tp.grad = None, None
            else:
                g = R.standard_normal(p.shape).astype(np.float32)
                p.grad, tp.grad = wl.tensor(g), torch.tensor(g)
        opt.step()
        topt.step()
    for p, tp in zip(ps, tps):
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert [opt.state[p]["step"] for p in ps] == [6, 4, 6]


def test_flat_group_survives_dtype_change_and_state_loading():
    model = nn.MLP([3, 5, 2])
    opt = optim.Adam(model.parameters(), lr=0.01)
    x = wl.random.normal((4, 3))
    for _ in range(2):
        opt.zero_grad()
        (model(x) ** 2).sum().backward()
        opt.step()
    before = [p.numpy().copy() for p in model.parameters()]
    model.double()                                   # parameters get new arrays
    opt.zero_grad()
    (model(x.astype(wl.float64)) ** 2).sum().backward()
    opt.step()
    after = [p.numpy() for p in model.parameters()]
    assert all(not np.allclose(a, b) for a, b in zip(after, before))
    assert all(p.dtype == wl.float64 for p in model.parameters())
    sd = opt.state_dict()
    assert all("_flat_fresh" not in s for s in sd["state"].values())
