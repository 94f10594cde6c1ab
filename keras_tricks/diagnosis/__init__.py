"""Diagnose a training run before tuning it (seeds 001 and 004).

- `TrainingDiagnosis` (also `keras_tricks.callbacks.TrainingDiagnosis`): a
  callback that names what is wrong (LR too high / too low, a flat region or
  saddle, model bias, overfitting, not converged) with the evidence and the
  fix;
- `checklist(model, x, y)`: pre-flight checks before training;
- `plot_history(history, report)`: learning curves with the diagnosis on them;
- `hessian_eigenvalues`, `critical_point`: the Hessian's extreme eigenvalues
  by Lanczos on Hessian-vector products; minimum or saddle;
- `cross_validate` (also `keras_tricks.cross_validate`): N-fold
  cross-validation with scikit-learn's splitters.
"""

from keras_tricks.diagnosis.checklist import Checklist, ChecklistItem, checklist
from keras_tricks.diagnosis.cross_validation import (
    CrossValidationResult,
    cross_validate,
)
from keras_tricks.diagnosis.hessian import (
    CriticalPoint,
    HessianSpectrum,
    critical_point,
    hessian_eigenvalues,
)
from keras_tricks.diagnosis.plot import plot_history
from keras_tricks.diagnosis.report import VERDICTS, DiagnosisReport, diagnose
from keras_tricks.diagnosis.training_diagnosis import TrainingDiagnosis

__all__ = [
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
]
