"""Tests for keras_tricks.callbacks.EarlyStopping (Keras's behaviours + ours)."""

import keras
import numpy as np
import pytest

from keras_tricks.callbacks import EarlyStopping


class _DummyModel:
    """Weights are the epoch number: what was restored is easy to read."""

    def __init__(self):
        self.stop_training = False
        self.weights = -1

    def get_weights(self):
        return self.weights

    def set_weights(self, weights):
        self.weights = weights


def _run(stopper, values, monitor="val_loss", interrupt_at=None):
    """Drive the callback over a trace; returns the number of epochs run."""
    stopper.set_model(_DummyModel())
    stopper.on_train_begin()
    epochs = 0
    for epoch, value in enumerate(values):
        epochs += 1
        stopper.model.weights = epoch
        stopper.on_epoch_end(epoch, logs={monitor: value})
        if interrupt_at is not None and epoch == interrupt_at:
            stopper.model.stop_training = True
        if stopper.model.stop_training:
            break
    stopper.on_train_end()
    return epochs


def _model_and_data(metrics=("mse",)):
    rng = np.random.default_rng(0)
    x = rng.random((10, 5)).astype("float32")
    y = rng.random((10, 1)).astype("float32")
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(1, activation="relu")]
    )
    model.compile(optimizer="sgd", loss="mae", metrics=list(metrics))
    return model, x, y


# --- what Keras's own tests check -----------------------------------------


@pytest.mark.parametrize("patience", [0, 1, 2, 3])
def test_patience_like_keras(patience):
    losses = [10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5]
    for cls in (keras.callbacks.EarlyStopping, EarlyStopping):
        stopper = cls(monitor="loss", patience=patience)
        _run(stopper, losses, monitor="loss")
        assert stopper.stopped_epoch == max(patience, 1) + 2
    assert stopper.stop_reason == "patience"


def test_monitor_direction_like_keras():
    model, x, y = _model_and_data(
        metrics=[
            "mse",
            "acc",
            "accuracy",
            "hinge",
            keras.metrics.F1Score(name="f1_score"),
        ]
    )
    cases = [
        ("max", "val_mse", keras.ops.greater),
        ("min", "val_loss", keras.ops.less),
        ("auto", "val_mse", keras.ops.less),
        ("auto", "loss", keras.ops.less),
        ("auto", "acc", keras.ops.greater),
        ("auto", "val_accuracy", keras.ops.greater),
        ("auto", "hinge", keras.ops.less),
        ("auto", "f1_score", keras.ops.greater),
    ]
    model.fit(x, y, batch_size=5, validation_data=(x, y), epochs=1, verbose=0)
    for mode, monitor, op in cases:
        stopper = EarlyStopping(monitor=monitor, mode=mode)
        stopper.set_model(model)
        stopper._set_monitor_op()
        assert stopper.monitor_op is op, monitor
    stopper = EarlyStopping(monitor="unknown")
    with pytest.raises(ValueError, match="mode='min'"):
        model.fit(x, y, callbacks=[stopper], epochs=1, verbose=0)


def _flat_fit(stopper, epochs=20):
    """A fit whose loss never moves (LR 0; float32 noise under min_delta): the
    epoch count is the decision."""
    model, x, y = _model_and_data()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mae", metrics=["mse"])
    history = model.fit(
        x, y, batch_size=len(x), callbacks=[stopper], epochs=epochs, verbose=0
    )
    return len(history.epoch)


def test_reuse_across_fit_calls():
    # Flat loss, patience 3: best at epoch 0, three bad epochs, stop after 4.
    # A stale `wait` or `best` from the first fit would stop the second one
    # after 2 or 3 epochs.
    for cls in (keras.callbacks.EarlyStopping, EarlyStopping):
        stopper = cls(monitor="loss", patience=3, min_delta=1e-5)
        assert _flat_fit(stopper) == 4, cls
        assert _flat_fit(stopper) == 4, cls
        assert stopper.stopped_epoch == 3


