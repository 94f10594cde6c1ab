"""Averaged predictions: weight snapshots of one model, augmented views of the input."""

import numbers

import keras
import numpy as np

ACTIVATIONS = (None, "softmax", "sigmoid")
REDUCTIONS = ("mean", "median")


def _check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"Argument `activation` must be one of {list(ACTIVATIONS)}. "
            f"Received: activation={activation!r}"
        )
    return activation


def _check_positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"Argument `{name}` must be a positive integer. Received: {name}={value!r}"
        )
    return int(value)


def _activate(outputs, activation):
    """Softmax (last axis) or sigmoid on host arrays, in float64."""
    outputs = np.asarray(outputs, dtype="float64")
    if activation == "softmax":
        shifted = outputs - outputs.max(axis=-1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=-1, keepdims=True)
    if activation == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * outputs))
    return outputs


def _check_snapshots(model, snapshots):
    snapshots = list(snapshots)
    if not snapshots:
        raise ValueError(
            "Argument `snapshots` must hold at least one list of weights. "
            "Received: snapshots=[]"
        )
    expected = [tuple(w.shape) for w in model.weights]
    for i, weights in enumerate(snapshots):
        shapes = [tuple(np.shape(w)) for w in weights]
        if shapes != expected:
            raise ValueError(
                f"Argument `snapshots[{i}]` does not match the model's weights "
                f"(as `model.get_weights()` returns them). Expected shapes "
                f"{expected}. Received: shapes={shapes}"
            )
    return snapshots


def ensemble_predict(
    model, snapshots, x, batch_size=32, activation=None, verbose=0, **kwargs
):
    """Average the predictions of several weight snapshots of one model.

    For each snapshot (a list of arrays as `model.get_weights()` returns
    them) the weights are loaded into `model`, `model.predict(x)` runs, and
    the outputs are averaged on the host. One snapshot is on the device at a
    time, so an ensemble of `M` snapshots costs the memory of one model (and
    `M` predictions). The model's own weights are put back afterwards.

    Pass `activation="softmax"` (or `"sigmoid"`) when the model outputs
    logits: each snapshot's logits are turned into probabilities before
    averaging, as in the snapshot-ensemble paper (Huang et al. 2017, which
    averages the softmax outputs). With `activation=None` the outputs are
    averaged as they are: probabilities for a model that ends in a softmax,
    logits for one that outputs logits.

    Args:
        model: A built Keras model whose weights the snapshots hold.
        snapshots: A sequence of weight lists (for example
            `keras_tricks.callbacks.SnapshotEnsemble(...).snapshots`).
        x: The inputs, anything `model.predict` accepts (a re-iterable
            dataset, not a one-shot generator: it is read once per snapshot).
        batch_size: int. Defaults to `32`.
        activation: `None`, `"softmax"` or `"sigmoid"`, applied to each
            snapshot's outputs before averaging. Defaults to `None`.
        verbose: Passed to `model.predict`. Defaults to `0`.
        **kwargs: Other `model.predict` arguments (`steps`, `callbacks`).

    Returns:
        The averaged outputs, NumPy float32 (the same structure as the
        model's outputs).

    Example:

    ```python
    import numpy as np
    import keras
    from keras_tricks.ensembles import ensemble_predict

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    snapshots = []
    for seed in range(3):
        keras.utils.set_random_seed(seed)
        snapshots.append([np.random.normal(size=w.shape).astype("float32")
                          for w in model.get_weights()])
    x = np.random.rand(10, 4).astype("float32")
    probs = ensemble_predict(model, snapshots, x, activation="softmax")
    probs.shape  # (10, 3), rows sum to 1
    ```
    """
    snapshots = _check_snapshots(model, snapshots)
    activation = _check_activation(activation)
    batch_size = _check_positive_int("batch_size", batch_size, allow_none=True)
    original = model.get_weights()
    total = None
    try:
        for weights in snapshots:
            model.set_weights(weights)
            outputs = model.predict(x, batch_size=batch_size, verbose=verbose, **kwargs)
            outputs = keras.tree.map_structure(
                lambda o: _activate(o, activation), outputs
            )
            if total is None:
                total = outputs
            else:
                total = keras.tree.map_structure(np.add, total, outputs)
    finally:
        model.set_weights(original)
    count = float(len(snapshots))
    return keras.tree.map_structure(
        lambda t: (t / count).astype("float32"), total
    )


