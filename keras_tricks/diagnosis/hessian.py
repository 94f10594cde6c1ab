"""The Hessian of the training loss: its extreme eigenvalues, and critical points.

Seed 001: at a critical point (gradient zero) the Hessian's eigenvalues tell a
local minimum (all >= 0) from a saddle point (some < 0); a saddle is escaped
along the eigenvector of a negative eigenvalue. The Hessian is never formed:
Lanczos iterations (with full reorthogonalization, in float64 on the host)
need only Hessian-vector products, which `_backend` computes with each
backend's autodiff. Lanczos finds both ends of the spectrum at once and does
not stall on a symmetric spectrum `±λ`, where plain power iteration does.
"""

import numbers

import numpy as np

from keras_tricks.diagnosis import _backend

_WHICH = ("both", "largest", "smallest")


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(
            f"Argument `{name}` must be an integer >= {low}. Received: {name}={value!r}"
        )


def _check_positive(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not np.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"Argument `{name}` must be a number > 0. Received: {name}={value!r}"
        )


class _Flat:
    """Flattens per-variable arrays to one float64 vector and back."""

    def __init__(self, variables):
        self.shapes = [tuple(v.shape) for v in variables]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.size = int(sum(self.sizes))

    def flatten(self, arrays):
        return np.concatenate([np.ravel(a).astype("float64") for a in arrays])

    def unflatten(self, vector):
        out, start = [], 0
        for shape, size in zip(self.shapes, self.sizes):
            out.append(np.reshape(vector[start : start + size], shape))
            start += size
        return out


def _lanczos(matvec, n, k, which, max_iter, tol, rng):
    """Extreme eigenpairs of the symmetric operator `matvec` by Lanczos."""
    max_iter = min(max_iter, n)
    basis = np.zeros((max_iter + 1, n))
    q = rng.standard_normal(n)
    basis[0] = q / np.linalg.norm(q)
    alphas, betas = [], []
    evals = evecs = None
    converged = False
    for j in range(max_iter):
        w = matvec(basis[j])
        alpha = float(w @ basis[j])
        alphas.append(alpha)
        # Full reorthogonalization, twice ("twice is enough"): in floating point
        # the three-term recurrence alone loses orthogonality and finds ghosts.
        for _ in range(2):
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta = float(np.linalg.norm(w))
        t = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        evals, evecs = np.linalg.eigh(t)
        wanted = _wanted(len(evals), k, which)
        scale = max(np.max(np.abs(evals)), 1e-30)
        residuals = np.abs(beta * evecs[-1, wanted])
        if beta <= 1e-12 * scale or j + 1 == n:
            converged = True  # an invariant subspace: the Ritz values are exact
            break
        if len(evals) >= min(2 * k, n) and np.all(residuals <= tol * scale):
            converged = True
            break
        betas.append(beta)
        basis[j + 1] = w / beta
    m = len(alphas)
    vectors = (basis[:m].T @ evecs).T  # one Ritz vector a row, ascending
    return evals, vectors, m, converged


def _wanted(m, k, which):
    k = min(k, m)
    low, high = list(range(k)), list(range(m - k, m))
    if which == "smallest":
        return low
    if which == "largest":
        return high
    return sorted(set(low + high))


class HessianSpectrum:
    """The extreme eigenvalues of a loss's Hessian, with their eigenvectors.

    Returned by `hessian_eigenvalues`. Eigenvectors are unit vectors over all
    the trainable weights, flattened in the order of
    `model.trainable_variables`; `as_weights(vector)` reshapes one like the
    variables.

    Attributes:
        largest: NumPy array. The `k` largest eigenvalues, largest first
            (empty when `which="smallest"`).
        smallest: NumPy array. The `k` smallest eigenvalues, smallest first
            (empty when `which="largest"`).
        largest_vectors: NumPy array `(k, n)`. Their eigenvectors, a row each.
        smallest_vectors: NumPy array `(k, n)`. Their eigenvectors.
        loss: float. The loss at the weights examined.
        gradient_norm: float. The global norm of the loss's gradient there.
        iterations: int. Lanczos iterations (Hessian-vector products) used.
        converged: bool. Whether the residuals fell below `tol`.
    """

    def __init__(self, flat, largest, largest_vectors, smallest, smallest_vectors,
                 loss, gradient_norm, iterations, converged):
        self._flat = flat
        self.largest = largest
        self.largest_vectors = largest_vectors
        self.smallest = smallest
        self.smallest_vectors = smallest_vectors
        self.loss = loss
        self.gradient_norm = gradient_norm
        self.iterations = iterations
        self.converged = converged

    def as_weights(self, vector):
        """Reshape a flat vector (an eigenvector) like `model.trainable_variables`.

        Args:
            vector: array-like of size `n`, the number of trainable weights.

        Returns:
            A list of NumPy arrays, one per trainable variable.
        """
        vector = np.asarray(vector, dtype="float64")
        if vector.shape != (self._flat.size,):
            raise ValueError(
                f"Argument `vector` must have shape ({self._flat.size},). "
                f"Received: vector.shape={vector.shape}"
            )
        return self._flat.unflatten(vector)

    def __repr__(self):
        return (
            f"HessianSpectrum(largest={np.round(self.largest, 6).tolist()}, "
            f"smallest={np.round(self.smallest, 6).tolist()}, "
            f"iterations={self.iterations}, converged={self.converged})"
        )


