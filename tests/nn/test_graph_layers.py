"""Graph layers against dense formulas written here and against PyTorch Geometric
with copied weights; gradients; fused against unfused paths; permutation equivariance;
readouts; the message-passing base class; the graph transformer layer."""

import numpy as np
import pytest

import wonderland as wl
from wonderland import nn
from conftest import f64

R = np.random.default_rng(21)


def random_graph(n=7, e=18, loops=True, seed=0):
    r = np.random.default_rng(seed)
    ei = np.stack([r.integers(0, n, e), r.integers(0, n, e)])
    if loops:
        ei[:, 0] = [2, 2]                         # an existing self-loop
    ei[:, 1] = ei[:, 2]                           # a repeated edge
    return ei


def dense_in_adj(ei, n, w=None):
    """A_in[i, j] = Σ weight of edges j → i (rows are targets)."""
    a = np.zeros((n, n))
    np.add.at(a, (ei[1], ei[0]), 1.0 if w is None else w)
    return a


def dense_gcn(x, ei, weight, bias, edge_weight=None, improved=False):
    """D^-1/2 (A + fill·I) D^-1/2 x W + b with PyG's remaining-self-loop rule: existing
    loops are replaced by one loop per node that keeps the old weight."""
    n = x.shape[0]
    e_w = np.ones(ei.shape[1]) if edge_weight is None else edge_weight
    loop = ei[0] == ei[1]
    a = dense_in_adj(ei[:, ~loop], n, e_w[~loop])
    diag = np.full(n, 2.0 if improved else 1.0)
    for k in np.flatnonzero(loop):
        diag[ei[0, k]] = e_w[k]
    a += np.diag(diag)
    deg = a.sum(1)
    inv = np.where(deg > 0, deg ** -0.5, 0)
    return (inv[:, None] * a * inv[None, :]) @ (x @ weight) + bias


