"""
Title: Diagnose before you tune
Description: Run the pre-flight checklist, let TrainingDiagnosis name what is
wrong with a run (here an LR far too low, then a model too small), fix it with
the trick it names, look at the Hessian, and compare models by cross-validation.
"""

# backends: tensorflow, jax, torch

# ## Setup
#
# The 1,797 8x8 digits of scikit-learn. Set `KERAS_TRICKS_FAST=1` for a smoke
# run (fewer epochs and folds).

import os

import keras
import numpy as np
from sklearn.datasets import load_digits

import keras_tricks
from keras_tricks.callbacks import TrainingDiagnosis
from keras_tricks.diagnosis import checklist, critical_point, plot_history

FAST = os.environ.get("KERAS_TRICKS_FAST") == "1"
keras.utils.set_random_seed(0)

x, y = load_digits(return_X_y=True)
idx = np.random.default_rng(0).permutation(len(x))
x, y = x[idx].astype("float32"), y[idx].astype("int32")
x_train, y_train, x_val, y_val = x[:1400], y[:1400], x[1400:], y[1400:]


def mlp(units, learning_rate):
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(units, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


"""
## 1. The checklist, before any training

It warns about the raw pixels (0 to 16, not standardized), the starting loss
far above the prior's entropy that they cause, and the untuned default LR.
"""

report = checklist(mlp(32, 1e-3), x_train, y_train)
x_train, x_val = x_train / 16.0, x_val / 16.0
print("after scaling:", [i.name for i in checklist(mlp(32, 1e-3), x_train, y_train, verbose=0).warnings])

"""
## 2. A run with an LR 1e4x too low

`TrainingDiagnosis` watches the epoch logs and probes one fixed batch every
few epochs (gradient norm, update size, non-finite values). At the end it
prints its verdict, the evidence and the fix.
"""

diagnosis = TrainingDiagnosis(probe_data=(x_train, y_train), probe_every=2)
mlp(32, 1e-7).fit(x_train, y_train, validation_data=(x_val, y_val), epochs=3,
                  batch_size=64, callbacks=[diagnosis], verbose=0)
assert diagnosis.report.verdict == "lr_too_low"

"""
## 3. The fix it names: an LR range test. Then a model too small

With the LR from `find_lr`, a 2-unit model trains, but (over the full 20
epochs) its loss settles far above zero with no gap to the validation loss:
model bias. The Hessian check, run because the loss converged high, tells it
from a saddle. In fast mode the run is too short and the verdict is "not
converged yet".
"""

model = mlp(2, 1e-3)
lr = keras_tricks.find_lr(model, x_train, y_train, batch_size=64).suggestion()
model.optimizer.learning_rate = lr
diagnosis = TrainingDiagnosis(probe_data=(x_train, y_train), probe_every=2)
history = model.fit(x_train, y_train, validation_data=(x_val, y_val),
                    epochs=6 if FAST else 20, batch_size=64,
                    callbacks=[diagnosis], verbose=0)
print(f"find_lr suggested {lr:.3g}; verdict: {diagnosis.report.title}")
left, _ = plot_history(history, diagnosis.report)
left.figure.savefig("diagnosis_model_bias.png", dpi=80)

"""
## 4. The Hessian by hand

`critical_point` computes the extreme Hessian eigenvalues on a batch by
Lanczos on Hessian-vector products, and says which kind of point the weights
are (here with a loose `grad_tol`: the run has not reached a critical point).
"""

point = critical_point(model, x_train[:256], y_train[:256], grad_tol=1.0)
print(point)

"""
## 5. Choose between models by cross-validation

A bigger model fixes the bias. `cross_validate` trains a fresh model per
stratified fold and reports the mean and spread of the scores.
"""

for units in (2, 32):
    result = keras_tricks.cross_validate(
        lambda units=units: mlp(units, 3e-3),
        x_train,
        y_train,
        cv=2 if FAST else 5,
        fit_kwargs={"epochs": 3 if FAST else 15, "batch_size": 64},
        seed=0,
        verbose=0,
    )
    print(f"{units:>2} units: val accuracy {result.mean['accuracy']:.3f} "
          f"± {result.std['accuracy']:.3f}")
