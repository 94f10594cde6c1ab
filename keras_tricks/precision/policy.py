"""The dtype policy that fits the hardware: `auto_policy` and `set_policy`.

`mixed_bfloat16` on TPUs and NVIDIA GPUs of compute capability 8.0 and newer,
`mixed_float16` on older CUDA GPUs, `float32` on CPUs; `set_policy` also warns
(`PrecisionWarning`) when a policy named by hand does not suit the hardware.
"""

import warnings
from typing import NamedTuple

import keras

from keras_tricks.precision import hardware

__all__ = ["PolicyChoice", "PrecisionWarning", "auto_policy", "set_policy"]

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
_ALIASES = {
    "auto": "auto",
    "float32": "float32",
    "fp32": "float32",
    "mixed_float16": "mixed_float16",
    "fp16": "mixed_float16",
    "mixed_bfloat16": "mixed_bfloat16",
    "bf16": "mixed_bfloat16",
}


class PrecisionWarning(UserWarning):
    """Warns that a dtype policy does not suit the hardware it will run on."""


def _choose(devices):
    """The policy for a device list, with the reason: pure, no probing."""
    platforms = [platform for platform, _ in devices]
    if "tpu" in platforms:
        return "mixed_bfloat16", (
            f"{platforms.count('tpu')} TPU core(s): TPUs compute in bfloat16 "
            "natively and bfloat16 needs no loss scaling."
        )
    gpus = [capability for platform, capability in devices if platform == "gpu"]
    if gpus:
        known = [c for c in gpus if c is not None]
        if len(known) < len(gpus):
            return "mixed_float16", (
                f"{len(gpus)} GPU(s) with an unknown CUDA compute capability "
                "(e.g. ROCm): float16 is the widely supported half type; "
                "Keras adds loss scaling."
            )
        lowest = min(known)
        shown = f"{lowest[0]}.{lowest[1]}"
        if lowest >= (8, 0):
            return "mixed_bfloat16", (
                f"{len(gpus)} NVIDIA GPU(s), lowest compute capability {shown} "
                ">= 8.0 (Ampere or newer): bfloat16 Tensor Cores, the float32 "
                "range, no loss scaling."
            )
        if lowest >= (7, 0):
            return "mixed_float16", (
                f"{len(gpus)} NVIDIA GPU(s), lowest compute capability {shown} "
                "(Volta/Turing): float16 Tensor Cores but no fast bfloat16; "
                "Keras adds loss scaling."
            )
        return "mixed_float16", (
            f"{len(gpus)} NVIDIA GPU(s), lowest compute capability {shown} "
            "< 7.0: no Tensor Cores, so expect memory savings rather than a "
            "large speedup; no fast bfloat16; Keras adds loss scaling."
        )
    others = sorted(set(platforms) - {"cpu"})
    if others:
        return "float32", (
            f"accelerator {', '.join(others)} has no rule here; float32 is the "
            "safe choice. Pick a policy with `set_policy` if you know it runs "
            "float16 or bfloat16 fast."
        )
    return "float32", (
        "CPU only: CPUs have no fast float16 math and mixed precision only "
        "adds casts, so float32 is as fast and exact."
    )


class PolicyChoice(NamedTuple):
    """The policy :func:`auto_policy` picked and why.

    Unpacks as ``(policy, reason)``; ``str()`` gives one readable line.
    """

    policy: str
    reason: str

    def __str__(self):
        return f"{self.policy}: {self.reason}"


