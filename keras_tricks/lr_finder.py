"""The LR range test (LR finder): sweep the LR, record the loss, suggest an LR.

Leslie Smith's range test in fastai's form: train for a few hundred batches at
most while the learning rate grows from `start_lr` to `end_lr` (exponentially
by default), record the loss of every batch, smooth it with a bias-corrected
EMA, stop when it blows up, then put the model and its optimizer back exactly
as they were. :func:`find_lr` runs the whole test on data; the callback
:class:`keras_tricks.callbacks.LRFinder` does the same inside a `fit` that you
drive yourself. Both return an :class:`LRFinderResult` with the curve, the
suggestions (`valley`, `steep`, `minimum`, `chain`, `slide`) and a plot.
"""

import collections.abc
import math
import numbers
import warnings

import keras
import numpy as np
from keras import ops

SUGGESTION_METHODS = ("valley", "steep", "minimum", "chain", "slide")
# The default rule: the only one within 3x of a grid search's best LR on every
# seed of every problem of benchmarks/lr_finder.py (docs/benchmarks/lr-finder.md).
DEFAULT_METHOD = "chain"
_MIN_POINTS = 3


# --- the sweep's schedule ---------------------------------------------------


class _SweepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`start -> end` over `total` optimizer steps counted from `offset`.

    Installed with `_control.set_schedule` for the duration of the sweep, so
    the LR reaches the compiled step as a function of `iterations` (one trace
    for the whole sweep, nothing done per batch in Python).
    """

    def __init__(self, start_lr, end_lr, total, mode="exp", offset=0):
        self.start_lr = float(start_lr)
        self.end_lr = float(end_lr)
        self.total = int(total)
        self.mode = mode
        self.offset = int(offset)

    def lr_at(self, index):
        """The LR of sweep step `index` (a Python or numpy number)."""
        frac = np.clip(np.asarray(index, dtype="float64"), 0, self.total - 1)
        frac = frac / max(self.total - 1, 1)
        if self.mode == "exp":
            return self.start_lr * (self.end_lr / self.start_lr) ** frac
        return self.start_lr + (self.end_lr - self.start_lr) * frac

    def __call__(self, step):
        index = ops.subtract(ops.cast(step, "float32"), float(self.offset))
        index = ops.clip(index, 0.0, float(self.total - 1))
        frac = ops.divide(index, float(max(self.total - 1, 1)))
        if self.mode == "exp":
            log_ratio = math.log(self.end_lr / self.start_lr)
            return ops.multiply(self.start_lr, ops.exp(ops.multiply(frac, log_ratio)))
        return ops.add(self.start_lr, ops.multiply(frac, self.end_lr - self.start_lr))

    def get_config(self):
        return {
            "start_lr": self.start_lr,
            "end_lr": self.end_lr,
            "total": self.total,
            "mode": self.mode,
            "offset": self.offset,
        }


def _is_real(value):
    """A real number, NumPy scalars included, never a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def validate_sweep_args(start_lr, end_lr, num_steps, mode, beta, diverge_threshold):
    """Raise a clear `ValueError` for any bad sweep argument."""
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        if (
            not _is_real(value)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(
                f"Argument `{name}` must be a positive finite number. "
                f"Received: {name}={value!r}"
            )
    if start_lr >= end_lr:
        raise ValueError(
            "Argument `start_lr` must be < end_lr (the sweep goes upwards). "
            f"Received: start_lr={start_lr}, end_lr={end_lr}"
        )
    if (
        isinstance(num_steps, bool)
        or not isinstance(num_steps, numbers.Integral)
        or num_steps < 2
    ):
        raise ValueError(
            f"Argument `num_steps` must be an int >= 2. Received: num_steps={num_steps!r}"
        )
    if mode not in ("exp", "linear"):
        raise ValueError(
            f'Argument `mode` must be "exp" or "linear". Received: mode={mode!r}'
        )
    if not _is_real(beta) or not 0.0 <= beta < 1.0:
        raise ValueError(f"Argument `beta` must be in [0, 1). Received: beta={beta!r}")
    if (
        not _is_real(diverge_threshold)
        or not math.isfinite(diverge_threshold)
        or diverge_threshold <= 1.0
    ):
        raise ValueError(
            "Argument `diverge_threshold` must be a number > 1. "
            f"Received: diverge_threshold={diverge_threshold!r}"
        )


def diverged_at_start(losses, threshold):
    """True when every loss after the first exceeds `threshold` times the first.

    The first loss is the untouched model's; a sweep that starts too high
    shoots up at its first update and never comes back. Needs 20 points or
    more after the first: a noisy loss (a trained model, tiny batches) stays
    that far above one early sample for that long only by a rare chance
    (1 in 80 even for exponentially distributed batch losses).
    """
    if len(losses) < 21 or not losses[0] > 0:
        return False
    return float(np.min(losses[1:])) > threshold * float(losses[0])


def ema_smooth(losses, beta=0.98):
    """Bias-corrected EMA: `avg_n = beta*avg + (1-beta)*loss_n`, `avg_n/(1-beta**n)`."""
    out = np.empty(len(losses), dtype="float64")
    avg = 0.0
    for n, loss in enumerate(losses, start=1):
        avg = beta * avg + (1.0 - beta) * float(loss)
        out[n - 1] = avg / (1.0 - beta**n)
    return out


# --- suggestions --------------------------------------------------------------


def _valley(lrs, losses):
    # fastai's "valley" (its default since 2.5), rule for rule: the length L
    # of the longest strictly decreasing subsequence of the smoothed loss
    # (O(n^2), n is a few hundred at most) ending at its first index `end`
    # that reaches L; the valley is then the L points before `end` (fastai
    # anchors it at the end, not at the subsequence's first element, which can
    # lie far to the left in the flat, noisy start), and the pick is
    # `start + int(s) + int(s / 2)` with `s = (end - start) / 3`.
    n = len(losses)
    length = np.ones(n, dtype="int64")
    for i in range(1, n):
        higher = losses[:i] > losses[i]
        if higher.any():
            length[i] = 1 + length[:i][higher].max()
    end = int(np.argmax(length))
    start = end - int(length[end])
    section = (end - start) / 3
    # The index is -1 when the longest decrease is the curve's first two
    # points (fastai then wraps round to the last point); take the first.
    return min(max(start + int(section) + int(section / 2), 0), n - 1)


def _steep(lrs, losses):
    slopes = np.diff(losses) / np.diff(np.log(lrs))
    return int(np.argmin(slopes))


def _minimum(lrs, losses):
    return int(np.argmin(losses))


def _chain_span(losses):
    """`(start, end)` of the run of consecutive decreasing steps whose total
    drop is largest (Daniel Han's "longest smoothed chain"); None if the curve
    never falls."""
    drops = np.diff(losses)
    best, span = 0.0, None
    i = 0
    while i < len(drops):
        j, total = i, 0.0
        while j < len(drops) and drops[j] < 0:
            total += drops[j]
            j += 1
        if total < best:
            best, span = total, (i, j)
        i = j + 1
    return span


def _chain(lrs, losses):
    # The point of the biggest drop whose loss is nearest 0.7*L(start) +
    # 0.3*L(end): 30% of the way down, near the start of the steep slope.
    span = _chain_span(losses)
    if span is None:
        return int(np.argmin(losses))
    start, end = span
    target = 0.7 * losses[start] + 0.3 * losses[end]
    segment = losses[start : end + 1]
    return start + int(np.argmin((segment - target) ** 2))


def _slide(lrs, losses, lr_diff=15, thresh=0.005):
    # fastai's "slide" (Andrew Chang's interval slide rule), with its defaults
    # `lr_diff=15, thresh=.005, adjust_value=1.`: a window of `lr_diff` points
    # slides left from the end of the curve while the gradient of the
    # (smoothed) loss per point differs by more than `thresh` between its two
    # ends; the pick is the window's left end before the last slide. A curve
    # of `lr_diff` points or fewer uses a window of `len - 1` points (fastai
    # raises an IndexError there).
    n = len(losses)
    lr_diff = min(lr_diff, n - 1)
    grad = np.gradient(np.asarray(losses, dtype="float64"))
    right, left = n - 1, n - 1 - lr_diff
    pick = left
    while left >= 0 and abs(grad[right] - grad[left]) > thresh:
        pick = left
        right -= 1
        left -= 1
    return pick


_SUGGESTERS = {
    "valley": _valley,
    "steep": _steep,
    "minimum": _minimum,
    "chain": _chain,
    "slide": _slide,
}


# --- the result ---------------------------------------------------------------


class LRFinderResult:
    """The curve of an LR range test, its suggestions and its plot.

    Made by :func:`keras_tricks.find_lr` and by the callback
    :class:`keras_tricks.callbacks.LRFinder` (its `.result`); you can also
    build one from your own recorded curve.

    Args:
        lrs: Sequence of float. The LR of each recorded point.
        losses: Sequence of float. The raw loss of each point (the loss of
            that batch, or the mean over the batches of one execution under
            `steps_per_execution > 1`).
        smoothed_losses: Sequence of float or None. The bias-corrected EMA of
            `losses`; computed with `beta` when None.
        num_steps: int or None. The number of points the sweep planned;
            defaults to `len(lrs)`. The first `num_steps // 10` points are
            skipped by the suggestions.
        beta: float. The EMA factor used for `smoothed_losses`. Defaults to
            0.98.
        stop_reason: str. `"completed"`, `"diverged"` or `"data"` (the data ran
            out). Defaults to `"completed"`.

    Attributes:
        lrs: numpy array of the LRs.
        losses: numpy array of the raw losses.
        smoothed_losses: numpy array of the smoothed losses.

    Example:

    ```python
    import numpy as np
    from keras_tricks.lr_finder import LRFinderResult

    lrs = np.geomspace(1e-5, 1.0, 50)
    losses = 1.0 - np.tanh(np.log10(lrs) + 3) + (lrs > 0.3) * 5.0
    result = LRFinderResult(lrs, losses, smoothed_losses=losses)
    result.suggestion()            # "chain", the default
    result.suggestion("steep")     # ~1e-3
    ```
    """

    def __init__(
        self,
        lrs,
        losses,
        smoothed_losses=None,
        num_steps=None,
        beta=0.98,
        stop_reason="completed",
    ):
        self.lrs = np.asarray(lrs, dtype="float64")
        self.losses = np.asarray(losses, dtype="float64")
        if len(self.lrs) != len(self.losses):
            raise ValueError(
                "Arguments `lrs` and `losses` must have the same length. "
                f"Received: len(lrs)={len(self.lrs)}, len(losses)={len(self.losses)}"
            )
        if smoothed_losses is None:
            smoothed_losses = ema_smooth(self.losses, beta)
        self.smoothed_losses = np.asarray(smoothed_losses, dtype="float64")
        self.num_steps = int(num_steps) if num_steps is not None else len(self.lrs)
        self.beta = beta
        self.stop_reason = stop_reason

    @property
    def descended(self):
        """Whether the curve has a descent to read a suggestion from.

        False when the smoothed loss over the points the suggestions read
        never falls below the mean raw loss of the first 10% of the sweep:
        the loss rose at once (the sweep started too high) or stayed flat
        (it never reached LRs that train). True when there are too few points
        to tell: fewer than 5 in that first 10% (a sweep of under 50 steps),
        or too few after it (`suggestion` raises then).
        """
        skip, stop = self._usable()
        if skip < 5 or stop - skip < _MIN_POINTS:
            return True
        points = self._points()
        start = float(np.mean(self.losses[points][: max(1, skip)]))
        return bool(np.min(self.smoothed_losses[points][skip:stop]) < start)

    def _no_descent_message(self):
        """What to do about a curve without a descent (see `descended`)."""
        skip, stop = self._usable()
        lrs = self.lrs[self._points()]
        return (
            "The LR range test found no descent: over lr="
            f"{lrs[skip]:.3g}..{lrs[stop - 1]:.3g} the smoothed loss "
            "never fell below its level in the first 10% of the sweep, so the "
            "suggestions are meaningless. If the loss rose at once, the sweep "
            "starts too high: lower `start_lr`. If it stayed flat, raise "
            f"`end_lr` or `num_steps`. Received: start_lr={self.lrs[0]:.3g}, "
            f"{len(self.lrs)} points."
        )

    def _points(self):
        """Indices of the sweep's points: the first record of each distinct LR.

        Under gradient accumulation each LR is recorded once per micro-batch;
        like fastai (`np.unique` on the LRs before any rule), the suggestions
        see each LR once, or the slope between two equal LRs is infinite.
        """
        _, first = np.unique(self.lrs, return_index=True)
        return np.sort(first)

    def _usable(self):
        """`(skip, stop)` into the distinct points (`_points`) the suggestions
        look at: skip the first 10% of the planned points, drop the last 5,
        cut at the first non-finite smoothed loss."""
        points = self._points()
        skip = self.num_steps // 10
        stop = len(points) - 5
        finite = np.isfinite(self.smoothed_losses[points])
        if not finite.all():
            stop = min(stop, int(np.argmin(finite)))
        return skip, stop

    def suggestion(self, method=DEFAULT_METHOD):
        """The suggested learning rate.

        The suggestions skip the first 10% of the planned points and the last
        5 recorded points, and cut the curve at its first non-finite loss.

        Args:
            method: str. `"chain"` (Daniel Han's longest smoothed chain:
                30% of the way down the biggest uninterrupted drop of the
                smoothed loss), `"valley"` (fastai's default: a point past
                the middle of the longest decreasing stretch), `"steep"`
                (steepest descent of the smoothed loss against log LR) or
                `"minimum"` (the LR of the lowest smoothed loss, divided by
                10) or `"slide"` (fastai's interval slide rule with its
                defaults `lr_diff=15`, `thresh=0.005`: the left end of a
                15-point window slid left from the end of the curve until the
                loss gradients at its two ends agree within 0.005). Each
                distinct LR counts once (under gradient accumulation it is
                recorded once per micro-batch), as in fastai. Defaults to `"chain"`: within 3x of a grid search's best
                LR on all 20 range tests of our benchmark, where fastai's
                default `"valley"` was on 13 (it tends to be low).

        Returns:
            float. The suggested LR.

        Raises:
            ValueError: for an unknown method, or when too few points are left
                (the sweep diverged at once: use a lower `start_lr`).
        """
        index = self.suggestion_index(method)
        lr = float(self.lrs[index])
        return lr / 10.0 if method == "minimum" else lr

    def suggestion_index(self, method=DEFAULT_METHOD):
        """The index into `lrs` that `method` picks (before `minimum`'s /10)."""
        if method not in _SUGGESTERS:
            raise ValueError(
                f"Argument `method` must be one of {SUGGESTION_METHODS}. "
                f"Received: method={method!r}"
            )
        skip, stop = self._usable()
        if stop - skip < _MIN_POINTS:
            raise ValueError(self._too_few_points_message(skip, stop))
        points = self._points()[skip:stop]
        lrs = self.lrs[points]
        losses = self.smoothed_losses[points]
        return int(points[_SUGGESTERS[method](lrs, losses)])

    def cyclic_range(self):
        """`(base_lr, max_lr)` for :class:`keras_tricks.callbacks.CyclicLR`.

        Daniel Han's rule for cyclical LRs, on the longest smoothed chain (the
        biggest uninterrupted drop of the smoothed loss): `max_lr` is the LR
        at the bottom of that drop, `base_lr` is the smaller of `max_lr / 10`
        and the `"chain"` suggestion (a drop so steep that a tenth of its
        bottom overshoots is taken from its upper part instead).

        Returns:
            tuple of float `(base_lr, max_lr)`, with `base_lr < max_lr`.

        Raises:
            ValueError: when too few points are left (as for `suggestion`), or
                when the smoothed loss never falls (no range to cycle over).

        Example:

        ```python
        base_lr, max_lr = result.cyclic_range()
        keras_tricks.callbacks.CyclicLR(base_lr=base_lr, max_lr=max_lr, step_size=500)
        ```
        """
        skip, stop = self._usable()
        if stop - skip < _MIN_POINTS:
            raise ValueError(self._too_few_points_message(skip, stop))
        points = self._points()[skip:stop]
        span = _chain_span(self.smoothed_losses[points])
        if span is None:
            raise ValueError(
                "The smoothed loss never falls over the usable points of this "
                "LR range test, so there is no range to cycle over. Raise "
                f"`end_lr` or `num_steps`. Received: {len(self.lrs)} points, "
                f"lr={self.lrs[0]:.3g}..{self.lrs[-1]:.3g}"
            )
        max_lr = float(self.lrs[points[span[1]]])
        base_lr = min(max_lr / 10.0, self.suggestion("chain"))
        return base_lr, max_lr

    def suggestions(self, methods=SUGGESTION_METHODS):
        """A dict `{method: suggested LR}` for each method that can answer."""
        out = {}
        for method in methods:
            try:
                out[method] = self.suggestion(method)
            except ValueError:
                continue
        return out

    def _too_few_points_message(self, skip, stop):
        n = len(self.lrs)
        where = f" at lr={self.lrs[-1]:.3g}" if n else ""
        message = (
            f"The LR range test recorded {n} of {self.num_steps} planned points"
            f"{where}; after skipping the first {skip} and the last 5 (and any "
            f"non-finite loss) only {max(stop - skip, 0)} are left, fewer than the "
            f"{_MIN_POINTS} a suggestion needs."
        )
        if self.stop_reason == "diverged":
            lower = self.lrs[0] / 1000 if n else None
            message += (
                " The loss diverged almost at once: the sweep starts too high. "
                f"Use a lower `start_lr` (e.g. start_lr={lower:.1e})."
                if lower
                else " The loss diverged at once: use a lower `start_lr`."
            )
        else:
            message += " Use more `num_steps` or more data."
        return message

    def plot(self, ax=None, methods=(DEFAULT_METHOD,), show_raw=True):
        """Draw the smoothed loss against the LR (log x), suggestions marked.

        Args:
            ax: matplotlib `Axes` or None. Where to draw; a new figure when
                None.
            methods: Sequence of str. The suggestions to mark (methods that
                cannot answer are left out). Defaults to `("chain",)`.
            show_raw: bool. Also draw the raw per-batch losses, faintly.
                Defaults to True.

        Returns:
            The matplotlib `Axes`.

        Raises:
            ImportError: when matplotlib is not installed.
        """
        methods = tuple(methods)
        if any(m not in _SUGGESTERS for m in methods):
            raise ValueError(
                f"Argument `methods` must hold names from {SUGGESTION_METHODS}. "
                f"Received: methods={methods!r}"
            )
        try:
            import matplotlib.pyplot as plt
        except ImportError as error:  # pragma: no cover
            raise ImportError(
                "Plotting needs matplotlib. Install it with "
                "`pip install keras-tricks[plot]` (or `pip install matplotlib`)."
            ) from error
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4), layout="constrained")
        if show_raw:
            ax.plot(self.lrs, self.losses, color="0.75", lw=0.8, label="loss per batch")
        ax.plot(
            self.lrs, self.smoothed_losses, color="C0", lw=1.8, label="smoothed loss"
        )
        markers = {"valley": "o", "steep": "v", "minimum": "s", "chain": "D"}
        markers["slide"] = "^"
        for k, method in enumerate(methods):
            try:
                index = self.suggestion_index(method)
            except ValueError:
                continue
            lr = float(self.lrs[index]) / (10.0 if method == "minimum" else 1.0)
            y = self.smoothed_losses[index]
            ax.plot(
                [lr],
                [y],
                linestyle="none",
                marker=markers.get(method, "o"),
                markersize=8,
                color=f"C{k + 1}",
                label=f"{method}: {lr:.2e}",
            )
        skip, stop = self._usable()
        shown = self.smoothed_losses[self._points()][skip : max(stop, skip + 1)]
        shown = shown[np.isfinite(shown)]
        if shown.size:
            low, high = float(shown.min()), float(shown.max())
            pad = 0.1 * (high - low) or 0.1 * abs(high) or 0.1
            ax.set_ylim(low - pad, high + pad)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.set_title("LR range test")
        ax.legend(loc="best", fontsize="small")
        return ax

    def _summary(self):
        n = len(self.lrs)
        if n == 0:
            return f"LRFinderResult(no points of {self.num_steps}, stop={self.stop_reason})"
        try:
            suggestion = f"{self.suggestion():.3g}"
        except ValueError:
            suggestion = "none"
        finite = np.isfinite(self.smoothed_losses)
        best = (
            int(np.nanargmin(np.where(finite, self.smoothed_losses, np.nan)))
            if finite.any()
            else 0
        )
        return (
            f"LRFinderResult(points={n}/{self.num_steps}, "
            f"lr={self.lrs[0]:.3g}..{self.lrs[-1]:.3g}, "
            f"min_smoothed_loss={self.smoothed_losses[best]:.4g} "
            f"at lr={self.lrs[best]:.3g}, {DEFAULT_METHOD}={suggestion}, "
            f"stop={self.stop_reason})"
        )

    def __repr__(self):
        return self._summary()

    def __str__(self):
        return self._summary()


