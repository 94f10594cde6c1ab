"""Bad input, swept: every public constructor and function, built from
generated arguments, either works or raises a `ValueError`/`TypeError` whose
message names the argument and the value received (`Received: name=...`).

Each argument has a kind (`real`, `int`, `choice`, `label array`); the
generated values mix valid ones with wrong types, NaN, infinities, negatives,
zero, huge numbers, empty arrays, bools and strings. A value that is nonsense
for its kind (a string for a number, NaN, an empty label array, ...) must be
refused: no silent acceptance. The example counts are fixed (`derandomize`)
so the sweep is reproducible and fast; `docs/troubleshooting.md` records how
many cases it runs.
"""

import math

import keras
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from keras_tricks import (  # noqa: E402
    callbacks,
    imbalance,
    layers,
    optimizers,
    precision,
    schedules,
)

EXAMPLES = 40
CASES_RUN = []  # one entry per generated case, counted by the last test

NONSENSE_NUMBERS = [
    "abc",
    "",
    "3",
    float("nan"),
    float("inf"),
    float("-inf"),
    np.array([]),
    [1.0],
    None,
    True,
    {"a": 1},
]
EDGE_NUMBERS = [0, -1, -0.5, 1e308, 1e-300, 2, 0.5, 1.5, 7, np.float32(0.5), np.int64(3)]


def _nonsense(kind, value):
    """Whether `value` is nonsense for an argument of this kind."""
    if kind in ("real", "int", "real?", "int?"):
        if value is None:
            return not kind.endswith("?")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            return True
        if not math.isfinite(float(value)):
            return True
        return kind.startswith("int") and not float(value).is_integer()
    if kind in ("choice", "choice?"):
        if value is None:
            return kind == "choice"
        return not isinstance(value, str) or value in ("", "abc", "3")
    return False


def _values_for(kind):
    if kind in ("choice", "choice?"):
        return st.sampled_from(["abc", "", "3", 3, None, float("nan")])
    return st.sampled_from(NONSENSE_NUMBERS + EDGE_NUMBERS)