def auto_policy(explain=False):
    """The dtype policy that fits the hardware Keras will run on.

    ``"mixed_bfloat16"`` on TPUs and on NVIDIA GPUs of compute capability
    8.0 or newer (A100, RTX 30xx/40xx, L4, H100), ``"mixed_float16"`` on older
    CUDA GPUs (V100, T4, RTX 20xx, P100) and on GPUs whose capability is not
    reported, ``"float32"`` on CPUs and accelerators without a rule here
    (Apple MPS, Intel XPU). With several GPUs the oldest one decides.

    Only the active backend (`keras.backend.backend()`) is asked: TensorFlow
    through `tf.config.list_physical_devices` and
    `tf.config.experimental.get_device_details`, JAX through `jax.devices()`,
    PyTorch through `torch.cuda`. This function does not set the policy; see
    :func:`set_policy`.

    Args:
        explain: bool. Return a :class:`PolicyChoice` ``(policy, reason)``
            instead of the bare name. Defaults to `False`.

    Returns:
        The policy name (a `str`), or a :class:`PolicyChoice` when
        ``explain=True``.

    Example:

    ```python
    from keras_tricks import precision

    print(precision.auto_policy(explain=True))
    # float32: CPU only: CPUs have no fast float16 math ...
    ```
    """
    if not isinstance(explain, bool):
        raise TypeError(
            f"Argument `explain` must be a bool. Received: explain={explain!r}"
        )
    choice = PolicyChoice(*_choose(hardware._probe_devices()))
    return choice if explain else choice.policy


def _mismatch(policy, devices):
    """Why ``policy`` runs poorly on ``devices``, or None."""
    platforms = {platform for platform, _ in devices}
    gpus = [c for platform, c in devices if platform == "gpu"]
    if policy == "float32":
        return None
    if "tpu" in platforms:
        if policy == "mixed_float16":
            return (
                "TPUs compute in bfloat16; float16 is not a native TPU type. "
                "Use 'mixed_bfloat16'."
            )
        return None
    if gpus:
        known = [c for c in gpus if c is not None]
        if not known:
            return None
        lowest = min(known)
        shown = f"{lowest[0]}.{lowest[1]}"
        if policy == "mixed_bfloat16" and lowest < (8, 0):
            return (
                f"GPU compute capability {shown} < 8.0 has no fast bfloat16 "
                "math: bfloat16 will be emulated and slow. Use 'mixed_float16'."
            )
        if policy == "mixed_float16" and lowest < (7, 0):
            return (
                f"GPU compute capability {shown} < 7.0 has no Tensor Cores: "
                "expect memory savings but little speedup."
            )
        return None
    where = ", ".join(sorted(platforms)) or "cpu"
    return (
        f"no GPU or TPU found (devices: {where}): {policy} on a CPU is usually "
        "slower than float32 (extra casts, no fast half-precision math). Use "
        "'auto' or 'float32'."
    )


def set_policy(policy="auto", warn=True):
    """Set Keras's global dtype policy, by name or automatically.

    Calls `keras.config.set_dtype_policy`. Layers created afterwards use it;
    existing layers keep theirs. Under ``mixed_float16`` Keras's ``compile``
    wraps the optimizer in a `keras.optimizers.LossScaleOptimizer` (dynamic
    loss scaling); ``mixed_bfloat16`` needs none. Keep the model outputs in
    float32 (see :func:`check_outputs`).

    Args:
        policy: str. ``"auto"`` (:func:`auto_policy`), ``"float32"``,
            ``"mixed_float16"`` or ``"mixed_bfloat16"``, or the short names
            ``"fp32"``, ``"fp16"``, ``"bf16"``. Defaults to ``"auto"``.
        warn: bool. Issue a :class:`PrecisionWarning` when the policy does not
            suit the hardware (``mixed_float16`` on a CPU, ``mixed_bfloat16``
            on a pre-Ampere GPU, ``mixed_float16`` on a TPU). Defaults to
            `True`.

    Returns:
        The full name of the policy that was set (`str`).

    Raises:
        ValueError: for an unknown policy name.

    Example:

    ```python
    from keras_tricks import precision

    chosen = precision.set_policy("auto")  # "float32" on a CPU
    ```
    """
    if not isinstance(policy, str) or policy.strip().lower() not in _ALIASES:
        valid = ", ".join(repr(name) for name in _ALIASES)
        raise ValueError(
            f"Argument `policy` must be one of {valid}. Received: policy={policy!r}"
        )
    name = _ALIASES[policy.strip().lower()]
    if name == "auto":
        name = auto_policy()
    elif warn:
        problem = _mismatch(name, hardware._probe_devices())
        if problem:
            warnings.warn(
                f"Dtype policy {name!r} may run poorly here: {problem}",
                PrecisionWarning,
                stacklevel=2,
            )
    keras.config.set_dtype_policy(name)
    return name

