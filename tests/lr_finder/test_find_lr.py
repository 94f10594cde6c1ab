"""find_lr: restoration, data inputs and clear errors."""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_tricks
from keras_tricks import _control
from keras_tricks.callbacks import LRFinder
from keras_tricks.lr_finder import (
    LRFinderResult,
)
from keras_tricks.optimizers import GradientAccumulation, GradientCentralization

from ._common import _assert_same_state, _data, _model, _state


def test_restores_weights_optimizer_and_training_exactly():
    x, y = _data()
    twin_a = _model(keras.optimizers.Adam(1e-2))
    twin_b = _model(keras.optimizers.Adam(1e-2))
    twin_b.set_weights(twin_a.get_weights())
    for m in (twin_a, twin_b):  # a trained optimizer: iterations > 0, slots != 0
        m.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    before = _state(twin_a)
    cls = type(twin_a.optimizer)
    lr = float(ops.convert_to_numpy(twin_a.optimizer.learning_rate))

    result = keras_tricks.find_lr(
        twin_a, x, y, batch_size=32, start_lr=1e-4, end_lr=1.0, num_steps=12
    )
    assert len(result.lrs) > 0
    _assert_same_state(before, _state(twin_a))
    # The class stays controlled (a twin that saves and serializes as the
    # user's class); what it computes is the untouched optimizer's.
    assert isinstance(twin_a.optimizer, cls)
    assert (
        keras.saving.serialize_keras_object(twin_a.optimizer)["class_name"]
        == keras.saving.serialize_keras_object(twin_b.optimizer)["class_name"]
    )
    assert float(ops.convert_to_numpy(twin_a.optimizer.learning_rate)) == lr
    assert int(ops.convert_to_numpy(twin_a.optimizer.iterations)) == 3

    # Training afterwards is exactly the training of a model that never swept.
    for m in (twin_a, twin_b):
        m.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(twin_a.get_weights(), twin_b.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def _wrapped(kind):
    if kind == "centralization":
        return GradientCentralization(keras.optimizers.Adam(1e-2))
    if kind == "accumulation":
        return GradientAccumulation(keras.optimizers.SGD(1e-2, momentum=0.9), steps=2)
    return GradientAccumulation(  # both, nested
        GradientCentralization(keras.optimizers.Adam(1e-2)), steps=2
    )


@pytest.mark.parametrize("kind", ["centralization", "accumulation", "nested"])
def test_sweeps_through_optimizer_wrappers_and_restores_them(kind):
    x, y = _data()
    twin_a, twin_b = _model(_wrapped(kind)), _model(_wrapped(kind))
    twin_b.set_weights(twin_a.get_weights())
    for m in (twin_a, twin_b):  # iterations, slots and accumulators are non-zero
        m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    before = _state(twin_a)
    cls = type(twin_a.optimizer)

    result = keras_tricks.find_lr(
        twin_a, x, y, batch_size=16, start_lr=1e-4, end_lr=1.0, num_steps=10
    )
    accumulating = kind != "centralization"
    # An accumulating wrapper applies one update (one sweep step) per two
    # batches, and every batch is a point.
    assert len(result.lrs) == (20 if accumulating else 10)
    if accumulating:
        np.testing.assert_array_equal(result.lrs[0::2], result.lrs[1::2])
    assert result.lrs[-1] == pytest.approx(1.0, rel=1e-6)
    assert np.ptp(result.losses) > 0  # the weights moved during the sweep
    _assert_same_state(before, _state(twin_a))
    # The class stays controlled (a twin that saves and serializes as the
    # user's class); what it computes is the untouched optimizer's.
    assert isinstance(twin_a.optimizer, cls)
    assert (
        keras.saving.serialize_keras_object(twin_a.optimizer)["class_name"]
        == keras.saving.serialize_keras_object(twin_b.optimizer)["class_name"]
    )

    for m in (twin_a, twin_b):
        m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(twin_a.get_weights(), twin_b.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_restores_a_plateau_reduced_own_schedule():
    x, y = _data()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    model = _model(keras.optimizers.SGD(schedule))
    _control.take_control(model.optimizer, model)
    _control.set_lr_scale(model.optimizer, 0.25)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    lr_before = _control.current_lr(model.optimizer)
    keras_tricks.find_lr(
        model, x, y, batch_size=32, start_lr=1e-4, end_lr=1.0, num_steps=10
    )
    assert model.optimizer._learning_rate is schedule
    assert _control.get_lr_scale(model.optimizer) == 0.25
    assert _control.current_lr(model.optimizer) == pytest.approx(lr_before)
    assert lr_before == pytest.approx(0.1 * 0.5 ** (3 / 10) * 0.25, rel=1e-6)


def test_restore_false_hands_the_lr_back_to_later_fits():
    """Issue 14 #4: after `LRFinder(restore=False)` a plain `fit` trains at
    the optimizer's own LR, not at the sweep's end."""
    x, y = _data()
    model = _model(keras.optimizers.SGD(0.01))
    finder = keras_tricks.callbacks.LRFinder(
        start_lr=1e-4, end_lr=10.0, num_steps=10, restore=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=32, epochs=10, callbacks=[finder], verbose=0)
    assert _control.current_lr(model.optimizer) == pytest.approx(0.01)
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(_control.current_lr(self.model.optimizer))

    model.fit(x, y, batch_size=32, epochs=1, callbacks=[Probe()], verbose=0)
    np.testing.assert_allclose(seen, 0.01, rtol=1e-6)


def test_mixed_float16_restores_and_records_finite_losses():
    keras.config.set_dtype_policy("mixed_float16")
    x, y = _data()
    model = _model(keras.optimizers.Adam(1e-2))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    before = _state(model)
    result = keras_tricks.find_lr(
        model, x, y, batch_size=32, start_lr=1e-4, end_lr=1.0, num_steps=10
    )
    assert np.isfinite(result.losses).all()
    _assert_same_state(before, _state(model))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_repeats_arrays_and_pydataset_and_takes_an_endless_generator():
    x, y = _data(n=64)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return x[i * 32 : (i + 1) * 32], y[i * 32 : (i + 1) * 32]

    def endless():
        while True:
            for i in range(2):
                yield x[i * 32 : (i + 1) * 32], y[i * 32 : (i + 1) * 32]

    for data, target in ((x, y), (Batches(), None), (endless(), None)):
        model = _model(keras.optimizers.SGD(1e-3))
        result = keras_tricks.find_lr(
            model,
            data,
            target,
            batch_size=32 if target is not None else None,
            start_lr=1e-4,
            end_lr=1e-2,
            num_steps=7,
        )
        assert len(result.lrs) == 7 and result.stop_reason == "completed"


@pytest.mark.backends("tensorflow")
def test_tf_data_dataset():
    import tensorflow as tf

    x, y = _data(n=64)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    model = _model(keras.optimizers.SGD(1e-3))
    result = keras_tricks.find_lr(
        model, dataset, start_lr=1e-4, end_lr=1e-2, num_steps=10
    )
    assert len(result.lrs) == 10


def test_short_generator_is_a_clear_error_and_model_is_restored():
    x, y = _data(n=64)
    model = _model(keras.optimizers.SGD(1e-3))
    model.fit(x, y, batch_size=32, verbose=0)
    before = _state(model)

    def three_batches():
        for i in range(3):
            yield x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16]

    with pytest.raises(ValueError, match="data ran out after 3 of the 10 points"):
        keras_tricks.find_lr(
            model, three_batches(), start_lr=1e-4, end_lr=1e-2, num_steps=10
        )
    _assert_same_state(before, _state(model))


def test_clear_errors():
    x, y = _data()
    bare = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="compiled model"):
        keras_tricks.find_lr(bare, x, y)
    model = _model()
    with pytest.raises(
        ValueError, match=r"`start_lr` must be < end_lr.*start_lr=1.0, end_lr=0.1"
    ):
        keras_tricks.find_lr(model, x, y, start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="`mode`"):
        LRFinder(mode="cosine")
    with pytest.raises(ValueError, match="`num_steps`"):
        LRFinder(num_steps=1)
    with pytest.raises(ValueError, match="`diverge_threshold`"):
        LRFinder(diverge_threshold=0.5)
    with pytest.raises(ValueError, match="manages the fit arguments"):
        keras_tricks.find_lr(model, x, y, epochs=3)