# name: (factory, valid keyword arguments, {argument: kind})
TARGETS = {
    "schedules.SGDR": (
        schedules.SGDR,
        dict(max_lr=0.1, first_cycle_steps=10),
        dict(max_lr="real", first_cycle_steps="real", t_mul="real", m_mul="real",
             min_lr="real", warmup_steps="int", cycle_limit="int?", k_decay="real"),
    ),
    "schedules.CyclicLR": (
        schedules.CyclicLR,
        dict(base_lr=1e-3, max_lr=1e-2, step_size=5),
        dict(base_lr="real", max_lr="real", step_size="int", mode="choice",
             gamma="real", base_momentum="real", max_momentum="real"),
    ),
    "schedules.OneCycle": (
        schedules.OneCycle,
        dict(max_lr=0.1, total_steps=100),
        dict(max_lr="real", total_steps="int", pct_start="real",
             anneal_strategy="choice", div_factor="real", final_div_factor="real",
             base_momentum="real", max_momentum="real"),
    ),
    "schedules.WarmupCosine": (
        schedules.WarmupCosine,
        dict(peak_lr=0.1, total_steps=100),
        dict(peak_lr="real", total_steps="int", warmup_steps="int",
             initial_lr="real", final_lr="real", warmup_ratio="real?",
             k_decay="real"),
    ),
    "schedules.WarmupLinear": (
        schedules.WarmupLinear,
        dict(peak_lr=0.1, total_steps=100),
        dict(peak_lr="real", total_steps="int", warmup_steps="int",
             initial_lr="real", final_lr="real", warmup_ratio="real?"),
    ),
    "schedules.WarmupConstant": (
        schedules.WarmupConstant,
        dict(lr=0.1, warmup_steps=10),
        dict(lr="real", warmup_steps="int", initial_lr="real"),
    ),
    "callbacks.EarlyStopping": (
        callbacks.EarlyStopping,
        dict(),
        dict(min_delta="real", patience="int", mode="choice", baseline="real?",
             start_from_epoch="int", stopping_threshold="real?",
             divergence_threshold="real?", min_delta_mode="choice"),
    ),
    "callbacks.ReduceLROnPlateau": (
        callbacks.ReduceLROnPlateau,
        dict(),
        dict(factor="real", patience="int", mode="choice", min_delta="real",
             cooldown="int", min_lr="real", min_delta_mode="choice",
             smoothing="real"),
    ),
    "callbacks.SmartReduceLROnPlateau": (
        callbacks.SmartReduceLROnPlateau,
        dict(),
        dict(factor="real", patience="real", mode="choice", min_delta="real?",
             cooldown="int", min_lr="real", threshold="real?",
             threshold_mode="choice", beta="real", growth="real",
             window_alignment="choice"),
    ),
    "callbacks.PlateauRule": (
        callbacks.PlateauRule,
        dict(),
        dict(window="real", threshold="real", threshold_mode="choice",
             beta="real", growth="real", alignment="choice", cooldown="int"),
    ),
    "callbacks.SGDR": (
        callbacks.SGDR,
        dict(max_lr=0.1, first_cycle_steps=10),
        dict(max_lr="real", t_mul="real", m_mul="real", min_lr="real",
             warmup_steps="int", cycle_limit="int?", k_decay="real"),
    ),
    "callbacks.OneCycle": (
        callbacks.OneCycle,
        dict(max_lr=0.1),
        dict(max_lr="real", total_steps="int?", pct_start="real",
             anneal_strategy="choice", div_factor="real",
             final_div_factor="real", base_momentum="real", max_momentum="real",
             count="choice"),
    ),
    "callbacks.WarmupCosine": (
        callbacks.WarmupCosine,
        dict(peak_lr=0.1),
        dict(peak_lr="real", total_steps="int?", warmup_steps="int?",
             initial_lr="real", final_lr="real", count="choice",
             k_decay="real"),
    ),
    "callbacks.CyclicLR": (
        callbacks.CyclicLR,
        dict(base_lr=1e-3, max_lr=1e-2, step_size=4),
        dict(base_lr="real", max_lr="real", mode="choice", gamma="real",
             base_momentum="real", max_momentum="real", count="choice"),
    ),
    "callbacks.LRFinder": (
        callbacks.LRFinder,
        dict(),
        dict(start_lr="real", end_lr="real", num_steps="int", mode="choice",
             beta="real", diverge_threshold="real"),
    ),
    "optimizers.GradientAccumulation": (
        lambda **kw: optimizers.GradientAccumulation(keras.optimizers.SGD(), **kw),
        dict(steps=2),
        dict(steps="int", batch_size="int?", num_samples="int?"),
    ),
    "layers.OutputHead": (
        layers.OutputHead,
        dict(units=2),
        dict(units="int?"),
    ),
    "precision.scale_hparams": (
        precision.scale_hparams,
        dict(lr=0.1, batch_size=32, new_batch_size=64),
        dict(lr="real", batch_size="int", new_batch_size="int",
             weight_decay="real?", momentum="real?", rule="choice",
             keep="choice", epochs="int?", steps_per_epoch="int?"),
    ),
    "imbalance.oversample_indices": (
        imbalance.oversample_indices,
        dict(y=np.array([0, 0, 1])),
        dict(seed="int?"),
    ),
    "imbalance.output_bias": (
        imbalance.output_bias,
        dict(y=np.array([0, 0, 1])),
        dict(activation="choice?", eps="real"),
    ),
}

LABELS = st.sampled_from(
    [
        np.array([]),
        np.array([np.nan, 1.0]),
        np.array([0, 1, 1]),
        np.array([[0.0, 1.0], [1.0, 0.0]]),
        "abc",
        None,
        [0, 1, 2, 2],
    ]
)


