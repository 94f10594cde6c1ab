"""Lookahead equals pytorch_optimizer.Lookahead (Algorithm 1) step by step."""

import keras
import numpy as np
import pytest
from _optimizer_reference import (
    _Trajectory,
    apply_eagerly,
    centralized,
    fit_probe,
    gradients,
    probe_model,
    torch_trajectory,
    window_means,
)

from keras_tricks.callbacks import BackupAndRestore
from keras_tricks.optimizers import (
    GradientAccumulation,
    GradientCentralization,
    Lookahead,
    RAdam,
)

torch = pytest.importorskip("torch")
po = pytest.importorskip("pytorch_optimizer")

INNER = {
    "sgd_momentum": (
        lambda: keras.optimizers.SGD(0.1, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    ),
    "adam": (
        lambda: keras.optimizers.Adam(0.05, epsilon=1e-8),
        lambda p: torch.optim.Adam(p, lr=0.05),
    ),
    "radam": (lambda: RAdam(0.05), lambda p: torch.optim.RAdam(p, lr=0.05)),
}


@pytest.mark.parametrize(
    "inner, k, alpha",
    [("sgd_momentum", 6, 0.5), ("adam", 3, 0.8), ("radam", 1, 0.3), ("radam", 6, 0.5)],
)
def test_equals_pytorch_optimizer_step_by_step(inner, k, alpha):
    ours, theirs = INNER[inner]
    grads = gradients(30)
    got = fit_probe(
        probe_model(Lookahead(ours(), sync_period=k, slow_step_size=alpha)), grads
    )
    expected = torch_trajectory(
        lambda p: po.Lookahead(theirs(p), k=k, alpha=alpha), grads
    )
    # Keras's Adam computes its bias corrections in float32 (PyTorch in
    # float64): a few 1e-6 apart after 30 steps.
    atol = 1e-5 if inner == "adam" else 2e-6
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=atol)
    # Lookahead changed the trajectory.
    bare = torch_trajectory(theirs, grads)
    assert np.abs(bare[-1] - expected[-1]).max() > 1e-3


def test_fit_with_jit_compile_equals_pytorch_optimizer():
    # XLA on TensorFlow and JAX, `torch.compile` on PyTorch. There a `+ 0`
    # copy of the step counter taken before the inner update was compiled
    # into an alias of the counter: no sync ever fired.
    grads = gradients(12)
    model = probe_model(
        Lookahead(keras.optimizers.Adam(0.05), sync_period=3), jit_compile=True
    )
    got = fit_probe(model, grads)
    expected = torch_trajectory(
        lambda p: po.Lookahead(torch.optim.Adam(p, lr=0.05), k=3, alpha=0.5), grads
    )
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-5)


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise RuntimeError("Interrupted!")


class _SlowWeights(keras.callbacks.Callback):
    """The slow weights when an epoch begins (after a restore, for the first)."""

    def __init__(self):
        super().__init__()
        self.at_epoch = {}

    def on_epoch_begin(self, epoch, logs=None):
        slow = getattr(self.model.optimizer, "slow_weights", None)
        if slow is None:  # not built yet
            return
        self.at_epoch[epoch] = [keras.ops.convert_to_numpy(v).copy() for v in slow]


def test_backup_and_restore_resumes_the_same_trajectory(tmp_path):
    # 3 steps an epoch, a sync every 4 steps: the run is interrupted when
    # epoch 3 begins, after step 9, one step past the sync of step 8, so the
    # slow weights differ from the model's and must come back from the backup.
    epochs, grads = 6, gradients(3)
    expected = torch_trajectory(
        lambda p: po.Lookahead(torch.optim.Adam(p, lr=0.05), k=4, alpha=0.5),
        np.concatenate([grads] * epochs),
    )

    def run(callbacks):
        model = probe_model(Lookahead(keras.optimizers.Adam(0.05), sync_period=4))
        trajectory, slow = _Trajectory(), _SlowWeights()
        try:
            model.fit(
                grads,
                np.zeros((len(grads), 1), "float32"),
                batch_size=1,
                epochs=epochs,
                shuffle=False,
                verbose=0,
                callbacks=[
                    BackupAndRestore(str(tmp_path)),
                    trajectory,
                    slow,
                    *callbacks,
                ],
            )
        except RuntimeError:
            pass
        return np.stack(trajectory.weights), slow.at_epoch

    first, slow_before = run([_Interrupt(3)])
    assert len(first) == 9
    second, slow_after = run([])
    assert sorted(slow_after) == [3, 4, 5]  # resumed at epoch 3
    np.testing.assert_array_equal(slow_after[3][0], slow_before[3][0])
    assert np.abs(slow_after[3][0] - first[-1]).max() > 1e-3
    np.testing.assert_allclose(
        np.concatenate([first, second]), expected, rtol=2e-5, atol=1e-5
    )


