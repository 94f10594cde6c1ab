"""Tests for keras_tricks.precision.hardware: the device probe of each backend."""

import sys
import types

import pytest

from keras_tricks import precision

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
