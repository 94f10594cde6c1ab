"""Averaging at test time: snapshot ensembles, test-time augmentation, BN recompute.

* `ensemble_predict(model, snapshots, x)` averages the predictions of several
  weight snapshots of one model (for example those of
  `keras_tricks.callbacks.SnapshotEnsemble`), one snapshot on the device at a
  time; `ensemble_model(model, snapshots)` builds one saveable Keras model
  that averages them.
* `tta_predict(model, x, augment)` averages the predictions over random
  augmentations of the input.
* `update_bn(model, data)` recomputes the BatchNormalization statistics with
  one pass over the data, the equivalent of `torch.optim.swa_utils.update_bn`
  (used by `keras_tricks.callbacks.StochasticWeightAveraging`).
"""

from keras_tricks.ensembles.batchnorm import update_bn
from keras_tricks.ensembles.predict import ensemble_model, ensemble_predict, tta_predict

__all__ = ["ensemble_model", "ensemble_predict", "tta_predict", "update_bn"]
