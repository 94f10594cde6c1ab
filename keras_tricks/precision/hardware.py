"""Which hardware Keras will run on: one probe per backend.

`_probe_devices()` asks the active backend only (no other backend is
imported) and returns `[(platform, capability)]`; `keras_tricks.precision.policy`
turns that list into a dtype policy. Tests replace
`keras_tricks.precision.hardware._probe_devices` to simulate hardware.
"""

import os

import keras

_GPU_PLATFORMS = ("gpu", "cuda", "rocm")


def _parse_capability(value):
    """``(8, 0)``, ``"8.0"`` or ``"8"`` -> ``(8, 0)``; anything else -> None."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)) and len(value) >= 1:
        try:
            parts = [int(v) for v in value[:2]]
        except (TypeError, ValueError):
            return None
        return tuple(parts + [0] * (2 - len(parts)))
    text = str(value).strip()
    try:
        parts = [int(p) for p in text.split(".")[:2]]
    except ValueError:
        return None  # ROCm reports e.g. "gfx90a".
    return tuple(parts + [0] * (2 - len(parts)))


def _probe_tensorflow():
    import tensorflow as tf  # the active backend: already imported by Keras

    found = []
    tpus = tf.config.list_physical_devices("TPU") or tf.config.list_logical_devices(
        "TPU"
    )
    found.extend(("tpu", None) for _ in tpus)
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except Exception:  # details are best effort (ROCm, old drivers)
            details = {}
        found.append(("gpu", _parse_capability(details.get("compute_capability"))))
    return found


def _probe_jax():
    import jax  # the active backend: already imported by Keras

    found = []
    for device in jax.devices():
        platform = str(device.platform).lower()
        if platform in _GPU_PLATFORMS:
            capability = _parse_capability(getattr(device, "compute_capability", None))
            found.append(("gpu", capability))
        else:
            found.append((platform, None))
    return found


def _probe_torch():
    import torch  # the active backend: already imported by Keras

    device = os.environ.get("KERAS_TORCH_DEVICE", "")
    if device:
        kind = device.split(":")[0].lower()
        if kind == "cuda" and torch.cuda.is_available():
            index = int(device.split(":")[1]) if ":" in device else 0
            return [("gpu", tuple(torch.cuda.get_device_capability(index)))]
        return [(kind, None)]
    # Keras's torch backend prefers MPS, then CUDA, then XPU, then CPU.
    if torch.backends.mps.is_available():
        return [("mps", None)]
    if torch.cuda.is_available():
        return [
            ("gpu", tuple(torch.cuda.get_device_capability(i)))
            for i in range(torch.cuda.device_count())
        ]
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return [("xpu", None)]
    return [("cpu", None)]


def _probe_devices():
    """The devices Keras will compute on, as ``[(platform, capability)]``.

    ``platform`` is ``"cpu"``, ``"gpu"`` (CUDA or ROCm), ``"tpu"`` or another
    name the backend reports (``"mps"``, ``"xpu"``); ``capability`` is the
    CUDA compute capability as ``(major, minor)`` or None. Only the active
    backend is asked; tests replace this function to simulate hardware.
    """
    backend = keras.backend.backend()
    probes = {
        "tensorflow": _probe_tensorflow,
        "jax": _probe_jax,
        "torch": _probe_torch,
    }
    if backend not in probes:
        return [("cpu", None)]
    devices = probes[backend]()
    return devices or [("cpu", None)]