def test_state_reset_across_fit_calls():
    stopper = EarlyStopping(monitor="loss", patience=3)
    stopper.set_model(_DummyModel())
    stopper.on_train_begin()
    stopper.best, stopper.wait, stopper.stopped_epoch = 0.1, 3, 5
    stopper.best_epoch, stopper.best_weights = 5, object()
    stopper.stop_reason, stopper.stop_message = "patience", "x"
    stopper.on_train_begin()
    assert stopper.best is None and stopper.wait == 0
    assert stopper.stopped_epoch == 0 and stopper.best_epoch == 0
    assert stopper.best_weights is None and stopper.stop_reason is None


def test_baseline_and_start_from_epoch_with_fit():
    # Flat loss over the baseline: the wait is never reset, stop after
    # `patience` epochs (without the baseline rule: patience + 1).
    for cls in (keras.callbacks.EarlyStopping, EarlyStopping):
        stopper = cls(monitor="loss", patience=3, baseline=1e-9, min_delta=1e-5)
        assert _flat_fit(stopper) == 3, cls
        # Nothing watched in epochs 0 and 1; best at epoch 2, then `patience`
        # bad epochs (at least one). Without start_from_epoch: 2 epochs fewer.
        for patience in (3, 0):
            stopper = cls(
                monitor="loss", patience=patience, start_from_epoch=2, min_delta=1e-5
            )
            assert _flat_fit(stopper) == 3 + max(patience, 1), (cls, patience)


def test_restores_best_weights_like_keras():
    stopper = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    _run(stopper, [0.2, 0.15, 0.1, 0.11, 0.12])
    assert stopper.model.get_weights() == 2
    # No epoch beats the baseline: train `patience` epochs, restore the best.
    stopper = EarlyStopping(
        monitor="val_loss", patience=5, baseline=0.5, restore_best_weights=True
    )
    assert _run(stopper, [0.9, 0.8, 0.7, 0.71, 0.72, 0.73]) == 5
    assert stopper.model.get_weights() == 2
    # Another callback stops training: the best weights are restored too.
    stopper = EarlyStopping(
        monitor="val_loss", patience=5, baseline=0.5, restore_best_weights=True
    )
    assert _run(stopper, [0.9, 0.8, 0.7, 0.71, 0.72, 0.73], interrupt_at=3) == 4
    assert stopper.model.get_weights() == 2
    assert stopper.stop_reason is None


def test_same_decisions_as_keras_on_random_traces():
    rng = np.random.default_rng(0)
    for trial in range(30):
        values = np.cumsum(rng.normal(0, 1, 25)).tolist()
        kwargs = dict(
            monitor="loss",
            patience=int(rng.integers(0, 5)),
            min_delta=float(rng.choice([0.0, 0.5])),
            mode=str(rng.choice(["min", "max"])),
            baseline=None if trial % 3 else float(values[0]),
            start_from_epoch=int(rng.integers(0, 3)),
            restore_best_weights=True,
        )
        ours, theirs = EarlyStopping(**kwargs), keras.callbacks.EarlyStopping(**kwargs)
        n_ours = _run(ours, values, monitor="loss")
        n_theirs = _run(theirs, values, monitor="loss")
        assert n_ours == n_theirs, kwargs
        assert ours.stopped_epoch == theirs.stopped_epoch
        assert ours.best_epoch == theirs.best_epoch
        assert ours.model.get_weights() == theirs.model.get_weights()


# --- what we add ------------------------------------------------------------


def test_non_finite_stops_at_once():
    stopper = EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    assert _run(stopper, [1.0, 0.5, float("nan"), 0.1]) == 3
    assert stopper.stop_reason == "non_finite" and stopper.stopped_epoch == 2
    assert stopper.model.get_weights() == 1
    keep_going = EarlyStopping(monitor="val_loss", patience=10, check_finite=False)
    assert _run(keep_going, [1.0, 0.5, float("inf"), 0.1]) == 4


