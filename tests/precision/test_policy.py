"""Tests for keras_tricks.precision.policy: auto_policy and set_policy."""

import warnings

import keras
import pytest

from keras_tricks import precision
from keras_tricks.precision import PrecisionWarning, hardware


def _fake_devices(monkeypatch, devices):
    monkeypatch.setattr(hardware, "_probe_devices", lambda: list(devices))


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


def test_auto_policy_rejects_non_bool_explain():
    with pytest.raises(TypeError, match="explain"):
        precision.auto_policy(explain="yes")


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
