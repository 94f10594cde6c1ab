"""One-cycle learning rate (and momentum) schedule, equal to PyTorch's OneCycleLR."""

import keras

from keras_tricks.schedules import _primitives as P


@keras.saving.register_keras_serializable(package="keras_tricks")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The one-cycle policy of Smith & Topin ("Super-Convergence", 2017).

    The learning rate rises from `max_lr / div_factor` to `max_lr` over the
    first `pct_start` of the steps, then anneals to
    `max_lr / div_factor / final_div_factor`. Momentum moves the other way:
    from `max_momentum` down to `base_momentum` while the LR rises, and back up
    while it falls. With `three_phase=True` the LR first goes back down to the
    initial LR symmetrically and a third phase anneals to the minimum with the
    momentum held at `max_momentum`.

    `schedule(step)` equals the learning rate of
    `torch.optim.lr_scheduler.OneCycleLR` after `step` calls of
    `scheduler.step()` (the LR used by optimizer update number `step`,
    counting from 0), with the same arguments; `schedule.momentum(step)`
    equals its momentum (SGD `momentum` or Adam `beta_1`). Phase boundaries:
    phase 1 ends at step `pct_start * total_steps - 1`, phase 2 at
    `total_steps - 1` (three phases: `pct_start * total_steps - 1`,
    `2 * pct_start * total_steps - 2`, `total_steps - 1`). Where PyTorch
    raises past the end, this schedule holds its final value.

    fastai's `fit_one_cycle` is the same policy with other defaults
    (`pct_start=0.25`, `div=25`, `div_final=1e5`, cosine warmup and
    annealing). To reproduce it pass `pct_start=0.25, final_div_factor=4e3`
    (fastai divides `max_lr` by `div_final`, PyTorch divides the initial LR).

    Args:
        max_lr: float. The peak learning rate.
        total_steps: int. The number of optimizer updates in the whole cycle
            (usually `epochs * steps_per_epoch`).
        pct_start: float in (0, 1). Fraction of the steps spent raising the LR.
            Defaults to `0.3`.
        anneal_strategy: `"cos"` or `"linear"`. Shape of every phase.
            Defaults to `"cos"`.
        div_factor: float. The initial LR is `max_lr / div_factor`.
            Defaults to `25.0`.
        final_div_factor: float. The final LR is
            `max_lr / div_factor / final_div_factor`. Defaults to `1e4`.
        three_phase: bool. Use the three-phase variant (see above).
            Defaults to `False`.
        base_momentum: float. Momentum at the LR peak. Defaults to `0.85`.
        max_momentum: float. Momentum at the start and the end.
            Defaults to `0.95`.

    Example:

    ```python
    import keras
    from keras_tricks.schedules import OneCycle

    schedule = OneCycle(max_lr=1e-2, total_steps=1000)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    float(schedule(0)), float(schedule(299)), float(schedule(999))
    # (0.0004, 0.01, 4e-08)
    float(schedule.momentum(299))  # 0.85
    ```

    Use `keras_tricks.callbacks` to size the schedule from `fit`'s epochs and
    steps and to cycle the optimizer's momentum inside the compiled step.
    """

    has_momentum = True

    def __init__(
        self,
        max_lr,
        total_steps,
        pct_start=0.3,
        anneal_strategy="cos",
        div_factor=25.0,
        final_div_factor=1e4,
        three_phase=False,
        base_momentum=0.85,
        max_momentum=0.95,
    ):
        super().__init__()
        self.max_lr = P.check_number("max_lr", max_lr, gt=0.0)
        self.total_steps = P.check_int("total_steps", total_steps, gt=0)
        self.pct_start = P.check_number("pct_start", pct_start, gt=0.0, lt=1.0)
        self.anneal_strategy = P.check_choice(
            "anneal_strategy", anneal_strategy, ("cos", "linear")
        )
        self.div_factor = P.check_number("div_factor", div_factor, gt=0.0)
        self.final_div_factor = P.check_number(
            "final_div_factor", final_div_factor, gt=0.0
        )
        self.three_phase = bool(three_phase)
        self.base_momentum = P.check_number(
            "base_momentum", base_momentum, ge=0.0, le=1.0
        )
        self.max_momentum = P.check_number("max_momentum", max_momentum, ge=0.0, le=1.0)

        total = self.total_steps
        first_end = self.pct_start * total - 1
        if self.three_phase:
            second_end = 2 * self.pct_start * total - 2
            if not second_end < total - 1:
                raise ValueError(
                    "With three_phase=True, argument `pct_start` must leave room "
                    "for the third phase: 2 * pct_start * total_steps - 2 < "
                    f"total_steps - 1. Received: pct_start={pct_start}, "
                    f"total_steps={total_steps}"
                )
            self._ends = [first_end, second_end, total - 1]
        else:
            self._ends = [first_end, total - 1]

        self.initial_lr = self.max_lr / self.div_factor
        self.min_lr = self.initial_lr / self.final_div_factor

    def _pieces(self, kind):
        a = self.anneal_strategy
        lo, hi = self.base_momentum, self.max_momentum
        if kind == "lr":
            init, peak, low = self.initial_lr, self.max_lr, self.min_lr
            if self.three_phase:
                return [(a, init, peak), (a, peak, init), (a, init, low)]
            return [(a, init, peak), (a, peak, low)]
        if self.three_phase:
            return [(a, hi, lo), (a, lo, hi), (a, hi, hi)]
        return [(a, hi, lo), (a, lo, hi)]

    def __call__(self, step):
        step = P.as_step(step, upper=self.total_steps - 1)
        return P.join(step, self._ends, self._pieces("lr"))

    def momentum(self, step):
        """The momentum (SGD `momentum` / Adam `beta_1`) at `step`, float32."""
        step = P.as_step(step, upper=self.total_steps - 1)
        return P.join(step, self._ends, self._pieces("momentum"))

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "anneal_strategy": self.anneal_strategy,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "three_phase": self.three_phase,
            "base_momentum": self.base_momentum,
            "max_momentum": self.max_momentum,
        }
