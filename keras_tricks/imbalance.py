"""Class imbalance: balanced weights, index oversampling and output-bias priors.

Three ways to stop a model from ignoring its rare classes, each one line inside
`model.fit`:

- `class_weights` / `sample_weights`: sklearn's "balanced" weights
  `n_samples / (n_classes * bincount(y))`, in the form `fit` takes.
- `oversample_indices` / `OversampledDataset` / `oversampled_tf_dataset`: keep
  every original sample and add indices drawn with replacement from the rare
  classes, redrawn every epoch. Only indices are resampled: `x` is never copied.
- `output_bias` / `bias_initializer` (and `keras_tricks.layers.OutputHead`): start
  the output layer at the class prior, so the first loss is the prior's entropy
  instead of `log K`.

Everything here runs on NumPy outside the train step and works with every Keras
backend; only `oversampled_tf_dataset` needs TensorFlow (imported lazily).
"""

import math
import numbers

import keras
import numpy as np

__all__ = [
    "PriorBias",
    "OversampledDataset",
    "bias_initializer",
    "class_weights",
    "oversample_indices",
    "oversampled_tf_dataset",
    "output_bias",
    "sample_weights",
]

_NAMED_STRATEGIES = ("max", "all", "auto", "not majority", "not minority", "minority")
_ACTIVATIONS = ("linear", "sigmoid", "softmax")


