"""AdamW8bit: bitsandbytes's maps and order of operations, nearest-code rounding.

References: bitsandbytes 0.50.2 on CPU for the maps and the (de)quantization
of a block; a NumPy implementation of the same algorithm
(`adamw_8bit_reference`) for whole trajectories, because bitsandbytes's CPU
quantizer does not always pick the nearest code (the CUDA kernels do).
"""

import os

import keras
import numpy as np
import pytest
from _optimizer_reference import (
    adamw_8bit_reference,
    adamw_8bit_step,
    apply_eagerly,
    fit_probe,
    gradients,
    initial_weights,
    nearest_codes,
    optimizer_bytes,
    probe_model,
    torch_trajectory,
)

from keras_tricks.optimizers import AdamW8bit
from keras_tricks.optimizers.adamw_8bit import dynamic_map, quantize

BIG = (64, 80)  # 5120 values >= 4096: 20 blocks of 256


def test_maps_equal_bitsandbytes():
    for signed in (True, False):
        codes = dynamic_map(signed)
        assert codes.shape == (256,) and codes.dtype == np.float32
        assert np.all(np.diff(codes) > 0)
        assert codes[-1] == 1.0 and np.sum(codes == 0) == 1
    np.testing.assert_allclose(dynamic_map(True)[0], -0.99297, atol=1e-5)
    bnb = pytest.importorskip("bitsandbytes.functional")
    for signed in (True, False):
        np.testing.assert_array_equal(
            dynamic_map(signed), bnb.create_dynamic_map(signed=signed).numpy()
        )


def _values(signed, seed=0):
    rng = np.random.default_rng(seed)
    codes = dynamic_map(signed)
    mids = (codes[1:] + codes[:-1]) / 2
    x = np.concatenate(
        [
            rng.uniform(-1, 1, 4000),
            10 ** rng.uniform(-9, 0, 4000) * rng.choice([-1, 1], 4000),
            codes,
            np.nextafter(mids, np.float32(2)),
            np.nextafter(mids, np.float32(-2)),
            [0.0, 1.0, -1.0, 0.1, -0.1, 1e-6, 1e-7, 0.01],
        ]
    ).astype("float32")
    return x if signed else np.abs(x)


@pytest.mark.parametrize("signed", [True, False])
def test_quantize_is_the_nearest_code(signed):
    codes = dynamic_map(signed)
    x = _values(signed)
    got = keras.ops.convert_to_numpy(quantize(keras.ops.convert_to_tensor(x), signed))
    expected = nearest_codes(x, codes)
    d_got = np.abs(x - codes[got].astype("float64"))
    d_exp = np.abs(x - codes[expected].astype("float64"))
    # Equal, except at exact float32 ties between two codes.
    np.testing.assert_array_equal(d_got, d_exp)
    assert np.mean(got == expected) > 0.999


def test_block_equals_bitsandbytes_where_it_rounds_to_nearest():
    F = pytest.importorskip("bitsandbytes.functional")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = (rng.normal(size=1000) * 10 ** rng.uniform(-4, 0, 1000)).astype("float32")
    q, state = F.quantize_blockwise(torch.tensor(x), blocksize=256)
    absmax = np.abs(np.pad(x, (0, 24)).reshape(4, 256)).max(axis=1)
    np.testing.assert_array_equal(state.absmax.numpy(), absmax)
    opt = AdamW8bit()
    blocks = np.pad(x, (0, 24)).reshape(4, 256)
    codes, ours_absmax = opt._quantize(keras.ops.convert_to_tensor(blocks), True)
    codes = keras.ops.convert_to_numpy(codes).reshape(-1)[:1000].astype(int)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours_absmax), absmax)
    theirs = q.numpy().astype(int)
    normalized = blocks.reshape(-1)[:1000] / np.repeat(absmax, 256)[:1000]
    signed = dynamic_map(True)
    d_ours = np.abs(normalized - signed[codes])
    d_theirs = np.abs(normalized - signed[theirs])
    assert np.all(d_ours <= d_theirs)  # never farther than bitsandbytes's pick
    same = codes == theirs
    assert same.mean() > 0.8
    np.testing.assert_array_equal(d_ours[~same] < d_theirs[~same], True)
    # Dequantization: the same values as bitsandbytes's for our codes.
    state.absmax = torch.tensor(absmax)
    deq = F.dequantize_blockwise(
        torch.tensor(np.pad(codes, (0, 24)).astype("uint8")), state
    ).numpy()
    ours = keras.ops.convert_to_numpy(
        opt._dequantize(
            keras.ops.convert_to_tensor(
                np.pad(codes, (0, 24)).reshape(4, 256).astype("uint8")
            ),
            keras.ops.convert_to_tensor(absmax),
            True,
        )
    ).reshape(-1)
    np.testing.assert_array_equal(ours, deq)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"beta_1": 0.8, "beta_2": 0.99, "weight_decay": 0.1, "epsilon": 1e-6},
        {"block_size": 100},
    ],
    ids=["defaults", "hyper", "block100"],
)
def test_each_step_equals_numpy_reference(kwargs):
    # Step by step from the same state: a value within float32 rounding of
    # the midpoint between two codes may round either way (and a free-running
    # comparison would then drift apart), so every step starts from our state.
    grads = gradients(12, shape=BIG)
    opt = AdamW8bit(0.01, **kwargs)
    variable = keras.Variable(initial_weights(shape=BIG))
    opt.build([variable])
    state_vars = opt._moment_state[0]
    got = []
    for t, g in enumerate(grads):
        w = keras.ops.convert_to_numpy(variable)
        state = tuple(keras.ops.convert_to_numpy(s) for s in state_vars)
        opt.apply([keras.ops.convert_to_tensor(g)], [variable])
        w_ref, state_ref = adamw_8bit_step(w, g, state, t + 1, lr=0.01, **kwargs)
        w_new = keras.ops.convert_to_numpy(variable)
        got.append(w_new)
        np.testing.assert_allclose(w_new, w_ref, rtol=1e-5, atol=1e-6)
        new = [keras.ops.convert_to_numpy(s) for s in state_vars]
        np.testing.assert_allclose(new[1], state_ref[1], rtol=1e-5)
        np.testing.assert_allclose(new[3], state_ref[3], rtol=1e-5)
        for codes, codes_ref in ((new[0], state_ref[0]), (new[2], state_ref[2])):
            assert np.mean(codes.astype(int) == codes_ref) > 0.9999
    got = np.stack(got)
    expected = adamw_8bit_reference(grads, lr=0.01, **kwargs)
    # Free running, the two may part by a code at a near-tie, rarely.
    np.testing.assert_allclose(got, expected, atol=2e-3)
    # And close to float32 AdamW (the quantization error is small).
    torch = pytest.importorskip("torch")
    full = torch_trajectory(
        lambda p: torch.optim.AdamW(
            p,
            lr=0.01,
            betas=(kwargs.get("beta_1", 0.9), kwargs.get("beta_2", 0.999)),
            eps=kwargs.get("epsilon", 1e-8),
            weight_decay=kwargs.get("weight_decay", 0.01),
        ),
        grads,
    )
    moved = np.abs(full[-1] - full[0]).mean()
    assert np.abs(got[-1] - full[-1]).mean() < 0.2 * moved
    assert np.abs(got - full).max() > 1e-6  # but not equal: it is 8-bit


