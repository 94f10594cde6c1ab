"""GradientCentralization: the update equals a hand-computed centralized one."""

import os

import keras
import numpy as np
import pytest

from keras_tricks.optimizers import GradientCentralization, centralize_gradients


def _centralized(g):
    """NumPy reference: subtract the mean over every axis but the last."""
    if g.ndim < 2:
        return g
    return g - g.mean(axis=tuple(range(g.ndim - 1)), keepdims=True)


def _model():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(3, name="head")(h)
    return keras.Model(inputs, outputs)


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6, 6, 2)).astype("float32")
    y = rng.normal(size=(8, 3)).astype("float32")
    return x, y


def _one_step(optimizer, batch_size=8):
    """Weights before and after one epoch (one step by default) on 8 samples."""
    x, y = _data()
    model = _model()
    model.compile(optimizer=optimizer, loss="mse")
    before = [np.array(w) for w in model.get_weights()]
    model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    return before, model.get_weights()


def _raw_grads(lr=0.1):
    before, after = _one_step(keras.optimizers.SGD(lr))
    return before, [(b - a) / lr for b, a in zip(before, after, strict=True)]


@pytest.mark.parametrize("conv_only", [False, True])
def test_update_matches_numpy_reference(conv_only):
    lr = 0.1
    before, grads = _raw_grads(lr)
    shapes = [g.shape for g in grads]
    assert shapes == [(3, 3, 2, 4), (4,), (64, 3), (3,)]
    _, after = _one_step(
        GradientCentralization(keras.optimizers.SGD(lr), conv_only=conv_only)
    )
    for w0, g, w1 in zip(before, grads, after, strict=True):
        centralize = g.ndim > (3 if conv_only else 1)
        expected = w0 - lr * (_centralized(g) if centralize else g)
        np.testing.assert_allclose(w1, expected, rtol=1e-4, atol=1e-6)
    # The trick really changed the kernel updates (not a silent no-op).
    bare = [w0 - lr * g for w0, g in zip(before, grads, strict=True)]
    assert np.abs(after[0] - bare[0]).max() > 1e-4
    if conv_only:
        np.testing.assert_allclose(after[2], bare[2], rtol=1e-5, atol=1e-7)
    else:
        assert np.abs(after[2] - bare[2]).max() > 1e-4
    # Biases pass through.
    np.testing.assert_allclose(after[1], bare[1], rtol=1e-5, atol=1e-7)


def test_changes_adam_updates():
    # Adam's first step is about sign(gradient), which centralizing rarely
    # flips; over four steps the moments differ visibly.
    before, after = _one_step(GradientCentralization(keras.optimizers.Adam(0.01)), 2)
    _, bare = _one_step(keras.optimizers.Adam(0.01), 2)
    assert np.abs(after[0] - bare[0]).max() > 1e-4
    assert np.abs(after[2] - bare[2]).max() > 1e-4


def test_exclude_keeps_raw_gradient():
    lr = 0.1
    before, grads = _raw_grads(lr)
    _, after = _one_step(
        GradientCentralization(keras.optimizers.SGD(lr), exclude="head")
    )
    np.testing.assert_allclose(
        after[2], before[2] - lr * grads[2], rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        after[0], before[0] - lr * _centralized(grads[0]), rtol=1e-4, atol=1e-6
    )


def test_mixed_float16_update_is_centralized():
    keras.config.set_dtype_policy("mixed_float16")
    before, after = _one_step(GradientCentralization(keras.optimizers.SGD(0.1)))
    delta = after[0] - before[0]
    assert np.abs(delta).max() > 1e-4
    np.testing.assert_allclose(delta.mean(axis=(0, 1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose((after[2] - before[2]).mean(axis=0), 0.0, atol=1e-6)


def test_centralize_gradients_function():
    rng = np.random.default_rng(1)
    grads = [
        rng.normal(size=(3, 3, 2, 4)).astype("float32"),
        rng.normal(size=(4,)).astype("float32"),
        rng.normal(size=(5, 3)).astype("float32"),
        None,
    ]
    out = centralize_gradients(
        [g if g is None else keras.ops.convert_to_tensor(g) for g in grads]
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out[0]), _centralized(grads[0]), atol=1e-6
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out[1]), grads[1])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out[2]), _centralized(grads[2]), atol=1e-6
    )
    assert out[3] is None
    conv = centralize_gradients(
        [keras.ops.convert_to_tensor(g) for g in grads[:3]], conv_only=True
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(conv[2]), grads[2])
    variables = [
        keras.Variable(np.zeros(g.shape, "float32"), name=n)
        for g, n in zip(grads[:3], ["conv_k", "conv_b", "dense_k"], strict=True)
    ]
    excl = centralize_gradients(
        [keras.ops.convert_to_tensor(g) for g in grads[:3]],
        variables,
        exclude=["^dense"],
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(excl[2]), grads[2])
    with pytest.raises(ValueError, match="needs `variables`"):
        centralize_gradients(grads, exclude="dense")


def test_bad_arguments():
    with pytest.raises(ValueError, match="conv_only=1"):
        GradientCentralization(keras.optimizers.SGD(), conv_only=1)
    with pytest.raises(ValueError, match="exclude="):
        GradientCentralization(keras.optimizers.SGD(), exclude="(")
    with pytest.raises(ValueError, match="Received: learning_rate=0.1"):
        GradientCentralization(keras.optimizers.SGD(), learning_rate=0.1)
    with pytest.raises(TypeError, match="Received: optimizer='sgd'"):
        GradientCentralization("sgd")
    with pytest.raises(ValueError, match="LossScaleOptimizer cannot sit inside"):
        GradientCentralization(
            keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD())
        )


def test_delegation():
    inner = keras.optimizers.SGD(0.05)
    opt = GradientCentralization(inner)
    np.testing.assert_allclose(float(opt.learning_rate), 0.05)
    opt.learning_rate = 0.2
    np.testing.assert_allclose(float(inner.learning_rate), 0.2)
    assert opt.iterations is inner.iterations


def test_config_round_trip_and_saved_model(tmp_path):
    opt = GradientCentralization(
        keras.optimizers.Adam(0.003), conv_only=True, exclude=["head"]
    )
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(opt)
    )
    assert isinstance(restored, GradientCentralization)
    assert restored.get_config() == opt.get_config()
    x, y = _data()
    model = _model()
    model.compile(
        optimizer=GradientCentralization(keras.optimizers.Adam(0.01)), loss="mse"
    )
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, GradientCentralization)
    assert int(loaded.optimizer.iterations) == 2
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