@pytest.mark.parametrize("improved", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fuse", [True, False])
def test_gcnconv_equals_dense_formula(improved, weighted, fuse):
    n, ei = 7, random_graph()
    x = R.standard_normal((n, 4))
    w = R.uniform(0.5, 2.0, ei.shape[1]) if weighted else None
    conv = nn.GCNConv(4, 3, improved=improved).double()
    conv.fuse = fuse
    conv.bias.data[...] = R.standard_normal(3)
    out = conv(f64(x), ei, None if w is None else f64(w))
    want = dense_gcn(x, ei, conv.weight.numpy(), conv.bias.numpy(), w, improved)
    np.testing.assert_allclose(out.numpy(), want, atol=1e-12)
    assert conv.weight.shape == (4, 3) and conv.bias.shape == (3,)


def dense_gat(x, ei, weight, att_src, att_dst, bias, heads, concat=True, slope=0.2):
    n = x.shape[0]
    c = att_src.shape[1]
    h = (x @ weight).reshape(n, heads, c)
    keep = ei[0] != ei[1]
    edges = np.concatenate([ei[:, keep], np.stack([np.arange(n)] * 2)], axis=1)
    out = np.zeros((n, heads, c))
    alphas = np.zeros((edges.shape[1], heads))
    for i in range(n):
        into = np.flatnonzero(edges[1] == i)
        src = edges[0, into]
        for k in range(heads):
            s = h[src, k] @ att_src[k] + h[i, k] @ att_dst[k]
            s = np.where(s > 0, s, slope * s)
            a = np.exp(s - s.max())
            a /= a.sum()
            alphas[into, k] = a
            out[i, k] = a @ h[src, k]
    out = out.reshape(n, heads * c) if concat else out.mean(1)
    return out + bias, edges, alphas


@pytest.mark.parametrize("concat", [True, False])
def test_gatconv_equals_dense_formula(concat):
    n, ei = 7, random_graph()
    x = R.standard_normal((n, 4))
    conv = nn.GATConv(4, 3, heads=2, concat=concat).double()
    conv.bias.data[...] = R.standard_normal(conv.bias.shape)
    out, (edges, alpha) = conv(f64(x), ei, return_attention_weights=True)
    want, want_edges, want_alpha = dense_gat(x, ei, conv.weight.numpy(), conv.att_src.numpy(),
                                             conv.att_dst.numpy(), conv.bias.numpy(), 2, concat)
    np.testing.assert_array_equal(edges, want_edges)
    np.testing.assert_allclose(alpha.numpy(), want_alpha, atol=1e-12)
    np.testing.assert_allclose(out.numpy(), want, atol=1e-12)
    assert conv.weight.shape == (4, 6) and conv.att_src.shape == (2, 3)
    f = nn.graph.gat_conv(f64(x), ei, conv.weight, conv.att_src, conv.att_dst, conv.bias,
                          heads=2, concat=concat)
    np.testing.assert_allclose(f.numpy(), want, atol=1e-12)


def test_gat_attention_dropout_only_in_training():
    ei = random_graph()
    x = f64(R.standard_normal((7, 4)))
    conv = nn.GATConv(4, 3, heads=2, dropout=0.5, generator=wl.random.Generator(0)).double()
    conv.eval()
    a = conv(x, ei).numpy()
    np.testing.assert_allclose(conv(x, ei).numpy(), a)
    conv.train()
    b = conv(x, ei).numpy()
    assert not np.allclose(a, b)


def test_gin_and_sage_equal_dense_formulas():
    n, ei = 7, random_graph()
    x = R.standard_normal((n, 4))
    a = dense_in_adj(ei, n)
    lin = nn.Linear(4, 3).double()
    for eps, train_eps in [(0.0, False), (0.3, False), (0.1, True)]:
        conv = nn.GINConv(lin, eps=eps, train_eps=train_eps).double()
        # a learned ε starts in the default dtype, so .double() holds float32's 0.1
        e = float(conv.eps.numpy()[0]) if train_eps else eps
        want = ((1 + e) * x + a @ x) @ lin.weight.numpy() + lin.bias.numpy()
        for fuse in (True, False):
            conv.fuse = fuse
            np.testing.assert_allclose(conv(f64(x), ei).numpy(), want, atol=1e-12)
        n_params = len(list(conv.parameters()))
        assert n_params == (3 if train_eps else 2)
    sage = nn.SAGEConv(4, 3).double()
    deg = np.maximum(a.sum(1, keepdims=True), 1)
    want = (a @ x / deg) @ sage.lin_l.weight.numpy() + sage.lin_l.bias.numpy() \
        + x @ sage.lin_r.weight.numpy()
    np.testing.assert_allclose(sage(f64(x), ei).numpy(), want, atol=1e-12)


def test_layer_gradients_float64_both_modes():
    ei = random_graph(n=5, e=9, seed=4)
    x = f64(R.standard_normal((5, 3)))
    w = f64(R.standard_normal((3, 2)))
    b = f64(R.standard_normal(2))
    ew = f64(R.uniform(0.5, 2.0, 9))
    wl.testing.check_grads(lambda x, w, b, ew: nn.graph.gcn_conv(x, ei, w, b, edge_weight=ew),
                           (x, w, b, ew), order=2)
    ws = f64(R.standard_normal((3, 4)))
    a_s, a_d = f64(R.standard_normal((2, 2))), f64(R.standard_normal((2, 2)))
    wl.testing.check_grads(lambda x, w, s, d: nn.graph.gat_conv(x, ei, w, s, d, heads=2),
                           (x, ws, a_s, a_d), order=2)
    wl.testing.check_grads(lambda x, w: nn.graph.sage_conv(x, ei, w, None, w, aggr="max"),
                           (x, w), order=1)


class EdgeMLP(nn.MessagePassing):
    """A custom layer: messages from x_i, x_j and an edge feature, max-aggregated."""

    def __init__(self):
        super().__init__(aggr="max")

    def forward(self, x, edge_index, edge_attr):
        return self.propagate(edge_index, x=x, edge_attr=edge_attr)

    def message(self, x_i, x_j, edge_attr):
        return wl.tanh(x_j - x_i) * edge_attr.reshape(-1, 1)

    def update(self, aggr_out, x):
        return aggr_out + x


def test_message_passing_base_class_custom_layer():
    n, ei = 6, random_graph(n=6, e=14, seed=2)
    x = R.standard_normal((n, 3))
    ea = R.uniform(0.5, 1.5, ei.shape[1])
    out = EdgeMLP()(f64(x), ei, f64(ea)).numpy()
    want = np.zeros((n, 3))
    for i in range(n):
        into = np.flatnonzero(ei[1] == i)
        if into.size:
            want[i] = (np.tanh(x[ei[0, into]] - x[i]) * ea[into, None]).max(0)
    np.testing.assert_allclose(out, want + x, atol=1e-12)


def test_permutation_equivariance_of_layers():
    n, ei = 8, random_graph(n=8, e=20, seed=3)
    x = f64(R.standard_normal((n, 4)))
    perm = R.permutation(n)
    inv = np.argsort(perm)
    ei_p = inv[ei]                                # node perm[k] becomes node k
    layers = [nn.GCNConv(4, 3).double(), nn.GATConv(4, 2, heads=2).double(),
              nn.GINConv(nn.Linear(4, 3).double()), nn.SAGEConv(4, 3, aggr="max").double()]
    for layer in layers:
        a = layer(x, ei).numpy()[perm]
        b = layer(x[perm], ei_p).numpy()
        np.testing.assert_allclose(a, b, atol=1e-12, err_msg=type(layer).__name__)


def test_readouts():
    x = R.standard_normal((7, 3))
    batch = np.array([0, 0, 1, 1, 1, 3, 3])          # graph 2 has no nodes
    np.testing.assert_allclose(nn.global_add_pool(x, batch).numpy()[1], x[2:5].sum(0))
    np.testing.assert_allclose(nn.global_mean_pool(x, batch).numpy()[3], x[5:].mean(0))
    np.testing.assert_allclose(nn.global_max_pool(x, batch).numpy()[0], x[:2].max(0))
    assert np.all(nn.global_mean_pool(x, batch).numpy()[2] == 0)
    assert nn.global_add_pool(x, batch, size=6).shape == (6, 3)
    np.testing.assert_allclose(nn.global_add_pool(x).numpy(), x.sum(0, keepdims=True))
    gate = nn.Linear(3, 1).double()
    att = nn.AttentionalAggregation(gate)
    out = att(f64(x), batch).numpy()
    s = x @ gate.weight.numpy()[:, 0] + gate.bias.numpy()[0]
    w = np.exp(s[2:5] - s[2:5].max())
    np.testing.assert_allclose(out[1], (w / w.sum()) @ x[2:5])
    with pytest.raises(ValueError, match=r"global_add_pool: batch must be an integer vector with one entry per node \(7\)"):
        nn.global_add_pool(x, batch[:5])


def test_layer_errors_name_the_layer():
    conv = nn.GCNConv(4, 3)
    with pytest.raises(ValueError, match=r"do not match the weight \(4, 3\)"):
        conv(wl.zeros((5, 2)), np.array([[0], [1]]))
    with pytest.raises(IndexError, match=r"GCNConv: edge_index names node 9 but there are 5 nodes"):
        conv(wl.zeros((5, 4)), np.array([[0], [9]]))
    with pytest.raises(ValueError, match=r"GATConv: edge_index must be an integer array of shape \(2, E\)"):
        nn.GATConv(4, 3)(wl.zeros((5, 4)), np.zeros((3, 2), dtype=np.int64))


def dense_transformer_layer(layer, x, buckets_dense):
    """The layer's computation on one graph with dense matrices (a reference)."""
    import math
    p = {k: v.numpy() for k, v in layer.state_dict().items()}

    def ln(h, w, b):
        mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        return (h - mu) / np.sqrt(var + 1e-5) * w + b
    n, c = x.shape
    hh, d = layer.heads, c // layer.heads
    h0 = ln(x, p["norm1.weight"], p["norm1.bias"])
    q, k, v = ((h0 @ p[f"{t}.weight"] + p[f"{t}.bias"]).reshape(n, hh, d) for t in "qkv")
    out = np.zeros((n, hh, d))
    for h in range(hh):
        s = q[:, h] @ k[:, h].T / math.sqrt(d) + p["bias.weight"][buckets_dense, h]
        a = np.exp(s - s.max(1, keepdims=True))
        out[:, h] = (a / a.sum(1, keepdims=True)) @ v[:, h]
    x = x + out.reshape(n, c) @ p["out.weight"] + p["out.bias"]
    f = np.maximum(ln(x, p["norm2.weight"], p["norm2.bias"]) @ p["ffn1.weight"] + p["ffn1.bias"], 0)
    return x + f @ p["ffn2.weight"] + p["ffn2.bias"]


def test_graph_transformer_layer():
    graphs = [wl.graph.Graph(R.standard_normal((k, 8)), random_graph(n=k, e=2 * k, loops=False, seed=k))
              for k in (4, 6, 3)]
    b = wl.graph.Batch.from_graphs(graphs)
    src, dst = nn.graph.attention_pairs(b.batch)
    assert src.size == 16 + 36 + 9
    np.testing.assert_array_equal(dst[16:22], [4] * 6)
    np.testing.assert_array_equal(src[16:22], np.arange(4, 10))
    buckets = nn.graph.distance_buckets(b.edge_index, b.batch, kind="spd", max_distance=3)
    spd = wl.graph.shortest_path_distances(graphs[1].edge_index, 6)
    want = np.where(spd < 0, 4, np.minimum(spd, 3))           # want[source, target]
    np.testing.assert_array_equal(buckets[16:52].reshape(6, 6), want.T)
    layer = nn.GraphTransformerLayer(8, heads=2, num_buckets=5).double()
    layer.bias.weight.data[...] = R.standard_normal((5, 2))
    out = layer(b.x, b.batch, buckets)
    assert out.shape == (13, 8)
    # equal to dense attention within each graph, with the bias of each pair
    for g, lo in zip(graphs, (0, 4, 10)):
        spd = wl.graph.shortest_path_distances(g.edge_index, g.num_nodes)
        bd = np.where(spd < 0, 4, np.minimum(spd, 3)).T
        ref = dense_transformer_layer(layer, g.x.numpy(), bd)
        np.testing.assert_allclose(out.numpy()[lo:lo + g.num_nodes], ref, atol=1e-10)
    # permuting the nodes of a graph permutes its outputs
    perm = R.permutation(6)
    g = graphs[1]
    gp = wl.graph.Graph(g.x.numpy()[perm], np.argsort(perm)[g.edge_index])
    bp = wl.graph.Batch.from_graphs([gp])
    outp = layer(bp.x, bp.batch, nn.graph.distance_buckets(bp.edge_index, bp.batch,
                                                           kind="spd", max_distance=3))
    np.testing.assert_allclose(outp.numpy(), out.numpy()[4:10][perm], atol=1e-10)
    out.sum().backward()
    assert layer.bias.weight.grad is not None and layer.q.weight.grad is not None
    wl.testing.check_grads(lambda x: layer(x, b.batch, buckets), (b.x,), order=1)


# ----------------------------------------------------------------------------- PyG parity
def _pyg():
    pytest.importorskip("torch")
    return pytest.importorskip("torch_geometric", reason="torch_geometric is not installed")


@pytest.mark.parametrize("normalize", [True, False])
def test_gcnconv_takes_edge_weights_of_shape_e_by_1(normalize):
    n, ei = 7, random_graph()
    x = f64(R.standard_normal((n, 4)))
    w = R.uniform(0.5, 2.0, ei.shape[1])
    conv = nn.GCNConv(4, 3, normalize=normalize).double()
    want = conv(x, ei, f64(w))
    got = conv(x, ei, f64(w[:, None]))
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-12)
    with pytest.raises(ValueError, match=r"GCNConv|gcn_norm.*\(E,\) or \(E, 1\).*\(18, 2\)"):
        conv(x, ei, f64(np.ones((ei.shape[1], 2))))


