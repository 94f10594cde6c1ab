"""checklist, plot_history and cross_validate."""

import keras
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

import keras_tricks
from keras_tricks.diagnosis import TrainingDiagnosis, checklist, plot_history

BACKEND = keras.backend.backend()


def _softmax_model(lr=None, bias_initializer="zeros"):
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(10, activation="softmax",
                                                bias_initializer=bias_initializer)]
    )
    optimizer = keras.optimizers.Adam() if lr is None else keras.optimizers.Adam(lr)
    model.compile(optimizer, loss="sparse_categorical_crossentropy")
    return model


def test_checklist_passes_a_prepared_model_and_warns_with_numbers():
    x, y = load_digits(return_X_y=True)
    good = checklist(_softmax_model(lr=3e-3), (x / 16.0).astype("float32"), y, verbose=0)
    assert good.passed, str(good)
    # Raw pixels (0..16), the default LR: warnings with their numbers (the raw
    # inputs also start the loss far above the prior's).
    raw = checklist(_softmax_model(), x.astype("float32"), y, verbose=0)
    names = {item.name for item in raw.warnings}
    assert names == {"inputs standardized", "learning rate tuned",
                     "initial loss ≈ prior's loss"}, str(raw)
    std = x[:512].std(axis=0).max()  # the checklist looks at a 512-row sample
    assert f"{std:.3g}" in raw["inputs standardized"].value
    assert "find_lr" in raw["learning rate tuned"].fix
    assert "| warn" in str(raw)


def test_checklist_imbalanced_head_zero_gradients_and_float16_outputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8)).astype("float32")
    y = (rng.random(400) < 0.05).astype("float32")[:, None]  # 5% positives
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(4, activation="relu", kernel_initializer="zeros"),
        keras.layers.Dense(1, activation="sigmoid", bias_initializer=keras.initializers.Constant(3.0)),
    ])
    model.compile(keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    result = checklist(model, x, y, verbose=0)
    names = {item.name for item in result.warnings}
    assert {"labels balanced", "initial loss ≈ prior's loss", "gradients finite and non-zero"} <= names
    p = y.mean()
    prior = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    assert f"{prior:.4g}" in result["initial loss ≈ prior's loss"].value
    ratio = (1 - p) / p
    assert f"{ratio:.3g}" in result["labels balanced"].value
    # The zero kernel of the hidden layer kills the first layer's gradients.
    assert "dense" in result["gradients finite and non-zero"].value
    # The prior-initialized bias fixes the initial-loss item.
    from keras_tricks.imbalance import bias_initializer

    model.layers[-1].bias.assign(np.log([p / (1 - p)]).astype("float32"))
    assert checklist(model, x, y, verbose=0)["initial loss ≈ prior's loss"].status == "pass"
    del bias_initializer
    keras.config.set_dtype_policy("mixed_float16")
    half = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, activation="sigmoid")])
    half.compile(keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    keras.config.set_dtype_policy("float32")
    assert checklist(half, x, y, verbose=0)["outputs in float32"].status == "warn"


def test_checklist_rejects_an_uncompiled_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="must be compiled"):
        checklist(model, np.zeros((4, 2)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="`sample_size`.*Received: sample_size=0"):
        model.compile("sgd", loss="mse")
        checklist(model, np.zeros((4, 2)), np.zeros((4, 1)), sample_size=0)


def test_plot_history_draws_the_diagnosis(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    history = {
        "loss": [2.0, 1.0, 0.5, 0.3, 0.2, 0.1],
        "val_loss": [2.0, 1.0, 0.8, 0.9, 1.0, 1.1],
        "accuracy": [0.2, 0.5, 0.8, 0.9, 0.95, 0.99],
        "val_accuracy": [0.2, 0.5, 0.7, 0.7, 0.69, 0.68],
        "lr": [0.1] * 6,
    }
    report = keras_tricks.diagnosis.diagnose(history, prior_loss=2.3)
    left, right = plot_history(history, report, log_scale=True)
    assert left.get_title() == "overfitting"
    assert [line.get_xdata()[0] for line in left.get_lines()][-1] == report.epoch
    assert right.get_ylabel() == "accuracy" and left.lr_ax.get_ylabel() == "learning rate"
    assert left.get_yscale() == "log"
    left.figure.savefig(tmp_path / "history.png")
    with pytest.raises(ValueError, match="`metric`"):
        plot_history(history, metric="f1")
    with pytest.raises(ValueError, match="`history`"):
        plot_history({"accuracy": [1.0]})


def _cancer():
    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype("float32")
    return x[:300], y[:300].astype("int32")


def _build():
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=["accuracy"])
    return model


FIT = {"epochs": 2, "batch_size": 64}


def test_cross_validate_matches_a_hand_written_sklearn_loop():
    x, y = _cancer()
    result = keras_tricks.cross_validate(_build, x, y, cv=3, fit_kwargs=FIT, seed=7, verbose=0)
    expected = []
    splitter = StratifiedKFold(3, shuffle=True, random_state=7)
    for i, (train, val) in enumerate(splitter.split(x, y)):
        keras.backend.clear_session()
        keras.utils.set_random_seed(7 + i)
        model = _build()
        model.fit(x[train], y[train], validation_data=(x[val], y[val]), verbose=0, **FIT)
        expected.append(model.evaluate(x[val], y[val], return_dict=True, verbose=0))
        np.testing.assert_array_equal(result.folds[i][1], val)
    for got, want in zip(result.scores, expected):
        assert got["loss"] == pytest.approx(float(want["loss"]), rel=1e-5)
        assert got["accuracy"] == pytest.approx(float(want["accuracy"]))
    losses = [s["loss"] for s in result.scores]
    assert result.mean["loss"] == pytest.approx(np.mean(losses))
    assert result.std["loss"] == pytest.approx(np.std(losses))
    assert len(result.histories) == 3 and "val_loss" in result.histories[0]
    assert "mean ± sd" in result.summary()


def test_cross_validate_splitters_groups_and_callback_factories():
    x, y = _cancer()
    made = []

    def callbacks(fold):
        made.append(TrainingDiagnosis(verbose=0))
        return [made[-1]]

    result = keras_tricks.cross_validate(
        _build, x, y, cv=KFold(2), fit_kwargs={"epochs": 1}, callbacks=callbacks, verbose=0,
    )
    assert len(made) == 2 and made[0] is not made[1]
    assert all(cb.report is not None for cb in made)
    np.testing.assert_array_equal(result.folds[0][1], np.arange(150))
    groups = np.arange(len(x)) // 10
    grouped = keras_tricks.cross_validate(
        _build, x, y, cv=GroupKFold(2), groups=groups, fit_kwargs={"epochs": 1}, verbose=0
    )
    for train, val in grouped.folds:
        assert not set(groups[train]) & set(groups[val])
    # Regression targets are not stratified: KFold.
    reg = keras_tricks.cross_validate(
        lambda: _regression_model(), x, x[:, :1] * 2.0, cv=2, seed=0,
        fit_kwargs={"epochs": 1}, verbose=0,
    )
    want = list(KFold(2, shuffle=True, random_state=0).split(x))
    np.testing.assert_array_equal(reg.folds[1][1], want[1][1])


def _regression_model():
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(1)])
    model.compile("sgd", loss="mse")
    return model


