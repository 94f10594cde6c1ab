"""Hessian eigenvalues and critical points, against exact Hessians and pyhessian."""

import keras
import numpy as np
import pytest

from keras_tricks.diagnosis import critical_point, hessian_eigenvalues

BACKEND = keras.backend.backend()


def _regression(n=64, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (x @ rng.normal(size=(d, 1)) + 0.3 * rng.normal(size=(n, 1))).astype("float32")
    return x, y


def _linear_model(d):
    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(1)])
    model.compile("sgd", loss="mse")
    return model


def test_mse_dense_matches_the_closed_form_hessian():
    x, y = _regression()
    model = _linear_model(5)
    a = np.hstack([x, np.ones((len(x), 1))]).astype("float64")
    exact = np.linalg.eigh(2.0 / len(x) * a.T @ a)
    spectrum = hessian_eigenvalues(model, x, y, k=3, which="both")
    got = np.sort(np.concatenate([spectrum.smallest, spectrum.largest]))
    np.testing.assert_allclose(got, exact.eigenvalues, rtol=1e-4)
    assert spectrum.converged
    # The eigenvectors too (up to sign): (kernel, bias) is the order of A's columns.
    top = spectrum.largest_vectors[0]
    assert abs(top @ exact.eigenvectors[:, -1]) == pytest.approx(1.0, abs=1e-4)
    kernel, bias = spectrum.as_weights(top)
    assert kernel.shape == (5, 1) and bias.shape == (1,)


def _tiny_net(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6, activation="tanh"),
            keras.layers.Dense(3),
        ]
    )
    model.compile(
        "sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 4)).astype("float32")
    y = rng.integers(0, 3, size=40).astype("int32")
    return model, x, y


def _torch_exact_hessian(weights, x, y):
    torch = pytest.importorskip("torch")
    shapes = [w.shape for w in weights]
    theta = torch.tensor(np.concatenate([w.ravel() for w in weights]), dtype=torch.float64)
    xt = torch.tensor(x, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.long)

    def loss(flat):
        parts, start = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            parts.append(flat[start : start + size].reshape(shape))
            start += size
        k1, b1, k2, b2 = parts
        logits = torch.tanh(xt @ k1 + b1) @ k2 + b2
        return torch.nn.functional.cross_entropy(logits, yt)

    return torch.autograd.functional.hessian(loss, theta).numpy()


def _jax_exact_hessian(weights, x, y):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    shapes = [w.shape for w in weights]
    theta = jnp.asarray(np.concatenate([w.ravel() for w in weights]))

    def loss(flat):
        parts, start = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            parts.append(flat[start : start + size].reshape(shape))
            start += size
        k1, b1, k2, b2 = parts
        logits = jnp.tanh(x @ k1 + b1) @ k2 + b2
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(logp[jnp.arange(len(y)), y])

    return np.asarray(jax.jit(jax.hessian(loss))(theta), dtype="float64")


@pytest.mark.parametrize("reference", ["torch", "jax"])
def test_two_layer_net_matches_the_exact_hessian(reference):
    from keras_tricks.diagnosis import _backend

    model, x, y = _tiny_net()
    weights = [keras.ops.convert_to_numpy(v.value) for v in model.trainable_variables]
    n = sum(w.size for w in weights)
    assert n <= 200
    exact_fn = _torch_exact_hessian if reference == "torch" else _jax_exact_hessian
    hessian = exact_fn(weights, x, y)
    exact = np.linalg.eigvalsh(hessian)
    # Hessian-vector products of the backend module, against H @ v.
    derivatives = _backend.loss_derivatives(model, x, y)
    rng = np.random.default_rng(0)
    for _ in range(2):
        v = rng.normal(size=n)
        parts, start = [], 0
        for w in weights:
            parts.append(v[start : start + w.size].reshape(w.shape).astype("float32"))
            start += w.size
        hv = np.concatenate([h.ravel() for h in derivatives.hvp(parts)])
        expected = hessian @ v
        np.testing.assert_allclose(hv, expected, atol=1e-4 * np.linalg.norm(expected))
    # Both ends of the spectrum (one is negative: not a minimum).
    spectrum = hessian_eigenvalues(model, x, y, k=2)
    assert exact[0] < 0 < exact[-1]
    np.testing.assert_allclose(spectrum.largest, exact[::-1][:2], rtol=1e-4)
    np.testing.assert_allclose(spectrum.smallest, exact[:2], rtol=1e-4)
    assert spectrum.converged and spectrum.iterations < n


def _zero_linear_net():
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(2, use_bias=False, kernel_initializer="zeros"),
            keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros"),
        ]
    )
    model.compile("sgd", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 2)).astype("float32")
    y = (x @ np.array([[3.0], [-1.0]])).astype("float32")
    return model, x, y


