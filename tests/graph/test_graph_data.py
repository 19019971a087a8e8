"""Graph data: Graph and Batch (round trips, the index-offset rule), the loader,
utilities against references written here (or PyTorch Geometric / networkx when
installed), npz readers on small files written here, and task helpers."""

import os

import numpy as np
import pytest

import wonderland as wl
from wonderland.graph import Batch, Graph, GraphLoader, NodeIndex
from wonderland.graph import utils as U

R = np.random.default_rng(5)


def small_graph(n, e, seed, **fields):
    r = np.random.default_rng(seed)
    ei = np.stack([r.integers(0, n, e), r.integers(0, n, e)])
    return Graph(r.standard_normal((n, 3)).astype(np.float32), ei,
                 edge_attr=r.standard_normal((e, 2)).astype(np.float32),
                 y=np.int64(seed % 2), **fields)


# ----------------------------------------------------------------------------- Graph / Batch
def test_graph_fields_and_checks():
    g = small_graph(5, 7, 0, weights=np.arange(5.0))
    assert g.num_nodes == 5 and g.num_edges == 7 and g.num_node_features == 3
    assert set(g.keys()) == {"x", "edge_index", "edge_attr", "y", "weights"}
    assert g.edge_index.dtype == np.int64 and isinstance(g.x, wl.Tensor)
    g.extra = [1, 2]
    assert "extra" in g
    with pytest.raises(ValueError, match=r"Graph: edge_index must have shape \(2, E\)"):
        Graph(np.zeros((3, 2)), np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(IndexError, match=r"Graph: edge_index holds node 7 but the graph has 3 nodes"):
        Graph(np.zeros((3, 2)), np.array([[0], [7]]))
    with pytest.raises(ValueError, match=r"Graph: edge_attr has 2 rows for 1 edges"):
        Graph(np.zeros((3, 2)), np.array([[0], [1]]), edge_attr=np.zeros((2, 1)))


def test_batch_round_trip_and_offsets():
    graphs = [small_graph(n, e, s, anchors=NodeIndex([0, n - 1]), my_index=np.array([1, 1]))
              for s, (n, e) in enumerate([(4, 6), (3, 2), (6, 9)])]
    b = Batch.from_graphs(graphs)
    assert b.num_graphs == 3 and b.num_nodes == 13
    np.testing.assert_array_equal(b.ptr, [0, 4, 7, 13])
    np.testing.assert_array_equal(b.batch, [0] * 4 + [1] * 3 + [2] * 6)
    # index fields are offset by the nodes before them; others are not, whatever their name
    np.testing.assert_array_equal(b.anchors, [0, 3, 4, 6, 7, 12])
    np.testing.assert_array_equal(b.my_index, [1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(b.edge_index[:, 6:8], graphs[1].edge_index + 4)
    assert b.x.shape == (13, 3) and b.edge_attr.shape == (17, 2) and b.y.shape == (3,)
    back = b.to_graphs()
    for g, h in zip(graphs, back):
        assert set(g.keys()) == set(h.keys())
        for k in g.keys():
            a, c = g[k], h[k]
            a = a.numpy() if isinstance(a, wl.Tensor) else np.asarray(a)
            c = c.numpy() if isinstance(c, wl.Tensor) else np.asarray(c)
            np.testing.assert_array_equal(a, c, err_msg=k)
        assert h.is_index_field("anchors") and not h.is_index_field("my_index")
    np.testing.assert_array_equal(b[1].edge_index, graphs[1].edge_index)


def test_batch_requires_matching_fields():
    with pytest.raises(ValueError, match=r"Batch.from_graphs: graph 1 has fields"):
        Batch.from_graphs([small_graph(3, 2, 0), Graph(np.zeros((2, 3)), np.zeros((2, 0), np.int64))])


def test_batch_names_the_field_and_graph_whose_shape_differs():
    graphs = [small_graph(3, 2, 0), small_graph(4, 3, 1),
              Graph(np.zeros((2, 5), np.float32), np.zeros((2, 0), np.int64),
                    edge_attr=np.zeros((0, 2), np.float32), y=np.int64(0))]
    with pytest.raises(ValueError, match=r"Batch.from_graphs: field 'x' of graph 2 has shape "
                                         r"\(2, 5\) \(width 5\), but graph 0's has shape \(3, 3\) "
                                         r"\(width 3\)"):
        Batch.from_graphs(graphs)
    graphs[2] = small_graph(2, 1, 2)
    graphs[2].y = np.array([1])
    with pytest.raises(ValueError, match=r"Batch.from_graphs: field 'y' of graph 2 has shape "
                                         r"\(1,\), but graph 0's has shape \(\)"):
        Batch.from_graphs(graphs)


def test_loader_covers_every_graph_once_and_repeats_with_seed():
    graphs = [small_graph(3 + s % 4, 4, s, gid=np.int64(s)) for s in range(23)]
    seen = []
    for batch in GraphLoader(graphs, 5, shuffle=True, generator=3):
        assert batch.num_graphs <= 5
        seen += list(batch.gid.numpy())
    assert sorted(seen) == list(range(23))
    again = [int(v) for b in GraphLoader(graphs, 5, shuffle=True, generator=3) for v in b.gid.numpy()]
    assert again == seen
    assert len(GraphLoader(graphs, 5)) == 5 and len(GraphLoader(graphs, 5, drop_last=True)) == 4


def test_layers_on_a_batch_equal_layers_per_graph():
    graphs = [small_graph(n, e, s) for s, (n, e) in enumerate([(4, 6), (3, 2), (6, 9)])]
    b = Batch.from_graphs(graphs)
    conv = wl.nn.GCNConv(3, 2)
    out = conv(b.x, b.edge_index).numpy()
    parts = np.concatenate([conv(g.x, g.edge_index).numpy() for g in graphs])
    np.testing.assert_allclose(out, parts, atol=1e-6)
    pooled = wl.nn.global_mean_pool(wl.tensor(out), b.batch).numpy()
    np.testing.assert_allclose(pooled[2], parts[7:].mean(0), atol=1e-6)


# ----------------------------------------------------------------------------- utilities
def test_self_loops():
    ei = np.array([[0, 1, 2, 2, 1], [1, 2, 2, 0, 1]])
    w = wl.tensor(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    out, ow = U.add_remaining_self_loops(ei, w, fill_value=9.0, num_nodes=4)
    np.testing.assert_array_equal(out, [[0, 1, 2, 0, 1, 2, 3], [1, 2, 0, 0, 1, 2, 3]])
    np.testing.assert_allclose(ow.numpy(), [1, 2, 4, 9, 5, 3, 9])
    out, ow = U.add_self_loops(ei, w, fill_value=0.5, num_nodes=3)
    assert out.shape == (2, 8) and ow.numpy()[-1] == 0.5
    out, _ = U.remove_self_loops(ei)
    assert not U.contains_self_loops(out) and out.shape == (2, 3)


def test_add_remaining_self_loops_is_differentiable():
    ei = np.array([[0, 1, 1], [1, 1, 0]])
    wl.testing.check_grads(lambda w: U.add_remaining_self_loops(ei, w, 2.0, 3)[1],
                           (wl.tensor(np.array([1.0, 2.0, 3.0])),), order=1)


def test_to_undirected_coalesce_degree():
    ei = np.array([[0, 1, 1, 3], [1, 0, 2, 3]])
    w = wl.tensor(np.array([1.0, 2.0, 3.0, 4.0]))
    out, ow = U.to_undirected(ei, w, 4)
    np.testing.assert_array_equal(out, [[0, 1, 1, 2, 3], [1, 0, 2, 1, 3]])
    np.testing.assert_allclose(ow.numpy(), [3, 3, 3, 3, 8])
    assert U.is_undirected(out) and not U.is_undirected(ei)
    np.testing.assert_allclose(U.degree(out[1], 5).numpy(), [1, 2, 1, 1, 0])
    np.testing.assert_allclose(U.degree(ei[1], 4, weight=w).numpy(), [2, 1, 3, 4])


def test_normalized_adjacency_is_symmetric_normalisation():
    ei = np.array([[0, 1, 1, 2], [1, 0, 2, 1]])
    p = U.normalized_adjacency(ei, 3).to_dense().numpy()
    a = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], float)
    d = a.sum(1) ** -0.5
    np.testing.assert_allclose(p, d[:, None] * a * d[None, :], rtol=1e-6)
    np.testing.assert_allclose(U.to_dense_adj(ei, 3).numpy(), a - np.eye(3))


def test_k_hop_subgraph_follows_message_flow():
    ei = np.array([[0, 1, 2, 3, 5], [1, 2, 3, 4, 4]])          # a chain into 4, plus 5 → 4
    subset, sub, mapping, mask = U.k_hop_subgraph(4, 2, ei, 6, relabel_nodes=True)
    np.testing.assert_array_equal(subset, [2, 3, 4, 5])
    np.testing.assert_array_equal(mask, [False, False, True, True, True])
    np.testing.assert_array_equal(sub, [[0, 1, 3], [1, 2, 2]])
    np.testing.assert_array_equal(mapping, [2])
    subset, *_ = U.k_hop_subgraph(0, 3, ei, 6, flow="target_to_source")
    np.testing.assert_array_equal(subset, [0, 1, 2, 3])


def cycle(n):
    s = np.arange(n)
    return np.concatenate([np.stack([s, (s + 1) % n]), np.stack([(s + 1) % n, s])], axis=1)


def test_laplacian_eigenvectors_and_random_walks():
    ei = cycle(6)
    pe = U.laplacian_eigenvectors(ei, 6, k=3, dtype=np.float64)
    lap = np.eye(6) - (np.eye(6, k=1) + np.eye(6, k=-1) + np.eye(6, k=5) + np.eye(6, k=-5)) / 2
    vals = np.sort(np.linalg.eigvalsh(lap))
    for j in range(3):
        np.testing.assert_allclose(lap @ pe[:, j], vals[j + 1] * pe[:, j], atol=1e-10)
    np.testing.assert_allclose(pe.T @ pe, np.eye(3), atol=1e-10)
    assert U.laplacian_eigenvectors(cycle(3), 3, k=4).shape == (3, 4)
    flips = U.random_sign_flip(pe, wl.random.Generator(1)).numpy()
    np.testing.assert_allclose(np.abs(flips), np.abs(pe))
    rw = U.random_walk_encoding(ei, 6, walk_length=4, dtype=np.float64)
    p = (lap - np.eye(6)) * -1
    want = np.stack([np.diagonal(np.linalg.matrix_power(p, k)) for k in range(1, 5)], 1)
    np.testing.assert_allclose(rw, want, atol=1e-12)
    np.testing.assert_allclose(rw[0], [0, 0.5, 0, 0.375])


def test_shortest_paths_by_bfs_reference():
    ei = np.array([[0, 1, 2, 4], [1, 2, 3, 0]])
    d = U.shortest_path_distances(ei, 5)
    want = np.full((5, 5), -1)
    adj = {i: ei[1][ei[0] == i] for i in range(5)}
    for s in range(5):                              # plain BFS, as a reference
        want[s, s] = 0
        frontier, k = [s], 0
        while frontier:
            k += 1
            nxt = [v for u in frontier for v in adj[u] if want[s, v] < 0]
            for v in nxt:
                want[s, v] = k
            frontier = nxt
    np.testing.assert_array_equal(d, want)
    assert U.shortest_path_distances(ei, 5, max_distance=2).max() == 2


def test_dense_batch_round_trip_and_gradient():
    x = wl.tensor(R.standard_normal((6, 2)), requires_grad=True)
    batch = np.array([0, 0, 0, 1, 2, 2])
    dense, mask = U.to_dense_batch(x, batch)
    assert dense.shape == (3, 3, 2)
    np.testing.assert_array_equal(mask.numpy(), [[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    np.testing.assert_allclose(dense.numpy()[2, :2], x.numpy()[4:])
    back = U.from_dense_batch(dense, batch)
    np.testing.assert_allclose(back.numpy(), x.numpy())
    (back * back).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())


@pytest.mark.torch
def test_utilities_match_pyg():
    pytest.importorskip("torch")
    pyg = pytest.importorskip("torch_geometric")
    import torch
    from torch_geometric import utils as pu

    ei = np.stack([R.integers(0, 9, 30), R.integers(0, 9, 30)])
    w = R.uniform(size=30)
    a, aw = pu.add_remaining_self_loops(torch.tensor(ei), torch.tensor(w), 2.0, 9)
    b, bw = U.add_remaining_self_loops(ei, wl.tensor(w), 2.0, 9)
    np.testing.assert_array_equal(b, a.numpy())
    np.testing.assert_allclose(bw.numpy(), aw.numpy())
    a, aw = pu.to_undirected(torch.tensor(ei), torch.tensor(w), 9)
    b, bw = U.to_undirected(ei, wl.tensor(w), 9)
    np.testing.assert_array_equal(b, a.numpy())
    np.testing.assert_allclose(bw.numpy(), aw.numpy())
    sub = pu.k_hop_subgraph(3, 2, torch.tensor(ei), relabel_nodes=True, num_nodes=9)
    ours = U.k_hop_subgraph(3, 2, ei, 9, relabel_nodes=True)
    for s, o in zip(sub, ours):
        np.testing.assert_array_equal(o, s.numpy())
    assert pyg is not None


# ----------------------------------------------------------------------------- readers
def write_node_npz(path, with_split=True):
    import scipy.sparse as sp
    adj = sp.csr_matrix(np.array([[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]], np.float32))
    attr = sp.csr_matrix(np.array([[1, 0, 1], [0, 0, 2], [3, 0, 0], [0, 0, 0]], np.float32))
    arrays = dict(adj_data=adj.data, adj_indices=adj.indices, adj_indptr=adj.indptr,
                  adj_shape=np.array(adj.shape), attr_data=attr.data, attr_indices=attr.indices,
                  attr_indptr=attr.indptr, attr_shape=np.array(attr.shape),
                  labels=np.array([0, 1, -1, 1]))
    if with_split:
        arrays.update(idx_train=np.array([0, 1]), idx_val=np.array([2]), idx_test=np.array([3]))
    np.savez(path, **arrays)


def test_read_node_npz(tmp_path):
    path = tmp_path / "g.npz"
    write_node_npz(path)
    g = wl.graph.read_node_npz(path, normalize_features=True)
    assert g.num_nodes == 4 and g.num_edges == 6 and g.is_undirected()
    np.testing.assert_allclose(g.x.numpy()[0], [0.5, 0, 0.5])
    np.testing.assert_allclose(g.x.numpy()[3], [0, 0, 0])
    np.testing.assert_array_equal(g.train_mask, [1, 1, 0, 0])
    np.testing.assert_array_equal(g.y.numpy(), [0, 1, -1, 1])
    s = wl.graph.read_node_npz(path, features="sparse")
    np.testing.assert_allclose(s.x.to_dense().numpy()[1], [0, 0, 2])
    write_node_npz(tmp_path / "nosplit.npz", with_split=False)
    assert "train_mask" not in wl.graph.read_node_npz(tmp_path / "nosplit.npz")


def test_read_graph_npz(tmp_path):
    path = tmp_path / "gc.npz"
    np.savez(path, node_tag=np.array([0, 2, 1, 1, 0]),
             edge_index=np.array([[3, 0, 1, 4, 2], [4, 1, 0, 3, 2]]),
             graph_ptr=np.array([0, 2, 5]), y=np.array([1, 0]))
    graphs = wl.graph.read_graph_npz(path)
    assert len(graphs) == 2 and graphs[1].num_nodes == 3
    np.testing.assert_array_equal(graphs[0].edge_index, [[0, 1], [1, 0]])
    np.testing.assert_array_equal(graphs[1].edge_index, [[1, 2, 0], [2, 1, 0]])
    np.testing.assert_array_equal(graphs[1].x.numpy(), np.eye(3)[[1, 1, 0]])
    assert int(graphs[0].y.numpy()) == 1
    b = Batch.from_graphs(graphs)
    np.testing.assert_array_equal(np.sort(b.edge_index[0]), [0, 1, 2, 3, 4])


def test_readers_refuse_bad_files(tmp_path):
    np.savez(tmp_path / "bad.npz", node_tag=np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"read_graph_npz: .* lacks the keys \['edge_index', 'graph_ptr', 'y'\]"):
        wl.graph.read_graph_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "obj.npz", adj_data=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"read_node_npz: cannot read .* without pickle"):
        wl.graph.read_node_npz(tmp_path / "obj.npz")
    np.savez(tmp_path / "cross.npz", node_tag=np.zeros(4, np.int64),
             edge_index=np.array([[0], [3]]), graph_ptr=np.array([0, 2, 4]), y=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"an edge joins two different graphs"):
        wl.graph.read_graph_npz(tmp_path / "cross.npz")


def test_shipped_files():
    cs = wl.graph.load_citeseer()
    assert cs.num_nodes == 3327 and cs.num_edges == 9104 and cs.x.shape == (3327, 3703)
    assert cs.train_idx.size == 120 and cs.val_idx.size == 500 and cs.test_idx.size == 1000
    assert int((cs.y.numpy() < 0).sum()) == 15 and (cs.y.numpy()[cs.test_idx] >= 0).all()
    mutag = wl.graph.load_mutag()
    assert len(mutag) == 188 and sum(g.num_nodes for g in mutag) == 3371
    assert sum(g.num_edges for g in mutag) == 7442
    assert sorted(np.bincount([int(g.y.numpy()) for g in mutag])) == [63, 125]
    k = wl.graph.karate_club()
    assert k.num_nodes == 34 and k.num_edges == 156 and k.is_undirected()
    files = os.path.dirname(wl.graph.datasets.data_path("karate.txt"))
    assert os.path.exists(os.path.join(files, "README.md"))


def test_karate_matches_networkx():
    nx = pytest.importorskip("networkx")
    g = nx.karate_club_graph()
    k = wl.graph.karate_club()
    ours = {tuple(sorted(e)) for e in k.edge_index.T.tolist()}
    assert ours == {tuple(sorted(e)) for e in g.edges()}
    clubs = [0 if g.nodes[i]["club"] == "Mr. Hi" else 1 for i in range(34)]
    np.testing.assert_array_equal(k.y.numpy(), clubs)


# ----------------------------------------------------------------------------- tasks
def test_roc_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score
    y = R.integers(0, 2, 200)
    s = np.round(R.standard_normal(200) + y, 1)        # ties included
    # ranks against sklearn's trapezoids over ≤ 200 thresholds: ≤ 200 × 1.1e-16 ≈ 2e-14
    assert abs(wl.graph.roc_auc_score(y, s) - roc_auc_score(y, s)) < 1e-12
    with pytest.raises(ValueError, match="needs both positive and negative"):
        wl.graph.roc_auc_score([1, 1], [0.2, 0.3])


def test_stratified_kfold():
    y = np.array([0] * 30 + [1] * 13)
    folds = wl.graph.stratified_kfold(y, 5, generator=0)
    tests = np.concatenate([t for _, t in folds])
    assert sorted(tests) == list(range(43))
    for tr, te in folds:
        assert not set(tr) & set(te) and len(tr) + len(te) == 43
        assert 2 <= (y[te] == 1).sum() <= 3 and 5 <= (y[te] == 0).sum() <= 7


def test_negative_sampling_and_link_split():
    k = wl.graph.karate_club()
    neg = wl.graph.negative_sampling(k.edge_index, 34, 200, generator=1)
    keys = set((k.edge_index[0] * 34 + k.edge_index[1]).tolist())
    assert neg.shape == (2, 200) and not (set((neg[0] * 34 + neg[1]).tolist()) & keys)
    assert (neg[0] != neg[1]).all()
    split = wl.graph.link_split(k.edge_index, 34, 0.1, 0.2, generator=2)
    tr = {tuple(e) for e in split["train_pos"].T.tolist()}
    te = {tuple(e) for e in split["test_pos"].T.tolist()}
    va = {tuple(e) for e in split["val_pos"].T.tolist()}
    assert len(tr) + len(te) + len(va) == 78 and not (tr & te) and not (tr & va)
    assert split["train_edge_index"].shape[1] == 2 * len(tr)
    for neg in (split["test_neg"], split["val_neg"]):
        assert not ({tuple(e) for e in neg.T.tolist()} & {tuple(sorted(e)) for e in k.edge_index.T.tolist()})
    with pytest.raises(ValueError, match="negative_sampling: asked for"):
        wl.graph.negative_sampling(np.array([[0, 1], [1, 0]]), 2, 5)
