"""Tests for keras_tricks.precision: policy choice, float32 outputs, scaling rule."""

import math
import sys
import types
import warnings

import keras
import numpy as np
import pytest

from keras_tricks import precision
from keras_tricks.precision import PrecisionWarning

BACKEND = keras.backend.backend()


def _fake_devices(monkeypatch, devices):
    monkeypatch.setattr(precision, "_probe_devices", lambda: list(devices))


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x)).astype("float32")


# --- device probing and the choice -------------------------------------------


CAPABILITIES = [
    ((8, 0), (8, 0)),
    ([7, 5], (7, 5)),
    ("8.6", (8, 6)),
    ("9", (9, 0)),
    ("gfx90a", None),
    (None, None),
    (("x", "y"), None),
]


def test_parse_capability():
    for value, expected in CAPABILITIES:
        assert precision._parse_capability(value) == expected, value


HARDWARE = [
    ([("cpu", None)], "float32", "CPU only"),
    ([("cpu", None), ("cpu", None)], "float32", "CPU only"),
    ([("tpu", None)] * 8, "mixed_bfloat16", "8 TPU"),
    ([("gpu", (8, 0))], "mixed_bfloat16", "8.0 >= 8.0"),
    ([("gpu", (9, 0)), ("gpu", (9, 0))], "mixed_bfloat16", "2 NVIDIA"),
    ([("gpu", (8, 9))], "mixed_bfloat16", "Ampere"),
    ([("gpu", (7, 5))], "mixed_float16", "Volta/Turing"),
    ([("gpu", (7, 0))], "mixed_float16", "7.0"),
    ([("gpu", (6, 0))], "mixed_float16", "no Tensor Cores"),
    # The oldest GPU decides: bf16 would be emulated on the V100.
    ([("gpu", (8, 0)), ("gpu", (7, 0))], "mixed_float16", "7.0"),
    ([("gpu", None)], "mixed_float16", "unknown"),
    ([("mps", None)], "float32", "mps"),
    ([("cpu", None), ("xpu", None)], "float32", "xpu"),
]


def test_auto_policy_by_hardware(monkeypatch):
    for devices, expected, words in HARDWARE:
        _fake_devices(monkeypatch, devices)
        assert precision.auto_policy() == expected, devices
        choice = precision.auto_policy(explain=True)
        name, reason = choice
        assert name == expected
        assert words in reason, (devices, reason)
        assert str(choice).startswith(f"{expected}: ")
        assert reason in str(choice)


def test_auto_policy_on_this_cpu_machine():
    # The real probe of the active backend: this machine has no accelerator.
    devices = precision._probe_devices()
    assert devices and all(platform == "cpu" for platform, _ in devices)
    assert precision.auto_policy() == "float32"


def test_auto_policy_imports_no_other_backend():
    names = ("tensorflow", "jax", "torch")
    before = {name for name in names if name in sys.modules}
    precision.auto_policy()
    precision.set_policy("auto")
    after = {name for name in names if name in sys.modules}
    assert after == before


def test_auto_policy_rejects_non_bool_explain():
    with pytest.raises(TypeError, match="explain"):
        precision.auto_policy(explain="yes")


@pytest.mark.backends("jax")
def test_probe_jax_reads_platform_and_capability(monkeypatch):
    import jax

    fake = [
        types.SimpleNamespace(platform="gpu", compute_capability="8.6"),
        types.SimpleNamespace(platform="gpu", compute_capability="7.0"),
    ]
    monkeypatch.setattr(jax, "devices", lambda *a, **k: fake)
    assert precision._probe_devices() == [("gpu", (8, 6)), ("gpu", (7, 0))]
    assert precision.auto_policy() == "mixed_float16"
    tpus = [types.SimpleNamespace(platform="tpu")] * 4
    monkeypatch.setattr(jax, "devices", lambda *a, **k: tpus)
    assert precision.auto_policy() == "mixed_bfloat16"