# --- the one-call form -------------------------------------------------------


def find_lr(
    model,
    x,
    y=None,
    batch_size=None,
    start_lr=1e-7,
    end_lr=10.0,
    num_steps=100,
    mode="exp",
    beta=0.98,
    diverge_threshold=4.0,
    sample_weight=None,
    **fit_kwargs,
):
    """Run an LR range test on a compiled model; leave the model as it was.

    Trains for `num_steps` points while the learning rate grows from
    `start_lr` to `end_lr`, records the loss of every batch (not Keras's
    running epoch mean), smooths it with a bias-corrected EMA, and stops early
    when the smoothed loss exceeds `diverge_threshold` times its best or turns
    non-finite. The LR is a schedule of the optimizer's step installed for the
    sweep (one retrace, nothing recompiled per batch). Afterwards the model's
    weights, the optimizer's variables (`iterations` included), its LR (and
    any schedule or scale installed by this package's callbacks) are exactly
    what they were before; the train function is rebuilt (one more trace at
    the next `fit`).

    Data: numpy arrays, a `tf.data.Dataset`, a `keras.utils.PyDataset` and
    other re-iterable inputs are repeated (epoch after epoch) until the sweep
    is done; a one-shot Python generator (any iterator) must yield enough
    batches, or a clear error is raised. With `steps_per_execution=k` set in
    `compile`, Keras hands the callbacks a loss every `k` batches: each point
    is then one execution of `k` batches (their mean loss, at their
    geometric-mean LR), and the sweep runs `num_steps * k` batches.

    Args:
        model: A compiled `keras.Model`.
        x: Input data, as for `model.fit`.
        y: Targets, as for `model.fit` (None for datasets and generators).
        batch_size: int or None. As for `model.fit` (array inputs only).
        start_lr: float. The first LR. Defaults to 1e-7.
        end_lr: float. The last LR. Defaults to 10.0.
        num_steps: int. Number of points (batches) of the sweep. Defaults to
            100.
        mode: str. `"exp"` (LR grows geometrically; fastai's default) or
            `"linear"` (Smith's original). Defaults to `"exp"`.
        beta: float. EMA factor of the loss smoothing. Defaults to 0.98.
        diverge_threshold: float. Stop when the smoothed loss exceeds this
            times the best smoothed loss so far (the first 10% of the points
            do not count as the best). A sweep in which every loss after the
            first exceeds this times the first one (it starts too high)
            raises, as a divergence. Defaults to 4.0.
        sample_weight: As for `model.fit`.
        **fit_kwargs: Passed to `model.fit` (e.g. `class_weight`, `shuffle`,
            `verbose`); `epochs`, `initial_epoch`, `steps_per_epoch` and
            validation arguments are managed by the sweep.

    Returns:
        An :class:`LRFinderResult`.

    Raises:
        ValueError: model not compiled; bad arguments (`start_lr >= end_lr`,
            ...); the data ran out before the sweep ended; the loss diverged
            at once (with a suggested lower `start_lr`).

    Example:

    ```python
    import numpy as np
    import keras
    import keras_tricks

    x = np.random.rand(512, 8).astype("float32")
    y = (x.sum(axis=1) > 4).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, "sigmoid")])
    model.compile(keras.optimizers.Adam(), "binary_crossentropy")
    result = keras_tricks.find_lr(model, x, y, batch_size=32, num_steps=80)
    print(result)
    lr = result.suggestion()          # chain; also "valley", "steep", "minimum"
    result.plot(methods=("chain", "valley"))
    ```
    """
    from keras_tricks.callbacks.lr_finder import LRFinder, batches_per_execution

    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Argument `model` must be a keras.Model. Received: {type(model).__name__}"
        )
    if getattr(model, "optimizer", None) is None or not getattr(
        model, "compiled", False
    ):
        raise ValueError(
            "find_lr needs a compiled model: call `model.compile(optimizer, loss)` "
            "first. Received: a model that is not compiled."
        )
    validate_sweep_args(start_lr, end_lr, num_steps, mode, beta, diverge_threshold)
    managed = {
        "epochs",
        "initial_epoch",
        "steps_per_epoch",
        "validation_data",
        "validation_split",
        "validation_steps",
        "validation_freq",
        "validation_batch_size",
    }
    clash = sorted(managed.intersection(fit_kwargs))
    if clash:
        raise ValueError(
            f"find_lr manages the fit arguments {clash} itself. "
            f"Received: {', '.join(f'{k}={fit_kwargs[k]!r}' for k in clash)}"
        )
    user_callbacks = list(fit_kwargs.pop("callbacks", None) or [])
    fit_kwargs.setdefault("verbose", 0)

    finder = LRFinder(
        start_lr=start_lr,
        end_lr=end_lr,
        num_steps=num_steps,
        mode=mode,
        beta=beta,
        diverge_threshold=diverge_threshold,
        restore=True,
    )
    finder._warn_no_descent = False
    one_shot = isinstance(x, collections.abc.Iterator)
    if one_shot:
        epochs = 1
    else:
        # Enough epochs for the sweep even at one batch an epoch; the finder
        # stops training as soon as the LR schedule has run its course.
        epochs = 4 * num_steps * batches_per_execution(model) + 10
    try:
        with warnings.catch_warnings():
            # A one-shot generator that runs short makes Keras warn; the clear
            # error below says the same with the numbers.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            model.fit(
                x,
                y,
                batch_size=batch_size,
                sample_weight=sample_weight,
                epochs=epochs,
                callbacks=[finder, *user_callbacks],
                **fit_kwargs,
            )
    finally:
        # Normally done in on_train_end; also after an exception inside fit.
        finder.restore()
    result = finder.result
    if result is None:
        raise ValueError("The LR range test did not run: the data gave no batch.")
    if result.stop_reason == "data":
        raise ValueError(
            f"The data ran out after {len(result.lrs)} of the {num_steps} points "
            "the sweep needs. A one-shot generator is not repeated: pass one that "
            "yields enough batches (or never ends), pass re-iterable data (arrays, "
            "tf.data.Dataset, PyDataset), or lower `num_steps`. "
            f"Received: num_steps={num_steps}"
        )
    if result.stop_reason == "diverged":
        skip, stop = result._usable()
        if stop - skip < _MIN_POINTS:
            raise ValueError(result._too_few_points_message(skip, stop))
        if diverged_at_start(result.losses, diverge_threshold):
            raise ValueError(
                "The loss diverged at the first update of the LR range test: "
                f"every batch after the first lost more than {diverge_threshold}x "
                f"the first one ({result.losses[0]:.4g}), so the sweep starts too "
                f"high. Use a lower `start_lr` (e.g. start_lr="
                f"{result.lrs[0] / 1000:.1e}). Received: start_lr={start_lr}"
            )
    if not result.descended:
        warnings.warn(result._no_descent_message(), stacklevel=2)
    return result
