"""The LR finder's suggestion rules on small hand-made curves.

Each test pins down one decision of a rule (a strict or non-strict
comparison, a tie, a window edge) that the mutation pass of issue #15 found
unguarded; the expected indices are worked out by hand in the comments.
Pure NumPy: no model is trained.
"""

import numpy as np
import pytest

from keras_tricks.lr_finder import LRFinderResult

TAIL = [50.0] * 5  # the last 5 points, which no rule reads


def _curve(usable, tail=TAIL, num_steps=1):
    """A result whose rules read exactly `usable` (`num_steps < 10` skips
    nothing at the start; the 5 `tail` points are dropped at the end)."""
    losses = np.asarray(list(usable) + list(tail), dtype="float64")
    lrs = np.geomspace(1e-5, 1.0, len(losses))
    return LRFinderResult(lrs, losses, smoothed_losses=losses, num_steps=num_steps)


def test_valley_counts_strict_decreases_only():
    # Strictly decreasing runs: 5 > 4 > 3 (3 long) and 9 > 8 > 7 > 6 (4 long,
    # ending at index 9): start = 9 - 4 = 5, s = 4/3, pick 5 + 1 + 0 = 6.
    # Counting the repeated 4s (5, 4, 4, 4, 4, 3: 6 long) would pick 2.
    result = _curve([5, 4, 4, 4, 4, 3, 9, 8, 7, 6, 10, 11, 12])
    assert result.suggestion_index("valley") == 6


def test_chain_runs_stop_at_a_flat_step():
    # drops: -1, 0, -4, -1, +8: the flat step ends the first run (total -1);
    # the biggest run is 9 -> 5 -> 4 (indices 2..4, total -5). Its 30% point:
    # 0.7*9 + 0.3*4 = 7.5, nearest 9 at index 2. A run through the flat step
    # (10 -> 4, total -6) would give 8.2, nearest the first 9, at index 1.
    result = _curve([10, 9, 9, 5, 4, 12, 13])
    assert result.suggestion_index("chain") == 2
    assert result.cyclic_range()[1] == result.lrs[4]


def test_chain_takes_the_first_of_two_equal_drops():
    # Two runs that drop by exactly 2: 5 -> 4 -> 3 and 6 -> 5 -> 4. The
    # first (lower LRs) wins: its 30% point 4.4 is nearest 4, at index 1.
    result = _curve([5, 4, 3, 6, 5, 4, 7, 8, 9])
    assert result.suggestion_index("chain") == 1
    assert result.cyclic_range()[1] == result.lrs[2]


def test_chain_point_is_never_the_bottom_of_its_drop():
    # Why leaving the bottom out of the searched segment would change
    # nothing: the 30% target is 0.3*D from the top and 0.7*D from the
    # bottom, so the top always beats the bottom. A one-step drop picks its
    # top.
    result = _curve([8, 8, 8, 2, 3, 4, 5])
    assert result.suggestion_index("chain") == 2


def test_slide_without_a_slide_picks_the_left_end_of_the_window():
    # A straight line: the loss gradient is the same everywhere, the window
    # of 15 points never slides, and the pick is its left end, 15 points
    # before the last usable one (fastai's `lrs[-1 - lr_diff]`).
    result = _curve(np.linspace(3.0, 1.0, 30))
    assert result.suggestion_index("slide") == 29 - 15


def test_the_last_five_points_are_left_out():
    # The lowest loss is the first of the 5 dropped points: the rules stop
    # one point before it.
    usable = np.linspace(3.0, 1.0, 20)
    result = _curve(usable, tail=[0.0, 50.0, 50.0, 50.0, 50.0])
    assert result.suggestion_index("minimum") == 19
    assert result.suggestion_index("steep") < 19


def test_the_first_tenth_of_the_planned_points_is_skipped():
    # 40 planned points: the first 4 are warm-up. The lowest loss is there.
    usable = np.concatenate([[0.1, 0.2, 0.3, 0.4], np.linspace(3.0, 1.0, 31)])
    result = _curve(usable, num_steps=40)
    assert result.suggestion_index("minimum") == 34
    assert result.suggestion("minimum") == pytest.approx(result.lrs[34] / 10)


def test_slide_needs_a_gradient_difference_above_the_threshold():
    # fastai slides while |grad[right] - grad[left]| > thresh (0.005),
    # strictly. Here np.gradient is 0 everywhere on the right, exactly
    # -0.005 at the window's first left end (index 14: (0 - 2*0.005) / 2),
    # and 0.5 at the next one: a difference of exactly the threshold does
    # not slide, so the pick is 29 - 15 = 14 (a `>=` would slide on).
    usable = np.zeros(30)
    usable[13], usable[15] = 2 * 0.005, 0.0
    usable[12], usable[14] = 0.0, -1.0
    grad = np.gradient(usable)
    assert abs(grad[29] - grad[14]) == 0.005 and abs(grad[28] - grad[13]) > 0.005
    assert _curve(usable).suggestion_index("slide") == 14
