"""``wl.onnx.export``: models written as ONNX graphs, checked by ``onnx.checker`` and run by
ONNX Runtime against wonderland's own outputs (and, for GPT-2, against ``transformers``).

Tolerance: ONNX Runtime computes the same float32 operations in other orders (its own
GEMM blocking, reductions and fused kernels), so results differ from NumPy's by rounding,
a few units in the last place per operation — measured here up to ~1e-6 relative on a
three-layer GPT-2. ``rtol = atol = 1e-5`` leaves an order of magnitude above that and
still catches any layout or formula error, which moves outputs by 1e-2 or more.
"""

import sys

import numpy as np
import pytest

import wonderland as wl

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
ort = pytest.importorskip("onnxruntime", reason="the exported graphs are run by onnxruntime")

R = np.random.default_rng(7)
TOL = dict(rtol=1e-5, atol=1e-5)


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run(model, *arrays):
    s = session(model)
    return s.run(None, {i.name: a for i, a in zip(s.get_inputs(), arrays)})


def ours(fn, *arrays):
    out = fn(*[wl.tensor(a) for a in arrays])
    return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])]


def assert_runs_like(model, fn, *arrays):
    got, want = run(model, *arrays), ours(fn, *arrays)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, **TOL)


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def ops(model):
    return {n.op_type for n in model.graph.node}


# ----------------------------------------------------------------------------- models
def test_mlp_with_a_dynamic_batch(tmp_path):
    mlp = wl.nn.Sequential(wl.nn.Linear(6, 16), wl.nn.ReLU(), wl.nn.Linear(16, 3))
    path = tmp_path / "mlp.onnx"
    model = wl.onnx.export(mlp, (R.normal(size=(2, 6)).astype(np.float32),), path,
                           dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                           input_names=["x"], output_names=["logits"])
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert dims(model.graph.input[0]) == ["batch", 6]
    assert dims(model.graph.output[0]) == ["batch", 3]
    assert {t.name for t in model.graph.initializer} == {"0.weight", "0.bias", "2.weight",
                                                         "2.bias"}
    for batch in (3, 7):            # neither is the example's size
        assert_runs_like(onnx.load(str(path)), mlp, R.normal(size=(batch, 6)).astype(np.float32))


def _cnn():
    cnn = wl.nn.Sequential(
        wl.nn.Conv2d(3, 8, 3, padding=1), wl.nn.BatchNorm2d(8), wl.nn.ReLU(),
        wl.nn.MaxPool2d(2), wl.nn.Conv2d(8, 8, 3, stride=2, groups=2, padding=1),
        wl.nn.BatchNorm2d(8), wl.nn.GELU(), wl.nn.GlobalAvgPool(), wl.nn.Linear(8, 5))
    for name, t in list(cnn.named_buffers()) + list(cnn.named_parameters()):
        if "running" in name or "1.weight" in name or "1.bias" in name:   # not 0 and 1
            t.data[...] = R.uniform(0.5, 1.5, t.shape) if "var" in name or "weight" in name \
                else R.normal(size=t.shape)
    return cnn.eval()


def test_cnn_with_batch_norm_in_eval_mode():
    cnn = _cnn()
    images = R.normal(size=(2, 12, 12, 3)).astype(np.float32)          # channels last
    model = wl.onnx.export(cnn, (images,), None, dynamic_axes={"input_0": {0: "batch"}})
    assert {"Conv", "MaxPool", "Transpose"} <= ops(model)
    assert "1.running_var" in {t.name for t in model.graph.initializer}
    for batch in (2, 5):
        assert_runs_like(model, cnn, R.normal(size=(batch, 12, 12, 3)).astype(np.float32))


def test_convolution_layers_of_every_rank_and_transposed():
    layers = [(wl.nn.Conv1d(4, 6, 3, padding=2, dilation=2), (2, 10, 4)),
              (wl.nn.Conv3d(2, 3, (2, 3, 2)), (1, 5, 6, 7, 2)),
              (wl.nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1),
               (2, 5, 5, 4)),
              (wl.nn.ConvTranspose1d(4, 6, 4, stride=3, groups=2), (2, 7, 4)),
              (wl.nn.AvgPool2d(2), (2, 6, 6, 3)), (wl.nn.MaxPool1d(3, stride=2, padding=1),
                                                   (2, 9, 3))]
    for layer, shape in layers:
        x = R.normal(size=shape).astype(np.float32)
        assert_runs_like(wl.onnx.export(layer, (x,), None), layer, x)


