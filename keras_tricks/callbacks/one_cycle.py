"""`OneCycle`: the one-cycle policy sized from `fit`, with momentum cycling."""

import keras

from keras_tricks import schedules
from keras_tricks.callbacks._schedule_callback import ScheduleCallback

_PLACEHOLDER_STEPS = 1_000_000


@keras.saving.register_keras_serializable(
    package="keras_tricks", name="OneCycleCallback"
)
class OneCycle(ScheduleCallback):
    """Train with the one-cycle policy (Smith & Topin, "Super-Convergence").

    At the start of `fit` the callback sizes a
    `keras_tricks.schedules.OneCycle` schedule to the whole training
    (`epochs * steps_per_epoch` updates, or `total_steps`) and installs it on
    the model's optimizer: the LR rises from `max_lr / div_factor` to `max_lr`
    over the first `pct_start` of the updates, then anneals to
    `max_lr / div_factor / final_div_factor`. With `cycle_momentum=True`
    (the default, as in PyTorch) the momentum moves the other way, from
    `max_momentum` to `base_momentum` and back: SGD's `momentum`, or `beta_1`
    of Adam, AdamW, Nadam, Adamax and Lamb.

    The schedule runs inside the compiled train step from the optimizer's
    `iterations` (no per-batch hook), so it is exact with
    `steps_per_execution > 1`, `jit_compile=True`, mixed precision and
    distribution, and a run resumed by `BackupAndRestore` (or continued with
    `fit(initial_epoch=e)`) follows the same LR trajectory as an uninterrupted
    one. A new `fit(epochs=E)` call (with `initial_epoch=0`) starts a new cycle
    over its own `E` epochs. After `fit` the optimizer's own learning rate is
    back in charge. Each epoch writes `logs["lr"]` and `logs["momentum"]`: the
    values the next update will use.

    PyTorch's `OneCycleLR(max_lr, total_steps, pct_start, anneal_strategy,
    cycle_momentum, base_momentum, max_momentum, div_factor,
    final_div_factor, three_phase)` takes the same arguments. fastai's
    `fit_one_cycle` is `pct_start=0.25, final_div_factor=4e3` here.

    Args:
        max_lr: float. The peak learning rate.
        total_steps: int or None. Length of the cycle in updates. `None` sizes
            it from `fit`: `epochs * steps_per_epoch` (in real updates, see
            `count`). Defaults to `None`.
        pct_start: float in (0, 1). Fraction of the cycle spent raising the LR.
            Defaults to `0.3`.
        anneal_strategy: `"cos"` or `"linear"`. Defaults to `"cos"`.
        div_factor: float. The initial LR is `max_lr / div_factor`.
            Defaults to `25.0`.
        final_div_factor: float. The final LR is
            `max_lr / div_factor / final_div_factor`. Defaults to `1e4`.
        three_phase: bool. PyTorch's three-phase variant. Defaults to `False`.
        cycle_momentum: bool. Cycle the optimizer's momentum (`beta_1`)
            inversely to the LR. Needs SGD with `momentum > 0` or an optimizer
            of the Adam family. Defaults to `True`.
        base_momentum: float. Momentum at the LR peak. Defaults to `0.85`.
        max_momentum: float. Momentum at the start and the end.
            Defaults to `0.95`.
        count: `"updates"` or `"batches"`. Under Keras's
            `gradient_accumulation_steps=k` the optimizer steps once every `k`
            batches: `"updates"` sizes the schedule in real updates (and feeds
            it `iterations // k`), `"batches"` in batches. Without accumulation
            both are the same. Under `keras_tricks.optimizers.
            GradientAccumulation` the schedule always counts updates.
            Defaults to `"updates"`.

    Example:

    ```python
    import numpy as np
    import keras
    import keras_tricks

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(momentum=0.9), loss="mse")
    x, y = np.random.rand(64, 8), np.random.rand(64, 1)
    history = model.fit(
        x, y, epochs=3, batch_size=16, verbose=0,
        callbacks=[keras_tricks.callbacks.OneCycle(max_lr=0.05)],
    )
    history.history["lr"], history.history["momentum"]
    ```
    """

    def __init__(
        self,
        max_lr,
        total_steps=None,
        pct_start=0.3,
        anneal_strategy="cos",
        div_factor=25.0,
        final_div_factor=1e4,
        three_phase=False,
        cycle_momentum=True,
        base_momentum=0.85,
        max_momentum=0.95,
        count="updates",
    ):
        super().__init__(total_steps=total_steps, count=count)
        self.max_lr = max_lr
        self.pct_start = pct_start
        self.anneal_strategy = anneal_strategy
        self.div_factor = div_factor
        self.final_div_factor = final_div_factor
        self.three_phase = bool(three_phase)
        self.cycle_momentum = bool(cycle_momentum)
        self.base_momentum = base_momentum
        self.max_momentum = max_momentum
        self._cycle_momentum = self.cycle_momentum
        # The schedule checks its own arguments: fail now, not in `fit`.
        self._make_schedule(self.total_steps or _PLACEHOLDER_STEPS, None)

    def _make_schedule(self, total_steps, steps_per_epoch):
        return schedules.OneCycle(
            max_lr=self.max_lr,
            total_steps=total_steps,
            pct_start=self.pct_start,
            anneal_strategy=self.anneal_strategy,
            div_factor=self.div_factor,
            final_div_factor=self.final_div_factor,
            three_phase=self.three_phase,
            base_momentum=self.base_momentum,
            max_momentum=self.max_momentum,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_lr": self.max_lr,
                "pct_start": self.pct_start,
                "anneal_strategy": self.anneal_strategy,
                "div_factor": self.div_factor,
                "final_div_factor": self.final_div_factor,
                "three_phase": self.three_phase,
                "cycle_momentum": self.cycle_momentum,
                "base_momentum": self.base_momentum,
                "max_momentum": self.max_momentum,
            }
        )
        return config
