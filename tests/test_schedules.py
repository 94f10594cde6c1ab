"""Tests for keras_tricks.schedules: values against PyTorch's schedulers (and
Keras's, and float64 references), compiled evaluation, serialization, errors."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_tricks.schedules import (
    SGDR,
    CyclicLR,
    OneCycle,
    WarmupConstant,
    WarmupCosine,
    WarmupLinear,
)


def values(fn, steps):
    return np.asarray(ops.convert_to_numpy(fn(np.asarray(steps))), dtype="float64")


def assert_close(ours, ref, scale):
    # float32 schedule against a float64 reference.
    np.testing.assert_allclose(ours, ref, rtol=2e-5, atol=1e-6 * scale)


# ------------------------------------------------------------ torch references


def torch_run(make_scheduler, lr, steps, momentum=True):
    """LR (and momentum) of a torch scheduler after k = 0..steps-1 steps."""
    import torch

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr, momentum=0.9 if momentum else 0.0)
    sched = make_scheduler(opt)
    lrs, moms = [], []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    return np.array(lrs, dtype="float64"), np.array(moms, dtype="float64")


ONE_CYCLE_CASES = [
    dict(max_lr=0.01, total_steps=1000),
    dict(
        max_lr=0.1,
        total_steps=100,
        pct_start=0.25,
        anneal_strategy="linear",
        div_factor=10.0,
        final_div_factor=100.0,
        base_momentum=0.8,
        max_momentum=0.9,
    ),
    dict(max_lr=1.0, total_steps=37, pct_start=0.4, three_phase=True),
    dict(
        max_lr=0.003,
        total_steps=250,
        pct_start=0.1,
        anneal_strategy="linear",
        div_factor=5.0,
        final_div_factor=1e3,
        three_phase=True,
        base_momentum=0.9,
        max_momentum=0.99,
    ),
    dict(max_lr=0.05, total_steps=7),
    # pct_start * total_steps < 1: phase 1 is empty, torch starts in phase 2.
    dict(max_lr=0.05, total_steps=3),
    dict(
        max_lr=2.0,
        total_steps=20,
        pct_start=0.45,
        three_phase=True,
        base_momentum=0.95,
        max_momentum=0.85,
    ),
]


@pytest.mark.parametrize("kwargs", ONE_CYCLE_CASES)
def test_one_cycle_matches_torch(kwargs):
    import torch

    total = kwargs["total_steps"]
    ref_lr, ref_m = torch_run(
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, **kwargs),
        kwargs["max_lr"],
        total,
    )
    schedule = OneCycle(**kwargs)
    steps = np.arange(total + 25)
    # Past the end torch raises; we hold the final value.
    ref_lr = np.concatenate([ref_lr, np.full(25, ref_lr[-1])])
    ref_m = np.concatenate([ref_m, np.full(25, ref_m[-1])])
    assert_close(values(schedule, steps), ref_lr, kwargs["max_lr"])
    assert_close(values(schedule.momentum, steps), ref_m, 1.0)


TORCH_SGDR_CASES = [
    (0.1, 10, 1, 0.0, 100),
    (0.05, 7, 2, 1e-3, 300),
    (1.0, 3, 3, 0.1, 200),
    (0.01, 50, 1, 1e-4, 400),
    (0.2, 1, 2, 0.0, 100),
]


@pytest.mark.parametrize("max_lr,t0,t_mult,eta_min,steps", TORCH_SGDR_CASES)
def test_sgdr_matches_torch(max_lr, t0, t_mult, eta_min, steps):
    import torch

    ref, _ = torch_run(
        lambda opt: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            opt, T_0=t0, T_mult=t_mult, eta_min=eta_min
        ),
        max_lr,
        steps,
        momentum=False,
    )
    schedule = SGDR(max_lr, t0, t_mul=t_mult, min_lr=eta_min)
    assert_close(values(schedule, np.arange(steps)), ref, max_lr)


CYCLIC_CASES = [
    dict(base_lr=1e-3, max_lr=1e-2, step_size=10),
    dict(base_lr=1e-3, max_lr=1e-2, step_size=7, mode="triangular2"),
    dict(
        base_lr=0.01,
        max_lr=0.1,
        step_size=5,
        mode="exp_range",
        gamma=0.99,
        base_momentum=0.85,
        max_momentum=0.95,
    ),
    dict(base_lr=0.0, max_lr=0.1, step_size=1),
    dict(base_lr=0.02, max_lr=0.5, step_size=13, mode="exp_range", gamma=0.995),
    dict(base_lr=0.1, max_lr=0.1, step_size=3, mode="triangular2"),
]


@pytest.mark.parametrize("kwargs", CYCLIC_CASES)
def test_cyclic_matches_torch(kwargs):
    import torch

    targs = dict(kwargs)
    targs["step_size_up"] = targs.pop("step_size")
    steps = 200
    ref_lr, ref_m = torch_run(
        lambda opt: torch.optim.lr_scheduler.CyclicLR(opt, **targs),
        kwargs["base_lr"],
        steps,
    )
    schedule = CyclicLR(**kwargs)
    assert_close(values(schedule, np.arange(steps)), ref_lr, kwargs["max_lr"])
    assert_close(values(schedule.momentum, np.arange(steps)), ref_m, 1.0)


# -------------------------------------------------- SGDR beyond what torch does


def sgdr_reference(step, max_lr, t0, t_mul, m_mul, min_lr, warmup, limit):
    """Stateful float64 walk through the cycles (the definition)."""
    if step < warmup:
        return min_lr + (max_lr - min_lr) * step / warmup
    t = step - warmup
    i, start, length = 0, 0.0, float(t0)
    while t >= start + length:
        start += length
        length *= t_mul
        i += 1
        if (limit is not None and i >= limit) or i > 500:
            return min_lr
    peak = max_lr * m_mul**i
    return min_lr + (peak - min_lr) * (1 + math.cos(math.pi * (t - start) / length)) / 2


SGDR_CASES = [
    dict(max_lr=0.1, first_cycle_steps=8, t_mul=1.5),
    dict(max_lr=0.1, first_cycle_steps=10, t_mul=1.3, m_mul=0.7, min_lr=1e-3),
    dict(max_lr=1.0, first_cycle_steps=64, t_mul=0.5, m_mul=0.9),
    dict(
        max_lr=0.5,
        first_cycle_steps=20,
        t_mul=2.0,
        m_mul=0.5,
        min_lr=0.01,
        warmup_steps=15,
        cycle_limit=3,
    ),
    dict(max_lr=0.5, first_cycle_steps=30, min_lr=0.05, warmup_steps=1, cycle_limit=4),
    dict(
        max_lr=0.2,
        first_cycle_steps=9,
        t_mul=1.7,
        m_mul=1.2,
        min_lr=0.0,
        warmup_steps=5,
        cycle_limit=5,
    ),
]


@pytest.mark.parametrize("kwargs", SGDR_CASES)
def test_sgdr_general_matches_reference(kwargs):
    full = dict(t_mul=1.0, m_mul=1.0, min_lr=0.0, warmup_steps=0, cycle_limit=None)
    full.update(kwargs)
    steps = np.arange(400)
    ref = [
        sgdr_reference(
            s,
            full["max_lr"],
            full["first_cycle_steps"],
            full["t_mul"],
            full["m_mul"],
            full["min_lr"],
            full["warmup_steps"],
            full["cycle_limit"],
        )
        for s in steps
    ]
    scale = full["max_lr"] * max(1.0, full["m_mul"] ** 6)
    assert_close(values(SGDR(**kwargs), steps), ref, scale)


@pytest.mark.parametrize(
    "t_mul,m_mul,alpha", [(1.0, 0.8, 0.0), (1.5, 1.0, 0.1), (2.5, 0.6, 0.0)]
)
def test_sgdr_matches_keras_cosine_decay_restarts(t_mul, m_mul, alpha):
    # Keras's min LR is alpha * initial and its peak decays as
    # (1 - alpha) * m_mul**i + alpha: the two agree when alpha = 0 or m_mul = 1.
    keras_schedule = keras.optimizers.schedules.CosineDecayRestarts(
        0.1, 12, t_mul=t_mul, m_mul=m_mul, alpha=alpha
    )
    ours = SGDR(0.1, 12, t_mul=t_mul, m_mul=m_mul, min_lr=alpha * 0.1)
    # Half-integer steps stay clear of the restarts, where a float32 log may
    # put Keras's cycle index one off.
    steps = np.arange(300) + 0.5
    assert_close(values(ours, steps), values(keras_schedule, steps), 0.1)


# ----------------------------------------------------------- warmup schedules


WARMUP_CASES = [
    dict(peak_lr=1e-3, total_steps=100, warmup_steps=10),
    dict(peak_lr=0.1, total_steps=50, warmup_steps=0, final_lr=1e-3),
    dict(
        peak_lr=0.5, total_steps=200, warmup_ratio=0.05, initial_lr=0.01, final_lr=0.05
    ),
    dict(peak_lr=2.0, total_steps=7, warmup_steps=6, initial_lr=1.0),
]


def warmup_reference(step, peak, total, w, init, final, shape):
    if step < w:
        return init + (peak - init) * step / w
    pct = min(step - w, total - w) / (total - w)
    if shape == "cos":
        return final + (peak - final) * (1 + math.cos(math.pi * pct)) / 2
    return peak + (final - peak) * pct


def _warmup_len(kwargs):
    if kwargs.get("warmup_ratio") is not None:
        return math.ceil(kwargs["warmup_ratio"] * kwargs["total_steps"])
    return kwargs.get("warmup_steps", 0)


@pytest.mark.parametrize("cls,shape", [(WarmupCosine, "cos"), (WarmupLinear, "linear")])
def test_warmup_decay_matches_reference(cls, shape):
    for kwargs in WARMUP_CASES:
        total, peak = kwargs["total_steps"], kwargs["peak_lr"]
        w = _warmup_len(kwargs)
        init, final = kwargs.get("initial_lr", 0.0), kwargs.get("final_lr", 0.0)
        steps = np.arange(total + 20)
        ref = [warmup_reference(s, peak, total, w, init, final, shape) for s in steps]
        schedule = cls(**kwargs)
        assert_close(values(schedule, steps), ref, peak)
        # Peak right at the end of the warmup; final value from total_steps on.
        np.testing.assert_allclose(float(schedule(w)), peak, rtol=1e-6)
        np.testing.assert_allclose(
            values(schedule, [total, total + 1000]), final, atol=1e-7
        )


def test_warmup_cosine_decay_matches_keras_cosine_decay():
    # Keras counts decay_steps after the warmup; we count the warmup in total.
    # (Keras's own warmup branch is an `ops.cond` on a scalar step, so only the
    # decay part is compared here, vectorized; the warmup is checked above.)
    for kwargs in WARMUP_CASES:
        w = _warmup_len(kwargs)
        peak, total = kwargs["peak_lr"], kwargs["total_steps"]
        keras_schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=peak,
            decay_steps=total - w,
            alpha=kwargs.get("final_lr", 0.0) / peak,
        )
        steps = np.arange(w, total + 5)
        ref = values(keras_schedule, steps - w)
        assert_close(values(WarmupCosine(**kwargs), steps), ref, peak)


def test_warmup_constant():
    for lr, warmup, init in [(0.1, 10, 0.0), (1.0, 0, 0.5), (0.3, 1, 0.1)]:
        steps = np.arange(30)
        ref = [init + (lr - init) * s / warmup if s < warmup else lr for s in steps]
        schedule = WarmupConstant(lr, warmup, initial_lr=init)
        assert_close(values(schedule, steps), ref, lr)


def test_one_cycle_holds_final_value_past_the_end():
    schedule = OneCycle(0.1, 10)
    tail = values(schedule, [9, 10, 100, 10**6])
    np.testing.assert_allclose(tail, tail[0], rtol=0)
    assert tail[0] == pytest.approx(0.1 / 25 / 1e4, rel=1e-5)


# ------------------------------------------------------ all schedules, generic
# One test per property, looping over every schedule: the per-test setup and
# teardown of conftest (a garbage collection) costs more than the checks.


def all_schedules():
    return [
        OneCycle(0.1, 50),
        OneCycle(0.1, 50, three_phase=True, anneal_strategy="linear"),
        SGDR(0.1, 8, t_mul=1.5, m_mul=0.8, min_lr=1e-3, warmup_steps=3, cycle_limit=3),
        SGDR(0.1, 10),
        CyclicLR(1e-3, 1e-2, 6, mode="exp_range", gamma=0.98),
        CyclicLR(1e-3, 1e-2, 6, mode="triangular2"),
        WarmupCosine(1e-3, 40, warmup_ratio=0.1, final_lr=1e-5),
        WarmupLinear(1e-3, 40, warmup_steps=5),
        WarmupConstant(0.2, 7, initial_lr=0.02),
    ]


STEPS = np.arange(0, 70)


def test_scalar_step_gives_float32_scalar_equal_to_vector():
    for schedule in all_schedules():
        vec = values(schedule, STEPS)
        assert np.all(np.isfinite(vec)) and np.all(vec >= 0), schedule
        for k in (0, 17, 69):
            out = schedule(k)
            assert ops.convert_to_numpy(out).shape == ()
            assert keras.backend.standardize_dtype(out.dtype) == "float32"
            assert float(out) == pytest.approx(vec[k], rel=1e-6, abs=1e-12), schedule
        # Integer tensors (the optimizer's int64 `iterations`) work too.
        out = schedule(ops.convert_to_tensor(np.int64(17)))
        assert float(out) == pytest.approx(vec[17], rel=1e-6, abs=1e-12), schedule


def test_momentum_only_where_has_momentum():
    flags = {type(s).__name__: s.has_momentum for s in all_schedules()}
    assert flags == {
        "OneCycle": True,
        "CyclicLR": True,
        "SGDR": False,
        "WarmupCosine": False,
        "WarmupLinear": False,
        "WarmupConstant": False,
    }
    for schedule in all_schedules():
        assert hasattr(schedule, "momentum") == schedule.has_momentum
        if schedule.has_momentum:
            m = values(schedule.momentum, STEPS)
            assert keras.backend.standardize_dtype(schedule.momentum(5).dtype) == (
                "float32"
            )
            assert np.all((m >= 0.0) & (m <= 1.0)) and np.ptp(m) > 0.05


def test_serialization_round_trip():
    for schedule in all_schedules():
        config = keras.saving.serialize_keras_object(schedule)
        assert config["registered_name"] == "keras_tricks>" + type(schedule).__name__
        restored = keras.saving.deserialize_keras_object(config)
        assert type(restored) is type(schedule)
        assert restored.get_config() == schedule.get_config()
        np.testing.assert_array_equal(values(restored, STEPS), values(schedule, STEPS))
        if schedule.has_momentum:
            np.testing.assert_array_equal(
                values(restored.momentum, STEPS), values(schedule.momentum, STEPS)
            )


def test_optimizer_uses_schedule_and_round_trips():
    for schedule in all_schedules():
        opt = keras.optimizers.SGD(learning_rate=schedule)
        var = keras.Variable(np.ones(2, "float32"))
        for _ in range(3):
            opt.apply_gradients([(ops.ones(2), var)])
        assert int(opt.iterations) == 3
        assert float(opt.learning_rate) == pytest.approx(float(schedule(3)), rel=1e-6)
        # The updates used the schedule's LRs for steps 0, 1, 2 (plain SGD).
        expected = 1.0 - sum(float(schedule(k)) for k in range(3))
        np.testing.assert_allclose(ops.convert_to_numpy(var), expected, rtol=1e-5)
        restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
        assert type(restored._learning_rate) is type(schedule)
        assert restored._learning_rate.get_config() == schedule.get_config()


@pytest.mark.backends("jax")
def test_inside_jax_jit():
    import jax
    import jax.numpy as jnp

    for schedule in all_schedules():
        eager = values(schedule, STEPS)
        jitted = jax.jit(lambda s, schedule=schedule: schedule(s))
        np.testing.assert_allclose(
            np.asarray(jitted(jnp.asarray(STEPS))), eager, rtol=1e-5, atol=1e-12
        )
        for k in (0, 9, 40):
            assert float(jitted(jnp.int32(k))) == pytest.approx(eager[k], rel=1e-5)
        if schedule.has_momentum:
            m = jax.jit(schedule.momentum)(jnp.asarray(STEPS))
            np.testing.assert_allclose(
                np.asarray(m), values(schedule.momentum, STEPS), rtol=1e-5
            )


@pytest.mark.backends("tensorflow")
def test_inside_tf_function():
    import tensorflow as tf

    for schedule in all_schedules():
        eager = values(schedule, STEPS)
        step = tf.Variable(0, dtype=tf.int64)
        fn = tf.function(lambda schedule=schedule, step=step: schedule(step))
        for k in (0, 9, 40):
            step.assign(k)
            assert float(fn()) == pytest.approx(eager[k], rel=1e-5, abs=1e-12)
        vec = tf.function(lambda s, schedule=schedule: schedule(s))(tf.constant(STEPS))
        np.testing.assert_allclose(vec.numpy(), eager, rtol=1e-5, atol=1e-12)
        if schedule.has_momentum:
            m = tf.function(schedule.momentum)(tf.constant(STEPS))
            np.testing.assert_allclose(
                m.numpy(), values(schedule.momentum, STEPS), rtol=1e-5
            )


@pytest.mark.backends("torch")
def test_torch_tensor_steps():
    import torch

    for schedule in all_schedules():
        eager = values(schedule, STEPS)
        out = schedule(torch.arange(70))
        np.testing.assert_allclose(out.cpu().numpy(), eager, rtol=1e-5, atol=1e-12)


# ------------------------------------------------------------------- errors


ERRORS = [
    (OneCycle, dict(max_lr=0.0, total_steps=10), "max_lr"),
    (OneCycle, dict(max_lr=0.1, total_steps=0), "total_steps"),
    (OneCycle, dict(max_lr=0.1, total_steps=10.5), "total_steps"),
    (OneCycle, dict(max_lr=0.1, total_steps=10, pct_start=1.0), "pct_start"),
    (OneCycle, dict(max_lr=0.1, total_steps=10, pct_start=0.0), "pct_start"),
    (
        OneCycle,
        dict(max_lr=0.1, total_steps=10, anneal_strategy="cosine"),
        "anneal_strategy",
    ),
    (OneCycle, dict(max_lr=0.1, total_steps=10, div_factor=0), "div_factor"),
    (
        OneCycle,
        dict(max_lr=0.1, total_steps=10, final_div_factor=-1),
        "final_div_factor",
    ),
    (OneCycle, dict(max_lr=0.1, total_steps=10, max_momentum=1.5), "max_momentum"),
    (
        OneCycle,
        dict(max_lr=0.1, total_steps=100, pct_start=0.6, three_phase=True),
        "pct_start",
    ),
    (SGDR, dict(max_lr=-1, first_cycle_steps=10), "max_lr"),
    (SGDR, dict(max_lr=0.1, first_cycle_steps=0), "first_cycle_steps"),
    (SGDR, dict(max_lr=0.1, first_cycle_steps=10, t_mul=0), "t_mul"),
    (SGDR, dict(max_lr=0.1, first_cycle_steps=10, m_mul=-0.5), "m_mul"),
    (SGDR, dict(max_lr=0.1, first_cycle_steps=10, min_lr=0.2), "min_lr"),
    (SGDR, dict(max_lr=0.1, first_cycle_steps=10, warmup_steps=-1), "warmup_steps"),
    (SGDR, dict(max_lr=0.1, first_cycle_steps=10, cycle_limit=0), "cycle_limit"),
    (CyclicLR, dict(base_lr=0.1, max_lr=0.01, step_size=10), "base_lr"),
    (CyclicLR, dict(base_lr=0.01, max_lr=0.1, step_size=0), "step_size"),
    (CyclicLR, dict(base_lr=0.01, max_lr=0.1, step_size=5, mode="tri"), "mode"),
    (CyclicLR, dict(base_lr=0.01, max_lr=0.1, step_size=5, gamma=0), "gamma"),
    (
        WarmupCosine,
        dict(peak_lr=0.1, total_steps=100, warmup_steps=100),
        "warmup_steps",
    ),
    (WarmupCosine, dict(peak_lr=0.1, total_steps=0), "total_steps"),
    (
        WarmupCosine,
        dict(peak_lr=0.1, total_steps=100, warmup_ratio=1.0),
        "warmup_ratio",
    ),
    (
        WarmupCosine,
        dict(peak_lr=0.1, total_steps=100, warmup_steps=5, warmup_ratio=0.1),
        "warmup_ratio",
    ),
    (
        WarmupCosine,
        dict(peak_lr=0.1, total_steps=10, warmup_ratio=0.95),
        "warmup_ratio",
    ),
    (WarmupLinear, dict(peak_lr=0.1, total_steps=100, final_lr=0.2), "final_lr"),
    (WarmupLinear, dict(peak_lr="0.1", total_steps=100), "peak_lr"),
    (WarmupConstant, dict(lr=0.1, warmup_steps=-3), "warmup_steps"),
    (WarmupConstant, dict(lr=0.1, warmup_steps=3, initial_lr=0.5), "initial_lr"),
]


def test_bad_arguments_raise_at_construction():
    for cls, kwargs, name in ERRORS:
        with pytest.raises(ValueError, match=f"`{name}`") as info:
            cls(**kwargs)
        assert "Received:" in str(info.value), (cls, kwargs)


def test_error_message_format():
    with pytest.raises(ValueError) as info:
        WarmupCosine(peak_lr=0.1, total_steps=100, warmup_steps=500)
    assert str(info.value) == (
        "Argument `warmup_steps` must be < total_steps. "
        "Received: warmup_steps=500, total_steps=100"
    )


def test_schedule_drives_compiled_fit():
    # Inside model.fit's compiled step (XLA, steps_per_execution > 1 where allowed): the optimizer's
    # LR after training is the schedule at the optimizer's step count.
    schedule = OneCycle(max_lr=0.05, total_steps=12)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=schedule),
        loss="mse",
        # PyTorch's trainer only allows steps_per_execution=1.
        steps_per_execution=1 if keras.backend.backend() == "torch" else 2,
        jit_compile=keras.backend.backend() != "torch",
    )
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    model.fit(x, x[:, :1], batch_size=4, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 8
    assert float(model.optimizer.learning_rate) == pytest.approx(
        float(schedule(8)), rel=1e-6
    )


# ------------------------------------------------- exactness (issue 15 sweep)


def _boundaries64(t0, t_mul, n):
    starts, length = [0.0], float(t0)
    for _ in range(n):
        starts.append(starts[-1] + length)
        length *= t_mul
    return np.asarray(starts)


@pytest.mark.parametrize(
    "kwargs, step",
    [
        # The true restart is 113330.078: step 113330 is still at the bottom.
        (dict(max_lr=0.1, first_cycle_steps=1000, t_mul=1.5), 113330),
        # Restart at 1921.0018 (cycles shrink towards 2000).
        (dict(max_lr=0.1, first_cycle_steps=100, min_lr=1e-3, t_mul=0.95), 1921),
    ],
)
def test_sgdr_does_not_restart_a_step_early(kwargs, step):
    starts = _boundaries64(kwargs["first_cycle_steps"], kwargs["t_mul"], 200)
    i = int(np.searchsorted(starts, step, side="right") - 1)
    assert starts[i] < step < starts[i + 1] < step + 1  # a restart just after
    ref = sgdr_reference(
        step, kwargs["max_lr"], kwargs["first_cycle_steps"], kwargs["t_mul"],
        1.0, kwargs.get("min_lr", 0.0), 0, None,
    )
    ours = values(SGDR(**kwargs), [step - 1, step, step + 1])
    assert ours[1] == pytest.approx(ref, abs=1e-6)
    # The bottom of the cycle, not a restart.
    assert ours[1] < kwargs.get("min_lr", 0.0) + 1e-3 * kwargs["max_lr"]
    assert ours[2] == pytest.approx(
        sgdr_reference(
            step + 1, kwargs["max_lr"], kwargs["first_cycle_steps"],
            kwargs["t_mul"], 1.0, kwargs.get("min_lr", 0.0), 0, None,
        ),
        rel=1e-4,
    )


def test_sgdr_restarts_on_integer_boundaries_at_that_step():
    # t_mul=1.5 from 8: restarts at 8, 20, 38, 65 exactly, and far out.
    schedule = SGDR(0.1, 8, t_mul=1.5)
    for boundary in (8, 20, 38, 65):
        assert float(schedule(boundary)) == pytest.approx(0.1)
        assert float(schedule(boundary - 1)) < 0.01
    starts = _boundaries64(1000, 2.0, 12)  # integers up to ~4e6
    out = values(SGDR(0.1, 1000, t_mul=2.0), starts[1:].astype("int64"))
    np.testing.assert_allclose(out, 0.1, rtol=1e-6)


@pytest.mark.parametrize("k", [0.5, 2.0, 3.0])
def test_k_decay_equals_timm(k):
    # timm CosineLRScheduler._get_lr: lr_min + 0.5 * (lr_max - lr_min) *
    # (1 + cos(pi * t_curr**k / t_i**k)), per cycle (cycle_mul, cycle_decay).
    def timm(t, t_initial, cycle_mul, cycle_decay, lr_min, base):
        if cycle_mul != 1:
            i = math.floor(
                math.log(1 - t / t_initial * (1 - cycle_mul), cycle_mul)
            )
            t_i = cycle_mul**i * t_initial
            t_curr = t - (1 - cycle_mul**i) / (1 - cycle_mul) * t_initial
        else:
            i = t // t_initial
            t_i = t_initial
            t_curr = t - t_initial * i
        lr_max = base * cycle_decay**i
        return lr_min + 0.5 * (lr_max - lr_min) * (
            1 + math.cos(math.pi * t_curr**k / t_i**k)
        )

    steps = np.arange(0, 300) + 0.5  # clear of the restarts (timm's float log)
    for t0, mul, decay in ((20, 1.0, 0.8), (16, 2.0, 0.5), (10, 1.5, 1.0)):
        ours = SGDR(0.1, t0, t_mul=mul, m_mul=decay, min_lr=1e-3, k_decay=k)
        ref = [timm(t, t0, mul, decay, 1e-3, 0.1) for t in steps]
        assert_close(values(ours, steps), ref, 0.1)
    # WarmupCosine: one cycle after the warmup.
    ours = WarmupCosine(0.1, 110, warmup_steps=10, final_lr=1e-3, k_decay=k)
    steps = np.arange(10, 130)
    ref = [timm(min(t - 10, 100), 100, 1.0, 1.0, 1e-3, 0.1) for t in steps[:-20]]
    ref += [1e-3] * 20
    assert_close(values(ours, steps), ref, 0.1)
    for schedule in (ours, SGDR(0.1, 10, k_decay=k)):
        config = schedule.get_config()
        assert config["k_decay"] == k
        assert type(schedule).from_config(config).get_config() == config


def _compiled(fn):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_troughs_and_peaks_are_exact_compiled(mode):
    # XLA turns `step / step_size` into `step * (1 / step_size)`: the troughs
    # of CyclicLR(1e-4, 1e-2, 7) were 9.4e-5 relative off base_lr.
    schedule = CyclicLR(1e-4, 1e-2, 7, mode=mode, gamma=0.999)
    steps = ops.convert_to_tensor(np.arange(0, 29 * 14 + 1, dtype="float32"))
    for fn in (schedule, _compiled(schedule)):
        out = np.asarray(ops.convert_to_numpy(fn(steps)))
        np.testing.assert_array_equal(out[::14], np.float32(1e-4))
        if mode == "triangular":
            np.testing.assert_array_equal(out[7::14], np.float32(1e-2))
        momentum = np.asarray(ops.convert_to_numpy(schedule.momentum(steps)))
        np.testing.assert_array_equal(momentum[::14], np.float32(0.9))
    # Scalar steps, one by one, compiled.
    fn = _compiled(schedule)
    for k in (0, 7, 14, 21, 140):
        value = float(ops.convert_to_numpy(fn(ops.convert_to_tensor(np.float32(k)))))
        if k % 14 == 0:
            assert value == np.float32(1e-4)
        elif mode == "triangular":
            assert value == np.float32(1e-2)


def test_a_negative_step_is_step_zero():
    # The control core clamps the step it passes, but a schedule called
    # directly (a user's plot, a LearningRateScheduler) with a negative
    # step must also give its first value, not a cycle before it.
    for schedule in (
        SGDR(0.1, 10, t_mul=2.0, min_lr=1e-3),
        SGDR(0.1, 10, warmup_steps=3),
        CyclicLR(1e-3, 1e-2, 4, mode="triangular2"),
        OneCycle(0.1, 50),
        WarmupCosine(0.1, 50, warmup_steps=5),
        WarmupLinear(0.1, 50, warmup_steps=5),
        WarmupConstant(0.1, 5),
    ):
        got = values(schedule, [-7, -1, 0])
        np.testing.assert_array_equal(got, np.full(3, got[2]), err_msg=repr(schedule))