def test_transformer_encoder_layer_with_dynamic_batch_and_length():
    layer = wl.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.1).eval()
    x = R.normal(size=(2, 5, 16)).astype(np.float32)
    model = wl.onnx.export(layer, (x,), None,
                           dynamic_axes={"input_0": {0: "batch", 1: "length"}})
    assert "Softmax" in ops(model) and dims(model.graph.output[0]) == ["batch", "length", 16]
    for shape in ((3, 5, 16), (1, 9, 16)):
        assert_runs_like(model, layer, R.normal(size=shape).astype(np.float32))


def test_attention_with_a_padding_mask_and_a_causal_mask():
    layer = wl.nn.TransformerEncoderLayer(8, 2, 16, norm_first=True).eval()
    mask = wl.nn.transformer.generate_square_subsequent_mask(6)

    def fn(x, padding):
        return layer(x, src_mask=mask, src_key_padding_mask=padding, is_causal=True)

    x = R.normal(size=(2, 6, 8)).astype(np.float32)
    padding = np.array([[False] * 4 + [True] * 2, [False] * 6])
    model = wl.onnx.export(fn, (x, padding), None, dynamic_axes={"input_0": {0: "b"},
                                                                 "input_1": {0: "b"}})
    assert_runs_like(model, fn, x, padding)
    assert_runs_like(model, fn, R.normal(size=(3, 6, 8)).astype(np.float32),
                     np.array([[False] * 6, [False] * 5 + [True], [False] + [True] * 5]))


def _hf_gpt2(folder):
    torch = pytest.importorskip("torch", reason="transformers runs on torch")
    transformers = pytest.importorskip("transformers", reason="the reference GPT-2")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=101, n_positions=40, n_embd=32, n_layer=3,
                                     n_head=4, bos_token_id=None, eos_token_id=None)
    theirs = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():           # biases and norms off zeros and ones: layouts show
        for name, p in theirs.named_parameters():
            p.add_(0.1 * torch.randn_like(p))
    theirs.eval().save_pretrained(str(folder))
    return torch, theirs


def test_gpt2_from_a_hugging_face_folder_equals_wonderland_and_transformers(tmp_path):
    torch, theirs = _hf_gpt2(tmp_path / "gpt2")
    gpt = wl.models.GPT.from_pretrained(tmp_path / "gpt2")
    ids = R.integers(0, 101, (2, 12))
    path = tmp_path / "gpt2.onnx"
    wl.onnx.export(gpt, (ids,), path, input_names=["input_ids"], output_names=["logits"],
                   dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}})
    model = onnx.load(str(path))
    assert dims(model.graph.output[0]) == ["batch", "sequence", 101]
    for shape in ((2, 12), (3, 7), (1, 40)):
        x = R.integers(0, 101, shape)
        got = run(model, x)[0]
        with torch.no_grad():
            reference = theirs(torch.from_numpy(x)).logits.numpy()
        np.testing.assert_allclose(got, reference, **TOL)
        np.testing.assert_allclose(got, gpt(x).numpy(), **TOL)


def test_wonderland_gpt_with_tied_head():
    gpt = wl.models.GPT(50, 16, 2, 2, 16).eval()
    ids = R.integers(0, 50, (2, 7))
    model = wl.onnx.export(gpt, (ids,), None, dynamic_axes={"input_0": {0: "batch"}})
    names = [t.name for t in model.graph.initializer]
    assert names.count("wte.weight") == 1 and len(names) == len(set(names))
    for batch in (1, 4):
        assert_runs_like(model, gpt, R.integers(0, 50, (batch, 7)))


def test_gcn_on_a_fixed_graph_is_a_dense_product_with_the_normalised_adjacency():
    conv1, conv2 = wl.nn.GCNConv(4, 8), wl.nn.GCNConv(8, 3)
    for p in (conv1.bias, conv2.bias):
        p.data[...] = R.normal(size=p.shape)
    edges = np.array([[0, 1, 1, 2, 3, 4, 2, 5], [1, 0, 2, 1, 4, 3, 4, 0]])

    def gcn(x, edge_index):
        return conv2(wl.relu(conv1(x, edge_index)), edge_index)

    x = R.normal(size=(6, 4)).astype(np.float32)
    model = wl.onnx.export(gcn, (x, edges), None)
    # edge_index was read on the host to build the sparse structure: the graph is baked
    assert [i.name for i in model.graph.input] == ["input_0"]
    adjacency = [t for t in model.graph.initializer if t.name.startswith("sparse_matrix")]
    assert adjacency and onnx.numpy_helper.to_array(adjacency[0]).shape == (6, 6)
    got = run(model, x)[0]
    np.testing.assert_allclose(got, gcn(x, edges).numpy(), **TOL)


