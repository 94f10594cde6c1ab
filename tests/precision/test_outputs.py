"""Tests for keras_tricks.precision.outputs: the float32-output check and fix."""

import math

import keras
import numpy as np
import pytest

from keras_tricks import precision


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x)).astype("float32")


def _classifier(units=3):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(5, activation="relu")(inputs)
    outputs = keras.layers.Dense(units, activation="softmax", name="probs")(hidden)
    return keras.Model(inputs, outputs)


def test_check_outputs_finds_half_precision_softmax():
    for policy, dtype in [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")]:
        keras.config.set_dtype_policy(policy)
        report = precision.check_outputs(_classifier())
        assert not report.ok
        (problem,) = report.problems
        assert problem.index == 0
        assert problem.dtype == dtype
        assert problem.layer == "probs"
        assert "fix=True" in str(report) and "'probs'" in str(report)


def test_check_outputs_float32_model_is_ok():
    model = _classifier()
    report = precision.check_outputs(model)
    assert report.ok and report.problems == ()
    assert "float32" in str(report)
    assert precision.check_outputs(model, fix=True) is model


def test_check_outputs_accepts_a_float32_head_under_mixed_policy():
    keras.config.set_dtype_policy("mixed_float16")
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(5)(inputs)
    outputs = keras.layers.Dense(2, activation="softmax", dtype="float32")(hidden)
    assert precision.check_outputs(keras.Model(inputs, outputs)).ok


def test_fix_recomputes_output_layers_in_float32_and_keeps_weights():
    keras.config.set_dtype_policy("mixed_float16")
    model = _classifier()
    fixed = precision.check_outputs(model, fix=True)
    assert fixed is not model
    assert precision.check_outputs(fixed).ok
    assert fixed.get_layer("probs").dtype_policy.name == "float32"
    assert fixed.get_layer("probs").compute_dtype == "float32"
    # Hidden layers keep the mixed policy; the original is untouched.
    assert fixed.layers[1].dtype_policy.name == "mixed_float16"
    assert model.get_layer("probs").dtype_policy.name == "mixed_float16"
    assert not precision.check_outputs(model).ok
    # Same weights: the same function up to float16 rounding.
    for a, b in zip(model.get_weights(), fixed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    np.testing.assert_allclose(_np(fixed(x)), _np(model(x)), atol=3e-3)


def test_fix_sequential_with_nested_model():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3),
            keras.Sequential([keras.layers.Dense(2, activation="sigmoid")]),
        ]
    )
    assert precision.check_outputs(model).problems[0].dtype == "bfloat16"
    fixed = precision.check_outputs(model, fix=True)
    assert isinstance(fixed, keras.Sequential)
    assert precision.check_outputs(fixed).ok
    assert fixed.layers[-1].layers[-1].dtype_policy.name == "float32"
    assert fixed.layers[0].dtype_policy.name == "mixed_bfloat16"


def test_fix_output_made_by_an_op_gets_a_float32_cast():
    keras.config.set_dtype_policy("mixed_float16")
    inputs = keras.Input((4,))
    outputs = keras.ops.softmax(keras.layers.Dense(2)(inputs))
    model = keras.Model(inputs, outputs)
    assert not precision.check_outputs(model).ok
    fixed = precision.check_outputs(model, fix=True)
    assert precision.check_outputs(fixed).ok
    assert fixed.layers[-1].compute_dtype == "float32"


def test_fix_multi_output_dict_model_only_touches_half_outputs():
    keras.config.set_dtype_policy("mixed_float16")
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(5)(inputs)
    outputs = {
        "cls": keras.layers.Dense(3, activation="softmax", name="cls")(hidden),
        "reg": keras.layers.Dense(1, dtype="float32", name="reg")(hidden),
    }
    model = keras.Model(inputs, outputs)
    report = precision.check_outputs(model)
    assert [p.layer for p in report.problems] == ["cls"]
    fixed = precision.check_outputs(model, fix=True)
    assert precision.check_outputs(fixed).ok
    result = fixed(np.ones((2, 4), "float32"))
    assert set(result) == {"cls", "reg"}
    assert keras.backend.standardize_dtype(result["cls"].dtype) == "float32"


