"""Chapter 12: graph models — GCN and GAT on CiteSeer (standard split), over-smoothing
as depth grows (with and without residual connections and normalisation), permutation
equivariance on a real graph, link prediction on CiteSeer, graph classification on
MUTAG with GIN and a graph transformer (10-fold cross-validation), and a 2-D embedding
of the karate club learned from two labelled members."""

from __future__ import annotations

import numpy as np

import wonderland as wl
from wonderland import nn
from wonderland.graph import masked_accuracy

from .base import Check, Result, seeds
from .plotting import COLORS, explained, plain_ticks, value_labels


def _blas_one_thread():
    """Graph workloads multiply small dense blocks (n × 16, 64 × 6 …): with a second
    BLAS thread each such product costs far more than it gains on a busy 2-core machine,
    so the chapter runs them single-threaded."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


def _adam(model, lr, wd, first_only=None):
    if first_only is None:
        return wl.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    first = list(first_only.parameters())
    rest = [p for p in model.parameters() if all(p is not q for q in first)]
    return wl.optim.Adam([{"params": first, "weight_decay": wd},
                          {"params": rest, "weight_decay": 0.0}], lr=lr)


def _train_nodes(model, g, opt, epochs):
    """Full-graph training on the training nodes; the test accuracy is read at the
    epoch of best validation accuracy (the usual protocol for the Planetoid split)."""
    y = g.y.numpy()
    tr = g.train_idx.numpy()
    ytr = wl.tensor(y[tr])
    best_val, best_test, curve = -1.0, 0.0, []
    for _ in range(epochs):
        model.train()
        opt.zero_grad()
        out = model(g.x, g.edge_index)
        nn.functional.cross_entropy(wl.gather_rows(out, tr), ytr).backward()
        opt.step()
        model.eval()
        with wl.no_grad():
            out = model(g.x, g.edge_index).numpy()
        val = masked_accuracy(out, y, g.val_idx)
        curve.append(val)
        if val >= best_val:
            best_val, best_test = val, masked_accuracy(out, y, g.test_idx)
    return best_test, best_val, curve


def _citeseer_models(ctx, g):
    seeds_gcn, seeds_gat = ctx.pick(5, 2), ctx.pick(3, 1)
    gcn, gat, curves = [], [], {"GCN": [], "GAT": []}
    models = {}
    for s in range(seeds_gcn):
        ctx.status(f"CiteSeer: GCN seed {s}")
        wl.random.seed(ctx.seed + s)
        model = wl.models.GCN(g.x.shape[1], 16, 6, dropout=0.5, cached=True)
        acc, _, curve = _train_nodes(model, g, _adam(model, 0.01, 5e-4, model.convs[0]), 200)
        gcn.append(acc)
        curves["GCN"].append(curve)
        models["GCN"] = model
    for s in range(seeds_gat):
        ctx.status(f"CiteSeer: GAT seed {s}")
        wl.random.seed(ctx.seed + s)
        model = wl.models.GAT(g.x.shape[1], 8, 6, heads=8, dropout=0.6)
        acc, _, curve = _train_nodes(model, g, _adam(model, 0.005, 5e-4), ctx.pick(200, 120))
        gat.append(acc)
        curves["GAT"].append(curve)
        models["GAT"] = model
    return gcn, gat, curves, models


def _clear_caches(model):
    for m in model.modules():
        if isinstance(m, nn.GCNConv):
            m._cache = None


def _equivariance(g, models, seed):
    """Outputs of trained models on CiteSeer with its nodes renumbered (and its edges
    listed in another order) at random equal the original outputs renumbered the same
    way."""
    n = g.num_nodes
    perm = np.random.default_rng(seed).permutation(n)
    inv = np.argsort(perm)
    x = g.x                                          # sparse features: permute their rows
    x_perm = wl.sparse.from_coo(inv[x.row.numpy()], x.indices.numpy(), x.values, x.shape)
    ei_perm = inv[g.edge_index][:, np.random.default_rng(seed + 1).permutation(g.num_edges)]
    errs = {}
    for name, model in models.items():
        model.eval()
        with wl.no_grad():
            _clear_caches(model)
            a = model(x, g.edge_index).numpy()[perm]
            _clear_caches(model)
            b = model(x_perm, ei_perm).numpy()
            _clear_caches(model)
        errs[name] = float(np.abs(a - b).max())
    return errs


def _largest_component(g):
    from scipy.sparse.csgraph import connected_components

    adj = wl.graph.adjacency_matrix(g.edge_index, g.num_nodes).to_scipy()
    _, label = connected_components(adj, directed=False)
    return np.flatnonzero(label == np.bincount(label).argmax())


def _mean_cosine(h):
    """Mean cosine similarity over all pairs of distinct nodes (from the sum of unit
    rows, without forming the n × n matrix)."""
    h = np.asarray(h, dtype=np.float64)
    norms = np.linalg.norm(h, axis=1, keepdims=True)
    z = h / np.where(norms > 0, norms, 1.0)
    n = z.shape[0]
    total = np.sum(z.sum(0) ** 2) - np.sum(z * z)
    return float(total / (n * (n - 1)))


def effective_rank(h):
    """exp of the entropy of the normalised squared singular values of ``h``: about 1 when
    every row lies on one line, up to min(rows, columns) when they spread over all
    directions (Roy & Vetterli 2007)."""
    s = np.linalg.svd(np.asarray(h, dtype=np.float64), compute_uv=False)
    p = s ** 2 / max(float((s ** 2).sum()), 1e-300)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def _oversmoothing(ctx, g):
    # repeated propagation without learning, x ← P x with P the GCN matrix, on the
    # largest connected component (features of different components never mix); the
    # 3,703 features are projected at random to 256 (inner products kept in expectation)
    keep = _largest_component(g)
    sub, _ = wl.graph.subgraph(keep, g.edge_index, num_nodes=g.num_nodes, relabel_nodes=True)
    prop = wl.graph.normalized_adjacency(sub, keep.size)
    proj = np.random.default_rng(ctx.seed).standard_normal((g.x.shape[1], 256))
    cur = wl.tensor((g.x.to_scipy()[keep] @ proj).astype(np.float32))
    steps = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256]
    sims, done = {}, 0
    for k in steps:
        for _ in range(k - done):
            cur = prop @ cur
        done = k
        sims[k] = _mean_cosine(cur.numpy())
    # trained GCNs of growing depth, plain and with residual connections + layer norm;
    # similarity of their outputs (logits) over all nodes
    depths = ctx.pick([2, 4, 8, 16], [2, 16])
    epochs = ctx.pick(100, 60)
    trained = {"plain": {}, "residual + norm": {}}
    for variant, kw in (("plain", {}), ("residual + norm", {"residual": True, "norm": "layer"})):
        for depth in depths:
            ctx.status(f"over-smoothing: {variant}, {depth} layers")
            wl.random.seed(ctx.seed)
            model = wl.models.GCN(g.x.shape[1], 32, 6, num_layers=depth, dropout=0.5,
                                  cached=True, **kw)
            # the architecture's own smoothing shows at initialisation (mean cosine of the
            # outputs); what training makes of it shows in how many directions the trained
            # outputs of all nodes span (effective rank; at most the 6 classes): a collapsed
            # network puts every node on about one line
            model.eval()
            with wl.no_grad():
                at_init = _mean_cosine(model(g.x, g.edge_index).numpy())
            acc, _, _ = _train_nodes(model, g, _adam(model, 0.01, 5e-4, model.convs[0]), epochs)
            model.eval()
            with wl.no_grad():
                out = model(g.x, g.edge_index).numpy()
            trained[variant][depth] = (acc, at_init, _mean_cosine(out), effective_rank(out))
    return sims, depths, trained, keep.size


def _link_prediction(ctx, g):
    split = wl.graph.link_split(g.edge_index, g.num_nodes, 0.05, 0.1, generator=ctx.seed)
    wl.random.seed(ctx.seed)
    encoder = wl.models.GCN(g.x.shape[1], 64, 32, dropout=0.0, cached=True)
    model = wl.models.LinkPredictor(encoder, 32, "dot")
    opt = wl.optim.Adam(model.parameters(), lr=0.01)
    ei = split["train_edge_index"]
    pos = np.concatenate([split["train_pos"], split["train_pos"][::-1]], axis=1)
    gen = wl.random.Generator(ctx.seed + 1)
    bce = nn.functional.binary_cross_entropy_with_logits

    def auc(kind):
        model.eval()
        with wl.no_grad():
            z = model.encode(g.x, ei)
            p = model.decode(z, split[f"{kind}_pos"]).numpy()
            q = model.decode(z, split[f"{kind}_neg"]).numpy()
        return wl.graph.roc_auc_score(np.r_[np.ones(p.size), np.zeros(q.size)], np.r_[p, q])

    best_val, test = -1.0, 0.0
    labels = wl.tensor(np.r_[np.ones(pos.shape[1]), np.zeros(pos.shape[1])].astype(np.float32))
    for epoch in range(ctx.pick(100, 60)):
        model.train()
        neg = wl.graph.negative_sampling(ei, g.num_nodes, pos.shape[1], generator=gen)
        opt.zero_grad()
        z = model.encode(g.x, ei)
        logits = wl.concatenate([model.decode(z, pos), model.decode(z, neg)])
        bce(logits, labels).backward()
        opt.step()
        if epoch % 5 == 4:
            val = auc("val")
            if val >= best_val:
                best_val, test = val, auc("test")
    return best_val, test, split


def _structural_fields(graphs, pe_dim, rw_dim):
    out = []
    for g in graphs:
        h = g.clone()
        h["pe"] = wl.graph.laplacian_eigenvectors(g.edge_index, g.num_nodes, pe_dim)
        h["rw"] = wl.graph.random_walk_encoding(g.edge_index, g.num_nodes, rw_dim)
        out.append(h)
    return out


def _mutag(ctx):
    graphs = _structural_fields(wl.graph.load_mutag(), 4, 8)
    y = np.array([int(g.y.numpy()) for g in graphs])
    folds = wl.graph.stratified_kfold(y, 10, generator=ctx.seed)
    n_folds = ctx.pick(10, 3)
    results = {"GIN": [], "graph transformer": []}
    for k, (tr, te) in enumerate(folds[:n_folds]):
        train = wl.graph.Batch.from_graphs([graphs[i] for i in tr])
        test = wl.graph.Batch.from_graphs([graphs[i] for i in te])
        ctx.status(f"MUTAG fold {k + 1}/{n_folds}: GIN")
        wl.random.seed(ctx.seed + k)
        gin = wl.models.GIN(7, 32, 2, num_layers=4, dropout=0.5)
        results["GIN"].append(_fit_graphs(
            gin, train, test, ctx.pick(50, 30), 0.01,
            lambda m, b: m(b.x, b.edge_index, b.batch, b.num_graphs)))
        ctx.status(f"MUTAG fold {k + 1}/{n_folds}: graph transformer")
        wl.random.seed(ctx.seed + k)
        gt = wl.models.GraphTransformer(7, 32, 2, num_layers=2, heads=2, pe_dim=4, rw_dim=8,
                                        num_buckets=7, dropout=0.0)
        buckets = {id(b): nn.graph.distance_buckets(b.edge_index, b.batch, b.num_graphs,
                                                    "spd", 5) for b in (train, test)}
        pairs = {id(b): nn.graph.attention_pairs(b.batch, b.num_graphs) for b in (train, test)}
        results["graph transformer"].append(_fit_graphs(
            gt, train, test, ctx.pick(50, 40), 0.003,
            lambda m, b: m(b.x, b.batch, b.pe, b.rw, buckets[id(b)], b.num_graphs, pairs[id(b)])))
    return results


def _fit_graphs(model, train, test, epochs, lr, forward):
    """Full-batch training on the training graphs of a fold (no epoch is chosen by test
    accuracy: the model after the last epoch is scored)."""
    opt = wl.optim.Adam(model.parameters(), lr=lr)
    sched = wl.optim.StepLR(opt, step_size=max(epochs // 2, 1), gamma=0.5)
    for _ in range(epochs):
        model.train()
        opt.zero_grad()
        nn.functional.cross_entropy(forward(model, train), train.y).backward()
        opt.step()
        sched.step()
    model.eval()
    with wl.no_grad():
        out = forward(model, test).numpy()
    return float((out.argmax(1) == test.y.numpy()).mean())


class _KarateNet(nn.Module):
    """After Kipf & Welling's karate demo: two tanh GCN layers of 16 features, then a
    linear classifier; node features are one-hot identities. (A 2-D last layer, as in the
    demo, saturates along one line when only two factions are taught.)"""

    def __init__(self, hidden=16):
        super().__init__()
        self.convs = nn.ModuleList([nn.GCNConv(34, hidden), nn.GCNConv(hidden, hidden)])
        self.head = nn.Linear(hidden, 2)

    def embed(self, x, ei):
        for conv in self.convs:
            x = wl.tanh(conv(x, ei))
        return x

    def forward(self, x, ei):
        return self.head(self.embed(x, ei))


def _karate(ctx):
    g = wl.graph.karate_club()
    y = g.y.numpy()
    labelled = np.array([0, 33])                        # the instructor and the officer
    wl.random.seed(ctx.seed)
    model = _KarateNet()
    with wl.no_grad():
        before = model.embed(g.x, g.edge_index).numpy()
    opt = wl.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(100):
        opt.zero_grad()
        out = model(g.x, g.edge_index)
        nn.functional.cross_entropy(wl.gather_rows(out, labelled), wl.tensor(y[labelled])).backward()
        opt.step()
    with wl.no_grad():
        emb = model.embed(g.x, g.edge_index).numpy()
        pred = model(g.x, g.edge_index).numpy().argmax(1)
    rest = np.setdiff1d(np.arange(34), labelled)
    return (_pca2(before), _pca2(emb)), float((pred[rest] == y[rest]).mean()), y, labelled


def _pca2(h):
    """The first two principal components of the rows of ``h`` and the share of the
    variance each explains."""
    h = np.asarray(h, dtype=np.float64) - np.mean(h, axis=0)
    _, s, vt = np.linalg.svd(h, full_matrices=False)
    return h @ vt[:2].T, s[:2] ** 2 / max(float((s ** 2).sum()), 1e-300)


def effective_rank_check(ctx, trained, depths):
    """The over-smoothing claim after training, from :func:`_oversmoothing`'s results: at
    the greatest depth, residual + norm's outputs spread over more directions (effective
    rank) than plain's."""
    deep = depths[-1]
    gain = trained["residual + norm"][deep][3] - trained["plain"][deep][3]
    return ctx.check(f"after training, {deep} layers: residual + norm keeps the nodes' outputs "
                     f"spread over more directions than plain, whose outputs collapse towards "
                     f"one line (effective rank, residual + norm minus plain)", gain, 1.2,
                     seeds=(seeds(1.98, 3.12, 2.67, 0.45, "threshold 1.2, below mean − 3 sd"),
                            seeds(1.79, 2.51, 2.18, 0.32, "threshold: mean − 3 sd")))


