"""The suggestion rules of the LR range test, and the curve's smoothing.

`valley` and `slide` (fastai's rules), `steep`, `minimum` and `chain` (the
default: the point 30% of the way down the biggest drop) each pick one point
of the smoothed curve; `ema_smooth` is the bias-corrected EMA the sweep uses,
`diverged_at_start` tells a sweep that starts too high from the whole curve.
"""

import numpy as np

SUGGESTION_METHODS = ("valley", "steep", "minimum", "chain", "slide")
# The default rule: the only one within 3x of a grid search's best LR on every
# seed of every problem of benchmarks/lr_finder.py (docs/benchmarks/lr-finder.md).
DEFAULT_METHOD = "chain"
_MIN_POINTS = 3


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