def test_fix_keeps_the_compile_config_and_trains_under_mixed_float16():
    keras.config.set_dtype_policy("mixed_float16")
    model = _classifier()
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    fixed = precision.check_outputs(model, fix=True)
    assert fixed.compiled
    assert isinstance(fixed.optimizer, keras.optimizers.LossScaleOptimizer)
    x = np.random.default_rng(1).normal(size=(8, 4)).astype("float32")
    y = keras.utils.to_categorical(np.arange(8) % 3, 3)
    before = [w.copy() for w in fixed.get_weights()]
    history = fixed.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert math.isfinite(history.history["loss"][-1])
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(before, fixed.get_weights(), strict=True)
    )


def test_fixed_model_round_trips_through_a_keras_file(tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    fixed = precision.check_outputs(_classifier(), fix=True)
    path = tmp_path / "fixed.keras"
    fixed.save(path)
    keras.config.set_dtype_policy("float32")
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("probs").dtype_policy.name == "float32"
    assert loaded.layers[1].dtype_policy.name == "mixed_float16"
    x = np.ones((2, 4), "float32")
    np.testing.assert_array_equal(_np(loaded(x)), _np(fixed(x)))


def _two_class_model(kernel_value):
    """A softmax head whose logits are ``kernel_value * (4, 0)`` for x = 1."""
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4, kernel_initializer="identity", use_bias=False)(
        inputs
    )
    kernel = np.zeros((4, 2), "float32")
    kernel[:, 0] = kernel_value
    head = keras.layers.Dense(
        2,
        activation="softmax",
        kernel_initializer=keras.initializers.Constant(kernel),
        use_bias=False,
        name="probs",
    )
    return keras.Model(inputs, head(hidden))


def test_float16_softmax_overflows_to_nan_and_the_fix_prevents_it():
    # Logits of 4 * 20000 = 80000 > 65504, the largest float16.
    keras.config.set_dtype_policy("mixed_float16")
    model = _two_class_model(20000.0)
    x = np.ones((1, 4), "float32")
    assert np.isnan(_np(model(x))).any()
    fixed = precision.check_outputs(model, fix=True)
    np.testing.assert_allclose(_np(fixed(x)), [[1.0, 0.0]])


def test_float16_softmax_loses_small_probabilities_and_the_fix_keeps_them():
    keras.config.set_dtype_policy("mixed_float16")
    x = np.ones((1, 4), "float32")
    y = np.array([[0.0, 1.0]], "float32")
    loss = keras.losses.CategoricalCrossentropy()
    # Logits (15, 0): p(class 1) = exp(-15) = 3.06e-7 is a float16 subnormal
    # (spacing 6e-8): it rounds to 2.98e-7 and the loss is off by 0.026.
    model = _two_class_model(3.75)
    fixed = precision.check_outputs(model, fix=True)
    exact = math.exp(-15.0) / (1.0 + math.exp(-15.0))
    assert _np(model(x))[0, 1] == pytest.approx(2.98e-7, rel=1e-2)
    assert _np(fixed(x))[0, 1] == pytest.approx(exact, rel=1e-4)
    assert abs(float(_np(loss(y, model(x)))) - 15.0) > 0.02
    assert float(_np(loss(y, fixed(x)))) == pytest.approx(15.0, abs=1e-4)
    # Logits (20, 0): p = 2e-9 is below the smallest float16 (6e-8): it is 0.
    model = _two_class_model(5.0)
    fixed = precision.check_outputs(model, fix=True)
    assert _np(model(x))[0, 1] == 0.0
    assert _np(fixed(x))[0, 1] == pytest.approx(math.exp(-20.0), rel=1e-4)


def test_check_outputs_rejects_what_it_cannot_inspect():
    with pytest.raises(TypeError, match="Argument `model` must be a `keras.Model`"):
        precision.check_outputs(keras.layers.Dense(2))

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    sub = Sub()
    sub(np.ones((1, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed"):
        precision.check_outputs(sub)
    with pytest.raises(ValueError, match="without `outputs`"):
        precision.check_outputs(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(TypeError, match="Argument `fix` must be a bool"):
        precision.check_outputs(_classifier(), fix="yes")
