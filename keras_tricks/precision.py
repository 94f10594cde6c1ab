"""Mixed precision that fits the hardware, float32 outputs, and the scaling rule.

Three small tools around `keras.mixed_precision`:

* :func:`auto_policy` / :func:`set_policy` pick the dtype policy for the
  device Keras will run on: ``mixed_bfloat16`` on TPUs and NVIDIA GPUs of
  compute capability 8.0 and newer (Ampere, Ada, Hopper, Blackwell),
  ``mixed_float16`` on older CUDA GPUs, ``float32`` on CPUs. Only the active
  backend is asked; no other backend is imported.
* :func:`check_outputs` finds model outputs that come out in float16 or
  bfloat16 (a softmax ``Dense`` under a mixed policy does) and, with
  ``fix=True``, rebuilds the model so that its output layers compute in
  float32.
* :func:`scale_hparams` applies the linear (Goyal et al.) or square-root rule
  when the batch size changes, moves the factor to the learning rate or the
  weight decay (Leslie Smith's ``lr * wd / (batch * (1 - momentum))``), and
  suggests a warmup.

None of this runs inside a train step: it is configuration code, called once.
"""

import dataclasses
import math
import numbers
import os
import warnings
from typing import NamedTuple

import keras

__all__ = [
    "OutputProblem",
    "OutputReport",
    "PolicyChoice",
    "PrecisionWarning",
    "ScaledHparams",
    "auto_policy",
    "check_outputs",
    "scale_hparams",
    "set_policy",
]

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
_LOW_PRECISION = ("float16", "bfloat16")
_GPU_PLATFORMS = ("gpu", "cuda", "rocm")


class PrecisionWarning(UserWarning):
    """Warns that a dtype policy does not suit the hardware it will run on."""


# --- which hardware will Keras run on ----------------------------------------


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
    choice = PolicyChoice(*_choose(_probe_devices()))
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
        problem = _mismatch(name, _probe_devices())
        if problem:
            warnings.warn(
                f"Dtype policy {name!r} may run poorly here: {problem}",
                PrecisionWarning,
                stacklevel=2,
            )
    keras.config.set_dtype_policy(name)
    return name


# --- float32 outputs ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OutputProblem:
    """One model output computed in a half-precision dtype.

    Attributes:
        index: int. Position of the output in ``model.outputs``.
        name: str. The output tensor's name.
        dtype: str. Its dtype (``"float16"`` or ``"bfloat16"``).
        layer: str. Name of the layer (or operation) that produced it.
    """

    index: int
    name: str
    dtype: str
    layer: str

    def __str__(self):
        return (
            f"output {self.index} ({self.name!r}) is {self.dtype}, produced by "
            f"{self.layer!r}"
        )


@dataclasses.dataclass(frozen=True)
class OutputReport:
    """What :func:`check_outputs` found.

    Attributes:
        problems: tuple of :class:`OutputProblem`, empty when every output is
            float32 (or any dtype other than float16/bfloat16).
    """

    problems: tuple = ()

    @property
    def ok(self):
        """True when no output is in float16 or bfloat16."""
        return not self.problems

    def __str__(self):
        if self.ok:
            return "All model outputs are float32 (or full precision)."
        lines = [f"{len(self.problems)} output(s) in half precision:"]
        lines += [f"  - {problem}" for problem in self.problems]
        lines.append(
            "  Softmax/sigmoid and the loss are unstable in half precision "
            "(overflow to inf/NaN, probabilities that underflow to 0). Fix: "
            "`check_outputs(model, fix=True)`, or give the last layer "
            "`dtype='float32'`."
        )
        return "\n".join(lines)


def _graph_outputs(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a `keras.Model`. Received: "
            f"model={type(model).__name__}"
        )
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        outputs = None
    if not outputs:
        raise ValueError(
            "`check_outputs` needs a Functional or Sequential model with known "
            "outputs (a Sequential model that starts with `keras.Input`, or one "
            "that has been built). Received: a model of type "
            f"{type(model).__name__} without `outputs`. For a subclassed model, "
            "create its last layer with `dtype='float32'`."
        )
    return outputs


