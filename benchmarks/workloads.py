"""Benchmark workloads: each builds one step function for one contender.

A workload is a function ``(contender, **options) -> step`` where ``step()`` runs one
iteration. Contenders: ``wonderland``, ``torch`` (PyTorch eager, CPU) and ``numpy``
(the same computation written by hand: the floor our overhead is measured against).
The three contenders of a workload compute the same thing from the same initial values.
"""

from __future__ import annotations

import numpy as np

def _warm_up(wl):
    """Compile the recurrent kernels before timing (older checkouts kept warm_up in
    wonderland.ops.kernels, so that --baseline can time them too)."""
    warm = getattr(wl.ops, "warm_up", None)
    if warm is None:
        from wonderland.ops import kernels

        warm = kernels.warm_up
    warm()


WORKLOADS = {}


def workload(name, contenders):
    def register(fn):
        WORKLOADS[name] = (fn, contenders)
        return fn
    return register


# ----------------------------------------------------------------------------- per-op
def _op_inputs(n):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, n)).astype(np.float32),
            rng.standard_normal((n, n)).astype(np.float32),
            rng.standard_normal((n, n)).astype(np.float32))


def _op_workload(op):
    def build(contender, size=16):
        a0, b0, g0 = _op_inputs(size)
        if contender == "wonderland":
            import wonderland as wl
            a = wl.tensor(a0, requires_grad=True)
            b = wl.tensor(b0, requires_grad=True)
            g = wl.tensor(g0)
            fn = {"add": lambda: a + b, "multiply": lambda: a * b, "matmul": lambda: a @ b}[op]

            def step():
                fn().backward(g)
                a.grad = None
                b.grad = None
            return step
        if contender == "torch":
            import torch
            a = torch.tensor(a0, requires_grad=True)
            b = torch.tensor(b0, requires_grad=True)
            g = torch.tensor(g0)
            fn = {"add": lambda: a + b, "multiply": lambda: a * b, "matmul": lambda: a @ b}[op]

            def step():
                fn().backward(g)
                a.grad = None
                b.grad = None
            return step
        a, b, g = a0, b0, g0
        if op == "add":
            def step():
                _ = a + b
                return g.copy(), g.copy()
        elif op == "multiply":
            def step():
                _ = a * b
                return g * b, g * a
        else:
            def step():
                _ = a @ b
                return g @ b.T, a.T @ g
        return step
    return build


for _op in ("add", "multiply", "matmul"):
    workload(f"op_{_op}", ("wonderland", "torch", "numpy"))(_op_workload(_op))


# ----------------------------------------------------------------------------- MLP step
def _mlp_setup(sizes, batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch)
    ws = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32)
          for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [np.zeros(b, np.float32) for b in sizes[1:]]
    return x, y, ws, bs


def _jax_mlp_step(sizes, batch, lr):
    """The MLP step as JAX users write it: loss, gradients and the SGD update in one
    ``jax.jit`` function (its result waited for, as JAX runs asynchronously)."""
    import jax
    import jax.numpy as jnp

    x, y, ws, bs = _mlp_setup(sizes, batch)
    params = [jnp.asarray(w) for w in ws] + [jnp.asarray(b) for b in bs]
    n = len(ws)
    X, Y = jnp.asarray(x), jnp.asarray(y)

    def loss_fn(ps, xb, yb):
        h = xb
        for i in range(n):
            h = h @ ps[i] + ps[n + i]
            if i < n - 1:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h, axis=-1)
        return -jnp.take_along_axis(logp, yb[:, None], axis=1).mean()

    @jax.jit
    def update(ps, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(ps, xb, yb)
        return loss, [p - lr * g for p, g in zip(ps, grads)]

    state = [params]

    def step():
        loss, state[0] = update(state[0], X, Y)
        loss.block_until_ready()
    return step


@workload("mlp_step", ("wonderland", "torch", "jax", "numpy"))
def mlp_step(contender, sizes=(784, 512, 512, 10), batch=128, lr=0.01):
    """One SGD step of an MLP with ReLU and softmax cross-entropy (mean over the batch)."""
    if contender == "jax":
        return _jax_mlp_step(sizes, batch, lr)
    x, y, ws, bs = _mlp_setup(sizes, batch)
    if contender == "wonderland":
        import wonderland as wl
        params = [wl.tensor(w, requires_grad=True) for w in ws] + \
                 [wl.tensor(b, requires_grad=True) for b in bs]
        n = len(ws)
        X = wl.tensor(x)
        Y = wl.tensor(y).reshape(-1, 1)

        def step():
            h = X
            for i in range(n):
                h = h @ params[i] + params[n + i]
                if i < n - 1:
                    h = wl.relu(h)
            loss = -wl.take_along_axis(wl.log_softmax(h, axis=-1), Y, axis=1).mean()
            loss.backward()
            for p in params:
                p.data -= lr * p.grad.data
                p.grad = None
        return step
    if contender == "torch":
        import torch
        params = [torch.tensor(w, requires_grad=True) for w in ws] + \
                 [torch.tensor(b, requires_grad=True) for b in bs]
        n = len(ws)
        X = torch.tensor(x)
        Y = torch.tensor(y)

        def step():
            h = X
            for i in range(n):
                h = h @ params[i] + params[n + i]
                if i < n - 1:
                    h = torch.relu(h)
            loss = torch.nn.functional.cross_entropy(h, Y)
            loss.backward()
            with torch.no_grad():
                for p in params:
                    p -= lr * p.grad
                    p.grad = None
        return step
    n = len(ws)
    rows = np.arange(batch)

    def step():
        acts, pre = [x], []
        h = x
        for i in range(n):
            z = h @ ws[i] + bs[i]
            pre.append(z)
            h = np.maximum(z, 0) if i < n - 1 else z
            acts.append(h)
        z = h - h.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        _loss = -np.log(p[rows, y]).mean()
        d = p
        d[rows, y] -= 1.0
        d /= batch
        for i in reversed(range(n)):
            gw = acts[i].T @ d
            gb = d.sum(axis=0)
            if i > 0:
                d = d @ ws[i].T
                d *= pre[i - 1] > 0
            ws[i] -= lr * gw
            bs[i] -= lr * gb
    return step


# ----------------------------------------------------------------------------- training on digits
def _digits(seed=0):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = ((d.data - d.data.mean(0)) / (d.data.std(0) + 1e-8)).astype(np.float32)
    return x, d.target.astype(np.int64)


@workload("digits_mlp_epoch", ("wonderland", "torch"))
def digits_mlp_epoch(contender, sizes=(64, 256, 256, 10), batch=64, lr=1e-3):
    """One epoch (1,797 images, batches of 64, shuffled) of Adam on an MLP 64-256-256-10
    with ReLU and cross-entropy, through each library's usual layers and loss."""
    x, y = _digits()
    rng = np.random.default_rng(0)
    ws = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32)
          for a, b in zip(sizes[:-1], sizes[1:])]
    if contender == "wonderland":
        import wonderland as wl
        model = wl.nn.MLP(list(sizes))
        for layer, w in zip([m for m in model if isinstance(m, wl.nn.Linear)], ws):
            layer.weight.data[...] = w
        opt = wl.optim.Adam(model.parameters(), lr=lr)
        loader = wl.data.DataLoader(wl.data.TensorDataset(wl.tensor(x), wl.tensor(y)), batch,
                                    shuffle=True, generator=wl.random.Generator(0))
        ce = wl.nn.functional.cross_entropy

        def step():
            for xb, yb in loader:
                opt.zero_grad()
                ce(model(xb), yb).backward()
                opt.step()
        return step
    import torch
    layers = []
    for i, w in enumerate(ws):
        lin = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(w.T))
        layers.append(lin)
        if i < len(ws) - 1:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    X, Y = torch.tensor(x), torch.tensor(y)
    gen = torch.Generator().manual_seed(0)

    def step():
        perm = torch.randperm(len(X), generator=gen)
        for i in range(0, len(X), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X[idx]), Y[idx]).backward()
            opt.step()
    return step


