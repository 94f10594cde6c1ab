"""Tests for keras_tricks.imbalance.oversampling: indices and datasets."""

import collections
import math
import tracemalloc

import keras
import numpy as np
import pytest
from imblearn.over_sampling import RandomOverSampler

from keras_tricks import imbalance


def _imblearn_counts(y, strategy):
    x = np.arange(len(y)).reshape(-1, 1)
    _, y_res = RandomOverSampler(
        sampling_strategy=strategy, random_state=0
    ).fit_resample(x, y)
    return collections.Counter(y_res.tolist())


_NAMED = [
    ("max", "all"),
    ("all", "all"),
    ("auto", "auto"),
    ("not majority", "not majority"),
    ("not minority", "not minority"),
    ("minority", "minority"),
]


def test_oversample_counts_match_imblearn():
    codes = np.array([0] * 40 + [1] * 7 + [2] * 13 + [3] * 2)
    for y in (codes, np.array(["a", "b", "c", "d"])[codes]):
        for ours, theirs in _NAMED:
            idx = imbalance.oversample_indices(y, ours, seed=0)
            got = collections.Counter(y[idx].tolist())
            assert got == _imblearn_counts(y, theirs), ours
            np.testing.assert_array_equal(idx[: len(y)], np.arange(len(y)))


def test_oversample_float_and_dict_match_imblearn():
    y = np.array([0] * 40 + [1] * 9)
    for strategy in (0.5, 0.33, 1.0, {0: 40, 1: 30}, {1: 25}, {0: 41, 1: 9}):
        idx = imbalance.oversample_indices(y, strategy, seed=3)
        got = collections.Counter(y[idx].tolist())
        assert got == _imblearn_counts(y, strategy), strategy


def test_oversample_one_hot_and_callable():
    codes = np.array([0] * 10 + [1] * 3)
    y = np.eye(2)[codes]
    idx = imbalance.oversample_indices(y, {1: 6}, seed=0)
    assert np.bincount(codes[idx]).tolist() == [10, 6]
    idx = imbalance.oversample_indices(
        codes, lambda labels: {1: 2 * (labels == 1).sum()}
    )
    assert np.bincount(codes[idx]).tolist() == [10, 6]