def test_small_tensors_keep_float32_moments_and_equal_torch_adamw():
    torch = pytest.importorskip("torch")
    grads = gradients(20)
    opt = AdamW8bit(0.01)
    got = apply_eagerly(opt, grads)
    expected = torch_trajectory(lambda p: torch.optim.AdamW(p, lr=0.01), grads)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)
    assert {keras.backend.standardize_dtype(v.dtype) for v in opt.variables[2:]} == {
        "float32"
    }


def test_memory_is_a_quarter_of_adamw():
    model = keras.Sequential(
        [keras.Input((256,)), keras.layers.Dense(512), keras.layers.Dense(10)]
    )
    ours, adamw = AdamW8bit(), keras.optimizers.AdamW()
    ours.build(model.trainable_variables)
    adamw.build(model.trainable_variables)
    ratio = optimizer_bytes(ours) / optimizer_bytes(adamw)
    assert ratio <= 0.27, ratio
    dtypes = [keras.backend.standardize_dtype(v.dtype) for v in ours.variables]
    assert dtypes.count("uint8") == 4  # two 8-bit tensors, m and v each


def test_save_load_restores_the_8bit_state_exactly(tmp_path):
    grads = gradients(12, shape=BIG)
    model = probe_model(AdamW8bit(0.01), shape=BIG)
    fit_probe(model, grads[:6])
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
        assert keras.backend.standardize_dtype(
            a.dtype
        ) == keras.backend.standardize_dtype(b.dtype)
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )
    np.testing.assert_array_equal(
        fit_probe(loaded, grads[6:]), fit_probe(model, grads[6:])
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    keras.config.set_dtype_policy(policy)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 128)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((128,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid", dtype="float32"),
        ]
    )
    model.compile(optimizer=AdamW8bit(1e-2), loss="binary_crossentropy")
    history = model.fit(x, y, batch_size=16, epochs=4, verbose=0)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]
    opt = model.optimizer
    if policy == "mixed_float16":
        assert isinstance(opt, keras.optimizers.LossScaleOptimizer)
        opt = opt.inner_optimizer
    dtypes = [keras.backend.standardize_dtype(v.dtype) for v in opt.variables]
    assert dtypes.count("uint8") == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="Received: block_size=0"):
        AdamW8bit(block_size=0)
    with pytest.raises(ValueError, match="Received: min_8bit_size=1.5"):
        AdamW8bit(min_8bit_size=1.5)
    with pytest.raises(ValueError, match="Received: beta_2=1.0"):
        AdamW8bit(beta_2=1.0)
    with pytest.raises(ValueError, match="Received: weight_decay=-1"):
        AdamW8bit(weight_decay=-1)
    assert AdamW8bit(block_size=np.int64(128)).block_size == 128


def test_config_round_trip():
    opt = AdamW8bit(
        0.003, beta_1=0.8, weight_decay=0.0, block_size=128, min_8bit_size=0
    )
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(opt)
    )
    assert isinstance(restored, AdamW8bit)
    assert restored.get_config() == opt.get_config()