# ----------------------------------------------------------------------------- Adam update
def _adam_workload(shapes):
    def build(contender):
        rng = np.random.default_rng(0)
        params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        if contender == "wonderland":
            import wonderland as wl
            ps = [wl.nn.Parameter(p) for p in params]
            for p, g in zip(ps, grads):
                p.grad = wl.tensor(g)
            opt = wl.optim.Adam(ps, lr=1e-3)
            return opt.step
        import torch
        ps = [torch.tensor(p, requires_grad=True) for p in params]
        for p, g in zip(ps, grads):
            p.grad = torch.tensor(g)
        opt = torch.optim.Adam(ps, lr=1e-3)
        return opt.step
    return build


workload("adam_mlp_params", ("wonderland", "torch"))(
    _adam_workload([(784, 512), (512,), (512, 512), (512,), (512, 10), (10,)]))
workload("adam_many_small", ("wonderland", "torch"))(
    _adam_workload([(32, 32)] * 100 + [(32,)] * 100))


# ----------------------------------------------------------------------------- convolutions
def _conv_inputs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 28, 28, 32)).astype(np.float32)
    w = (rng.standard_normal((3, 3, 32, 64)) * 0.05).astype(np.float32)
    b = np.zeros(64, np.float32)
    return x, w, b


@workload("conv2d", ("wonderland", "torch", "torch_channels_last"))
def conv2d(contender):
    """conv2d forward and backward: batch 64, 28×28, 32→64 channels, 3×3, padding 1."""
    x0, w0, b0 = _conv_inputs()
    if contender == "wonderland":
        import wonderland as wl
        x = wl.tensor(x0, requires_grad=True)
        w = wl.tensor(w0, requires_grad=True)
        b = wl.tensor(b0, requires_grad=True)

        def step():
            y = wl.nn.functional.conv2d(x, w, b, padding=1)
            y.backward(wl.ones_like(y))
            x.grad = w.grad = b.grad = None
        return step
    import torch
    fmt = torch.channels_last if contender == "torch_channels_last" else torch.contiguous_format
    x = torch.tensor(np.moveaxis(x0, -1, 1)).contiguous(memory_format=fmt).requires_grad_()
    conv = torch.nn.Conv2d(32, 64, 3, padding=1).to(memory_format=fmt)

    def step():
        y = conv(x)
        y.backward(torch.ones_like(y))
        x.grad = None
        conv.zero_grad(set_to_none=True)
    return step


@workload("cnn_step", ("wonderland", "torch", "torch_channels_last"))
def cnn_step(contender, batch=64):
    """One Adam step of a small CNN on 28×28×1 images: conv 1→32 (3×3) – ReLU – max-pool
    – conv 32→64 (3×3) – ReLU – max-pool – linear 3136→10, cross-entropy."""
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((batch, 28, 28, 1)).astype(np.float32)
    y0 = rng.integers(0, 10, batch)
    if contender == "wonderland":
        import wonderland as wl
        nn = wl.nn
        model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(7 * 7 * 64, 10))
        opt = wl.optim.Adam(model.parameters(), 1e-3)
        X, Y = wl.tensor(x0), wl.tensor(y0)

        def step():
            opt.zero_grad()
            nn.functional.cross_entropy(model(X), Y).backward()
            opt.step()
        return step
    import torch
    fmt = torch.channels_last if contender == "torch_channels_last" else torch.contiguous_format
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(7 * 7 * 64, 10)).to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    X = torch.tensor(np.moveaxis(x0, -1, 1)).contiguous(memory_format=fmt)
    Y = torch.tensor(y0)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), Y).backward()
        opt.step()
    return step


