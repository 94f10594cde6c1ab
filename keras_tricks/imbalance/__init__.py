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

The package holds one module a concept: `weights` (balanced class and sample
weights), `oversampling` (index oversampling and its datasets) and `bias`
(output-bias priors and the `PriorBias` initializer); `_labels` parses labels
for all three. Every public name is importable from `keras_tricks.imbalance`.
"""

from keras_tricks.imbalance.bias import PriorBias, bias_initializer, output_bias
from keras_tricks.imbalance.oversampling import (
    OversampledDataset,
    oversample_indices,
    oversampled_tf_dataset,
)
from keras_tricks.imbalance.weights import class_weights, sample_weights

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
