"""The verdicts and the rules that reach them from a run's numbers.

`diagnose(...)` is a pure function of the epoch logs and the probe records:
`TrainingDiagnosis` calls it, and so can anyone holding a `History`.
"""

import math

import numpy as np

#: The verdicts, in the order `diagnose` tests them (the code written into
#: `logs["diagnosis"]` is the index in this tuple).
VERDICTS = (
    "ok",
    "lr_too_high",
    "lr_too_low",
    "saddle",
    "model_bias",
    "overfitting",
    "not_converged",
)

TITLES = {
    "ok": "no problem found",
    "lr_too_high": "optimization: LR too high / diverging",
    "lr_too_low": "optimization: LR too low / stalled",
    "saddle": "optimization: stuck at a flat region or saddle",
    "model_bias": "model bias (under-fitting)",
    "overfitting": "overfitting",
    "not_converged": "not converged yet",
}

FIXES = {
    "ok": "Nothing to fix. Tune from here (keras_tricks.find_lr, OneCycle).",
    "lr_too_high": (
        "Lower the learning rate: run keras_tricks.find_lr and take its "
        "suggestion, then train with keras_tricks.callbacks.OneCycle (or "
        "WarmupCosine: a warm-up tames the first steps). Clip gradients "
        "(clipnorm=1.0) if single batches explode."
    ),
    "lr_too_low": (
        "Raise the learning rate: run keras_tricks.find_lr (the LR range test) "
        "and train with its suggestion, e.g. with keras_tricks.callbacks.OneCycle."
    ),
    "saddle": (
        "The loss is stuck where the gradient vanishes but the Hessian has a "
        "negative eigenvalue: add momentum, use smaller batches or a cyclic / "
        "restarting LR (keras_tricks.callbacks.CyclicLR, SGDR), or step along "
        "keras_tricks.diagnosis.critical_point(...).escape_direction."
    ),
    "model_bias": (
        "The training loss converged but stays high: the model is too small "
        "for the task. Use a bigger model (more units or layers) or better "
        "features; check that deeper models reach a lower training loss "
        "(if they do not, it is optimization: see find_lr). For an imbalanced "
        "head, initialize its bias to the prior (keras_tricks.imbalance."
        "bias_initializer) and use class weights or oversampling "
        "(keras_tricks.imbalance.class_weights, OversampledDataset)."
    ),
    "overfitting": (
        "The training loss is far below the validation loss (and keeps "
        "falling while it does not): stop at the best epoch (keras_tricks.callbacks.EarlyStopping("
        "restore_best_weights=True)), add data or augmentation, dropout or "
        "weight decay, or use a smaller model. If the validation data come "
        "from another distribution, it is a mismatch, not overfitting."
    ),
    "not_converged": (
        "The training loss is still falling: train for more epochs, or "
        "faster (keras_tricks.find_lr, OneCycle); reduce the LR on plateaus "
        "with keras_tricks.callbacks.SmartReduceLROnPlateau."
    ),
}


class DiagnosisReport:
    """A verdict with its evidence and the fix.

    Attributes:
        verdict: str. One of `VERDICTS`: `"ok"`, `"lr_too_high"`,
            `"lr_too_low"`, `"saddle"`, `"model_bias"`, `"overfitting"`,
            `"not_converged"`.
        title: str. The verdict in words (e.g. "overfitting").
        evidence: list of str. The numbers and epochs behind the verdict.
        fix: str. What to do, naming the keras_tricks tools that apply.
        epoch: int or None. The epoch (0-based) that matters: where the
            train/validation gap opens, where the loss diverges.
        code: int. The verdict's index in `VERDICTS` (what
            `logs["diagnosis"]` holds).
    """

    def __init__(self, verdict, evidence, epoch=None):
        self.verdict = verdict
        self.title = TITLES[verdict]
        self.evidence = list(evidence)
        self.fix = FIXES[verdict]
        self.epoch = epoch
        self.code = VERDICTS.index(verdict)

    @property
    def ok(self):
        """True when no problem was found."""
        return self.verdict == "ok"

    def __str__(self):
        lines = [f"Training diagnosis: {self.title}"]
        lines += [f"  - {line}" for line in self.evidence]
        lines.append(f"  Fix: {self.fix}")
        return "\n".join(lines)

    def __repr__(self):
        return f"DiagnosisReport(verdict={self.verdict!r}, epoch={self.epoch})"


DEFAULTS = {
    "window": 3,
    "divergence_factor": 1.5,
    "stall_progress": 0.05,
    "min_update_ratio": 1e-5,
    "max_update_ratio": 1e-1,
    "high_loss": 0.25,
    "overfit_tolerance": 0.1,
    "overfit_gap": 2.0,
    "overfit_margin": 0.05,
    "converged_tol": 0.02,
    "flat_grad_norm": 1e-6,
}


def _finite(values):
    return all(v is not None and math.isfinite(v) for v in values)