def _producer(tensor):
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else history.operation


def _dtype_name(tensor):
    return keras.backend.standardize_dtype(tensor.dtype)


def _report(model):
    problems = []
    for index, tensor in enumerate(_graph_outputs(model)):
        dtype = _dtype_name(tensor)
        if dtype in _LOW_PRECISION:
            op = _producer(tensor)
            problems.append(
                OutputProblem(
                    index=index,
                    name=str(getattr(tensor, "name", index)),
                    dtype=dtype,
                    layer=getattr(op, "name", type(op).__name__),
                )
            )
    return OutputReport(tuple(problems))


def _float32_targets(model, targets):
    """Collect the layers that produce half-precision outputs, nested too.

    Returns True when every such output comes from a layer that can be
    recreated with ``dtype="float32"``.
    """
    all_layers = True
    for tensor in _graph_outputs(model):
        if _dtype_name(tensor) not in _LOW_PRECISION:
            continue
        op = _producer(tensor)
        if isinstance(op, (keras.Sequential, keras.Model)) and getattr(
            op, "outputs", None
        ):
            all_layers &= _float32_targets(op, targets)
        elif isinstance(op, keras.layers.Layer) and not isinstance(op, keras.Model):
            targets.add(id(op))
        else:
            all_layers = False
    return all_layers


