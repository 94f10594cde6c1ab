"""`SnapshotEnsemble`: keep the weights at the end of each SGDR / cyclic LR cycle."""

import numbers
import warnings

import keras
import numpy as np
from keras import ops
from keras.src.utils import io_utils  # print_msg: absl logging when not interactive

from keras_tricks.callbacks import _state
from keras_tricks.ensembles import predict as _predict


def _accumulation_per_update(optimizer, count):
    """Batches per schedule step for a schedule callback (its `count` rule)."""
    k = 1
    seen = set()
    while optimizer is not None and id(optimizer) not in seen:
        seen.add(id(optimizer))
        builtin = getattr(optimizer, "gradient_accumulation_steps", None)
        if builtin and int(builtin) > 1 and count == "updates":
            k *= int(builtin)
        wrapper_steps = getattr(optimizer, "steps", None)
        if isinstance(wrapper_steps, numbers.Integral) and not isinstance(
            wrapper_steps, bool
        ) and hasattr(optimizer, "inner_optimizer"):
            k *= int(wrapper_steps)
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return k


@keras.saving.register_keras_serializable(package="keras_tricks")
class SnapshotEnsemble(keras.callbacks.Callback):
    """Keep a snapshot of the weights at the end of each LR cycle.

    Snapshot ensembles (Huang et al. 2017, arXiv 1704.00109): train once with
    a cyclic schedule (SGDR warm restarts, or a cyclic LR); at the end of each
    cycle, where the LR is at its minimum, the model sits in a local minimum;
    averaging the predictions of the last `n` such snapshots gives an
    ensemble for the cost of one training.

    The callback knows where cycles end from the schedule itself, through
    its `cycle_end_steps(total_steps)` method
    (`keras_tricks.schedules.SGDR`, `keras_tricks.schedules.CyclicLR`):

    * pass a keras_tricks schedule callback (`keras_tricks.callbacks.SGDR`,
      `keras_tricks.callbacks.CyclicLR`): the callback reads the schedule that
      callback sized for this `fit` (its `schedule` property; step 0 is the
      first update of epoch 0 of the `fit`);
    * or pass the schedule object you gave the optimizer as its
      `learning_rate`: its step is the optimizer's `iterations`.

    A snapshot is taken at the end of each epoch in which a cycle ended (once
    per epoch, no per-batch hook). Size the cycles in whole epochs
    (`first_cycle_epochs=1, t_mul=2`, or a `step_size` of half an epoch's
    multiple) so that every cycle ends with an epoch: the snapshot is then
    exactly the model at the LR minimum. A cycle that ends inside an epoch
    is snapshot at that epoch's end, with a warning.

    Snapshots are kept on the host (NumPy arrays, `model.get_weights()`
    lists): the device holds one model. Only the last `n` are kept. Predict
    with `predict(x)` (one snapshot on the device at a time, see
    `keras_tricks.ensembles.ensemble_predict`) or build one saveable Keras
    model with `as_model()`. The snapshots are cleared when a new `fit`
    begins; `keras_tricks.callbacks.BackupAndRestore` saves them (in its
    `.npz` file) and a resumed run gets them back.

    Args:
        schedule: A keras_tricks schedule callback, or a schedule with a
            `cycle_end_steps` method (the optimizer's `learning_rate`).
        n: int or None. Keep the last `n` snapshots; None keeps all.
            Defaults to `None`.
        verbose: int. 1 prints a line per snapshot. Defaults to `0`.

    Example:

    ```python
    import numpy as np
    import keras
    import keras_tricks

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.rand(64, 8).astype("float32")
    y = np.random.randint(0, 3, size=64)
    sgdr = keras_tricks.callbacks.SGDR(max_lr=0.1, first_cycle_epochs=1, t_mul=2.0)
    snapshots = keras_tricks.callbacks.SnapshotEnsemble(sgdr, n=3)
    model.fit(x, y, epochs=7, batch_size=16, verbose=0,
              callbacks=[sgdr, snapshots])
    snapshots.snapshot_epochs  # [0, 2, 6]: cycles of 1, 2 and 4 epochs
    probs = snapshots.predict(x, activation="softmax")
    ensemble = snapshots.as_model(activation="softmax")  # saveable
    ```
    """

    def __init__(self, schedule, n=None, verbose=0):
        super().__init__()
        if isinstance(schedule, keras.callbacks.Callback):
            if not hasattr(schedule, "schedule"):
                raise TypeError(
                    "Argument `schedule` must be a keras_tricks schedule callback "
                    "(SGDR, CyclicLR) or a schedule with `cycle_end_steps`. "
                    f"Received: schedule={type(schedule).__name__}"
                )
        elif not callable(getattr(schedule, "cycle_end_steps", None)):
            raise TypeError(
                "Argument `schedule` must be a keras_tricks schedule callback "
                "(SGDR, CyclicLR) or a schedule with a `cycle_end_steps` method "
                "(keras_tricks.schedules.SGDR, CyclicLR). "
                f"Received: schedule={schedule!r}"
            )
        if n is not None and (
            isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1
        ):
            raise ValueError(
                f"Argument `n` must be a positive integer or None. Received: n={n!r}"
            )
        if isinstance(verbose, bool) or not isinstance(verbose, numbers.Integral):
            raise ValueError(
                f"Argument `verbose` must be an integer. Received: verbose={verbose!r}"
            )
        self.schedule_source = schedule
        self.n = None if n is None else int(n)
        self.verbose = int(verbose)
        self._reset()

    def _reset(self):
        self.snapshots = []
        self.snapshot_epochs = []
        self.snapshot_steps = []
        self._pending_checked = False
        self._warned_mid_epoch = False
        self._epoch_begin_iterations = None

    # --- the cycle ends of this fit -----------------------------------------

    def _is_callback_source(self):
        return isinstance(self.schedule_source, keras.callbacks.Callback)

    def _iterations(self):
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def _epoch_span(self, epoch):
        """(begin, end) of this epoch on the schedule's step axis, or None."""
        if not self._is_callback_source():
            if self._epoch_begin_iterations is None:
                return None
            return self._epoch_begin_iterations, self._iterations()
        steps = (self.params or {}).get("steps")
        if steps is None:
            return None
        counts = getattr(self.schedule_source, "_updates_at", None)
        if counts is not None:
            # `GradientAccumulation(steps=callable)`: the schedule callback
            # replayed the updates of each epoch.
            last = len(counts) - 1
            return (
                int(counts[min(epoch * steps, last)]),
                int(counts[min((epoch + 1) * steps, last)]),
            )
        count = getattr(self.schedule_source, "count", "updates")
        per_epoch = steps / _accumulation_per_update(self.model.optimizer, count)
        return int(np.floor(epoch * per_epoch)), int(np.floor((epoch + 1) * per_epoch))

    def _schedule(self):
        if self._is_callback_source():
            return self.schedule_source.schedule
        return self.schedule_source

    # --- fit ------------------------------------------------------------------

    def set_model(self, model):
        super().set_model(model)
        _state.register(model, self)

    def on_train_begin(self, logs=None):
        self._reset()
        if self._is_callback_source() and (self.params or {}).get("steps") is None:
            raise ValueError(
                "SnapshotEnsemble needs the number of steps per epoch to place the "
                "cycle ends of a schedule callback: pass `steps_per_epoch` to "
                "`fit`, or give the schedule itself as `schedule`. Received: "
                "steps=None"
            )

    def on_epoch_begin(self, epoch, logs=None):
        if not self._pending_checked:
            self._pending_checked = True
            state = _state.take_pending(self._model, self)
            if state is not None:
                arrays = state.pop("_arrays", None)
                self.set_state(state)
                self.set_state_arrays(arrays)
        if not self._is_callback_source():
            self._epoch_begin_iterations = self._iterations()

    def on_epoch_end(self, epoch, logs=None):
        schedule = self._schedule()
        span = self._epoch_span(epoch)
        if schedule is None or span is None:
            return
        begin, end = span
        ended = [b for b in schedule.cycle_end_steps(end) if b > begin]
        if not ended:
            return
        if ended[-1] != end and not self._warned_mid_epoch:
            self._warned_mid_epoch = True
            warnings.warn(
                f"SnapshotEnsemble: a cycle ended at update {ended[-1]}, inside "
                f"epoch {epoch} (which ends at update {end}); its snapshot is the "
                "model at the end of the epoch, not at the LR minimum. Size the "
                "cycles in whole epochs (e.g. `first_cycle_epochs=1`) to snapshot "
                "at the minimum. (Warned once per fit.)",
                stacklevel=2,
            )
        self.snapshots.append([np.array(w) for w in self.model.get_weights()])
        self.snapshot_epochs.append(int(epoch))
        self.snapshot_steps.append(int(ended[-1]))
        if self.n is not None and len(self.snapshots) > self.n:
            del self.snapshots[: -self.n]
            del self.snapshot_epochs[: -self.n]
            del self.snapshot_steps[: -self.n]
        if self.verbose:
            io_utils.print_msg(
                f"Epoch {epoch + 1}: snapshot {len(self.snapshots)} kept "
                f"(cycle ended at update {ended[-1]})."
            )
        _state.state_changed(self._model, self)

    # --- using the snapshots --------------------------------------------------

    def _check_ready(self):
        if not self.snapshots:
            raise ValueError(
                "SnapshotEnsemble has no snapshot yet: train with it (a cycle must "
                "end during `fit`). Received: 0 snapshots"
            )

    def predict(self, x, batch_size=32, activation=None, **kwargs):
        """Average the snapshots' predictions (see `ensemble_predict`)."""
        self._check_ready()
        return _predict.ensemble_predict(
            self.model, self.snapshots, x, batch_size=batch_size,
            activation=activation, **kwargs,
        )

    def as_model(self, activation=None, name=None):
        """One saveable Keras model averaging the snapshots (see `ensemble_model`)."""
        self._check_ready()
        return _predict.ensemble_model(
            self.model, self.snapshots, activation=activation, name=name
        )

    # --- state that survives an interruption ------------------------------

    def get_state(self):
        """Epochs and steps of the kept snapshots, JSON-serializable."""
        return {
            "epochs": list(self.snapshot_epochs),
            "steps": list(self.snapshot_steps),
        }

    def set_state(self, state):
        self.snapshot_epochs = [int(e) for e in state.get("epochs", [])]
        self.snapshot_steps = [int(s) for s in state.get("steps", [])]

    def get_state_arrays(self):
        """The snapshots, flattened, saved beside the state by `BackupAndRestore`."""
        if not self.snapshots:
            return None
        return [w for weights in self.snapshots for w in weights]

    def set_state_arrays(self, arrays):
        count = len(self.snapshot_epochs)
        if not arrays or count == 0:
            self.snapshots = []
            return
        per = len(arrays) // count
        self.snapshots = [
            [np.array(a) for a in arrays[i * per : (i + 1) * per]]
            for i in range(count)
        ]

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule_source),
            "n": self.n,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)
