"""`WarmupCosine`: linear warmup then cosine decay, sized from `fit`."""

import math

import keras

from keras_tricks import schedules
from keras_tricks.callbacks._schedule_callback import (
    ScheduleCallback,
    check_at_most_one,
    check_optional_number,
)
from keras_tricks.schedules import _primitives as P

_PLACEHOLDER_STEPS = 1_000_000
_DEFAULT_WARMUP_RATIO = 0.05


@keras.saving.register_keras_serializable(
    package="keras_tricks", name="WarmupCosineCallback"
)
class WarmupCosine(ScheduleCallback):
    """Train with a linear warmup followed by a cosine decay (Goyal et al.).

    Installs a `keras_tricks.schedules.WarmupCosine` schedule sized to the
    whole training at the start of `fit`: the LR rises linearly from
    `initial_lr` to `peak_lr` over the warmup, then follows half a cosine down
    to `final_lr` at the last update. The warmup is part of the total (as in
    optax and Hugging Face `transformers`). The warmup can be given in
    updates, in epochs or as a ratio of the training; without any of them it
    is 5% of the training, the low end of the 5-10% commonly used.

    Runs inside the compiled step from the optimizer's `iterations`: no
    per-batch hook, exact with `steps_per_execution`, `jit_compile`, mixed
    precision and distribution; a run resumed with `BackupAndRestore` or
    `fit(initial_epoch=e)` follows the uninterrupted trajectory. Each epoch
    writes `logs["lr"]` (and `logs["momentum"]` where the optimizer has one).

    Hugging Face's `get_cosine_schedule_with_warmup(num_warmup_steps,
    num_training_steps)` is `warmup_steps, total_steps` with
    `initial_lr=final_lr=0`; optax's `warmup_cosine_decay_schedule(init_value,
    peak_value, warmup_steps, decay_steps, end_value)` is `initial_lr,
    peak_lr, warmup_steps, total_steps, final_lr`; timm's `warmup_t` is in
    epochs (`warmup_epochs` here), and its `k_decay` is `k_decay` here.

    Args:
        peak_lr: float. The LR at the end of the warmup.
        total_steps: int or None. Length of the schedule in updates, warmup
            included; `None` sizes it from `fit`. Defaults to `None`.
        warmup_ratio: float in [0, 1) or None. Warmup as a fraction of
            `total_steps` (rounded up). Defaults to `None`.
        warmup_steps: int or None. Warmup in updates. Defaults to `None`.
        warmup_epochs: float or None. Warmup in epochs. Defaults to `None`.
            Give at most one of the three warmup arguments; with none the
            warmup is `warmup_ratio=0.05`.
        initial_lr: float. The LR of the first update. Defaults to `0.0`.
        final_lr: float. The LR at the end. Defaults to `0.0`.
        k_decay: float > 0. timm's `k_decay`: after the warmup the cosine
            runs on `t**k_decay / T**k_decay`, where `t` counts the updates
            since the warmup and `T` is their total; above 1 the LR stays
            near `peak_lr` longer, below 1 it falls sooner. Defaults to `1.0`
            (the plain cosine).
        count: `"updates"` or `"batches"`: what a step is under Keras's
            `gradient_accumulation_steps` (see `OneCycle`).
            Defaults to `"updates"`.

    Example:

    ```python
    import numpy as np
    import keras
    import keras_tricks

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.AdamW(), loss="mse")
    x, y = np.random.rand(64, 8), np.random.rand(64, 1)
    schedule = keras_tricks.callbacks.WarmupCosine(peak_lr=1e-2, warmup_epochs=1)
    model.fit(x, y, epochs=5, batch_size=16, verbose=0, callbacks=[schedule])
    ```
    """

    def __init__(
        self,
        peak_lr,
        total_steps=None,
        warmup_ratio=None,
        warmup_steps=None,
        warmup_epochs=None,
        initial_lr=0.0,
        final_lr=0.0,
        count="updates",
        k_decay=1.0,
    ):
        super().__init__(total_steps=total_steps, count=count)
        self.k_decay = P.check_number("k_decay", k_decay, gt=0.0)
        check_at_most_one(
            warmup_ratio=warmup_ratio,
            warmup_steps=warmup_steps,
            warmup_epochs=warmup_epochs,
        )
        self.warmup_ratio = check_optional_number(
            "warmup_ratio", warmup_ratio, ge=0.0, lt=1.0
        )
        if warmup_steps is not None:
            warmup_steps = P.check_int("warmup_steps", warmup_steps, ge=0)
        self.warmup_steps = warmup_steps
        self.warmup_epochs = check_optional_number(
            "warmup_epochs", warmup_epochs, ge=0.0
        )
        self.peak_lr = peak_lr
        self.initial_lr = initial_lr
        self.final_lr = final_lr
        if self.total_steps is not None and self.warmup_epochs is None:
            self._make_schedule(self.total_steps, None)
        else:
            self._build(_PLACEHOLDER_STEPS, warmup_steps=0)

    def _needs(self):
        if self.warmup_epochs is not None:
            return {"total", "per_epoch"}
        return {"total"}

    def _length_hint(self):
        if self.warmup_epochs is not None:
            return "`total_steps` and `warmup_steps` instead of `warmup_epochs`"
        return "`total_steps`"

    def _build(self, total_steps, warmup_steps=0, warmup_ratio=None):
        return schedules.WarmupCosine(
            peak_lr=self.peak_lr,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            initial_lr=self.initial_lr,
            final_lr=self.final_lr,
            warmup_ratio=warmup_ratio,
            k_decay=self.k_decay,
        )

    def _make_schedule(self, total_steps, steps_per_epoch):
        if self.warmup_steps is not None:
            return self._build(total_steps, warmup_steps=self.warmup_steps)
        if self.warmup_epochs is not None:
            warmup = math.ceil(self.warmup_epochs * steps_per_epoch)
            if warmup >= total_steps:
                raise ValueError(
                    "Argument `warmup_epochs` must leave at least one update "
                    "after warmup. Received: "
                    f"warmup_epochs={self.warmup_epochs} ({warmup} updates), "
                    f"total_steps={total_steps}"
                )
            return self._build(total_steps, warmup_steps=warmup)
        ratio = (
            _DEFAULT_WARMUP_RATIO if self.warmup_ratio is None else self.warmup_ratio
        )
        return self._build(total_steps, warmup_ratio=ratio)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "peak_lr": self.peak_lr,
                "warmup_ratio": self.warmup_ratio,
                "warmup_steps": self.warmup_steps,
                "warmup_epochs": self.warmup_epochs,
                "initial_lr": self.initial_lr,
                "final_lr": self.final_lr,
                "k_decay": self.k_decay,
            }
        )
        return config
