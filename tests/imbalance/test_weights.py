"""Tests for keras_tricks.imbalance.weights: balanced class and sample weights."""

import math

import keras
import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from keras_tricks import imbalance


def test_class_weights_match_sklearn_for_int_labels():
    y = np.array([3] * 50 + [7] * 30 + [9] * 5)
    expected = compute_class_weight("balanced", classes=np.array([3, 7, 9]), y=y)
    got = imbalance.class_weights(y)
    assert list(got) == [3, 7, 9]
    assert all(type(k) is int for k in got)
    np.testing.assert_allclose(list(got.values()), expected)


def test_class_weights_one_hot_keys_are_columns():
    codes = np.array([0] * 6 + [2] * 2)
    y = np.eye(3)[codes]
    got = imbalance.class_weights(y)
    expected = compute_class_weight("balanced", classes=np.array([0, 2]), y=codes)
    assert list(got) == [0, 2]
    np.testing.assert_allclose(list(got.values()), expected)


def test_class_weights_strings_return_index_mapping():
    y = np.array(["spam"] * 2 + ["ham"] * 6)
    weights, classes = imbalance.class_weights(y, return_classes=True)
    assert classes.tolist() == ["ham", "spam"]  # sorted, as LabelEncoder
    assert weights == pytest.approx({0: 8 / (2 * 6), 1: 8 / (2 * 2)})
    # The same codes a LabelEncoder produces index the dict.
    from sklearn.preprocessing import LabelEncoder

    codes = LabelEncoder().fit_transform(y)
    np.testing.assert_allclose(
        imbalance.sample_weights(y), [weights[c] for c in codes], rtol=1e-6
    )


def test_class_weights_multilabel_are_positive_weights():
    y = np.array([[1, 0], [0, 1], [0, 1], [0, 0], [1, 1], [0, 0]])
    got = imbalance.class_weights(y)
    assert got == pytest.approx({0: 4 / 2, 1: 3 / 3})
    sw = imbalance.sample_weights(y)
    assert sw.shape == (6, 2)
    np.testing.assert_allclose(sw[:, 0], [2, 1, 1, 1, 2, 1])
    np.testing.assert_allclose(sw[:, 1], 1.0)


def test_sample_weights_custom_dict_and_missing_class():
    y = np.array([0, 1, 2, 2])
    np.testing.assert_allclose(
        imbalance.sample_weights(y, class_weight={0: 3.0, 2: 0.5}), [3, 1, 0.5, 0.5]
    )
    np.testing.assert_allclose(
        imbalance.sample_weights(["a", "b"], class_weight={"b": 2.0}), [1, 2]
    )
    with pytest.raises(ValueError, match="class_weight"):
        imbalance.sample_weights(y, class_weight={0: -1.0})
    with pytest.raises(ValueError, match="class_weight"):
        imbalance.sample_weights(y, class_weight={0: float("nan")})


@pytest.mark.parametrize("one_hot", [False, True])
def test_class_weight_dict_is_what_fit_applies(one_hot):
    # One SGD step with fit(class_weight=dict) equals one with the per-sample
    # weights: the dict keys are the ones Keras looks up.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3)).astype("float32")
    labels = np.array([0] * 8 + [1] * 3 + [2])
    y = np.eye(3, dtype="float32")[labels] if one_hot else labels
    loss = "categorical_crossentropy" if one_hot else "sparse_categorical_crossentropy"

    def one_step(**kw):
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, "softmax")])
        model.compile(keras.optimizers.SGD(0.5), loss)
        model.fit(x, y, batch_size=12, epochs=1, shuffle=False, verbose=0, **kw)
        return model.get_weights()

    a = one_step(class_weight=imbalance.class_weights(y))
    b = one_step(sample_weight=imbalance.sample_weights(y))
    c = one_step()
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a[0], c[0], atol=1e-4)


def test_multilabel_element_weights_recipe():
    # (n, K, 1) outputs and targets: the (n, K) weights apply element by element.
    y = np.array([[1, 0], [0, 1], [0, 0], [1, 1], [0, 0]], dtype="float32")
    sw = imbalance.sample_weights(y)
    x = np.ones((5, 1), "float32")
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(2, kernel_initializer="zeros", bias_initializer="zeros"),
            keras.layers.Reshape((2, 1)),
            keras.layers.Activation("sigmoid"),
        ]
    )
    model.compile(loss="binary_crossentropy")
    got = model.evaluate(x, y[..., None], sample_weight=sw, verbose=0)
    expected = (sw * math.log(2)).sum() / sw.size
    assert got == pytest.approx(expected, rel=1e-5)


_LABEL_ERRORS = [
    (np.array([]), "at least one sample"),
    (np.array([1, 1, 1]), "at least two classes"),
    (np.array([[1, 0], [1, 1]]), "columns \\[0\\]"),
    (np.array([0.5, 1.0]), "integer class labels"),
    (np.array([[0.2, 0.8], [1.0, 0.0]]), "indicator matrix"),
    (np.zeros((2, 2, 2)), "1D"),
]


def test_class_weights_errors():
    for y, match in _LABEL_ERRORS:
        with pytest.raises(ValueError, match=match):
            imbalance.class_weights(y)
