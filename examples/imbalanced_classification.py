"""
Title: Imbalanced classification: class weights, oversampling and bias init
Description: Three ways to keep a rare class from being ignored, compared on a
1:20 breast-cancer problem with a precision-recall curve.
"""

# backends: tensorflow, jax, torch

# ## Introduction
#
# When one class is rare, a network trained with plain cross-entropy first spends
# its steps learning "always say negative", and the rare class gets little of the
# gradient afterwards. `keras_tricks.imbalance` gives the three classic fixes, each
# one line:
#
# 1. **Balanced class weights** (`class_weights(y)` -> `fit(class_weight=...)`):
#    every class carries the same total weight in the loss.
# 2. **Oversampling** (`OversampledDataset`): every epoch sees all original samples
#    plus rare-class samples drawn with replacement up to the majority count. Only
#    indices are resampled; `x` is never copied.
# 3. **Output-bias initialization** (`keras_tricks.layers.OutputHead(prior=y)`):
#    the untrained model already predicts the class prior, so the first loss is
#    the prior's entropy instead of `log 2`.
#
# The bias must match the distribution the loss sees: with balanced weights or
# oversampling that distribution is uniform (bias 0), so the prior bias only goes
# with plain training. We compare the three on the breast-cancer data set with
# malignant tumours subsampled to 1 in 20.
#
# ## Setup

import os
import tempfile

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import average_precision_score, precision_recall_curve
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import keras_tricks
from keras_tricks import imbalance

FAST = os.environ.get("KERAS_TRICKS_FAST") == "1"
EPOCHS = 3 if FAST else 40
PLOT_DIR = os.environ.get(
    "KERAS_TRICKS_PLOT_DIR", tempfile.gettempdir() if FAST else "."
)
keras.utils.set_random_seed(0)

# ## Data: malignant tumours at 1:20
#
# Label 1 is "malignant". We keep every benign sample and one malignant sample for
# every 20 benign ones, then split off a stratified test set.

data = load_breast_cancer()
x_all = data.data.astype("float32")
y_all = (1 - data.target).astype("int32")
rng = np.random.default_rng(0)
neg = np.flatnonzero(y_all == 0)
pos = rng.choice(np.flatnonzero(y_all == 1), size=len(neg) // 20, replace=False)
keep = np.concatenate([neg, pos])
x_train, x_test, y_train, y_test = train_test_split(
    x_all[keep], y_all[keep], test_size=0.4, stratify=y_all[keep], random_state=0
)
scaler = StandardScaler().fit(x_train)
x_train = scaler.transform(x_train).astype("float32")
x_test = scaler.transform(x_test).astype("float32")
print("train class counts:", np.bincount(y_train), "test:", np.bincount(y_test))

# ## The model
#
# A small MLP whose output layer is an `OutputHead`: a `Dense` layer that computes
# in float32 (safe under mixed precision) and, given `prior=`, starts its bias at
# the label prior.


def make_model(prior=None):
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((x_train.shape[1],)),
            keras.layers.Dense(16, activation="relu"),
            keras_tricks.layers.OutputHead(1, "sigmoid", prior=prior),
        ]
    )
    model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
    return model


# ## 1. Plain training, zero bias and prior bias
#
# With the prior bias the initial loss drops from `log 2` or more (random
# kernels add to it) to near the entropy of a 1:20 prior (about 0.19).

results = {}
for name, prior in (("plain", None), ("plain + prior bias", y_train)):
    model = make_model(prior)
    print(name, "initial loss:", round(model.evaluate(x_train, y_train, verbose=0), 3))
    model.fit(x_train, y_train, batch_size=32, epochs=EPOCHS, verbose=0)
    results[name] = model.predict(x_test, verbose=0)[:, 0]

# ## 2. Balanced class weights
#
# `class_weights(y)` is sklearn's "balanced" weighting, keyed as `fit` wants. The
# weighted prior is uniform, so the right output bias is zero: no `prior=` here.
# (Pass `sample_weight=imbalance.sample_weights(y)` to `OutputHead` to see that
# `output_bias` then returns 0.)

weights = imbalance.class_weights(y_train)
print("class weights:", weights)
print(
    "bias under the weights:",
    np.round(
        imbalance.output_bias(
            y_train, "sigmoid", sample_weight=imbalance.sample_weights(y_train)
        ),
        6,
    )
    + 0.0,
)
model = make_model()
model.fit(
    x_train, y_train, batch_size=32, epochs=EPOCHS, class_weight=weights, verbose=0
)
results["class weights"] = model.predict(x_test, verbose=0)[:, 0]

# ## 3. Oversampling by index
#
# `OversampledDataset` is a `keras.utils.PyDataset`: it gathers each batch from the
# original arrays and draws new rare-class duplicates every epoch. It is also the
# way to balance classes where Keras rejects `class_weight` (multi-output models,
# generators).

dataset = imbalance.OversampledDataset(x_train, y_train, batch_size=32, seed=0)
print("samples per epoch:", dataset.num_samples, "batches:", len(dataset))
model = make_model()
model.fit(dataset, epochs=EPOCHS, verbose=0)
results["oversampling"] = model.predict(x_test, verbose=0)[:, 0]

# ## Precision-recall curves
#
# PR curves (not ROC) show what matters with a rare class: how many of the flagged
# cases are real at each recall.

fig, ax = plt.subplots(figsize=(6, 4.5))
for name, scores in results.items():
    precision, recall, _ = precision_recall_curve(y_test, scores)
    ap = average_precision_score(y_test, scores)
    ax.step(recall, precision, where="post", label=f"{name} (AP {ap:.2f})")
    print(f"{name:>20}: PR-AUC {ap:.3f}")
ax.axhline(y_test.mean(), color="gray", ls=":", label="chance")
ax.set_xlabel("recall")
ax.set_ylabel("precision")
ax.set_title("Breast cancer, malignant at 1:20")
ax.legend(loc="lower left")
fig.tight_layout()
path = os.path.join(PLOT_DIR, "imbalance_pr_curves.png")
fig.savefig(path, dpi=110)
print("saved", path)

# ## Conclusion
#
# With only a handful of positives in the test set one run is noisy; the
# benchmark (`benchmarks/imbalance.py`, 5 seeds) gives the averages. The lessons
# that hold: the prior bias removes the wasted first steps of plain training;
# weights and oversampling change the decision threshold and help recall at a
# given precision; oversampling does it without copying the data, and needs no
# `class_weight` support from the data pipeline.
