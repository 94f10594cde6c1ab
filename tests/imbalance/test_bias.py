"""Tests for keras_tricks.imbalance.bias: output_bias, bias_initializer, PriorBias."""

import math

import keras
import numpy as np
import pytest

from keras_tricks import imbalance


def test_output_bias_formulas():
    y = np.array([0] * 90 + [1] * 10)
    np.testing.assert_allclose(
        imbalance.output_bias(y, "sigmoid"), [math.log(0.1 / 0.9)], rtol=1e-6
    )
    np.testing.assert_allclose(
        imbalance.output_bias(y, "softmax"),
        np.log(np.array([0.9, 0.1]) + 1e-7) - math.log(2),
        rtol=1e-6,
    )
    yr = np.array([[1.0, 10.0], [3.0, 20.0]])
    np.testing.assert_allclose(imbalance.output_bias(yr, "linear"), [2.0, 15.0])
    np.testing.assert_allclose(imbalance.output_bias(yr[:, 0], None), [2.0])
    ml = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    p = np.array([0.75, 0.25, 1e-7])
    np.testing.assert_allclose(
        imbalance.output_bias(ml, "sigmoid"), np.log(p / (1 - p)), rtol=1e-5
    )
    out = imbalance.output_bias(y, "sigmoid")
    assert out.dtype == np.float32 and out.shape == (1,)


def test_output_bias_softmax_num_classes_strings_and_soft_labels():
    y = np.array([0, 0, 2, 2])
    b = imbalance.output_bias(y, "softmax", num_classes=4)
    np.testing.assert_allclose(
        b, np.log(np.array([0.5, 0, 0.5, 0]) + 1e-7) - math.log(4), rtol=1e-6
    )
    b = imbalance.output_bias(np.array(["b", "a", "a", "a"]), "softmax")
    np.testing.assert_allclose(b, np.log([0.75 + 1e-7, 0.25 + 1e-7]) - math.log(2))
    soft = np.array([[0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(
        imbalance.output_bias(soft, "softmax"),
        np.log(np.array([0.75, 0.25]) + 1e-7) - math.log(2),
        rtol=1e-6,
    )


def test_output_bias_with_balanced_weights_is_uniform():
    y = np.array([0] * 90 + [1] * 7 + [2] * 3)
    sw = imbalance.sample_weights(y)
    b = imbalance.output_bias(y, "softmax", sample_weight=sw)
    np.testing.assert_allclose(b, b[0], atol=1e-6)
    yb = np.array([0] * 95 + [1] * 5)
    np.testing.assert_allclose(
        imbalance.output_bias(
            yb, "sigmoid", sample_weight=imbalance.sample_weights(yb)
        ),
        [0.0],
        atol=1e-6,
    )
    # oversampling to "max" gives the same prior as the balanced weights
    idx = imbalance.oversample_indices(y, seed=0)
    np.testing.assert_allclose(imbalance.output_bias(y[idx], "softmax"), b, atol=1e-6)


_BIAS_ERRORS = [
    (dict(y=np.array([]), activation="sigmoid"), "at least one sample"),
    (dict(y=np.array([0, 1]), activation="relu"), "activation"),
    (dict(y=np.array([0, 2.0]), activation="sigmoid"), "sigmoid"),
    (dict(y=np.array([0, 1]), sample_weight=[1.0, -1.0]), "sample_weight"),
    (dict(y=np.array([0, 1]), sample_weight=[1.0, np.nan]), "sample_weight"),
    (dict(y=np.array([0, 1]), sample_weight=[0.0, 0.0]), "all zeros"),
    (dict(y=np.array([0, 1]), sample_weight=[1.0]), "one weight per sample"),
    (dict(y=np.array([[0.3, 0.3]]), activation="softmax"), "sum to 1"),
    (dict(y=np.array([0, 3]), activation="softmax", num_classes=2), "num_classes"),
    (dict(y=np.array([0, 1]), eps=0.0), "eps"),
]


def test_output_bias_errors():
    for kwargs, match in _BIAS_ERRORS:
        with pytest.raises(ValueError, match=match):
            imbalance.output_bias(**kwargs)


def test_prior_bias_initializer_round_trip():
    init = imbalance.bias_initializer(np.array([0, 0, 0, 1, 2]), "softmax")
    assert isinstance(init, imbalance.PriorBias)
    config = keras.saving.serialize_keras_object(init)
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, imbalance.PriorBias)
    assert restored.get_config() == init.get_config()
    values = keras.ops.convert_to_numpy(restored((3,), "float32"))
    np.testing.assert_allclose(
        values, imbalance.output_bias([0, 0, 0, 1, 2], "softmax")
    )
    layer = keras.layers.Dense(3, bias_initializer=restored)
    layer.build((None, 2))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.bias), values)
    with pytest.raises(ValueError, match="units=3"):
        restored((4,), "float32")
    with pytest.raises(ValueError, match="bias"):
        imbalance.PriorBias([])
