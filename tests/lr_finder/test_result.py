"""LRFinderResult (keras_tricks.lr_finder.result): ranges, cuts, repr and plot."""

import numpy as np
import pytest

from keras_tricks.lr_finder import (
    LRFinderResult,
)

from ._common import _synthetic


def test_cyclic_range_spans_the_biggest_drop():
    losses = np.concatenate(
        [
            np.full(6, 3.0),
            np.linspace(3.0, 2.8, 6)[1:],
            [2.9],
            np.linspace(2.9, 0.9, 21)[1:],  # the big drop: indices 11 -> 31
            np.linspace(1.0, 4.0, 10),
        ]
    )
    result = _synthetic(losses)
    base_lr, max_lr = result.cyclic_range()
    assert max_lr == result.lrs[31]  # the bottom of the drop
    # A tenth of the bottom (14 steps of 1.43x above index 17) overshoots the
    # chain suggestion: base_lr is the chain suggestion.
    assert base_lr == result.suggestion("chain") == result.lrs[17]


def test_cyclic_range_of_a_steep_drop_is_a_decade():
    # A drop of two steps: the chain point is one step (1.43x) below the
    # bottom, so max_lr / 10 is the smaller one.
    losses = np.concatenate([np.full(20, 3.0), [2.0, 1.0], np.linspace(1.5, 4.0, 18)])
    result = _synthetic(losses)
    base_lr, max_lr = result.cyclic_range()
    assert max_lr == result.lrs[21]
    assert base_lr == pytest.approx(max_lr / 10)


def test_cyclic_range_needs_a_falling_curve():
    result = _synthetic(np.linspace(1.0, 3.0, 40))
    with pytest.raises(ValueError, match="never falls"):
        result.cyclic_range()


def test_suggestions_cut_at_nan_and_reject_too_few_points():
    losses = np.concatenate([np.linspace(2.0, 0.5, 30), [np.nan] * 10])
    result = _synthetic(losses)
    assert result.suggestion_index("minimum") == 29
    with pytest.raises(ValueError, match="`method`"):
        result.suggestion("best")
    short = LRFinderResult(
        [1e-3, 1e-2], [1.0, np.inf], num_steps=100, stop_reason="diverged"
    )
    with pytest.raises(ValueError, match="lower `start_lr`"):
        short.suggestion()
    assert short.suggestions() == {}


def test_repr_is_one_line():
    lrs = np.geomspace(1e-5, 1.0, 40)
    result = _synthetic((np.log10(lrs) + 2) ** 2, lrs)
    text = repr(result)
    assert "\n" not in text and text == str(result)
    assert "points=40/40" in text and f"chain={result.suggestion():.3g}" in text


def test_plot_marks_the_suggestions():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lrs = np.geomspace(1e-6, 1.0, 60)
    result = _synthetic(1.5 - np.tanh(np.log10(lrs) + 3) + (lrs > 0.1) * 4, lrs)
    with pytest.raises(ValueError, match="`methods`"):
        result.plot(methods=("chain", "best"))
    ax = result.plot(methods=("valley", "steep", "minimum", "chain"))
    labels = [line.get_label() for line in ax.get_lines()]
    assert ax.get_xscale() == "log"
    assert (
        sum(
            label.startswith(("valley", "steep", "minimum", "chain"))
            for label in labels
        )
        == 4
    )
    plt.close(ax.figure)
