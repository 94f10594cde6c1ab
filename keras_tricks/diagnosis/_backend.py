"""Per-backend autodiff for the diagnosis tools: gradients and Hessian-vector products.

This is the one module of keras_tricks that imports a backend framework
(decision 1's only exception): a Hessian-vector product needs second-order
autodiff, which `keras.ops` does not offer. Nothing here runs inside a train
step; the functions are called from Python between epochs or by hand.

- JAX: `jax.jvp` of `jax.grad` (forward-over-reverse), the loss made a pure
  function of the trainable values with `keras.StatelessScope`, jitted once.
- TensorFlow: two nested `tf.GradientTape`s (reverse-over-reverse).
- PyTorch: double backward (`torch.autograd.grad` with `create_graph=True`).

Every function takes and returns NumPy arrays, one per trainable variable.
"""

import keras
import numpy as np


def _loss(model, x, y, sample_weight):
    # Dropout and the like are off: the Hessian of a deterministic loss.
    y_pred = model(x, training=False)
    return model.compute_loss(
        x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
    )


def _as_numpy(values):
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in values]


class _Jax:
    def __init__(self, model, x, y, sample_weight):
        import jax

        variables = list(model.trainable_variables)

        def loss_fn(values):
            mapping = list(zip(variables, values))
            with keras.StatelessScope(state_mapping=mapping):
                return _loss(model, x, y, sample_weight)

        self._values = lambda: [v.value for v in variables]
        self._value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
        grad_fn = jax.grad(loss_fn)
        self._hvp = jax.jit(lambda values, v: jax.jvp(grad_fn, (values,), (v,))[1])
        self._dtypes = [v.dtype for v in variables]

    def value_and_grad(self):
        loss, grads = self._value_and_grad(self._values())
        return float(loss), _as_numpy(grads)

    def hvp(self, vectors):
        v = [keras.ops.convert_to_tensor(a, dtype=d) for a, d in zip(vectors, self._dtypes)]
        return _as_numpy(self._hvp(self._values(), v))


class _TensorFlow:
    def __init__(self, model, x, y, sample_weight):
        import tensorflow as tf

        variables = [v.value for v in model.trainable_variables]

        def value_and_grad():
            with tf.GradientTape() as tape:
                loss = _loss(model, x, y, sample_weight)
            grads = tape.gradient(loss, variables)
            return loss, [tf.zeros_like(w) if g is None else g for g, w in zip(grads, variables)]

        def hvp(vectors):
            with tf.GradientTape() as outer:
                with tf.GradientTape() as inner:
                    loss = _loss(model, x, y, sample_weight)
                grads = inner.gradient(loss, variables)
                dot = tf.add_n(
                    [tf.reduce_sum(g * v) for g, v in zip(grads, vectors) if g is not None]
                )
            hv = outer.gradient(dot, variables)
            return [tf.zeros_like(w) if h is None else h for h, w in zip(hv, variables)]

        self._value_and_grad = tf.function(value_and_grad)
        self._hvp = tf.function(hvp)
        self._dtypes = [w.dtype for w in variables]

    def value_and_grad(self):
        loss, grads = self._value_and_grad()
        return float(loss), _as_numpy(grads)

    def hvp(self, vectors):
        import tensorflow as tf

        v = [tf.constant(a, dtype=d) for a, d in zip(vectors, self._dtypes)]
        return _as_numpy(self._hvp(v))


class _Torch:
    def __init__(self, model, x, y, sample_weight):
        self._model, self._x, self._y, self._sw = model, x, y, sample_weight
        self._params = [v.value for v in model.trainable_variables]

    def _grads(self, create_graph):
        import torch

        loss = _loss(self._model, self._x, self._y, self._sw)
        grads = torch.autograd.grad(
            loss, self._params, create_graph=create_graph, allow_unused=True
        )
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, self._params)]
        return loss, grads

    def value_and_grad(self):
        import torch

        with torch.enable_grad():
            loss, grads = self._grads(create_graph=False)
        return float(loss.detach()), [g.detach().cpu().numpy() for g in grads]

    def hvp(self, vectors):
        import torch

        with torch.enable_grad():
            _, grads = self._grads(create_graph=True)
            v = [
                torch.as_tensor(a, dtype=p.dtype, device=p.device)
                for a, p in zip(vectors, self._params)
            ]
            used = [i for i, g in enumerate(grads) if g.requires_grad]
            hv = [torch.zeros_like(p) for p in self._params]
            if used:
                out = torch.autograd.grad(
                    [grads[i] for i in used],
                    [self._params[i] for i in used],
                    grad_outputs=[v[i] for i in used],
                    allow_unused=True,
                )
                for i, h in zip(used, out):
                    if h is not None:
                        hv[i] = h
        return [h.detach().cpu().numpy() for h in hv]


def loss_derivatives(model, x, y, sample_weight=None):
    """An object with `value_and_grad()` and `hvp(vectors)` for `model`'s loss.

    The loss is the compiled loss (plus the model's regularization losses) on
    the fixed batch `(x, y)`, with `training=False`, as a function of
    `model.trainable_variables` at the time of each call.
    """
    if not model.trainable_variables:
        raise ValueError("The model has no trainable variables: nothing to differentiate.")
    backend = keras.backend.backend()
    x = keras.tree.map_structure(keras.ops.convert_to_tensor, x)
    y = keras.tree.map_structure(keras.ops.convert_to_tensor, y)
    if sample_weight is not None:
        sample_weight = keras.ops.convert_to_tensor(sample_weight)
    if backend == "jax":
        return _Jax(model, x, y, sample_weight)
    if backend == "tensorflow":
        return _TensorFlow(model, x, y, sample_weight)
    if backend == "torch":
        return _Torch(model, x, y, sample_weight)
    raise NotImplementedError(
        f"Hessian-vector products are implemented for the jax, tensorflow and "
        f"torch backends. Received: backend={backend!r}"
    )