@pytest.mark.torch
@pytest.mark.parametrize("improved", [False, True])
def test_gcnconv_matches_pyg(improved):
    _pyg()
    import torch
    from torch_geometric.nn import GCNConv as PygGCN

    n, ei = 7, random_graph()
    x = R.standard_normal((n, 4))
    w = R.uniform(0.5, 2.0, ei.shape[1])
    ours = nn.GCNConv(4, 3, improved=improved).double()
    ours.bias.data[...] = R.standard_normal(3)
    ref = PygGCN(4, 3, improved=improved).double()
    with torch.no_grad():
        ref.lin.weight.copy_(torch.tensor(ours.weight.numpy().T))
        ref.bias.copy_(torch.tensor(ours.bias.numpy()))
    t_ei = torch.tensor(ei)
    for weight in (None, w):
        # Without weights PyG 2.x drops `improved` (its loops get weight 1); ours keeps
        # A + 2I, which is PyG's result with explicit unit weights.
        t_w = torch.ones(ei.shape[1], dtype=torch.float64) if weight is None else torch.tensor(weight)
        want = ref(torch.tensor(x), t_ei, t_w)
        got = ours(f64(x), ei, None if weight is None else f64(weight))
        np.testing.assert_allclose(got.numpy(), want.detach().numpy(), atol=1e-12)


