"""Float32 model outputs under a mixed policy: `check_outputs`.

Finds model outputs that come out in float16 or bfloat16 (a softmax `Dense`
under a mixed policy does) and, with `fix=True`, rebuilds the model so that
its output layers compute in float32.
"""

import dataclasses

import keras

__all__ = ["OutputProblem", "OutputReport", "check_outputs"]

_LOW_PRECISION = ("float16", "bfloat16")


@dataclasses.dataclass(frozen=True)
class OutputProblem:
    """One model output computed in a half-precision dtype.

    Attributes:
        index: int. Position of the output in ``model.outputs``.
        name: str. The output tensor's name.
        dtype: str. Its dtype (``"float16"`` or ``"bfloat16"``).
        layer: str. Name of the layer (or operation) that produced it.
    """

    index: int
    name: str
    dtype: str
    layer: str

    def __str__(self):
        return (
            f"output {self.index} ({self.name!r}) is {self.dtype}, produced by "
            f"{self.layer!r}"
        )


@dataclasses.dataclass(frozen=True)
class OutputReport:
    """What :func:`check_outputs` found.

    Attributes:
        problems: tuple of :class:`OutputProblem`, empty when every output is
            float32 (or any dtype other than float16/bfloat16).
    """

    problems: tuple = ()

    @property
    def ok(self):
        """True when no output is in float16 or bfloat16."""
        return not self.problems

    def __str__(self):
        if self.ok:
            return "All model outputs are float32 (or full precision)."
        lines = [f"{len(self.problems)} output(s) in half precision:"]
        lines += [f"  - {problem}" for problem in self.problems]
        lines.append(
            "  Softmax/sigmoid and the loss are unstable in half precision "
            "(overflow to inf/NaN, probabilities that underflow to 0). Fix: "
            "`check_outputs(model, fix=True)`, or give the last layer "
            "`dtype='float32'`."
        )
        return "\n".join(lines)


def _graph_outputs(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a `keras.Model`. Received: "
            f"model={type(model).__name__}"
        )
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        outputs = None
    if not outputs:
        raise ValueError(
            "`check_outputs` needs a Functional or Sequential model with known "
            "outputs (a Sequential model that starts with `keras.Input`, or one "
            "that has been built). Received: a model of type "
            f"{type(model).__name__} without `outputs`. For a subclassed model, "
            "create its last layer with `dtype='float32'`."
        )
    return outputs


def _producer(tensor):
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else history.operation


def _dtype_name(tensor):
    return keras.backend.standardize_dtype(tensor.dtype)


def _report(model):
    problems = []
    for index, tensor in enumerate(_graph_outputs(model)):
        dtype = _dtype_name(tensor)
        if dtype in _LOW_PRECISION:
            op = _producer(tensor)
            problems.append(
                OutputProblem(
                    index=index,
                    name=str(getattr(tensor, "name", index)),
                    dtype=dtype,
                    layer=getattr(op, "name", type(op).__name__),
                )
            )
    return OutputReport(tuple(problems))


def _float32_targets(model, targets):
    """Collect the layers that produce half-precision outputs, nested too.

    Returns True when every such output comes from a layer that can be
    recreated with ``dtype="float32"``.
    """
    all_layers = True
    for tensor in _graph_outputs(model):
        if _dtype_name(tensor) not in _LOW_PRECISION:
            continue
        op = _producer(tensor)
        if isinstance(op, (keras.Sequential, keras.Model)) and getattr(
            op, "outputs", None
        ):
            all_layers &= _float32_targets(op, targets)
        elif isinstance(op, keras.layers.Layer) and not isinstance(op, keras.Model):
            targets.add(id(op))
        else:
            all_layers = False
    return all_layers


def _float32_output_model(model):
    targets = set()
    _float32_targets(model, targets)

    def clone_function(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # a stateless operation (keras.ops call): reuse it
        config = layer.get_config()
        if id(layer) in targets:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    fixed = keras.models.clone_model(
        model, clone_function=clone_function, recursive=True
    )
    fixed.set_weights(model.get_weights())
    # Outputs that no layer produced (a `keras.ops` call in a functional
    # model): the operation stays in half precision, cast its result.
    if any(_dtype_name(t) in _LOW_PRECISION for t in fixed.outputs):
        if isinstance(fixed, keras.Sequential):
            raise ValueError(
                "Could not make every output float32 by recreating layers."
            )

        def cast(tensor):
            if _dtype_name(tensor) in _LOW_PRECISION:
                return keras.layers.Activation("linear", dtype="float32")(tensor)
            return tensor

        fixed = keras.Model(
            fixed.inputs,
            keras.tree.map_structure(cast, fixed.output),
            name=fixed.name,
        )
    if model.compiled and not fixed.compiled:
        fixed.compile_from_config(model.get_compile_config())
    return fixed


def check_outputs(model, fix=False):
    """Find model outputs in float16/bfloat16 and optionally make them float32.

    Under a mixed policy every layer computes in float16 or bfloat16,
    including the last one: a ``Dense(..., activation="softmax")`` returns
    float16 probabilities. Logits above 65504 overflow to ``inf`` and the
    softmax turns them into NaN; small probabilities underflow to 0 and the
    cross-entropy is clipped to a wrong value. Keras's guide recommends a
    float32 output layer; this function checks for it and can build it.

    With ``fix=True`` the model is cloned (`keras.models.clone_model`) and
    every layer that produces a half-precision output is recreated with
    ``dtype="float32"``, so it computes in float32 (its float16 input is cast
    up first); the weights are copied. Nested Sequential/Functional models
    are followed down to their output layer. An output produced by a bare
    `keras.ops` call instead of a layer gets a float32 ``Activation("linear")``
    appended. A compiled model's compile config is applied to the copy (a
    fresh optimizer); the original model is left untouched.

    Args:
        model: keras.Model. A Functional model, or a Sequential model with a
            known input shape. Subclassed models have no symbolic outputs to
            inspect: create their last layer with ``dtype="float32"``.
        fix: bool. Return a fixed copy of the model instead of a report.
            Defaults to `False`.

    Returns:
        With ``fix=False``, an :class:`OutputReport` (``.ok``, ``.problems``,
        a readable ``str``). With ``fix=True``, a `keras.Model` whose outputs
        are all float32: a new model when something had to be fixed, the same
        ``model`` object otherwise.

    Raises:
        TypeError: when ``model`` is not a `keras.Model`.
        ValueError: when the model has no symbolic outputs.

    Example:

    ```python
    import keras
    from keras_tricks import precision

    keras.config.set_dtype_policy("mixed_float16")
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(3, activation="softmax"),
    ])
    print(precision.check_outputs(model))  # 1 output(s) in half precision
    model = precision.check_outputs(model, fix=True)
    assert precision.check_outputs(model).ok
    ```
    """
    if not isinstance(fix, bool):
        raise TypeError(f"Argument `fix` must be a bool. Received: fix={fix!r}")
    report = _report(model)
    if not fix:
        return report
    if report.ok:
        return model
    fixed = _float32_output_model(model)
    remaining = _report(fixed)
    if not remaining.ok:
        raise ValueError(f"Could not make every output float32: {remaining}")
    return fixed
