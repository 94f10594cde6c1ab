"""Every public name stays importable from where it was (DESIGN.md decision 13).

The lists below were taken from the code before the modules were split into
packages (issue "Layout"): each public module's `__all__`, its public
attributes (names without a leading underscore that are not modules and are
not imported from outside keras_tricks) and the registered names that `.keras`
files store. A later version may add names; it may not lose one. The modules
that the layout change split keep exactly the `__all__` they had.
"""

import importlib

import keras
import pytest

import keras_tricks  # noqa: F401  (registers every serializable object)

# The split modules keep exactly these `__all__` lists.
FROZEN = ("keras_tricks.imbalance", "keras_tricks.precision")

EXPECTED_ALL = {
    "keras_tricks": [
        "__version__",
        "callbacks",
        "cross_validate",
        "diagnosis",
        "ensemble_predict",
        "ensembles",
        "find_lr",
        "imbalance",
        "layers",
        "lora",
        "optimizers",
        "precision",
        "schedules",
        "tta_predict",
    ],
    "keras_tricks.callbacks": [
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
    ],
    "keras_tricks.diagnosis": [
        "Checklist",
        "ChecklistItem",
        "CriticalPoint",
        "CrossValidationResult",
        "DiagnosisReport",
        "HessianSpectrum",
        "TrainingDiagnosis",
        "VERDICTS",
        "checklist",
        "critical_point",
        "cross_validate",
        "diagnose",
        "hessian_eigenvalues",
        "plot_history",
    ],
    "keras_tricks.ensembles": [
        "ensemble_model",
        "ensemble_predict",
        "tta_predict",
        "update_bn",
    ],
    "keras_tricks.imbalance": [
        "OversampledDataset",
        "PriorBias",
        "bias_initializer",
        "class_weights",
        "output_bias",
        "oversample_indices",
        "oversampled_tf_dataset",
        "sample_weights",
    ],
    "keras_tricks.layers": ["OutputHead", "ShuffleCaption"],
    "keras_tricks.optimizers": [
        "AdamW8bit",
        "DiffGrad",
        "GradientAccumulation",
        "GradientCentralization",
        "LARS",
        "Lookahead",
        "RAdam",
        "TrustRatio",
        "centralize_gradients",
        "fan_in_axes",
    ],
    "keras_tricks.precision": [
        "OutputProblem",
        "OutputReport",
        "PolicyChoice",
        "PrecisionWarning",
        "ScaledHparams",
        "auto_policy",
        "check_outputs",
        "scale_hparams",
        "set_policy",
    ],
    "keras_tricks.schedules": [
        "CyclicLR",
        "OneCycle",
        "SGDR",
        "WarmupConstant",
        "WarmupCosine",
        "WarmupLinear",
        "plot_schedule",
    ],
}

EXPECTED_ATTRIBUTES = {
    "keras_tricks": ["cross_validate", "ensemble_predict", "find_lr", "tta_predict"],
    "keras_tricks.callbacks": [
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
    ],
    "keras_tricks.callbacks.lr_finder": [
        "LRFinder",
        "LRFinderResult",
        "batches_per_execution",
        "diverged_at_start",
        "validate_sweep_args",
    ],
    "keras_tricks.diagnosis": [
        "Checklist",
        "ChecklistItem",
        "CriticalPoint",
        "CrossValidationResult",
        "DiagnosisReport",
        "HessianSpectrum",
        "TrainingDiagnosis",
        "VERDICTS",
        "checklist",
        "critical_point",
        "cross_validate",
        "diagnose",
        "hessian_eigenvalues",
        "plot_history",
    ],
    "keras_tricks.ensembles": [
        "ensemble_model",
        "ensemble_predict",
        "tta_predict",
        "update_bn",
    ],
    "keras_tricks.imbalance": [
        "OversampledDataset",
        "PriorBias",
        "bias_initializer",
        "class_weights",
        "output_bias",
        "oversample_indices",
        "oversampled_tf_dataset",
        "sample_weights",
    ],
    "keras_tricks.layers": ["OutputHead", "ShuffleCaption"],
    "keras_tricks.lora": [
        "DEFAULT_TARGETS",
        "count_params",
        "enable",
        "lora_layers",
        "merge",
    ],
    "keras_tricks.lr_finder": [
        "DEFAULT_METHOD",
        "LRFinderResult",
        "SUGGESTION_METHODS",
        "diverged_at_start",
        "ema_smooth",
        "find_lr",
        "validate_sweep_args",
    ],
    "keras_tricks.optimizers": [
        "AdamW8bit",
        "DiffGrad",
        "GradientAccumulation",
        "GradientCentralization",
        "LARS",
        "Lookahead",
        "RAdam",
        "TrustRatio",
        "centralize_gradients",
        "fan_in_axes",
    ],
    "keras_tricks.plotting": ["plot_schedule"],
    "keras_tricks.precision": [
        "OutputProblem",
        "OutputReport",
        "POLICIES",
        "PolicyChoice",
        "PrecisionWarning",
        "ScaledHparams",
        "auto_policy",
        "check_outputs",
        "scale_hparams",
        "set_policy",
    ],
    "keras_tricks.schedules": [
        "CyclicLR",
        "OneCycle",
        "SGDR",
        "WarmupConstant",
        "WarmupCosine",
        "WarmupLinear",
        "plot_schedule",
    ],
}