def test_thresholds_and_their_order():
    stopper = EarlyStopping(monitor="val_loss", patience=10, stopping_threshold=0.3)
    assert _run(stopper, [1.0, 0.5, 0.29, 0.1]) == 3
    assert stopper.stop_reason == "stopping_threshold"
    stopper = EarlyStopping(monitor="val_loss", patience=10, divergence_threshold=2.0)
    assert _run(stopper, [1.0, 1.5, 2.5, 0.1]) == 3
    assert stopper.stop_reason == "divergence_threshold"
    # max mode: "better" means larger.
    stopper = EarlyStopping(
        monitor="val_accuracy",
        patience=10,
        stopping_threshold=0.9,
        divergence_threshold=0.2,
    )
    assert _run(stopper, [0.5, 0.95], monitor="val_accuracy") == 2
    assert stopper.stop_reason == "stopping_threshold"
    stopper = EarlyStopping(
        monitor="val_accuracy", divergence_threshold=0.2, patience=9
    )
    assert _run(stopper, [0.5, 0.1], monitor="val_accuracy") == 2
    assert stopper.stop_reason == "divergence_threshold"
    # Order: non-finite, stopping threshold, divergence threshold, patience.
    both = EarlyStopping(
        monitor="val_loss", patience=0, stopping_threshold=0.5, divergence_threshold=2
    )
    _run(both, [float("inf")])
    assert both.stop_reason == "non_finite"
    both = EarlyStopping(
        monitor="val_loss", patience=0, stopping_threshold=0.5, divergence_threshold=2
    )
    assert _run(both, [1.0, 1.0, 3.0]) == 2
    assert both.stop_reason == "patience"
    div = EarlyStopping(monitor="val_loss", patience=1, divergence_threshold=1.5)
    _run(div, [1.0, 2.0])
    assert div.stop_reason == "divergence_threshold"


@pytest.mark.parametrize("mode", ["min", "auto"])
def test_contradictory_thresholds_are_refused(mode):
    # With mode="min", a goal of 5 and a divergence bound of 1 stop at every
    # value: refused at construction, or at the first epoch once "auto" knows.
    kwargs = dict(
        monitor="val_loss", mode=mode, stopping_threshold=5, divergence_threshold=1
    )
    if mode == "min":
        with pytest.raises(ValueError, match="stopping_threshold=5.0"):
            EarlyStopping(**kwargs)
        with pytest.raises(ValueError, match="stopping_threshold"):
            EarlyStopping(
                monitor="acc", mode="max", stopping_threshold=0.1,
                divergence_threshold=0.9,
            )
        return
    stopper = EarlyStopping(**kwargs)
    with pytest.raises(ValueError, match="divergence_threshold=1.0"):
        _run(stopper, [2.0])


def test_stopping_threshold_epoch_is_the_best():
    # Our choice (documented): the epoch that reaches the goal is the best
    # epoch when it improves, and its weights are the ones restored (Lightning
    # keeps no weights and leaves its best score at the epoch before).
    stopper = EarlyStopping(
        monitor="val_loss", patience=5, stopping_threshold=0.3,
        restore_best_weights=True,
    )
    assert _run(stopper, [1.0, 0.5, 0.6, 0.2, 0.1]) == 4
    assert stopper.best_epoch == 3 and stopper.best == 0.2
    assert stopper.model.get_weights() == 3
    # Reached without improving on the best (min_delta): the best stays.
    stopper = EarlyStopping(
        monitor="val_loss", patience=5, stopping_threshold=0.3, min_delta=0.1,
        restore_best_weights=True,
    )
    assert _run(stopper, [1.0, 0.32, 0.29]) == 3
    assert stopper.best_epoch == 1 and stopper.model.get_weights() == 1


def test_relative_min_delta():
    absolute = EarlyStopping(monitor="val_loss", patience=1, min_delta=0.01)
    relative = EarlyStopping(
        monitor="val_loss", patience=1, min_delta=0.01, min_delta_mode="rel"
    )
    values = [1000.0, 995.0, 990.0, 985.0]
    assert _run(absolute, values) == 4 and absolute.stop_reason is None
    assert _run(relative, values) == 2 and relative.stop_reason == "patience"