def run(ctx) -> Result:
    with _blas_one_thread():
        g = wl.graph.load_citeseer(features="sparse", normalize_features=True)
        gcn, gat, curves, models = _citeseer_models(ctx, g)
        ctx.status("permutation equivariance")
        equi = _equivariance(g, models, ctx.seed)
        sims, depths, trained, n_lcc = _oversmoothing(ctx, g)
        ctx.status("link prediction")
        link_val, link_test, split = _link_prediction(ctx, g)
        mutag = _mutag(ctx)
        ctx.status("karate club")
        emb, karate_acc, club, labelled = _karate(ctx)

    # ---- figures
    fig = ctx.figure("citeseer", "Validation accuracy on CiteSeer during training (mean over "
                     "seeds); the test accuracy is read at the best validation epoch.")
    ax = fig.add_subplot(111)
    for (name, cs), c in zip(curves.items(), COLORS):
        m = np.mean(np.array(cs), axis=0)
        ax.plot(np.arange(1, len(m) + 1), m, color=c,
                label=f"{name} (test {np.mean(gcn if name == 'GCN' else gat):.1%})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.legend()
    ctx.save(fig)

    fig = ctx.figure("oversmoothing", f"Over-smoothing. Left: mean cosine similarity between "
                     f"the features of the {n_lcc} nodes of CiteSeer's largest connected "
                     f"component (randomly projected to 256 dimensions) after k propagation "
                     f"steps x ← D^-1/2(A+I)D^-1/2 x (no learning; k = 0 plotted at 0.5). Middle "
                     f"and right: GCNs of growing depth, plain and with residual connections and "
                     f"layer norm, trained on CiteSeer: their test accuracy, and the effective "
                     f"rank of their outputs over all nodes (how many directions the nodes' "
                     f"outputs span; 1 when every node lies on one line, at most 6).")
    fig.set_size_inches(12, 3.8)
    ax = fig.add_subplot(131)
    ks = sorted(sims)
    explained(ax.plot([max(k, 0.5) for k in ks], [sims[k] for k in ks], "-o", color=COLORS[0]),
              "mean cosine similarity")
    ax.set_xscale("log", base=2)
    plain_ticks(ax, [0.5] + [k for k in ks if k in (1, 4, 16, 64, 256)],
                fmt=lambda k: "0" if k == 0.5 else str(int(k)))
    ax.set_xlabel("propagation steps k")
    ax.set_ylabel("mean pairwise cosine similarity")
    for pos, index, ylabel in ((132, 0, "test accuracy"),
                               (133, 3, "effective rank of the outputs")):
        ax = fig.add_subplot(pos)
        for (variant, res), c in zip(trained.items(), COLORS):
            ax.plot(depths, [res[d][index] for d in depths], "-o", color=c, label=variant)
        ax.set_xscale("log", base=2)
        plain_ticks(ax, depths)
        ax.set_xlabel("layers")
        ax.set_ylabel(ylabel)
        if index == 3:
            ax.set_ylim(0, 6.2)
        ax.legend(fontsize=8)
    ctx.save(fig)

    n_folds = len(next(iter(mutag.values())))
    fig = ctx.figure("mutag", f"MUTAG, stratified cross-validation ({n_folds} of 10 folds): "
                     f"test accuracy of each fold (dots), the mean (bars, its value written above "
                     f"the bar's dots and error bar) and ± one standard deviation over the folds "
                     f"(error bars). Dashed: GIN as Xu et al. "
                     f"(2019) report it, 89.4 ± 5.6%, scored at the best epoch averaged over "
                     f"folds (the reference figure in the data's README); these models are "
                     f"scored after their last epoch. The axis starts at 0.")
    ax = fig.add_subplot(111)
    for i, (name, accs) in enumerate(mutag.items()):
        explained(ax.bar(i, np.mean(accs), yerr=np.std(accs), capsize=4, color=COLORS[i],
                         alpha=0.5), "bars")
        explained(ax.plot([i] * len(accs), accs, "o", color="#333333", ms=3), "dots")
        value_labels(ax, [i], [float(np.mean(accs))], fontsize=8,
                     tops=[max(float(np.mean(accs) + np.std(accs)), float(np.max(accs)))])
    ax.axhline(0.894, ls="--", color="#777777", label="GIN, Xu et al. 2019 (89.4%)")
    ax.set_xticks(range(len(mutag)), list(mutag))
    ax.set_xlim(-0.6, len(mutag) - 0.4)
    ax.set_ylim(0, 1.15)
    ax.set_xlabel("model")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8, loc="upper center")
    ctx.save(fig)

    fig = ctx.figure("karate", "The karate club as a 2-layer GCN (16 tanh features per member) "
                     "sees it: the first two principal components of the members' features, "
                     "coloured by the faction each member joined; grey lines are friendships, "
                     "stars the two members whose faction the network is told (the instructor "
                     "and the officer). Left: random weights — propagation over the graph alone "
                     "already groups the factions. Right: after training on those two labels. "
                     "Each axis is scaled to its own spread; its label gives its share of the "
                     "variance.")
    fig.set_size_inches(10, 4.4)
    k = wl.graph.karate_club()
    for j, ((points, share), title) in enumerate(zip(emb, ("random weights",
                                                           "trained on 2 labels"))):
        ax = fig.add_subplot(1, 2, j + 1)
        for s, t in k.edge_index.T:
            if s < t:
                explained(ax.plot(points[[s, t], 0], points[[s, t], 1], color="#cccccc", lw=0.6,
                                  zorder=1), "friendships")
        for c in (0, 1):
            sel = club == c
            ax.scatter(points[sel, 0], points[sel, 1], color=COLORS[c], zorder=2,
                       label="Mr. Hi's faction" if c == 0 else "the officer's faction")
        ax.scatter(points[labelled, 0], points[labelled, 1], marker="*", s=250,
                   color="black", zorder=3, label="labelled (instructor, officer)")
        ax.set_title(title)
        ax.set_xlabel(f"principal component 1 ({share[0]:.1%} of the variance)")
        ax.set_ylabel(f"principal component 2 ({share[1]:.1%})")
        ax.legend(fontsize=8)
    ctx.save(fig)

    # ---- metrics, checks, summary
    gcn_m, gat_m = float(np.mean(gcn)), float(np.mean(gat))
    gin = mutag["GIN"]
    gtr = mutag["graph transformer"]
    deep = depths[-1]
    plain_shallow, plain_deep = trained["plain"][depths[0]], trained["plain"][deep]
    res_deep = trained["residual + norm"][deep]
    metrics = {"citeseer_gcn_test_accuracy": gcn_m, "citeseer_gcn_std": float(np.std(gcn)),
               "citeseer_gat_test_accuracy": gat_m, "citeseer_gat_std": float(np.std(gat)),
               "equivariance_max_error_gcn": equi["GCN"], "equivariance_max_error_gat": equi["GAT"],
               **{f"propagation_similarity_k{k}": v for k, v in sims.items()},
               **{f"{v.split()[0]}_depth{d}_accuracy": trained[v][d][0]
                  for v in trained for d in depths},
               **{f"{v.split()[0]}_depth{d}_similarity_at_init": trained[v][d][1]
                  for v in trained for d in depths},
               **{f"{v.split()[0]}_depth{d}_similarity_trained": trained[v][d][2]
                  for v in trained for d in depths},
               **{f"{v.split()[0]}_depth{d}_effective_rank_trained": trained[v][d][3]
                  for v in trained for d in depths},
               "link_val_auc": link_val, "link_test_auc": link_test,
               "mutag_gin_accuracy": float(np.mean(gin)), "mutag_gin_std": float(np.std(gin)),
               "mutag_transformer_accuracy": float(np.mean(gtr)),
               "mutag_transformer_std": float(np.std(gtr)), "mutag_folds": len(gin),
               "karate_accuracy": karate_acc}
    checks = [
        # a tour seed s trains the GCNs with seeds s, s+1, ...: the five means share
        # models, so their spread understates the noise; the threshold sits 0.015 below
        # the lowest instead of at mean − 3 sd
        ctx.check(f"GCN on CiteSeer: mean test accuracy over {len(gcn)} seeds", gcn_m, 0.69, 0.67,
                  seeds=(seeds(0.7046, 0.7062, 0.7052, 0.0006, "threshold: lowest − 0.015"),
                         seeds(0.703, 0.707, 0.705, 0.0017, "threshold 0.67, below mean − 3 sd"))),
        ctx.check(f"GAT on CiteSeer: mean test accuracy over {len(gat)} seeds", gat_m, 0.70, 0.66,
                  seeds=(seeds(0.715, 0.719, 0.717, 0.0018, "threshold: lowest − 0.015"),
                         seeds(0.704, 0.730, 0.716, 0.011, "threshold 0.66, below mean − 3 sd"))),
        Check("permutation equivariance on CiteSeer: max |f(Px) - P f(x)| (GCN, GAT)",
              max(equi.values()), 1e-4, "<="),
        ctx.check("propagation alone makes node features alike: cosine similarity after 256 "
                  "steps", sims[256], 0.85,
                  seeds=seeds(0.909, 0.937, 0.919, 0.012, "threshold 0.85, below mean − 3 sd")),
        # the next three compare with a second value measured in the same run
        ctx.check(f"a deep plain GCN's outputs are more alike than a shallow one's "
                  f"(similarity at initialisation, {deep} layers)", plain_deep[1],
                  plain_shallow[1] + 0.2,
                  seeds=seeds(0.824, 0.993, 0.932, 0.067, f"threshold: the similarity at "
                              f"{depths[0]} layers in the same run + 0.2")),
        ctx.check(f"plain GCN loses accuracy from {depths[0]} to {deep} layers (accuracy at "
                  f"{deep})", plain_deep[0], plain_shallow[0] - 0.05, op="<=",
                  seeds=(seeds(0.206, 0.379, 0.322, 0.071, f"threshold: the accuracy at "
                               f"{depths[0]} layers in the same run − 0.05"),
                         seeds(0.17, 0.303, 0.222, 0.050, f"threshold: the accuracy at "
                               f"{depths[0]} layers in the same run − 0.05"))),
        ctx.check(f"residual + norm beat plain at {deep} layers (test accuracy)",
                  res_deep[0], plain_deep[0] + 0.05,
                  seeds=(seeds(0.649, 0.678, 0.66, 0.012, "threshold: plain's accuracy in the "
                               "same run + 0.05"),
                         seeds(0.649, 0.678, 0.66, 0.012, "threshold: plain's accuracy in the "
                               "same run + 0.05"))),
        effective_rank_check(ctx, trained, depths),
        ctx.check("link prediction on CiteSeer: test ROC-AUC", link_test, 0.85, 0.80,
                  seeds=(seeds(0.893, 0.908, 0.900, 0.0064, "threshold 0.85, below mean − 3 sd"),
                         seeds(0.871, 0.899, 0.887, 0.012, "threshold 0.80, below mean − 3 sd"))),
        ctx.check(f"GIN on MUTAG: mean test accuracy over {len(gin)} folds", float(np.mean(gin)),
                  0.81, 0.67,
                  seeds=(seeds(0.829, 0.857, 0.844, 0.011), seeds(0.719, 0.789, 0.765, 0.029))),
        ctx.check(f"graph transformer on MUTAG: mean test accuracy over {len(gtr)} folds",
                  float(np.mean(gtr)), 0.75, 0.70,
                  seeds=(seeds(0.792, 0.840, 0.816, 0.021),
                         seeds(0.754, 0.789, 0.772, 0.018, "threshold 0.70, below mean − 3 sd"))),
        ctx.check("karate club: faction of the 32 unlabelled members from 2 labels", karate_acc,
                  0.85, seeds=seeds(0.9375, 0.969, 0.944, 0.014,
                                    "threshold 0.85, below mean − 3 sd")),
    ]
    summary = (
        f"On CiteSeer's standard split a 2-layer GCN reaches {gcn_m:.1%} ± {np.std(gcn):.1%} test "
        f"accuracy ({len(gcn)} seeds; Kipf & Welling report 70.3%) and a GAT {gat_m:.1%} ± "
        f"{np.std(gat):.1%} ({len(gat)} seeds; Veličković et al. report 72.5%), reading the test "
        f"accuracy at the epoch of best validation accuracy. Renumbering CiteSeer's nodes at "
        f"random renumbers the outputs of both trained models (largest difference "
        f"{max(equi.values()):.1e}). Over-smoothing: propagating the features alone raises their "
        f"mean cosine similarity (largest connected component) from {sims[0]:.2f} to "
        f"{sims[64]:.2f} after 64 steps and {sims[256]:.2f} after 256; a plain GCN falls from {plain_shallow[0]:.1%} at "
        f"{depths[0]} layers to {plain_deep[0]:.1%} at {deep}, its outputs alike from the start "
        f"(mean cosine similarity at initialisation {plain_shallow[1]:.2f} → "
        f"{plain_deep[1]:.2f}), and after training the outputs of all its nodes span an "
        f"effective rank of {plain_deep[3]:.2f} directions (at {depths[0]} layers "
        f"{plain_shallow[3]:.2f}; 1 means every node on one line). With residual connections "
        f"and layer norm the deep network starts as smooth (similarity {res_deep[1]:.2f}) but "
        f"training keeps its nodes apart: effective rank {res_deep[3]:.2f}, test accuracy "
        f"{res_deep[0]:.1%}. Link prediction with a "
        f"GCN encoder and a dot-product decoder, trained on 85% of the citations with fresh "
        f"negative pairs every epoch, scores ROC-AUC {link_test:.3f} on held-out citations "
        f"against as many non-citations. On MUTAG ({len(gin)}-fold stratified cross-validation, "
        f"scored after the last epoch rather than at the best test epoch as in Xu et al.'s "
        f"89.4 ± 5.6%), GIN reaches {np.mean(gin):.1%} ± {np.std(gin):.1%} and a graph transformer "
        f"(Laplacian and random-walk encodings, shortest-path attention bias) "
        f"{np.mean(gtr):.1%} ± {np.std(gtr):.1%}. From the two labelled leaders alone, a GCN "
        f"places {karate_acc:.0%} of the other karate-club members in the faction they joined.")
    return Result(metrics, summary, checks)
