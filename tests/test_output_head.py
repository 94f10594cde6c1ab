"""Tests for keras_tricks.layers.OutputHead."""

import math
import os

import keras
import numpy as np
import pytest

from keras_tricks import imbalance
from keras_tricks.layers import OutputHead


def _initial_loss(y, head, loss, d=3, n=None):
    n = len(y) if n is None else n
    x = np.random.default_rng(0).normal(size=(n, d)).astype("float32")
    model = keras.Sequential([keras.Input((d,)), head])
    model.compile(loss=loss)
    return model.evaluate(x, y, batch_size=n, verbose=0)


def _entropy(p):
    p = np.asarray(p, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_initial_loss_binary_is_prior_entropy():
    y = np.array([0] * 93 + [1] * 7, dtype="float32")
    head = OutputHead(1, "sigmoid", prior=y, kernel_initializer="zeros")
    got = _initial_loss(y[:, None], head, "binary_crossentropy")
    assert got == pytest.approx(_entropy([0.93, 0.07]), abs=1e-4)
    assert got < math.log(2) - 0.3


@pytest.mark.parametrize("sparse", [True, False])
def test_initial_loss_categorical_is_prior_entropy(sparse):
    labels = np.array([0] * 70 + [1] * 20 + [2] * 6 + [3] * 4)
    y = labels if sparse else np.eye(4, dtype="float32")[labels]
    head = OutputHead(4, "softmax", prior=y, kernel_initializer="zeros")
    loss = "sparse_categorical_crossentropy" if sparse else "categorical_crossentropy"
    got = _initial_loss(y, head, loss)
    assert got == pytest.approx(_entropy([0.7, 0.2, 0.06, 0.04]), abs=1e-4)


def test_initial_loss_softmax_with_absent_class():
    labels = np.array([0] * 8 + [2] * 2)  # class 1 never occurs
    head = OutputHead(3, "softmax", prior=labels, kernel_initializer="zeros")
    got = _initial_loss(labels, head, "sparse_categorical_crossentropy")
    assert got == pytest.approx(_entropy([0.8, 0.2]), abs=1e-4)


def test_initial_loss_multilabel_is_mean_column_entropy():
    y = np.zeros((40, 3), "float32")
    y[:10, 0] = 1
    y[:2, 1] = 1
    y[5:25, 2] = 1
    head = OutputHead(3, "sigmoid", prior=y, kernel_initializer="zeros")
    got = _initial_loss(y, head, "binary_crossentropy")
    expected = np.mean([_entropy([p, 1 - p]) for p in (0.25, 0.05, 0.5)])
    assert got == pytest.approx(expected, abs=1e-4)


def test_initial_loss_linear_is_variance():
    y = np.random.default_rng(1).normal(3.0, 2.0, size=(64, 2)).astype("float32")
    head = OutputHead(2, prior=y, kernel_initializer="zeros")
    got = _initial_loss(y, head, "mse")
    assert got == pytest.approx(
        float(y.astype(np.float64).var(axis=0).mean()), abs=1e-4
    )


def test_balanced_weights_prior_is_uniform():
    y = np.array([0] * 90 + [1] * 10)
    sw = imbalance.sample_weights(y)
    head = OutputHead(1, "sigmoid", prior=y, sample_weight=sw)
    np.testing.assert_allclose(head.initial_bias, [0.0], atol=1e-6)
    x = np.zeros((100, 3), "float32")
    model = keras.Sequential([keras.Input((3,)), head])
    model.compile(loss="binary_crossentropy")
    # under the weights the loss sees a uniform prior: log 2 at init
    got = model.evaluate(x, y, sample_weight=sw, batch_size=100, verbose=0)
    assert got == pytest.approx(math.log(2), abs=1e-4)


def test_float32_output_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    y = np.array([0, 0, 0, 1, 2])
    inp = keras.Input((4,))
    hidden = keras.layers.Dense(8)(inp)
    head = OutputHead(3, "softmax", prior=y)
    out = head(hidden)
    assert hidden.dtype == "float16"
    assert out.dtype == "float32"
    assert head.compute_dtype == "float32" and head.kernel.dtype == "float32"
    model = keras.Model(inp, out)
    pred = model(np.ones((2, 4), "float32"))
    assert keras.backend.standardize_dtype(pred.dtype) == "float32"
    plain = keras.layers.Dense(3, "softmax")(hidden)
    assert plain.dtype == "float16"  # the trap OutputHead avoids


def test_config_stores_bias_not_labels_and_round_trips(tmp_path):
    y = np.array([0] * 30 + [1] * 5 + [2] * 2)
    head = OutputHead(3, "softmax", prior=y, name="head")
    config = head.get_config()
    assert "prior" not in config and "bias_initializer" not in config
    np.testing.assert_allclose(
        config["bias"], imbalance.output_bias(y, "softmax"), rtol=1e-6
    )
    clone = OutputHead.from_config(config)
    clone.build((None, 4))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(clone.bias),
        imbalance.output_bias(y, "softmax"),
        rtol=1e-6,
    )
    model = keras.Sequential([keras.Input((4,)), head])
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.layers[-1], OutputHead)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(x)),
        keras.ops.convert_to_numpy(model(x)),
        rtol=1e-6,
    )


def test_explicit_bias_plain_head_and_units_inferred():
    head = OutputHead(bias=[0.5, -1.0], activation="tanh")
    assert head.units == 2
    head.build((None, 3))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head.bias), [0.5, -1.0])
    plain = OutputHead(4)
    assert plain.get_config()["bias"] is None
    assert OutputHead.from_config(plain.get_config()).units == 4
    assert (
        OutputHead(activation="sigmoid", prior=np.zeros((10, 3)) + [1, 0, 0]).units == 3
    )


_ERRORS = [
    (dict(units=2, activation="sigmoid", prior=np.array([0, 1])), "units"),
    (dict(units=1, prior=np.array([0, 1]), bias=[0.0]), "both"),
    (dict(units=1, activation="relu", prior=np.array([0, 1])), "activation"),
    (dict(units=1, prior=np.array([0.0, 1.0]), use_bias=False), "use_bias"),
    (dict(units=1, bias=[0.0], bias_initializer="ones"), "bias_initializer"),
    (dict(units=1, sample_weight=[1.0]), "sample_weight"),
    (dict(), "units"),
]


def test_errors():
    for kwargs, match in _ERRORS:
        with pytest.raises(ValueError, match=match):
            OutputHead(**kwargs)


@pytest.mark.parametrize("units", ["3", 0, -2, 2.5, True])
def test_units_must_be_a_positive_integer(units):
    with pytest.raises(ValueError, match=f"Received: units={units!r}"):
        OutputHead(units)


def test_numpy_integer_units():
    head = OutputHead(np.int64(3))
    assert head.units == 3 and type(head.get_config()["units"]) is int
