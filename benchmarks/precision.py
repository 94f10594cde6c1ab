"""Step time of a small conv net under float32 and under `auto_policy()`.

For each backend, trains the same small conv net (two Conv2D blocks, global
pooling, a softmax head kept in float32 by `check_outputs(fix=True)`) on a
fixed synthetic batch and times `train_on_batch` after a warmup, under:

* ``float32``;
* ``auto``: whatever `keras_tricks.precision.auto_policy()` picks here;
* ``mixed_float16`` and ``mixed_bfloat16`` forced, for context.

The policies are measured in interleaved rounds (one block of steps each per
round) so that a noisy, shared machine affects them alike; the table gives the
median over the rounds of the wall-clock time per step and of the process CPU
time per step (all threads; less disturbed by other processes on a shared
machine), each with its ratio to float32.

Usage:
    python benchmarks/precision.py            # all backends, full run
    python benchmarks/precision.py --quick    # current backend, a few steps
    python benchmarks/precision.py --backends jax torch
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

POLICIES = ("float32", "auto", "mixed_float16", "mixed_bfloat16")


def _build(keras, precision, image_size, classes):
    model = keras.Sequential(
        [
            keras.Input((image_size, image_size, 3)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )
    return precision.check_outputs(model, fix=True)


def measure(quick):
    """Time each policy on the current backend; returns a list of dicts."""
    import warnings

    import keras
    import numpy as np

    from keras_tricks import precision

    batch, image_size, classes = (32, 16, 10) if quick else (32, 32, 10)
    steps, rounds = (3, 2) if quick else (5, 6)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, image_size, image_size, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, classes, size=batch), classes)

    choice = precision.auto_policy(explain=True)
    runs = {}
    for name in POLICIES:
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        with warnings.catch_warnings():
            # Forcing a mixed policy on a CPU warns; that is the point here.
            warnings.simplefilter("ignore", precision.PrecisionWarning)
            policy = precision.set_policy(name)
        model = _build(keras, precision, image_size, classes)
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
        for _ in range(2):  # trace / compile, warm caches
            model.train_on_batch(x, y)
        runs[name] = {
            "policy": policy,
            "model": model,
            "times": [],
            "cpu": [],
            "loss": None,
        }
    keras.config.set_dtype_policy("float32")

    for _ in range(rounds):
        for name in POLICIES:
            run = runs[name]
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(steps):
                loss = run["model"].train_on_batch(x, y)
            run["times"].append((time.perf_counter() - start) / steps)
            run["cpu"].append((time.process_time() - cpu_start) / steps)
            run["loss"] = float(np.asarray(loss).ravel()[0])

    base = statistics.median(runs["float32"]["times"])
    cpu_base = statistics.median(runs["float32"]["cpu"])
    rows = []
    for name in POLICIES:
        run = runs[name]
        median = statistics.median(run["times"])
        cpu = statistics.median(run["cpu"])
        rows.append(
            {
                "backend": keras.backend.backend(),
                "asked": name,
                "policy": run["policy"],
                "ms_per_step": 1000 * median,
                "cpu_ms_per_step": 1000 * cpu,
                "vs_float32": median / base,
                "cpu_vs_float32": cpu / cpu_base,
                "loss_finite": bool(np.isfinite(run["loss"])),
                "auto_reason": choice.reason,
            }
        )
    return rows


def _run_backend(backend, quick):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, __file__, "--child"] + (["--quick"] if quick else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"benchmark failed on {backend}")
    last = done.stdout.strip().splitlines()[-1]
    return json.loads(last)


def _table(rows):
    lines = [
        "| backend | asked for | policy used | wall ms / step | vs float32 "
        "| CPU ms / step | vs float32 | loss finite |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['backend']} | {row['asked']} | {row['policy']} | "
            f"{row['ms_per_step']:.1f} | {row['vs_float32']:.2f}x | "
            f"{row['cpu_ms_per_step']:.1f} | {row['cpu_vs_float32']:.2f}x | "
            f"{'yes' if row['loss_finite'] else 'NO'} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps only")
    parser.add_argument(
        "--backends",
        nargs="+",
        default=None,
        help="backends to run (default: all three; --quick: the current one)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.quick)))
        return
    backends = args.backends
    if backends is None:
        current = os.environ.get("KERAS_BACKEND", "tensorflow")
        backends = [current] if args.quick else ["tensorflow", "jax", "torch"]
    rows = []
    for backend in backends:
        rows.extend(_run_backend(backend, args.quick))
    print(_table(rows))
    reasons = {row["backend"]: row["auto_reason"] for row in rows}
    for backend, reason in reasons.items():
        print(f"auto_policy() on {backend}: {reason}")
    for row in rows:
        if row["asked"] == "auto" and row["policy"] == "float32":
            print(
                f"{row['backend']}: auto chose float32 (the same model as the "
                f"float32 row): {row['vs_float32']:.2f}x the wall time, "
                f"{row['cpu_vs_float32']:.2f}x the CPU time of float32."
            )


if __name__ == "__main__":
    main()