def test_cross_validate_imbalance_tools_never_see_the_validation_rows(monkeypatch):
    x, y = _cancer()
    from keras_tricks import imbalance

    seen = []
    real = imbalance.class_weights

    def spy(labels, **kwargs):
        seen.append(np.asarray(labels).copy())
        return real(labels, **kwargs)

    monkeypatch.setattr(imbalance, "class_weights", spy)
    built = []
    real_dataset = imbalance.OversampledDataset

    class SpyDataset(real_dataset):
        def __init__(self, xs, ys, **kwargs):
            built.append(np.asarray(xs).copy())
            super().__init__(xs, ys, **kwargs)

    monkeypatch.setattr(imbalance, "OversampledDataset", SpyDataset)
    result = keras_tricks.cross_validate(
        _build, x, y, cv=2, seed=0, verbose=0,
        fit_kwargs={"epochs": 1, "class_weight": "balanced"},
    )
    for labels, (train, _) in zip(seen, result.folds):
        np.testing.assert_array_equal(labels, y[train])
    keras_tricks.cross_validate(
        _build, x, y, cv=2, seed=0, verbose=0,
        fit_kwargs={"epochs": 1, "batch_size": 32, "oversample": "max"},
    )
    for rows, (train, val) in zip(built, result.folds):
        np.testing.assert_array_equal(rows, x[train])
        assert not any((rows == row).all(axis=1).any() for row in x[val][:5])


def test_cross_validate_bad_arguments():
    x, y = _cancer()
    with pytest.raises(ValueError, match="`fit_kwargs` must not hold 'validation_split'"):
        keras_tricks.cross_validate(_build, x, y, fit_kwargs={"validation_split": 0.2})
    with pytest.raises(ValueError, match="`cv`.*Received: cv=1"):
        keras_tricks.cross_validate(_build, x, y, cv=1)
    with pytest.raises(TypeError, match="`cv`"):
        keras_tricks.cross_validate(_build, x, y, cv="five")
    with pytest.raises(ValueError, match="`stratify`"):
        keras_tricks.cross_validate(_build, x, y, stratify="yes")
    with pytest.raises(ValueError, match="`stratify=True` needs class labels"):
        keras_tricks.cross_validate(_build, x, x[:, 0], stratify=True)
    with pytest.raises(TypeError, match="`build_model`"):
        keras_tricks.cross_validate(None, x, y)
