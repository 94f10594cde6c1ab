"""How often TrainingDiagnosis names a provoked problem, and what its probe costs.

Scenarios (scikit-learn's digits, 1,797 8x8 images; an MLP with one hidden
layer of 32 ReLU units unless said otherwise):

- `lr_too_high`: SGD(momentum 0.9) at 5.0, 100x the 0.05 that trains well;
- `lr_too_low`: Adam at 1e-7, 1e4x below its 1e-3 default;
- `model_bias`: 2 hidden units, Adam 3e-2;
- `overfitting`: two layers of 256 units on 150 samples, Adam 1e-2;
- `ok`: the healthy run, SGD(momentum 0.9) at 0.05;
- `not_converged`: the healthy model at 0.005 for 2 epochs.

Each runs with several seeds; the table gives the share of runs named right,
and the time the probe added per epoch (every 2 epochs here; the first probe
compiles the probe's gradient function, shown apart).

    python benchmarks/diagnosis.py            # 3 seeds
    python benchmarks/diagnosis.py --smoke    # 1 seed, 3 scenarios (tests)
    python benchmarks/diagnosis.py --seeds 1 --figures docs/img   # the docs' plots
"""

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from keras_tricks.diagnosis import TrainingDiagnosis  # noqa: E402

# name: (hidden units, optimizer factory, training rows, epochs, batch size)
SCENARIOS = {
    "lr_too_high": ([32], lambda: keras.optimizers.SGD(5.0, momentum=0.9), 1400, 3, 64),
    "lr_too_low": ([32], lambda: keras.optimizers.Adam(1e-7), 1400, 3, 64),
    "model_bias": ([2], lambda: keras.optimizers.Adam(3e-2), 1400, 12, 64),
    "overfitting": ([256, 256], lambda: keras.optimizers.Adam(1e-2), 150, 15, 32),
    "ok": ([32], lambda: keras.optimizers.SGD(0.05, momentum=0.9), 1400, 8, 64),
    "not_converged": ([32], lambda: keras.optimizers.SGD(0.005, momentum=0.9), 1400, 2, 64),
}


def _data():
    x, y = load_digits(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(x))
    return (x[idx] / 16.0).astype("float32"), y[idx].astype("int32")


class _EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self._began = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._began)

    def on_train_begin(self, logs=None):
        self.times = []


def run(name, seed, x, y):
    units, optimizer, n, epochs, batch_size = SCENARIOS[name]
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((64,))] + [keras.layers.Dense(u, activation="relu") for u in units]
    model = keras.Sequential(layers + [keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer(), loss="sparse_categorical_crossentropy")
    # The rows are shuffled per seed, so each seed sees another split too.
    idx = np.random.default_rng(seed).permutation(len(x))
    xs, ys = x[idx], y[idx]
    diagnosis = TrainingDiagnosis(probe_data=(xs[:n], ys[:n]), probe_every=2, verbose=0)
    timer = _EpochTimer()
    model.fit(xs[:n], ys[:n], validation_data=(xs[1400:], ys[1400:]), epochs=epochs,
              batch_size=batch_size, callbacks=[diagnosis, timer], verbose=0)
    keras.backend.clear_session(free_memory=False)
    return diagnosis, timer.times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--figures", metavar="DIR", default=None,
                        help="also draw each scenario's seed-0 run with plot_history into DIR")
    parser.add_argument("--smoke", "--quick", action="store_true",
                        help="1 seed, 3 scenarios: a fast check that the script runs")
    args = parser.parse_args(argv)
    names = ["lr_too_low", "ok", "not_converged"] if args.smoke else list(SCENARIOS)
    seeds = range(1 if args.smoke else args.seeds)
    x, y = _data()
    print(f"# TrainingDiagnosis verdicts, backend {keras.backend.backend()}, "
          f"{platform.machine()} {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}")
    print()
    print("| scenario | runs | named right | other verdicts | epoch time (s) | probe per epoch (s) | probe / epoch |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        right, others, epoch_times, probe_times = 0, [], [], []
        for seed in seeds:
            diagnosis, times = run(name, seed, x, y)
            if diagnosis.report.verdict == name:
                right += 1
            else:
                others.append(diagnosis.report.verdict)
            if args.figures and seed == 0:
                import matplotlib

                matplotlib.use("Agg")
                from keras_tricks.diagnosis import plot_history

                left, _ = plot_history(diagnosis.history, diagnosis.report)
                left.figure.suptitle(f"scenario: {name}", fontsize=9)
                left.figure.tight_layout()
                left.figure.savefig(os.path.join(args.figures, f"diagnosis_{name}.png"), dpi=72)
            epoch_times += times[1:]  # the first epoch compiles the train step
            # Probe cost in steady state: every probe but the first (which
            # compiles the gradient function), spread over the epochs.
            steady = [p["seconds"] for p in diagnosis.probes[1:]]
            if steady:
                probe_times.append(sum(steady) / len(times))
        epoch = float(np.median(epoch_times)) if epoch_times else float("nan")
        probe = float(np.median(probe_times)) if probe_times else float("nan")
        share = f"{probe / epoch:.1%}" if probe_times else "- (one probe)"
        probe_text = f"{probe:.4f}" if probe_times else "-"
        print(f"| {name} | {len(seeds)} | {right}/{len(seeds)} | {', '.join(others) or '-'} "
              f"| {epoch:.3f} | {probe_text} | {share} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
