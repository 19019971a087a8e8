"""Datasets, loaders, splits, scaling and file readers."""

import numpy as np
import pytest

import wonderland as wl
from wonderland import data


def test_tensor_dataset_and_loader_batches():
    x = wl.arange(10).astype(wl.float32).reshape(10, 1)
    y = wl.arange(10)
    ds = data.TensorDataset(x, y)
    assert len(ds) == 10 and ds[3][1].item() == 3
    batches = list(data.DataLoader(ds, batch_size=4))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert len(data.DataLoader(ds, batch_size=4)) == 3
    assert len(data.DataLoader(ds, batch_size=4, drop_last=True)) == 2
    assert [len(b[1]) for b in data.DataLoader(ds, batch_size=4, drop_last=True)] == [4, 4]
    with pytest.raises(ValueError, match="same first dimension"):
        data.TensorDataset(x, wl.arange(9))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        data.DataLoader(ds, batch_size=0)


def test_shuffle_is_seeded_and_covers_everything():
    ds = data.TensorDataset(wl.arange(20))
    order = lambda seed: np.concatenate([b[0].numpy() for b in data.DataLoader(  # noqa: E731
        ds, 6, shuffle=True, generator=wl.random.Generator(seed))])
    a, b, c = order(1), order(1), order(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(np.sort(a), np.arange(20))
    loader = data.DataLoader(ds, 20, shuffle=True, generator=wl.random.Generator(0))
    first, second = next(iter(loader))[0].numpy(), next(iter(loader))[0].numpy()
    assert not np.array_equal(first, second)            # a new permutation each epoch


class PairDataset(data.Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {"x": np.array([i, i], dtype=np.float32), "y": i % 2}


def test_generic_dataset_collates_pytrees():
    batch = next(iter(data.DataLoader(PairDataset(), batch_size=3)))
    assert batch["x"].shape == (3, 2) and batch["y"].tolist() == [0, 1, 0]
    custom = data.DataLoader(PairDataset(), batch_size=2, collate_fn=lambda s: len(s))
    assert list(custom) == [2, 2, 1]


def test_random_split_and_subset():
    ds = data.TensorDataset(wl.arange(10))
    a, b = data.random_split(ds, [7, 3], generator=wl.random.Generator(0))
    ids = np.concatenate([a.get_batch(np.arange(7))[0].numpy(), b.get_batch(np.arange(3))[0].numpy()])
    np.testing.assert_array_equal(np.sort(ids), np.arange(10))
    c, d = data.random_split(ds, [0.5, 0.5])
    assert len(c) == len(d) == 5
    with pytest.raises(ValueError, match="lengths sum to 11"):
        data.random_split(ds, [8, 3])


def test_train_test_split_stratified():
    x = wl.arange(100).reshape(100, 1)
    y = wl.tensor(np.r_[np.zeros(80, int), np.ones(20, int)])
    xtr, xte, ytr, yte = data.train_test_split(x, y, test_size=0.25, stratify=y,
                                               generator=wl.random.Generator(0))
    assert len(xte) == 25 and len(xtr) == 75
    assert yte.numpy().mean() == pytest.approx(0.2)
    assert set(np.concatenate([xtr.numpy()[:, 0], xte.numpy()[:, 0]])) == set(range(100))
    with pytest.raises(ValueError, match="different lengths"):
        data.train_test_split(x, wl.arange(5))


def test_standardizer():
    x = wl.tensor(np.random.default_rng(0).normal(5, 3, (200, 3)))
    s = data.Standardizer().fit(x)
    z = s.transform(x).numpy()
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-12)
    np.testing.assert_allclose(s.inverse_transform(s.transform(x)).numpy(), x.numpy())
    with pytest.raises(RuntimeError, match="call fit"):
        data.Standardizer().transform(x)


def test_bundled_and_synthetic_datasets():
    for loader, n, d in [(data.load_digits, 1797, 64), (data.load_iris, 150, 4),
                         (data.load_breast_cancer, 569, 30), (data.load_wine, 178, 13)]:
        x, y = loader()
        assert x.shape == (n, d) and x.dtype == wl.float32 and y.dtype == wl.int64
    x, y = data.load_diabetes()
    assert x.shape == (442, 10) and y.dtype == wl.float32
    for make in (data.make_xor, data.make_moons, data.make_circles, data.make_spirals):
        x, y = make(100, generator=wl.random.Generator(0))
        assert x.shape == (100, 2) and set(np.unique(y.numpy())) == {0, 1}
    xa, _ = data.make_moons(50, generator=wl.random.Generator(3))
    xb, _ = data.make_moons(50, generator=wl.random.Generator(3))
    np.testing.assert_array_equal(xa.numpy(), xb.numpy())
    x, y = data.make_regression_1d(30, noise=0.0)
    np.testing.assert_allclose(y.numpy(), np.sin(x.numpy()[:, 0]), atol=1e-6)


def test_readers(tmp_path):
    p = tmp_path / "a.npz"
    np.savez(p, x=np.ones((2, 3)), y=np.arange(2))
    got = data.read_npz(p)
    assert got["x"].shape == (2, 3) and got["y"].dtype == wl.int64
    bad = tmp_path / "obj.npz"
    np.savez(bad, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="without pickle"):
        data.read_npz(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a valid npz"):
        data.read_npz(junk)
    with pytest.raises(FileNotFoundError):
        data.read_npz(tmp_path / "missing.npz")
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,label\n1,2,0\n3,4.5,1\n5,6,1\n")
    x, y = data.read_csv(csv, target="label")
    assert x.shape == (3, 2) and y.tolist() == [0, 1, 1] and y.dtype == wl.int64
    assert data.read_csv(csv).shape == (3, 3)
    csv.write_text("a,b\n1,2\n3\n")
    with pytest.raises(ValueError, match="line 3 has 1 fields, expected 2"):
        data.read_csv(csv)
    csv.write_text("a,b\n1,x\n")
    with pytest.raises(ValueError, match="non-numeric"):
        data.read_csv(csv)
