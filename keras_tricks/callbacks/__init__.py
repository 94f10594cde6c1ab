"""Callbacks for `model.fit`: LR schedules, plateau rules, stopping, LR finder.

Every callback here steers the optimizer behind the compiled model (through a
LossScaleOptimizer or keras_tricks' optimizer wrappers) inside the compiled
train step, on every backend.
"""

from keras_tricks.callbacks.backup_and_restore import BackupAndRestore
from keras_tricks.callbacks.cyclic_lr import CyclicLR
from keras_tricks.callbacks.early_stopping import EarlyStopping
from keras_tricks.callbacks.lr_finder import LRFinder
from keras_tricks.callbacks.one_cycle import OneCycle
from keras_tricks.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from keras_tricks.callbacks.sgdr import SGDR
from keras_tricks.callbacks.smart_reduce_lr_on_plateau import (
    PlateauRule,
    SmartReduceLROnPlateau,
)
from keras_tricks.callbacks.snapshot_ensemble import SnapshotEnsemble
from keras_tricks.callbacks.stochastic_weight_averaging import (
    StochasticWeightAveraging,
)
from keras_tricks.callbacks.warmup_cosine import WarmupCosine
from keras_tricks.diagnosis.training_diagnosis import TrainingDiagnosis

__all__ = [
    "BackupAndRestore",
    "CyclicLR",
    "EarlyStopping",
    "LRFinder",
    "OneCycle",
    "PlateauRule",
    "ReduceLROnPlateau",
    "SGDR",
    "SmartReduceLROnPlateau",
    "SnapshotEnsemble",
    "StochasticWeightAveraging",
    "TrainingDiagnosis",
    "WarmupCosine",
]
