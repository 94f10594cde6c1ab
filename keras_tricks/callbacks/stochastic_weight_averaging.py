"""`StochasticWeightAveraging`: average the weights of the last epochs (SWA)."""

import numbers
import warnings

import keras
import numpy as np
from keras.src.utils import io_utils  # print_msg: absl logging when not interactive

from keras_tricks import _control
from keras_tricks.callbacks import _state
from keras_tricks.ensembles import batchnorm as _bn
from keras_tricks.schedules import _primitives as P

_ANNEAL = ("cos", "linear")


@keras.saving.register_keras_serializable(package="keras_tricks")
class SWALRSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The SWA phase's LR: from `initial_lr` to `swa_lr` over `anneal_steps`
    updates (half a cosine or a line), then `swa_lr`.

    Step 0 is the first update of the first averaged epoch. PyTorch's
    `SWALR` anneals once per epoch; this anneals per update over the same
    number of epochs (`anneal_steps = anneal_epochs * steps_per_epoch`).

    Example:

    ```python
    schedule = SWALRSchedule(initial_lr=0.1, swa_lr=0.01, anneal_steps=100)
    float(schedule(50))  # 0.055, halfway down the cosine
    ```
    """

    def __init__(self, initial_lr, swa_lr, anneal_steps, anneal_strategy="cos"):
        self.initial_lr = P.check_number("initial_lr", initial_lr, ge=0.0)
        self.swa_lr = P.check_number("swa_lr", swa_lr, gt=0.0)
        self.anneal_steps = P.check_int("anneal_steps", anneal_steps, ge=0)
        self.anneal_strategy = P.check_choice(
            "anneal_strategy", anneal_strategy, _ANNEAL
        )

    @property
    def max_lr(self):
        return max(self.initial_lr, self.swa_lr)

    def __call__(self, step):
        step = P.as_step(step)
        if self.anneal_steps == 0:
            return P.join(step, [1.0], [("constant", self.swa_lr, self.swa_lr)])
        return P.join(
            step,
            [float(self.anneal_steps), float(self.anneal_steps) + 1.0],
            [
                (self.anneal_strategy, self.initial_lr, self.swa_lr),
                ("constant", self.swa_lr, self.swa_lr),
            ],
        )

    def get_config(self):
        return {
            "initial_lr": self.initial_lr,
            "swa_lr": self.swa_lr,
            "anneal_steps": self.anneal_steps,
            "anneal_strategy": self.anneal_strategy,
        }


@keras.saving.register_keras_serializable(package="keras_tricks")
class StochasticWeightAveraging(keras.callbacks.Callback):
    """Stochastic Weight Averaging (Izmailov et al. 2018, arXiv 1803.05407).

    From epoch `start` on, the weights at the end of every `update_every`-th
    epoch are averaged with equal weights (a running mean kept on the host);
    when `fit` ends, the average is put into the model and, if the model has
    BatchNormalization layers, their moving statistics are recomputed with
    one pass over `bn_data` (`keras_tricks.ensembles.update_bn`, the
    equivalent of `torch.optim.swa_utils.update_bn`). The model then *is*
    the SWA model: evaluate it, or save it as a plain `.keras` file that
    loads without keras_tricks.

    The running average equals `torch.optim.swa_utils.AveragedModel`'s after
    the same sequence of weights (`update_parameters` at the same epoch ends):
    the trainable variables are averaged (PyTorch's parameters); the
    non-trainable ones (BatchNormalization statistics, frozen layers) follow
    the model, as in `AveragedModel(use_buffers=False)`, until `update_bn`
    recomputes the statistics.

    **The SWA learning-rate phase** (`swa_lr`, `anneal_epochs`,
    `anneal_strategy`, as in PyTorch's `SWALR` and Lightning's callback):
    with `swa_lr` set, from the first averaged epoch on the LR goes from its
    value at that moment to `swa_lr` over `anneal_epochs` epochs (per
    update, half a cosine or a line) and stays there. It runs in the
    compiled step through the package's LR control (`keras_tricks._control`):
    it takes over from a schedule callback (`OneCycle`, `WarmupCosine`, ...)
    for the rest of the `fit`, a plateau callback scales it, and it is handed
    back when `fit` ends. With `swa_lr=None` the LR is left alone: give the
    averaging phase a constant or cyclic LR yourself (an `SGDR` or
    `CyclicLR` callback), as the SWA paper does.

    Keras does not hand callbacks the data of `fit`: pass the training
    inputs as `bn_data` when the model has BatchNormalization (a model with
    BatchNormalization and `update_bn=True` but no `bn_data` raises at the
    start of `fit`). Weights saved during training (`ModelCheckpoint`) are
    the running weights, not the average; the average is written into the
    model when `fit` ends (also after `EarlyStopping` stops it; not when
    `fit` raises). `keras_tricks.callbacks.BackupAndRestore` saves the
    average and its count, so a resumed run averages the same epochs as an
    uninterrupted one. Each `fit` starts a new average.

    Args:
        start: float in (0, 1] (a fraction of `fit`'s epochs) or int >= 0 (an
            epoch index, from 0). The first averaged epoch is `int(start *
            epochs)` or `start`. Defaults to `0.75`.
        update_every: int. Average every `update_every`-th epoch from `start`.
            Defaults to `1`.
        update_bn: bool. Recompute the BatchNormalization statistics at the
            end. Defaults to `True`.
        bn_data: The training inputs for the BatchNormalization pass: an
            array, a tuple `(x, y)`, a `tf.data.Dataset`, a
            `keras.utils.PyDataset` or an iterable of batches (see
            `update_bn`). Defaults to `None`.
        bn_batch_size: int. Batch size of that pass when `bn_data` holds
            arrays (use the training batch size). Defaults to `32`.
        bn_steps: int or None. At most this many batches for the pass.
            Defaults to `None`.
        verbose: int. 1 prints when the average is swapped in.
            Defaults to `0`.
        swa_lr: float or None. The LR of the averaging phase. Defaults to
            `None` (the LR is not changed).
        anneal_epochs: int >= 0. Epochs to go from the current LR to
            `swa_lr`. Defaults to `10` (PyTorch's and Lightning's).
        anneal_strategy: `"cos"` or `"linear"`. Defaults to `"cos"`.

    Example:

    ```python
    import numpy as np
    import keras
    import keras_tricks

    x = np.random.rand(128, 8).astype("float32")
    y = np.random.rand(128, 1).astype("float32")
    model = keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(16),
        keras.layers.BatchNormalization(), keras.layers.Activation("relu"),
        keras.layers.Dense(1),
    ])
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    swa = keras_tricks.callbacks.StochasticWeightAveraging(
        start=0.5, bn_data=x, bn_batch_size=32
    )
    model.fit(x, y, epochs=8, batch_size=32, verbose=0, callbacks=[swa])
    swa.n_averaged  # 4: epochs 4..7
    model.save("/tmp/swa.keras")  # the averaged model, plain Keras
    ```
    """

    def __init__(
        self,
        start=0.75,
        update_every=1,
        update_bn=True,
        bn_data=None,
        bn_batch_size=32,
        bn_steps=None,
        verbose=0,
        swa_lr=None,
        anneal_epochs=10,
        anneal_strategy="cos",
    ):
        super().__init__()
        if swa_lr is not None:
            swa_lr = P.check_number("swa_lr", swa_lr, gt=0.0)
        self.swa_lr = swa_lr
        self.anneal_epochs = P.check_int("anneal_epochs", anneal_epochs, ge=0)
        self.anneal_strategy = P.check_choice("anneal_strategy", anneal_strategy, _ANNEAL)
        if isinstance(start, bool) or not isinstance(start, numbers.Real):
            raise ValueError(
                "Argument `start` must be a fraction of the epochs in (0, 1] or an "
                f"epoch index >= 0. Received: start={start!r}"
            )
        if isinstance(start, numbers.Integral):
            if start < 0:
                raise ValueError(
                    "Argument `start` must be a fraction of the epochs in (0, 1] or "
                    f"an epoch index >= 0. Received: start={start!r}"
                )
            start = int(start)
        else:
            start = float(start)
            if not 0.0 < start <= 1.0:
                raise ValueError(
                    "Argument `start` must be a fraction of the epochs in (0, 1] or "
                    f"an integer epoch index >= 0. Received: start={start!r}"
                )
        self.start = start
        for name, value in (("update_every", update_every), ("bn_batch_size", bn_batch_size)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(
                    f"Argument `{name}` must be a positive integer. "
                    f"Received: {name}={value!r}"
                )
        if bn_steps is not None and (
            isinstance(bn_steps, bool)
            or not isinstance(bn_steps, numbers.Integral)
            or bn_steps < 1
        ):
            raise ValueError(
                "Argument `bn_steps` must be a positive integer or None. "
                f"Received: bn_steps={bn_steps!r}"
            )
        if not isinstance(update_bn, (bool, np.bool_)):
            raise TypeError(
                f"Argument `update_bn` must be a bool. Received: update_bn={update_bn!r}"
            )
        if isinstance(verbose, bool) or not isinstance(verbose, numbers.Integral):
            raise ValueError(
                f"Argument `verbose` must be an integer. Received: verbose={verbose!r}"
            )
        self.update_every = int(update_every)
        self.update_bn = bool(update_bn)
        self.bn_data = bn_data
        self.bn_batch_size = int(bn_batch_size)
        self.bn_steps = None if bn_steps is None else int(bn_steps)
        self.verbose = int(verbose)
        self._reset()

    def _reset(self):
        self.n_averaged = 0
        self.averaged_epochs = []
        self._average = None
        self._pending_checked = False
        self.start_epoch = None
        self.swa_initial_lr = None
        self._lr_placed = False

    # --- fit ------------------------------------------------------------------

    def set_model(self, model):
        super().set_model(model)
        _state.register(model, self)

    def on_train_begin(self, logs=None):
        self._reset()
        epochs = (self.params or {}).get("epochs")
        if isinstance(self.start, float):
            if not epochs:
                raise ValueError(
                    "StochasticWeightAveraging cannot place a fractional `start` "
                    f"without fit's number of epochs. Received: start={self.start}, "
                    f"epochs={epochs}"
                )
            self.start_epoch = min(int(self.start * epochs), epochs - 1)
        else:
            self.start_epoch = self.start
        if (
            self.update_bn
            and self.bn_data is None
            and _bn.batch_norm_layers(self.model)
        ):
            raise ValueError(
                "StochasticWeightAveraging: the model has BatchNormalization layers "
                "and `update_bn=True`, but no `bn_data`: Keras does not give "
                "callbacks the data of `fit`. Pass the training inputs as "
                "`bn_data` (or `update_bn=False` to keep the statistics of the "
                "last epoch). Received: bn_data=None"
            )

    def on_epoch_begin(self, epoch, logs=None):
        if not self._pending_checked:
            self._pending_checked = True
            state = _state.take_pending(self._model, self)
            if state is not None:
                arrays = state.pop("_arrays", None)
                self.set_state(state)
                self.set_state_arrays(arrays)
        if self.swa_lr is not None and not self._lr_placed and epoch >= self.start_epoch:
            self._start_swa_lr(epoch)

    def _start_swa_lr(self, epoch):
        """Install the SWA phase's schedule (one trace, at the first averaged
        epoch); a resumed run continues it at the same step."""
        self._lr_placed = True
        optimizer = self.model.optimizer
        _control.take_control(optimizer, self.model)
        if self.swa_initial_lr is None:
            self.swa_initial_lr = _control.current_lr(optimizer)
        steps = (self.params or {}).get("steps")
        if not steps:
            raise ValueError(
                "StochasticWeightAveraging needs fit's steps per epoch for the "
                "`swa_lr` phase (the data has no length). Pass `steps_per_epoch` "
                f"to `fit`. Received: steps={steps}"
            )
        k, kind = _control.accumulation_steps(optimizer)
        if kind == "varying":
            # `GradientAccumulation(steps=callable)`: the updates of the
            # coming epoch, replayed (the annealing is sized from them).
            per_epoch = max(int(k.updates_after(steps)[-1]), 1)
        else:
            per_epoch = steps / k if kind else steps
        schedule = SWALRSchedule(
            self.swa_initial_lr,
            self.swa_lr,
            int(round(self.anneal_epochs * per_epoch)),
            self.anneal_strategy,
        )
        iterations = _control.iterations(optimizer)
        divisor = k if kind == "builtin" else 1
        if kind == "varying":
            origin = iterations - int(round((epoch - self.start_epoch) * per_epoch))
        else:
            origin = iterations - int(round((epoch - self.start_epoch) * steps / (k if kind == "wrapper" else 1)))
        program = _control.Program(
            schedule,
            divisor=divisor,
            peak=schedule.max_lr,
            key=("SWA",) + tuple(sorted(schedule.get_config().items())) + (divisor,),
        )
        _control.lease(optimizer, self)
        _control.install(self.model, program)
        _control.start(optimizer, origin, lr_on=True, scale=1.0)

    def _averaged_variables(self):
        return self.model.trainable_variables

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_epoch or (epoch - self.start_epoch) % self.update_every:
            return
        current = [
            np.array(keras.ops.convert_to_numpy(v)) for v in self._averaged_variables()
        ]
        if self._average is None or self.n_averaged == 0:
            self._average = current
        else:
            # `AveragedModel`'s update: lerp towards the new weights by
            # 1 / (n + 1), in the weights' dtype.
            for avg, w in zip(self._average, current):
                weight = np.asarray(1.0 / (self.n_averaged + 1), dtype=avg.dtype)
                avg += (w - avg) * weight
        self.n_averaged += 1
        self.averaged_epochs.append(int(epoch))
        _state.state_changed(self._model, self)

    def on_train_end(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and _control.owner(optimizer) is self:
            _control.release(optimizer, ended=True)
        if self._average is None:
            warnings.warn(
                "StochasticWeightAveraging: no epoch was averaged (training ended "
                f"before epoch {self.start_epoch}); the model keeps its last weights.",
                stacklevel=2,
            )
            return
        self.swap_in()

    def swap_in(self):
        """Put the average into the model and recompute its BN statistics.

        Called when `fit` ends; call it yourself after a `fit` that raised.
        """
        if self._average is None:
            raise ValueError(
                "StochasticWeightAveraging has no average yet. Received: "
                "n_averaged=0"
            )
        for variable, value in zip(self._averaged_variables(), self._average):
            variable.assign(value)
        batches = 0
        if self.update_bn and self.bn_data is not None:
            batches = _bn.update_bn(
                self.model, self.bn_data, batch_size=self.bn_batch_size,
                steps=self.bn_steps,
            )
        if self.verbose:
            io_utils.print_msg(
                f"StochasticWeightAveraging: average of {self.n_averaged} epochs "
                f"swapped in; BatchNormalization statistics from {batches} batches."
            )

    def averaged_weights(self):
        """The running average of the trainable variables (host arrays), or None."""
        if self._average is None:
            return None
        return [np.array(a) for a in self._average]

    # --- state that survives an interruption ------------------------------

    def get_state(self):
        """Count and epochs of the average, JSON-serializable."""
        return {
            "n_averaged": self.n_averaged,
            "epochs": list(self.averaged_epochs),
            "swa_initial_lr": self.swa_initial_lr,
        }

    def set_state(self, state):
        self.n_averaged = int(state.get("n_averaged", 0))
        self.averaged_epochs = [int(e) for e in state.get("epochs", [])]
        initial = state.get("swa_initial_lr")
        self.swa_initial_lr = None if initial is None else float(initial)

    def get_state_arrays(self):
        """The average, saved beside the state by `BackupAndRestore`."""
        if self._average is None:
            return None
        return list(self._average)

    def set_state_arrays(self, arrays):
        if arrays and self.n_averaged > 0:
            self._average = [np.array(a) for a in arrays]
        else:
            self._average = None
            self.n_averaged = 0
            self.averaged_epochs = []

    def get_config(self):
        # `bn_data` is data, not configuration: it is not serialized.
        return {
            "start": self.start,
            "update_every": self.update_every,
            "update_bn": self.update_bn,
            "bn_batch_size": self.bn_batch_size,
            "bn_steps": self.bn_steps,
            "verbose": self.verbose,
            "swa_lr": self.swa_lr,
            "anneal_epochs": self.anneal_epochs,
            "anneal_strategy": self.anneal_strategy,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
