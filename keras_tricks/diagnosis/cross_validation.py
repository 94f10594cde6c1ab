"""`cross_validate`: N-fold cross-validation for Keras models (seed 001).

The folds come from scikit-learn's splitters; each fold trains a fresh model
from `build_model()` on its training rows only, so whatever is fitted to the
data (class weights, oversampling) never sees the fold's validation rows.
"""

import gc
import numbers

import keras
import numpy as np
from keras.src.utils import (
    io_utils,  # print_msg: absl logging when interactive logging is off
)
from sklearn import model_selection

_STRATIFY = ("auto", True, False)
_OWN_KEYS = ("validation_data", "validation_split", "x", "y")


def _rows(data, idx):
    return keras.tree.map_structure(lambda a: np.asarray(a)[idx], data)


def _n_rows(x):
    return len(keras.tree.flatten(x)[0])


def _is_classification(y):
    """Integer labels, or one-hot rows: what StratifiedKFold can stratify."""
    if isinstance(y, (list, tuple, dict)):
        return False, None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        if np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1):
            return True, y.argmax(axis=1)
        return False, None
    flat = y.reshape(len(y), -1)
    if flat.shape[1] != 1:
        return False, None
    flat = flat[:, 0]
    if np.issubdtype(flat.dtype, np.integer) or np.issubdtype(flat.dtype, np.bool_):
        return True, flat
    if np.issubdtype(flat.dtype, np.floating) and np.all(flat == np.round(flat)):
        return len(np.unique(flat)) <= max(2, int(np.sqrt(len(flat)))), flat
    return False, None


def _splitter(cv, y, stratify, groups, seed):
    is_class, labels = _is_classification(y)
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        if cv < 2:
            raise ValueError(f"Argument `cv` must be an int >= 2 or a splitter. Received: cv={cv!r}")
        use_strata = stratify is True or (stratify == "auto" and is_class)
        if stratify is True and not is_class:
            raise ValueError(
                "Argument `stratify=True` needs class labels (integers or one-hot rows) in `y`. "
                f"Received: y with dtype {np.asarray(y).dtype} and shape {np.shape(y)}"
            )
        if groups is not None:
            splitter = model_selection.GroupKFold(n_splits=int(cv))
            return splitter, labels
        cls = model_selection.StratifiedKFold if use_strata else model_selection.KFold
        return cls(n_splits=int(cv), shuffle=True, random_state=seed), labels
    if not (hasattr(cv, "split") and hasattr(cv, "get_n_splits")):
        raise TypeError(
            "Argument `cv` must be an int or a scikit-learn splitter (with `split`). "
            f"Received: cv={cv!r}"
        )
    return cv, labels


