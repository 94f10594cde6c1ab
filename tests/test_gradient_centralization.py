"""GradientCentralization: the update equals a hand-computed centralized one."""

import os

import keras
import numpy as np
import pytest

from keras_tricks.optimizers import GradientCentralization, centralize_gradients


@keras.saving.register_keras_serializable(package="kt_test_gc")
def _in_head(variable):
    return variable.path.startswith("head/")


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


def test_exclude_callable_keeps_raw_gradient(tmp_path):
    lr = 0.1
    before, grads = _raw_grads(lr)
    for exclude in (_in_head, lambda v: v.path.startswith("head/")):
        _, after = _one_step(
            GradientCentralization(keras.optimizers.SGD(lr), exclude=exclude)
        )
        np.testing.assert_allclose(
            after[2], before[2] - lr * grads[2], rtol=1e-4, atol=1e-6
        )
        np.testing.assert_allclose(
            after[0], before[0] - lr * _centralized(grads[0]), rtol=1e-4, atol=1e-6
        )
    opt = GradientCentralization(keras.optimizers.SGD(lr), exclude=_in_head)
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(opt)
    )
    assert restored.exclude is _in_head
    assert restored.get_config() == opt.get_config()
    unregistered = GradientCentralization(keras.optimizers.SGD(), exclude=lambda v: 1)
    with pytest.raises(ValueError, match="`exclude` of GradientCentralization is"):
        unregistered.get_config()
    with pytest.raises(TypeError, match="must return a Python bool"):
        _one_step(unregistered)
    variables = [keras.Variable(np.zeros((2, 3), "float32"), name="k")]
    kept = centralize_gradients(
        [keras.ops.ones((2, 3))], variables, exclude=lambda v: v.name == "k"
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kept[0]), 1.0)


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


# --- the axes, per layer type (hand-written here, not read from the code) ----

# name: (input shape, integer inputs, layer factory, {weight path leaf: axes})
# where `axes=None` means "left as it is".
LAYER_CASES = {
    "dense": ((5,), False, lambda: keras.layers.Dense(3), {"kernel": (0,)}),
    "conv1d": ((6, 2), False, lambda: keras.layers.Conv1D(3, 3), {"kernel": (0, 1)}),
    "conv2d": (
        (5, 5, 2),
        False,
        lambda: keras.layers.Conv2D(3, 3),
        {"kernel": (0, 1, 2)},
    ),
    "conv3d": (
        (4, 4, 4, 1),
        False,
        lambda: keras.layers.Conv3D(2, 3),
        {"kernel": (0, 1, 2, 3)},
    ),
    # Keras: (kh, kw, out, in); the paper's code keeps PyTorch's axis 0 (in).
    "conv2d_transpose": (
        (3, 3, 2),
        False,
        lambda: keras.layers.Conv2DTranspose(3, 2),
        {"kernel": (0, 1, 2)},
    ),
    # (kh, kw, in, multiplier): each filter over its own window only.
    "depthwise": (
        (5, 5, 2),
        False,
        lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2),
        {"kernel": (0, 1)},
    ),
    "separable": (
        (5, 5, 2),
        False,
        lambda: keras.layers.SeparableConv2D(3, 3),
        {"depthwise_kernel": (0, 1), "pointwise_kernel": (0, 1, 2)},
    ),
    "einsum_dense": (
        (5,),
        False,
        lambda: keras.layers.EinsumDense("ab,bcd->acd", (2, 3)),
        {"kernel": None},
    ),
    "embedding": (
        (4,),
        True,
        lambda: keras.layers.Embedding(20, 3),
        {"embeddings": None},
    ),
}


def _layer_model(case):
    shape, integer, make, _ = LAYER_CASES[case]
    keras.utils.set_random_seed(5)
    inputs = keras.Input(shape, dtype="int32" if integer else "float32")
    if case == "mha":
        h = keras.layers.MultiHeadAttention(2, 3)(inputs, inputs)
    else:
        h = make()(inputs)
    h = keras.layers.Flatten()(h)
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(h))


LAYER_CASES["mha"] = (
    (4, 5),
    False,
    None,
    {
        "query/kernel": (0,),
        "key/kernel": (0,),
        "value/kernel": (0,),
        "attention_output/kernel": (0, 1),
        "bias": None,
    },
)


def _expected_axes(case, path, ndim):
    if ndim < 2:
        return None
    if path.startswith("head/"):
        return (0,)
    for leaf, axes in LAYER_CASES[case][3].items():
        if path.endswith(leaf):
            return axes
    raise AssertionError(f"no expectation for {path}")


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_axes_per_layer_type_match_a_hand_computation(case):
    lr = 0.1
    shape, integer = LAYER_CASES[case][:2]
    rng = np.random.default_rng(2)
    if integer:
        x = rng.integers(0, 5, size=(6, *shape)).astype("int32")  # 5 tokens used
    else:
        x = rng.normal(size=(6, *shape)).astype("float32")
    y = rng.normal(size=(6, 1)).astype("float32")
    runs = []
    for optimizer in (keras.optimizers.SGD(lr), None):
        model = _layer_model(case)
        if optimizer is None:
            optimizer = GradientCentralization(keras.optimizers.SGD(lr))
        model.compile(optimizer=optimizer, loss="mse")
        before = [
            keras.ops.convert_to_numpy(v.value) for v in model.trainable_variables
        ]
        model.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
        after = [keras.ops.convert_to_numpy(v.value) for v in model.trainable_variables]
        runs.append((before, after, [v.path for v in model.trainable_variables]))
    (before, plain, paths), (_, centred, _) = runs
    for w0, w_plain, w_gc, path in zip(before, plain, centred, paths, strict=True):
        grad = (w0 - w_plain) / lr
        axes = _expected_axes(case, path, grad.ndim)
        if axes is not None:
            grad = grad - grad.mean(axis=axes, keepdims=True)
        np.testing.assert_allclose(
            w_gc, w0 - lr * grad, rtol=1e-4, atol=1e-6, err_msg=path
        )
    if case == "embedding":
        # Rows of tokens absent from the batch do not move.
        table = [i for i, p in enumerate(paths) if p.endswith("embeddings")][0]
        np.testing.assert_array_equal(centred[table][5:], before[table][5:])


def test_fan_in_axes_table():
    from keras_tricks.optimizers import fan_in_axes

    assert fan_in_axes("dense/kernel", 2) == (0,)
    assert fan_in_axes("conv2d/kernel", 4) == (0, 1, 2)
    assert fan_in_axes("depthwise_conv2d/kernel", 4) == (0, 1)
    assert fan_in_axes("my_dw/kernel", 4) == (0, 1, 2)  # a custom name: (in, out)
    assert fan_in_axes("mha/query/bias", 2) is None
    assert fan_in_axes("sep/depthwise_kernel", 4) == (0, 1)
    assert fan_in_axes("mha/query/kernel", 3) == (0,)
    assert fan_in_axes("mha/attention_output/kernel", 3) == (0, 1)
    assert fan_in_axes("embedding/embeddings", 2) is None
    assert fan_in_axes("einsum_dense_1/kernel", 3) is None
    assert fan_in_axes("dense/bias", 1) is None