@pytest.mark.backends("tensorflow")
def test_probe_tensorflow_reads_device_details(monkeypatch):
    import tensorflow as tf

    gpu = types.SimpleNamespace(name="/physical_device:GPU:0", device_type="GPU")

    def list_physical_devices(device_type=None):
        return [gpu] if device_type == "GPU" else []

    monkeypatch.setattr(tf.config, "list_physical_devices", list_physical_devices)
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda *a: [])
    monkeypatch.setattr(
        tf.config.experimental,
        "get_device_details",
        lambda device: {"compute_capability": (8, 0), "device_name": "A100"},
    )
    assert precision._probe_devices() == [("gpu", (8, 0))]
    assert precision.auto_policy() == "mixed_bfloat16"
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda device: {})
    assert precision.auto_policy(explain=True).reason.find("unknown") >= 0


@pytest.mark.backends("torch")
def test_probe_torch_reads_cuda_capability(monkeypatch):
    import torch

    monkeypatch.delenv("KERAS_TORCH_DEVICE", raising=False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (7, 5))
    assert precision._probe_devices() == [("gpu", (7, 5))]
    assert precision.auto_policy() == "mixed_float16"
    monkeypatch.setenv("KERAS_TORCH_DEVICE", "cpu")
    assert precision.auto_policy() == "float32"


# --- set_policy ---------------------------------------------------------------


def test_set_policy_names_on_a_gpu(monkeypatch):
    _fake_devices(monkeypatch, [("gpu", (9, 0))])
    for name, expected in [
        ("float32", "float32"),
        ("fp32", "float32"),
        ("mixed_float16", "mixed_float16"),
        ("fp16", "mixed_float16"),
        ("mixed_bfloat16", "mixed_bfloat16"),
        ("BF16", "mixed_bfloat16"),
    ]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning on a GPU that runs both
            assert precision.set_policy(name) == expected
        assert keras.config.dtype_policy().name == expected
        assert keras.layers.Dense(2).dtype_policy.name == expected


def test_set_policy_auto_sets_what_auto_policy_says(monkeypatch):
    assert precision.set_policy() == "float32"  # this CPU machine
    assert keras.config.dtype_policy().name == "float32"
    _fake_devices(monkeypatch, [("gpu", (8, 0))])
    assert precision.set_policy("auto") == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "mixed_bfloat16"


def test_set_policy_warns_when_hardware_does_not_fit(monkeypatch):
    for devices, name, words in [
        ([("cpu", None)], "mixed_float16", "CPU"),
        ([("cpu", None)], "mixed_bfloat16", "CPU"),
        ([("gpu", (7, 0))], "bf16", "< 8.0"),
        ([("gpu", (6, 1))], "fp16", "Tensor Cores"),
        ([("tpu", None)], "fp16", "TPU"),
    ]:
        _fake_devices(monkeypatch, devices)
        keras.config.set_dtype_policy("float32")
        with pytest.warns(PrecisionWarning, match=words):
            chosen = precision.set_policy(name)
        # It still does what it was asked.
        assert chosen != "float32"
        assert keras.config.dtype_policy().name == chosen


