"""keras_tricks.lora: Keras's enable_lora on the chosen layers, counts, merge."""

import os

import keras
import numpy as np
import pytest

from keras_tricks import lora


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12,))
    h = keras.layers.Dense(16, activation="relu", name="body_1")(inputs)
    h = keras.layers.Dense(8, activation="relu", name="body_2")(h)
    h = keras.layers.LayerNormalization(name="norm")(h)
    outputs = keras.layers.Dense(3, name="head")(h)
    return keras.Model(inputs, outputs)


def _n(*shapes):
    return sum(int(np.prod(s)) for s in shapes)


def test_counts_and_frozen_layers():
    model = _model()
    before = model.count_params()
    report = lora.enable(model, rank=2, keep_trainable="head", verbose=False)
    assert report["layers"] == ["body_1", "body_2"]
    assert report["trainable_before"] == before
    # Adapters: rank * (in + out) per layer; the adapted layers keep their bias
    # trainable; the head stays fully trainable; the norm is frozen.
    expected = _n((12, 2), (2, 16), (16,), (16, 2), (2, 8), (8,), (8, 3), (3,))
    assert report["trainable_after"] == expected
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == expected
    assert report["total"] == before + _n((12, 2), (2, 16), (16, 2), (2, 8))
    assert not model.get_layer("norm").trainable


def test_outputs_unchanged_at_enable_and_scaled_by_alpha_over_rank():
    model = _model()
    x = np.random.default_rng(0).normal(size=(4, 12)).astype("float32")
    y0 = model.predict(x, verbose=0)
    lora.enable(model, rank=4, alpha=8, targets="head", verbose=False)
    np.testing.assert_allclose(model.predict(x, verbose=0), y0, atol=1e-6)
    head = model.get_layer("head")
    b = np.random.default_rng(1).normal(size=(4, 3)).astype("float32")
    head.lora_kernel_b.assign(b)
    a = keras.ops.convert_to_numpy(head.lora_kernel_a)
    features = keras.Model(model.inputs, model.get_layer("norm").output).predict(x, verbose=0)
    expected = y0 + (8 / 4) * features @ a @ b
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)


def test_targets_by_name_pattern_and_exclude():
    model = _model()
    report = lora.enable(model, rank=2, targets="body_*", exclude="*_2", verbose=False)
    assert report["layers"] == ["body_1"]
    assert not model.get_layer("head").trainable
    with pytest.raises(ValueError, match="no layer"):
        lora.enable(_model(), targets="Conv2D", verbose=False)


def test_training_moves_only_adapters_and_biases_then_merge_and_save(tmp_path):
    model = _model()
    lora.enable(model, rank=2, verbose=False)
    kernels = {
        n: np.array(keras.ops.convert_to_numpy(model.get_layer(n)._kernel))
        for n in ("body_1", "head")
    }
    model.compile(keras.optimizers.Adam(0.01), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 12)).astype("float32")
    y = rng.normal(size=(32, 3)).astype("float32")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    for name, kernel in kernels.items():
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(model.get_layer(name)._kernel), kernel
        )
    assert np.abs(keras.ops.convert_to_numpy(model.get_layer("head").lora_kernel_b)).max() > 0
    y_trained = model.predict(x, verbose=0)
    assert lora.merge(model) == ["body_1", "body_2", "head"]
    np.testing.assert_allclose(model.predict(x, verbose=0), y_trained, atol=1e-5)
    assert not np.allclose(keras.ops.convert_to_numpy(model.get_layer("head")._kernel),
                           kernels["head"])
    # The .keras file loads with plain Keras and predicts the same.
    path = os.path.join(tmp_path, "lora.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), y_trained, atol=1e-5)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.embed = keras.layers.Embedding(20, 6)
        self.proj = keras.layers.EinsumDense("btd,dh->bth", output_shape=(None, 4))
        self.out = keras.layers.Dense(2)

    def call(self, x):
        return self.out(keras.ops.mean(self.proj(self.embed(x)), axis=1))


def test_subclassed_model_einsum_and_embedding_merge():
    keras.utils.set_random_seed(0)
    model = _Subclassed()
    x = np.random.default_rng(0).integers(0, 20, size=(3, 5))
    model(x)
    report = lora.enable(model, rank=2, targets=("EinsumDense", "Embedding"), verbose=False)
    assert sorted(report["layers"]) == sorted([model.embed.name, model.proj.name])
    assert not model.out.trainable
    for layer in (model.proj,):
        layer.lora_kernel_b.assign(np.ones(layer.lora_kernel_b.shape, "float32"))
    model.embed.lora_embeddings_b.assign(np.ones(model.embed.lora_embeddings_b.shape, "float32"))
    y = keras.ops.convert_to_numpy(model(x))
    lora.merge(model)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rank=0), "rank"),
        (dict(rank=True), "rank"),
        (dict(alpha=-1.0), "alpha"),
        (dict(targets=3), "targets"),
        (dict(targets=()), "targets"),
        (dict(exclude=[1]), "exclude"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        lora.enable(_model(), verbose=False, **kwargs)


def test_unbuilt_model_and_numpy_scalars():
    with pytest.raises(ValueError, match="built"):
        lora.enable(keras.Sequential([keras.layers.Dense(2)]), verbose=False)
    report = lora.enable(_model(), rank=np.int64(2), alpha=np.float32(4.0), verbose=False)
    assert report["layers"]
