"""A private base for optimizers that wrap another optimizer.

Modelled on `keras.optimizers.LossScaleOptimizer`: the wrapper holds an
`inner_optimizer`, builds it, lists its variables after its own, and hands it
the learning rate, the step counter and the loss scaling. Subclasses change
what reaches the inner optimizer through two hooks:

* `_stateful_apply(grads, trainable_variables)` for TensorFlow and PyTorch,
  where the step may assign variables in place (branches with `ops.cond`);
* `_stateless_apply(own_values, inner_values, grads, trainable_values)` for
  JAX, which traces a pure function (the JAX trainer always calls
  `stateless_apply`).
"""

import keras
from keras import ops

# The constructor arguments of every Keras optimizer. A wrapper applies no
# update of its own, so each of them belongs to the inner optimizer.
_BASE_ARGUMENTS = (
    "learning_rate",
    "weight_decay",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "use_ema",
    "ema_momentum",
    "ema_overwrite_frequency",
    "loss_scale_factor",
    "gradient_accumulation_steps",
)


def _is_loss_scale_optimizer(optimizer):
    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


class OptimizerWrapper(keras.optimizers.Optimizer):
    """Base class: an optimizer that transforms gradients for another one."""

    def __init__(self, optimizer, name=None, **kwargs):
        cls_name = type(self).__name__
        given = sorted(k for k in kwargs if k in _BASE_ARGUMENTS)
        if given:
            received = ", ".join(f"{k}={kwargs[k]!r}" for k in given)
            raise ValueError(
                f"{cls_name} applies no update of its own: set "
                f"`{'`, `'.join(given)}` on the inner optimizer, e.g. "
                f"`{cls_name}(keras.optimizers.AdamW({given[0]}=...), ...)`. "
                f"Received: {received}"
            )
        if kwargs:
            raise ValueError(
                f"{cls_name} does not take the argument(s) "
                f"`{'`, `'.join(sorted(kwargs))}`. Received: {kwargs}"
            )
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                f"Argument `optimizer` of {cls_name} must be a "
                "`keras.optimizers.Optimizer` instance, e.g. "
                "`keras.optimizers.Adam(1e-3)`. Received: "
                f"optimizer={optimizer!r} (of type {type(optimizer).__name__})"
            )
        opt = optimizer
        while opt is not None:
            if _is_loss_scale_optimizer(opt):
                raise ValueError(
                    f"A LossScaleOptimizer cannot sit inside {cls_name}: it "
                    "must see the gradients first, to unscale them and skip "
                    "non-finite steps. Wrap the other way round, "
                    f"`LossScaleOptimizer({cls_name}(opt))`, or simply "
                    "compile under `mixed_float16`, which adds it for you. "
                    f"Received: optimizer={type(optimizer).__name__}"
                )
            opt = getattr(opt, "inner_optimizer", None)
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = optimizer

    # --- delegation -------------------------------------------------------

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    @property
    def loss_scale_factor(self):
        inner = vars(self).get("inner_optimizer")
        return None if inner is None else inner.loss_scale_factor

    @loss_scale_factor.setter
    def loss_scale_factor(self, value):
        # The base constructor sets it to None before the inner optimizer
        # exists; afterwards (e.g. LossScaleOptimizer clearing it) it is the
        # inner optimizer's business.
        inner = vars(self).get("inner_optimizer")
        if inner is not None:
            inner.loss_scale_factor = value

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    @property
    def variables(self):
        return self._variables[:] + list(self.inner_optimizer.variables)

    # --- building ---------------------------------------------------------

    def build(self, var_list):
        self._build_own(var_list)
        if not self.inner_optimizer.built:
            self.inner_optimizer.build(var_list)
        super().build(var_list)

    def _build_own(self, var_list):
        """Create the wrapper's own variables (none by default)."""

    # --- applying ---------------------------------------------------------

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "When passing `grads` without `variables`, the optimizer "
                    "must already be built on a list of variables. Call "
                    "`optimizer.build(trainable_variables)` first."
                )
            trainable_variables = self._trainable_variables
        else:
            trainable_variables = list(trainable_variables)
            if not self.built:
                with keras.name_scope(self.name, caller=self):
                    self.build(trainable_variables)
                self.built = True
        grads = list(grads)
        if keras.backend.backend() == "jax":
            # `ops.cond` traces both branches on JAX: run the pure version and
            # write the results back.
            self._apply_through_stateless(grads, trainable_variables)
        else:
            self._stateful_apply(grads, trainable_variables)

    def _apply_through_stateless(self, grads, trainable_variables):
        known = self._trainable_variables
        if [id(v) for v in trainable_variables] != [id(v) for v in known]:
            by_id = {id(v): g for v, g in zip(trainable_variables, grads, strict=False)}
            grads = [by_id.get(id(v)) for v in known]
        new_trainable, new_opt = self.stateless_apply(
            [v.value for v in self.variables],
            grads,
            [v.value for v in known],
        )
        for var, value in zip(known, new_trainable, strict=False):
            var.assign(value)
        for var, value in zip(self.variables, new_opt, strict=False):
            var.assign(value)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        if not self.built:
            raise ValueError(
                f"To call `stateless_apply`, {type(self).__name__} must be "
                "built (i.e. its variables must have been created). You can "
                "build it via `optimizer.build(trainable_variables)`."
            )
        # A LossScaleOptimizer around us passes `keras.Variable`s (read
        # through its StatelessScope): turn everything into plain tensors,
        # which is what the branches of `ops.cond` may return on JAX.
        optimizer_variables = [ops.convert_to_tensor(v) for v in optimizer_variables]
        trainable_variables = [ops.convert_to_tensor(v) for v in trainable_variables]
        n_own = len(self._variables)
        own_values = optimizer_variables[:n_own]
        inner_values = optimizer_variables[n_own:]
        new_trainable, new_own, new_inner = self._stateless_apply(
            own_values, inner_values, list(grads), list(trainable_variables)
        )
        return list(new_trainable), list(new_own) + list(new_inner)

    def _stateful_apply(self, grads, trainable_variables):
        raise NotImplementedError

    def _stateless_apply(self, own_values, inner_values, grads, trainable_values):
        raise NotImplementedError

    # --- helpers ----------------------------------------------------------

    def _base_config(self):
        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(
            config.pop("optimizer"), custom_objects=custom_objects
        )
        return cls(inner, **config)


def is_finite(grads):
    """A scalar bool tensor: every gradient is finite."""
    flags = [ops.all(ops.isfinite(g)) for g in grads if g is not None]
    if not flags:
        return ops.convert_to_tensor(True)
    return ops.all(ops.stack(flags))