def _check_args(k, which, max_iter, tol):
    _check_int("k", k, 1)
    if which not in _WHICH:
        raise ValueError(f"Argument `which` must be one of {_WHICH}. Received: which={which!r}")
    _check_int("max_iter", max_iter, 1)
    _check_positive("tol", tol)


def _spectrum(derivatives, flat, k, which, max_iter, tol, seed):
    loss, grads = derivatives.value_and_grad()

    def matvec(vector):
        return flat.flatten(derivatives.hvp(flat.unflatten(vector)))

    rng = np.random.default_rng(seed)
    evals, vectors, m, converged = _lanczos(matvec, flat.size, k, which, max_iter, tol, rng)
    kk = min(k, len(evals))
    empty = np.zeros((0,)), np.zeros((0, flat.size))
    largest = smallest = empty
    if which in ("both", "largest"):
        largest = evals[::-1][:kk], vectors[::-1][:kk]
    if which in ("both", "smallest"):
        smallest = evals[:kk], vectors[:kk]
    return HessianSpectrum(
        flat,
        largest[0],
        largest[1],
        smallest[0],
        smallest[1],
        loss=loss,
        gradient_norm=float(np.linalg.norm(flat.flatten(grads))),
        iterations=m,
        converged=converged,
    )


def hessian_eigenvalues(
    model, x, y, k=1, which="both", sample_weight=None, max_iter=100, tol=1e-6, seed=0
):
    """The largest and smallest eigenvalues of the training loss's Hessian.

    The loss is the model's compiled loss (with its regularization losses),
    evaluated in inference mode (`training=False`: no dropout) on the batch
    `(x, y)`; the Hessian is taken with respect to all the trainable weights
    at their current values. It is never formed: Lanczos iterations, with
    full reorthogonalization, each need one Hessian-vector product (JAX:
    `jvp` of `grad`; TensorFlow: nested `GradientTape`s; PyTorch: double
    backward). Both ends of the spectrum come from the same iterations.

    Memory: the Lanczos basis is `max_iter` float64 vectors of the size of
    the model, on the host. Use a batch that fits in one forward pass.

    Args:
        model: A compiled Keras model (its loss is used).
        x: Inputs of one batch (an array or the structure the model takes).
        y: Targets of that batch.
        k: int. How many eigenvalues at each requested end. Defaults to `1`.
        which: str. `"both"`, `"largest"` or `"smallest"`. Defaults to
            `"both"`.
        sample_weight: Array or None. Per-sample weights for the loss.
            Defaults to `None`.
        max_iter: int. At most this many Hessian-vector products. Defaults
            to `100`.
        tol: float. Stop when the residual `|β_m s_m|` of every wanted Ritz
            pair is below `tol` times the largest |eigenvalue|. Defaults to
            `1e-6`.
        seed: int or None. Seeds the starting vector. Defaults to `0`.

    Returns:
        A `HessianSpectrum`: `largest`, `smallest`, their eigenvectors, the
        loss and gradient norm at this point, the iterations used.

    Raises:
        ValueError: on a bad argument or a model without trainable weights.

    Example:

    ```python
    import keras
    import numpy as np
    from keras_tricks.diagnosis import hessian_eigenvalues

    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", loss="mse")
    spectrum = hessian_eigenvalues(model, x, y)
    # For MSE on Dense(1) the Hessian is (2/n) A^T A with A = [x, 1].
    a = np.hstack([x, np.ones((64, 1))])
    print(spectrum.largest, np.linalg.eigvalsh(2 / 64 * a.T @ a)[-1])
    ```
    """
    _check_args(k, which, max_iter, tol)
    derivatives = _backend.loss_derivatives(model, x, y, sample_weight)
    flat = _Flat(model.trainable_variables)
    return _spectrum(derivatives, flat, k, which, max_iter, tol, seed)


