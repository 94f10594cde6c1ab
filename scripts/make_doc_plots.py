"""Regenerate the schedule figures of docs/schedules.md from the real code.

Usage (from the repository root):

    python scripts/make_doc_plots.py

Writes docs/img/schedule_<name>.png, one figure per schedule, with the
arguments used in the docs' examples.
"""

import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "jax")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_tricks.schedules import (  # noqa: E402
    SGDR,
    CyclicLR,
    OneCycle,
    WarmupConstant,
    WarmupCosine,
    WarmupLinear,
    plot_schedule,
)

OUT = pathlib.Path(__file__).resolve().parent.parent / "docs" / "img"

FIGURES = {
    "one_cycle": (OneCycle(max_lr=0.1, total_steps=1000), 1100, None),
    "one_cycle_three_phase": (
        OneCycle(
            max_lr=0.1, total_steps=1000, three_phase=True, anneal_strategy="linear"
        ),
        1100,
        None,
    ),
    "sgdr": (
        SGDR(
            max_lr=0.1,
            first_cycle_steps=100,
            t_mul=2.0,
            m_mul=0.7,
            min_lr=1e-3,
            warmup_steps=50,
        ),
        1600,
        None,
    ),
    "cyclic": (
        [
            CyclicLR(1e-3, 1e-2, step_size=100, mode="triangular2"),
            CyclicLR(1e-3, 1e-2, step_size=100, mode="triangular"),
            CyclicLR(1e-3, 1e-2, step_size=100, mode="exp_range", gamma=0.998),
        ],
        1000,
        ["triangular2", "triangular", "exp_range (gamma=0.998)"],
    ),
    "warmup_cosine": (
        WarmupCosine(peak_lr=1e-3, total_steps=1000, warmup_ratio=0.1, final_lr=1e-5),
        1100,
        None,
    ),
    "warmup_linear": (
        WarmupLinear(peak_lr=1e-3, total_steps=1000, warmup_steps=100),
        1100,
        None,
    ),
    "warmup_constant": (WarmupConstant(lr=0.1, warmup_steps=200), 1000, None),
}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (schedule, steps, labels) in FIGURES.items():
        fig, ax = plt.subplots(figsize=(6, 3.2))
        if isinstance(schedule, list):
            # One schedule with its momentum, the other modes' LR beside it.
            plot_schedule(schedule[0], steps, ax=ax)
            ax.get_lines()[0].set_label(labels[0])
            colors = ["tab:green", "tab:red"]
            for other, label, color in zip(
                schedule[1:], labels[1:], colors, strict=True
            ):
                lr = np.asarray(other(np.arange(steps)))
                ax.plot(np.arange(steps), lr, label=label, color=color, lw=1)
            ax.set_title("CyclicLR")
            ax.legend(fontsize=8, loc="upper right")
        else:
            plot_schedule(schedule, steps, ax=ax)
        fig.tight_layout()
        path = OUT / f"schedule_{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        print(path.relative_to(OUT.parent.parent))


if __name__ == "__main__":
    main()
