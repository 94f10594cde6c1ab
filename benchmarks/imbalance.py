"""Benchmark: class-imbalance tricks (memory of oversampling, quality of the fixes).

Part 1 (memory, time): one epoch of batches over a 1,000,000 x 64 float32
dataset with a 1:99 class ratio, built by `OversampledDataset` (index gathering)
and by imblearn's `RandomOverSampler.fit_resample` (copies x), measured with
tracemalloc (which sees NumPy's allocations) and a wall clock.

Part 2 (quality): two imbalanced problems (breast cancer subsampled to 1:20
positives, make_classification at 1:99), 5 seeds, a small MLP trained with
plain BCE, balanced class weights or "max" oversampling, each with a zero
output bias or the bias of the raw label prior. Reported: the loss the run
optimizes at init and after the first epoch, test PR-AUC (average precision)
and test recall at precision >= 0.8.

Run:  KERAS_BACKEND=jax python benchmarks/imbalance.py [--quick]
"""

import argparse
import gc
import os
import time
import tracemalloc

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from imblearn.over_sampling import RandomOverSampler  # noqa: E402
from sklearn.datasets import load_breast_cancer, make_classification  # noqa: E402
from sklearn.metrics import average_precision_score, precision_recall_curve  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from keras_tricks import imbalance  # noqa: E402
from keras_tricks.layers import OutputHead  # noqa: E402

BATCH = 1024


def _epoch_oversampled(x, y):
    ds = imbalance.OversampledDataset(x, y, batch_size=BATCH, seed=0)
    total = 0
    for i in range(len(ds)):
        xb, _ = ds[i]
        total += xb.shape[0]
    return total


def _epoch_imblearn(x, y):
    x_res, y_res = RandomOverSampler(random_state=0).fit_resample(x, y)
    order = np.random.default_rng(0).permutation(len(y_res))
    total = 0
    for i in range(0, len(order), BATCH):
        xb = x_res[order[i : i + BATCH]]
        total += xb.shape[0]
    return total


