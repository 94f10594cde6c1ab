"""The suggestion rules (keras_tricks.lr_finder.rules) on synthetic curves."""

import numpy as np
import pytest

from keras_tricks.lr_finder import (
    LRFinderResult,
    diverged_at_start,
)

from ._common import _synthetic


def test_diverged_at_start_needs_the_whole_curve_above_the_first_loss():
    rng = np.random.default_rng(0)
    jumped = np.concatenate([[2.3], 14.0 + rng.uniform(-1, 1, 60)])
    assert diverged_at_start(jumped, 4.0)
    assert not diverged_at_start(jumped[:20], 4.0)  # too short to tell
    # Noisy losses of a trained model whose first batch was an easy one.
    noisy = np.concatenate([[0.01], rng.exponential(0.1, 60)])
    assert not diverged_at_start(noisy, 4.0)
    # One batch back near the start is enough to rule it out.
    jumped[30] = 2.0
    assert not diverged_at_start(jumped, 4.0)


def test_minimum_is_lowest_loss_over_ten():
    lrs = np.geomspace(1e-6, 1.0, 61)  # 10 points a decade
    result = _synthetic((np.log10(lrs) + 2.0) ** 2, lrs)
    assert result.suggestion("minimum") == pytest.approx(1e-3)


def test_steep_is_the_steepest_descent_against_log_lr():
    lrs = np.geomspace(1e-6, 1.0, 61)
    result = _synthetic(-np.tanh(3.0 * (np.log10(lrs) + 3.05)), lrs)
    # The steepest forward difference straddles log10 lr = -3.05: from 1e-3.1.
    assert result.suggestion("steep") == pytest.approx(10**-3.1)


def test_valley_picks_past_the_middle_of_the_longest_decrease():
    # 40 points: skip 4 at the start, 5 at the end. Flat noise, then a strict
    # decrease on indices 10..28 (19 points), then a rise.
    losses = np.empty(40)
    losses[:10] = np.linspace(0.95, 1.0, 10)  # rising: no long decrease here
    losses[10:29] = np.linspace(1.9, 0.1, 19)
    losses[29:] = np.linspace(0.2, 3.0, 11)
    result = _synthetic(losses)
    # fastai: the valley is the `length` points before its end, 28 - 19 = 9.
    start, end = 9, 28
    section = (end - start) / 3
    assert result.suggestion_index("valley") == start + int(section) + int(section / 2)


def test_valley_anchors_the_longest_decrease_at_its_end_as_fastai_does():
    # A noisy flat start whose falling lows join the longest decreasing
    # subsequence: its first element is far to the left of the real drop.
    # fastai counts the valley back from the end by the subsequence's length
    # (20 here), not from that first element.
    skipped = np.full(4, 5.0)  # num_steps=40: the first 4 points are skipped
    sawtooth = np.where(np.arange(20) % 2 == 0, 3.0 - 0.005 * np.arange(20), 3.5)
    drop = np.linspace(2.8, 0.8, 10)
    rise = np.linspace(1.0, 4.0, 6)  # the last 5 points are dropped
    result = _synthetic(np.concatenate([skipped, sawtooth, drop, rise]))
    end, length = 4 + 29, 20  # the drop's last point; 10 lows + 10 drop points
    start = end - length
    section = length / 3
    expected = start + int(section) + int(section / 2)
    assert result.suggestion_index("valley") == expected
    # Counting from the subsequence's first element (index 4) would land at 13.
    assert expected == 22


def test_valley_of_a_curve_that_never_falls_is_its_first_usable_point():
    result = _synthetic(np.linspace(1.0, 3.0, 40))
    assert result.suggestion_index("valley") == 4  # skip = 40 // 10


def test_valley_never_wraps_round_to_the_last_point():
    # The longest decrease is the first two usable points: the index comes
    # out as -1, which fastai's `lrs[idx]` reads as the last point.
    losses = np.concatenate([np.full(4, 9.0), [2.0, 1.0], np.linspace(3.0, 8.0, 34)])
    result = _synthetic(losses)
    assert result.suggestion_index("valley") == 4


