"""Index oversampling that never copies the data.

`oversample_indices`, `OversampledDataset` and `oversampled_tf_dataset` keep
every original sample and add indices drawn with replacement from the rare
classes, redrawn every epoch. Only indices are resampled: `x` is
never copied. `oversampled_tf_dataset` needs TensorFlow (imported lazily).
"""

import math
import numbers

import keras
import numpy as np

from keras_tricks.imbalance._labels import (
    _parse_labels,
    _require_two_classes,
    _to_numpy,
)

__all__ = ["OversampledDataset", "oversample_indices", "oversampled_tf_dataset"]

_NAMED_STRATEGIES = ("max", "all", "auto", "not majority", "not minority", "minority")


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
