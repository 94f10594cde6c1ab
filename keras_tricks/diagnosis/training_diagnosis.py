"""`TrainingDiagnosis`: a callback that names what is wrong with a run, and the fix."""

import time

import keras
import numpy as np
from keras.src.utils import (
    io_utils,  # print_msg: absl logging when interactive logging is off
)

from keras_tricks.diagnosis import _backend, _common
from keras_tricks.diagnosis import report as _report


@keras.saving.register_keras_serializable(package="keras_tricks")
class TrainingDiagnosis(keras.callbacks.Callback):
    """Watch a run and name what is wrong with it: optimization, bias, overfitting.

    Seed 001's decision flow, as a callback. It reads the epoch logs (`loss`,
    `val_loss`) every epoch and, every `probe_every` epochs and at the end,
    probes the model: the global gradient norm on one fixed batch
    (`probe_data`), the size of the weight updates relative to the weights
    (per optimizer step, averaged since the previous probe) and the fraction
    of non-finite weights and gradients. From these it writes a verdict:

    - *LR too high / diverging*: non-finite values, or the training loss rose
      more than `divergence_factor` times above its start (the loss of the
      probe batch before training) or its best (by more than
      `stall_progress` of the start), or it does not fall
      while the updates are larger than `max_update_ratio` of the weights;
    - *LR too low / stalled*: the loss fell by less than `stall_progress` of
      its start while the updates are below `min_update_ratio`;
    - *stuck at a flat region or saddle*: no progress with normal updates and
      (with `check_hessian=True`) a negative Hessian eigenvalue at the end;
    - *overfitting*: the validation loss rose `overfit_tolerance` above its
      best while the training loss kept falling, or it stays more than
      `overfit_gap` times a low training loss (the report gives the epoch
      the gap opens);
    - *not converged yet*: the training loss still falls more than
      `converged_tol` of its whole descent per epoch;
    - *model bias (under-fitting)*: converged, but the training loss is above
      `high_loss` times the prior's loss (the loss of the best constant
      prediction, from the labels of `probe_data`), or above `target_loss`;
    - *no problem found*.

    The verdict code (its index in `keras_tricks.diagnosis.VERDICTS`) is
    written into `logs["diagnosis"]` each epoch (a number, so History,
    CSVLogger and TensorBoard take it), and the last `DiagnosisReport` is in
    `report`; `verbose=1` prints it at the end of training. The thresholds
    are heuristics calibrated on small runs (see the "Diagnose before you
    tune" page): set `target_loss` when you know what a good loss is.

    Cost: no per-batch hook (decision 3). A probe, every `probe_every` epochs,
    is one forward and backward pass on the fixed batch, plus a host copy of
    the trainable weights (kept until the next probe, to measure the update
    size). `check_hessian=True` adds, only when the loss stalled, about
    `hessian_iter` Hessian-vector products at the end of training.

    Args:
        probe_data: tuple `(x, y)` or None. A batch to probe on (its first
            `probe_batch_size` rows are used). Without it, only the logs and
            the update sizes are watched. Defaults to `None`.
        probe_every: int. Probe every this many epochs (and at the end).
            Defaults to `5`.
        probe_batch_size: int. Rows of `probe_data` used. Defaults to `256`.
        window: int. Epochs that define "recent" for the convergence tests.
            Defaults to `3`.
        divergence_factor: float. A training loss this many times above its
            best means divergence. Defaults to `1.5`.
        stall_progress: float. A run whose training loss fell by less than
            this fraction of its start is stalled. Defaults to `0.05`.
        min_update_ratio: float. Per-step `|Δw| / |w|` below this means the
            LR is too low. Defaults to `1e-5`.
        max_update_ratio: float. Per-step `|Δw| / |w|` above this, without
            progress, means the LR is too high. Defaults to `1e-1`.
        high_loss: float. A converged training loss above this fraction of
            the prior's loss means model bias. Defaults to `0.25`.
        target_loss: float or None. When given, a converged training loss
            above it means model bias (instead of `high_loss`). Defaults to
            `None`.
        overfit_tolerance: float. The validation loss must rise this
            fraction above its best (sustained over `window` epochs).
            Defaults to `0.1`.
        overfit_gap: float. A validation loss this many times the training
            loss is overfitting even when it does not rise, if the gap also
            exceeds `overfit_margin`. Defaults to `2.0`.
        overfit_margin: float. That gap, as a fraction of the starting
            loss. Defaults to `0.05`.
        converged_tol: float. A training loss that still falls more than
            this fraction of its whole descent per epoch is not converged.
            Defaults to `0.02`.
        check_hessian: bool. When the loss stalled, compute the Hessian's
            extreme eigenvalues at the end (needs `probe_data`) to tell a
            saddle from a minimum. Defaults to `True`.
        curvature_tol: float. A Hessian eigenvalue below `-curvature_tol`
            times the largest one makes a saddle (trained networks show
            small negative eigenvalues everywhere). Defaults to `0.05`.
        flat_grad_norm: float. A stalled run whose gradient norm on the
            probe batch is at most this sits at a critical point (a saddle,
            or a minimum: the Hessian tells). Defaults to `1e-6`.
        hessian_iter: int. Lanczos iterations for that check. Defaults to `30`.
        verbose: int. 1 prints the report at the end of training. Defaults
            to `1`.

    Example:

    ```python
    import keras
    import numpy as np
    from sklearn.datasets import load_digits
    from keras_tricks.callbacks import TrainingDiagnosis

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-7), loss="sparse_categorical_crossentropy")
    diagnosis = TrainingDiagnosis(probe_data=(x, y), verbose=0)
    model.fit(x, y, epochs=3, callbacks=[diagnosis], verbose=0)
    print(diagnosis.report)  # optimization: LR too low / stalled
    ```
    """

    def __init__(
        self,
        probe_data=None,
        probe_every=5,
        probe_batch_size=256,
        window=3,
        divergence_factor=1.5,
        stall_progress=0.05,
        min_update_ratio=1e-5,
        max_update_ratio=1e-1,
        high_loss=0.25,
        target_loss=None,
        overfit_tolerance=0.1,
        overfit_gap=2.0,
        overfit_margin=0.05,
        converged_tol=0.02,
        check_hessian=True,
        curvature_tol=0.05,
        flat_grad_norm=1e-6,
        hessian_iter=30,
        verbose=1,
    ):
        super().__init__()
        if probe_data is not None and (
            not isinstance(probe_data, (tuple, list)) or len(probe_data) != 2
        ):
            raise ValueError(
                "Argument `probe_data` must be a tuple (x, y) or None. "
                f"Received: probe_data of type {type(probe_data).__name__}"
            )
        _common.check_int("probe_every", probe_every, 1)
        _common.check_int("probe_batch_size", probe_batch_size, 1)
        _common.check_int("window", window, 1)
        _common.check_real("divergence_factor", divergence_factor, low=1)
        _common.check_real("stall_progress", stall_progress, low=0, high=1)
        _common.check_real("min_update_ratio", min_update_ratio, low=0)
        _common.check_real("max_update_ratio", max_update_ratio, low=0)
        if max_update_ratio <= min_update_ratio:
            raise ValueError(
                "Argument `max_update_ratio` must be > min_update_ratio. Received: "
                f"max_update_ratio={max_update_ratio!r}, min_update_ratio={min_update_ratio!r}"
            )
        _common.check_real("high_loss", high_loss, low=0)
        _common.check_real("target_loss", target_loss, low=0, allow_none=True)
        _common.check_real("overfit_tolerance", overfit_tolerance, low=0)
        _common.check_real("overfit_gap", overfit_gap, low=1)
        _common.check_real("overfit_margin", overfit_margin, low=0)
        _common.check_real("converged_tol", converged_tol, low=0, high=1)
        _common.check_real("curvature_tol", curvature_tol, low=0, high=1)
        _common.check_real("flat_grad_norm", flat_grad_norm, low=0)
        _common.check_int("hessian_iter", hessian_iter, 2)
        self.probe_data = probe_data
        self.probe_every = int(probe_every)
        self.probe_batch_size = int(probe_batch_size)
        self.window = int(window)
        self.divergence_factor = float(divergence_factor)
        self.stall_progress = float(stall_progress)
        self.min_update_ratio = float(min_update_ratio)
        self.max_update_ratio = float(max_update_ratio)
        self.high_loss = float(high_loss)
        self.target_loss = None if target_loss is None else float(target_loss)
        self.overfit_tolerance = float(overfit_tolerance)
        self.overfit_gap = float(overfit_gap)
        self.overfit_margin = float(overfit_margin)
        self.converged_tol = float(converged_tol)
        self.curvature_tol = float(curvature_tol)
        self.flat_grad_norm = float(flat_grad_norm)
        self.check_hessian = bool(check_hessian)
        self.hessian_iter = int(hessian_iter)
        self.verbose = verbose
        self._reset()

    def get_config(self):
        # probe_data is data, not configuration: it is not serialized.
        return {
            "probe_every": self.probe_every,
            "probe_batch_size": self.probe_batch_size,
            "window": self.window,
            "divergence_factor": self.divergence_factor,
            "stall_progress": self.stall_progress,
            "min_update_ratio": self.min_update_ratio,
            "max_update_ratio": self.max_update_ratio,
            "high_loss": self.high_loss,
            "target_loss": self.target_loss,
            "overfit_tolerance": self.overfit_tolerance,
            "overfit_gap": self.overfit_gap,
            "overfit_margin": self.overfit_margin,
            "converged_tol": self.converged_tol,
            "check_hessian": self.check_hessian,
            "curvature_tol": self.curvature_tol,
            "flat_grad_norm": self.flat_grad_norm,
            "hessian_iter": self.hessian_iter,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def _thresholds(self):
        return {
            "window": self.window,
            "divergence_factor": self.divergence_factor,
            "stall_progress": self.stall_progress,
            "min_update_ratio": self.min_update_ratio,
            "max_update_ratio": self.max_update_ratio,
            "high_loss": self.high_loss,
            "overfit_tolerance": self.overfit_tolerance,
            "overfit_gap": self.overfit_gap,
            "overfit_margin": self.overfit_margin,
            "converged_tol": self.converged_tol,
            "flat_grad_norm": self.flat_grad_norm,
        }

    def _reset(self):
        self.history = {}
        self.probes = []
        self.report = None
        self.prior_loss = None
        self.initial_loss = None
        self.hessian = None
        self.probe_seconds = 0.0
        self._weights = None
        self._iterations = 0
        self._derivatives = None
        self._batch = None
        self._last_probe_epoch = None

    # -- the probe ---------------------------------------------------------

    def _flat_weights(self):
        values = [keras.ops.convert_to_numpy(v.value) for v in self.model.trainable_variables]
        if not values:
            return np.zeros((0,))
        return np.concatenate([np.ravel(v).astype("float64") for v in values])

    def _optimizer_iterations(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return 0
        return int(keras.ops.convert_to_numpy(optimizer.iterations))

    def _probe(self, epoch):
        began = time.perf_counter()
        weights = self._flat_weights()
        iterations = self._optimizer_iterations()
        record = {"epoch": epoch, "iterations": iterations}
        non_finite = int(np.size(weights) - np.count_nonzero(np.isfinite(weights)))
        size = int(np.size(weights))
        if self._weights is not None and iterations > self._iterations:
            norm = float(np.linalg.norm(self._weights))
            delta = float(np.linalg.norm(weights - self._weights))
            steps = iterations - self._iterations
            record["update_ratio"] = delta / max(norm, 1e-12) / steps
        record["weight_norm"] = float(np.linalg.norm(weights))
        if self._derivatives is not None:
            loss, grads = self._derivatives.value_and_grad()
            g = np.concatenate([np.ravel(a).astype("float64") for a in grads])
            non_finite += int(g.size - np.count_nonzero(np.isfinite(g)))
            size += int(g.size)
            record["probe_loss"] = loss
            record["grad_norm"] = float(np.linalg.norm(g))
        record["non_finite"] = non_finite / max(size, 1)
        self._weights, self._iterations = weights, iterations
        record["seconds"] = time.perf_counter() - began
        self.probes.append(record)
        self._last_probe_epoch = epoch
        self.probe_seconds += record["seconds"]
        return record

    # -- callback hooks ----------------------------------------------------

    def on_train_begin(self, logs=None):
        # Instances are reused across `fit` calls: each fit is judged alone.
        self._reset()
        began = time.perf_counter()
        self._weights = self._flat_weights()
        self._iterations = self._optimizer_iterations()
        if self.probe_data is not None:
            x, y = self.probe_data
            self._batch = (
                _common.head(x, self.probe_batch_size),
                _common.head(y, self.probe_batch_size),
            )
            self.prior_loss = _common.prior_loss(
                _common.loss_kind(self.model), self._batch[1]
            )
            self._derivatives = _backend.loss_derivatives(self.model, *self._batch)
            self.initial_loss, _ = self._derivatives.value_and_grad()
        self.probe_seconds += time.perf_counter() - began

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        for key, value in logs.items():
            if key == "diagnosis":
                continue
            try:
                self.history.setdefault(key, []).append(float(np.mean(value)))
            except (TypeError, ValueError):
                continue
        if (epoch + 1) % self.probe_every == 0:
            self._probe(epoch)
        self.report = self._diagnose()
        logs["diagnosis"] = self.report.code

    def _diagnose(self, hessian=None):
        return _report.diagnose(
            self.history,
            self.probes,
            prior_loss=self.prior_loss,
            initial_loss=self.initial_loss,
            hessian=hessian,
            target_loss=self.target_loss,
            **self._thresholds(),
        )

    def on_train_end(self, logs=None):
        epochs = len(self.history.get("loss", []))
        if epochs == 0:
            return
        if self._last_probe_epoch != epochs - 1:
            self._probe(epochs - 1)
        report = self._diagnose()
        if (
            self.check_hessian
            and self._batch is not None
            and report.verdict in ("model_bias", "saddle")
        ):
            from keras_tricks.diagnosis.hessian import critical_point

            began = time.perf_counter()
            try:
                self.hessian = critical_point(
                    self.model, *self._batch, grad_tol=1e30,
                    curvature_tol=self.curvature_tol, max_iter=self.hessian_iter,
                )
            except Exception as error:  # a diagnosis must not fail a finished fit
                self.hessian = None
                report.evidence.append(f"the Hessian check failed: {error}")
            self.probe_seconds += time.perf_counter() - began
            if self.hessian is not None:
                report = self._diagnose(self.hessian)
        self.report = report
        self._derivatives = None  # drop the compiled functions and the batch
        self._weights = None
        if self.verbose:
            io_utils.print_msg(str(report))
