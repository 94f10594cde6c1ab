"""ShuffleCaption: tags kept, prefix fixed, orders uniform, dropout rate, tf.data."""

import itertools
import math

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from keras_tricks.layers import ShuffleCaption  # noqa: E402


def _split(value):
    return value.decode().split(", ") if value else []


def _chi_square_p(counts, expected):
    """Upper tail of the chi-square statistic (scipy when present)."""
    stat = float(((counts - expected) ** 2 / expected).sum())
    dof = len(counts) - 1
    scipy_stats = pytest.importorskip("scipy.stats")
    return scipy_stats.chi2.sf(stat, dof)


def test_multiset_kept_prefix_fixed_and_spaces_stripped():
    layer = ShuffleCaption(keep_tokens=2, seed=0)
    caption = "sks dog,  red collar ,grass, sunny,, sitting"
    out = layer([caption] * 50).numpy()
    tags = ["sks dog", "red collar", "grass", "sunny", "sitting"]
    orders = set()
    for value in out:
        got = _split(value)
        assert sorted(got) == sorted(tags)
        assert got[:2] == tags[:2]
        orders.add(tuple(got))
    assert len(orders) > 1


@pytest.mark.parametrize("tags, keep", [(4, 1), (4, 0)])
def test_orders_are_uniform_over_permutations(tags, keep):
    names = [f"t{i}" for i in range(tags)]
    free = tags - keep
    perms = list(itertools.permutations(names[keep:]))
    draws = 200 * len(perms)
    layer = ShuffleCaption(keep_tokens=keep, seed=1)
    out = layer([", ".join(names)] * draws).numpy()
    index = {p: i for i, p in enumerate(perms)}
    counts = np.zeros(len(perms))
    for value in out:
        counts[index[tuple(_split(value)[keep:])]] += 1
    assert len(perms) == math.factorial(free)
    assert _chi_square_p(counts, draws / len(perms)) > 1e-3
    # A broken shuffle (always the same order) fails the same test.
    biased = np.zeros(len(perms))
    biased[0] = draws
    assert _chi_square_p(biased, draws / len(perms)) < 1e-3


def test_each_call_draws_a_new_order_and_seeds_reproduce():
    caption = ", ".join(f"t{i}" for i in range(8))
    a, b = ShuffleCaption(seed=3), ShuffleCaption(seed=3)
    first = [a(caption).numpy() for _ in range(3)]
    assert len(set(first)) == 3
    assert [b(caption).numpy() for _ in range(3)] == first


def test_tag_dropout_rate():
    rate, rows, free = 0.3, 2000, 10
    names = ["keep"] + [f"t{i}" for i in range(free)]
    layer = ShuffleCaption(keep_tokens=1, tag_dropout=rate, seed=0)
    out = layer([", ".join(names)] * rows).numpy()
    kept = [_split(v) for v in out]
    assert all(k[0] == "keep" for k in kept)
    dropped = rows * free - sum(len(k) - 1 for k in kept)
    n = rows * free
    sigma = math.sqrt(n * rate * (1 - rate))
    assert abs(dropped - n * rate) < 4 * sigma
    assert all(len(set(k)) == len(k) for k in kept)


def test_shapes_and_no_shuffle():
    layer = ShuffleCaption(shuffle=False, join_separator="|", separator=";")
    out = layer(np.array([["a;b", "c ; d;e"]]))
    assert out.shape == (1, 2)
    assert out.numpy().tolist() == [[b"a|b", b"c|d|e"]]
    assert layer("x").numpy() == b"x"
    assert layer("").numpy() == b""


def test_in_a_tf_data_pipeline_feeding_the_backend():
    """Captions of numbers, shuffled in tf.data, parsed and fed to `fit`."""
    layer = ShuffleCaption(keep_tokens=1, seed=0)
    captions = ["1, 2, 3, 4", "5, 6, 7, 8"] * 8

    def parse(text):
        values = tf.strings.to_number(tf.strings.split(text, ", "))
        return values.to_tensor(shape=[None, 4]), values[:, :1].to_tensor()

    ds = tf.data.Dataset.from_tensor_slices(captions).batch(4).map(layer).map(parse)
    first = [x.numpy() for x, _ in ds]
    second = [x.numpy() for x, _ in ds]
    stacked = np.concatenate(first)
    assert np.all(np.sort(stacked, axis=1) == np.array([[1, 2, 3, 4], [5, 6, 7, 8]] * 8))
    assert np.all(stacked[:, 0] == np.array([1, 5] * 8))
    assert any(not np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    history = model.fit(ds, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    # Unbatched elements too.
    unbatched = tf.data.Dataset.from_tensor_slices(captions[:2]).map(layer)
    assert [sorted(_split(v.numpy())) for v in unbatched] == [
        ["1", "2", "3", "4"], ["5", "6", "7", "8"]
    ]


def test_config_round_trip():
    layer = ShuffleCaption(keep_tokens=np.int64(2), separator="|", join_separator=" | ",
                           tag_dropout=np.float32(0.25), shuffle=True, seed=7)
    config = layer.get_config()
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert again.get_config() == config
    assert config["keep_tokens"] == 2 and config["tag_dropout"] == 0.25
    caption = "a|b|c|d|e"
    assert ShuffleCaption.from_config(config)(caption).numpy() == layer(caption).numpy()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(keep_tokens=-1), "keep_tokens"),
        (dict(keep_tokens=1.5), "keep_tokens"),
        (dict(separator=""), "separator"),
        (dict(join_separator=3), "join_separator"),
        (dict(tag_dropout=1.0), "tag_dropout"),
        (dict(tag_dropout=True), "tag_dropout"),
        (dict(shuffle="yes"), "shuffle"),
        (dict(seed=1.5), "seed"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ShuffleCaption(**kwargs)