def test_oversample_extras_belong_to_class_and_seed():
    y = np.array([0] * 30 + [1] * 4 + [2] * 10)
    a = imbalance.oversample_indices(y, seed=7)
    b = imbalance.oversample_indices(y, seed=7)
    c = imbalance.oversample_indices(y, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    extras = a[len(y) :]
    assert set(extras[y[extras] == 1]) <= set(range(30, 34))
    assert np.bincount(y[a]).tolist() == [30, 30, 30]
    assert a.dtype == np.int32


_STRATEGY_ERRORS = [
    (np.array([0, 0, 1]), {0: 1}, "under-sample class 0"),
    (np.array([0] * 10 + [1] * 5), 0.2, "under-sample"),
    (np.array([0, 0, 1]), {5: 4}, "class 5"),
    (np.array([0, 1, 2]), 0.5, "binary"),
    (np.array([0, 1]), "majority", "sampling_strategy"),
    (np.array([0, 1]), -0.5, "> 0"),
    (np.array([0, 0]), "max", "two classes"),
    (np.array([[1, 1], [0, 1]]), "max", "multi-label"),
    (np.array([], dtype=int), "max", "at least one sample"),
]


def test_oversample_errors():
    for y, strategy, match in _STRATEGY_ERRORS:
        with pytest.raises(ValueError, match=match):
            imbalance.oversample_indices(y, strategy)


def _data(n=103, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (np.arange(n) % 10 == 0).astype("int32")  # 11 positives, 92 negatives
    return x, y


def test_dataset_shapes_partial_batch_and_balance():
    x, y = _data()
    ds = imbalance.OversampledDataset(x, y, batch_size=32, seed=0)
    assert ds.num_samples == 2 * 92
    assert len(ds) == math.ceil(184 / 32)
    sizes = [ds[i][0].shape[0] for i in range(len(ds))]
    assert sizes[-1] == 184 - 32 * 5 and sum(sizes) == 184
    ys = np.concatenate([ds[i][1] for i in range(len(ds))])
    assert np.bincount(ys).tolist() == [92, 92]
    assert set(ds.indices.tolist()) == set(range(len(y)))  # no original dropped
    xb, yb = ds[0]
    idx = ds.indices[:32]
    np.testing.assert_array_equal(xb, x[idx])
    np.testing.assert_array_equal(yb, y[idx])


def test_dataset_redraws_each_epoch_and_is_seeded():
    x, y = _data()
    ds = imbalance.OversampledDataset(x, y, batch_size=16, seed=1)
    first = ds.indices.copy()
    ds.on_epoch_end()
    second = ds.indices.copy()
    assert len(first) == len(second)
    assert not np.array_equal(np.sort(first), np.sort(second))  # new extras
    again = imbalance.OversampledDataset(x, y, batch_size=16, seed=1)
    np.testing.assert_array_equal(again.indices, first)


def test_dataset_no_shuffle_is_sorted():
    x, y = _data()
    ds = imbalance.OversampledDataset(x, y, batch_size=16, shuffle=False, seed=0)
    assert np.all(np.diff(ds.indices) >= 0)


def test_dataset_never_copies_x():
    n, d = 100_000, 64  # 25.6 MB, 1:99
    x = np.ones((n, d), "float32")
    y = (np.arange(n) % 100 == 0).astype("int8")
    tracemalloc.start()
    ds = imbalance.OversampledDataset(x, y, batch_size=1024, seed=0)
    for _ in range(2):
        for i in range(len(ds)):
            ds[i]
        ds.on_epoch_end()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.shares_memory(ds.x, x)
    resampled_copy = ds.num_samples * d * 4  # what fit_resample allocates for x
    assert peak < 0.1 * resampled_copy, (peak, resampled_copy)
    assert peak < 0.2 * x.nbytes, (peak, x.nbytes)


def test_dataset_memmap_is_not_copied(tmp_path):
    x, y = _data()
    mm = np.lib.format.open_memmap(
        tmp_path / "x.npy", mode="w+", dtype="float32", shape=x.shape
    )
    mm[:] = x
    ds = imbalance.OversampledDataset(mm, y, batch_size=8, seed=0)
    assert np.shares_memory(ds.x, mm)
    np.testing.assert_array_equal(ds[0][0], x[ds.indices[:8]])


def test_dataset_multi_input_multi_output_and_weights():
    x, y = _data()
    aux = np.arange(len(y), dtype="float32")
    sw = np.linspace(0.1, 1.0, len(y)).astype("float32")
    ds = imbalance.OversampledDataset(
        {"a": x, "b": aux},
        {"cls": y, "reg": aux * 2},
        batch_size=10,
        sample_weight={"cls": sw, "reg": sw},
        labels=y,
        seed=0,
    )
    xb, yb, wb = ds[3]
    idx = ds.indices[30:40]
    np.testing.assert_array_equal(xb["b"], aux[idx])
    np.testing.assert_array_equal(yb["reg"], 2 * aux[idx])
    np.testing.assert_array_equal(wb["cls"], sw[idx])
    ds_list = imbalance.OversampledDataset([x, aux], [y, aux], labels=y, seed=0)
    xb, yb = ds_list[0]
    assert isinstance(xb, list) and len(xb) == 2
    np.testing.assert_array_equal(xb[1], yb[1])


_DATASET_ERRORS = [
    (dict(y={"a": np.zeros(103)}), "labels"),
    (dict(labels=np.zeros(5)), "labels"),
    (dict(sample_weight=-np.ones(103)), "sample_weight"),
    (dict(sample_weight=np.full(103, np.nan)), "sample_weight"),
    (dict(sample_weight=np.ones(5)), "same number of samples"),
    (dict(batch_size=0), "batch_size"),
    (dict(sampling_strategy={1: 3}), "under-sample"),
    (dict(y=np.zeros(50)), "same number of samples"),
]


def test_dataset_errors():
    for kwargs, match in _DATASET_ERRORS:
        x, y = _data()
        args = dict(x=x, y=y)
        args.update(kwargs)
        with pytest.raises(ValueError, match=match):
            imbalance.OversampledDataset(**args)


class _RecordIndices(keras.callbacks.Callback):
    def __init__(self, ds):
        super().__init__()
        self.ds = ds
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(np.sort(self.ds.indices))


def test_dataset_fit_redraws_every_epoch():
    x, y = _data()
    ds = imbalance.OversampledDataset(x, y, batch_size=32, seed=0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, "sigmoid")])
    model.compile("sgd", "binary_crossentropy")
    rec = _RecordIndices(ds)
    history = model.fit(ds, epochs=3, verbose=0, callbacks=[rec])
    assert len(history.history["loss"]) == 3
    assert not np.array_equal(rec.seen[0], rec.seen[1])
    assert not np.array_equal(rec.seen[1], rec.seen[2])


def test_dataset_fit_multi_output_model():
    # Keras rejects class_weight for multi-output models; the dataset balances.
    x, y = _data()
    inp = keras.Input((4,), name="a")
    out_c = keras.layers.Dense(1, "sigmoid", name="cls")(inp)
    out_r = keras.layers.Dense(1, name="reg")(inp)
    model = keras.Model({"a": inp}, {"cls": out_c, "reg": out_r})
    model.compile("sgd", loss={"cls": "binary_crossentropy", "reg": "mse"})
    with pytest.raises(ValueError, match="class_weight"):
        model.fit(
            {"a": x},
            {"cls": y, "reg": x[:, 0]},
            class_weight={0: 1.0, 1: 5.0},
            verbose=0,
        )
    ds = imbalance.OversampledDataset(
        {"a": x}, {"cls": y, "reg": x[:, 0]}, labels=y, batch_size=32, seed=0
    )
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.backends("tensorflow")
def test_tf_dataset_redraws_and_fits():
    x, y = _data()
    ds = imbalance.oversampled_tf_dataset(x, y, batch_size=32, seed=0)
    assert int(ds.cardinality()) == math.ceil(184 / 32)
    epochs = []
    for _ in range(2):
        xs, ys = zip(*[(a.numpy(), b.numpy()) for a, b in ds], strict=True)
        epochs.append((np.concatenate(xs), np.concatenate(ys)))
    for _xs, ys in epochs:
        assert np.bincount(ys).tolist() == [92, 92]
    assert not np.array_equal(np.sort(epochs[0][0][:, 0]), np.sort(epochs[1][0][:, 0]))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, "sigmoid")])
    model.compile("sgd", "binary_crossentropy")
    history = model.fit(ds, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    dsw = imbalance.oversampled_tf_dataset(
        {"a": x}, y, sample_weight=np.ones(len(y), "float32"), batch_size=50
    )
    xb, yb, wb = next(iter(dsw))
    assert xb["a"].shape == (50, 4) and wb.shape == (50,)
