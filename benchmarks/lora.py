"""LoRA rank and alpha vs accuracy and trainable parameters (`keras_tricks.lora`).

The task, small and bundled: an MLP (64-128-128) is pretrained on the
scikit-learn digits 0-4; it then learns the digits 5-9 (half of them to
train, half to test) with a new 5-way head, with:

* the head only (body frozen),
* `lora.enable(model, rank, alpha, keep_trainable="head")` for each rank and
  alpha (adapters on both Dense layers of the body, the head trainable),
* full fine-tuning (everything trainable).

Adam 3e-3, batch 32, the same epochs for all; test accuracy over several
seeds (the pretraining and the split are the same for a seed).

Usage:

    python benchmarks/lora.py            # 3 seeds
    python benchmarks/lora.py --quick    # smoke run (also --smoke)
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from keras_tricks import lora  # noqa: E402


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", "--smoke", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    return parser.parse_args()


def data(seed):
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    new = y >= 5
    x_new, y_new = x[new], y[new] - 5
    split = len(y_new) // 2
    return (x[~new], y[~new]), (x_new[:split], y_new[:split]), (x_new[split:], y_new[split:])


def pretrain(old, seed, epochs):
    keras.utils.set_random_seed(seed)
    body = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu", name="dense_a"),
        keras.layers.Dense(128, activation="relu", name="dense_b"),
    ], name="body")
    model = keras.Sequential([body, keras.layers.Dense(5, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(*old, epochs=epochs, batch_size=64, verbose=0)
    return body.get_weights()


def finetune(weights, train, test, seed, epochs, mode, rank=None, alpha=None):
    keras.utils.set_random_seed(seed + 1)
    body = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu", name="dense_a"),
        keras.layers.Dense(128, activation="relu", name="dense_b"),
    ], name="body")
    body.set_weights(weights)
    model = keras.Sequential([body, keras.layers.Dense(5, activation="softmax", name="head")])
    if mode == "head":
        body.trainable = False
    elif mode == "lora":
        lora.enable(model, rank=rank, alpha=alpha, keep_trainable="head", verbose=False)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(*train, epochs=epochs, batch_size=32, verbose=0)
    return trainable, model.evaluate(*test, verbose=0)[1]


def main():
    args = _parse()
    seeds = args.seeds or (1 if args.quick else 3)
    epochs = args.epochs or (2 if args.quick else 30)
    configs = [("head only", "head", None, None)]
    ranks = (1, 4) if args.quick else (1, 4, 16)
    for rank in ranks:
        for alpha in (rank, 4 * rank):
            configs.append((f"LoRA rank {rank}, alpha {alpha}", "lora", rank, alpha))
    configs.append(("full fine-tuning", "full", None, None))
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, "
          f"{platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d')}; "
          f"{seeds} seeds, {epochs} epochs")
    results = {name: [] for name, *_ in configs}
    counts = {}
    for seed in range(seeds):
        old, train, test = data(seed)
        weights = pretrain(old, seed, epochs)
        for name, mode, rank, alpha in configs:
            count, accuracy = finetune(weights, train, test, seed, epochs, mode, rank, alpha)
            counts[name] = count
            results[name].append(accuracy)
    print("\n| fine-tuning | trainable parameters | test accuracy (mean ± sd) |")
    print("|---|---|---|")
    for name, *_ in configs:
        acc = np.array(results[name])
        print(f"| {name} | {counts[name]:,} | {acc.mean():.4f} ± {acc.std():.4f} |")


if __name__ == "__main__":
    main()
