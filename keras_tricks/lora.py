"""LoRA on a whole model: Keras's per-layer `enable_lora`, chosen and counted.

Keras layers (`Dense`, `EinsumDense`, `Embedding`, the convolutions) have
`enable_lora(rank, lora_alpha)`: the kernel is frozen and the layer adds a
trainable low-rank update `(lora_alpha / rank) * A @ B` (`A` random, `B` zero,
so the outputs are unchanged at first). `enable` applies it to the chosen
layers of any model, freezes the rest, and reports the trainable parameters
before and after; `merge` folds the adapters into the kernels.
"""

import fnmatch
import numbers

import keras
import numpy as np
from keras import ops
from keras.src.utils import io_utils  # print_msg: absl logging when not interactive

DEFAULT_TARGETS = ("Dense", "EinsumDense")


def _layers(model):
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten(include_self=False, recursive=True))
    return list(getattr(model, "layers", []))  # pragma: no cover


def _sublayers(layer):
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:  # pragma: no cover
        return []
    return list(flatten(include_self=False, recursive=False))


def _check_patterns(name, value):
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, str) for v in value
    ):
        raise TypeError(
            f"Argument `{name}` must be a string or a sequence of strings "
            f"(layer class names or layer-name patterns). Received: {name}={value!r}"
        )
    return tuple(value)


def _matches(layer, patterns):
    """A pattern is a Keras layer class name (matches subclasses) or a glob
    over the layer's name (`"*attention*"`, `"dense_1"`)."""
    classes = {cls.__name__ for cls in type(layer).__mro__}
    for pattern in patterns:
        if pattern in classes or fnmatch.fnmatchcase(layer.name, pattern):
            return True
    return False


def count_params(weights):
    """Number of scalars in a list of variables."""
    return int(sum(int(np.prod(w.shape)) for w in weights))


def enable(
    model,
    rank=8,
    alpha=None,
    targets=DEFAULT_TARGETS,
    exclude=None,
    keep_trainable=None,
    verbose=True,
):
    """Enable LoRA on the chosen layers of `model` and freeze everything else.

    Applies Keras's own `layer.enable_lora(rank, lora_alpha=alpha)` to every
    layer that matches `targets` and not `exclude`, in any model (functional,
    Sequential, subclassed, keras-hub backbones: nested layers are reached).
    Every other layer is frozen (`trainable=False`), except those matching
    `keep_trainable` (a new classification head, typically), which stay fully
    trainable. In an adapted layer the kernel is frozen by Keras and the bias
    stays trainable (as keras-hub's `Backbone.enable_lora` leaves it).

    **Rank and alpha.** The adapter adds `(alpha / rank) * A @ B` to the
    kernel, with `A` of shape `(in, rank)` and `B` of shape `(rank, out)`.
    A higher `rank` gives the update more capacity (more directions, more
    trainable parameters: `rank * (in + out)` per layer); `alpha / rank`
    scales the update, so with a fixed `alpha` a higher rank does not make
    the update larger. `alpha=None` takes `alpha = rank` (scale 1, Keras's
    default); the common practice is `alpha = rank` or `2 * rank`.

    Call it on a built model before `compile` (or compile again): Keras
    decides the trainable variables at `compile`.

    Args:
        model: A built Keras model.
        rank: int. The adapters' rank. Defaults to `8`.
        alpha: float or None. The adapters' `lora_alpha`; None means `rank`.
            Defaults to `None`.
        targets: Layer class names (`"Dense"`, `"EinsumDense"`,
            `"Embedding"`, `"Conv2D"`; subclasses match) or glob patterns over
            layer names (`"*query*"`). Defaults to `("Dense", "EinsumDense")`.
        exclude: Class names or name patterns never adapted (and frozen
            unless kept trainable). Defaults to `None`.
        keep_trainable: Class names or name patterns of layers left fully
            trainable and not adapted (a new head). Defaults to `None`.
        verbose: bool. Print the parameter counts. Defaults to `True`.

    Returns:
        A dict: `layers` (names of the adapted layers),
        `trainable_before`, `trainable_after`, `total` (parameter counts).

    Raises:
        ValueError: when no layer matches, or the model is not built.

    Example:

    ```python
    import keras
    from keras_tricks import lora

    model = keras.Sequential([
        keras.Input((32,)),
        keras.layers.Dense(64, activation="relu", name="body"),
        keras.layers.Dense(10, name="head"),
    ])
    report = lora.enable(model, rank=4, keep_trainable="head", verbose=False)
    report["layers"]  # ['body']
    report["trainable_before"], report["trainable_after"]  # (2762, 1098)
    ```
    """
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank < 1:
        raise ValueError(f"Argument `rank` must be a positive integer. Received: rank={rank!r}")
    if alpha is not None and (
        isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or alpha <= 0
    ):
        raise ValueError(
            f"Argument `alpha` must be a positive number or None. Received: alpha={alpha!r}"
        )
    targets = _check_patterns("targets", targets)
    if not targets:
        raise ValueError(f"Argument `targets` must not be empty. Received: targets={targets!r}")
    exclude = _check_patterns("exclude", exclude)
    keep = _check_patterns("keep_trainable", keep_trainable)
    if not getattr(model, "built", False):
        raise ValueError(
            "lora.enable needs a built model (call it on data or build it with "
            "`keras.Input`). Received: an unbuilt model"
        )
    before = count_params(model.trainable_weights)
    chosen, kept = [], []
    for layer in _layers(model):
        if keep and _matches(layer, keep):
            kept.append(layer)
        elif (
            _matches(layer, targets)
            and not _matches(layer, exclude)
            and hasattr(layer, "enable_lora")
            and not getattr(layer, "lora_enabled", False)
            and layer.weights
        ):
            chosen.append(layer)
    if not chosen:
        raise ValueError(
            "lora.enable found no layer to adapt: none matches `targets` (and not "
            "`exclude`) with an `enable_lora` method. "
            f"Received: targets={targets!r}, exclude={exclude!r}"
        )
    # Setting `trainable` on a layer sets it on all its sublayers, and a
    # frozen container hides the weights of its trainable children: open
    # the model, then freeze the leaf layers one by one.
    model.trainable = True
    for layer in _layers(model):
        if layer.weights and not _sublayers(layer):
            layer.trainable = False
    for layer in chosen:
        layer.trainable = True
        layer.enable_lora(int(rank), lora_alpha=alpha)
    for layer in kept:
        layer.trainable = True
    # A train/test/predict function traced before has no adapters in it (the
    # layers branch on `lora_enabled` in Python): make Keras trace again.
    for owner in [model, *_layers(model)]:
        if isinstance(owner, keras.Model):
            for name in ("train_function", "test_function", "predict_function"):
                if getattr(owner, name, None) is not None:
                    setattr(owner, name, None)
    after = count_params(model.trainable_weights)
    total = count_params(model.weights)
    report = {
        "layers": [layer.name for layer in chosen],
        "trainable_before": before,
        "trainable_after": after,
        "total": total,
    }
    if verbose:
        io_utils.print_msg(
            f"LoRA rank {rank} (alpha {alpha if alpha is not None else rank}) on "
            f"{len(chosen)} layers; trainable parameters {before:,} -> {after:,} "
            f"({100.0 * after / max(before, 1):.2f}%)."
        )
    return report