def _float32_output_model(model):
    targets = set()
    _float32_targets(model, targets)

    def clone_function(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # a stateless operation (keras.ops call): reuse it
        config = layer.get_config()
        if id(layer) in targets:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    fixed = keras.models.clone_model(
        model, clone_function=clone_function, recursive=True
    )
    fixed.set_weights(model.get_weights())
    # Outputs that no layer produced (a `keras.ops` call in a functional
    # model): the operation stays in half precision, cast its result.
    if any(_dtype_name(t) in _LOW_PRECISION for t in fixed.outputs):
        if isinstance(fixed, keras.Sequential):
            raise ValueError(
                "Could not make every output float32 by recreating layers."
            )

        def cast(tensor):
            if _dtype_name(tensor) in _LOW_PRECISION:
                return keras.layers.Activation("linear", dtype="float32")(tensor)
            return tensor

        fixed = keras.Model(
            fixed.inputs,
            keras.tree.map_structure(cast, fixed.output),
            name=fixed.name,
        )
    if model.compiled and not fixed.compiled:
        fixed.compile_from_config(model.get_compile_config())
    return fixed


def check_outputs(model, fix=False):
    """Find model outputs in float16/bfloat16 and optionally make them float32.

    Under a mixed policy every layer computes in float16 or bfloat16,
    including the last one: a ``Dense(..., activation="softmax")`` returns
    float16 probabilities. Logits above 65504 overflow to ``inf`` and the
    softmax turns them into NaN; small probabilities underflow to 0 and the
    cross-entropy is clipped to a wrong value. Keras's guide recommends a
    float32 output layer; this function checks for it and can build it.

    With ``fix=True`` the model is cloned (`keras.models.clone_model`) and
    every layer that produces a half-precision output is recreated with
    ``dtype="float32"``, so it computes in float32 (its float16 input is cast
    up first); the weights are copied. Nested Sequential/Functional models
    are followed down to their output layer. An output produced by a bare
    `keras.ops` call instead of a layer gets a float32 ``Activation("linear")``
    appended. A compiled model's compile config is applied to the copy (a
    fresh optimizer); the original model is left untouched.

    Args:
        model: keras.Model. A Functional model, or a Sequential model with a
            known input shape. Subclassed models have no symbolic outputs to
            inspect: create their last layer with ``dtype="float32"``.
        fix: bool. Return a fixed copy of the model instead of a report.
            Defaults to `False`.

    Returns:
        With ``fix=False``, an :class:`OutputReport` (``.ok``, ``.problems``,
        a readable ``str``). With ``fix=True``, a `keras.Model` whose outputs
        are all float32: a new model when something had to be fixed, the same
        ``model`` object otherwise.

    Raises:
        TypeError: when ``model`` is not a `keras.Model`.
        ValueError: when the model has no symbolic outputs.

    Example:

    ```python
    import keras
    from keras_tricks import precision

    keras.config.set_dtype_policy("mixed_float16")
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(3, activation="softmax"),
    ])
    print(precision.check_outputs(model))  # 1 output(s) in half precision
    model = precision.check_outputs(model, fix=True)
    assert precision.check_outputs(model).ok
    ```
    """
    if not isinstance(fix, bool):
        raise TypeError(f"Argument `fix` must be a bool. Received: fix={fix!r}")
    report = _report(model)
    if not fix:
        return report
    if report.ok:
        return model
    fixed = _float32_output_model(model)
    remaining = _report(fixed)
    if not remaining.ok:
        raise ValueError(f"Could not make every output float32: {remaining}")
    return fixed


# --- batch size, learning rate and weight decay ------------------------------


@dataclasses.dataclass(frozen=True)
class ScaledHparams:
    """The result of :func:`scale_hparams`; ``str()`` explains it.

    Attributes:
        lr: float. The learning rate for ``new_batch_size``.
        weight_decay: float or None. The weight decay for ``new_batch_size``.
        warmup_epochs: float. Suggested linear warmup length, in epochs (0
            when the LR does not grow).
        warmup_steps: int or None. The same in optimizer steps, when
            ``steps_per_epoch`` was given.
        factor: float. The multiplier applied (``k`` or ``sqrt(k)`` with
            ``k = new_batch_size / batch_size``).
        old_lr, old_weight_decay, batch_size, new_batch_size, momentum, rule,
            keep: the inputs, for the record.
        smith_ratio_before, smith_ratio_after: float or None. Leslie Smith's
            ``lr * wd / (batch * (1 - momentum))`` before and after (None
            without a weight decay; momentum 0 when not given).
    """

    lr: float
    weight_decay: float | None
    warmup_epochs: float
    warmup_steps: int | None
    factor: float
    old_lr: float
    old_weight_decay: float | None
    batch_size: int
    new_batch_size: int
    momentum: float | None
    rule: str
    keep: str
    smith_ratio_before: float | None
    smith_ratio_after: float | None

    def __str__(self):
        k = self.new_batch_size / self.batch_size
        why = {
            "linear": "linear scaling rule (Goyal et al. 2017): multiply by k",
            "sqrt": "square-root rule (Krizhevsky 2014; Hoffer et al. 2017): "
            "multiply by sqrt(k), gentler, often used with Adam",
        }[self.rule]
        lines = [
            f"batch size {self.batch_size} -> {self.new_batch_size} "
            f"(k = {k:.4g}); {why}: factor {self.factor:.4g}.",
            f"  learning rate: {self.old_lr:.4g} -> {self.lr:.4g}"
            + ("  (kept)" if self.keep == "lr" else ""),
        ]
        if self.old_weight_decay is not None:
            lines.append(
                f"  weight decay:  {self.old_weight_decay:.4g} -> "
                f"{self.weight_decay:.4g}" + ("  (kept)" if self.keep == "wd" else "")
            )
        if self.smith_ratio_before is not None:
            held = math.isclose(
                self.smith_ratio_before, self.smith_ratio_after, rel_tol=1e-9
            )
            if held:
                note = " (held constant)"
            elif self.smith_ratio_before == 0:
                # weight_decay=0: no ratio to hold (nothing to divide by).
                note = ""
            else:
                change = self.smith_ratio_after / self.smith_ratio_before
                note = f" (x{change:.3g})"
            lines.append(
                "  Smith's lr*wd/(batch*(1-momentum)): "
                f"{self.smith_ratio_before:.4g} -> {self.smith_ratio_after:.4g}"
                + note
            )
        if self.keep == "lr":
            lines.append(
                "  The LR is kept and the factor goes to the weight decay "
                "(Smith: with lr fixed, wd scales with the batch)."
            )
        if self.warmup_epochs > 0:
            steps = (
                f" = {self.warmup_steps} steps" if self.warmup_steps is not None else ""
            )
            lines.append(
                f"  warmup: {self.warmup_epochs:.3g} epochs{steps}, linear from "
                "a small LR (Goyal et al.: 5 epochs of a 90-epoch run; capped "
                "at 10% of a shorter run)."
            )
        else:
            lines.append("  warmup: none needed, the learning rate did not grow.")
        return "\n".join(lines)


def _check_positive_number(name, value, allow_zero=False):
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        relation = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"Argument `{name}` must be a finite number {relation}. "
            f"Received: {name}={value!r}"
        )


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"Argument `{name}` must be a positive integer. Received: {name}={value!r}"
        )


