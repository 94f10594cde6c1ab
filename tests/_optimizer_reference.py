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


def nearest_codes(x, codes):
    """Index of the nearest code (float64 distances, ties to the lower)."""
    d = np.abs(x[..., None].astype("float64") - codes.astype("float64"))
    return np.argmin(d, axis=-1)


def adamw_8bit_step(
    w,
    g,
    state,
    step,
    lr=1e-3,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-8,
    weight_decay=0.01,
    block_size=256,
):
    """One update of bitsandbytes's block-wise 8-bit AdamW, in NumPy float32.

    `state` is `(m_codes, m_absmax, v_codes, v_absmax)` (codes of shape
    `(blocks, block_size)`), or `(m, v)` in float32 for a small tensor. The
    order of operations of bitsandbytes (its CPU kernel and the CUDA ones):
    dequantize, update the moments in float32, decay and update the weights
    with the un-quantized moments, quantize with the new absmax, rounding to
    the nearest code. Returns the new weights and state.
    """
    from keras_tricks.optimizers.adamw_8bit import dynamic_map

    f32 = np.float32
    lr, b1, b2 = f32(lr), f32(beta_1), f32(beta_2)
    signed, unsigned = dynamic_map(True), dynamic_map(False)
    w = w.astype(f32)
    if weight_decay:
        w = w - w * f32(weight_decay) * lr
    g = g.astype(f32)
    if len(state) == 4:
        mq, ma, vq, va = state
        n_blocks = len(ma)
        gb = np.zeros(n_blocks * block_size, f32)
        gb[: g.size] = g.reshape(-1)
        g = gb.reshape(n_blocks, block_size)
        m = signed[np.asarray(mq, int)] * ma[:, None]
        v = unsigned[np.asarray(vq, int)] * va[:, None]
    else:
        m, v = state
    # 1 - beta from the Python float, as Keras and bitsandbytes do.
    m = m * b1 + g * f32(1 - float(beta_1))
    v = v * b2 + g * g * f32(1 - float(beta_2))
    bc1 = f32(1 - float(b1) ** step)
    bc2 = f32(np.sqrt(1 - float(b2) ** step))
    update = (m / (np.sqrt(v) / bc2 + f32(epsilon))) * (lr / bc1)
    if len(state) == 4:
        update = update.reshape(-1)[: w.size].reshape(w.shape)
        ma = np.abs(m).max(axis=1)
        va = np.abs(v).max(axis=1)
        mq = nearest_codes(m / np.where(ma > 0, ma, 1)[:, None], signed)
        vq = nearest_codes(v / np.where(va > 0, va, 1)[:, None], unsigned)
        state = (mq, ma, vq, va)
    else:
        state = (m, v)
    return (w - update).astype(f32), state


def adamw_8bit_reference(
    grads,
    w0=None,
    lr=1e-3,
    lrs=None,
    beta_1=0.9,
    beta_1s=None,
    min_8bit_size=4096,
    block_size=256,
    **kwargs,
):
    """A whole trajectory of `adamw_8bit_step` (per-step `lrs`/`beta_1s`)."""
    w = initial_weights(shape=grads.shape[1:]) if w0 is None else w0
    if w.size >= max(min_8bit_size, 1):
        n_blocks = -(-w.size // block_size)
        zeros = np.zeros((n_blocks, block_size), int)
        state = (
            zeros,
            np.zeros(n_blocks, "float32"),
            zeros,
            np.zeros(n_blocks, "float32"),
        )
    else:
        state = (np.zeros_like(w), np.zeros_like(w))
    out = []
    for t, g in enumerate(grads):
        w, state = adamw_8bit_step(
            w,
            g,
            state,
            t + 1,
            lr=lr if lrs is None else lrs[t],
            beta_1=beta_1 if beta_1s is None else beta_1s[t],
            block_size=block_size,
            **kwargs,
        )
        out.append(w)
    return np.stack(out)
