"""Gradient accumulation: one real update per `steps` micro-batches.

The inner optimizer sees the sample-weighted mean gradient of a window of
micro-batches, once per window, so its `iterations`, its learning-rate
schedule, its gradient clipping and its weight decay all advance once per real
update (optax `MultiSteps` semantics). Keras's built-in
`gradient_accumulation_steps` differs in the last point that matters: its
`iterations` count micro-batches, so a schedule sized in updates runs `steps`
times too fast.
"""

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_tricks import _control
from keras_tricks.optimizers._wrapper import OptimizerWrapper, is_finite


def _replica_safe_cond(pred, update_fn):
    """`if pred: update_fn()`, also inside a `tf.distribute` replica context.

    Under a TensorFlow distribution strategy the inner optimizer synchronizes
    the replicas (`merge_call`), which TensorFlow refuses inside a `tf.cond`
    built in a replica context. As Keras's own LossScaleOptimizer does, the
    condition is then evaluated in the cross-replica context and the update
    runs on every replica from there. `pred` is the same on every replica.

    On PyTorch it is a plain `if`: Keras's `ops.cond` there bumps a global
    name counter that `torch.compile` guards on, so that every step
    recompiled until dynamo's recompile limit.
    """
    if keras.backend.backend() == "torch":
        if bool(pred):
            update_fn()
        return
    if keras.backend.backend() == "tensorflow":
        # Imported here, only on TensorFlow: the distribution API has no
        # backend-agnostic equivalent.
        import tensorflow as tf

        if (
            tf.distribute.has_strategy()
            and not tf.distribute.in_cross_replica_context()
        ):

            def in_cross_replica(strategy, pred):
                pred = strategy.experimental_local_results(pred)[0]

                def run():
                    strategy.extended.call_for_each_replica(update_fn)

                ops.cond(pred, run, lambda: None)

            tf.distribute.get_replica_context().merge_call(
                in_cross_replica, args=(pred,)
            )
            return
    ops.cond(pred, update_fn, lambda: None)


def _check_steps(steps):
    """`steps` as an int, or a serializable callable (see the class docs)."""
    if callable(steps) and not isinstance(steps, (bool, numbers.Number)):
        if hasattr(steps, "get_config"):
            # A schedule object: it must survive a save and a load.
            try:
                restored = keras.saving.deserialize_keras_object(
                    keras.saving.serialize_keras_object(steps)
                )
            except Exception as e:  # any failure: the file would not load
                raise ValueError(
                    "Argument `steps` of GradientAccumulation, when callable, "
                    "must be serializable: its `get_config` and `from_config` "
                    f"failed ({type(e).__name__}: {e}). Received: steps={steps!r}"
                ) from e
            if not callable(restored):
                raise ValueError(
                    "Argument `steps` of GradientAccumulation, when callable, "
                    "must come back callable from its config. Received: "
                    f"steps={steps!r}"
                )
            return steps
        name = getattr(steps, "__name__", None)
        if name is None or keras.saving.get_registered_name(steps) == name:
            raise ValueError(
                "Argument `steps` of GradientAccumulation, when callable, must "
                "be serializable so that the optimizer can be saved: a function "
                "registered with `@keras.saving.register_keras_serializable()`, "
                "or a schedule object with `get_config` (e.g. "
                "`keras.optimizers.schedules.PiecewiseConstantDecay`). "
                f"Received: steps={steps!r}"
            )
        return steps
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(
            "Argument `steps` of GradientAccumulation must be an int >= 1 or a "
            "serializable callable of the update count. "
            f"Received: steps={steps!r}"
        )
    return int(steps)


def _accumulator_dtype(variable):
    return (
        "float64"
        if keras.backend.standardize_dtype(variable.dtype) == ("float64")
        else "float32"
    )


