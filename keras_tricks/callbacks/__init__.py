"""keras_tricks.callbacks."""

from keras_tricks.callbacks.cyclic_lr import CyclicLR  # noqa: E402
from keras_tricks.callbacks.one_cycle import OneCycle  # noqa: E402
from keras_tricks.callbacks.sgdr import SGDR  # noqa: E402
from keras_tricks.callbacks.warmup_cosine import WarmupCosine  # noqa: E402
from keras_tricks.callbacks.backup_and_restore import BackupAndRestore  # noqa: E402
from keras_tricks.callbacks.early_stopping import EarlyStopping  # noqa: E402
from keras_tricks.callbacks.lr_finder import LRFinder  # noqa: E402
from keras_tricks.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau  # noqa: E402
from keras_tricks.callbacks.smart_reduce_lr_on_plateau import PlateauRule  # noqa: E402
from keras_tricks.callbacks.smart_reduce_lr_on_plateau import (  # noqa: E402
    SmartReduceLROnPlateau,
)
