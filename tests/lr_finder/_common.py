"""Helpers shared by the LR finder tests."""

import keras
import numpy as np
from keras import ops

from keras_tricks.lr_finder import (
    LRFinderResult,
)

BACKEND = keras.backend.backend()


def _data(n=96, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (x @ rng.normal(size=(d, 1))).astype("float32") + 0.1
    return x, y


def _model(optimizer=None, **compile_kwargs):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer or keras.optimizers.Adam(1e-2), "mse", **compile_kwargs)
    return model


def _state(model):
    return (
        [np.array(ops.convert_to_numpy(v.value), copy=True) for v in model.variables],
        [
            np.array(ops.convert_to_numpy(v.value), copy=True)
            for v in model.optimizer.variables
            # The control variables that `_control` adds (not saved).
            if not getattr(v, "_kt_control", False)
        ],
    )


def _assert_same_state(before, after):
    for group_before, group_after in zip(before, after, strict=True):
        assert len(group_before) == len(group_after)
        for a, b in zip(group_before, group_after, strict=True):
            np.testing.assert_array_equal(a, b)


def _synthetic(losses, lrs=None):
    losses = np.asarray(losses, dtype="float64")
    lrs = np.geomspace(1e-6, 1.0, len(losses)) if lrs is None else lrs
    return LRFinderResult(lrs, losses, smoothed_losses=losses)