@keras.saving.register_keras_serializable(package="keras_tricks")
class GradientAccumulation(OptimizerWrapper):
    """Apply another optimizer once per `steps` micro-batches.

    Gradients of `steps` consecutive micro-batches are summed in float32
    accumulators, each weighted by its number of samples, and the inner
    optimizer then applies their weighted mean once. For a model without
    BatchNorm (or other batch statistics), `steps` micro-batches of size `b`
    give the same weights as one batch of `steps * b`, with SGD, Adam, AdamW
    and any clipping or weight decay set on the inner optimizer (clipping and
    weight decay apply once, to the accumulated gradient).

    **Step counting.** `iterations` is the inner optimizer's counter: it
    advances once per real update, and so does any learning-rate schedule of
    the inner optimizer. (Keras's built-in `gradient_accumulation_steps`
    shows schedules the micro-step count.) `micro_steps` counts batches.

    **Unequal micro-batches.** The optimizer never sees the batch size, so
    by default every micro-batch weighs the same, which is exact when they all
    have the same size. Pass `batch_size` and `num_samples` (the number of
    training samples per epoch, as given to `fit`) and the wrapper knows that
    each epoch has `ceil(num_samples / batch_size)` micro-batches whose last
    one holds the remainder: it weighs that one by its true size, so the
    update is the exact mean over the samples of the window.

    **End of an epoch.** An unfinished window is carried over to the next
    epoch (it is optimizer state: it is saved with the model and restored by
    `BackupAndRestore`). At the end of training, call `flush()` to apply what
    is left, or leave it (at most `steps - 1` micro-batches are not applied).

    **BatchNorm** statistics are updated on every micro-batch from that
    micro-batch alone, so accumulation is not a big batch for BatchNorm
    models; use GroupNorm/LayerNorm when exact equivalence matters.

    Args:
        optimizer: A `keras.optimizers.Optimizer` instance that applies the
            accumulated gradient (set its learning rate, schedule, weight
            decay and clipping there).
        steps: Int >= 1, number of micro-batches per real update; or a
            callable of the number of real updates done so far (an integer
            tensor: the inner optimizer's `iterations`) returning that number
            for the next update, written with `keras.ops` (optax's
            `every_k_schedule`; a float is rounded, below 1 counts as 1). A
            callable must be serializable: a function registered with
            `keras.saving.register_keras_serializable`, or an object with
            `get_config` such as a `LearningRateSchedule`.
        batch_size: Optional int. The micro-batch size given to `fit`. Needs
            `num_samples`. Defaults to `None` (all micro-batches weigh the
            same).
        num_samples: Optional int. Training samples per epoch. Needs
            `batch_size`. Defaults to `None`.
        skip_nonfinite: Bool. Drop a micro-batch whose gradient holds a NaN or
            an infinity instead of poisoning the window; the window then waits
            for another micro-batch. Defaults to `False`.
        use_grad_mean: Bool. Apply the mean of the window's gradients
            (`True`) or their sum (`False`, optax `MultiSteps(use_grad_mean=
            False)`: the update of a loss summed over the micro-batches).
            With `batch_size`/`num_samples` the sum is the sample-weighted
            mean times the number of micro-batches. Defaults to `True`.
        name: Optional name of the wrapper.

    Example:

    ```python
    # An effective batch of 4 * 32 = 128 samples.
    optimizer = keras_tricks.optimizers.GradientAccumulation(
        keras.optimizers.AdamW(1e-3, weight_decay=1e-4, global_clipnorm=1.0),
        steps=4,
    )
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, batch_size=32, epochs=3)
    optimizer.flush()  # apply the unfinished last window, if any

    # Windows that grow with the update count (optax every_k_schedule).
    @keras.saving.register_keras_serializable(package="my_project")
    def ramp(updates):
        return keras.ops.minimum(1 + updates // 100, 8)

    optimizer = keras_tricks.optimizers.GradientAccumulation(
        keras.optimizers.AdamW(1e-3), steps=ramp
    )
    ```
    """

    def __init__(
        self,
        optimizer,
        steps,
        batch_size=None,
        num_samples=None,
        skip_nonfinite=False,
        name=None,
        use_grad_mean=True,
        **kwargs,
    ):
        super().__init__(optimizer, name=name, **kwargs)
        steps = _check_steps(steps)
        if (batch_size is None) != (num_samples is None):
            raise ValueError(
                "Arguments `batch_size` and `num_samples` of "
                "GradientAccumulation go together (both or neither). Received: "
                f"batch_size={batch_size!r}, num_samples={num_samples!r}"
            )
        for arg, value in (("batch_size", batch_size), ("num_samples", num_samples)):
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, numbers.Integral)
                or value < 1
            ):
                raise ValueError(
                    f"Argument `{arg}` of GradientAccumulation must be an int "
                    f">= 1 or None. Received: {arg}={value!r}"
                )
        if not isinstance(skip_nonfinite, bool):
            raise ValueError(
                "Argument `skip_nonfinite` of GradientAccumulation must be a "
                f"bool. Received: skip_nonfinite={skip_nonfinite!r}"
            )
        self.steps = steps
        self.batch_size = None if batch_size is None else int(batch_size)
        self.num_samples = None if num_samples is None else int(num_samples)
        self.skip_nonfinite = skip_nonfinite
        if not isinstance(use_grad_mean, bool):
            raise ValueError(
                "Argument `use_grad_mean` of GradientAccumulation must be a "
                f"bool. Received: use_grad_mean={use_grad_mean!r}"
            )
        self.use_grad_mean = use_grad_mean

    @property
    def accumulation_steps(self):
        """Micro-batches per real update (read by `keras_tricks._control`):
        an int, or the callable `steps`."""
        return self.steps

    # --- the window length ------------------------------------------------

    def _window_length(self, updates):
        """k for the next update, given the real updates done (a tensor)."""
        if not callable(self.steps):
            return self.steps
        k = self.steps(updates)
        k = ops.convert_to_tensor(k)
        if "float" in keras.backend.standardize_dtype(k.dtype):
            k = ops.round(k)
        return ops.maximum(ops.cast(k, "int32"), 1)

    def _host_window_lengths(self, first, count):
        """k at updates `first .. first + count - 1`, as NumPy ints >= 1."""
        if not callable(self.steps):
            return np.full((count,), self.steps, dtype="int64")
        updates = np.arange(first, first + count, dtype="int64")
        try:
            values = np.asarray(ops.convert_to_numpy(self.steps(updates)))
            if values.shape != updates.shape:
                raise ValueError("not elementwise")
        except Exception:
            # A callable written for one scalar step at a time.
            values = np.asarray(
                [ops.convert_to_numpy(self.steps(np.int64(u))) for u in updates]
            )
        values = np.round(values.astype("float64")).astype("int64")
        return np.maximum(values, 1)

    def updates_after(self, micro_batches, updates=None, window=None):
        """Real updates completed after each of the next micro-batches.

        Replays the window lengths on the host, as the step computes them,
        assuming that every micro-batch is accepted.

        Args:
            micro_batches: Int. How many micro-batches to replay.
            updates: Optional int. The real updates done before them.
                Defaults to the optimizer's `iterations`.
            window: Optional int. Micro-batches already in the window.
                Defaults to the current window.

        Returns:
            An int64 NumPy array of length `micro_batches + 1`: element `m`
            is the number of updates the first `m` micro-batches complete.
        """
        micro_batches = int(micro_batches)
        if updates is None:
            updates = int(ops.convert_to_numpy(self.iterations))
        if window is None:
            window = (
                int(ops.convert_to_numpy(self.window_count)) if self.built else 0
            )
        out = np.zeros((micro_batches + 1,), dtype="int64")
        if micro_batches == 0:
            return out
        # Each update takes at least one micro-batch.
        lengths = self._host_window_lengths(int(updates), micro_batches)
        done, position, fill = 0, 0, int(window)
        while position < micro_batches:
            # The micro-batch count at which update `done + 1` completes.
            end = position + max(int(lengths[done]) - fill, 1)
            if end > micro_batches:
                out[position + 1 :] = done
                break
            out[position + 1 : end] = done
            done += 1
            out[end] = done
            position, fill = end, 0
        return out

    # --- state ------------------------------------------------------------

    def _build_own(self, var_list):
        with keras.name_scope(self.name, caller=self):
            self.micro_steps = self._scalar("micro_steps", "int", 0)
            self.window_count = self._scalar("window_count", "int", 0)
            self.window_weight = self._scalar("window_weight", "float32", 0.0)
            self.accumulators = [self._accumulator(v) for v in var_list]

    def _scalar(self, name, dtype, value):
        variable = keras.Variable(
            value,
            dtype=dtype,
            trainable=False,
            aggregation="only_first_replica",
            name=name,
        )
        self._track_variable(variable)
        return variable

    def _accumulator(self, reference):
        kwargs = {}
        if keras.backend.backend() == "tensorflow":
            # One local sum per replica (tf.distribute): the inner optimizer
            # all-reduces the accumulated gradient as it would a plain one.
            kwargs = {"synchronization": "on_read", "aggregation": "sum"}
        name = getattr(reference, "path", reference.name)
        variable = keras.Variable(
            initializer="zeros",
            shape=reference.shape,
            dtype=_accumulator_dtype(reference),
            trainable=False,
            name=f"{name.replace('/', '_').replace(':', '_')}_accumulator",
            layout=getattr(reference, "_layout", None),
            **kwargs,
        )
        self._track_variable(variable)
        return variable

    # --- the arithmetic, shared by both code paths --------------------------

    def _micro_weight(self, micro_steps):
        """Samples in the micro-batch at position `micro_steps` (a tensor)."""
        if self.batch_size is None:
            return ops.convert_to_tensor(1.0, "float32")
        per_epoch = math.ceil(self.num_samples / self.batch_size)
        last = self.num_samples - (per_epoch - 1) * self.batch_size
        position = ops.mod(micro_steps, per_epoch)
        return ops.cast(
            ops.where(ops.equal(position, per_epoch - 1), last, self.batch_size),
            "float32",
        )

    def _accumulate(self, acc_values, grads, micro_steps, count, weight):
        w = self._micro_weight(micro_steps)
        if self.skip_nonfinite:
            accept = is_finite(grads)
        else:
            accept = ops.convert_to_tensor(True)
        new_acc = []
        for acc, g in zip(acc_values, grads, strict=False):
            if g is None:
                new_acc.append(acc)
                continue
            summed = ops.add(
                acc, ops.multiply(ops.cast(g, acc.dtype), ops.cast(w, acc.dtype))
            )
            new_acc.append(
                ops.where(accept, summed, acc) if self.skip_nonfinite else summed
            )
        one = ops.cast(accept, count.dtype)
        new_count = ops.add(count, one)
        new_weight = ops.add(weight, ops.where(accept, w, ops.zeros_like(w)))
        return new_acc, ops.add(micro_steps, 1), new_count, new_weight

    def _mean_grads(self, acc_values, weight, grads, variables, count=None):
        out = []
        for acc, g, v in zip(acc_values, grads, variables, strict=False):
            if g is None:
                out.append(None)
                continue
            value = ops.divide(acc, ops.cast(weight, acc.dtype))
            if not self.use_grad_mean:
                # The sum over the window's micro-batches (optax's
                # use_grad_mean=False): the mean times their number.
                value = ops.multiply(value, ops.cast(count, acc.dtype))
            out.append(ops.cast(value, v.dtype))
        return out

    # --- TensorFlow / PyTorch: assign in place ----------------------------

    def _stateful_apply(self, grads, trainable_variables):
        index = {id(v): i for i, v in enumerate(self._trainable_variables)}
        accs = [self.accumulators[index[id(v)]] for v in trainable_variables]
        new_acc, micro, count, weight = self._accumulate(
            [a.value for a in accs],
            grads,
            self.micro_steps.value,
            self.window_count.value,
            self.window_weight.value,
        )
        for a, value in zip(accs, new_acc, strict=False):
            a.assign(value)
        self.micro_steps.assign(micro)
        self.window_count.assign(count)
        self.window_weight.assign(weight)

        mask = [g is not None for g in grads]
        k = self._window_length(self.inner_optimizer.iterations)
        _replica_safe_cond(
            ops.greater_equal(self.window_count, k),
            lambda: self._apply_window(mask, trainable_variables, accs),
        )

    def _apply_window(self, mask, trainable_variables, accs):
        mean = self._mean_grads(
            [a.value for a in accs],
            self.window_weight.value,
            [True if m else None for m in mask],
            trainable_variables,
            self.window_count.value,
        )
        self.inner_optimizer.apply(mean, trainable_variables)
        for a in accs:
            a.assign(ops.zeros(a.shape, dtype=a.dtype))
        self.window_count.assign(0)
        self.window_weight.assign(0.0)

    # --- JAX: a pure function ---------------------------------------------

    def _stateless_apply(self, own_values, inner_values, grads, trainable_values):
        own_values = [ops.convert_to_tensor(v) for v in own_values]
        inner_values = [ops.convert_to_tensor(v) for v in inner_values]
        trainable_values = [ops.convert_to_tensor(v) for v in trainable_values]
        slot = {id(v): i for i, v in enumerate(self._variables)}
        acc_slots = [slot[id(a)] for a in self.accumulators]
        new_acc, micro, count, weight = self._accumulate(
            [own_values[i] for i in acc_slots],
            grads,
            own_values[slot[id(self.micro_steps)]],
            own_values[slot[id(self.window_count)]],
            own_values[slot[id(self.window_weight)]],
        )
        k = self.steps
        if callable(k):
            # k is a function of the real updates done: the inner
            # optimizer's `iterations`, among its variables.
            inner_ids = [id(v) for v in self.inner_optimizer.variables]
            updates = inner_values[inner_ids.index(id(self.inner_optimizer.iterations))]
            k = self._window_length(updates)

        def update():
            mean = self._mean_grads(
                new_acc, weight, grads, self._trainable_variables, count
            )
            new_trainable, new_inner = self.inner_optimizer.stateless_apply(
                inner_values, mean, trainable_values
            )
            zeros = [ops.zeros_like(a) for a in new_acc]
            return (
                list(new_trainable),
                list(new_inner),
                zeros,
                ops.zeros_like(count),
                ops.zeros_like(weight),
            )

        def wait():
            return trainable_values, inner_values, new_acc, count, weight

        new_trainable, new_inner, new_acc, count, weight = ops.cond(
            ops.greater_equal(count, k), update, wait
        )
        new_own = list(own_values)
        for i, value in zip(acc_slots, new_acc, strict=False):
            new_own[i] = value
        new_own[slot[id(self.micro_steps)]] = micro
        new_own[slot[id(self.window_count)]] = count
        new_own[slot[id(self.window_weight)]] = weight
        return new_trainable, new_own, new_inner

    # --- public helpers ---------------------------------------------------

    def flush(self):
        """Apply the unfinished window now, if it holds any micro-batch.

        Call it outside the train step, e.g. after `fit` returns, so that the
        last `< steps` micro-batches of training reach the weights. Does
        nothing before the first micro-batch or right after an update.

        Returns:
            True if an update was applied, False otherwise.
        """
        if not self.built or int(ops.convert_to_numpy(self.window_count)) == 0:
            return False
        variables = self._trainable_variables
        # After a scheduled `fit`, the window belongs to its last step.
        with _control.last_schedule(self):
            self._apply_window([True] * len(variables), variables, self.accumulators)
        return True

    def get_config(self):
        config = self._base_config()
        steps = self.steps
        if callable(steps):
            steps = keras.saving.serialize_keras_object(steps)
        config.update(
            {
                "steps": steps,
                "batch_size": self.batch_size,
                "num_samples": self.num_samples,
                "skip_nonfinite": self.skip_nonfinite,
                "use_grad_mean": self.use_grad_mean,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("steps"), dict):
            config["steps"] = keras.saving.deserialize_keras_object(
                config["steps"], custom_objects=custom_objects
            )
        return super().from_config(config, custom_objects=custom_objects)