def test_immediate_divergence_suggests_a_lower_start_lr():
    x, y = _data(n=256)
    x = x * 100.0
    model = _model(keras.optimizers.SGD(1e-3))
    before = _state(model)
    with pytest.raises(ValueError, match="lower `start_lr`"):
        keras_tricks.find_lr(
            model, x, y, batch_size=16, start_lr=10.0, end_lr=1e4, num_steps=50
        )
    _assert_same_state(before, _state(model))


def test_a_sweep_that_starts_too_high_is_a_divergence_not_a_curve():
    # From start_lr=1000 the first update wrecks the classifier: the loss
    # jumps from ~2.3 to ~15 (confidently wrong) and stays there. The
    # warm-up points cannot set the best loss, so the running test never
    # fires; without the whole-curve test the sweep would "complete" and
    # suggest LRs of 1e8.
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.SGD(momentum=0.9), "sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    before = _state(model)
    with pytest.raises(ValueError, match="diverged at the first update"):
        keras_tricks.find_lr(model, x, y, batch_size=64, start_lr=1e3, end_lr=1e8)
    _assert_same_state(before, _state(model))


def test_a_curve_without_descent_is_flagged():
    lrs = np.geomspace(10.0, 1e6, 100)
    rng = np.random.default_rng(0)
    # The loss triples within two batches and stays there (a sweep that
    # starts too high, below the 4x that stops it): no descent.
    risen = np.concatenate([[2.4, 5.0], 7.0 + rng.uniform(-1, 1, 98)])
    result = LRFinderResult(lrs, risen, num_steps=100)
    assert not result.descended
    assert "lower `start_lr`" in result._no_descent_message()
    # A normal curve: flat, a drop, then a blow-up.
    normal = np.concatenate(
        [np.full(40, 2.3), np.linspace(2.3, 0.5, 40), np.full(20, 9.0)]
    )
    assert LRFinderResult(np.geomspace(1e-7, 10, 100), normal, num_steps=100).descended
