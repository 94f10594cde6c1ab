"""Tests for keras_tricks.plotting.plot_schedule."""

import sys

import numpy as np
import pytest
from keras import ops

from keras_tricks.schedules import SGDR, OneCycle, plot_schedule

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def test_plot_one_cycle_draws_lr_and_momentum_and_saves_png(tmp_path):
    import matplotlib.pyplot as plt

    schedule = OneCycle(max_lr=0.1, total_steps=100)
    ax = plot_schedule(schedule, 120)
    lr_line = ax.get_lines()[0]
    np.testing.assert_array_equal(lr_line.get_xdata(), np.arange(120))
    np.testing.assert_allclose(
        lr_line.get_ydata(), ops.convert_to_numpy(schedule(np.arange(120))), rtol=1e-6
    )
    momentum_line = ax.right_ax.get_lines()[0]
    np.testing.assert_allclose(
        momentum_line.get_ydata(),
        ops.convert_to_numpy(schedule.momentum(np.arange(120))),
        rtol=1e-6,
    )
    assert ax.get_title() == "OneCycle"
    path = tmp_path / "one_cycle.png"
    ax.figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plt.close(ax.figure)


def test_plot_into_given_axes_with_explicit_steps():
    import matplotlib.pyplot as plt

    fig, given = plt.subplots()
    steps = np.array([0, 5, 10, 50, 99])
    ax = plot_schedule(SGDR(0.1, 20), steps, ax=given)
    assert ax is given
    assert not hasattr(ax, "right_ax")  # SGDR has no momentum
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), steps)
    plt.close(fig)


def test_missing_matplotlib_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install keras-tricks\[plot\]"):
        plot_schedule(SGDR(0.1, 20), 10)
