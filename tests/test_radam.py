"""RAdam equals torch.optim.RAdam step by step (and pytorch_optimizer's RAdam
for `degenerated_to_sgd=False`)."""

import math

import keras
import numpy as np
import pytest
from _optimizer_reference import apply_eagerly, gradients, torch_trajectory

from keras_tricks.optimizers import RAdam
from keras_tricks.optimizers.radam import _first_rectified_step

torch = pytest.importorskip("torch")

SETTINGS = {
    "defaults": ({}, {}),
    "decoupled_wd": (
        {"weight_decay": 0.1},
        {"weight_decay": 0.1, "decoupled_weight_decay": True},
    ),
    "l2": (
        {"weight_decay": 0.05, "decoupled_weight_decay": False},
        {"weight_decay": 0.05},
    ),
    "betas": (
        {"beta_1": 0.5, "beta_2": 0.99, "epsilon": 1e-6},
        {"betas": (0.5, 0.99), "eps": 1e-6},
    ),
    "short_beta_2": ({"beta_2": 0.6}, {"betas": (0.9, 0.6)}),  # never rectified
}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_equals_torch_step_by_step(setting):
    ours, theirs = SETTINGS[setting]
    grads = gradients(40)
    got = apply_eagerly(RAdam(0.01, **ours), grads)
    expected = torch_trajectory(
        lambda p: torch.optim.RAdam(p, lr=0.01, **theirs), grads
    )
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)
    # The test sees a real trajectory.
    assert np.abs(expected[-1] - expected[0]).max() > 0.02


def test_no_update_before_rectification_when_not_degenerated():
    po = pytest.importorskip("pytorch_optimizer")
    grads = gradients(20)
    got = apply_eagerly(RAdam(0.01, degenerated_to_sgd=False), grads)
    expected = torch_trajectory(
        lambda p: po.RAdam(p, lr=0.01, degenerated_to_sgd=False), grads
    )
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)
    # Steps 1..5 do not move at beta_2=0.999; step 6 does.
    w0 = got[0]
    np.testing.assert_array_equal(got[4], w0)
    assert np.abs(got[5] - got[4]).max() > 1e-4


def _rect(t, beta_2):
    rho_inf = 2 / (1 - beta_2) - 1
    rho = rho_inf - 2 * t * beta_2**t / (1 - beta_2**t)
    return math.sqrt(
        (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
    )


@pytest.mark.parametrize("beta_2", [0.999, 0.9999, 0.98])
def test_rho_is_accurate_in_float32(beta_2):
    # rho_5 = 4.996 at beta_2=0.999: the naive float32 formula is off by ~1e-2
    # there; the rearranged one must be far below that.
    opt = RAdam(beta_2=beta_2)
    steps = np.array([1, 2, 5, 6, 7, 10, 50, 500, 5000, 10**6], "float32")
    got = keras.ops.convert_to_numpy(
        opt._rho(keras.ops.convert_to_tensor(steps), "float32")
    )
    t = steps.astype("float64")
    expected = (
        2 / (1 - beta_2) - 1 - 2 * t * beta_2**t / (-np.expm1(t * np.log(beta_2)))
    )
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-5)
    first = _first_rectified_step(beta_2)
    assert first == next(t for t in range(1, 100) if _rho64(t, beta_2) > 5)
    assert _rect(first, beta_2) > 0


def _rho64(t, beta_2):
    return 2 / (1 - beta_2) - 1 - 2 * t * beta_2**t / (1 - beta_2**t)


def test_never_rectified_when_rho_inf_is_small():
    assert _first_rectified_step(0.6) is None  # rho_inf = 4
    assert _first_rectified_step(0.999) == 6


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"beta_1.*Received: beta_1=1.0"):
        RAdam(beta_1=1.0)
    with pytest.raises(ValueError, match=r"beta_2.*Received: beta_2=0"):
        RAdam(beta_2=0)
    with pytest.raises(ValueError, match="Received: epsilon=-1"):
        RAdam(epsilon=-1)
    with pytest.raises(ValueError, match="Received: weight_decay=-0.1"):
        RAdam(weight_decay=-0.1)
    with pytest.raises(ValueError, match="Received: degenerated_to_sgd=1"):
        RAdam(degenerated_to_sgd=1)
    with pytest.raises(ValueError, match="Received: decoupled_weight_decay='no'"):
        RAdam(decoupled_weight_decay="no")
    with pytest.raises(ValueError, match="Received: beta_1=True"):
        RAdam(beta_1=True)
    # NumPy scalars are numbers.
    opt = RAdam(beta_1=np.float32(0.8), weight_decay=np.float64(0.1))
    assert opt.beta_1 == pytest.approx(0.8)


def test_config_round_trip():
    for opt in (
        RAdam(0.003, beta_1=0.8, weight_decay=0.01, degenerated_to_sgd=False),
        RAdam(weight_decay=0.02, decoupled_weight_decay=False, clipnorm=1.0),
    ):
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(opt)
        )
        assert isinstance(restored, RAdam)
        assert restored.get_config() == opt.get_config()
    assert restored.get_config()["weight_decay"] == 0.02
    assert restored.weight_decay is None  # L2 is applied in the update