@pytest.mark.parametrize("shape", [(1,), (1, 1, 1), ()])
def test_one_element_arrays_are_squeezed(shape):
    stopper = EarlyStopping(monitor="val_f1", mode="max", patience=0)
    values = [np.full(shape, v, dtype="float32") for v in (0.5, 0.7, 0.6)]
    assert _run(stopper, values, monitor="val_f1") == 3
    assert stopper.best == pytest.approx(0.7)


def test_many_element_metric_is_a_clear_error():
    stopper = EarlyStopping(monitor="val_f1", mode="max")
    with pytest.raises(ValueError, match=r"val_f1.*shape \(2,\)"):
        _run(stopper, [np.array([0.5, 0.6])], monitor="val_f1")


def test_f1_score_in_fit():
    rng = np.random.default_rng(0)
    x = rng.random((16, 3)).astype("float32")
    y = (x[:, :1] > 0.5).astype("float32")
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile("sgd", "binary_crossentropy", metrics=[keras.metrics.F1Score()])
    stopper = EarlyStopping(monitor="f1_score", patience=1)
    model.fit(x, y, epochs=2, callbacks=[stopper], verbose=0)
    assert stopper.direction == "max" and stopper.best is not None


def test_verbose_goes_through_keras_logging(monkeypatch):
    from keras.src.utils import io_utils

    said = []
    monkeypatch.setattr(io_utils, "print_msg", lambda message, *a: said.append(message))
    stopper = EarlyStopping(monitor="val_loss", patience=0, verbose=1)
    _run(stopper, [1.0, 2.0])
    assert any("early stopping (patience)" in m for m in said)


def test_numpy_scalars_are_accepted():
    stopper = EarlyStopping(
        patience=np.int64(3), start_from_epoch=np.int32(1), min_delta=np.float32(0.5),
        baseline=np.float64(2.0), stopping_threshold=np.float32(0.1),
    )
    assert stopper.patience == 3 and type(stopper.patience) is int
    assert stopper.get_config()["start_from_epoch"] == 1
    with pytest.raises(ValueError, match="patience=True"):
        EarlyStopping(patience=True)


def test_verbose_says_why(capsys):
    stopper = EarlyStopping(
        monitor="val_loss", patience=1, verbose=1, restore_best_weights=True
    )
    _run(stopper, [1.0, 2.0, 3.0])
    out = capsys.readouterr().out
    assert "Epoch 2: early stopping (patience)" in out
    assert "did not improve in the last 1 epochs" in out
    assert "Restoring model weights from the end of the best epoch: 1." in out


def test_restores_best_weights_of_a_real_model_without_early_stop():
    model, x, y = _model_and_data()
    seen = {}

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen[epoch] = (logs["loss"], [w.copy() for w in self.model.get_weights()])

    stopper = EarlyStopping(monitor="loss", patience=100, restore_best_weights=True)
    model.compile(keras.optimizers.SGD(1.5), "mae")  # large LR: the loss bounces
    model.fit(x, y, epochs=6, callbacks=[Snapshot(), stopper], verbose=0)
    assert stopper.stop_reason is None
    best = min(seen, key=lambda e: seen[e][0])
    assert stopper.best_epoch == best
    for restored, kept in zip(model.get_weights(), seen[best][1]):
        np.testing.assert_array_equal(restored, kept)


def test_missing_metric_warns_once():
    import warnings

    stopper = EarlyStopping(monitor="val_auc")
    stopper.set_model(_DummyModel())
    stopper.on_train_begin()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(3):
            stopper.on_epoch_end(epoch, {"loss": 1.0, "auc": 0.5})
    mine = [w for w in caught if issubclass(w.category, UserWarning)]
    assert len(mine) == 1 and "Available metrics are: loss, auc" in str(mine[0].message)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patience": -1}, "patience"),
        ({"mode": "up"}, "mode"),
        ({"start_from_epoch": 1.5}, "start_from_epoch"),
        ({"stopping_threshold": "low"}, "stopping_threshold"),
        ({"divergence_threshold": float("nan")}, "divergence_threshold"),
        ({"min_delta_mode": "percent"}, "min_delta_mode"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EarlyStopping(**kwargs)


def test_serialization_round_trip():
    stopper = EarlyStopping(
        monitor="val_accuracy",
        min_delta=0.01,
        patience=4,
        mode="max",
        baseline=0.5,
        restore_best_weights=True,
        start_from_epoch=2,
        check_finite=False,
        stopping_threshold=0.99,
        divergence_threshold=0.1,
        min_delta_mode="rel",
    )
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(stopper)
    )
    assert type(clone) is EarlyStopping
    assert clone.get_config() == stopper.get_config()


