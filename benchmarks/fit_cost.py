"""Whole-`fit` cost of the control core, fixed costs included, and trace counts.

`update_cost.py` pairs per-update blocks and `overhead.py` drops the first
epoch: neither sees what a `fit` pays once (tracing, compiling, host work at
`fit` start). This script times whole `fit` calls of a notebook's second run
("refit": the model was trained before, the same callbacks come again) on a
small MLP on scikit-learn's digits, and counts traces with a layer whose `call`
increments a Python counter (it runs once per trace; on eager PyTorch once per
step, so no trace count is shown there):

* `plain`: SGD(0.1, momentum=0.9) at a constant LR, no callback (reference);
* `plain+GC`: `GradientCentralization(SGD)` at a constant LR, no callback
  (the reference of the next row: gradient centralization's own cost is not
  the control core's);
* `OneCycle+GC`: `GradientCentralization(SGD)` with `OneCycle` (momentum
  cycling), the same callback instance in both fits, then a plain `fit`;
* `WarmupCosine+RLROP`: `WarmupCosine` with `ReduceLROnPlateau(patience=1)`
  reducing at every epoch end, in both fits;
* `Keras LRS+RLROP`: the nearest thing plain Keras has, its own
  `LearningRateScheduler` (a warmup-cosine function of the epoch) with its
  own `ReduceLROnPlateau(patience=1)`: not our code, the reference of what
  two of Keras's own callbacks cost a refit (a per-epoch schedule, whose
  writes undo the reductions: the cost, not the behaviour, is comparable);

Each ratio is the median over rounds of a refit's time divided by its
reference's in the same round, in wall time and in CPU time
(`time.process_time`: every thread of the process, so the backend's own
threads count and a shared machine's other processes do not; on the 2-core
VM of docs/benchmarks/fit-cost.md its quartiles were no narrower than wall
time's), and as the ratio of the mean of each configuration's fastest
quarter of refits (noise only adds time: the least disturbed runs). Each
configuration has several identical models refitted in turn (`--instances`,
see `_rounds`);

and the fixed cost of building the host tables of a 100,000-step `OneCycle`
program at `fit` start (`_control.Program`, NumPy).

Usage:

    python benchmarks/fit_cost.py                 # the current KERAS_BACKEND
    python benchmarks/fit_cost.py --all-backends  # tensorflow, jax and torch
    python benchmarks/fit_cost.py --quick         # smoke run
"""

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")
CONFIGS = ("plain", "plain+GC", "OneCycle+GC", "WarmupCosine+RLROP", "Keras LRS+RLROP")
# The reference each configuration is divided by (paired run by run).
REFERENCE = {"OneCycle+GC": "plain+GC", "plain+GC": "plain"}


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--all-backends", action="store_true")
    parser.add_argument(
        "--runs", type=int, default=None, help="interleaved rounds of refits (default 20)"
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--instances",
        type=int,
        default=None,
        help="identical models per configuration, refitted in turn (default 3; 1 "
        "with --quick)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads per backend (0: the backend's default). Defaults to 1, "
        "as overhead.py: steadier figures on a shared machine.",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin each backend's process to one CPU core (Linux). Pinned, "
        "the quartiles of a ratio were ~3x narrower on the 2-core VM of "
        "docs/benchmarks/fit-cost.md (no thread migrates between cores).",
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def _build(config, epochs, seed):
    """A model, its callbacks and its first `fit` (time and traces)."""
    import keras
    from sklearn.datasets import load_digits

    import keras_tricks
    from keras_tricks import callbacks as ktc

    class Counting(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.traces = 0

        def call(self, x):
            self.traces += 1
            return x

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    keras.utils.set_random_seed(seed)
    counter = Counting()
    model = keras.Sequential(
        [
            keras.Input((64,)),
            counter,
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    if config.endswith("+GC"):
        optimizer = keras_tricks.optimizers.GradientCentralization(optimizer)
    model.compile(optimizer, "sparse_categorical_crossentropy")
    if config.startswith("plain"):
        callbacks = []
    elif config == "OneCycle+GC":
        callbacks = [ktc.OneCycle(max_lr=0.1)]
    elif config == "Keras LRS+RLROP":

        def warmup_cosine(epoch, lr):
            if epoch == 0:
                return 0.01
            return 0.05 * (1.0 + math.cos(math.pi * (epoch - 1) / max(epochs - 1, 1)))

        callbacks = [
            keras.callbacks.LearningRateScheduler(warmup_cosine),
            keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=1, min_delta=1e9),
        ]
    else:
        callbacks = [
            ktc.WarmupCosine(peak_lr=0.1, warmup_ratio=0.1),
            ktc.ReduceLROnPlateau(monitor="loss", patience=1, min_delta=1e9),
        ]

    hooks = {"seconds": 0.0}
    for callback in callbacks:
        _time_hooks(callback, hooks)

    cpu = []

    def fit(cbs):
        gc.collect()
        start, start_cpu = time.perf_counter(), time.process_time()
        model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, callbacks=cbs)
        cpu.append(time.process_time() - start_cpu)
        return time.perf_counter() - start

    first = fit(callbacks)
    hooks["seconds"] = 0.0
    return {"fit": fit, "callbacks": callbacks, "counter": counter, "first": first,
            "traces_first": counter.traces, "hooks": hooks, "cpu": cpu}


def _time_hooks(callback, total):
    """Add the wall time of ``callback``'s own hooks (the methods its class
    overrides) to ``total["seconds"]``: the host work at `fit` start, epoch
    boundaries and `fit` end that the control core costs."""
    import keras

    for name in dir(type(callback)):
        if not name.startswith("on_"):
            continue
        method = getattr(type(callback), name)
        if method is getattr(keras.callbacks.Callback, name, None):
            continue
        bound = getattr(callback, name)

        def timed(*args, _bound=bound, **kwargs):
            start = time.perf_counter()
            try:
                return _bound(*args, **kwargs)
            finally:
                total["seconds"] += time.perf_counter() - start

        setattr(callback, name, timed)


def _rounds(configs, epochs, rounds, instances=3, seed=0):
    """Refits of every configuration, interleaved round by round (the order
    reversed every other round), so that drifts of a shared machine's speed
    reach every configuration alike; then one plain `fit` of each model.

    Each configuration has ``instances`` identical models, and round ``r``
    refits model ``(r + i) % instances`` of the ``i``-th configuration: two
    identical models time apart by a few percent on the VM of
    docs/benchmarks/fit-cost.md (where their buffers landed), so each
    configuration meets every model of its reference in turn.
    """
    built = {c: [_build(c, epochs, seed) for _ in range(instances)] for c in configs}
    refits = {c: [] for c in configs}
    refits_cpu = {c: [] for c in configs}
    traces_refit = {}
    hooks = {c: 0.0 for c in configs}
    for r in range(rounds):
        for config in configs if r % 2 == 0 else configs[::-1]:
            b = built[config][(r + configs.index(config)) % instances]
            before = b["counter"].traces
            hooks_before = b["hooks"]["seconds"]
            refits[config].append(b["fit"](b["callbacks"]))
            refits_cpu[config].append(b["cpu"][-1])
            hooks[config] += b["hooks"]["seconds"] - hooks_before
            traces_refit.setdefault(config, b["counter"].traces - before)
    out = {}
    for config in configs:
        b = built[config][0]
        before = b["counter"].traces
        after = b["fit"]([])
        out[config] = {
            "first": b["first"],
            "refits": refits[config],
            "refits_cpu": refits_cpu[config],
            "plain_after": after,
            "traces": [b["traces_first"], traces_refit[config], b["counter"].traces - before],
            "hooks_ms": 1e3 * hooks[config] / max(rounds, 1),
        }
    return out


def _table_cost():
    import numpy as np

    from keras_tricks import _control, schedules

    schedule = schedules.OneCycle(max_lr=0.1, total_steps=100_000)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        _control.Program(
            schedule, schedule.momentum, table_size=100_002
        )
        best = min(best, time.perf_counter() - start)
    np.asarray(0)
    return best


def run_backend(args):
    import keras

    rounds = args.runs or (1 if args.quick else 20)
    epochs = args.epochs or (1 if args.quick else 3)
    instances = args.instances or (1 if args.quick else 3)
    return {
        "backend": keras.backend.backend(),
        "table_ms": _table_cost() * 1e3,
        "results": _rounds(CONFIGS, epochs, rounds, instances=instances),
    }


def _quartiles(values):
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def _fastest_quarter(values):
    """The mean of the fastest quarter: interference on a shared machine
    only ever adds time, so the fastest runs are the least disturbed."""
    ordered = sorted(values)
    return statistics.mean(ordered[: max(1, len(ordered) // 4)])


def _print(per_backend):
    print(
        "| backend | config | first fit (s) | refit (s, median) | ÷ reference refit "
        "(median of rounds) | quartiles of the ratio | fastest quarter ÷ "
        "reference's | reference | our hooks "
        "(ms a refit) | CPU time ÷ reference (median, quartiles) | plain fit after (s) "
        "| traces: fit, refit, plain after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for data in per_backend:
        backend = data["backend"]
        res = data["results"]
        for config in CONFIGS:
            ref = REFERENCE.get(config, "plain")
            refit = statistics.median(res[config]["refits"])
            ratios = [a / b for a, b in zip(res[config]["refits"], res[ref]["refits"])]
            low, high = _quartiles(ratios)
            cpu = [
                a / b
                for a, b in zip(res[config]["refits_cpu"], res[ref]["refits_cpu"])
                if b > 0
            ] or [float("nan")]
            cpu_low, cpu_high = _quartiles(cpu)
            fastest = _fastest_quarter(res[config]["refits"]) / _fastest_quarter(
                res[ref]["refits"]
            )
            traces = res[config]["traces"]
            shown = "eager" if backend == "torch" else ", ".join(map(str, traces))
            print(
                f"| {backend} | {config} | {res[config]['first']:.3f} | {refit:.3f} "
                f"| {statistics.median(ratios):.3f} | {low:.2f}-{high:.2f} "
                f"| {fastest:.3f} | {ref} "
                f"| {res[config]['hooks_ms']:.2f} "
                f"| {statistics.median(cpu):.3f} ({cpu_low:.2f}-{cpu_high:.2f}) "
                f"| {res[config]['plain_after']:.3f} "
                f"| {shown} |"
            )
    print()
    print("| backend | host tables of a 100,000-step OneCycle (ms) |")
    print("|---|---|")
    for data in per_backend:
        print(f"| {data['backend']} | {data['table_ms']:.1f} |")


def main():
    args = _parse()
    if args.json:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from overhead import _limit_threads

        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if not args.no_pin and len(cores) > 1:
            # The last core (the first one takes most interrupts), before the
            # backend starts its threads: they inherit it.
            os.sched_setaffinity(0, {cores[-1]})
        _limit_threads(args.threads)
        print(json.dumps(run_backend(args)))
        return
    backends = BACKENDS if args.all_backends else (os.environ.get("KERAS_BACKEND", "tensorflow"),)
    per_backend = []
    for backend in backends:
        cmd = [sys.executable, __file__, "--json"]
        if args.quick:
            cmd.append("--quick")
        if args.runs:
            cmd += ["--runs", str(args.runs)]
        if args.epochs:
            cmd += ["--epochs", str(args.epochs)]
        if args.instances:
            cmd += ["--instances", str(args.instances)]
        cmd += ["--threads", str(args.threads)]
        if args.no_pin:
            cmd.append("--no-pin")
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.stderr.write(out.stderr[-3000:])
            raise SystemExit(out.returncode)
        per_backend.append(json.loads(out.stdout.strip().splitlines()[-1]))
    _print(per_backend)


if __name__ == "__main__":
    main()