@workload("cnn_step_jit", ("wonderland", "torch", "torch_channels_last"))
def cnn_step_jit(contender, batch=64):
    """``cnn_step`` with wonderland's loss and gradients under ``wl.jit``; the same Adam."""
    if contender != "wonderland":
        return cnn_step(contender, batch)
    import wonderland as wl
    nn = wl.nn
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((batch, 28, 28, 1)).astype(np.float32)
    y0 = rng.integers(0, 10, batch)
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(7 * 7 * 64, 10))
    opt = wl.optim.Adam(model.parameters(), 1e-3)
    return _jitted_training_step(model, opt, wl.tensor(x0), wl.tensor(y0))


def _jitted_training_step(model, opt, X, Y, logits_shape=None):
    """A step: cross-entropy loss and gradients of ``model`` on ``(X, Y)`` from one
    ``wl.jit`` program, then ``opt``'s update (``logits_shape``: a reshape first)."""
    import wonderland as wl
    nn = wl.nn
    params = dict(model.named_parameters())

    def loss(p, xb, yb):
        logits = nn.functional_call(model, p, xb)
        if logits_shape is not None:
            logits = logits.reshape(logits_shape)
        return nn.functional.cross_entropy(logits, yb)

    loss_and_grads = wl.jit(lambda ps, xb, yb: wl.value_and_grad(lambda p: loss(p, xb, yb))(ps))

    def step():
        _, grads = loss_and_grads(params, X, Y)
        for name, p in params.items():
            p.grad = grads[name]
        opt.step()
    return step


# ----------------------------------------------------------------------------- transforms
def _mlp_functional_step(contender, sizes, batch, lr, use_jit):
    """``mlp_step`` through ``wl.value_and_grad`` of a loss of the parameters (which
    require grad, as a model's do), optionally under ``wl.jit``; the others are
    ``mlp_step``'s."""
    x, y, ws, bs = _mlp_setup(sizes, batch)
    if contender != "wonderland":
        return mlp_step(contender, sizes, batch, lr)
    import wonderland as wl
    params = [wl.tensor(w, requires_grad=True) for w in ws] + \
             [wl.tensor(b, requires_grad=True) for b in bs]
    n = len(ws)
    X = wl.tensor(x)
    Y = wl.tensor(y).reshape(-1, 1)

    def loss_fn(ps, xb, yb):
        h = xb
        for i in range(n):
            h = h @ ps[i] + ps[n + i]
            if i < n - 1:
                h = wl.relu(h)
        return -wl.take_along_axis(wl.log_softmax(h, axis=-1), yb, axis=1).mean()

    vg = wl.value_and_grad(loss_fn)
    if use_jit:
        vg = wl.jit(vg)

    def step():
        _, grads = vg(params, X, Y)
        for p, g in zip(params, grads):
            p.data -= lr * g.data
    return step


@workload("mlp_value_and_grad", ("wonderland", "torch", "jax", "numpy"))
def mlp_value_and_grad(contender, sizes=(784, 512, 512, 10), batch=128, lr=0.01):
    """The MLP step of ``mlp_step`` written JAX-style: ``value_and_grad`` of a loss of the
    parameters, then the update. It must cost what the ``.backward()`` path costs
    (PyTorch: ``torch.func.grad_and_value``)."""
    return _mlp_functional_step(contender, sizes, batch, lr, use_jit=False)


@workload("mlp_step_jit", ("wonderland", "torch", "jax", "numpy"))
def mlp_step_jit(contender, sizes=(784, 512, 512, 10), batch=128, lr=0.01):
    """``mlp_value_and_grad`` with the loss-and-gradients function under ``wl.jit``
    (traced once, then replayed)."""
    return _mlp_functional_step(contender, sizes, batch, lr, use_jit=True)