def ensemble_model(model, snapshots, activation=None, name=None):
    """One Keras model that averages the outputs of several weight snapshots.

    Each snapshot becomes a copy of `model` (`keras.models.clone_model`) with
    those weights; the new model feeds its inputs to every copy and averages
    their outputs (after `activation`, as in `ensemble_predict`). It is a
    plain functional Keras model: it predicts in one call, saves to `.keras`
    and loads without keras_tricks. It holds all the snapshots on the device
    at once; `ensemble_predict` holds one at a time.

    Args:
        model: A Keras model with known inputs (functional or Sequential; a
            subclassed model needs `get_config`/`from_config`).
        snapshots: A sequence of weight lists.
        activation: `None`, `"softmax"` or `"sigmoid"`, applied to each
            member's outputs before averaging. Defaults to `None`.
        name: The new model's name. Defaults to `"<model name>_ensemble"`.

    Returns:
        A `keras.Model`.

    Example:

    ```python
    import numpy as np
    import keras
    from keras_tricks.ensembles import ensemble_model

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    snapshots = [model.get_weights(), [w * 2 for w in model.get_weights()]]
    averaged = ensemble_model(model, snapshots)
    averaged.save("/tmp/ensemble.keras")
    ```
    """
    snapshots = _check_snapshots(model, snapshots)
    activation = _check_activation(activation)
    try:
        model_inputs = model.inputs
    except (AttributeError, ValueError):
        model_inputs = None
    if not model_inputs:
        raise ValueError(
            "ensemble_model needs a model with known inputs (functional, or a "
            "Sequential built with `keras.Input`). Received: a model without "
            "`inputs`"
        )
    inputs = [
        keras.Input(batch_shape=t.shape, dtype=t.dtype) for t in model_inputs
    ]
    call_inputs = inputs[0] if len(inputs) == 1 else inputs
    outputs = []
    for i, weights in enumerate(snapshots):
        member = keras.models.clone_model(model)
        member.set_weights(weights)
        member.name = f"{model.name}_snapshot_{i}"
        out = member(call_inputs)
        if activation is not None:
            out = keras.tree.map_structure(
                lambda o: keras.layers.Activation(activation)(o), out
            )
        outputs.append(out)
    if len(outputs) == 1:
        averaged = outputs[0]
    else:
        averaged = keras.tree.map_structure(
            lambda *members: keras.layers.Average()(list(members)), *outputs
        )
    return keras.Model(inputs, averaged, name=name or f"{model.name}_ensemble")


def _accepts_training(fn):
    if isinstance(fn, keras.layers.Layer):
        return True
    import inspect

    try:
        return "training" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def tta_predict(
    model,
    x,
    augment,
    n=8,
    reduce="mean",
    include_original=True,
    batch_size=32,
    activation=None,
):
    """Test-time augmentation: average predictions over random views of `x`.

    Each batch of `x` is augmented `n` times with `augment` (a Keras
    preprocessing layer, a `keras.Sequential` of them, or any callable that
    maps a batch to a batch, called with `training=True` when it takes that
    argument, so that Keras's random layers are active). The views, plus the
    un-augmented batch when `include_original=True`, go through the model in
    one batch of `(n + 1) * batch_size` rows, and their predictions are
    reduced on the host. Works on every backend; the augmentation runs with
    the backend's ops.

    Args:
        model: A Keras model.
        x: Array (NumPy or a backend tensor) of inputs.
        augment: Callable `batch -> batch` (Keras layers included).
        n: int. Number of augmented views per sample. Defaults to `8`.
        reduce: `"mean"` or `"median"` over the views. Defaults to `"mean"`.
        include_original: bool. Add the un-augmented input as one more view.
            Defaults to `True`.
        batch_size: int. Samples of `x` per step (the model sees
            `(n + 1) * batch_size` rows at once). Defaults to `32`.
        activation: `None`, `"softmax"` or `"sigmoid"`, applied to the
            predictions of each view before reducing (for a model that
            outputs logits). Defaults to `None`.

    Returns:
        NumPy float32 array: the reduced predictions, one row per sample.

    Example:

    ```python
    import numpy as np
    import keras
    from keras_tricks.ensembles import tta_predict

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    shift = keras.layers.RandomTranslation(0.1, 0.1, seed=1)
    x = np.random.rand(16, 8, 8, 1).astype("float32")
    probs = tta_predict(model, x, shift, n=4)  # (16, 10)
    ```
    """
    if not callable(augment):
        raise TypeError(
            "Argument `augment` must be a callable (a Keras layer or a "
            f"function batch -> batch). Received: augment={augment!r}"
        )
    n = _check_positive_int("n", n)
    batch_size = _check_positive_int("batch_size", batch_size)
    if reduce not in REDUCTIONS:
        raise ValueError(
            f"Argument `reduce` must be one of {list(REDUCTIONS)}. "
            f"Received: reduce={reduce!r}"
        )
    if not isinstance(include_original, (bool, np.bool_)):
        raise TypeError(
            "Argument `include_original` must be a bool. "
            f"Received: include_original={include_original!r}"
        )
    activation = _check_activation(activation)
    if not hasattr(x, "shape"):
        raise TypeError(
            "Argument `x` must be an array (NumPy or a backend tensor). "
            f"Received: x={type(x).__name__}"
        )
    call_kwargs = {"training": True} if _accepts_training(augment) else {}
    x_host = keras.ops.convert_to_numpy(x)
    results = []
    for start in range(0, x_host.shape[0], batch_size):
        chunk = x_host[start : start + batch_size]
        size = chunk.shape[0]
        if size < batch_size and x_host.shape[0] > batch_size:
            # Pad the last batch: one input shape, one compiled predict step.
            padding = np.zeros((batch_size - size,) + chunk.shape[1:], chunk.dtype)
            chunk = np.concatenate([chunk, padding], axis=0)
        batch = keras.ops.convert_to_tensor(chunk)
        views = [augment(batch, **call_kwargs) for _ in range(n)]
        if include_original:
            views.insert(0, batch)
        stacked = keras.ops.concatenate(
            [keras.ops.cast(v, batch.dtype) for v in views], axis=0
        )
        predictions = np.asarray(model.predict_on_batch(stacked))
        predictions = _activate(predictions, activation)
        predictions = predictions.reshape(
            (len(views), -1) + predictions.shape[1:]
        )
        predictions = predictions[:, :size]
        if reduce == "mean":
            results.append(predictions.mean(axis=0))
        else:
            results.append(np.median(predictions, axis=0))
    return np.concatenate(results, axis=0).astype("float32")