def lora_layers(model):
    """The layers of `model` with LoRA enabled."""
    return [layer for layer in _layers(model) if getattr(layer, "lora_enabled", False)]


def merge(model):
    """Fold the LoRA adapters of `model` into its kernels, in place.

    Each adapted layer's kernel becomes `kernel + (alpha / rank) * A @ B`
    and `B` is reset to zero, so the model computes exactly what it did, and
    the kernel alone holds the fine-tuned weights (for export, or to train a
    fresh adapter on top). Keras's `save` already writes the merged kernel of
    a `Dense`/`EinsumDense` into a `.keras` file; `merge` makes the model in
    memory match it (and its `get_weights()` / `.weights.h5` exports).

    Args:
        model: A Keras model with LoRA-enabled layers.

    Returns:
        The names of the merged layers.

    Example:

    ```python
    import keras
    from keras_tricks import lora

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    lora.enable(model, rank=2, verbose=False)
    # ... fine-tune ...
    lora.merge(model)
    ```
    """
    merged = []
    for layer in lora_layers(model):
        if hasattr(layer, "lora_embeddings_a"):
            kernel_var = getattr(layer, "_embeddings", None)
            a_var, b_var = layer.lora_embeddings_a, layer.lora_embeddings_b
        else:
            kernel_var = getattr(layer, "_kernel", None)
            a_var = getattr(layer, "lora_kernel_a", None)
            b_var = getattr(layer, "lora_kernel_b", None)
        if (
            kernel_var is None
            or a_var is None
            or getattr(layer, "quantization_mode", None)
        ):
            raise ValueError(
                f"lora.merge cannot fold the adapter of layer {layer.name!r} "
                "(no float kernel: quantized layers keep their adapter). "
                f"Received: {type(layer).__name__}"
            )
        a = ops.convert_to_numpy(a_var).astype("float64")
        b = ops.convert_to_numpy(b_var).astype("float64")
        kernel = ops.convert_to_numpy(kernel_var).astype("float64")
        # A is (..., rank), B is (rank, out): their product has the kernel's shape.
        delta = (layer.lora_alpha / layer.lora_rank) * np.tensordot(a, b, axes=1)
        kernel_var.assign((kernel + delta).astype(kernel_var.dtype))
        b_var.assign(np.zeros(tuple(b_var.shape), dtype=b_var.dtype))
        merged.append(layer.name)
    return merged