def _rng(name, seed):
    """`np.random.default_rng(seed)`, with the package's error for a bad seed."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (
        isinstance(seed, bool)
        or not isinstance(seed, numbers.Integral)
        or seed < 0
    ):
        raise ValueError(
            f"Argument `{name}` must be an int >= 0, a `np.random.Generator` or "
            f"None. Received: {name}={seed!r}"
        )
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------
# Label parsing
# --------------------------------------------------------------------------


class _Labels:
    """Parsed class labels.

    Attributes:
        kind: "int", "string", "onehot" or "multilabel".
        codes: int array `(n,)`, index of each sample's class in `classes`
            (None for multi-label).
        classes: the class values: label values (int), sorted labels (string)
            or column indices (one-hot, multi-label).
        keys: the keys `fit(class_weight=...)` needs for each class.
        matrix: the `(n, K)` 0/1 matrix for multi-label, else None.
    """

    def __init__(self, kind, codes, classes, keys, matrix=None):
        self.kind = kind
        self.codes = codes
        self.classes = classes
        self.keys = keys
        self.matrix = matrix

    @property
    def counts(self):
        if self.kind == "multilabel":
            return self.matrix.sum(axis=0)
        return np.bincount(self.codes, minlength=len(self.classes))


def _to_numpy(y, name):
    if y is None:
        raise ValueError(
            f"Argument `{name}` must be an array of labels. Received: {name}=None"
        )
    y = np.asarray(
        keras.ops.convert_to_numpy(y)
        if not isinstance(y, (list, tuple, np.ndarray))
        else y
    )
    if y.ndim == 0 or y.shape[0] == 0:
        raise ValueError(
            f"Argument `{name}` must hold at least one sample. "
            f"Received: {name} with shape {y.shape}"
        )
    return y


def _parse_labels(y, name="y"):
    """Reads int / string labels, one-hot or multi-label indicator matrices."""
    y = _to_numpy(y, name)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        if y.dtype.kind in "OUS":
            classes, codes = np.unique(
                y.astype(str) if y.dtype.kind == "O" else y, return_inverse=True
            )
            return _Labels("string", codes.ravel(), classes, list(range(len(classes))))
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                bad = y[~(np.isfinite(y) & (y == np.round(y)))][:3]
                raise ValueError(
                    f"Argument `{name}` must hold integer class labels, strings, a "
                    "one-hot matrix or a multi-label 0/1 matrix. Received float "
                    f"values such as {bad.tolist()}"
                )
            y = y.astype(np.int64)
        if y.dtype.kind not in "iub":
            raise ValueError(
                f"Argument `{name}` must hold integer or string class labels. "
                f"Received: dtype={y.dtype}"
            )
        classes = np.unique(y)
        codes = np.searchsorted(classes, y)
        return _Labels("int", codes, classes, [int(c) for c in classes])
    if y.ndim == 2:
        m = y.astype(np.float64)
        if not np.all((m == 0) | (m == 1)):
            raise ValueError(
                f"Argument `{name}` as a 2D array must be a one-hot or multi-label "
                "indicator matrix of 0s and 1s. Received values such as "
                f"{np.unique(m[(m != 0) & (m != 1)])[:3].tolist()}"
            )
        if np.all(m.sum(axis=1) == 1):
            labels = m.argmax(axis=1)
            classes, codes = np.unique(labels, return_inverse=True)
            return _Labels("onehot", codes.ravel(), classes, [int(c) for c in classes])
        cols = np.arange(m.shape[1])
        return _Labels("multilabel", None, cols, [int(c) for c in cols], matrix=m)
    raise ValueError(
        f"Argument `{name}` must be 1D (class labels) or 2D (one-hot or multi-label). "
        f"Received: {name} with shape {y.shape}"
    )


def _require_two_classes(labels, name="y"):
    if labels.kind == "multilabel":
        pos = labels.matrix.sum(axis=0)
        n = labels.matrix.shape[0]
        bad = np.flatnonzero((pos == 0) | (pos == n))
        if bad.size:
            raise ValueError(
                f"Argument `{name}` must have both 0s and 1s in every column of a "
                f"multi-label matrix. Received: columns {bad.tolist()} hold only one value"
            )
        return
    if len(labels.classes) < 2:
        raise ValueError(
            f"Argument `{name}` must hold at least two classes to balance. "
            f"Received: only class {labels.classes.tolist()}"
        )


def _check_weights(w, n, name="sample_weight"):
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(
            f"Argument `{name}` must be a 1D array with one weight per sample ({n}). "
            f"Received: {name} with shape {w.shape}"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        bad = w[~np.isfinite(w) | (w < 0)][:3]
        raise ValueError(
            f"Argument `{name}` must be finite and >= 0. Received values such as "
            f"{bad.tolist()}"
        )
    if w.sum() <= 0:
        raise ValueError(
            f"Argument `{name}` must not be all zeros. Received: {name}.sum()=0"
        )
    return w


# --------------------------------------------------------------------------
# Balanced weights
# --------------------------------------------------------------------------


def class_weights(y, return_classes=False):
    """Balanced class weights in the form `model.fit(class_weight=...)` takes.

    For single-label targets the weights are sklearn's
    `compute_class_weight("balanced")`: `n_samples / (n_classes * count_c)`, so
    every class carries the same total weight and the mean weight per sample is 1.

    The keys are what Keras looks up: Keras turns a batch's targets into one
    integer per sample (the label itself for integer labels, `argmax` for one-hot
    rows) and reads `class_weight[label]`.

    - Integer labels: the keys are the label values.
    - One-hot rows: the keys are column indices.
    - String labels: Keras cannot train on strings, so encode them first as the
      index into the sorted unique labels (`np.unique(y, return_inverse=True)` or
      `sklearn.preprocessing.LabelEncoder`, which give the same codes). The keys
      are those indices; `return_classes=True` also returns the labels, so
      `classes[key]` is the label of `key`.
    - Multi-label 0/1 matrices: the weight of column `k` is the positive weight
      `n_neg_k / n_pos_k` (PyTorch's `BCEWithLogitsLoss(pos_weight=...)`): a
      positive in column `k` then counts as much as all its negatives together.
      Keras's `fit(class_weight=...)` cannot apply it (it takes the `argmax` of
      2D targets); use `sample_weights(y)`, which returns per-element weights.

    Args:
        y: Array-like. Integer or string labels `(n,)`, a one-hot matrix
            `(n, K)` or a multi-label 0/1 matrix `(n, K)`.
        return_classes: bool. Also return the class values, in key order.
            Defaults to False.

    Returns:
        A dict `{key: weight}` (Python ints and floats), or
        `(dict, classes)` when `return_classes=True`.

    Raises:
        ValueError: `y` is empty, has only one class (a multi-label column with
            only 0s or only 1s), or is not a label array.

    Example:

    ```python
    y = np.array([0] * 90 + [1] * 10)
    keras_tricks.imbalance.class_weights(y)
    # {0: 0.5555..., 1: 5.0}
    model.fit(x, y, class_weight=keras_tricks.imbalance.class_weights(y))
    ```
    """
    labels = _parse_labels(y)
    _require_two_classes(labels)
    if labels.kind == "multilabel":
        pos = labels.matrix.sum(axis=0)
        neg = labels.matrix.shape[0] - pos
        weights = neg / pos
    else:
        from sklearn.utils.class_weight import compute_class_weight

        weights = compute_class_weight(
            "balanced", classes=np.arange(len(labels.classes)), y=labels.codes
        )
    result = {k: float(w) for k, w in zip(labels.keys, weights, strict=True)}
    if return_classes:
        return result, labels.classes
    return result


def sample_weights(y, class_weight=None):
    """Per-sample weights: each sample gets the weight of its class.

    Use it where `fit(class_weight=...)` is not accepted (multi-output models,
    generators, `OversampledDataset(sample_weight=...)`) or to compute the prior
    the loss sees (`output_bias(y, ..., sample_weight=sample_weights(y))`).

    For multi-label matrices it returns per-element weights `(n, K)`: the
    positive weight `n_neg_k / n_pos_k` where `y[i, k] == 1`, 1 elsewhere. Keras
    applies a `(n, K)` sample weight element by element only when the loss keeps
    that axis: give the model outputs and targets a trailing axis of 1 (shape
    `(n, K, 1)`), so that binary cross-entropy reduces over that axis only.

    Args:
        y: Array-like. Labels as accepted by `class_weights`.
        class_weight: dict or None. Weights keyed like `class_weights(y)`
            returns them (for string labels the label itself is also accepted
            as key); a class missing from the dict gets 1.0, as in Keras.
            None uses the balanced weights. Defaults to None.

    Returns:
        A float32 array `(n,)`, or `(n, K)` for multi-label targets.

    Raises:
        ValueError: `y` is empty or has one class only, or `class_weight` holds
            a negative or non-finite weight.

    Example:

    ```python
    y = np.array([0, 0, 0, 1])
    keras_tricks.imbalance.sample_weights(y)
    # array([0.6666667, 0.6666667, 0.6666667, 2.], dtype=float32)
    ```
    """
    labels = _parse_labels(y)
    if class_weight is None:
        _require_two_classes(labels)
        weights = class_weights(y)
    else:
        if not isinstance(class_weight, dict):
            raise ValueError(
                "Argument `class_weight` must be a dict {class: weight} or None. "
                f"Received: class_weight={class_weight!r}"
            )
        weights = {}
        for key, cls in zip(labels.keys, labels.classes, strict=True):
            w = class_weight.get(
                key, class_weight.get(cls.item() if hasattr(cls, "item") else cls, 1.0)
            )
            weights[key] = w
        values = np.asarray(list(weights.values()), dtype=np.float64)
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(
                "Argument `class_weight` must hold finite weights >= 0. "
                f"Received: class_weight={class_weight}"
            )
    per_class = np.asarray([weights[k] for k in labels.keys], dtype=np.float32)
    if labels.kind == "multilabel":
        m = labels.matrix.astype(np.float32)
        return m * per_class[None, :] + (1.0 - m)
    return per_class[labels.codes]


# --------------------------------------------------------------------------
# Oversampling
# --------------------------------------------------------------------------


def _target_counts(labels, sampling_strategy):
    """Number of samples each class should have after oversampling."""
    counts = labels.counts
    n_major = int(counts.max())
    major = int(np.argmax(counts))
    minor = int(np.argmin(counts))
    strategy = sampling_strategy
    if callable(strategy):
        strategy = strategy(labels.classes[labels.codes])
    if isinstance(strategy, str):
        if strategy not in _NAMED_STRATEGIES:
            raise ValueError(
                f"Argument `sampling_strategy` must be one of {list(_NAMED_STRATEGIES)}, "
                "a float ratio, a dict of target counts or a callable. "
                f"Received: sampling_strategy={strategy!r}"
            )
        targets = counts.copy()
        for c in range(len(counts)):
            if strategy in ("max", "all"):
                chosen = True
            elif strategy in ("auto", "not majority"):
                chosen = c != major
            elif strategy == "not minority":
                chosen = c != minor
            else:  # "minority"
                chosen = c == minor
            if chosen:
                targets[c] = n_major
        return targets
    if isinstance(strategy, (float, np.floating)) and not isinstance(strategy, bool):
        if len(counts) != 2:
            raise ValueError(
                "Argument `sampling_strategy` can be a float only for binary labels; "
                f"use a dict for {len(counts)} classes. Received: sampling_strategy={strategy}"
            )
        if not (strategy > 0 and math.isfinite(strategy)):
            raise ValueError(
                "Argument `sampling_strategy` as a float must be > 0 (the wanted "
                f"minority / majority ratio). Received: sampling_strategy={strategy}"
            )
        targets = counts.copy()
        want = int(n_major * strategy)
        if want < counts[1 - major]:
            raise ValueError(
                "Argument `sampling_strategy` would under-sample: it asks for "
                f"{want} minority samples and there are {int(counts[1 - major])}. "
                f"Received: sampling_strategy={strategy}"
            )
        targets[1 - major] = want
        return targets
    if isinstance(strategy, dict):
        lookup = {}
        for idx, (key, cls) in enumerate(zip(labels.keys, labels.classes, strict=True)):
            lookup[key] = idx
            lookup[cls.item() if hasattr(cls, "item") else cls] = idx
        targets = counts.copy()
        for key, want in strategy.items():
            if key not in lookup:
                raise ValueError(
                    f"Argument `sampling_strategy` names class {key!r}, which is not in "
                    f"the labels {labels.classes.tolist()}. Received: sampling_strategy={strategy}"
                )
            idx = lookup[key]
            if int(want) < counts[idx]:
                raise ValueError(
                    f"Argument `sampling_strategy` would under-sample class {key!r}: it "
                    f"asks for {int(want)} samples and there are {int(counts[idx])}. "
                    f"Received: sampling_strategy={strategy}"
                )
            targets[idx] = int(want)
        return targets
    raise ValueError(
        f"Argument `sampling_strategy` must be one of {list(_NAMED_STRATEGIES)}, a "
        "float ratio, a dict of target counts or a callable. "
        f"Received: sampling_strategy={sampling_strategy!r}"
    )


def _oversampling_plan(y, sampling_strategy, name="y"):
    labels = _parse_labels(y, name)
    if labels.kind == "multilabel":
        raise ValueError(
            f"Argument `{name}` is a multi-label matrix; oversampling needs one class "
            "per sample. Pass `labels=` with one class per sample (e.g. the rarest "
            "positive label of each row), or balance with `sample_weights(y)`."
        )
    _require_two_classes(labels, name)
    targets = _target_counts(labels, sampling_strategy)
    extra = targets - labels.counts
    n = labels.codes.shape[0]
    dtype = _index_dtype(n + int(extra.sum()))
    # Only the classes that grow keep a list of their members.
    members = [
        np.flatnonzero(labels.codes == c).astype(dtype) if e > 0 else None
        for c, e in enumerate(extra)
    ]
    return n, members, extra


def _index_dtype(size):
    return np.int32 if size < 2**31 else np.int64


def _draw(n, members, extra, rng, out=None):
    """Writes 0..n-1 then the drawn extras into `out` (reused across epochs)."""
    total = n + int(extra.sum())
    if out is None:
        out = np.empty(total, dtype=_index_dtype(total))
    out[:n] = np.arange(n, dtype=out.dtype)
    pos = n
    for idx, e in zip(members, extra, strict=True):
        if e > 0:
            out[pos : pos + e] = idx[rng.integers(0, len(idx), size=int(e))]
            pos += int(e)
    return out


def oversample_indices(y, sampling_strategy="max", seed=None):
    """Indices that oversample the rare classes, without touching the data.

    Keeps every original index `0..n-1` once and appends, for each class, indices
    of that class drawn with replacement until the class reaches its target
    count (the "Bag of Tricks" recipe). Index `x[idx]`, `y[idx]` to get the
    resampled set, or better let `OversampledDataset` gather batch by batch.

    The class counts equal those of `imblearn.over_sampling.RandomOverSampler`
    for the same `sampling_strategy`.

    Args:
        y: Array-like. Integer or string labels `(n,)` or one-hot rows `(n, K)`.
        sampling_strategy: Which classes grow, and to what size:
            `"max"` / `"all"`: every class up to the majority count (default);
            `"auto"` / `"not majority"`: all but the majority class (the same
            counts); `"not minority"`; `"minority"`: only the rarest class;
            a float `r` (binary only): the minority grows to
            `int(r * n_majority)`; a dict `{class: target_count}` (class as
            in `y`, or the column index for one-hot rows); or a callable
            `f(y) -> dict`. Defaults to `"max"`.
        seed: int, `np.random.Generator` or None. Defaults to None.

    Returns:
        An index array of length `sum(target counts)` (int32, or int64 past
        2**31 entries): `0..n-1` first, then the drawn indices (not shuffled).

    Raises:
        ValueError: `y` is empty, has one class, is multi-label, or the
            strategy would remove samples (a target below a class's count).

    Example:

    ```python
    y = np.array([0] * 8 + [1] * 2)
    idx = keras_tricks.imbalance.oversample_indices(y, seed=0)
    np.bincount(y[idx])  # array([8, 8])
    ```
    """
    n, members, extra = _oversampling_plan(y, sampling_strategy)
    rng = _rng("seed", seed)
    return _draw(n, members, extra, rng)


def _flatten(structure):
    return keras.tree.flatten(structure)


def _as_array(a, name):
    if isinstance(a, np.ndarray):
        return a  # views and memmaps pass through: never copied
    if hasattr(a, "__array__") or isinstance(a, (list, tuple)):
        return np.asarray(a)
    return np.asarray(keras.ops.convert_to_numpy(a))


def _standardize_structure(data, name):
    """Maps leaves to numpy arrays; lists become lists, dicts stay dicts."""
    if data is None:
        return None
    if isinstance(data, dict):
        return {k: _as_array(v, name) for k, v in data.items()}
    if (
        isinstance(data, (list, tuple))
        and len(data)
        and all(isinstance(v, np.ndarray) or hasattr(v, "shape") for v in data)
    ):
        return [_as_array(v, name) for v in data]
    return _as_array(data, name)


def _gather(structure, idx):
    return keras.tree.map_structure(lambda a: np.take(a, idx, axis=0), structure)


class OversampledDataset(keras.utils.PyDataset):
    """A `PyDataset` that oversamples rare classes by index, batch by batch.

    Each epoch it draws `oversample_indices(labels, sampling_strategy)` afresh
    (in `on_epoch_end`), shuffles them and serves batches gathered from the
    original arrays with `np.take`: only the current batch is copied, never
    `x`, so it works for arrays that barely fit in memory and for `np.memmap`.
    The number of batches is the same every epoch; the last partial batch is
    kept.

    This is also the way to balance classes where Keras rejects
    `fit(class_weight=...)`: models with several outputs (`y` a list or
    dict), Python generators, torch `DataLoader`s and grain datasets, and
    together with `sample_weight`. Oversampling makes the
    class prior the loss sees uniform (for `"max"`): if you also initialize the
    output bias, compute it from that distribution (see `output_bias`), not
    from the raw labels.

    Args:
        x: A NumPy array, or a list / dict of arrays for multi-input models.
        y: Targets: an array, or a list / dict of arrays for multi-output
            models.
        batch_size: int. Samples per batch. Defaults to 32.
        sample_weight: Array `(n,)` (or a structure like `y`) of per-sample
            weights, gathered with each batch. Defaults to None.
        shuffle: bool. Shuffle the indices each epoch; otherwise they are in
            ascending order, each sample followed by its copies. Defaults to
            True. (Keras's `fit(shuffle=True)` also shuffles the batch order.)
        seed: int or None. Seeds the draws and the shuffling. Defaults to None.
        sampling_strategy: See `oversample_indices`. Defaults to `"max"`.
        labels: Array-like or None. One class per sample, used for balancing.
            Needed when `y` is a list or dict, or is not a class label array
            itself. Defaults to None (use `y`).
        **pydataset_kwargs: `workers`, `use_multiprocessing`,
            `max_queue_size`, passed to `keras.utils.PyDataset`. Prefer
            threads (`workers > 1`): `use_multiprocessing=True` pickles the
            dataset, arrays included, to every worker process.

    Raises:
        ValueError: `x`, `y`, `labels` or `sample_weight` differ in length,
            labels are missing for a nested `y`, `batch_size` < 1, weights are
            negative or NaN, or the strategy would under-sample.

    Example:

    ```python
    x = np.random.rand(1000, 8).astype("float32")
    y = (np.arange(1000) % 20 == 0).astype("int32")  # 1:19
    ds = keras_tricks.imbalance.OversampledDataset(x, y, batch_size=64, seed=0)
    model.fit(ds, epochs=5)  # each epoch sees 950 positives and 950 negatives
    ```
    """

    def __init__(
        self,
        x,
        y,
        batch_size=32,
        sample_weight=None,
        shuffle=True,
        seed=None,
        sampling_strategy="max",
        labels=None,
        **pydataset_kwargs,
    ):
        super().__init__(**pydataset_kwargs)
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1
        ):
            raise ValueError(
                f"Argument `batch_size` must be a positive int. Received: batch_size={batch_size!r}"
            )
        if y is None:
            raise ValueError(
                "Argument `y` must be given: oversampling needs targets. Received: y=None"
            )
        self.x = _standardize_structure(x, "x")
        self.y = _standardize_structure(y, "y")
        self.sample_weight = _standardize_structure(sample_weight, "sample_weight")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.sampling_strategy = sampling_strategy

        n = None
        for name, struct in (
            ("x", self.x),
            ("y", self.y),
            ("sample_weight", self.sample_weight),
        ):
            if struct is None:
                continue
            for leaf in _flatten(struct):
                if leaf.ndim == 0:
                    raise ValueError(
                        f"Argument `{name}` must hold arrays with a batch axis. Received a scalar."
                    )
                if n is None:
                    n = leaf.shape[0]
                elif leaf.shape[0] != n:
                    raise ValueError(
                        f"Arguments `x`, `y` and `sample_weight` must have the same number "
                        f"of samples. Received: {name} with {leaf.shape[0]} samples, "
                        f"expected {n}"
                    )
        if self.sample_weight is not None:
            for leaf in _flatten(self.sample_weight):
                if not np.all(np.isfinite(leaf)) or np.any(leaf < 0):
                    raise ValueError(
                        "Argument `sample_weight` must be finite and >= 0. Received "
                        f"values such as {leaf[~np.isfinite(leaf) | (leaf < 0)][:3].tolist()}"
                    )
        if labels is None:
            if isinstance(self.y, (list, dict)):
                raise ValueError(
                    "Argument `labels` is needed when `y` is a list or dict (a "
                    "multi-output model): pass one class label per sample. "
                    f"Received: labels=None, y of type {type(y).__name__}"
                )
            labels = self.y
        labels = _to_numpy(labels, "labels")
        if labels.shape[0] != n:
            raise ValueError(
                "Argument `labels` must have one label per sample of `x`. "
                f"Received: labels with {labels.shape[0]} samples, x with {n}"
            )
        _, self._members, self._extra = _oversampling_plan(
            labels, sampling_strategy, "labels"
        )
        self._n = n
        self._rng = _rng("seed", seed)
        self._redraw()

    def _redraw(self):
        idx = _draw(self._n, self._members, self._extra, self._rng)
        if self.shuffle:
            self._rng.shuffle(idx)
        else:
            idx.sort()
        self._indices = idx

    @property
    def indices(self):
        """The sample indices of the current epoch, in batch order (read-only view)."""
        view = self._indices.view()
        view.flags.writeable = False
        return view

    @property
    def num_samples(self):
        """Samples per epoch after oversampling."""
        return int(self._indices.shape[0])

    def __len__(self):
        return math.ceil(self.num_samples / self.batch_size)

    def __getitem__(self, index):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(
                f"Batch index {index} out of range for {len(self)} batches"
            )
        idx = self._indices[index * self.batch_size : (index + 1) * self.batch_size]
        batch = (_gather(self.x, idx), _gather(self.y, idx))
        if self.sample_weight is not None:
            batch = batch + (_gather(self.sample_weight, idx),)
        return batch

    def on_epoch_end(self):
        self._redraw()


def oversampled_tf_dataset(
    x,
    y,
    batch_size=32,
    sample_weight=None,
    shuffle=True,
    seed=None,
    sampling_strategy="max",
    labels=None,
):
    """A `tf.data.Dataset` of oversampled batches that never copies `x`.

    The dataset wraps an `OversampledDataset` with
    `tf.data.Dataset.from_generator`: each pass over the dataset (each epoch
    of `fit`) redraws the extra indices and gathers batch by batch from the
    original NumPy arrays. (`from_tensor_slices(x)` would copy `x` into a
    TensorFlow constant, which is why it is not used.) The dataset declares
    its cardinality, so Keras knows the steps per epoch. It needs TensorFlow
    installed (imported here, not at package import) and can be fed to `fit`
    on any backend; on a multi-worker `tf.distribute` setup each worker runs
    its own generator, like any `from_generator` dataset.

    Args:
        x: A NumPy array, or a list / dict of arrays.
        y: Targets: an array, or a list / dict of arrays.
        batch_size: int. Samples per batch. Defaults to 32.
        sample_weight: Per-sample weights or None. Defaults to None.
        shuffle: bool. Shuffle the indices each epoch. Defaults to True.
        seed: int or None. Seeds the draws. Defaults to None.
        sampling_strategy: See `oversample_indices`. Defaults to `"max"`.
        labels: One class per sample, needed for a nested `y`. Defaults to
            None (use `y`).

    All arguments are as in `OversampledDataset`.

    Returns:
        A `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)` batches.

    Example:

    ```python
    ds = keras_tricks.imbalance.oversampled_tf_dataset(x, y, batch_size=64)
    model.fit(ds.prefetch(2), epochs=5)
    ```
    """
    import tensorflow as tf

    source = OversampledDataset(
        x,
        y,
        batch_size=batch_size,
        sample_weight=sample_weight,
        shuffle=shuffle,
        seed=seed,
        sampling_strategy=sampling_strategy,
        labels=labels,
    )

    def to_tuples(s):
        if isinstance(s, dict):
            return {k: to_tuples(v) for k, v in s.items()}
        if isinstance(s, list):
            return tuple(to_tuples(v) for v in s)
        return s

    def spec(a):
        return tf.TensorSpec(shape=(None,) + a.shape[1:], dtype=tf.as_dtype(a.dtype))

    signature = to_tuples(keras.tree.map_structure(spec, source[0]))
    passes = [0]

    def generator():
        if passes[0] > 0:
            source.on_epoch_end()
        passes[0] += 1
        for i in range(len(source)):
            yield to_tuples(source[i])

    ds = tf.data.Dataset.from_generator(generator, output_signature=signature)
    return ds.apply(tf.data.experimental.assert_cardinality(len(source)))


# --------------------------------------------------------------------------
# Output bias
# --------------------------------------------------------------------------


def output_bias(y, activation="linear", sample_weight=None, eps=1e-7, num_classes=None):
    """The output-layer bias that makes the untrained model predict the prior.

    With a zero (or small) kernel, the model's first prediction is then the
    label distribution, and the first loss is the prior's entropy instead of
    `log K` (softmax) or `log 2` (sigmoid): the first steps are not spent
    learning the class frequencies ("init well", Karpathy; TensorFlow's
    imbalanced-data tutorial; "Bag of Tricks").

    - `"linear"` (MSE): `b = mean(y)` per output column; the first loss is
      `Var(y)`.
    - `"sigmoid"`: `b = log(p / (1 - p))` per column, `p` the mean of the 0/1
      column clipped to `[eps, 1 - eps]` (binary or multi-label).
    - `"softmax"`: `b_k = log(p_k + eps) - log(K)` (a constant shift changes
      nothing).

    Compute the bias from the distribution training actually sees. Balanced
    class weights or `"max"` oversampling make that distribution uniform,
    and the right bias is then (up to a shift) zero; pass the weights as
    `sample_weight` (`sample_weights(y)` for balanced weights, which is also
    the prior under `"max"` oversampling) to get it right for any weighting.

    Args:
        y: Array-like. Targets: for `"linear"`, real values `(n,)` or
            `(n, units)`; for `"sigmoid"`, 0/1 (or probabilities) `(n,)` or
            `(n, K)`; for `"softmax"`, integer / string labels `(n,)` or
            one-hot (or soft) rows `(n, K)`.
        activation: str. `"linear"`, `"sigmoid"` or `"softmax"` (`None` means
            linear). Defaults to `"linear"`.
        sample_weight: Array `(n,)` or None. Per-sample weights of the loss.
            Defaults to None.
        eps: float. Keeps the logs finite for classes with `p = 0` or `1`.
            Defaults to 1e-7.
        num_classes: int or None. Softmax with integer labels only: the number
            of outputs `K` (labels are indices `0..K-1`; a class absent from
            `y` gets `log(eps) - log(K)`). Defaults to `max(y) + 1`.

    Returns:
        A float32 NumPy array `(units,)`.

    Raises:
        ValueError: `y` is empty, has the wrong form for the activation,
            `sample_weight` is negative, NaN, all zeros or of another length.

    Example:

    ```python
    y = np.array([0] * 99 + [1])
    keras_tricks.imbalance.output_bias(y, "sigmoid")  # array([-4.59512])
    ```
    """
    if activation is None:
        activation = "linear"
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"Argument `activation` must be one of {list(_ACTIVATIONS)}. "
            f"Received: activation={activation!r}"
        )
    if not (isinstance(eps, (int, float)) and 0 < eps < 0.5):
        raise ValueError(f"Argument `eps` must be in (0, 0.5). Received: eps={eps!r}")
    y = _to_numpy(y, "y")
    n = y.shape[0]
    w = None if sample_weight is None else _check_weights(sample_weight, n)

    def weighted_mean(m):
        m = m.astype(np.float64)
        if w is None:
            return m.mean(axis=0)
        return (w[:, None] * m).sum(axis=0) / w.sum()

    if activation == "softmax":
        if y.ndim == 2 and y.shape[1] > 1:
            m = y.astype(np.float64)
            if (
                np.any(m < 0)
                or not np.all(np.isfinite(m))
                or not np.allclose(m.sum(axis=1), 1.0, atol=1e-3)
            ):
                raise ValueError(
                    "Argument `y` for a softmax head must be integer labels or rows "
                    "that sum to 1 (one-hot or soft labels). Received rows summing to "
                    f"{np.unique(np.round(m.sum(axis=1), 3))[:3].tolist()}"
                )
            if num_classes is not None and num_classes != m.shape[1]:
                raise ValueError(
                    f"Argument `num_classes` must match the {m.shape[1]} columns of `y`. "
                    f"Received: num_classes={num_classes}"
                )
        else:
            labels = _parse_labels(y)
            if labels.kind == "string":
                codes, k = labels.codes, len(labels.classes)
            else:
                values = labels.classes[labels.codes]
                if values.min() < 0:
                    raise ValueError(
                        "Argument `y` for a softmax head must hold class indices >= 0. "
                        f"Received: min(y)={int(values.min())}"
                    )
                codes, k = values, int(values.max()) + 1
            if num_classes is not None:
                if num_classes < k:
                    raise ValueError(
                        "Argument `num_classes` must be > every label. "
                        f"Received: num_classes={num_classes}, max label {k - 1}"
                    )
                k = int(num_classes)
            m = np.zeros((n, k))
            m[np.arange(n), codes] = 1.0
        p = weighted_mean(m)
        bias = np.log(p + eps) - np.log(len(p))
    else:
        m = y.reshape(n, -1) if y.ndim > 1 else y[:, None]
        if m.dtype.kind not in "iubf":
            raise ValueError(
                f"Argument `y` for a {activation} head must be numeric. Received: dtype={m.dtype}"
            )
        if not np.all(np.isfinite(m)):
            raise ValueError(
                f"Argument `y` must be finite for a {activation} head. Received NaN or inf"
            )
        if activation == "linear":
            bias = weighted_mean(m)
        else:
            if np.any(m < 0) or np.any(m > 1):
                raise ValueError(
                    "Argument `y` for a sigmoid head must be 0/1 (or probabilities in "
                    f"[0, 1]). Received values in [{m.min()}, {m.max()}]"
                )
            p = np.clip(weighted_mean(m), eps, 1.0 - eps)
            bias = np.log(p) - np.log1p(-p)
    return bias.astype(np.float32)


@keras.saving.register_keras_serializable(package="keras_tricks")
class PriorBias(keras.initializers.Initializer):
    """Initializer that sets a bias vector to fixed values (e.g. a class prior).

    `keras.initializers.Constant` takes one scalar; this takes a vector, checks
    that its length matches the layer's units and serializes it.

    Args:
        bias: Sequence of floats. The bias values, one per unit.

    Example:

    ```python
    init = keras_tricks.imbalance.PriorBias([-4.6])
    head = keras.layers.Dense(1, "sigmoid", bias_initializer=init)
    ```
    """

    def __init__(self, bias):
        values = np.asarray(bias, dtype=np.float64).ravel()
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise ValueError(
                f"Argument `bias` must be a non-empty vector of finite floats. Received: bias={bias!r}"
            )
        self.bias = [float(v) for v in values]

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        if shape != (len(self.bias),):
            raise ValueError(
                f"PriorBias holds {len(self.bias)} values and cannot fill a variable of "
                f"shape {shape}. Give the layer units={len(self.bias)}."
            )
        return keras.ops.convert_to_tensor(
            np.asarray(self.bias), dtype=keras.backend.standardize_dtype(dtype)
        )

    def get_config(self):
        return {"bias": list(self.bias)}


def bias_initializer(
    y, activation="linear", sample_weight=None, eps=1e-7, num_classes=None
):
    """A Keras bias initializer set to the prior of `y` (see `output_bias`).

    Args:
        y: Array-like. The training targets.
        activation: str. `"linear"`, `"sigmoid"` or `"softmax"`. Defaults to
            `"linear"`.
        sample_weight: Array `(n,)` or None. Weights of the training loss.
            Defaults to None.
        eps: float. Defaults to 1e-7.
        num_classes: int or None. Softmax with integer labels only. Defaults
            to None.

    All arguments are as in `output_bias`.

    Returns:
        A `PriorBias` initializer (serializable; its config holds the bias
        vector, not `y`).

    Example:

    ```python
    head = keras.layers.Dense(
        1, "sigmoid", bias_initializer=keras_tricks.imbalance.bias_initializer(y, "sigmoid")
    )
    ```
    """
    return PriorBias(
        output_bias(
            y, activation, sample_weight=sample_weight, eps=eps, num_classes=num_classes
        )
    )
