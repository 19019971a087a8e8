"""Linear-recurrent sequence layers: linearised attention in recurrent form, diagonal
state-space models (``S4D``, ``LRU``), the selective SSM ``Mamba``, RWKV's time and
channel mixing, and the attention-free transformer (``AFTFull``, ``AFTSimple``).

Every layer maps ``(b, t, d_model)`` to ``(b, t, d_model)``, causally, and has a
step-by-step inference form: ``state = layer.initial_state(batch)``, then
``y_t, state = layer.step(x_t, state)`` for ``x_t`` of shape ``(b, d_model)``, with a state
of constant size (AFT-full's is the exception: its pairwise position biases need every
past key and value). ``step`` checks that the state is the one ``initial_state`` makes
for the input's batch. The tests check that the steps give the full sequence's outputs and
that each layer's computation modes agree (convolution = scan = recurrence).
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..core import dtypes
from ..ops.arguments import to_tensor
from ..ops.decompositions import tril
from ..ops.scan_ops import causal_convolution, complex_linear_recurrence
from ..ops.selective import selective_scan
from ..ops.wkv import wkv
from ..random import get_generator
from . import functional as F
from . import init
from .layers import Linear
from .module import Module, Parameter
from .normalization import LayerNorm


def _dtype(dtype):
    return dtypes.as_dtype(dtype) or dtypes.get_default_dtype()


def _rng(generator):
    return get_generator(generator)


def _param(values, dtype):
    return Parameter(np.asarray(values, dtype=dtype))


def _check_seq(x, d, what):
    x = to_tensor(x, what)
    if x.ndim != 3 or x.shape[-1] != d:
        raise ValueError(f"{what}: input must be (b, t, {d}), got {x.shape}")
    return x


def _check_step(x, d, what):
    x = to_tensor(x, what)
    if x.ndim != 2 or x.shape[-1] != d:
        raise ValueError(f"{what}: a step takes (b, {d}), got {x.shape}")
    return x


def _check_state(state, shapes, x, what):
    """``state`` must be what ``initial_state(b)`` gives for the input's batch ``b``:
    tensors of ``shapes`` (a single tensor when there is one shape)."""
    parts = tuple(state) if isinstance(state, (tuple, list)) else (state,)
    if len(parts) != len(shapes):
        raise ValueError(f"{what}: the state must be {len(shapes)} tensors (as "
                         f"initial_state(batch) gives), got {len(parts)}")
    got = [getattr(p, "shape", None) for p in parts]
    for i, shape in enumerate(got):
        if shape is None:
            raise TypeError(f"{what}: state tensor {i} must be a tensor, got "
                            f"{type(parts[i]).__name__}")
    _check_batch([g[0] for g in got if len(g)], x, what)
    for i, (g, shape) in enumerate(zip(got, shapes)):
        if tuple(g) != tuple(shape):
            raise ValueError(f"{what}: state tensor {i} must be {tuple(shape)}, got {tuple(g)}")
    return parts if isinstance(state, (tuple, list)) else state


def _check_batch(sizes, x, what):
    for n in sizes:
        if n != x.shape[0]:
            raise ValueError(f"{what}: the state is for batch {n} but the input has batch "
                             f"{x.shape[0]}; make one with initial_state({x.shape[0]})")


# ----------------------------------------------------------------------------- linear attention
def elu_feature_map(x):
    """φ(x) = elu(x) + 1 > 0 (Katharopoulos et al. 2020)."""
    return F.elu(x) + 1.0


def linear_attention_recurrent(q, k, v, feature_map=elu_feature_map, eps=1e-6):
    """Causal linearised attention in recurrent form, for ``(b, t, h, d)`` queries, keys
    and values: ``S_t = S_{t-1} + φ(k_t) v_tᵀ``, ``z_t = z_{t-1} + φ(k_t)``,
    ``y_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + eps)``. The states of every step come from one
    cumulative sum (a scan with ``a = 1``). Returns ``(b, t, h, d_v)``."""
    fq, fk = feature_map(q), feature_map(k)
    S = ops.cumsum(ops.einsum("bthk,bthv->bthkv", fk, v), axis=1)
    z = ops.cumsum(fk, axis=1)
    num = ops.einsum("bthk,bthkv->bthv", fq, S)
    den = (fq * z).sum(axis=-1, keepdims=True) + eps
    return num / den


class LinearAttention(Module):
    """Multi-head causal linear attention (elu + 1 feature map) in recurrent form, with
    ``step`` carrying ``(S, z)``: ``(b, h, d_k, d_v)`` and ``(b, h, d_k)``."""

    def __init__(self, d_model, num_heads=1, eps=1e-6, dtype=None, generator=None):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"LinearAttention: d_model {d_model} is not divisible by "
                             f"num_heads {num_heads}")
        self.d_model, self.num_heads, self.eps = d_model, num_heads, eps
        self.head_dim = d_model // num_heads
        self.qkv = Linear(d_model, 3 * d_model, dtype=dtype, generator=generator)
        self.out = Linear(d_model, d_model, dtype=dtype, generator=generator)

    def _split(self, x):
        q, k, v = ops.split(self.qkv(x), 3, axis=-1)
        shape = x.shape[:-1] + (self.num_heads, self.head_dim)
        return q.reshape(shape), k.reshape(shape), v.reshape(shape)

    def forward(self, x):
        x = _check_seq(x, self.d_model, "LinearAttention")
        q, k, v = self._split(x)
        y = linear_attention_recurrent(q, k, v, eps=self.eps)
        return self.out(y.reshape(x.shape))

    def initial_state(self, batch, dtype=None):
        d = _dtype(dtype or self.out.weight.dtype)
        h, k = self.num_heads, self.head_dim
        return (ops.zeros((batch, h, k, k), dtype=d), ops.zeros((batch, h, k), dtype=d))

    def step(self, x, state):
        x = _check_step(x, self.d_model, "LinearAttention.step")
        b, h, k = x.shape[0], self.num_heads, self.head_dim
        S, z = _check_state(state, [(b, h, k, k), (b, h, k)], x, "LinearAttention.step")
        q, k, v = self._split(x)
        fq, fk = elu_feature_map(q), elu_feature_map(k)
        S = S + ops.einsum("bhk,bhv->bhkv", fk, v)
        z = z + fk
        y = ops.einsum("bhk,bhkv->bhv", fq, S) / ((fq * z).sum(-1, keepdims=True) + self.eps)
        return self.out(y.reshape(x.shape)), (S, z)


# ----------------------------------------------------------------------------- S4D
def hippo_legs_diagonal(n):
    """Eigenvalues of the normal part of HiPPO-LegS (``A + P Pᵀ = −½ I + skew``): the
    ``n/2`` with positive imaginary part, as ``(real, imaginary)`` arrays (S4D-LegS)."""
    q = np.arange(n, dtype=np.float64)
    r = np.sqrt(2 * q + 1)
    A = -np.tril(r[:, None] * r[None, :], -1) - np.diag(q + 1)
    p = np.sqrt(q + 0.5)
    S = A + p[:, None] * p[None, :]
    eig = np.linalg.eigvals(S)
    eig = eig[eig.imag > 0]
    eig = eig[np.argsort(eig.imag)][: n // 2]
    return eig.real, eig.imag


class S4D(Module):
    """Diagonal state-space layer (Gu et al. 2022), ``d_model`` independent channels each
    with ``d_state/2`` complex states (conjugate pairs, so the output is real)::

        h_t = Ā h_{t-1} + B̄ x_t,   y_t = 2 Re(C h_t) + D x_t,
        Ā = exp(Δ A),  B̄ = (Ā − 1) A⁻¹ B   (zero-order hold, B = 1, learnable log Δ)

    ``init``: ``"legs"`` (eigenvalues of HiPPO-LegS's normal part), ``"lin"`` (S4D-Lin:
    ``A = −½ + iπn``) or ``"real"`` (S4D-Real: ``A = −(n+1)``). ``mode`` picks the
    computation: ``"conv"`` (the kernel ``K_l = 2 Re(C Ā^l B̄)`` by FFT convolution),
    ``"scan"`` (the complex linear recurrence) or ``"recurrent"`` (one step at a time);
    all three give the same outputs.
    """

    def __init__(self, d_model, d_state=64, init="legs", dt_min=1e-3, dt_max=1e-1, mode="conv",
                 dtype=None, generator=None):
        super().__init__()
        if d_state % 2 and init != "real":
            raise ValueError(f"S4D: d_state must be even (conjugate pairs), got {d_state}")
        if init not in ("legs", "lin", "real"):
            raise ValueError(f"S4D: init must be 'legs', 'lin' or 'real', got {init!r}")
        self._check_mode(mode)
        d = _dtype(dtype)
        g = _rng(generator)
        self.d_model, self.d_state, self.init, self.mode = d_model, d_state, init, mode
        n = d_state if init == "real" else d_state // 2
        self.n = n
        if init == "legs":
            re, im = hippo_legs_diagonal(d_state)
        elif init == "lin":
            re, im = -0.5 * np.ones(n), np.pi * np.arange(n)
        else:
            re, im = -(np.arange(n) + 1.0), np.zeros(n)
        self.log_A_real = _param(np.log(-np.tile(re, (d_model, 1))), d)
        if init == "real":
            self.register_buffer("A_imag", ops.zeros((d_model, n), dtype=d))
        else:
            self.A_imag = _param(np.tile(im, (d_model, 1)), d)
        self.C = _param(g.normal((d_model, n, 2)).numpy() * math.sqrt(0.5), d)
        self.D = _param(g.normal((d_model,)).numpy(), d)
        u = g.uniform((d_model,)).numpy()
        self.log_dt = _param(np.log(dt_min) + u * (np.log(dt_max) - np.log(dt_min)), d)
        # conjugate pairs count twice in y = 2 Re(...); real eigenvalues once
        self._scale = 1.0 if init == "real" else 2.0

    @staticmethod
    def _check_mode(mode):
        if mode not in ("conv", "scan", "recurrent"):
            raise ValueError(f"S4D: mode must be 'conv', 'scan' or 'recurrent', got {mode!r}")

    def discretize(self):
        """``(Ā_re, Ā_im, CB̄_re, CB̄_im)``, each ``(d_model, n)``: the discrete system."""
        dt = ops.exp(self.log_dt).reshape(-1, 1)
        a_re, a_im = -ops.exp(self.log_A_real), self.A_imag
        mag = ops.exp(a_re * dt)
        ab_re, ab_im = mag * ops.cos(a_im * dt), mag * ops.sin(a_im * dt)
        # B̄ = (Ā − 1) / A  (complex division), B = 1
        den = a_re * a_re + a_im * a_im
        nr, ni = ab_re - 1.0, ab_im
        bb_re = (nr * a_re + ni * a_im) / den
        bb_im = (ni * a_re - nr * a_im) / den
        c_re, c_im = self.C[..., 0], self.C[..., 1]
        cb_re = c_re * bb_re - c_im * bb_im
        cb_im = c_re * bb_im + c_im * bb_re
        return ab_re, ab_im, cb_re, cb_im

    def kernel(self, length):
        """The convolution kernel ``K_l = 2 Re(C Ā^l B̄)``, ``(length, d_model)``, with
        ``Ā^l = exp(l Δ A)`` taken in closed form."""
        _, _, cb_re, cb_im = self.discretize()
        dt = ops.exp(self.log_dt).reshape(-1, 1)
        log_mag, phase = -ops.exp(self.log_A_real) * dt, self.A_imag * dt   # (d, n)
        steps = ops.arange(length, dtype=cb_re.dtype).reshape(-1, 1, 1)
        mag = ops.exp(steps * log_mag)                                     # (L, d, n)
        p_re, p_im = mag * ops.cos(steps * phase), mag * ops.sin(steps * phase)
        return self._scale * (p_re * cb_re - p_im * cb_im).sum(axis=-1)

    def forward(self, x, mode=None, method="sequential"):
        """``mode`` overrides the layer's; ``method`` is the linear recurrence's in
        ``"scan"`` mode."""
        mode = mode or self.mode
        self._check_mode(mode)
        x = _check_seq(x, self.d_model, "S4D")
        if mode == "conv":
            y = causal_convolution(x, self.kernel(x.shape[1]))
        elif mode == "scan":
            ab_re, ab_im, cb_re, cb_im = self.discretize()
            u = ops.expand_dims(x, -1)                                  # (b, t, d, 1)
            h_re, h_im = complex_linear_recurrence((ab_re, ab_im), (u * 1.0, u * 0.0), axis=1,
                                                   method=method)
            y = self._scale * (h_re * cb_re - h_im * cb_im).sum(axis=-1)
        else:
            state = self.initial_state(x.shape[0], x.dtype)
            ys = []
            for t in range(x.shape[1]):
                y_t, state = self.step(x[:, t], state, skip=False)
                ys.append(y_t)
            y = ops.stack(ys, axis=1)
        return y + x * self.D

    def initial_state(self, batch, dtype=None):
        d = _dtype(dtype or self.D.dtype)
        return (ops.zeros((batch, self.d_model, self.n), dtype=d),
                ops.zeros((batch, self.d_model, self.n), dtype=d))

    def step(self, x, state, skip=True):
        x = _check_step(x, self.d_model, "S4D.step")
        shape = (x.shape[0], self.d_model, self.n)
        h_re, h_im = _check_state(state, [shape, shape], x, "S4D.step")
        ab_re, ab_im, cb_re, cb_im = self.discretize()
        u = ops.expand_dims(x, -1)
        h_re, h_im = ab_re * h_re - ab_im * h_im + u, ab_re * h_im + ab_im * h_re
        y = self._scale * (h_re * cb_re - h_im * cb_im).sum(axis=-1)
        return (y + x * self.D if skip else y), (h_re, h_im)


# ----------------------------------------------------------------------------- LRU
class LRU(Module):
    """Linear recurrent unit (Orvieto et al. 2023)::

        h_t = λ ⊙ h_{t-1} + γ ⊙ (x_t B),   y_t = Re(h_t C) + D ⊙ x_t
        λ = exp(−exp(ν) + i exp(θ)),   γ = sqrt(1 − |λ|²)

    with ``|λ|`` drawn uniformly on the ring ``[r_min, r_max]`` and phases in
    ``[0, max_phase]``. ``method`` is the linear recurrence's (``"sequential"`` or
    ``"parallel"``: the same outputs); ``step`` runs one token.
    """

    def __init__(self, d_model, d_hidden, r_min=0.0, r_max=1.0, max_phase=2 * math.pi,
                 method="sequential", dtype=None, generator=None):
        super().__init__()
        d = _dtype(dtype)
        g = _rng(generator)
        self.d_model, self.d_hidden, self.method = d_model, d_hidden, method
        u1 = g.uniform((d_hidden,)).numpy()
        u2 = g.uniform((d_hidden,)).numpy()
        nu_log = np.log(-0.5 * np.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))
        theta_log = np.log(max_phase * u2)
        self.nu_log = _param(nu_log, d)
        self.theta_log = _param(theta_log, d)
        lam_mag = np.exp(-np.exp(nu_log))
        self.gamma_log = _param(np.log(np.sqrt(1 - lam_mag ** 2)), d)
        self.B_re = _param(g.normal((d_model, d_hidden)).numpy() / math.sqrt(2 * d_model), d)
        self.B_im = _param(g.normal((d_model, d_hidden)).numpy() / math.sqrt(2 * d_model), d)
        self.C_re = _param(g.normal((d_hidden, d_model)).numpy() / math.sqrt(d_hidden), d)
        self.C_im = _param(g.normal((d_hidden, d_model)).numpy() / math.sqrt(d_hidden), d)
        self.D = _param(g.normal((d_model,)).numpy(), d)

    def _lambda(self):
        mag = ops.exp(-ops.exp(self.nu_log))
        phase = ops.exp(self.theta_log)
        return mag * ops.cos(phase), mag * ops.sin(phase)

    def _inputs(self, x):
        gamma = ops.exp(self.gamma_log)
        return (x @ self.B_re) * gamma, (x @ self.B_im) * gamma

    def _readout(self, x, h_re, h_im):
        return h_re @ self.C_re - h_im @ self.C_im + x * self.D

    def forward(self, x, method=None):
        x = _check_seq(x, self.d_model, "LRU")
        lr, li = self._lambda()
        br, bi = self._inputs(x)
        h_re, h_im = complex_linear_recurrence((lr, li), (br, bi), axis=1,
                                               method=method or self.method)
        return self._readout(x, h_re, h_im)

    def initial_state(self, batch, dtype=None):
        d = _dtype(dtype or self.D.dtype)
        return (ops.zeros((batch, self.d_hidden), dtype=d),
                ops.zeros((batch, self.d_hidden), dtype=d))

    def step(self, x, state):
        x = _check_step(x, self.d_model, "LRU.step")
        shape = (x.shape[0], self.d_hidden)
        h_re, h_im = _check_state(state, [shape, shape], x, "LRU.step")
        lr, li = self._lambda()
        br, bi = self._inputs(x)
        h_re, h_im = lr * h_re - li * h_im + br, lr * h_im + li * h_re + bi
        return self._readout(x, h_re, h_im), (h_re, h_im)


# ----------------------------------------------------------------------------- Mamba
def _inverse_softplus(y):
    return y + np.log(-np.expm1(-y))


class Mamba(Module):
    """The Mamba block (Gu & Dao 2023): input projection to ``2·d_inner``
    (``d_inner = expand·d_model``), a causal depthwise convolution of width ``d_conv`` and
    SiLU on one half, the selective SSM with input-dependent ``Δ, B, C``, a SiLU gate from
    the other half, and the output projection.

    Reference initialisation: ``A = −[1, …, d_state]`` per channel (stored as ``A_log``,
    S4D-Real), ``D = 1``, the ``Δ`` projection's weight uniform in ±dt_rank^−½ and its
    bias the inverse softplus of ``Δ`` drawn log-uniformly in ``[dt_min, dt_max]``
    (floored at ``dt_init_floor``). ``dt_rank="auto"`` is ``ceil(d_model / 16)``.

    ``forward(x, reference=False)``: ``reference=True`` runs the scan through the linear
    recurrence instead of the fused kernel. ``step`` carries the convolution's last
    ``d_conv − 1`` inputs and the SSM state ``(b, d_inner, d_state)``.
    """

    def __init__(self, d_model, d_state=16, d_conv=4, expand=2, dt_rank="auto", dt_min=1e-3,
                 dt_max=1e-1, dt_init_floor=1e-4, bias=False, conv_bias=True, dtype=None,
                 generator=None):
        super().__init__()
        d = _dtype(dtype)
        g = _rng(generator)
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        di, n, r = self.d_inner, d_state, self.dt_rank
        self.in_proj = Linear(d_model, 2 * di, bias=bias, dtype=dtype, generator=generator)
        bound = 1.0 / math.sqrt(d_conv)               # PyTorch's Conv1d init, fan_in = d_conv
        self.conv_weight = Parameter(np.zeros((d_conv, di), d))
        init.uniform_(self.conv_weight, -bound, bound, generator)
        if conv_bias:
            self.conv_bias = Parameter(np.zeros(di, d))
            init.uniform_(self.conv_bias, -bound, bound, generator)
        else:
            self.register_parameter("conv_bias", None)
        self.x_proj = Linear(di, r + 2 * n, bias=False, dtype=dtype, generator=generator)
        self.dt_proj = Linear(r, di, bias=True, dtype=dtype, generator=generator)
        init.uniform_(self.dt_proj.weight, -r ** -0.5, r ** -0.5, generator)
        u = g.uniform((di,)).numpy()
        dt = np.exp(u * (np.log(dt_max) - np.log(dt_min)) + np.log(dt_min))
        dt = np.maximum(dt, dt_init_floor)
        self.dt_proj.bias.data[...] = _inverse_softplus(dt)
        self.A_log = _param(np.log(np.tile(np.arange(1, n + 1, dtype=np.float64), (di, 1))), d)
        self.D = _param(np.ones(di), d)
        self.out_proj = Linear(di, d_model, bias=bias, dtype=dtype, generator=generator)

    def _conv(self, x):
        k = self.d_conv
        xp = ops.pad(x, [(0, 0), (k - 1, 0), (0, 0)])
        t = x.shape[1]
        y = xp[:, 0:t] * self.conv_weight[0]
        for j in range(1, k):
            y = y + xp[:, j:j + t] * self.conv_weight[j]
        return y + self.conv_bias if self.conv_bias is not None else y

    def _ssm_inputs(self, x):
        dbc = self.x_proj(x)
        dt, Bm, C = ops.split(dbc, [self.dt_rank, self.dt_rank + self.d_state], axis=-1)
        delta = F.softplus(self.dt_proj(dt))
        return delta, Bm, C

    def forward(self, x, reference=False):
        x = _check_seq(x, self.d_model, "Mamba")
        xz = self.in_proj(x)
        xi, z = ops.split(xz, 2, axis=-1)
        xi = F.silu(self._conv(xi))
        delta, Bm, C = self._ssm_inputs(xi)
        A = -ops.exp(self.A_log)
        y, _ = selective_scan(xi, delta, A, Bm, C, reference=reference)
        y = (y + xi * self.D) * F.silu(z)
        return self.out_proj(y)

    def initial_state(self, batch, dtype=None):
        d = _dtype(dtype or self.D.dtype)
        return (ops.zeros((batch, self.d_conv - 1, self.d_inner), dtype=d),
                ops.zeros((batch, self.d_inner, self.d_state), dtype=d))

    def step(self, x, state):
        x = _check_step(x, self.d_model, "Mamba.step")
        b = x.shape[0]
        conv_state, h = _check_state(state, [(b, self.d_conv - 1, self.d_inner),
                                             (b, self.d_inner, self.d_state)], x, "Mamba.step")
        xi, z = ops.split(self.in_proj(x), 2, axis=-1)
        window = ops.concatenate([conv_state, ops.expand_dims(xi, 1)], axis=1)   # (b, k, d)
        xc = (window * self.conv_weight).sum(axis=1)
        if self.conv_bias is not None:
            xc = xc + self.conv_bias
        xc = F.silu(xc)
        delta, Bm, C = self._ssm_inputs(xc)
        A = -ops.exp(self.A_log)
        dA = ops.exp(ops.expand_dims(delta, -1) * A)
        h = dA * h + ops.expand_dims(delta * xc, -1) * ops.expand_dims(Bm, 1)
        y = (h * ops.expand_dims(C, 1)).sum(axis=-1) + xc * self.D
        y = y * F.silu(z)
        return self.out_proj(y), (window[:, 1:], h)


# ----------------------------------------------------------------------------- RWKV
def _token_shift(x):
    """``x_{t-1}`` (zeros before the first step)."""
    return ops.pad(x, [(0, 0), (1, 0), (0, 0)])[:, :-1]


class RWKVTimeMixing(Module):
    """RWKV-4 time mixing: token-shifted ``k, v, r`` projections and the WKV operator,
    ``out = W_o (σ(r) ⊙ wkv(exp(time_decay), time_first, k, v))``. Initialised as the
    reference for layer ``layer_id`` of ``n_layers``. ``step`` carries the previous input
    and the WKV state ``(numerator, denominator, running max)``."""

    def __init__(self, d_model, layer_id=0, n_layers=1, dtype=None, generator=None):
        super().__init__()
        d = _dtype(dtype)
        self.d_model = d_model
        r01 = layer_id / max(n_layers - 1, 1)
        r10 = 1.0 - layer_id / n_layers
        h = np.arange(d_model)
        decay = -5 + 8 * (h / max(d_model - 1, 1)) ** (0.7 + 1.3 * r01)
        zigzag = ((h + 1) % 3 - 1) * 0.5
        ratio = h / d_model
        self.time_decay = _param(decay, d)
        self.time_first = _param(np.log(0.3) + zigzag, d)
        self.time_mix_k = _param(ratio ** r10, d)
        self.time_mix_v = _param(ratio ** r10 + 0.3 * r01, d)
        self.time_mix_r = _param(ratio ** (0.5 * r10), d)
        self.key = Linear(d_model, d_model, bias=False, dtype=dtype, generator=generator)
        self.value = Linear(d_model, d_model, bias=False, dtype=dtype, generator=generator)
        self.receptance = Linear(d_model, d_model, bias=False, dtype=dtype, generator=generator)
        self.output = Linear(d_model, d_model, bias=False, dtype=dtype, generator=generator)

    def _mix(self, x, prev):
        mk, mv, mr = self.time_mix_k, self.time_mix_v, self.time_mix_r
        k = self.key(x * mk + prev * (1.0 - mk))
        v = self.value(x * mv + prev * (1.0 - mv))
        r = self.receptance(x * mr + prev * (1.0 - mr))
        return k, v, r

    def forward(self, x, reference=False):
        x = _check_seq(x, self.d_model, "RWKVTimeMixing")
        k, v, r = self._mix(x, _token_shift(x))
        y = wkv(ops.exp(self.time_decay), self.time_first, k, v, reference=reference)
        return self.output(ops.sigmoid(r) * y)

    def initial_state(self, batch, dtype=None):
        d = _dtype(dtype or self.time_decay.dtype)
        z = ops.zeros((batch, self.d_model), dtype=d)
        return (z, z, z, ops.full((batch, self.d_model), -1e30, dtype=d))

    def step(self, x, state):
        x = _check_step(x, self.d_model, "RWKVTimeMixing.step")
        prev, aa, bb, pp = _check_state(state, [(x.shape[0], self.d_model)] * 4, x,
                                        "RWKVTimeMixing.step")
        k, v, r = self._mix(x, prev)
        ww = self.time_first + k
        p = ops.maximum(pp, ww)
        e1, e2 = ops.exp(pp - p), ops.exp(ww - p)
        y = (e1 * aa + e2 * v) / (e1 * bb + e2)
        ww = pp - ops.exp(self.time_decay)
        p = ops.maximum(ww, k)
        e1, e2 = ops.exp(ww - p), ops.exp(k - p)
        state = (x, e1 * aa + e2 * v, e1 * bb + e2, p)
        return self.output(ops.sigmoid(r) * y), state


class RWKVChannelMixing(Module):
    """RWKV-4 channel mixing: ``σ(W_r x_r) ⊙ W_v relu(W_k x_k)²`` with token shift."""

    def __init__(self, d_model, hidden=None, layer_id=0, n_layers=1, dtype=None,
                 generator=None):
        super().__init__()
        d = _dtype(dtype)
        hidden = hidden or 4 * d_model
        self.d_model = d_model
        r10 = 1.0 - layer_id / n_layers
        ratio = np.arange(d_model) / d_model
        self.time_mix_k = _param(ratio ** r10, d)
        self.time_mix_r = _param(ratio ** r10, d)
        self.key = Linear(d_model, hidden, bias=False, dtype=dtype, generator=generator)
        self.value = Linear(hidden, d_model, bias=False, dtype=dtype, generator=generator)
        self.receptance = Linear(d_model, d_model, bias=False, dtype=dtype, generator=generator)

    def _mix(self, x, prev):
        mk, mr = self.time_mix_k, self.time_mix_r
        k = ops.square(ops.relu(self.key(x * mk + prev * (1.0 - mk))))
        return ops.sigmoid(self.receptance(x * mr + prev * (1.0 - mr))) * self.value(k)

    def forward(self, x):
        x = _check_seq(x, self.d_model, "RWKVChannelMixing")
        return self._mix(x, _token_shift(x))

    def initial_state(self, batch, dtype=None):
        return ops.zeros((batch, self.d_model), dtype=_dtype(dtype or self.time_mix_k.dtype))

    def step(self, x, state):
        x = _check_step(x, self.d_model, "RWKVChannelMixing.step")
        state = _check_state(state, [(x.shape[0], self.d_model)], x, "RWKVChannelMixing.step")
        return self._mix(x, state), x


class RWKVBlock(Module):
    """``x + TimeMix(LN(x))``, then ``x + ChannelMix(LN(x))``."""

    def __init__(self, d_model, layer_id=0, n_layers=1, hidden=None, dtype=None,
                 generator=None):
        super().__init__()
        self.d_model = d_model
        self.ln1 = LayerNorm(d_model, dtype=dtype)
        self.ln2 = LayerNorm(d_model, dtype=dtype)
        self.att = RWKVTimeMixing(d_model, layer_id, n_layers, dtype, generator)
        self.ffn = RWKVChannelMixing(d_model, hidden, layer_id, n_layers, dtype, generator)

    def forward(self, x):
        x = x + self.att(self.ln1(x))
        return x + self.ffn(self.ln2(x))

    def initial_state(self, batch, dtype=None):
        return (self.att.initial_state(batch, dtype), self.ffn.initial_state(batch, dtype))

    def step(self, x, state):
        a, s_att = self.att.step(self.ln1(x), state[0])
        x = x + a
        f, s_ffn = self.ffn.step(self.ln2(x), state[1])
        return x + f, (s_att, s_ffn)


# ----------------------------------------------------------------------------- AFT
class AFTSimple(Module):
    """Attention-free transformer, simple causal form (Zhai et al. 2021)::

        y_t = σ(q_t) ⊙ Σ_{i≤t} softmax_i(k_i) v_i

    (a softmax over the past along time, channel by channel) — RWKV's WKV with no decay
    and no bonus, so it runs through the same stable recurrence; ``step`` keeps
    ``(numerator, denominator, running max)``."""

    def __init__(self, d_model, dtype=None, generator=None):
        super().__init__()
        self.d_model = d_model
        self.qkv = Linear(d_model, 3 * d_model, dtype=dtype, generator=generator)
        self.out = Linear(d_model, d_model, dtype=dtype, generator=generator)

    def forward(self, x, reference=False):
        x = _check_seq(x, self.d_model, "AFTSimple")
        q, k, v = ops.split(self.qkv(x), 3, axis=-1)
        zero = ops.zeros(self.d_model, dtype=x.dtype)
        return self.out(ops.sigmoid(q) * wkv(zero, zero, k, v, reference=reference))

    def initial_state(self, batch, dtype=None):
        d = _dtype(dtype or self.out.weight.dtype)
        z = ops.zeros((batch, self.d_model), dtype=d)
        return (z, z, ops.full((batch, self.d_model), -1e30, dtype=d))

    def step(self, x, state):
        x = _check_step(x, self.d_model, "AFTSimple.step")
        aa, bb, pp = _check_state(state, [(x.shape[0], self.d_model)] * 3, x, "AFTSimple.step")
        q, k, v = ops.split(self.qkv(x), 3, axis=-1)
        p = ops.maximum(pp, k)
        e1, e2 = ops.exp(pp - p), ops.exp(k - p)
        aa, bb = e1 * aa + e2 * v, e1 * bb + e2
        return self.out(ops.sigmoid(q) * aa / bb), (aa, bb, p)


class AFTFull(Module):
    """Attention-free transformer with learned pairwise position biases ``w`` (causal)::

        y_t = σ(q_t) ⊙ Σ_{i≤t} exp(k_i + w_{t,i}) v_i / Σ_{i≤t} exp(k_i + w_{t,i})

    computed with the maxima of ``k`` (per channel) and of each row of ``w`` taken out,
    so the exponentials stay bounded. ``w`` is ``(max_len, max_len)``, zeros at first
    (AFT-simple). ``step`` keeps every past key and value (the biases ``w_{t,i}`` pair the
    current position with each earlier one, so the state grows with ``t``, up to
    ``max_len`` steps)."""

    def __init__(self, d_model, max_len, dtype=None, generator=None):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.qkv = Linear(d_model, 3 * d_model, dtype=dtype, generator=generator)
        self.out = Linear(d_model, d_model, dtype=dtype, generator=generator)
        self.pos_bias = Parameter(np.zeros((max_len, max_len), _dtype(dtype)))

    def forward(self, x):
        x = _check_seq(x, self.d_model, "AFTFull")
        T = x.shape[1]
        if T > self.max_len:
            raise ValueError(f"AFTFull: sequence of {T} steps is longer than max_len {self.max_len}")
        q, k, v = ops.split(self.qkv(x), 3, axis=-1)
        causal = _causal(T, x)
        w = ops.where(causal, self.pos_bias[:T, :T], -1e30)
        ew = ops.exp(w - ops.max(w, axis=1, keepdims=True).detach())        # (t, i)
        k = k - ops.max(k, axis=1, keepdims=True).detach()
        ek = ops.exp(k)
        num = ops.einsum("ti,bic->btc", ew, ek * v)
        den = ops.einsum("ti,bic->btc", ew, ek)
        return self.out(ops.sigmoid(q) * num / den)

    def initial_state(self, batch, dtype=None):
        return []

    def step(self, x, state):
        x = _check_step(x, self.d_model, "AFTFull.step")
        if not isinstance(state, list):
            raise TypeError(f"AFTFull.step: the state must be the list of past (key, value) "
                            f"pairs (initial_state(batch) is []), got {type(state).__name__}")
        t = len(state)
        if t >= self.max_len:
            raise ValueError(f"AFTFull.step: step {t + 1} is past max_len {self.max_len} (the "
                             f"position biases cover max_len steps)")
        _check_batch([kv[0].shape[0] for kv in state[:1]], x, "AFTFull.step")
        q, k, v = ops.split(self.qkv(x), 3, axis=-1)
        state = state + [(k, v)]
        ks = ops.stack([s[0] for s in state], axis=1)                       # (b, i, c)
        vs = ops.stack([s[1] for s in state], axis=1)
        logits = ks + self.pos_bias[t, :t + 1].reshape(1, -1, 1)
        p = ops.softmax(logits, axis=1)
        return self.out(ops.sigmoid(q) * (p * vs).sum(axis=1)), state


def _causal(T, like):
    return tril(ops.ones((T, T), dtype=like.dtype)) > 0.5


__all__ = ["LinearAttention", "linear_attention_recurrent", "elu_feature_map", "S4D", "LRU",
           "Mamba", "RWKVTimeMixing", "RWKVChannelMixing", "RWKVBlock", "AFTSimple", "AFTFull",
           "hippo_legs_diagonal"]
