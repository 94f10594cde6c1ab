"""Lookahead (Zhang et al. 2019, arXiv 1907.08610) as an optimizer wrapper.

The inner optimizer moves the "fast" weights; every `sync_period` of its
updates the "slow" weights move part of the way towards them and the fast
weights restart from there (Algorithm 1 of the paper).
"""

import numbers

import keras
from keras import ops

from keras_tricks.optimizers._adam_math import check_real
from keras_tricks.optimizers._wrapper import OptimizerWrapper


def _when(pred, fn):
    """Run `fn` (which assigns variables) where `pred` holds.

    On PyTorch `ops.cond` is a Python `if` wrapped in a Keras `Operation`,
    and each call bumps a global name counter that `torch.compile` guards
    on: every step recompiled the `cond` frame until dynamo's recompile limit.
    The plain `if` is the same branch (eager: one host read; compiled: one
    graph break) without that.
    """
    if keras.backend.backend() == "torch":
        if bool(pred):
            fn()
    else:
        ops.cond(pred, fn, lambda: None)


@keras.saving.register_keras_serializable(package="keras_tricks")
class Lookahead(OptimizerWrapper):
    """Slow weights that follow another optimizer's fast weights.

    The inner optimizer updates the model's weights (the fast weights) as
    usual. After every `sync_period`-th update of the inner optimizer (its
    `iterations` is a multiple of `sync_period`), the slow weights `phi` move
    towards the fast weights `theta` and the fast weights restart from them:

    `phi <- phi + slow_step_size * (theta - phi)`, `theta <- phi`.

    The slow weights start at the weights of the first update. This is
    Algorithm 1 of the paper and `pytorch_optimizer.Lookahead` (with
    `k=sync_period`, `alpha=slow_step_size`); the defaults are the paper's
    and TensorFlow Addons' (k=6, alpha=0.5). The slow weights are one extra
    copy of the trainable weights in the optimizer's state (saved with the
    model). Between syncs the model holds the fast weights; evaluation and
    saving see whatever the model holds.

    Combined with RAdam and gradient centralization it is "Ranger":
    `Lookahead(GradientCentralization(RAdam()))`.

    Args:
        optimizer: A `keras.optimizers.Optimizer` instance (or another
            wrapper of this package) that moves the fast weights.
        sync_period: Int >= 1. Inner updates between two syncs (`k`).
            Defaults to `6`.
        slow_step_size: Float in `[0, 1]`. How far the slow weights move
            towards the fast ones at a sync (`alpha`). Defaults to `0.5`.
        name: Optional name of the wrapper.

    Example:

    ```python
    optimizer = keras_tricks.optimizers.Lookahead(
        keras_tricks.optimizers.RAdam(1e-3), sync_period=6, slow_step_size=0.5
    )
    model.compile(optimizer=optimizer, loss="mse")
    ```
    """

    def __init__(
        self, optimizer, sync_period=6, slow_step_size=0.5, name=None, **kwargs
    ):
        super().__init__(optimizer, name=name, **kwargs)
        if (
            isinstance(sync_period, bool)
            or not isinstance(sync_period, numbers.Integral)
            or sync_period < 1
        ):
            raise ValueError(
                "Argument `sync_period` of Lookahead must be an int >= 1. "
                f"Received: sync_period={sync_period!r}"
            )
        self.sync_period = int(sync_period)
        self.slow_step_size = check_real(
            "Lookahead", "slow_step_size", slow_step_size, 0.0, 1.0
        )

    # --- state ------------------------------------------------------------

    def _build_own(self, var_list):
        with keras.name_scope(self.name, caller=self):
            self.slow_weights = []
            for reference in var_list:
                name = getattr(reference, "path", reference.name)
                variable = keras.Variable(
                    initializer="zeros",
                    shape=reference.shape,
                    dtype=reference.dtype,
                    trainable=False,
                    name=f"{name.replace('/', '_').replace(':', '_')}_slow",
                    layout=getattr(reference, "_layout", None),
                )
                self._track_variable(variable)
                self.slow_weights.append(variable)

    # --- the arithmetic ---------------------------------------------------

    def _synced(self, slow, fast):
        alpha = ops.cast(self.slow_step_size, fast.dtype)
        return ops.add(slow, ops.multiply(alpha, ops.subtract(fast, slow)))

    def _sync_now(self, next_iteration, new_iterations):
        # The inner optimizer made an update (`GradientAccumulation` inside
        # makes one every few steps) and it was the k-th.
        return ops.logical_and(
            ops.equal(new_iterations, next_iteration),
            ops.equal(ops.mod(new_iterations, self.sync_period), 0),
        )

    # --- TensorFlow / PyTorch ---------------------------------------------

    def _stateful_apply(self, grads, trainable_variables):
        index = {id(v): i for i, v in enumerate(self._trainable_variables)}
        slows = [self.slow_weights[index[id(v)]] for v in trainable_variables]
        iterations = self.inner_optimizer.iterations
        # The count after this step if the inner optimizer updates: a new
        # tensor, read before `apply` increments the counter in place. Not
        # `iterations + 0`: under `torch.compile` inductor drops the `+ 0`,
        # so that "copy" aliased the counter (the graph break at the branch
        # hides the later increment from inductor's aliasing check) and the
        # sync never fired.
        next_iteration = ops.add(iterations.value, 1)

        def start():
            for slow, fast in zip(slows, trainable_variables, strict=False):
                slow.assign(fast.value)

        _when(ops.equal(next_iteration, 1), start)
        self.inner_optimizer.apply(grads, trainable_variables)

        def sync():
            for slow, fast, g in zip(slows, trainable_variables, grads, strict=False):
                if g is None:
                    continue
                value = self._synced(slow.value, fast.value)
                slow.assign(value)
                fast.assign(value)

        _when(self._sync_now(next_iteration, iterations.value), sync)

    # --- JAX ----------------------------------------------------------------

    def _stateless_apply(self, own_values, inner_values, grads, trainable_values):
        inner_ids = [id(v) for v in self.inner_optimizer.variables]
        it_index = inner_ids.index(id(self.inner_optimizer.iterations))
        old = inner_values[it_index]
        slot = {id(v): i for i, v in enumerate(self._variables)}
        slow_slots = [slot[id(s)] for s in self.slow_weights]
        slows = ops.cond(
            ops.equal(old, 0),
            lambda: list(trainable_values),
            lambda: [own_values[i] for i in slow_slots],
        )
        new_trainable, new_inner = self.inner_optimizer.stateless_apply(
            inner_values, grads, trainable_values
        )
        new_trainable = [ops.convert_to_tensor(v) for v in new_trainable]
        new_inner = [ops.convert_to_tensor(v) for v in new_inner]
        masked = [g is None for g in grads]

        def sync():
            synced = [
                s if skip else self._synced(s, f)
                for s, f, skip in zip(slows, new_trainable, masked, strict=False)
            ]
            fast = [
                f if skip else s
                for s, f, skip in zip(synced, new_trainable, masked, strict=False)
            ]
            return synced, fast

        new_slows, new_trainable = ops.cond(
            self._sync_now(ops.add(old, 1), new_inner[it_index]),
            sync,
            lambda: (list(slows), list(new_trainable)),
        )
        new_own = list(own_values)
        for i, value in zip(slow_slots, new_slows, strict=False):
            new_own[i] = value
        return list(new_trainable), new_own, list(new_inner)

    def get_config(self):
        config = self._base_config()
        config.update(
            {
                "sync_period": self.sync_period,
                "slow_step_size": self.slow_step_size,
            }
        )
        return config