def test_set_policy_warn_false_is_silent(monkeypatch):
    _fake_devices(monkeypatch, [("cpu", None)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision.set_policy("fp16", warn=False) == "mixed_float16"


def test_set_policy_unknown_name():
    for bad in ["float16", "mixed_half", "", None, 16]:
        with pytest.raises(
            ValueError, match="Argument `policy` must be one of"
        ) as info:
            precision.set_policy(bad)
        message = str(info.value)
        for valid in ("'auto'", "'mixed_float16'", "'bf16'", "'fp32'"):
            assert valid in message
        assert f"Received: policy={bad!r}" in message
        assert keras.config.dtype_policy().name == "float32"


# --- check_outputs --------------------------------------------------------------


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


# --- scale_hparams --------------------------------------------------------------


def test_linear_rule_scales_lr_and_suggests_goyal_warmup():
    new = precision.scale_hparams(
        0.1, 256, 1024, weight_decay=1e-4, momentum=0.9, steps_per_epoch=1251
    )
    assert new.factor == 4.0
    assert new.lr == pytest.approx(0.4)
    assert new.weight_decay == pytest.approx(1e-4)
    assert new.warmup_epochs == 5.0
    assert new.warmup_steps == 5 * 1251
    # Smith's lr*wd/(batch*(1-m)) is held by the linear rule.
    assert new.smith_ratio_before == pytest.approx(0.1 * 1e-4 / (256 * 0.1))
    assert new.smith_ratio_after == pytest.approx(new.smith_ratio_before)
    text = str(new)
    for words in ("256 -> 1024", "Goyal", "0.1 -> 0.4", "(kept)", "held constant"):
        assert words in text
    assert "5 epochs = 6255 steps" in text


def test_keep_lr_moves_the_factor_to_weight_decay():
    new = precision.scale_hparams(3e-4, 32, 128, weight_decay=0.01, keep="lr")
    assert new.lr == pytest.approx(3e-4)
    assert new.weight_decay == pytest.approx(0.04)
    assert new.smith_ratio_after == pytest.approx(new.smith_ratio_before)
    assert new.warmup_epochs == 0.0  # the LR did not grow
    assert "wd scales with the batch" in str(new)
    assert "none needed" in str(new)


def test_sqrt_rule():
    new = precision.scale_hparams(1e-3, 64, 1024, weight_decay=0.05, rule="sqrt")
    assert new.factor == pytest.approx(4.0)
    assert new.lr == pytest.approx(4e-3)
    # sqrt scaling does not hold Smith's ratio: it drops by sqrt(k) = 4.
    assert new.smith_ratio_after == pytest.approx(new.smith_ratio_before / 4)
    assert "square-root" in str(new) and "x0.25" in str(new)


def test_warmup_is_capped_at_ten_percent_of_a_short_run_and_zero_when_shrinking():
    assert precision.scale_hparams(0.1, 128, 512, epochs=20).warmup_epochs == 2.0
    assert precision.scale_hparams(0.1, 128, 512, epochs=200).warmup_epochs == 5.0
    tiny = precision.scale_hparams(0.1, 128, 512, epochs=2, steps_per_epoch=2)
    assert tiny.warmup_epochs == pytest.approx(0.2) and tiny.warmup_steps == 1
    smaller = precision.scale_hparams(0.4, 1024, 256)
    assert smaller.lr == pytest.approx(0.1)
    assert smaller.warmup_epochs == 0.0 and smaller.warmup_steps is None
    assert smaller.weight_decay is None and smaller.smith_ratio_before is None
    assert "weight decay" not in str(smaller)


def test_scale_hparams_validates():
    cases = [
        ({"lr": 0}, "Argument `lr` must be a finite number > 0. Received: lr=0"),
        ({"lr": float("nan")}, "Argument `lr` must be a finite number"),
        ({"lr": "0.1"}, "Received: lr='0.1'"),
        ({"batch_size": 0}, "Argument `batch_size` must be a positive integer"),
        ({"new_batch_size": 64.5}, "Received: new_batch_size=64.5"),
        ({"batch_size": True}, "Argument `batch_size`"),
        (
            {"weight_decay": -1e-4},
            "Argument `weight_decay` must be a finite number >= 0",
        ),
        ({"momentum": 1.0}, r"Argument `momentum` must be a number in \[0, 1\)"),
        ({"rule": "square"}, "Argument `rule` must be 'linear' or 'sqrt'"),
        ({"keep": "both"}, "Argument `keep` must be 'wd'"),
        ({"keep": "lr"}, "`weight_decay` must be > 0. Received: weight_decay=None"),
        ({"epochs": 0}, "Argument `epochs` must be a positive integer"),
        ({"steps_per_epoch": -3}, "Argument `steps_per_epoch`"),
    ]
    for kwargs, message in cases:
        arguments = {"lr": 0.1, "batch_size": 256, "new_batch_size": 512}
        arguments.update(kwargs)
        with pytest.raises(ValueError, match=message):
            precision.scale_hparams(**arguments)


def test_scale_hparams_takes_numpy_momentum_and_documents_both_rules():
    new = precision.scale_hparams(
        1e-3, 32, 512, weight_decay=0.01, momentum=np.float32(0.9), rule="sqrt"
    )
    assert new.lr == pytest.approx(1e-3 * np.sqrt(16))
    doc = precision.scale_hparams.__doc__
    for words in ("Malladi", "Hoffer", "adaptive optimizers", "LARS"):
        assert words in doc


def test_scale_hparams_without_weight_decay_prints():
    # weight_decay=0: Smith's ratio is 0 before and after (nothing to divide).
    new = precision.scale_hparams(0.1, 256, 1024, weight_decay=0.0, momentum=0.9)
    text = str(new)
    assert new.smith_ratio_before == 0.0 == new.smith_ratio_after
    assert "weight decay:  0 -> 0" in text and "0 -> 0 (held constant)" in text
