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

The package holds one module a concept: `hardware` (the device probe of each
backend), `policy` (the choice and setting of the dtype policy), `outputs`
(the float32-output check and fix) and `scaling` (the batch-size rule). Every
public name is importable from `keras_tricks.precision`.
"""

# `POLICIES` and the two probe helpers are not in `__all__` but stay importable
# from here, as before the split. To simulate hardware, patch
# `keras_tricks.precision.hardware._probe_devices` (the name the policy
# functions call), not this alias.
from keras_tricks.precision.hardware import _parse_capability as _parse_capability
from keras_tricks.precision.hardware import _probe_devices as _probe_devices
from keras_tricks.precision.outputs import OutputProblem, OutputReport, check_outputs
from keras_tricks.precision.policy import POLICIES as POLICIES
from keras_tricks.precision.policy import (
    PolicyChoice,
    PrecisionWarning,
    auto_policy,
    set_policy,
)
from keras_tricks.precision.scaling import ScaledHparams, scale_hparams

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