@workload("jacobian_256", ("wonderland", "torch", "numpy"))
def jacobian_256(contender, n=256):
    """The full Jacobian of ``tanh(W x)`` for 256 inputs and outputs, by reverse mode
    (``jacrev``) and by forward mode (``jacfwd``) in one step. NumPy: the analytic
    ``diag(1 - tanh²) W``."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
    x = rng.standard_normal(n).astype(np.float32)
    if contender == "wonderland":
        import wonderland as wl
        W, X = wl.tensor(w), wl.tensor(x)
        f = lambda v: wl.tanh(W @ v)  # noqa: E731

        def step():
            return wl.jacrev(f)(X), wl.jacfwd(f)(X)
        return step
    if contender == "torch":
        import torch
        W, X = torch.tensor(w), torch.tensor(x)
        f = lambda v: torch.tanh(W @ v)  # noqa: E731

        def step():
            return torch.func.jacrev(f)(X), torch.func.jacfwd(f)(X)
        return step

    def step():
        jac = (1.0 - np.tanh(w @ x) ** 2)[:, None] * w
        return jac, jac.copy()
    return step

# ----------------------------------------------------------------------------- recurrent models
def _lstm_workload(num_layers, cell="LSTM"):
    def build(contender, batch=32, length=128, n_in=64, hidden=256):
        rng = np.random.default_rng(0)
        x0 = rng.standard_normal((batch, length, n_in)).astype(np.float32)
        g0 = rng.standard_normal((batch, length, hidden)).astype(np.float32)
        if contender == "wonderland":
            import wonderland as wl
            _warm_up(wl)
            lstm = getattr(wl.nn, cell)(n_in, hidden, num_layers=num_layers)
            x = wl.tensor(x0, requires_grad=True)
            g = wl.tensor(g0)

            def step():
                out, _ = lstm(x)
                out.backward(g)
                x.grad = None
                lstm.zero_grad()
            return step
        import torch
        lstm = getattr(torch.nn, cell)(n_in, hidden, num_layers=num_layers, batch_first=True)
        x = torch.tensor(x0, requires_grad=True)
        g = torch.tensor(g0)

        def step():
            out, _ = lstm(x)
            out.backward(g)
            x.grad = None
            lstm.zero_grad(set_to_none=True)
        return step
    return build


workload("lstm_1layer", ("wonderland", "torch"))(_lstm_workload(1))
workload("lstm_2layer", ("wonderland", "torch"))(_lstm_workload(2))
workload("gru_1layer", ("wonderland", "torch"))(_lstm_workload(1, "GRU"))


def _ssm_arrays(batch=8, length=1024, d=256, n=16):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, length, d)).astype(np.float32)
    dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), (batch, length, d))).astype(np.float32)
    A = -np.tile(np.arange(1, n + 1, dtype=np.float32), (d, 1))
    Bm = rng.standard_normal((batch, length, n)).astype(np.float32)
    C = rng.standard_normal((batch, length, n)).astype(np.float32)
    g = rng.standard_normal((batch, length, d)).astype(np.float32)
    return x, dt, A, Bm, C, g


def _torch_selective(kind, x, dt, A, Bm, C, chunk=32):
    """y = C·h with h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t, in PyTorch: a sequential loop
    over time, or cumulative sums of log-coefficients within chunks of 32 steps (bounded
    exponents) with the state carried from chunk to chunk."""
    import torch
    b, T, d = x.shape
    n = A.shape[1]
    if kind == "torch_loop":
        h = x.new_zeros(b, d, n)
        ys = []
        # unbind: per-step views whose backward is one stack (indexing a[:, t] would
        # give every step's backward a zero-filled gradient of the whole input)
        for dt_t, x_t, B_t, C_t in zip(dt.unbind(1), x.unbind(1), Bm.unbind(1), C.unbind(1)):
            h = torch.exp(dt_t[..., None] * A) * h + (dt_t * x_t)[..., None] * B_t[:, None]
            ys.append((h * C_t[:, None]).sum(-1))
        return torch.stack(ys, 1)
    ys = []
    h = x.new_zeros(b, d, n)
    for s in range(0, T, chunk):
        la = dt[:, s:s + chunk, :, None] * A                       # log a_t   (b, c, d, n)
        L = torch.cumsum(la, 1)                                     # Σ log a up to t
        u = (dt[:, s:s + chunk] * x[:, s:s + chunk])[..., None] * Bm[:, s:s + chunk, None]
        hs = torch.exp(L) * (h[:, None] + torch.cumsum(u * torch.exp(-L), 1))
        ys.append((hs * C[:, s:s + chunk, None]).sum(-1))
        h = hs[:, -1]
    return torch.cat(ys, 1)


@workload("selective_scan", ("wonderland", "torch_loop", "torch_cumsum"))
def selective_scan_workload(contender):
    """Mamba's selective scan forward and backward: batch 8, length 1,024, 256 channels,
    state 16 (gradients for x, Δ, A, B and C)."""
    arrays = _ssm_arrays()
    if contender == "wonderland":
        import wonderland as wl
        from wonderland.ops.selective import selective_scan
        _warm_up(wl)
        x, dt, A, Bm, C = (wl.tensor(a, requires_grad=True) for a in arrays[:5])
        g = wl.tensor(arrays[5])

        def step():
            y, _ = selective_scan(x, dt, A, Bm, C)
            y.backward(g)
            for t in (x, dt, A, Bm, C):
                t.grad = None
        return step
    import torch
    x, dt, A, Bm, C = (torch.tensor(a, requires_grad=True) for a in arrays[:5])
    g = torch.tensor(arrays[5])

    def step():
        y = _torch_selective(contender, x, dt, A, Bm, C)
        y.backward(g)
        for t in (x, dt, A, Bm, C):
            t.grad = None
    return step


@workload("linear_recurrence", ("wonderland", "torch_loop", "torch_cumsum"))
def linear_recurrence_workload(contender, batch=8, length=1024, channels=256 * 16):
    """h_t = a_t h_{t-1} + b_t forward and backward over (8, 1,024, 4,096) (256 channels ×
    16 states), a in (0.9, 1)."""
    rng = np.random.default_rng(0)
    a0 = rng.uniform(0.9, 1.0, (batch, length, channels)).astype(np.float32)
    b0 = rng.standard_normal((batch, length, channels)).astype(np.float32)
    g0 = rng.standard_normal((batch, length, channels)).astype(np.float32)
    if contender == "wonderland":
        import wonderland as wl
        _warm_up(wl)
        a, b = wl.tensor(a0, requires_grad=True), wl.tensor(b0, requires_grad=True)
        g = wl.tensor(g0)

        def step():
            wl.linear_recurrence(a, b).backward(g)
            a.grad = b.grad = None
        return step
    import torch
    a, b = torch.tensor(a0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    g = torch.tensor(g0)

    def forward():
        if contender == "torch_loop":
            h = b.new_zeros(batch, channels)
            hs = []
            for a_t, b_t in zip(a.unbind(1), b.unbind(1)):      # views; see above
                h = a_t * h + b_t
                hs.append(h)
            return torch.stack(hs, 1)
        out, h = [], b.new_zeros(batch, channels)
        for s in range(0, length, 64):                 # log-space cumulative sums in chunks
            L = torch.cumsum(torch.log(a[:, s:s + 64]), 1)
            hs = torch.exp(L) * (h[:, None] + torch.cumsum(b[:, s:s + 64] * torch.exp(-L), 1))
            out.append(hs)
            h = hs[:, -1]
        return torch.cat(out, 1)

    def step():
        forward().backward(g)
        a.grad = b.grad = None
    return step


# ----------------------------------------------------------------------------- attention
def _attention_workload(L, causal, batch=8, heads=8, dim=64):
    """Scaled dot-product attention forward and backward, (batch, heads, L, dim) float32."""
    def build(contender):
        rng = np.random.default_rng(0)
        q, k, v, g = (rng.standard_normal((batch, heads, L, dim)).astype(np.float32)
                      for _ in range(4))
        if contender == "numpy":
            return _numpy_attention_step(q, k, v, g, causal)
        if contender == "jax":
            return _jax_attention_step(q, k, v, g, causal)
        if contender == "wonderland":
            import wonderland as wl
            Q, K, V = (wl.tensor(a, requires_grad=True) for a in (q, k, v))
            G = wl.tensor(g)
            sdpa = wl.nn.functional.scaled_dot_product_attention
        else:
            import torch
            Q, K, V = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
            G = torch.tensor(g)
            sdpa = torch.nn.functional.scaled_dot_product_attention

        def step():
            sdpa(Q, K, V, is_causal=causal).backward(G)
            Q.grad = K.grad = V.grad = None
        return step
    return build


def _numpy_attention_step(q, k, v, g, causal):
    """Attention forward and backward by hand in NumPy: the whole probability matrix per
    head, kept for the backward pass."""
    scale = np.float32(1 / np.sqrt(q.shape[-1]))
    L, S = q.shape[-2], k.shape[-2]
    hidden = np.triu(np.ones((L, S), bool), 1) if causal else None

    def step():
        s = q @ k.swapaxes(-1, -2)
        s *= scale
        if hidden is not None:
            s[..., hidden] = -np.inf
        s -= s.max(-1, keepdims=True)
        p = np.exp(s, out=s)
        p /= p.sum(-1, keepdims=True)
        o = p @ v
        dv = p.swapaxes(-1, -2) @ g
        ds = g @ v.swapaxes(-1, -2)
        ds -= (g * o).sum(-1, keepdims=True)
        ds *= p
        ds *= scale
        return o, ds @ k, ds.swapaxes(-1, -2) @ q, dv
    return step


def _jax_attention_step(q, k, v, g, causal):
    """Attention forward and backward as JAX users write it: the softmax form under
    ``jax.jit`` of ``jax.vjp``."""
    import jax
    import jax.numpy as jnp
    scale = 1 / np.sqrt(q.shape[-1])
    L, S = q.shape[-2], k.shape[-2]
    allowed = jnp.asarray(np.tril(np.ones((L, S), bool))) if causal else None

    def forward(q, k, v):
        s = jnp.einsum("bhle,bhse->bhls", q, k) * scale
        if allowed is not None:
            s = jnp.where(allowed, s, -jnp.inf)
        return jax.nn.softmax(s, axis=-1) @ v

    @jax.jit
    def fwd_bwd(q, k, v, g):
        out, back = jax.vjp(forward, q, k, v)
        return out, back(g)
    args = [jnp.asarray(a) for a in (q, k, v, g)]
    return lambda: jax.block_until_ready(fwd_bwd(*args))


for _L in (256, 1024):
    for _causal in (False, True):
        workload(f"attention_L{_L}{'_causal' if _causal else ''}",
                 ("wonderland", "torch", "jax", "numpy"))(_attention_workload(_L, _causal))


# ----------------------------------------------------------------------------- character GPT
def _gpt_batch(vocab, ctx, batch, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (batch, ctx + 1))
    return ids[:, :-1], ids[:, 1:]


@workload("gpt_step", ("wonderland", "torch"))
def gpt_step(contender, vocab=80, n_layer=4, n_embd=256, n_head=8, ctx=256, batch=16,
             gelu="tanh"):
    """One AdamW step of a character GPT: 4 pre-norm layers, d = 256, 8 heads, context 256,
    batch 16, GELU (tanh; ``gelu="none"``: the exact one), tied output embedding, causal
    attention."""
    x, y = _gpt_batch(vocab, ctx, batch)
    if contender == "wonderland":
        import wonderland as wl
        wl.random.seed(0)
        model = wl.models.GPT(vocab, ctx, n_layer, n_head, n_embd,
                              activation="gelu_tanh" if gelu == "tanh" else "gelu")
        opt = wl.optim.AdamW(model.parameters(), 3e-4)

        def step():
            opt.zero_grad()
            model.loss(x, y).backward()
            opt.step()
        return step
    import torch
    from torch import nn
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
            self.q, self.k, self.v, self.o = (nn.Linear(n_embd, n_embd) for _ in range(4))
            self.fc, self.proj = nn.Linear(n_embd, 4 * n_embd), nn.Linear(4 * n_embd, n_embd)

        def forward(self, h):
            b, t, d = h.shape
            a = self.ln_1(h)
            q, k, v = (m(a).view(b, t, n_head, d // n_head).transpose(1, 2)
                       for m in (self.q, self.k, self.v))
            o = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            h = h + self.o(o.transpose(1, 2).reshape(b, t, d))
            return h + self.proj(nn.functional.gelu(self.fc(self.ln_2(h)), approximate=gelu))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(vocab, n_embd)
            self.wpe = nn.Embedding(ctx, n_embd)
            self.blocks = nn.ModuleList([Block() for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(n_embd)

        def forward(self, idx):
            h = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for blk in self.blocks:
                h = blk(h)
            return self.ln_f(h) @ self.wte.weight.T

    model = GPT()
    opt = torch.optim.AdamW(model.parameters(), 3e-4)
    X, Y = torch.tensor(x), torch.tensor(y)

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X).reshape(-1, vocab), Y.reshape(-1))
        loss.backward()
        opt.step()
    return step
@workload("gpt_step_jit", ("wonderland", "torch"))
def gpt_step_jit(contender, vocab=80, n_layer=4, n_embd=256, n_head=8, ctx=256, batch=16):
    """``gpt_step`` with wonderland's loss and gradients under ``wl.jit`` (elementwise
    chains fused); the same AdamW."""
    if contender != "wonderland":
        return gpt_step(contender, vocab, n_layer, n_embd, n_head, ctx, batch)
    import wonderland as wl
    x, y = _gpt_batch(vocab, ctx, batch)
    wl.random.seed(0)
    model = wl.models.GPT(vocab, ctx, n_layer, n_head, n_embd)
    opt = wl.optim.AdamW(model.parameters(), 3e-4)
    return _jitted_training_step(model, opt, wl.tensor(x), wl.tensor(y.reshape(-1)),
                                 logits_shape=(-1, vocab))


@workload("transformer_lm_step", ("wonderland", "torch"))
def transformer_lm_step(contender):
    """``gpt_step`` with the exact GELU (``x Φ(x)``, through erf): one AdamW step of a
    pre-norm transformer LM, 4 layers, d = 256, feed-forward 1,024, 8 heads, batch 16 ×
    256 tokens."""
    return gpt_step(contender, gelu="none")


# ----------------------------------------------------------------------------- GELU per element
def _gelu_workload(backward, shape=(16, 256, 1024)):
    """The exact GELU on a float32 (16, 256, 1024) array (the MLP activations of
    ``transformer_lm_step``): forward, or forward and backward. Divide the step time by
    4,194,304 for the time per element. The NumPy column is SciPy's float32 ``erf`` in
    ``0.5 x (1 + erf(x/√2))`` (and the slope ``Φ(x) + x φ(x)`` by hand)."""
    def build(contender):
        rng = np.random.default_rng(0)
        x0 = (rng.standard_normal(shape) * 3).astype(np.float32)
        g0 = rng.standard_normal(shape).astype(np.float32)
        if contender == "wonderland":
            import wonderland as wl
            gelu = wl.nn.functional.gelu
            x, g = wl.tensor(x0, requires_grad=backward), wl.tensor(g0)
            if not backward:
                return lambda: gelu(x)

            def step():
                gelu(x).backward(g)
                x.grad = None
            return step
        if contender == "torch":
            import torch
            gelu = torch.nn.functional.gelu
            x, g = torch.tensor(x0, requires_grad=backward), torch.tensor(g0)
            if not backward:
                return lambda: gelu(x)

            def step():
                gelu(x).backward(g)
                x.grad = None
            return step
        if contender == "jax":
            import jax
            import jax.numpy as jnp
            xj, gj = jnp.asarray(x0), jnp.asarray(g0)
            exact = lambda x: jax.nn.gelu(x, approximate=False)  # noqa: E731
            if not backward:
                f = jax.jit(exact)
                return lambda: f(xj).block_until_ready()
            fb = jax.jit(lambda x, g: jax.vjp(exact, x)[1](g))
            return lambda: jax.block_until_ready(fb(xj, gj))
        from scipy.special import erf
        half, root = np.float32(0.5), np.float32(1 / np.sqrt(2))
        density = np.float32(1 / np.sqrt(2 * np.pi))

        def step():
            phi = half * (1 + erf(x0 * root))
            out = x0 * phi
            if backward:
                return out, g0 * (phi + x0 * density * np.exp(half * -(x0 * x0)))
            return out
        return step
    return build


workload("gelu_forward", ("wonderland", "torch", "jax", "numpy"))(_gelu_workload(False))
workload("gelu_forward_backward", ("wonderland", "torch", "jax", "numpy"))(
    _gelu_workload(True))


# ----------------------------------------------------------------------------- LSTM training step
@workload("lstm_train_step", ("wonderland", "torch"))
def lstm_train_step(contender, batch=32, length=128, n_in=128, hidden=256, lr=1e-3):
    """One Adam step of an LSTM 128 → 256 over (32, 128, 128) with a linear head 256 → 128
    on every step and a mean squared error against a target sequence."""
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((batch, length, n_in)).astype(np.float32)
    y0 = rng.standard_normal((batch, length, n_in)).astype(np.float32)
    if contender == "wonderland":
        import wonderland as wl
        _warm_up(wl)
        wl.random.seed(0)
        lstm, head = wl.nn.LSTM(n_in, hidden), wl.nn.Linear(hidden, n_in)
        opt = wl.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr)
        x, y = wl.tensor(x0), wl.tensor(y0)

        def step():
            opt.zero_grad()
            out, _ = lstm(x)
            wl.nn.functional.mse_loss(head(out), y).backward()
            opt.step()
        return step
    import torch
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(n_in, hidden, batch_first=True)
    head = torch.nn.Linear(hidden, n_in)
    opt = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr)
    x, y = torch.tensor(x0), torch.tensor(y0)

    def step():
        opt.zero_grad()
        out, _ = lstm(x)
        torch.nn.functional.mse_loss(head(out), y).backward()
        opt.step()
    return step


# ----------------------------------------------------------------------------- graphs
def _citeseer():
    """CiteSeer as arrays (the file shipped with wonderland): row-normalised dense
    features, symmetric edge_index (both directions), labels, train indices."""
    import wonderland as wl
    g = wl.graph.load_citeseer(features="dense", normalize_features=True)
    return (g.x.numpy(), g.edge_index.copy(), g.y.numpy(), g.train_idx.numpy().copy())


def _pyg_data(x, ei):
    import torch
    return torch.tensor(x), torch.tensor(ei)


def _torch_gcn_adjacency(ei, n):
    """D^-1/2 (A + I) D^-1/2 as a torch sparse CSR matrix (rows are targets)."""
    import torch
    loops = np.arange(n)
    keep = ei[0] != ei[1]
    src = np.concatenate([ei[0, keep], loops])
    dst = np.concatenate([ei[1, keep], loops])
    deg = np.bincount(dst, minlength=n).astype(np.float32)
    w = (deg[src] ** -0.5) * (deg[dst] ** -0.5)
    a = torch.sparse_coo_tensor(torch.tensor(np.stack([dst, src])), torch.tensor(w), (n, n))
    return a.coalesce().to_sparse_csr()


@workload("gcn_citeseer_epoch", ("wonderland", "pyg", "torch"))
def gcn_citeseer_epoch(contender, hidden=16, lr=0.01):
    """One full-graph training epoch of a 2-layer GCN (16 hidden, dropout 0.5, Adam) on
    CiteSeer with dense features: forward, loss on the 120 training nodes, backward, step.
    The normalised adjacency is recomputed every epoch (PyG's default, cached=False),
    except for plain PyTorch, which builds its sparse matrix once."""
    x, ei, y, tr = _citeseer()
    n, c = x.shape
    classes = int(y.max()) + 1
    if contender == "wonderland":
        import wonderland as wl
        model = wl.models.GCN(c, hidden, classes, dropout=0.5)
        opt = wl.optim.Adam(model.parameters(), lr=lr, weight_decay=5e-4)
        X, Y, TR = wl.tensor(x), wl.tensor(y[tr]), wl.tensor(tr)
        ce = wl.nn.functional.cross_entropy

        def step():
            opt.zero_grad()
            ce(wl.gather_rows(model(X, ei), TR), Y).backward()
            opt.step()
        return step
    import torch
    F = torch.nn.functional
    Y, TR = torch.tensor(y[tr]), torch.tensor(tr)
    if contender == "pyg":
        from torch_geometric.nn import GCNConv
        X, EI = _pyg_data(x, ei)

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1, self.conv2 = GCNConv(c, hidden), GCNConv(hidden, classes)

            def forward(self, x, ei):
                x = F.dropout(x, 0.5, self.training)
                x = F.relu(self.conv1(x, ei))
                return self.conv2(F.dropout(x, 0.5, self.training), ei)
        model = Net()
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=5e-4)

        def step():
            opt.zero_grad()
            F.cross_entropy(model(X, EI)[TR], Y).backward()
            opt.step()
        return step
    X = torch.tensor(x)
    A = _torch_gcn_adjacency(ei, n)
    w1 = torch.nn.Parameter(torch.empty(c, hidden))
    w2 = torch.nn.Parameter(torch.empty(hidden, classes))
    torch.nn.init.xavier_uniform_(w1)
    torch.nn.init.xavier_uniform_(w2)
    b1 = torch.nn.Parameter(torch.zeros(hidden))
    b2 = torch.nn.Parameter(torch.zeros(classes))
    opt = torch.optim.Adam([w1, w2, b1, b2], lr=lr, weight_decay=5e-4)

    def step():
        opt.zero_grad()
        h = F.relu(A @ (F.dropout(X, 0.5) @ w1) + b1)
        out = A @ (F.dropout(h, 0.5) @ w2) + b2
        F.cross_entropy(out[TR], Y).backward()
        opt.step()
    return step


@workload("gat_citeseer_epoch", ("wonderland", "pyg", "torch"))
def gat_citeseer_epoch(contender, hidden=8, heads=8, lr=0.005):
    """One full-graph training epoch of a 2-layer GAT (8 heads × 8 hidden, ELU, dropout
    0.6 on inputs and attention, Adam) on CiteSeer with dense features."""
    x, ei, y, tr = _citeseer()
    n, c = x.shape
    classes = int(y.max()) + 1
    if contender == "wonderland":
        import wonderland as wl
        model = wl.models.GAT(c, hidden, classes, heads=heads, dropout=0.6)
        opt = wl.optim.Adam(model.parameters(), lr=lr, weight_decay=5e-4)
        X, Y, TR = wl.tensor(x), wl.tensor(y[tr]), wl.tensor(tr)
        ce = wl.nn.functional.cross_entropy

        def step():
            opt.zero_grad()
            ce(wl.gather_rows(model(X, ei), TR), Y).backward()
            opt.step()
        return step
    import torch
    F = torch.nn.functional
    Y, TR = torch.tensor(y[tr]), torch.tensor(tr)
    X = torch.tensor(x)
    if contender == "pyg":
        from torch_geometric.nn import GATConv
        EI = torch.tensor(ei)

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = GATConv(c, hidden, heads=heads, dropout=0.6)
                self.conv2 = GATConv(hidden * heads, classes, heads=1, concat=False, dropout=0.6)

            def forward(self, x, ei):
                x = F.elu(self.conv1(F.dropout(x, 0.6, self.training), ei))
                return self.conv2(F.dropout(x, 0.6, self.training), ei)
        model = Net()
    else:
        loops = np.arange(n)
        keep = ei[0] != ei[1]
        src = torch.tensor(np.concatenate([ei[0, keep], loops]))
        dst = torch.tensor(np.concatenate([ei[1, keep], loops]))

        class Layer(torch.nn.Module):
            """GAT by hand: index_select, scatter max/sum for the softmax, index_add."""
            def __init__(self, cin, cout, h, concat):
                super().__init__()
                self.lin = torch.nn.Linear(cin, h * cout, bias=False)
                self.a_src = torch.nn.Parameter(torch.empty(h, cout))
                self.a_dst = torch.nn.Parameter(torch.empty(h, cout))
                torch.nn.init.xavier_uniform_(self.a_src)
                torch.nn.init.xavier_uniform_(self.a_dst)
                self.h, self.cout, self.concat = h, cout, concat
                self.bias = torch.nn.Parameter(torch.zeros(h * cout if concat else cout))

            def forward(self, x):
                h = self.lin(x).view(-1, self.h, self.cout)
                s = F.leaky_relu((h * self.a_src).sum(-1)[src] + (h * self.a_dst).sum(-1)[dst], 0.2)
                m = torch.full((n, self.h), -1e30).scatter_reduce(
                    0, dst.view(-1, 1).expand(-1, self.h), s, "amax", include_self=True)
                e = (s - m[dst]).exp()
                den = torch.zeros(n, self.h).index_add_(0, dst, e)
                alpha = F.dropout(e / den[dst], 0.6, self.training)
                out = torch.zeros(n, self.h, self.cout).index_add_(0, dst, h[src] * alpha.unsqueeze(-1))
                out = out.reshape(n, -1) if self.concat else out.mean(1)
                return out + self.bias

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = Layer(c, hidden, heads, True)
                self.conv2 = Layer(hidden * heads, classes, 1, False)

            def forward(self, x, _ei):
                x = F.elu(self.conv1(F.dropout(x, 0.6, self.training)))
                return self.conv2(F.dropout(x, 0.6, self.training))
        model = Net()
        EI = None
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=5e-4)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(X, EI)[TR], Y).backward()
        opt.step()
    return step


def _mutag():
    import wonderland as wl
    return wl.graph.load_mutag()


@workload("gin_mutag_epoch", ("wonderland", "pyg", "torch"))
def gin_mutag_epoch(contender, hidden=32, layers=4, batch=32, lr=0.01):
    """One epoch of a GIN (4 layers of 2-layer MLPs with batch norm, 32 hidden, sum
    readout of every layer) on MUTAG's 188 graphs in shuffled mini-batches of 32: each
    library's own batching of the graphs included."""
    graphs = _mutag()
    feats = graphs[0].x.shape[1]
    if contender == "wonderland":
        import wonderland as wl
        model = wl.models.GIN(feats, hidden, 2, num_layers=layers)
        opt = wl.optim.Adam(model.parameters(), lr=lr)
        loader = wl.graph.GraphLoader(graphs, batch, shuffle=True, generator=0)
        ce = wl.nn.functional.cross_entropy

        def step():
            for b in loader:
                opt.zero_grad()
                ce(model(b.x, b.edge_index, b.batch, b.num_graphs), b.y).backward()
                opt.step()
        return step
    import torch
    F = torch.nn.functional
    data = [(torch.tensor(g.x.numpy()), torch.tensor(g.edge_index), int(g.y.numpy())) for g in graphs]

    def mlp(a):
        return torch.nn.Sequential(torch.nn.Linear(a, hidden), torch.nn.BatchNorm1d(hidden),
                                   torch.nn.ReLU(), torch.nn.Linear(hidden, hidden))
    if contender == "pyg":
        from torch_geometric.data import Data
        from torch_geometric.loader import DataLoader
        from torch_geometric.nn import GINConv, global_add_pool
        ds = [Data(x=x, edge_index=e, y=torch.tensor([yy])) for x, e, yy in data]
        loader = DataLoader(ds, batch_size=batch, shuffle=True)
        conv = lambda a: GINConv(mlp(a))                      # noqa: E731

        def batches():
            for b in loader:
                yield b.x, b.edge_index, b.batch, b.num_graphs, b.y
        aggregate = None
    else:
        gen = torch.Generator().manual_seed(0)

        def batches():
            perm = torch.randperm(len(data), generator=gen)
            for i in range(0, len(data), batch):
                part = [data[j] for j in perm[i:i + batch]]
                sizes = torch.tensor([p[0].shape[0] for p in part])
                offs = torch.cumsum(sizes, 0) - sizes
                x = torch.cat([p[0] for p in part])
                ei = torch.cat([p[1] + o for p, o in zip(part, offs)], 1)
                bvec = torch.repeat_interleave(torch.arange(len(part)), sizes)
                yield x, ei, bvec, len(part), torch.tensor([p[2] for p in part])

        class Conv(torch.nn.Module):
            def __init__(self, a):
                super().__init__()
                self.nn = mlp(a)

            def forward(self, x, ei):
                adj = torch.sparse_coo_tensor(ei.flip(0), torch.ones(ei.shape[1]), (x.shape[0],) * 2)
                return self.nn(x + torch.sparse.mm(adj, x))
        conv = Conv

        def global_add_pool(x, b, size):
            return torch.zeros(size, x.shape[1]).index_add_(0, b, x)
        aggregate = global_add_pool

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = torch.nn.ModuleList([conv(feats if k == 0 else hidden) for k in range(layers)])
            self.norms = torch.nn.ModuleList([torch.nn.BatchNorm1d(hidden) for _ in range(layers)])
            self.heads = torch.nn.ModuleList([torch.nn.Linear(feats, 2)] +
                                             [torch.nn.Linear(hidden, 2) for _ in range(layers)])

        def forward(self, x, ei, b, size):
            pool = aggregate or (lambda v, bb, s: global_add_pool(v, bb, s))
            out = F.dropout(self.heads[0](pool(x, b, size)), 0.5, self.training)
            for k in range(layers):
                x = F.relu(self.norms[k](self.convs[k](x, ei)))
                out = out + F.dropout(self.heads[k + 1](pool(x, b, size)), 0.5, self.training)
            return out
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step():
        for x, ei, b, size, yy in batches():
            opt.zero_grad()
            F.cross_entropy(model(x, ei, b, size), yy).backward()
            opt.step()
    return step