def scale_hparams(
    lr,
    batch_size,
    new_batch_size,
    weight_decay=None,
    momentum=None,
    rule="linear",
    keep="wd",
    epochs=None,
    steps_per_epoch=None,
):
    """Rescale the learning rate (or the weight decay) for a new batch size.

    With ``k = new_batch_size / batch_size`` the factor is ``k`` for
    ``rule="linear"`` (Goyal et al. 2017, "Accurate, Large Minibatch SGD":
    ``lr = base_lr * batch / 256``, used up to batch 8k with SGD) or
    ``sqrt(k)`` for ``rule="sqrt"`` (keeps the gradient-noise variance:
    Krizhevsky 2014, Hoffer et al. 2017).

    Which rule: ``"linear"`` for SGD with or without momentum (and LARS),
    together with a warmup; ``"sqrt"`` for adaptive optimizers (Adam,
    AdamW, LAMB / ``TrustRatio(Adam)``), whose step does not grow with the
    gradient's size: Malladi et al. 2022 ("On the SDEs and Scaling Rules
    for Adaptive Gradient Algorithms") derive the square-root rule for Adam
    and RMSprop, where the full rule also moves ``1 - beta_1`` and
    ``1 - beta_2`` by ``k`` and divides ``epsilon`` by ``sqrt(k)`` (only the
    LR is scaled here). Both rules stop holding beyond a critical batch
    size, where a layer-wise trust ratio (``keras_tricks.optimizers.LARS``,
    ``TrustRatio``) is the usual next step.

    Leslie Smith's relationship (the "Bag of Tricks" notes) ties the four
    together: ``lr * wd / (batch * (1 - momentum)) ≈ C``. When the batch
    grows by ``k`` you may multiply either the LR (``keep="wd"``, the
    default) or the weight decay (``keep="lr"``) by ``k``; both hold ``C``
    under the linear rule. Keras's decoupled weight decay (AdamW, and the
    ``weight_decay`` argument of every Keras optimizer) applies
    ``lr * wd * w`` per step, so the per-step decay is the product in both
    cases.

    A larger LR early in training diverges without a warmup: when the LR
    grows, a linear warmup of 5 epochs is suggested (Goyal et al., on a
    90-epoch run), capped at 10% of ``epochs`` when given. Use it with e.g.
    ``keras_tricks``'s warmup-cosine schedule.

    Args:
        lr: float. The learning rate tuned for ``batch_size``.
        batch_size: int. The batch size ``lr`` was tuned for.
        new_batch_size: int. The batch size you will train with (across all
            devices: the global batch).
        weight_decay: float or None. The weight decay tuned with ``lr``.
            Required for ``keep="lr"``. Defaults to None.
        momentum: float or None. SGD momentum or Adam's ``beta_1``, in
            ``[0, 1)``; only enters Smith's ratio in the report. Defaults to
            None (counted as 0).
        rule: str. ``"linear"`` (SGD, LARS) or ``"sqrt"`` (Adam-type
            optimizers). Defaults to ``"linear"``.
        keep: str. ``"wd"`` keeps the weight decay and scales the LR;
            ``"lr"`` keeps the LR and scales the weight decay. Defaults to
            ``"wd"``.
        epochs: int or None. Length of the run, to cap the warmup at 10%.
            Defaults to None.
        steps_per_epoch: int or None. Optimizer steps per epoch at the new
            batch size, to express the warmup in steps. Defaults to None.

    Returns:
        A :class:`ScaledHparams`; print it for an explanation.

    Raises:
        ValueError: for a non-positive LR or batch size, a negative weight
            decay, a momentum outside ``[0, 1)``, an unknown ``rule`` or
            ``keep``, or ``keep="lr"`` without a weight decay.

    Example:

    ```python
    from keras_tricks import precision

    new = precision.scale_hparams(0.1, 256, 1024, weight_decay=1e-4,
                                  momentum=0.9, epochs=90)
    print(new)
    new.lr             # 0.4
    new.warmup_epochs  # 5.0
    ```
    """
    _check_positive_number("lr", lr)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("new_batch_size", new_batch_size)
    if weight_decay is not None:
        _check_positive_number("weight_decay", weight_decay, allow_zero=True)
    if momentum is not None and not (
        isinstance(momentum, numbers.Real)
        and not isinstance(momentum, bool)
        and 0 <= momentum < 1
    ):
        raise ValueError(
            "Argument `momentum` must be a number in [0, 1). "
            f"Received: momentum={momentum!r}"
        )
    if rule not in ("linear", "sqrt"):
        raise ValueError(
            f"Argument `rule` must be 'linear' or 'sqrt'. Received: rule={rule!r}"
        )
    if keep not in ("wd", "lr"):
        raise ValueError(
            "Argument `keep` must be 'wd' (scale the LR) or 'lr' (scale the "
            f"weight decay). Received: keep={keep!r}"
        )
    if keep == "lr" and not weight_decay:
        raise ValueError(
            "Argument `keep='lr'` moves the scaling factor to the weight decay, "
            "so `weight_decay` must be > 0. Received: "
            f"weight_decay={weight_decay!r}"
        )
    if epochs is not None:
        _check_positive_int("epochs", epochs)
    if steps_per_epoch is not None:
        _check_positive_int("steps_per_epoch", steps_per_epoch)

    k = new_batch_size / batch_size
    factor = k if rule == "linear" else math.sqrt(k)
    new_lr = float(lr) * factor if keep == "wd" else float(lr)
    new_wd = None
    if weight_decay is not None:
        new_wd = float(weight_decay) * (factor if keep == "lr" else 1.0)

    if new_lr > lr:
        warmup_epochs = 5.0 if epochs is None else min(5.0, 0.1 * epochs)
    else:
        warmup_epochs = 0.0
    warmup_steps = None
    if steps_per_epoch is not None:
        warmup_steps = int(round(warmup_epochs * steps_per_epoch))
        if warmup_epochs > 0:
            warmup_steps = max(1, warmup_steps)

    def smith(lr_, wd_, batch_):
        if wd_ is None:
            return None
        return lr_ * wd_ / (batch_ * (1.0 - (momentum or 0.0)))

    return ScaledHparams(
        lr=new_lr,
        weight_decay=new_wd,
        warmup_epochs=warmup_epochs,
        warmup_steps=warmup_steps,
        factor=factor,
        old_lr=float(lr),
        old_weight_decay=None if weight_decay is None else float(weight_decay),
        batch_size=batch_size,
        new_batch_size=new_batch_size,
        momentum=momentum,
        rule=rule,
        keep=keep,
        smith_ratio_before=smith(float(lr), weight_decay, batch_size),
        smith_ratio_after=smith(new_lr, new_wd, new_batch_size),
    )
