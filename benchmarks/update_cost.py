"""The cost of a schedule callback per update, measured in paired blocks.

`overhead.py` times whole epochs of `fit`; on a small model an epoch lasts
10-100 ms and the machine's noise from one epoch to the next (5-10% on a
shared virtual machine) hides a 2% effect. This script measures the one thing
a schedule callback adds to training, the installed schedule inside the
update, with the noise paired away:

* one model per configuration (the same ones as `overhead.py`: a constant LR,
  Keras's own `CosineDecay` given to the optimizer, and each schedule callback
  of `keras_tricks`, which installs its schedule exactly as in `fit`);
* all of them compiled and warmed up, then timed in short blocks of
  `train_on_batch` calls on the same batch, the configurations interleaved
  block by block (in a rotating order), so that a slow stretch of the machine
  hits every configuration alike;
* for each block the ratio of a configuration's time to the constant-LR
  model's time in the same round; reported: the median ratio, its
  interquartile range, and the median extra microseconds per update.

Usage:

    python benchmarks/update_cost.py                 # the current KERAS_BACKEND
    python benchmarks/update_cost.py --all-backends  # tensorflow, jax and torch
    python benchmarks/update_cost.py --quick         # smoke run
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from overhead import (  # noqa: E402
    BACKENDS,
    CONFIGS,
    _data_and_model,
    _limit_threads,
    make_callback,
    make_optimizer,
)


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--all-backends", action="store_true")
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=None, help="default 40")
    parser.add_argument("--steps", type=int, default=None, help="updates per block")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rounds = args.rounds or (4 if args.quick else 40)
    args.steps = args.steps or (10 if args.quick else 25)
    return args


def _measure(kind, batch_size, rounds, steps):
    """{config: [seconds of each block]} for the current backend."""
    import keras

    x, y, make_model = _data_and_model(kind)
    xb, yb = x[:batch_size], y[:batch_size]
    warmup = 20
    total = warmup + rounds * steps
    models = {}
    for name in CONFIGS:
        keras.utils.set_random_seed(1)
        model = make_model()
        model.compile(
            make_optimizer(name, total),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        callback = make_callback(name)
        if callback is not None:
            # What `fit` does before the first batch: size the schedule for
            # this many updates (as 4 epochs) and install it on the optimizer.
            callback.set_model(model)
            per_epoch = -(-total // 4)
            callback.set_params({"epochs": 4, "steps": per_epoch, "verbose": 0})
            callback.on_train_begin()
            callback.on_epoch_begin(0)
        for _ in range(warmup):
            model.train_on_batch(xb, yb)
        models[name] = model
    blocks = {name: [] for name in CONFIGS}
    for r in range(rounds):
        shift = r % len(CONFIGS)
        for name in CONFIGS[shift:] + CONFIGS[:shift]:
            model = models[name]
            start = time.perf_counter()
            for _ in range(steps):
                model.train_on_batch(xb, yb)
            blocks[name].append(time.perf_counter() - start)
    return blocks


def _summary(blocks, steps):
    base = blocks["constant"]
    rows = {}
    for name in CONFIGS:
        ratios = sorted(t / b for t, b in zip(blocks[name], base, strict=True))
        extra = sorted(
            (t - b) / steps * 1e6 for t, b in zip(blocks[name], base, strict=True)
        )
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        rows[name] = {
            "update_us": statistics.median(blocks[name]) / steps * 1e6,
            "ratio": statistics.median(ratios),
            "q1": q1,
            "q3": q3,
            "extra_us": statistics.median(extra),
        }
    return rows


def main():
    args = _parse()
    if args.all_backends:
        per_backend = {}
        for backend in BACKENDS:
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
            cmd = [sys.executable, __file__, "--json", "--model", args.model]
            cmd += ["--batch-size", str(args.batch_size), "--rounds", str(args.rounds)]
            cmd += ["--steps", str(args.steps), "--threads", str(args.threads)]
            out = subprocess.run(
                cmd, env=env, check=True, capture_output=True, text=True
            ).stdout
            per_backend[backend] = json.loads(out.strip().splitlines()[-1])
            print(f"{backend} done", file=sys.stderr)
    else:
        _limit_threads(args.threads)
        import keras

        blocks = _measure(args.model, args.batch_size, args.rounds, args.steps)
        rows = _summary(blocks, args.steps)
        if args.json:
            print(json.dumps(rows))
            return
        per_backend = {keras.backend.backend(): rows}
    print(
        f"Cost per update, {args.model}, batch {args.batch_size}: {args.rounds} "
        f"rounds of {args.steps}-update blocks per configuration, interleaved, "
        f"{args.threads or 'default'} CPU thread(s)\n"
    )
    print(
        "| backend | schedule | us per update | ratio to constant (median) "
        "| interquartile range | extra us per update (median) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for backend, rows in per_backend.items():
        for name in CONFIGS:
            row = rows[name]
            print(
                f"| {backend} | {name} | {row['update_us']:.0f} | {row['ratio']:.3f} "
                f"| {row['q1']:.3f}-{row['q3']:.3f} | {row['extra_us']:+.1f} |"
            )


if __name__ == "__main__":
    main()