def test_eager_apply_equals_compiled_fit():
    grads = gradients(8)
    got = apply_eagerly(Lookahead(RAdam(0.05), sync_period=3), grads)
    expected = torch_trajectory(
        lambda p: po.Lookahead(torch.optim.RAdam(p, lr=0.05), k=3, alpha=0.5), grads
    )
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)


def test_slow_weights_start_at_the_first_update():
    grads = gradients(4)
    model = probe_model(Lookahead(keras.optimizers.SGD(0.1), sync_period=2))
    w0 = model.get_weights()[0]
    model.set_weights([w0 + 1.0])  # changed after build, before training
    got = fit_probe(model, grads)
    # First sync: phi = (w0+1) + 0.5 * (theta_2 - (w0+1)).
    theta_2 = w0 + 1.0 - 0.1 * (grads[0] + grads[1])
    np.testing.assert_allclose(got[1], (w0 + 1.0 + theta_2) / 2, rtol=1e-5)


def test_in_compiled_fit_and_composes_with_wrappers():
    # Ranger: Lookahead(GradientCentralization(RAdam)), then accumulation
    # inside: syncs count the inner optimizer's real updates.
    grads = gradients(24)
    model = probe_model(Lookahead(GradientCentralization(RAdam(0.05)), sync_period=4))
    got = fit_probe(model, grads)
    expected = torch_trajectory(
        lambda p: po.Lookahead(torch.optim.RAdam(p, lr=0.05), k=4, alpha=0.5),
        centralized(grads),
    )
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)

    model = probe_model(
        Lookahead(GradientAccumulation(RAdam(0.05), steps=2), sync_period=3)
    )
    got = fit_probe(model, grads)
    expected = torch_trajectory(
        lambda p: po.Lookahead(torch.optim.RAdam(p, lr=0.05), k=3, alpha=0.5),
        window_means(grads, 2),
    )
    np.testing.assert_allclose(got[1::2], expected, rtol=2e-5, atol=2e-6)

    # And the other way round: accumulation outside Lookahead.
    model = probe_model(
        GradientAccumulation(Lookahead(RAdam(0.05), sync_period=3), steps=2)
    )
    got = fit_probe(model, grads)
    np.testing.assert_allclose(got[1::2], expected, rtol=2e-5, atol=2e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Received: sync_period=0"):
        Lookahead(keras.optimizers.SGD(), sync_period=0)
    with pytest.raises(ValueError, match="Received: sync_period=2.0"):
        Lookahead(keras.optimizers.SGD(), sync_period=2.0)
    with pytest.raises(ValueError, match="Received: slow_step_size=1.5"):
        Lookahead(keras.optimizers.SGD(), slow_step_size=1.5)
    with pytest.raises(TypeError, match="Received: optimizer='adam'"):
        Lookahead("adam")
    with pytest.raises(ValueError, match="Received: learning_rate=0.1"):
        Lookahead(keras.optimizers.SGD(), learning_rate=0.1)
    opt = Lookahead(keras.optimizers.SGD(), sync_period=np.int64(4))
    assert opt.sync_period == 4


def test_config_round_trip():
    opt = Lookahead(
        GradientCentralization(RAdam(0.003)), sync_period=5, slow_step_size=0.6
    )
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(opt)
    )
    assert isinstance(restored, Lookahead)
    assert isinstance(restored.inner_optimizer, GradientCentralization)
    assert isinstance(restored.inner_optimizer.inner_optimizer, RAdam)
    assert restored.get_config() == opt.get_config()