class CriticalPoint:
    """What kind of point the weights are, from the gradient and the Hessian.

    Returned by `critical_point`.

    Attributes:
        kind: str. `"local minimum"`, `"saddle point"`, `"local maximum"` or
            `"not a critical point"`.
        gradient_norm: float. The global gradient norm at the weights.
        largest: float. The largest Hessian eigenvalue.
        smallest: float. The smallest Hessian eigenvalue.
        escape_direction: list of NumPy arrays or None. At a saddle point (or
            a maximum), the unit eigenvector of the smallest eigenvalue,
            shaped like `model.trainable_variables`: moving the weights
            along it (either sign) lowers the loss to second order.
        spectrum: The `HessianSpectrum` the decision was made from.
    """

    def __init__(self, kind, spectrum, escape_direction):
        self.kind = kind
        self.spectrum = spectrum
        self.gradient_norm = spectrum.gradient_norm
        self.largest = float(spectrum.largest[0])
        self.smallest = float(spectrum.smallest[0])
        self.escape_direction = escape_direction

    def __repr__(self):
        return (
            f"CriticalPoint(kind={self.kind!r}, gradient_norm={self.gradient_norm:.3g}, "
            f"smallest={self.smallest:.4g}, largest={self.largest:.4g})"
        )


def critical_point(
    model,
    x,
    y,
    grad_tol=1e-3,
    curvature_tol=1e-3,
    sample_weight=None,
    max_iter=100,
    tol=1e-6,
    seed=0,
):
    """Tell a local minimum from a saddle point (or from no critical point).

    Seed 001's test: a point whose gradient norm exceeds `grad_tol` is *not a
    critical point*. Otherwise the Hessian's extreme eigenvalues decide
    (`hessian_eigenvalues(which="both")`): an eigenvalue below
    `-curvature_tol * max|λ|` counts as negative, one above
    `+curvature_tol * max|λ|` as positive. All others >= 0: *local minimum*
    (flat directions allowed); negative and positive ones: *saddle point*;
    all <= 0: *local maximum*. At a saddle, the eigenvector of the smallest
    eigenvalue is returned as `escape_direction`.

    Args:
        model: A compiled Keras model.
        x: Inputs of one batch.
        y: Targets of that batch.
        grad_tol: float. Largest gradient norm of a critical point.
            Defaults to `1e-3`.
        curvature_tol: float. Relative size (of the largest |eigenvalue|)
            below which an eigenvalue counts as zero. Defaults to `1e-3`.
        sample_weight: Array or None. Per-sample weights. Defaults to `None`.
        max_iter: int. See `hessian_eigenvalues`. Defaults to `100`.
        tol: float. See `hessian_eigenvalues`. Defaults to `1e-6`.
        seed: int or None. See `hessian_eigenvalues`. Defaults to `0`.

    Returns:
        A `CriticalPoint`.

    Example:

    ```python
    import keras
    import numpy as np
    from keras_tricks.diagnosis import critical_point

    # Two linear layers with all weights at 0: the gradient vanishes, and
    # the Hessian has eigenvalues of both signs (w2 * w1 = c is a valley).
    x = np.random.default_rng(0).normal(size=(32, 2)).astype("float32")
    y = x[:, :1] * 3.0
    model = keras.Sequential([
        keras.Input((2,)),
        keras.layers.Dense(2, use_bias=False, kernel_initializer="zeros"),
        keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros"),
    ])
    model.compile("sgd", loss="mse")
    point = critical_point(model, x, y)
    print(point.kind)  # saddle point
    for variable, d in zip(model.trainable_variables, point.escape_direction):
        variable.assign(variable + 0.1 * d)
    ```
    """
    _check_positive("grad_tol", grad_tol)
    _check_positive("curvature_tol", curvature_tol)
    spectrum = hessian_eigenvalues(
        model, x, y, k=1, which="both", sample_weight=sample_weight,
        max_iter=max_iter, tol=tol, seed=seed,
    )
    low, high = float(spectrum.smallest[0]), float(spectrum.largest[0])
    threshold = curvature_tol * max(abs(low), abs(high), 1e-30)
    negative, positive = low < -threshold, high > threshold
    escape = None
    if spectrum.gradient_norm > grad_tol:
        kind = "not a critical point"
    elif negative and positive:
        kind = "saddle point"
    elif negative:
        kind = "local maximum"
    else:
        kind = "local minimum"
    if negative and kind != "not a critical point":
        escape = spectrum.as_weights(spectrum.smallest_vectors[0])
    return CriticalPoint(kind, spectrum, escape)
