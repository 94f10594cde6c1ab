"""ensemble_predict / ensemble_model / tta_predict / update_bn against references."""

import keras
import numpy as np
import pytest

import keras_tricks
from keras_tricks.ensembles import (
    ensemble_model,
    ensemble_predict,
    tta_predict,
    update_bn,
)


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


def _snapshots(model, count=3):
    rng = np.random.default_rng(1)
    return [
        [rng.normal(size=w.shape).astype("float32") for w in model.get_weights()]
        for _ in range(count)
    ]


def _forward(weights, x):
    kernel, bias = weights
    return x.astype("float64") @ kernel + bias


def test_ensemble_predict_matches_numpy():
    model = _model()
    snapshots = _snapshots(model)
    x = np.random.default_rng(2).normal(size=(10, 4)).astype("float32")
    logits = [_forward(w, x) for w in snapshots]
    np.testing.assert_allclose(
        ensemble_predict(model, snapshots, x), np.mean(logits, 0), atol=1e-5
    )
    soft = [np.exp(v) / np.exp(v).sum(1, keepdims=True) for v in logits]
    np.testing.assert_allclose(
        ensemble_predict(model, snapshots, x, activation="softmax"),
        np.mean(soft, 0),
        atol=1e-6,
    )
    sig = [1 / (1 + np.exp(-v)) for v in logits]
    np.testing.assert_allclose(
        ensemble_predict(model, snapshots, x, activation="sigmoid", batch_size=4),
        np.mean(sig, 0),
        atol=1e-6,
    )
    model2 = ensemble_model(model, snapshots, activation="softmax")
    np.testing.assert_allclose(model2.predict(x, verbose=0), np.mean(soft, 0), atol=1e-5)


def test_ensemble_errors():
    model = _model()
    with pytest.raises(ValueError, match="snapshots"):
        ensemble_predict(model, [], np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"snapshots\[0\]"):
        ensemble_predict(model, [[np.zeros((4, 2)), np.zeros(2)]], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="activation"):
        ensemble_predict(model, _snapshots(model), np.zeros((1, 4)), activation="relu")


class _Shift:
    """A deterministic 'augmentation': adds 1, 2, 3, ... on successive calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        return batch + float(self.calls)


def test_tta_predict_matches_the_hand_average():
    model = _model()
    x = np.random.default_rng(3).normal(size=(5, 4)).astype("float32")
    weights = model.get_weights()
    # batch_size=5: one batch, views x+1, x+2, x+3 and x itself.
    expected = np.mean([_forward(weights, x + k) for k in range(4)], 0)
    got = tta_predict(model, x, _Shift(), n=3, batch_size=5)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    expected = np.median([_forward(weights, x + k) for k in range(1, 4)], 0)
    got = tta_predict(model, x, _Shift(), n=3, batch_size=5, reduce="median",
                      include_original=False)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # Several batches: each batch gets its own views.
    shift = _Shift()
    got = tta_predict(model, x, shift, n=2, batch_size=2)
    assert shift.calls == 6 and got.shape == (5, 3)


def test_tta_with_keras_random_layers_is_random_and_batched():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    x = np.random.default_rng(0).random((6, 8, 8, 1)).astype("float32")
    shift = keras.layers.RandomTranslation(0.2, 0.2, seed=1)
    plain = model.predict(x, verbose=0)
    got = tta_predict(model, x, shift, n=4, batch_size=4)
    assert got.shape == (6, 10)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    assert not np.allclose(got, plain, atol=1e-4)  # the layer was active


def test_tta_errors():
    model = _model()
    x = np.zeros((2, 4), "float32")
    with pytest.raises(TypeError, match="augment"):
        tta_predict(model, x, "flip")
    with pytest.raises(ValueError, match="Received: n=0"):
        tta_predict(model, x, _Shift(), n=0)
    with pytest.raises(ValueError, match="reduce"):
        tta_predict(model, x, _Shift(), reduce="max")
    with pytest.raises(TypeError, match="include_original"):
        tta_predict(model, x, _Shift(), include_original=1)
    assert tta_predict(model, x, _Shift(), n=np.int64(2)).shape == (2, 3)


def _bn_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(4, name="hidden"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Dense(2),
    ])


def test_update_bn_matches_torch_update_bn():
    torch = pytest.importorskip("torch")
    from torch.optim import swa_utils

    model = _bn_model()
    x = np.random.default_rng(0).normal(size=(40, 5)).astype("float32") * 3 + 1
    assert update_bn(model, x, batch_size=8) == 5
    kernel, bias = model.get_layer("hidden").get_weights()
    bn = model.get_layer("bn")

    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(kernel.T))
        net[0].bias.copy_(torch.tensor(bias))
    loader = [torch.tensor(x[i : i + 8]) for i in range(0, 40, 8)]
    swa_utils.update_bn(loader, net)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bn.moving_mean),
        net[1].running_mean.numpy(), rtol=1e-5, atol=1e-6,
    )
    # PyTorch keeps the unbiased batch variance, Keras the biased one.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bn.moving_variance),
        net[1].running_var.numpy() * 7 / 8, rtol=1e-5,
    )
    assert bn.momentum == 0.99  # put back


def test_update_bn_takes_datasets_and_batches():
    model = _bn_model()
    x = np.random.default_rng(0).normal(size=(24, 5)).astype("float32")
    y = np.zeros((24, 2), "float32")
    update_bn(model, (x, y), batch_size=8)
    reference = keras.ops.convert_to_numpy(model.get_layer("bn").moving_mean)
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 24, 8)]
    assert update_bn(model, iter(batches)) == 3
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model.get_layer("bn").moving_mean), reference, atol=1e-6
    )
    assert update_bn(model, iter(batches), steps=2) == 2
    assert update_bn(_model(), x) == 0  # no BatchNormalization
    with pytest.raises(ValueError, match="empty"):
        update_bn(model, iter([]))
    with pytest.raises(ValueError, match="batch_size"):
        update_bn(model, x, batch_size=0)


def test_public_names():
    assert keras_tricks.ensemble_predict is ensemble_predict
    assert keras_tricks.tta_predict is tta_predict