def diagnose(history, probes=(), prior_loss=None, initial_loss=None, hessian=None,
             target_loss=None, **thresholds):
    """Name what is wrong with a run from its epoch logs (and probes).

    Args:
        history: dict of lists, as `keras.callbacks.History.history`: needs
            `"loss"`, uses `"val_loss"` when present.
        probes: list of dicts from `TrainingDiagnosis`'s probe (`epoch`,
            `update_ratio`, `grad_norm`, `non_finite`, ...). Defaults to `()`.
        prior_loss: float or None. The loss of the best constant prediction
            (the label prior's entropy, the targets' variance).
        initial_loss: float or None. The loss before training.
        hessian: `CriticalPoint` or None. Tells a saddle from a minimum.
        target_loss: float or None. A training loss that counts as low.
        **thresholds: overrides of `DEFAULTS` (see `TrainingDiagnosis`).

    Returns:
        A `DiagnosisReport`.
    """
    t = dict(DEFAULTS, **thresholds)
    loss = [float(v) for v in history.get("loss", [])]
    val = [float(v) for v in history.get("val_loss", [])]
    if not loss:
        return DiagnosisReport("ok", ["no epoch logged yet"])
    n = len(loss)
    window = min(int(t["window"]), n)

    # 1. Non-finite values: divergence.
    bad = [i for i, v in enumerate(loss) if not math.isfinite(v)]
    bad_probe = [p for p in probes if p.get("non_finite", 0) > 0]
    if bad or bad_probe:
        epoch = bad[0] if bad else bad_probe[0]["epoch"]
        evidence = [f"the training loss is not finite from epoch {epoch}"] if bad else []
        if bad_probe:
            evidence.append(
                f"{bad_probe[0]['non_finite']:.1%} of the weights/gradients are not "
                f"finite at epoch {bad_probe[0]['epoch']}"
            )
        return DiagnosisReport("lr_too_high", evidence, epoch)

    # The reference: the loss before training, else the prior's, else epoch 0.
    reference = None
    for candidate in (initial_loss, prior_loss):
        if candidate is not None and math.isfinite(candidate) and candidate > 0:
            reference = float(candidate)
            break
    start = reference if reference is not None else loss[0]
    best_epoch = int(np.argmin(loss))
    best = loss[best_epoch]
    ratios = [p["update_ratio"] for p in probes if p.get("update_ratio") is not None]
    update_ratio = float(np.median(ratios)) if ratios else None
    ratio_text = (
        f"the weights move {update_ratio:.2g} of their norm per step (median over "
        f"{len(ratios)} probes)" if update_ratio is not None else None
    )
    factor = t["divergence_factor"]

    # 2. The loss rose well above where it started, or above its best.
    if reference is not None and loss[-1] > factor * reference:
        epoch = next(i for i, v in enumerate(loss) if v > factor * reference)
        evidence = [
            f"the training loss is {loss[-1]:.4g} at epoch {n - 1}, more than "
            f"{factor:g}x the {reference:.4g} it started from (first above at epoch {epoch})"
        ]
        if ratio_text:
            evidence.append(ratio_text)
        return DiagnosisReport("lr_too_high", evidence, epoch)
    # (A rise that is small next to the starting loss, a spike at a loss near
    # zero, is noise, not divergence.)
    if (
        loss[-1] > factor * best
        and best_epoch < n - 1
        and loss[-1] - best > t["stall_progress"] * start
    ):
        evidence = [
            f"the training loss rose from {best:.4g} (epoch {best_epoch}) to "
            f"{loss[-1]:.4g} (epoch {n - 1}), more than {factor:g}x"
        ]
        if ratio_text:
            evidence.append(ratio_text)
        return DiagnosisReport("lr_too_high", evidence, best_epoch)

    # Progress is measured on one quantity: the probe batch's loss (before
    # training and at the probes) when there is one, else the epoch losses.
    probe_losses = [p["probe_loss"] for p in probes if p.get("probe_loss") is not None]
    if initial_loss is not None and probe_losses and initial_loss > 0:
        progress = (initial_loss - min(probe_losses[-window:])) / initial_loss
    else:
        progress = (loss[0] - min(loss[-window:])) / loss[0] if loss[0] > 0 else 0.0
        start = loss[0] if reference is None else start
    relative_to_prior = loss[-1] / prior_loss if prior_loss else None
    prior_text = (
        f"the training loss {loss[-1]:.4g} is {relative_to_prior:.0%} of the "
        f"prior's loss {prior_loss:.4g} (a constant prediction)"
        if relative_to_prior is not None else None
    )
    hessian_text = (
        f"Hessian at the end: {hessian.kind}, eigenvalues in "
        f"[{hessian.smallest:.3g}, {hessian.largest:.3g}], gradient norm "
        f"{hessian.gradient_norm:.3g}" if hessian is not None else None
    )

    # 3. Little progress: LR too low, too high (thrashing), or a flat region.
    if progress < t["stall_progress"]:
        evidence = [
            f"the training loss fell by {progress:.1%} in {n} epochs "
            f"(epoch losses {loss[0]:.4g} -> {loss[-1]:.4g})"
        ]
        evidence += [text for text in (ratio_text, prior_text, hessian_text) if text]
        grads = [p["grad_norm"] for p in probes if p.get("grad_norm") is not None]
        if grads and grads[-1] <= t["flat_grad_norm"]:
            # No gradient: a critical point, not a learning-rate problem.
            evidence.append(f"the gradient norm is {grads[-1]:.2g}: the weights sit "
                            "at a critical point")
            if hessian is not None and hessian.kind == "local minimum":
                return DiagnosisReport("model_bias", evidence)
            return DiagnosisReport("saddle", evidence)
        if update_ratio is None:
            return DiagnosisReport("lr_too_low", evidence)
        if update_ratio < t["min_update_ratio"]:
            evidence.append(f"that is below min_update_ratio={t['min_update_ratio']:g}")
            return DiagnosisReport("lr_too_low", evidence)
        if max(ratios) > t["max_update_ratio"]:
            # One probe interval with such steps is enough: no progress and
            # the weights jumped by a tenth of their norm per step.
            evidence.append(
                f"the largest update, {max(ratios):.2g} of the weights' norm per step, "
                f"is above max_update_ratio={t['max_update_ratio']:g}"
            )
            return DiagnosisReport("lr_too_high", evidence)
        if hessian is not None and hessian.kind == "local minimum":
            return DiagnosisReport("model_bias", evidence)
        # Normal updates that do not lower the loss: a flat region or a saddle.
        return DiagnosisReport("saddle", evidence)

    # 4. Overfitting: the validation loss rises from its best while the
    # training loss falls, or stays far above a low training loss.
    if val and len(val) == n and _finite(val):
        vbest_epoch = int(np.argmin(val))
        vbest = val[vbest_epoch]
        gap = val[-1] - loss[-1]
        scale = reference if reference is not None else max(val[0], loss[0])
        if (
            min(val[-window:]) > (1 + t["overfit_tolerance"]) * vbest
            and loss[-1] < loss[vbest_epoch]
            and vbest_epoch < n - 1
        ):
            return DiagnosisReport(
                "overfitting",
                [
                    f"the validation loss was best at epoch {vbest_epoch} "
                    f"({vbest:.4g}) and rose to {val[-1]:.4g} by epoch {n - 1}",
                    f"meanwhile the training loss fell from {loss[vbest_epoch]:.4g} "
                    f"to {loss[-1]:.4g}; the gap is now {gap:.4g}",
                ],
                vbest_epoch,
            )
        if val[-1] > t["overfit_gap"] * loss[-1] and gap > t["overfit_margin"] * scale:
            wide = [
                i for i in range(n)
                if val[i] > t["overfit_gap"] * loss[i]
                and val[i] - loss[i] > t["overfit_margin"] * scale
            ]
            # The epoch the gap opens: from there on it stays open.
            epoch = n - 1
            while epoch - 1 in wide:
                epoch -= 1
            return DiagnosisReport(
                "overfitting",
                [
                    f"the validation loss {val[-1]:.4g} is {val[-1] / max(loss[-1], 1e-12):.1f}x "
                    f"the training loss {loss[-1]:.4g} (gap {gap:.4g}, "
                    f"{gap / scale:.0%} of the starting loss {scale:.4g})",
                    f"the gap has been open since epoch {epoch}; the validation loss "
                    f"was best at epoch {vbest_epoch} ({vbest:.4g})",
                ],
                epoch,
            )

    # 5. Still falling fast: not converged.
    total_drop = start - min(loss)
    recent = (loss[-1 - window] if n > window else start) - loss[-1]
    per_epoch = recent / window / total_drop if total_drop > 0 else 0.0
    high = (
        loss[-1] > target_loss if target_loss is not None
        else relative_to_prior is not None and relative_to_prior > t["high_loss"]
    )
    if per_epoch > t["converged_tol"]:
        return DiagnosisReport(
            "not_converged",
            [
                f"the training loss fell {per_epoch:.1%} of its whole descent per "
                f"epoch over the last {window} epochs ({loss[-1 - window] if n > window else start:.4g} -> "
                f"{loss[-1]:.4g})"
            ],
        )

    # 6. Converged, but high: model bias (or a saddle, if the Hessian says so).
    if high:
        evidence = [prior_text] if prior_text else [
            f"the training loss {loss[-1]:.4g} is above target_loss={target_loss:g}"
        ]
        evidence.append(
            f"it has converged: {per_epoch:.1%} of its descent per epoch over the "
            f"last {window} epochs"
        )
        if val and len(val) == n:
            evidence.append(f"the validation loss {val[-1]:.4g} is close to it: no gap")
        if hessian is not None:
            evidence.append(hessian_text)
            if hessian.kind in ("saddle point", "local maximum"):
                return DiagnosisReport("saddle", evidence)
        return DiagnosisReport("model_bias", evidence)

    evidence = [f"the training loss converged to {loss[-1]:.4g}"]
    if prior_text:
        evidence.append(prior_text)
    if val and len(val) == n:
        evidence.append(f"the validation loss {val[-1]:.4g} (best {min(val):.4g})")
    return DiagnosisReport("ok", evidence)