def _measure(fn, x, y):
    gc.collect()
    t0 = time.perf_counter()
    fn(x, y)
    seconds = time.perf_counter() - t0
    gc.collect()
    tracemalloc.start()
    fn(x, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak


def memory_benchmark(n):
    d = 64
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    y = (np.arange(n) % 100 == 0).astype(np.int64)  # 1:99
    rows = []
    for name, fn in (
        ("OversampledDataset", _epoch_oversampled),
        ("RandomOverSampler.fit_resample", _epoch_imblearn),
    ):
        seconds, peak = _measure(fn, x, y)
        rows.append((name, peak, seconds))
    print(
        f"\n## Part 1: one epoch of batches, {n:,} x {d} float32 "
        f"(x = {x.nbytes / 2**20:.0f} MiB), 1:99, batch {BATCH}\n"
    )
    print("| method | extra peak memory (MiB) | time (s) |")
    print("|---|---:|---:|")
    for name, peak, seconds in rows:
        print(f"| {name} | {peak / 2**20:.1f} | {seconds:.2f} |")
    ratio = rows[0][1] / rows[1][1]
    print(
        f"\nOversampledDataset uses {100 * ratio:.2f}% of fit_resample's extra memory."
    )
    return rows


# --------------------------------------------------------------- part 2


def breast_cancer_1_20(seed):
    data = load_breast_cancer()
    x, y = (
        data.data.astype("float32"),
        (1 - data.target).astype("int32"),
    )  # 1 = malignant
    rng = np.random.default_rng(seed)
    neg = np.flatnonzero(y == 0)
    pos = rng.choice(np.flatnonzero(y == 1), size=len(neg) // 20, replace=False)
    keep = np.concatenate([neg, pos])
    return x[keep], y[keep]


def make_1_99(seed, n):
    x, y = make_classification(
        n_samples=n,
        n_features=20,
        n_informative=6,
        n_redundant=4,
        weights=[0.99],
        flip_y=0.0,
        class_sep=1.2,
        random_state=seed,
    )
    return x.astype("float32"), y.astype("int32")


def _build(d, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((d,)),
            keras.layers.Dense(16, activation="relu"),
            OutputHead(1, "sigmoid"),
        ]
    )


def _recall_at_precision(y, scores, precision=0.8):
    p, r, _ = precision_recall_curve(y, scores)
    ok = p >= precision
    return float(r[ok].max()) if ok.any() else 0.0


def quality_benchmark(seeds, problems):
    results = {}
    for problem, (loader, batch, epochs) in problems.items():
        compiled = None
        for seed in seeds:
            x, y = loader(seed)
            x_tr, x_te, y_tr, y_te = train_test_split(
                x, y, test_size=0.3, stratify=y, random_state=seed
            )
            scaler = StandardScaler().fit(x_tr)
            x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)
            x_tr, x_te = x_tr.astype("float32"), x_te.astype("float32")
            raw_bias = imbalance.output_bias(y_tr, "sigmoid")
            sw = imbalance.sample_weights(y_tr)
            cw = imbalance.class_weights(y_tr)
            if compiled is None:
                compiled = _build(x.shape[1], 0)
                compiled.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
            for method in ("plain", "class weights", "oversampling"):
                for bias_name in ("zero", "raw prior"):
                    init = _build(x.shape[1], seed).get_weights()
                    if bias_name == "raw prior":
                        init[-1] = raw_bias.copy()
                    compiled.set_weights(init)
                    for v in compiled.optimizer.variables:  # fresh Adam state
                        if "learning_rate" not in v.path:
                            v.assign(np.zeros(v.shape, v.dtype))
                    if method == "oversampling":
                        data = imbalance.OversampledDataset(
                            x_tr, y_tr, batch_size=batch, seed=seed
                        )
                        fit_args = dict(x=data)
                        eval_w = sw  # "max" oversampling = balanced-weight prior
                    else:
                        fit_args = dict(x=x_tr, y=y_tr, batch_size=batch)
                        if method == "class weights":
                            fit_args["class_weight"] = cw
                        eval_w = sw if method != "plain" else None

                    ev = dict(
                        x=x_tr, y=y_tr, sample_weight=eval_w, batch_size=4096, verbose=0
                    )
                    loss0 = compiled.evaluate(**ev)
                    compiled.fit(**fit_args, epochs=1, verbose=0)
                    loss1 = compiled.evaluate(**ev)
                    compiled.fit(**fit_args, epochs=epochs - 1, verbose=0)
                    scores = compiled.predict(x_te, batch_size=4096, verbose=0)[:, 0]
                    key = (f"{problem} ({epochs} ep, batch {batch})", method, bias_name)
                    row = results.setdefault(key, [])
                    row.append(
                        (
                            loss0,
                            loss1,
                            average_precision_score(y_te, scores),
                            _recall_at_precision(y_te, scores),
                        )
                    )
    print(
        f"\n## Part 2: quality, mean ± std over {len(seeds)} seeds "
        "(Dense(16, relu) + OutputHead(1, sigmoid), Adam 3e-3)\n"
    )
    print(
        "| problem | method | output bias | loss at init | loss after epoch 1 "
        "| PR-AUC | recall @ precision 0.8 |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for (problem, method, bias_name), rows in results.items():
        a = np.asarray(rows)
        m, s = a.mean(axis=0), a.std(axis=0)
        print(
            f"| {problem} | {method} | {bias_name} | {m[0]:.3f} | {m[1]:.3f} "
            f"| {m[2]:.3f} ± {s[2]:.3f} | {m[3]:.3f} ± {s[3]:.3f} |"
        )
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 seeds")
    args = parser.parse_args()
    t0 = time.perf_counter()
    print(f"backend: {keras.backend.backend()}")
    memory_benchmark(100_000 if args.quick else 1_000_000)
    seeds = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    n_make = 4_000 if args.quick else 12_000
    problems = {
        "breast cancer 1:20": (breast_cancer_1_20, 32, 10 if args.quick else 30),
        "make_classification 1:99": (
            lambda seed: make_1_99(seed, n_make),
            128,
            3 if args.quick else 5,
        ),
    }
    quality_benchmark(seeds, problems)
    print(f"\ntotal time: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