def test_graph_layers_with_computed_coefficients():
    edges = np.array([[0, 1, 1, 2, 3, 4, 2], [1, 0, 2, 1, 4, 3, 4]])
    x = R.normal(size=(5, 4)).astype(np.float32)
    for layer in (wl.nn.GATConv(4, 3, heads=2).eval(), wl.nn.SAGEConv(4, 3),
                  wl.nn.GINConv(wl.nn.Linear(4, 3))):
        def fn(v, layer=layer):
            return layer(v, edges)

        assert_runs_like(wl.onnx.export(fn, (x,), None), fn, x)


# ----------------------------------------------------------------------------- primitives
X = R.normal(size=(3, 4)).astype(np.float32)
Y = R.normal(size=(3, 4)).astype(np.float32)
POS = np.abs(X) + 0.1
I1, I2 = R.integers(-5, 5, (3, 4)), R.integers(1, 4, (3, 4)) * np.array([1, -1, 1, -1])

CASES = {
    "unary": (lambda a: [f(a) for f in (wl.exp, wl.expm1, wl.sin, wl.cos, wl.tan, wl.tanh,
                                       wl.sigmoid, wl.erf, wl.softplus, wl.abs, wl.negative,
                                       wl.sign, wl.floor, wl.ceil, wl.round, wl.relu)], X),
    "positive": (lambda a: [wl.log(a), wl.log1p(a), wl.sqrt(a), a ** 3, a ** 0.5], POS),
    "binary": (lambda a, b: [a + b, a - b, a * b, a / b, wl.maximum(a, b), wl.minimum(a, b),
                             wl.floor_divide(a, b), wl.remainder(a, b), wl.where(a > b, a, b),
                             wl.clip(a, -0.5, 0.5)], X, Y),
    "power": (lambda a, b: wl.power(a, b), POS, Y),
    "compare": (lambda a, b: [a == b, a != b, a < b, a <= b, a > b, a >= b,
                              wl.logical_xor(a > 0, b > 0) | ~(a > 1), wl.isfinite(a / b)],
                X, Y),
    "integers": (lambda a, b: [wl.floor_divide(a, b), wl.remainder(a, b), wl.relu(a),
                               wl.sum(a, 1), (a * 2).astype(wl.float32)], I1, I2),
    "reduce": (lambda a: [wl.mean(a, 0), wl.var(a, 1), wl.prod(a, 1), wl.max(a), wl.min(a, 0),
                          wl.logsumexp(a, 1), wl.softmax(a, 0), wl.softmax(a, (0, 1)),
                          wl.log_softmax(a, -1), wl.cumsum(a, 1), wl.argmax(a, 1),
                          wl.argmin(a), wl.any(a > 1, 1), wl.all(a > -2)], X),
    "products": (lambda a, b: [a @ b.T, wl.einsum("ij,kj->ik", a, b)], X, Y),
    "shapes": (lambda a, b: [wl.concatenate([a, b], 1), wl.stack([a, b], 1), a.T.reshape(2, 6),
                             wl.pad(a, ((1, 2), (0, 1)), constant_values=3.0),
                             wl.pad(a, ((1, 1), (2, 0)), mode="reflect"), wl.flip(a, 1),
                             wl.broadcast_to(a[:, :1], (2, 3, 4))], X, Y),
    "indexing": (lambda a: [a[1:, ::-2], a[1, None, 1:3], a[::-1, -1], a[:, np.array([0, 2, 2])],
                            a[np.array([0, 2]), np.array([1, 3])], a[np.array([[0], [2]]), 1:3],
                            wl.take_along_axis(a, np.array([[0], [1], [3]]), 1),
                            wl.take(a, np.array([0, 0, 2]), axis=0)], X),
    "scatter": (lambda a, b: [wl.index_add(a, np.array([0, 0, 2]), b, axis=0),
                              wl.scatter_add(a, np.array([[0, 1, 1, 3]] * 3), b, axis=1)], X, Y),
    "layers": (lambda a: [wl.nn.functional.gelu(a), wl.nn.functional.silu(a),
                          wl.nn.functional.gelu(a, approximate="tanh"),
                          wl.nn.functional.cross_entropy(a, np.array([0, 1, 3])),
                          wl.one_hot(wl.argmax(a, 1), 5)], X),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_primitive_rules_against_onnxruntime(case):
    fn, *arrays = CASES[case]
    assert_runs_like(wl.onnx.export(fn, tuple(arrays), None), fn, *arrays)


@pytest.mark.parametrize("opset", [13, 17, 18, 20])
def test_operator_sets(opset):
    fn = wl.nn.Sequential(wl.nn.LayerNorm(4), wl.nn.GELU(), wl.nn.Linear(4, 2))
    extra = lambda a: [fn(a), wl.logsumexp(a, 1), wl.max(a, 0)]     # noqa: E731
    model = wl.onnx.export(extra, (X,), None, opset=opset)
    assert model.opset_import[0].version == opset
    assert ("Gelu" in ops(model)) == (opset >= 20)
    assert_runs_like(model, extra, X)


def test_a_boolean_mask_argument_is_baked_in():
    model = wl.onnx.export(lambda a, m: a[m], (X, X > 0), None)
    assert [i.name for i in model.graph.input] == ["input_0"]
    np.testing.assert_array_equal(run(model, X)[0], X[X > 0])


# ----------------------------------------------------------------------------- refusals
def test_training_mode_with_dropout_or_batch_norm_is_refused():
    with pytest.raises(wl.onnx.ExportError, match=r"Dropout \(dropout p=0.5\).*eval\(\)"):
        wl.onnx.export(wl.nn.Sequential(wl.nn.Linear(4, 4), wl.nn.Dropout(0.5)), (X,), None)
    bn = wl.nn.BatchNorm1d(4)
    with pytest.raises(wl.onnx.ExportError, match="BatchNorm1d"):
        wl.onnx.export(lambda a: bn(a) * 2.0, (X,), None)        # reached from a closure
    # layers that act the same in both modes export in training mode
    mlp = wl.nn.Sequential(wl.nn.Linear(4, 4), wl.nn.Dropout(0.0))
    assert mlp.training and wl.onnx.export(mlp, (X,), None) is not None


def test_a_primitive_without_a_rule_is_named():
    lstm = wl.nn.LSTM(4, 5, batch_first=True)
    with pytest.raises(wl.onnx.ExportError,
                       match=r"'recurrent_layer' \(step \d+, inputs float32.*Export supports "
                             r"these primitives: abs, add"):
        wl.onnx.export(lambda s: lstm(s)[0], (R.normal(size=(2, 3, 4)).astype(np.float32),),
                       None)


def test_sizes_the_graph_cannot_follow_are_refused():
    def centred(a):
        return a - wl.mean(a, 0)           # 1/n of the batch is a constant of the trace

    with pytest.raises(wl.onnx.ExportError, match="changes when the dynamic axis 'b'"):
        wl.onnx.export(centred, (X,), None, dynamic_axes={"input_0": {0: "b"}})
    model = wl.onnx.export(centred, (X,), None)                 # a static batch is fine
    assert_runs_like(model, centred, X)


def test_bad_arguments_are_refused_by_name():
    mlp = wl.nn.Linear(4, 2)
    cases = [(dict(opset=7), "opset must be an int from 13"),
             (dict(dynamic_axes={"x": {0: "b"}}), "neither an input .input_0. nor an output"),
             (dict(dynamic_axes={"input_0": {2: "b"}}), "names axis 2; input_0 has 2 axes"),
             (dict(dynamic_axes={"input_0": {0: "b c"}}), "letters, digits and _"),
             (dict(dynamic_axes={"output_0": {1: "k"}}), "does not follow any dynamic input"),
             (dict(input_names=["a", "b"]), "input_names must be 1 distinct"),
             (dict(input_names=["y"], output_names=["y"]), "name both an input and an output")]
    for kwargs, message in cases:
        with pytest.raises((ValueError, TypeError), match=message):
            wl.onnx.export(mlp, (X,), None, **kwargs)


def test_without_the_onnx_package_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'wonderland\[onnx\]'"):
        wl.onnx.export(wl.nn.Linear(4, 2), (X,), None)


def test_the_rules_of_the_models_primitives_are_declared():
    have = set(wl.onnx.supported_primitives())
    assert {"linear", "relu", "conv_bias", "max_pool", "normalize_affine", "attention",
            "reshape", "transpose", "broadcast_to", "sum", "cast", "identity", "getitem",
            "gelu", "matmul", "sparse_matmul", "gather_rows"} <= have
