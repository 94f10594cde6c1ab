"""Recompute BatchNormalization statistics for averaged weights (SWA's `update_bn`).

The moving statistics of a BatchNormalization layer belong to the weights
they were collected with. Averaged weights (SWA) never ran forward during
training, so their statistics are recomputed with one pass over the data.
"""

import numbers

import keras
import numpy as np
from keras import ops


def batch_norm_layers(model):
    """Every `keras.layers.BatchNormalization` inside `model`, nested ones too."""
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is not None:
        layers = flatten(include_self=False, recursive=True)
    else:  # pragma: no cover - every Keras 3 layer has `_flatten_layers`
        layers = getattr(model, "layers", [])
    return [
        layer
        for layer in layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def _inputs_of(batch):
    """The model input of a batch: `x` of `(x, y)` / `(x, y, w)`, else the batch."""
    if isinstance(batch, tuple):
        return batch[0]
    return batch


def _as_tensor(x):
    return keras.tree.map_structure(
        lambda t: ops.convert_to_tensor(np.asarray(t)), x
    )


def iterate_batches(data, batch_size=32, steps=None):
    """Yield the input part of each batch of `data`, as backend tensors.

    `data` is an array (or a dict / list of arrays for a multi-input model),
    a tuple `(x, y[, sample_weight])` of arrays, a `tf.data.Dataset`, a
    `keras.utils.PyDataset`, or any other iterable of batches (`x` or
    `(x, y, ...)`; a generator, a `torch.utils.data.DataLoader`). A list or
    dict is the inputs of a multi-input model, not a list of batches.
    """
    if isinstance(data, tuple):
        data = data[0]
    if isinstance(data, keras.utils.PyDataset):
        count = len(data)
        batches = (data[i] for i in range(count))
    elif hasattr(data, "shape") or isinstance(data, (dict, list)):
        # Whole arrays (a list or dict: the inputs of a multi-input model).
        batches = _slices(data, batch_size)
    else:
        batches = iter(data)
    for i, batch in enumerate(batches):
        if steps is not None and i >= steps:
            break
        yield _as_tensor(_inputs_of(batch))


def _slices(x, batch_size):
    first = keras.tree.flatten(x)[0]
    n = int(np.shape(first)[0])
    for start in range(0, n, batch_size):
        yield keras.tree.map_structure(
            lambda a, s=start: np.asarray(a)[s : s + batch_size], x
        )


def update_bn(model, data, batch_size=32, steps=None):
    """Recompute the BatchNormalization statistics of `model` with one pass.

    The Keras equivalent of `torch.optim.swa_utils.update_bn`: every
    `BatchNormalization` layer's moving mean and variance are reset and
    replaced by the plain (equal-weight) average of the batch statistics over
    one pass of `model` over `data`, in training mode. Use it after putting
    averaged weights (SWA, an average of snapshots) into a model with
    BatchNormalization: the statistics collected during training belong to
    other weights.

    The batch variance is the biased one, which is what Keras's
    `BatchNormalization` keeps (PyTorch keeps the unbiased one: with batches
    of `b` samples its `running_var` is `b / (b - 1)` times this one). Like
    PyTorch's, the pass runs in training mode, so Dropout is active during
    it; the weights other than the statistics are not changed. It runs
    eagerly, batch by batch, once: it costs about one epoch of inference.

    Args:
        model: A built Keras model.
        data: The training inputs: an array (or dict / list of arrays), a
            tuple `(x, y[, sample_weight])`, a `tf.data.Dataset`, a
            `keras.utils.PyDataset` or any iterable of batches (`x` or
            `(x, y, ...)`).
        batch_size: int. Batch size when `data` holds whole arrays.
            Defaults to `32`.
        steps: int or None. Use at most this many batches (needed for an
            endless dataset). Defaults to `None` (the whole data).

    Returns:
        The number of batches used (0 when the model has no
        BatchNormalization; then nothing runs).

    Example:

    ```python
    import numpy as np
    import keras
    from keras_tricks.ensembles import update_bn

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8),
                              keras.layers.BatchNormalization(),
                              keras.layers.Dense(1)])
    x = np.random.rand(64, 4).astype("float32")
    update_bn(model, x, batch_size=16)  # 4 batches
    ```
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(
            f"Argument `batch_size` must be a positive integer. Received: batch_size={batch_size!r}"
        )
    if steps is not None and (
        isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1
    ):
        raise ValueError(
            f"Argument `steps` must be a positive integer or None. Received: steps={steps!r}"
        )
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.moving_mean.assign(np.zeros(tuple(layer.moving_mean.shape), dtype=layer.moving_mean.dtype))
        layer.moving_variance.assign(np.ones(tuple(layer.moving_variance.shape), dtype=layer.moving_variance.dtype))
    count = 0
    try:
        for x in iterate_batches(data, int(batch_size), steps):
            # `moving = momentum * moving + (1 - momentum) * batch`; with
            # momentum k/(k+1) at batch k that is the running mean of the
            # batch statistics (PyTorch's `momentum=None`). Eager calls read
            # the Python float each time: nothing is traced.
            for layer in layers:
                layer.momentum = count / (count + 1.0)
            model(x, training=True)
            count += 1
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
    if count == 0:
        raise ValueError(
            "update_bn received no batch: argument `data` is empty. "
            f"Received: data={type(data).__name__}"
        )
    return count