class CrossValidationResult:
    """What `cross_validate` returns: per-fold histories and scores, and their summary.

    Attributes:
        histories: list of dict. Each fold's `History.history`.
        scores: list of dict. Each fold's `model.evaluate(..., return_dict=True)`
            on its validation rows.
        folds: list of `(train_idx, val_idx)` index arrays.
        mean: dict. The mean of each score over the folds.
        std: dict. Their standard deviation (`ddof=0`, like
            `numpy.std`, what scikit-learn's examples print).
    """

    def __init__(self, histories, scores, folds):
        self.histories = histories
        self.scores = scores
        self.folds = folds
        keys = scores[0].keys() if scores else []
        self.mean = {k: float(np.mean([s[k] for s in scores])) for k in keys}
        self.std = {k: float(np.std([s[k] for s in scores])) for k in keys}

    def summary(self):
        """A table: one row per fold, then mean ± sd."""
        keys = list(self.mean)
        lines = ["| fold | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for i, s in enumerate(self.scores):
            lines.append(f"| {i} | " + " | ".join(f"{s[k]:.4g}" for k in keys) + " |")
        lines.append(
            "| mean ± sd | "
            + " | ".join(f"{self.mean[k]:.4g} ± {self.std[k]:.2g}" for k in keys)
            + " |"
        )
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

    def plot(self, metric="loss", ax=None):
        """Each fold's validation curve of `metric` (and its training curve, dashed).

        Args:
            metric: str. A logged quantity. Defaults to `"loss"`.
            ax: matplotlib `Axes` or None. Defaults to `None`.

        Returns:
            The matplotlib `Axes`.
        """
        from keras_tricks.plotting import _pyplot

        plt = _pyplot()
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.8))
        for i, h in enumerate(self.histories):
            if metric not in h:
                raise ValueError(
                    f"Argument `metric` must be logged by fit ({sorted(h)}). Received: metric={metric!r}"
                )
            line = ax.plot(h.get(f"val_{metric}", h[metric]), label=f"fold {i}")[0]
            ax.plot(h[metric], color=line.get_color(), ls="--", alpha=0.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"validation {metric} (train dashed)")
        score = self.mean.get(metric)
        if score is not None:
            ax.set_title(f"{metric}: {score:.4g} ± {self.std[metric]:.2g} over {len(self.scores)} folds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return ax

    def __repr__(self):
        return f"CrossValidationResult(folds={len(self.scores)}, mean={self.mean})"


def cross_validate(
    build_model,
    x,
    y,
    cv=5,
    fit_kwargs=None,
    callbacks=None,
    stratify="auto",
    groups=None,
    seed=None,
    verbose=1,
):
    """Cross-validate a Keras model: a fresh model per fold, scores mean ± sd.

    For fold `i` (in the splitter's order) this does exactly what this loop
    does, so its scores are the same as a hand-written one's::

        keras.backend.clear_session()
        if seed is not None:
            keras.utils.set_random_seed(seed + i)
        model = build_model()
        history = model.fit(x[train], y[train], validation_data=(x[val], y[val]),
                            callbacks=..., **fit_kwargs)
        scores.append(model.evaluate(x[val], y[val], return_dict=True, verbose=0))

    With an int `cv`, the folds are `StratifiedKFold(cv, shuffle=True,
    random_state=seed)` when `y` holds class labels (integers or one-hot
    rows; `stratify="auto"`), `KFold(cv, shuffle=True, random_state=seed)`
    otherwise, and `GroupKFold(cv)` when `groups` is given. Any
    scikit-learn splitter can be passed instead (`KFold`, `StratifiedKFold`,
    `GroupKFold`, `TimeSeriesSplit`, ...).

    No leakage: a few `fit_kwargs` are fitted to each fold's training rows
    only. `class_weight="balanced"` becomes
    `keras_tricks.imbalance.class_weights` of the fold's training labels;
    `sample_weight` (an array over all rows) is sliced to the fold;
    `oversample` (a `sampling_strategy`, e.g. `"max"`) trains on a
    `keras_tricks.imbalance.OversampledDataset` over the fold's training
    rows (with `batch_size` and the fold's seed). The validation rows are
    never oversampled or weighted.

    Each fold's model is dropped and `keras.backend.clear_session()` is
    called before the next fold is built (the models are not returned; keep
    what you need from a callback or `build_model`).

    Args:
        build_model: callable. Returns a fresh *compiled* model each call.
        x: NumPy array (or a list / dict of arrays) of inputs.
        y: NumPy array of targets.
        cv: int or scikit-learn splitter. Defaults to `5`.
        fit_kwargs: dict or None. Passed to `fit` (`epochs`, `batch_size`,
            `verbose` (default 0), ...), plus `class_weight="balanced"`,
            `sample_weight` and `oversample` as above. Defaults to `None`.
        callbacks: list or callable or None. A list is passed to every
            fold's `fit` (its callbacks reset in `on_train_begin`); a
            callable is called once per fold (`callbacks()` or
            `callbacks(fold)`) and must return fresh instances. Defaults to
            `None`.
        stratify: `"auto"`, True or False. Only for an int `cv`. Defaults to
            `"auto"`.
        groups: array or None. Group labels for `GroupKFold` (or for the
            splitter passed). Defaults to `None`.
        seed: int or None. Seeds the split and, as `seed + fold`, each fold's
            model (`keras.utils.set_random_seed`). Defaults to `None`.
        verbose: int. 1 shows a progress bar across the folds and the
            summary. Defaults to `1`.

    Returns:
        A `CrossValidationResult`: `histories`, `scores`, `folds`, `mean`,
        `std`, `summary()`, `plot()`.

    Example:

    ```python
    import keras
    from sklearn.datasets import load_breast_cancer
    import keras_tricks

    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)

    def build_model():
        model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(1, activation="sigmoid")])
        model.compile("adam", loss="binary_crossentropy", metrics=["accuracy"])
        return model

    result = keras_tricks.cross_validate(build_model, x, y, cv=3, seed=0,
                                         fit_kwargs={"epochs": 5, "batch_size": 64})
    print(result.mean["accuracy"], result.std["accuracy"])
    ```
    """
    if not callable(build_model):
        raise TypeError(
            f"Argument `build_model` must be a callable returning a compiled model. "
            f"Received: build_model={build_model!r}"
        )
    if stratify not in _STRATIFY:
        raise ValueError(f"Argument `stratify` must be 'auto', True or False. Received: stratify={stratify!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"Argument `seed` must be an int or None. Received: seed={seed!r}")
    fit_kwargs = dict(fit_kwargs or {})
    for key in _OWN_KEYS:
        if key in fit_kwargs:
            raise ValueError(
                f"Argument `fit_kwargs` must not hold {key!r}: cross_validate passes "
                f"each fold's rows itself. Received: fit_kwargs[{key!r}]={fit_kwargs[key]!r}"
            )
    if callbacks is not None and not callable(callbacks) and not isinstance(callbacks, (list, tuple)):
        raise TypeError(
            f"Argument `callbacks` must be a list, a callable returning one, or None. "
            f"Received: callbacks={callbacks!r}"
        )
    fit_kwargs.setdefault("verbose", 0)
    class_weight = fit_kwargs.pop("class_weight", None)
    sample_weight = fit_kwargs.pop("sample_weight", None)
    oversample = fit_kwargs.pop("oversample", None)
    n = _n_rows(x)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight)
        if len(sample_weight) != n:
            raise ValueError(
                f"Argument `fit_kwargs['sample_weight']` must have one weight per row ({n}). "
                f"Received: {len(sample_weight)} weights"
            )
    splitter, labels = _splitter(cv, y, stratify, groups, None if seed is None else int(seed))
    strata = labels if labels is not None else np.zeros(n)
    folds = list(splitter.split(np.zeros((n, 1)), strata, groups))
    progress = keras.utils.Progbar(len(folds), unit_name="fold") if verbose else None
    histories, scores = [], []
    for i, (train, val) in enumerate(folds):
        keras.backend.clear_session()
        if seed is not None:
            keras.utils.set_random_seed(int(seed) + i)
        model = build_model()
        if not isinstance(model, keras.Model) or getattr(model, "optimizer", None) is None:
            raise TypeError(
                "Argument `build_model` must return a compiled keras.Model. "
                f"Received: {model!r}"
            )
        x_train, y_train = _rows(x, train), _rows(y, train)
        x_val, y_val = _rows(x, val), _rows(y, val)
        kwargs = dict(fit_kwargs)
        if class_weight is not None:
            if isinstance(class_weight, str):
                if class_weight != "balanced":
                    raise ValueError(
                        "Argument `fit_kwargs['class_weight']` must be a dict or 'balanced'. "
                        f"Received: {class_weight!r}"
                    )
                from keras_tricks.imbalance import class_weights

                kwargs["class_weight"] = class_weights(y_train)
            else:
                kwargs["class_weight"] = class_weight
        if sample_weight is not None:
            kwargs["sample_weight"] = sample_weight[train]
        if callable(callbacks):
            try:
                fold_callbacks = callbacks(i)
            except TypeError:
                fold_callbacks = callbacks()
        else:
            fold_callbacks = list(callbacks or [])
        if oversample is not None:
            from keras_tricks.imbalance import OversampledDataset

            data = OversampledDataset(
                x_train, y_train,
                batch_size=kwargs.pop("batch_size", 32),
                sample_weight=kwargs.pop("sample_weight", None),
                seed=None if seed is None else int(seed) + i,
                sampling_strategy=oversample,
            )
            history = model.fit(data, validation_data=(x_val, y_val),
                                callbacks=fold_callbacks, **kwargs)
        else:
            history = model.fit(x_train, y_train, validation_data=(x_val, y_val),
                                callbacks=fold_callbacks, **kwargs)
        histories.append(dict(history.history))
        scores.append({
            k: float(np.mean(v))
            for k, v in model.evaluate(x_val, y_val, return_dict=True, verbose=0).items()
        })
        del model, history
        gc.collect()
        if progress is not None:
            progress.update(i + 1, [(k, v) for k, v in scores[-1].items()])
    keras.backend.clear_session()
    result = CrossValidationResult(histories, scores, folds)
    if verbose:
        io_utils.print_msg(result.summary())
    return result
