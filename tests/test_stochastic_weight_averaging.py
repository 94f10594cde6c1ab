"""StochasticWeightAveraging against torch.optim.swa_utils (AveragedModel, update_bn)."""

import os

import keras
import numpy as np
import pytest

from keras_tricks.callbacks import (
    SGDR,
    BackupAndRestore,
    ReduceLROnPlateau,
    StochasticWeightAveraging,
)
from keras_tricks.ensembles import update_bn


def _data(n=48):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = rng.normal(size=(n, 1)).astype("float32")
    return x, y


def _model(bn=False):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((5,)), keras.layers.Dense(6, name="hidden")]
    if bn:
        layers.append(keras.layers.BatchNormalization(name="bn"))
    layers += [keras.layers.Activation("relu"), keras.layers.Dense(1, name="out")]
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "mse")
    return model


class _Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.trainable = {}

    def on_epoch_end(self, epoch, logs=None):
        self.trainable[epoch] = [
            np.array(keras.ops.convert_to_numpy(v)) for v in self.model.trainable_variables
        ]


def _torch_average(recorded, epochs):
    """`AveragedModel.update_parameters` after the weights of `epochs`."""
    torch = pytest.importorskip("torch")
    from torch.optim import swa_utils

    first = recorded[epochs[0]]
    module = torch.nn.ParameterList(
        [torch.nn.Parameter(torch.zeros(w.shape)) for w in first]
    )
    averaged = swa_utils.AveragedModel(module)
    for epoch in epochs:
        with torch.no_grad():
            for p, w in zip(module, recorded[epoch], strict=True):
                p.copy_(torch.tensor(w))
        averaged.update_parameters(module)
    return [p.detach().numpy() for p in averaged.module]


@pytest.mark.parametrize(
    "start, update_every, epochs, averaged",
    [(0.5, 1, 8, [4, 5, 6, 7]), (3, 2, 9, [3, 5, 7])],
)
def test_average_equals_torch_averaged_model(start, update_every, epochs, averaged):
    x, y = _data()
    model = _model()
    swa = StochasticWeightAveraging(start=start, update_every=update_every)
    record = _Record()
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=[record, swa])
    assert swa.averaged_epochs == averaged and swa.n_averaged == len(averaged)
    expected = _torch_average(record.trainable, averaged)
    for got, want, var in zip(
        swa.averaged_weights(), expected, model.trainable_variables, strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        # ... and swapped into the model at the end.
        np.testing.assert_allclose(keras.ops.convert_to_numpy(var), want, rtol=1e-6, atol=1e-7)
    # The average differs from the last epoch's weights: the swap happened.
    assert not np.allclose(expected[0], record.trainable[epochs - 1][0])


def test_bn_statistics_recomputed_for_the_average_and_saved_as_plain_keras(tmp_path):
    x, y = _data()
    model = _model(bn=True)
    swa = StochasticWeightAveraging(start=0.5, bn_data=(x, y), bn_batch_size=16)
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[swa])
    bn = model.get_layer("bn")
    got = [keras.ops.convert_to_numpy(v) for v in (bn.moving_mean, bn.moving_variance)]
    # Reference: NumPy batch statistics of the averaged model's BN input.
    kernel, bias = model.get_layer("hidden").get_weights()
    h = x @ kernel + bias
    batches = [h[i : i + 16] for i in range(0, 48, 16)]
    np.testing.assert_allclose(got[0], np.mean([b.mean(0) for b in batches], 0), atol=1e-5)
    np.testing.assert_allclose(got[1], np.mean([b.var(0) for b in batches], 0), rtol=1e-4)
    # The averaged model is a plain Keras model.
    path = os.path.join(tmp_path, "swa.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_bn_model_without_data_is_an_error_and_update_bn_false_keeps_the_stats():
    x, y = _data()
    model = _model(bn=True)
    with pytest.raises(ValueError, match="bn_data"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[StochasticWeightAveraging(start=0)])
    model = _model(bn=True)
    record = []
    keep = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: record.append(
            keras.ops.convert_to_numpy(model.get_layer("bn").moving_mean).copy()
        )
    )
    swa = StochasticWeightAveraging(start=0, update_bn=False)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[keep, swa])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model.get_layer("bn").moving_mean), record[-1]
    )


def test_two_fits_average_separately():
    x, y = _data()
    model = _model()
    swa = StochasticWeightAveraging(start=1)
    record = _Record()
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[swa])
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[record, swa])
    assert swa.averaged_epochs == [1, 2]
    expected = _torch_average(record.trainable, [1, 2])
    for got, want in zip(swa.averaged_weights(), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise RuntimeError("Interrupted!")


@pytest.mark.parametrize("backup_first", [True])
def test_backup_and_restore_resumes_the_average(tmp_path, backup_first):
    x, y = _data()

    def run(interrupt_at=None, backup_dir=None):
        model = _model()
        swa = StochasticWeightAveraging(start=2)
        own = [SGDR(max_lr=0.05, first_cycle_epochs=2), swa,
               ReduceLROnPlateau(monitor="loss", patience=1)]
        if backup_dir is not None:
            backup = BackupAndRestore(backup_dir)
            own = [backup, *own] if backup_first else [*own, backup]
        if interrupt_at is not None:
            own.append(_Interrupt(interrupt_at))
        model.fit(x, y, epochs=6, batch_size=16, verbose=0, shuffle=False, callbacks=own)
        return model, swa

    straight, swa_straight = run()
    backup_dir = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="Interrupted"):
        run(interrupt_at=4, backup_dir=backup_dir)
    resumed, swa_resumed = run(backup_dir=backup_dir)
    assert swa_resumed.averaged_epochs == swa_straight.averaged_epochs == [2, 3, 4, 5]
    for a, b in zip(resumed.get_weights(), straight.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_save_mid_training_and_continue(tmp_path):
    """A .keras checkpoint mid-training holds the running weights; a new fit
    from it averages its own epochs."""
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
    path = os.path.join(tmp_path, "mid.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    results = []
    for m in (model, loaded):
        swa = StochasticWeightAveraging(start=1)
        m.fit(x, y, epochs=3, batch_size=16, verbose=0, shuffle=False, callbacks=[swa])
        results.append(m.get_weights())
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_training_that_ends_before_start_warns_and_keeps_weights():
    x, y = _data()
    model = _model()
    swa = StochasticWeightAveraging(start=5)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=2, verbose=0, callbacks=[swa])
    assert any("no epoch was averaged" in str(w.message) for w in caught)
    assert swa.averaged_weights() is None


def test_config_round_trip():
    swa = StochasticWeightAveraging(start=np.float64(0.6), update_every=np.int64(2),
                                    update_bn=False, bn_batch_size=64, bn_steps=10)
    config = swa.get_config()
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(swa))
    assert again.get_config() == config and config["start"] == 0.6
    assert StochasticWeightAveraging.from_config(config).get_config() == config


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(start=0.0), "start"),
        (dict(start=1.5), "start"),
        (dict(start=-1), "start"),
        (dict(start=True), "start"),
        (dict(start="late"), "start"),
        (dict(update_every=0), "update_every"),
        (dict(bn_batch_size=0), "bn_batch_size"),
        (dict(bn_steps=0), "bn_steps"),
        (dict(update_bn="yes"), "update_bn"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        StochasticWeightAveraging(**kwargs)


def test_update_bn_is_public():
    assert callable(update_bn)
