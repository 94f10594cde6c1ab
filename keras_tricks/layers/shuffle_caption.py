"""`ShuffleCaption`: shuffle the tags of a caption string (text-to-image fine-tuning)."""

import numbers

import keras
import numpy as np


def _tf():
    # String ops are TensorFlow's on every backend, as for Keras's own
    # `TextVectorization`: imported when the layer is made, not with the package.
    import tensorflow as tf

    return tf


@keras.saving.register_keras_serializable(package="keras_tricks")
class ShuffleCaption(keras.layers.Layer):
    """Shuffle the comma-separated tags of caption strings, keeping a prefix.

    The caption trick of text-to-image fine-tuning scripts (kohya's
    `shuffle_caption`, `keep_tokens`, `caption_tag_dropout_rate`): a caption
    such as `"sks dog, sitting, red collar, grass, sunny"` is split on
    `separator`, each tag is stripped of surrounding spaces (empty tags are
    dropped), the first `keep_tokens` tags stay in place (the trigger word),
    the others are put in a random order (all orders equally likely) and each
    of them is dropped with probability `tag_dropout`; the tags are joined
    back with `join_separator`. Each call draws a new order.

    Like Keras's `TextVectorization`, the layer runs TensorFlow string ops on
    every backend: use it in a `tf.data` pipeline (`dataset.map(layer)`)
    that feeds a model on any backend, or call it eagerly. Inputs are string
    tensors (or Python / NumPy strings) of any shape; the output is a
    `tf.string` tensor of the same shape.

    Args:
        keep_tokens: int >= 0. Tags at the start that keep their place and
            are never dropped. Defaults to `0`.
        separator: str. What tags are split on. Defaults to `","`.
        join_separator: str or None. What tags are joined with; None means
            `separator + " "` (`", "`). Defaults to `None`.
        tag_dropout: float in [0, 1). Probability of dropping each tag after
            the kept prefix. Defaults to `0.0`.
        shuffle: bool. Shuffle the tags after the prefix (False: only the
            dropout applies). Defaults to `True`.
        seed: int or None. Seed of the layer's random generator (the orders
            drawn by successive calls are reproducible). Defaults to `None`.
        **kwargs: Other `keras.layers.Layer` arguments (`name`).

    Example:

    ```python
    import tensorflow as tf
    from keras_tricks.layers import ShuffleCaption

    shuffle = ShuffleCaption(keep_tokens=1, tag_dropout=0.1, seed=0)
    captions = tf.data.Dataset.from_tensor_slices(
        ["sks dog, sitting, red collar, grass", "sks cat, sleeping, sofa"]
    )
    captions = captions.batch(2).map(shuffle)
    next(iter(captions))  # e.g. [b"sks dog, grass, sitting, red collar", ...]
    ```
    """

    def __init__(
        self,
        keep_tokens=0,
        separator=",",
        join_separator=None,
        tag_dropout=0.0,
        shuffle=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if (
            isinstance(keep_tokens, bool)
            or not isinstance(keep_tokens, numbers.Integral)
            or keep_tokens < 0
        ):
            raise ValueError(
                "Argument `keep_tokens` must be an integer >= 0. "
                f"Received: keep_tokens={keep_tokens!r}"
            )
        if not isinstance(separator, str) or not separator:
            raise ValueError(
                "Argument `separator` must be a non-empty string. "
                f"Received: separator={separator!r}"
            )
        if join_separator is not None and not isinstance(join_separator, str):
            raise ValueError(
                "Argument `join_separator` must be a string or None. "
                f"Received: join_separator={join_separator!r}"
            )
        if (
            isinstance(tag_dropout, bool)
            or not isinstance(tag_dropout, numbers.Real)
            or not 0.0 <= tag_dropout < 1.0
        ):
            raise ValueError(
                "Argument `tag_dropout` must be a number in [0, 1). "
                f"Received: tag_dropout={tag_dropout!r}"
            )
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(
                f"Argument `shuffle` must be a bool. Received: shuffle={shuffle!r}"
            )
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
        ):
            raise ValueError(
                f"Argument `seed` must be an integer or None. Received: seed={seed!r}"
            )
        self.keep_tokens = int(keep_tokens)
        self.separator = separator
        self.join_separator = join_separator
        self.tag_dropout = float(tag_dropout)
        self.shuffle = bool(shuffle)
        self.seed = None if seed is None else int(seed)
        tf = _tf()
        with tf.init_scope():
            if self.seed is None:
                self._generator = tf.random.Generator.from_non_deterministic_state()
            else:
                self._generator = tf.random.Generator.from_seed(self.seed)
        # Strings are not backend tensors: take the inputs as they are.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.supports_jit = False
        self.built = True

    @property
    def compute_dtype(self):
        return "string"

    @property
    def variable_dtype(self):
        return "string"

    def call(self, inputs):
        tf = _tf()
        inputs = tf.convert_to_tensor(inputs, dtype=tf.string)
        shape = tf.shape(inputs)
        flat = tf.reshape(inputs, [-1])
        tags = tf.strings.strip(tf.strings.split(flat, sep=self.separator))
        tags = tf.ragged.boolean_mask(tags, tf.strings.length(tags) > 0)
        position = tf.cast(tf.ragged.range(tags.row_lengths()), tf.float64)
        values = position.flat_values
        rows = tf.cast(tags.value_rowids(), tf.float64)
        count = tf.shape(values)[0]
        kept = values < self.keep_tokens
        if self.shuffle:
            draw = tf.cast(self._generator.uniform([count]), tf.float64)
        else:
            draw = values / (values + 1.0)  # increasing, in [0, 1): the order
        # One global sort orders every row on its own: rows first, then the
        # kept prefix by position (keys in [0, 1)), then the rest by their
        # random key (in [1, 2)).
        prefix_key = values / (self.keep_tokens + 1.0)
        key = rows * 4.0 + tf.where(kept, prefix_key, 1.0 + draw)
        order = tf.argsort(key, stable=True)
        shuffled = tags.with_flat_values(tf.gather(tags.flat_values, order))
        if self.tag_dropout > 0.0:
            # Positions after the shuffle: the kept prefix is still first.
            survive = tf.logical_or(
                kept, self._generator.uniform([count]) >= self.tag_dropout
            )
            shuffled = tf.ragged.boolean_mask(
                shuffled, tags.with_flat_values(survive)
            )
        join = self.join_separator
        if join is None:
            join = self.separator + " "
        joined = tf.strings.reduce_join(shuffled, axis=-1, separator=join)
        return tf.reshape(joined, shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "keep_tokens": self.keep_tokens,
                "separator": self.separator,
                "join_separator": self.join_separator,
                "tag_dropout": self.tag_dropout,
                "shuffle": self.shuffle,
                "seed": self.seed,
            }
        )
        return config