@pytest.mark.torch
def test_gatconv_matches_pyg_with_gradients():
    _pyg()
    import torch
    from torch_geometric.nn import GATConv as PygGAT

    n, ei = 7, random_graph()
    x = R.standard_normal((n, 4))
    ours = nn.GATConv(4, 3, heads=2).double()
    ours.bias.data[...] = R.standard_normal(6)
    ref = PygGAT(4, 3, heads=2).double()
    with torch.no_grad():
        ref.lin.weight.copy_(torch.tensor(ours.weight.numpy().T))
        ref.att_src.copy_(torch.tensor(ours.att_src.numpy()[None]))
        ref.att_dst.copy_(torch.tensor(ours.att_dst.numpy()[None]))
        ref.bias.copy_(torch.tensor(ours.bias.numpy()))
    tx = torch.tensor(x, requires_grad=True)
    want, (t_edges, t_alpha) = ref(tx, torch.tensor(ei), return_attention_weights=True)
    got, (edges, alpha) = ours(f64(x), ei, return_attention_weights=True)
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), atol=1e-12)
    np.testing.assert_array_equal(edges, t_edges.numpy())
    np.testing.assert_allclose(alpha.numpy(), t_alpha.detach().numpy(), atol=1e-12)
    g = R.standard_normal(want.shape)
    (want * torch.tensor(g)).sum().backward()
    (got * f64(g)).sum().backward()
    np.testing.assert_allclose(ours.weight.grad.numpy(), ref.lin.weight.grad.numpy().T, atol=1e-10)
    np.testing.assert_allclose(ours.att_src.grad.numpy(), ref.att_src.grad.numpy()[0], atol=1e-10)


