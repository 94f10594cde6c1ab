"""`LRFinderResult`: the curve of an LR range test, its suggestions and its plot."""

import numpy as np

from keras_tricks.lr_finder.rules import (
    _MIN_POINTS,
    _SUGGESTERS,
    DEFAULT_METHOD,
    SUGGESTION_METHODS,
    _chain_span,
    ema_smooth,
)


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