REGISTERED_NAMES = [
    "keras_tricks>AdamW8bit",
    "keras_tricks>BackupAndRestore",
    "keras_tricks>CyclicLR",
    "keras_tricks>CyclicLRCallback",
    "keras_tricks>DiffGrad",
    "keras_tricks>EarlyStopping",
    "keras_tricks>GradientAccumulation",
    "keras_tricks>GradientCentralization",
    "keras_tricks>LARS",
    "keras_tricks>LRFinder",
    "keras_tricks>Lookahead",
    "keras_tricks>OneCycle",
    "keras_tricks>OneCycleCallback",
    "keras_tricks>OutputHead",
    "keras_tricks>PriorBias",
    "keras_tricks>RAdam",
    "keras_tricks>ReduceLROnPlateau",
    "keras_tricks>SGDR",
    "keras_tricks>SGDRCallback",
    "keras_tricks>SWALRSchedule",
    "keras_tricks>ShuffleCaption",
    "keras_tricks>SmartReduceLROnPlateau",
    "keras_tricks>SnapshotEnsemble",
    "keras_tricks>StochasticWeightAveraging",
    "keras_tricks>TrainingDiagnosis",
    "keras_tricks>TrustRatio",
    "keras_tricks>WarmupConstant",
    "keras_tricks>WarmupCosine",
    "keras_tricks>WarmupCosineCallback",
    "keras_tricks>WarmupLinear",
]

# Private names that other modules or tests import from these modules.
PRIVATE = {
    # Every function of the control core (callers write `_control.<name>`).
    "keras_tricks._control": [
        "Program",
        "_is_control",
        "_state",
        "accumulation_steps",
        "base_optimizers",
        "current_lr",
        "current_momentum",
        "get_lr_scale",
        "has_lr_variable",
        "has_schedule",
        "install",
        "is_on",
        "iterations",
        "last_schedule",
        "lease",
        "momentum_attribute",
        "multiply_lr",
        "origin",
        "owner",
        "pending_scale",
        "refresh",
        "release",
        "released_scale",
        "restore",
        "scaled_schedule",
        "schedule_scale",
        "schedule_step",
        "set_lr_scale",
        "set_pending_scale",
        "set_schedule_scale",
        "snapshot",
        "start",
        "stop_momentum",
        "take_control",
        "user_momentum",
    ],
    "keras_tricks.callbacks.lr_finder": ["_SweepSchedule"],
    "keras_tricks.lr_finder": ["_SweepSchedule"],
    "keras_tricks.precision": ["_parse_capability", "_probe_devices"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_ALL))
def test_all_keeps_every_name(name):
    module = importlib.import_module(name)
    got = sorted(module.__all__)
    if name in FROZEN:
        assert got == EXPECTED_ALL[name]
    else:
        assert set(EXPECTED_ALL[name]) <= set(got), set(EXPECTED_ALL[name]) - set(got)
    for attribute in got:
        assert hasattr(module, attribute), f"{name}.__all__ names {attribute!r}"


@pytest.mark.parametrize("name", sorted(EXPECTED_ATTRIBUTES))
def test_public_attributes_stay_importable(name):
    module = importlib.import_module(name)
    missing = [a for a in EXPECTED_ATTRIBUTES[name] if not hasattr(module, a)]
    assert not missing, f"{name} lost {missing}"


@pytest.mark.parametrize("name", sorted(PRIVATE))
def test_private_names_other_modules_use_stay(name):
    module = importlib.import_module(name)
    missing = [a for a in PRIVATE[name] if not hasattr(module, a)]
    assert not missing, f"{name} lost {missing}"


def test_registered_names_are_unchanged():
    got = {
        k for k in keras.saving.get_custom_objects() if k.startswith("keras_tricks>")
    }
    assert set(REGISTERED_NAMES) <= got, set(REGISTERED_NAMES) - got