@pytest.mark.torch
def test_gin_sage_and_pools_match_pyg():
    _pyg()
    import torch
    from torch_geometric.nn import GINConv as PygGIN, SAGEConv as PygSAGE
    from torch_geometric.nn import global_add_pool as pa, global_max_pool as pm, global_mean_pool as pme

    n, ei = 7, random_graph()
    x = R.standard_normal((n, 4))
    lin = nn.Linear(4, 3).double()
    ref = PygGIN(torch.nn.Linear(4, 3).double(), eps=0.25)     # (it re-initialises nn)
    with torch.no_grad():
        ref.nn.weight.copy_(torch.tensor(lin.weight.numpy().T))
        ref.nn.bias.copy_(torch.tensor(lin.bias.numpy()))
    got = nn.GINConv(lin, eps=0.25)(f64(x), ei).numpy()
    want = ref(torch.tensor(x), torch.tensor(ei)).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-12)
    for aggr in ("mean", "max", "add"):
        ours = nn.SAGEConv(4, 3, aggr=aggr).double()
        ref = PygSAGE(4, 3, aggr="sum" if aggr == "add" else aggr).double()
        with torch.no_grad():
            ref.lin_l.weight.copy_(torch.tensor(ours.lin_l.weight.numpy().T))
            ref.lin_l.bias.copy_(torch.tensor(ours.lin_l.bias.numpy()))
            ref.lin_r.weight.copy_(torch.tensor(ours.lin_r.weight.numpy().T))
        np.testing.assert_allclose(ours(f64(x), ei).numpy(),
                                   ref(torch.tensor(x), torch.tensor(ei)).detach().numpy(),
                                   atol=1e-12, err_msg=aggr)
    batch = np.array([0, 0, 1, 1, 1, 2, 2])
    for ours, ref in ((nn.global_add_pool, pa), (nn.global_mean_pool, pme),
                      (nn.global_max_pool, pm)):
        np.testing.assert_allclose(ours(x, batch).numpy(),
                                   ref(torch.tensor(x), torch.tensor(batch)).numpy(), atol=1e-12)


