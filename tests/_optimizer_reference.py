"""Helpers for the optimizer tests: feed chosen gradients through `model.fit`.

A probe model computes `sum(x * w)` for one sample per batch, with the loss
equal to that output, so the gradient of `w` at step `t` is exactly the input
`x_t`. The same gradients are then given to a reference optimizer (PyTorch's
or `pytorch_optimizer`'s) and the two weight trajectories are compared step by
step, through the real compiled train step of each Keras backend.
"""

import keras
import numpy as np
from keras import ops

SHAPE = (4, 3)


def gradients(steps, seed=0, shape=SHAPE, decay=True):
    """`steps` gradients: random, shrinking, and with sign flips."""
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(steps,) + shape)
    if decay:
        g *= np.linspace(1.0, 0.2, steps).reshape((-1,) + (1,) * len(shape))
    return g.astype("float32")


def initial_weights(seed=1, shape=SHAPE):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@keras.saving.register_keras_serializable(package="keras_tricks_tests")
class Probe(keras.layers.Layer):
    """`sum(x * w)` per sample: its gradient with respect to `w` is `x`."""

    def __init__(self, shape=SHAPE, **kwargs):
        super().__init__(**kwargs)
        self.shape = tuple(shape)

    def build(self, input_shape):
        self.w = self.add_weight(shape=self.shape, initializer="zeros", name="w")

    def call(self, x):
        axes = tuple(range(1, len(self.shape) + 1))
        return ops.expand_dims(ops.sum(ops.multiply(x, self.w), axis=axes), -1)

    def get_config(self):
        return {**super().get_config(), "shape": list(self.shape)}


@keras.saving.register_keras_serializable(package="keras_tricks_tests")
def output_as_loss(y_true, y_pred):
    return ops.mean(y_pred)


def probe_model(optimizer, w0=None, shape=SHAPE, **compile_kwargs):
    inputs = keras.Input(shape)
    model = keras.Model(inputs, Probe(shape)(inputs))
    model.compile(optimizer=optimizer, loss=output_as_loss, **compile_kwargs)
    model.set_weights([initial_weights(shape=shape) if w0 is None else w0])
    return model


class _Trajectory(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append(np.array(self.model.get_weights()[0]))


def fit_probe(model, grads, callbacks=(), epochs=1):
    """Train on one gradient per batch; the weights after every batch."""
    trajectory = _Trajectory()
    model.fit(
        grads,
        np.zeros((len(grads), 1), "float32"),
        batch_size=1,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[*callbacks, trajectory],
    )
    return np.stack(trajectory.weights)


def apply_eagerly(optimizer, grads, w0=None):
    """`optimizer.apply` step by step on one variable, outside any trace."""
    variable = keras.Variable(
        initial_weights(shape=grads.shape[1:]) if w0 is None else w0
    )
    out = []
    for g in grads:
        optimizer.apply([ops.convert_to_tensor(g)], [variable])
        out.append(np.array(ops.convert_to_numpy(variable)))
    return np.stack(out)


def torch_trajectory(make_optimizer, grads, w0=None, lrs=None, beta_1s=None):
    """The same gradients through a PyTorch optimizer (float32 parameters).

    `lrs` / `beta_1s`: per-step values written into the parameter group
    before each step (a schedule, or cycled momentum).
    """
    import torch

    w0 = initial_weights(shape=grads.shape[1:]) if w0 is None else w0
    param = torch.nn.Parameter(torch.tensor(np.array(w0)))
    optimizer = make_optimizer([param])
    out = []
    for t, g in enumerate(grads):
        param.grad = torch.tensor(np.array(g))
        for group in optimizer.param_groups:
            if lrs is not None:
                group["lr"] = float(lrs[t])
            if beta_1s is not None:
                group["betas"] = (float(beta_1s[t]), group["betas"][1])
        optimizer.step()
        out.append(param.detach().numpy().copy())
    return np.stack(out)


def centralized(grads):
    """NumPy gradient centralization for `(steps, in, out)` gradients."""
    return grads - grads.mean(axis=1, keepdims=True)


def window_means(grads, k):
    return grads.reshape((len(grads) // k, k) + grads.shape[1:]).mean(axis=1)


def optimizer_bytes(optimizer):
    """Bytes held by `optimizer.variables`."""
    total = 0
    for v in optimizer.variables:
        size = int(np.prod(v.shape)) if len(v.shape) else 1
        total += size * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
    return total