def test_a_non_finite_first_value_is_never_the_best():
    # With check_finite=False a NaN is a bad epoch, never the best (Keras
    # takes a first NaN as its best and then stops); epoch 0 never stops on
    # patience. Kills the mutants that drop `finite and` or `epoch > 0`.
    stopper = EarlyStopping(monitor="val_loss", patience=0, check_finite=False)
    assert _run(stopper, [float("nan"), 1.0, 0.5]) == 3
    assert stopper.best == 0.5 and stopper.stop_reason is None


def test_a_value_equal_to_a_threshold_does_not_stop():
    # Lightning's rule: the value must be strictly better than
    # `stopping_threshold` and strictly worse than `divergence_threshold`.
    for mode, values, stop_at, diverge_at in (
        ("min", [1.0, 0.5, 2.0, 0.4, 2.5], 0.5, 2.0),
        ("max", [0.3, 0.9, 0.1, 0.95, 0.05], 0.9, 0.1),
    ):
        stopper = EarlyStopping(
            monitor="val_loss",
            mode=mode,
            patience=10,
            stopping_threshold=stop_at,
            divergence_threshold=diverge_at,
        )
        # Equal to either threshold at epochs 1 and 2: no stop until epoch 3.
        assert _run(stopper, values) == 4, mode
        assert stopper.stop_reason == "stopping_threshold"


def test_relative_min_delta_on_negative_values():
    # min_delta_mode="rel": the margin is min_delta * |best|, also for a
    # negative best (a log-likelihood, an ELBO): from -10, 10% is 1, so
    # -10.5 and -9.5 are no improvement in either mode; -11.5 (min) and
    # -8.5 (max) are.
    for mode, beyond in (("min", -11.5), ("max", -8.5)):
        def stopper(mode=mode):
            return EarlyStopping(
                monitor="val_loss", mode=mode, patience=5, min_delta=0.1,
                min_delta_mode="rel",
            )

        within = stopper()
        _run(within, [-10.0, -10.5, -9.5])
        assert within.best == -10.0 and within.best_epoch == 0, mode
        past = stopper()
        _run(past, [-10.0, beyond])
        assert past.best == beyond and past.best_epoch == 1, mode


def test_state_round_trip_continues_the_decisions():
    # What BackupAndRestore saves (get_state, through JSON) and restores
    # (set_state): the best value and the wait carry on.
    import json

    first = EarlyStopping(monitor="val_loss", patience=2)
    _run(first, [1.0, 0.5, 0.7])
    second = EarlyStopping(monitor="val_loss", patience=2)
    second.set_model(_DummyModel())
    second.on_train_begin()
    second.set_state(json.loads(json.dumps(first.get_state())))
    assert second.best == 0.5 and second.wait == 1 and second.best_epoch == 1
    second.on_epoch_end(3, {"val_loss": 0.6})
    assert second.model.stop_training and second.stop_reason == "patience"


def test_restored_best_weights_are_not_kept():
    # Keras keeps a full copy of the weights at every improvement; once they
    # are restored at the end of fit the copy is dropped.
    stopper = EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    _run(stopper, [1.0, 0.5, 0.7, 0.8])
    assert stopper.model.weights == 1  # the best epoch's
    assert stopper.best_weights is None and stopper.get_state_arrays() is None


def test_a_negative_min_delta_is_its_magnitude():
    # As in Keras: min_delta=-0.1 is a margin of 0.1, not a handicap.
    stopper = EarlyStopping(monitor="val_loss", patience=5, min_delta=-0.1)
    assert stopper.min_delta == 0.1
    _run(stopper, [1.0, 0.95])
    assert stopper.best == 1.0 and stopper.wait == 1