# ----------------------------------------------------------------------------- models
def test_feature_dropout_keeps_expectation_dense_and_sparse():
    from wonderland.models.gnn import feature_dropout
    x = wl.ones((200, 300))
    out = feature_dropout(x, 0.6, True, wl.random.Generator(0)).numpy()
    kept = out != 0
    assert abs(kept.mean() - 0.4) < 0.01
    np.testing.assert_allclose(out[kept], 1 / (1 - round(0.6 * 65536) / 65536), rtol=1e-6)
    assert feature_dropout(x, 0.6, False) is x
    sp = wl.sparse.from_dense(wl.tensor(np.eye(50)))
    d = feature_dropout(sp, 0.5, True, wl.random.Generator(1))
    assert isinstance(d, wl.sparse.SparseMatrix) and d.nnz == 50
    assert 10 < int((d.values.numpy() != 0).sum()) < 40


def test_reference_models_run_and_learn_a_toy_task():
    wl.random.seed(0)             # initial weights and dropout independent of earlier tests
    k = wl.graph.karate_club()
    for model in (wl.models.GCN(34, 8, 2, num_layers=4, residual=True, norm="layer"),
                  wl.models.GAT(34, 4, 2, heads=2), ):
        opt = wl.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(30):
            opt.zero_grad()
            wl.nn.functional.cross_entropy(model(k.x, k.edge_index), k.y).backward()
            opt.step()
        model.eval()
        acc = (model(k.x, k.edge_index).numpy().argmax(1) == k.y.numpy()).mean()
        assert acc > 0.9, type(model).__name__
    gcn = wl.models.GCN(34, 8, 2, num_layers=3)
    out, hidden = gcn(k.x, k.edge_index, return_hidden=True)
    assert out.shape == (34, 2) and len(hidden) == 2
    link = wl.models.LinkPredictor(gcn, 2, "mlp", hidden=8)
    assert link(k.x, k.edge_index, np.array([[0, 1], [33, 2]])).shape == (2,)
    graphs = [wl.graph.Graph(R.standard_normal((n, 3)).astype(np.float32),
                             random_graph(n, 2 * n, loops=False, seed=n), y=np.int64(n % 2),
                             pe=R.standard_normal((n, 4)).astype(np.float32),
                             rw=R.standard_normal((n, 5)).astype(np.float32)) for n in (5, 7)]
    b = wl.graph.Batch.from_graphs(graphs)
    gt = wl.models.GraphTransformer(3, 8, 2, heads=2, pe_dim=4, rw_dim=5)
    assert gt(b.x, b.batch, b.pe, b.rw, nn.graph.distance_buckets(b.edge_index, b.batch)).shape == (2, 2)
    gin = wl.models.GIN(3, 8, 2, num_layers=2)
    assert gin(b.x, b.edge_index, b.batch, 2).shape == (2, 2)
