"""The batch-size scaling rule: `scale_hparams`.

The linear (Goyal et al.) or square-root rule when the batch size changes,
the factor moved to the learning rate or the weight decay (Leslie Smith's
`lr * wd / (batch * (1 - momentum))`), and a suggested warmup.
"""

import dataclasses
import math
import numbers

__all__ = ["ScaledHparams", "scale_hparams"]


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