def test_the_default_suggestion_is_chain():
    lrs = np.geomspace(1e-6, 1.0, 60)
    result = _synthetic(1.5 - np.tanh(np.log10(lrs) + 3) + (lrs > 0.1) * 4, lrs)
    assert result.suggestion() == result.suggestion("chain")
    assert result.suggestion("chain") != result.suggestion("valley")
    assert result.suggestion_index() == result.suggestion_index("chain")


def test_chain_takes_the_biggest_drop_and_the_thirty_percent_point():
    losses = np.concatenate(
        [
            np.full(6, 3.0),
            np.linspace(3.0, 2.8, 6)[1:],  # a small early drop
            [2.9],
            np.linspace(2.9, 0.9, 21)[1:],  # the big drop: 2.9 -> 0.9
            np.linspace(1.0, 4.0, 10),
        ]
    )
    result = _synthetic(losses)
    # The big chain runs from index 11 (2.9) to 31 (0.9); 0.7*2.9 + 0.3*0.9
    # = 2.3 is six 0.1-steps down from 2.9.
    assert result.suggestion_index("chain") == 17


def _fastai_slide(lrs, losses, lr_diff=15, thresh=0.005, adjust_value=1.0):
    """fastai 2.8's `slide` (fastai/callback/schedule.py), transcribed."""
    loss_grad = np.gradient(losses)
    r_idx = -1
    l_idx = r_idx - lr_diff
    local_min_lr = lrs[l_idx]
    while (l_idx >= -len(losses)) and (
        abs(loss_grad[r_idx] - loss_grad[l_idx]) > thresh
    ):
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    return float(local_min_lr) * adjust_value


@pytest.mark.parametrize("seed", range(6))
def test_slide_equals_fastai_on_the_same_curve(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 120))
    lrs = np.geomspace(1e-6, 10.0, n)
    x = np.log10(lrs)
    raw = 2.0 - np.tanh(x + rng.uniform(1, 4)) + 0.02 * rng.normal(size=n)
    raw += np.where(x > rng.uniform(-1, 1), 3.0 * (x + 1) ** 2, 0.0)
    result = LRFinderResult(lrs, raw)  # fastai smooths with beta=0.98 too
    skip, stop = n // 10, n - 5
    expected = _fastai_slide(lrs[skip:stop], result.smoothed_losses[skip:stop])
    assert result.suggestion("slide") == expected
    assert "slide" in result.suggestions()


def test_slide_on_a_short_curve_uses_a_shorter_window():
    lrs = np.geomspace(1e-4, 1.0, 12)
    result = _synthetic(np.linspace(1.0, 0.5, 12), lrs)
    # 12 points: skip 1, drop 5: 6 left, a window of 5 (fastai: IndexError).
    assert result.suggestion_index("slide") in range(1, 7)


@pytest.mark.parametrize("k", [2, 4])
def test_repeated_lrs_count_once_in_every_rule(k):
    # Under gradient accumulation each LR is recorded once per micro-batch:
    # every rule must read the curve of distinct LRs (fastai's np.unique),
    # and the skipped warm-up is 10% of the points, not of the records.
    rng = np.random.default_rng(k)
    points = 60
    lrs = np.geomspace(1e-6, 1.0, points)
    x = np.log10(lrs)
    losses = 1.5 - np.tanh(x + 3) + np.where(x > -1, 4 * (x + 1) ** 2, 0)
    losses += 0.01 * rng.normal(size=points)
    # Within a point, the smoothed records differ a little (the EMA moves).
    repeated = np.repeat(losses, k) + np.tile(np.linspace(0, -1e-3, k), points)
    once = LRFinderResult(lrs, losses, smoothed_losses=losses, num_steps=points)
    many = LRFinderResult(
        np.repeat(lrs, k), repeated, smoothed_losses=repeated, num_steps=points
    )
    for method in ("valley", "steep", "minimum", "chain", "slide"):
        assert many.suggestion(method) == once.suggestion(method), method
        index = many.suggestion_index(method)
        assert index % k == 0  # the first record of its LR
    assert many.cyclic_range() == once.cyclic_range()
    assert many.descended == once.descended