def test_symmetric_spectrum_saddle_and_escape_direction():
    # At w = 0 the Hessian of (w2 . W1 x - y)^2 has eigenvalues +-lambda (the
    # power iteration's stall case): Lanczos finds both; the point is a saddle.
    model, x, y = _zero_linear_net()
    point = critical_point(model, x, y)
    assert point.kind == "saddle point"
    assert point.gradient_norm < 1e-6
    np.testing.assert_allclose(point.smallest, -point.largest, rtol=1e-4)
    # Exact: the off-diagonal block is -(2/n) sum_i y_i x_i, for each hidden unit.
    c = -2.0 / len(x) * (y[:, 0] @ x)
    np.testing.assert_allclose(point.largest, np.linalg.norm(c), rtol=1e-4)
    # Moving along the escape direction (either sign) lowers the loss.
    loss0 = float(model.evaluate(x, y, verbose=0))
    for sign in (1.0, -1.0):
        for variable, d in zip(model.trainable_variables, point.escape_direction):
            variable.assign(sign * 0.05 * d)
        assert float(model.evaluate(x, y, verbose=0)) < loss0


def test_least_squares_solution_is_a_local_minimum():
    x, y = _regression()
    model = _linear_model(5)
    a = np.hstack([x, np.ones((len(x), 1))]).astype("float64")
    solution = np.linalg.lstsq(a, y.astype("float64"), rcond=None)[0]
    model.layers[0].set_weights([solution[:5].astype("float32"), solution[5].astype("float32")])
    point = critical_point(model, x, y)
    assert point.kind == "local minimum"
    assert point.escape_direction is None
    # Away from it the gradient is not zero.
    model.layers[0].set_weights([np.zeros((5, 1), "float32"), np.zeros(1, "float32")])
    assert critical_point(model, x, y).kind == "not a critical point"


@pytest.mark.backends("torch")
@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_top_eigenvalue_matches_pyhessian():
    torch = pytest.importorskip("torch")
    pyhessian = pytest.importorskip("pyhessian")
    model, x, y = _tiny_net(seed=1)
    ours = hessian_eigenvalues(model, x, y, which="largest")
    # pyhessian takes the same torch module: a Keras model on torch is one.
    torch.manual_seed(0)
    criterion = torch.nn.CrossEntropyLoss()
    data = (torch.tensor(x), torch.tensor(y, dtype=torch.long))
    computer = pyhessian.hessian(model, criterion, data=data, cuda=False)
    top, _ = computer.eigenvalues(maxIter=200, tol=1e-6)
    for parameter in model.parameters():
        parameter.grad = None  # pyhessian leaves a graph in .grad
    exact = np.linalg.eigvalsh(
        _torch_exact_hessian(
            [keras.ops.convert_to_numpy(v.value) for v in model.trainable_variables], x, y
        )
    )
    # pyhessian's power iteration returns the largest |eigenvalue|.
    assert abs(exact[-1]) > abs(exact[0])
    np.testing.assert_allclose(top[0], ours.largest[0], rtol=1e-3)
    np.testing.assert_allclose(ours.largest[0], exact[-1], rtol=1e-4)


def test_bad_arguments_are_named():
    model, x, y = _zero_linear_net()
    with pytest.raises(ValueError, match="`k`.*Received: k=0"):
        hessian_eigenvalues(model, x, y, k=0)
    with pytest.raises(ValueError, match="`which`.*Received: which='top'"):
        hessian_eigenvalues(model, x, y, which="top")
    with pytest.raises(ValueError, match="`tol`"):
        hessian_eigenvalues(model, x, y, tol=-1.0)
    with pytest.raises(ValueError, match="`grad_tol`"):
        critical_point(model, x, y, grad_tol=True)
    hessian_eigenvalues(model, x, y, k=np.int64(1), tol=np.float32(1e-6))
