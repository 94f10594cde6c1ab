"""DiffGrad equals pytorch_optimizer.DiffGrad (4.1, the v2 friction) step by step."""

import keras
import numpy as np
import pytest
from _optimizer_reference import apply_eagerly, gradients, torch_trajectory

from keras_tricks.optimizers import DiffGrad

po = pytest.importorskip("pytorch_optimizer")

SETTINGS = {
    "defaults": ({}, {}),
    "weight_decay": ({"weight_decay": 0.1}, {"weight_decay": 0.1}),
    "betas": (
        {"beta_1": 0.5, "beta_2": 0.99, "epsilon": 1e-6},
        {"betas": (0.5, 0.99), "eps": 1e-6},
    ),
}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_equals_pytorch_optimizer_step_by_step(setting):
    ours, theirs = SETTINGS[setting]
    grads = gradients(50)
    got = apply_eagerly(DiffGrad(0.05, **ours), grads)
    expected = torch_trajectory(lambda p: po.DiffGrad(p, lr=0.05, **theirs), grads)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)
    assert np.abs(expected[-1] - expected[0]).max() > 0.05


def test_friction_from_the_previous_gradient():
    # A constant gradient: the first step sees |0 - g| (g_0 = 0), every later
    # step |g - g| = 0, friction sigmoid(0) = 0.5: half of Adam's step.
    g = np.full((6, 2), 3.0, "float32")
    w0 = np.zeros(2, "float32")
    got = apply_eagerly(DiffGrad(0.1), g, w0=w0)
    steps = np.diff(np.concatenate([w0[None], got]), axis=0)
    # Adam's steps for a constant gradient (m_hat = g, v_hat = g**2).
    t = np.arange(1, 7)[:, None]
    m = 3.0 * (1 - 0.9**t)
    v = 9.0 * (1 - 0.999**t)
    alpha = 0.1 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
    adam_steps = -alpha * m / (np.sqrt(v) + 1e-8) * np.ones((1, 2))
    sig = 1 / (1 + np.exp(-3.0))
    np.testing.assert_allclose(steps[0], sig * adam_steps[0], rtol=1e-5)
    np.testing.assert_allclose(steps[1:], 0.5 * adam_steps[1:], rtol=1e-5)


def test_state_holds_the_previous_gradient():
    opt = DiffGrad()
    v = keras.Variable(np.zeros((3,), "float32"))
    opt.apply([keras.ops.convert_to_tensor(np.array([1.0, -2.0, 3.0], "float32"))], [v])
    names = [w.name for w in opt.variables]
    assert sum("previous_grad" in n for n in names) == 1
    previous = opt._previous_grads[0]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(previous), [1.0, -2.0, 3.0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="Received: beta_1=-0.1"):
        DiffGrad(beta_1=-0.1)
    with pytest.raises(ValueError, match="Received: beta_2=1"):
        DiffGrad(beta_2=1)
    with pytest.raises(ValueError, match="Received: epsilon='x'"):
        DiffGrad(epsilon="x")
    with pytest.raises(ValueError, match="Received: weight_decay=-1"):
        DiffGrad(weight_decay=-1)
    assert DiffGrad(beta_2=np.float64(0.99)).beta_2 == pytest.approx(0.99)


def test_config_round_trip():
    opt = DiffGrad(0.003, beta_1=0.8, weight_decay=0.01, global_clipnorm=1.0)
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(opt)
    )
    assert isinstance(restored, DiffGrad)
    assert restored.get_config() == opt.get_config()
