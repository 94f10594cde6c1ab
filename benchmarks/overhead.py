"""Overhead of the schedule callbacks: time per epoch vs a constant LR.

Trains the same small MLP on scikit-learn's digits with plain SGD (momentum
0.9, constant learning rate) and with each schedule callback of
`keras_tricks.callbacks` (`OneCycle` and `CyclicLR` also cycle the momentum),
and prints the time per epoch (the median, and the fastest epoch) and its
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
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")
CONFIGS = ("constant", "OneCycle", "SGDR", "WarmupCosine", "CyclicLR")


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--all-backends", action="store_true")
    parser.add_argument("--runs", type=int, default=None, help="repeats per config")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads per backend (0: the backend's default). Defaults to 1.",
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
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


def _one_round(epochs, batch_size, seed):
    """One run of every configuration; returns {config: [s/epoch, ...]}."""
    import keras
    from sklearn.datasets import load_digits

    import keras_tricks

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    cbs = keras_tricks.callbacks

    def make_callback(name):
        if name == "constant":
            return None
        if name == "OneCycle":
            return cbs.OneCycle(max_lr=0.1)
        if name == "SGDR":
            return cbs.SGDR(max_lr=0.1, first_cycle_epochs=1, t_mul=2.0)
        if name == "WarmupCosine":
            return cbs.WarmupCosine(peak_lr=0.1, warmup_epochs=1)
        return cbs.CyclicLR(1e-3, 0.1, step_size_epochs=1)

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._start)

    result = {}
    for name in CONFIGS:
        keras.utils.set_random_seed(seed)
        model = keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dense(10),
            ]
        )
        model.compile(
            keras.optimizers.SGD(0.05, momentum=0.9),
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
    """{config: (median over runs of the run's median epoch, fastest epoch)}."""
    merged = {}
    for name in CONFIGS:
        medians = [statistics.median(r[name]) for r in rounds]
        fastest = min(t for r in rounds for t in r[name])
        merged[name] = (statistics.median(medians), fastest)
    return merged


def _table(per_backend):
    # Load from other processes only ever adds time: the fastest epoch is the
    # steadier estimate on a shared machine, the median the usual one.
    lines = [
        "| backend | schedule | median s/epoch | ratio | fastest s/epoch | ratio |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for backend, merged in per_backend.items():
        base_median, base_fastest = merged["constant"]
        for name in CONFIGS:
            median, fastest = merged[name]
            lines.append(
                f"| {backend} | {name} | {median:.4f} | {median / base_median:.3f} "
                f"| {fastest:.4f} | {fastest / base_fastest:.3f} |"
            )
    return "\n".join(lines)


def main():
    args = _parse()
    if not args.all_backends:
        _limit_threads(args.threads)
    if args.json:
        print(json.dumps(_one_round(args.epochs, args.batch_size, seed=1)))
        return
    if not args.all_backends:
        import keras

        backend = keras.backend.backend()
        rounds = [
            _one_round(args.epochs, args.batch_size, seed=1) for _ in range(args.runs)
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
                ]
                out = subprocess.run(
                    cmd, env=env, check=True, capture_output=True, text=True
                ).stdout
                rounds[backend].append(json.loads(out.strip().splitlines()[-1]))
                print(f"run {run + 1}/{args.runs} {backend} done", file=sys.stderr)
        per_backend = {b: _merge(r) for b, r in rounds.items()}
    print(
        f"Time per epoch (median of {args.runs} runs x {args.epochs - 1} timed "
        f"epochs, batch {args.batch_size}, {-(-1797 // args.batch_size)} steps "
        f"per epoch, {args.threads or 'default'} CPU thread(s) per backend):\n"
    )
    print(_table(per_backend))


if __name__ == "__main__":
    main()
