"""Warmup schedules: linear warmup followed by cosine, linear or constant LR."""

import keras
from keras import ops

from keras_tricks.schedules import _primitives as P


class _WarmupThenDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from `initial_lr` to `peak_lr`, then a decay to `final_lr`.

    Subclasses name the decay shape in `_decay` ("cos" or "linear").
    """

    has_momentum = False
    _decay = None

    def __init__(
        self,
        peak_lr,
        total_steps,
        warmup_steps=0,
        initial_lr=0.0,
        final_lr=0.0,
        warmup_ratio=None,
    ):
        super().__init__()
        self.peak_lr = P.check_number("peak_lr", peak_lr, gt=0.0)
        self.total_steps = P.check_int("total_steps", total_steps, gt=0)
        self.warmup_steps = P.check_int("warmup_steps", warmup_steps, ge=0)
        self._warmup = P.resolve_warmup(warmup_steps, warmup_ratio, self.total_steps)
        self.warmup_ratio = None if warmup_ratio is None else float(warmup_ratio)
        self.initial_lr = P.check_number("initial_lr", initial_lr, ge=0.0)
        self.final_lr = P.check_number("final_lr", final_lr, ge=0.0)
        P.check_order("initial_lr", self.initial_lr, "peak_lr", self.peak_lr)
        P.check_order("final_lr", self.final_lr, "peak_lr", self.peak_lr)

    def __call__(self, step):
        step = P.as_step(step, upper=self.total_steps)
        return P.join(
            step,
            [float(self._warmup), float(self.total_steps)],
            [
                ("linear", self.initial_lr, self.peak_lr),
                (self._decay, self.peak_lr, self.final_lr),
            ],
        )

    def get_config(self):
        return {
            "peak_lr": self.peak_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "initial_lr": self.initial_lr,
            "final_lr": self.final_lr,
            "warmup_ratio": self.warmup_ratio,
        }


@keras.saving.register_keras_serializable(package="keras_tricks")
class WarmupCosine(_WarmupThenDecay):
    """Linear warmup, then cosine decay (Goyal et al. 2017; Loshchilov & Hutter).

    For `step < W` (`W` the warmup length) the LR rises linearly,
    `initial_lr + (peak_lr - initial_lr) * step / W`; then it follows half a
    cosine, `final_lr + (peak_lr - final_lr) / 2 * (1 + cos(pi * (step - W) /
    (total_steps - W)))`, and holds `final_lr` from `total_steps` on.

    **`total_steps` includes the warmup** (as optax's
    `warmup_cosine_decay_schedule(decay_steps=...)` and timm do; Keras's
    `CosineDecay(warmup_steps=...)` counts `decay_steps` after the warmup).
    A warmup of 5-10% of the steps is the usual choice.

    Args:
        peak_lr: float. The LR at the end of the warmup.
        total_steps: int. Number of optimizer updates of the whole schedule,
            warmup included. Past it the LR holds `final_lr`.
        warmup_steps: int. Length of the linear warmup. Defaults to `0`.
        initial_lr: float. The LR at step 0. Defaults to `0.0`.
        final_lr: float. The LR at `total_steps` and after. Defaults to `0.0`.
        warmup_ratio: float in [0, 1) or None. Alternative to `warmup_steps`:
            the warmup lasts `ceil(warmup_ratio * total_steps)` steps (the
            rounding of Hugging Face `transformers`). Give one of the two, not
            both. Defaults to `None`.
        k_decay: float > 0. timm's `k_decay`: the cosine runs on
            `((step - W) / (total_steps - W))**k_decay`; above 1 the LR stays
            high for longer. Defaults to `1.0` (plain cosine).

    Example:

    ```python
    import keras
    from keras_tricks.schedules import WarmupCosine

    schedule = WarmupCosine(peak_lr=1e-3, total_steps=10_000, warmup_ratio=0.05)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule)
    float(schedule(500)), float(schedule(10_000))  # (0.001, 0.0)
    ```
    """

    _decay = "cos"

    def __init__(
        self,
        peak_lr,
        total_steps,
        warmup_steps=0,
        initial_lr=0.0,
        final_lr=0.0,
        warmup_ratio=None,
        k_decay=1.0,
    ):
        super().__init__(
            peak_lr,
            total_steps,
            warmup_steps=warmup_steps,
            initial_lr=initial_lr,
            final_lr=final_lr,
            warmup_ratio=warmup_ratio,
        )
        self.k_decay = P.check_number("k_decay", k_decay, gt=0.0)

    def __call__(self, step):
        if self.k_decay == 1.0:
            return super().__call__(step)
        step = P.as_step(step, upper=self.total_steps)
        warmup, total = float(self._warmup), float(self.total_steps)
        pct = ops.clip(ops.divide(ops.subtract(step, warmup), total - warmup), 0.0, 1.0)
        lr = P.cosine(self.peak_lr, self.final_lr, ops.power(pct, self.k_decay))
        if self._warmup > 0:
            warm = P.join(step, [warmup], [("linear", self.initial_lr, self.peak_lr)])
            lr = ops.where(ops.less_equal(step, warmup), warm, lr)
        return ops.cast(lr, "float32")

    def get_config(self):
        config = super().get_config()
        config["k_decay"] = self.k_decay
        return config


@keras.saving.register_keras_serializable(package="keras_tricks")
class WarmupLinear(_WarmupThenDecay):
    """Linear warmup, then linear decay (the BERT / `transformers` default).

    The LR rises linearly from `initial_lr` to `peak_lr` over the warmup, then
    falls linearly to `final_lr` at `total_steps` and holds it after.
    `total_steps` includes the warmup. With `initial_lr=0, final_lr=0` it is
    `transformers.get_linear_schedule_with_warmup`.

    Args:
        peak_lr: float. The LR at the end of the warmup.
        total_steps: int. Number of optimizer updates of the whole schedule,
            warmup included. Past it the LR holds `final_lr`.
        warmup_steps: int. Length of the linear warmup. Defaults to `0`.
        initial_lr: float. The LR at step 0. Defaults to `0.0`.
        final_lr: float. The LR at `total_steps` and after. Defaults to `0.0`.
        warmup_ratio: float in [0, 1) or None. Alternative to `warmup_steps`:
            the warmup lasts `ceil(warmup_ratio * total_steps)` steps (the
            rounding of Hugging Face `transformers`). Give one of the two, not
            both. Defaults to `None`.

    Example:

    ```python
    import keras
    from keras_tricks.schedules import WarmupLinear

    schedule = WarmupLinear(peak_lr=5e-5, total_steps=1000, warmup_steps=100)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule)
    float(schedule(100)), float(schedule(550))  # (5e-05, 2.5e-05)
    ```
    """

    _decay = "linear"


@keras.saving.register_keras_serializable(package="keras_tricks")
class WarmupConstant(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from `initial_lr` to `lr` over `warmup_steps`, then constant.

    `lr(step) = initial_lr + (lr - initial_lr) * step / warmup_steps` for
    `step < warmup_steps`, and `lr` from then on (Goyal et al. 2017's gradual
    warmup for large batches; `transformers.get_constant_schedule_with_warmup`).

    Args:
        lr: float. The LR after the warmup.
        warmup_steps: int. Length of the warmup in steps (0: constant LR).
        initial_lr: float. The LR at step 0. Defaults to `0.0`.

    Example:

    ```python
    import keras
    from keras_tricks.schedules import WarmupConstant

    schedule = WarmupConstant(lr=0.1, warmup_steps=500)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    float(schedule(250)), float(schedule(10_000))  # (0.05, 0.1)
    ```
    """

    has_momentum = False

    def __init__(self, lr, warmup_steps, initial_lr=0.0):
        super().__init__()
        self.lr = P.check_number("lr", lr, gt=0.0)
        self.warmup_steps = P.check_int("warmup_steps", warmup_steps, ge=0)
        self.initial_lr = P.check_number("initial_lr", initial_lr, ge=0.0)
        P.check_order("initial_lr", self.initial_lr, "lr", self.lr)

    def __call__(self, step):
        step = P.as_step(step)
        return P.join(
            step,
            [float(self.warmup_steps)],
            [("linear", self.initial_lr, self.lr)],
        )

    def get_config(self):
        return {
            "lr": self.lr,
            "warmup_steps": self.warmup_steps,
            "initial_lr": self.initial_lr,
        }