def _check_outcome(factory, kwargs, kinds, changed):
    CASES_RUN.append(1)
    try:
        factory(**kwargs)
    except (ValueError, TypeError) as error:
        message = str(error)
        assert any(f"{name}=" in message for name in changed) or (
            "unexpected keyword" in message
        ), (kwargs, message)
        return
    nonsense = [n for n in changed if _nonsense(kinds[n], kwargs[n])]
    assert not nonsense, f"accepted {[(n, kwargs[n]) for n in nonsense]}"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_constructor_refuses_nonsense_with_a_named_error(target):
    factory, valid, kinds = TARGETS[target]
    names = sorted(kinds)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(st.data())
    def run(data):
        changed = data.draw(
            st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True)
        )
        kwargs = dict(valid)
        for name in changed:
            kwargs[name] = data.draw(_values_for(kinds[name]), label=name)
        _check_outcome(factory, kwargs, kinds, changed)

    run()


@pytest.mark.parametrize(
    "function", [imbalance.class_weights, imbalance.sample_weights,
                 imbalance.oversample_indices, imbalance.output_bias]
)
def test_label_functions_refuse_bad_labels(function):
    @settings(max_examples=7, deadline=None, derandomize=True, database=None)
    @given(LABELS)
    def run(y):
        CASES_RUN.append(1)
        try:
            function(y)
        except (ValueError, TypeError) as error:
            assert "y" in str(error) or "label" in str(error).lower(), str(error)
            return
        array = np.asarray(y, dtype=object) if y is not None else None
        assert array is not None and array.size > 0, f"accepted y={y!r}"
        assert not (
            array.dtype.kind == "O"
            and any(isinstance(v, float) and math.isnan(v) for v in array.ravel())
        )

    run()


# --- the cases of issue 15, one by one ------------------------------------


@pytest.mark.parametrize(
    "make, attribute, expected",
    [
        (lambda: callbacks.ReduceLROnPlateau(factor=np.float32(0.5)), "factor", 0.5),
        (lambda: callbacks.EarlyStopping(patience=np.int64(3)), "patience", 3),
        (
            lambda: optimizers.GradientAccumulation(
                keras.optimizers.SGD(), steps=np.int64(4)
            ),
            "steps",
            4,
        ),
        (lambda: callbacks.LRFinder(num_steps=np.int64(50)), "num_steps", 50),
        (
            lambda: callbacks.SmartReduceLROnPlateau(factor=np.float64(0.5)),
            "factor",
            0.5,
        ),
        (lambda: schedules.SGDR(np.float32(0.5), np.int32(10)), "first_cycle_steps", 10),
    ],
)
def test_numpy_scalars_are_accepted(make, attribute, expected):
    made = make()
    value = getattr(made, attribute)
    assert value == expected and type(value) in (int, float)


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: schedules.WarmupCosine(0.1, 100, warmup_ratio="abc"),
            "warmup_ratio='abc'",
        ),
        (lambda: layers.OutputHead("3"), "units='3'"),
        (
            lambda: callbacks.EarlyStopping(
                stopping_threshold=5, divergence_threshold=1, mode="min"
            ),
            "stopping_threshold=5.0",
        ),
        (
            lambda: callbacks.SmartReduceLROnPlateau(min_delta_mode="rel"),
            "belong to keras_tricks.callbacks.ReduceLROnPlateau",
        ),
        (lambda: callbacks.SmartReduceLROnPlateau(patiense=3), "patiense=3"),
        (lambda: callbacks.ReduceLROnPlateau(factor=True), "factor=True"),
    ],
)
def test_named_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_sweep_case_count():
    # Run last in this module (pytest keeps file order): the count for docs.
    assert len(CASES_RUN) >= 0
    print(f"\nproperty sweep: {len(CASES_RUN)} cases")
