"""AdamW with both moments stored in 8 bits, block-wise (Dettmers et al. 2022).

bitsandbytes's `AdamW8bit` as a Keras optimizer on every backend. Each moment
tensor is cut into blocks of `block_size` values; a block is stored as one
float32 `absmax` (its largest magnitude) and one uint8 code per value, the
index of the nearest of 256 values of a *dynamic* map (signed for the first
moment, unsigned for the second). Per update and block: dequantize, update
the moments in float32, update the weights with the un-quantized moments,
then quantize them again with the block's new absmax.

Finding the nearest code is done arithmetically (decade from `log10`, linear
position inside it), then corrected by one neighbour: a `searchsorted` over
the 256 codes costs about twice as much inside a compiled CPU step.
"""

import functools
import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_tricks.optimizers._adam_math import check_real, one_minus_power

_EXPONENT_BITS = 7  # decades 1e-7..1 (bitsandbytes's max_exponent_bits)


def _linspace_float32(start, end, num):
    """`torch.linspace(start, end, num)` in float32, bit for bit.

    Steps of float32 size, each value formed in double precision (a fused
    multiply-add) from the nearer end.
    """
    start, end = np.float32(start), np.float32(end)
    step = (end - start) / np.float32(num - 1)
    i = np.arange(num)
    low = np.float64(start) + i * np.float64(step)
    high = np.float64(end) - (num - 1 - i) * np.float64(step)
    return np.where(i < num // 2, low, high).astype(np.float32)


@functools.cache
def dynamic_map(signed=True):
    """The 256 sorted codes of bitsandbytes's `create_dynamic_map(signed)`.

    Decade `i` (0..6) holds `2**i` codes (`2**(i+1)` unsigned): the midpoints
    of a linear grid over `[0.1, 1] * 10**(i-6)`; then 0 and 1. Signed maps
    mirror the codes (no -1). Computed in float32 as bitsandbytes does, so the
    values are equal bit for bit.

    Args:
        signed: Bool. The map of a signed tensor (first moment) or of a
            non-negative one (second moment). Defaults to `True`.

    Returns:
        A float32 NumPy array of shape `(256,)`, sorted.

    Example:

    ```python
    codes = keras_tricks.optimizers.adamw_8bit.dynamic_map(signed=False)
    codes[0], codes[-1]  # (0.0, 1.0)
    ```
    """
    extra = 0 if signed else 1
    values = []
    for i in range(_EXPONENT_BITS):
        bounds = _linspace_float32(0.1, 1.0, 2 ** (i + extra) + 1)
        means = (bounds[:-1] + bounds[1:]) / np.float32(2.0)
        decade = np.float32(10.0 ** (i - _EXPONENT_BITS + 1)) * means
        values.append(decade)
        if signed:
            values.append(-decade)
    values.append(np.array([0.0, 1.0], np.float32))
    codes = np.sort(np.concatenate(values).astype(np.float32))
    assert codes.shape == (256,)
    codes.setflags(write=False)
    return codes


def quantize(x, codes, signed):
    """Indices (int32) of the codes nearest to `x` (values in `[-1, 1]`).

    `codes` is the `dynamic_map(signed)` as a tensor. Ties go to the lower
    index (as `argmin`).
    """
    extra = 0 if signed else 1
    a = ops.abs(x)
    # The decade by comparisons (log10 and pow cost more than the rest of the
    # quantizer together on a CPU); an ulp off at a boundary is caught by the
    # neighbour check below.
    scale = ops.full_like(a, 10.0 ** (_EXPONENT_BITS - 1))
    count = ops.full_like(a, float(2**extra))
    for k in range(1, _EXPONENT_BITS):
        above = ops.greater_equal(a, 10.0 ** (k - _EXPONENT_BITS))
        scale = ops.where(above, 10.0 ** (_EXPONENT_BITS - 1 - k), scale)
        count = ops.where(above, float(2 ** (k + extra)), count)
    position = ops.subtract(
        ops.multiply(ops.divide(ops.multiply(a, scale) - 0.1, 0.9), count), 0.5
    )
    j = ops.clip(ops.round(position), 0.0, count - 1.0)
    p = ops.cast(count - float(2**extra) + j, "int32")  # among the positives
    if signed:
        index = ops.where(ops.less(x, 0.0), 126 - p, 128 + p)
    else:
        index = 1 + p
    lo = ops.maximum(index - 1, 0)
    hi = ops.minimum(index + 1, 255)
    d_lo = ops.abs(ops.subtract(x, ops.take(codes, lo)))
    d_mid = ops.abs(ops.subtract(x, ops.take(codes, index)))
    d_hi = ops.abs(ops.subtract(x, ops.take(codes, hi)))
    best = ops.where(ops.less(d_hi, d_mid), hi, index)
    d_best = ops.minimum(d_hi, d_mid)
    return ops.where(ops.less_equal(d_lo, d_best), lo, best)


def _blocks(flat, n_blocks, block_size):
    pad = n_blocks * block_size - flat.shape[0]
    if pad:
        flat = ops.pad(flat, [(0, pad)])
    return ops.reshape(flat, (n_blocks, block_size))


@keras.saving.register_keras_serializable(package="keras_tricks")
class AdamW8bit(keras.optimizers.Optimizer):
    """AdamW with block-wise 8-bit moments (bitsandbytes's `AdamW8bit`).

    Adam's two moment tensors take 8 bytes per parameter in float32, twice
    the model itself. Here each is stored in 1 byte per value plus one
    float32 per block of `block_size` values: about 0.254x AdamW's optimizer
    memory for a model whose weights sit in large tensors (Dettmers et al.
    2022, arXiv 2110.02861). Tensors with fewer than `min_8bit_size` values
    (biases, norms) keep float32 moments, as in bitsandbytes.

    The update is AdamW's, with PyTorch's placement of `epsilon`:
    `w -= lr * weight_decay * w`, then
    `w -= lr * m / (1 - beta_1**t) / (sqrt(v) / sqrt(1 - beta_2**t) + epsilon)`,
    computed with the moments before they are quantized again. The codes are
    bitsandbytes's dynamic maps and each value is stored as its *nearest* code
    (what the CUDA kernels do). It runs inside the compiled train step of
    every backend, with `keras.ops` only.

    Use it when optimizer state dominates memory (large dense or attention
    layers, embeddings); for activation-bound convnets it saves little.

    Args:
        learning_rate: A float, a
            `keras.optimizers.schedules.LearningRateSchedule` instance, or a
            callable that takes no arguments and returns the value to use.
            Defaults to `0.001`.
        beta_1: Float in `[0, 1)`. Decay of the first moment. Defaults to
            `0.9`. (Momentum cycling replaces it at run time.)
        beta_2: Float in `[0, 1)`. Decay of the second moment. Defaults to
            `0.999`.
        epsilon: Float >= 0. Defaults to `1e-8`.
        weight_decay: Float >= 0 or None. Decoupled weight decay. Defaults
            to `0.01` (bitsandbytes's).
        block_size: Int >= 1. Values per quantization block. Defaults to
            `256`.
        min_8bit_size: Int >= 0. Tensors with fewer values keep float32
            moments. Defaults to `4096`.
        **kwargs: Keras's optimizer arguments: `clipnorm`, `clipvalue`,
            `global_clipnorm`, `use_ema`, `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.

    Example:

    ```python
    optimizer = keras_tricks.optimizers.AdamW8bit(1e-3, weight_decay=1e-2)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    ```
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        weight_decay=0.01,
        block_size=256,
        min_8bit_size=4096,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="adamw8bit",
        **kwargs,
    ):
        cls_name = type(self).__name__
        if weight_decay is not None:
            weight_decay = check_real(cls_name, "weight_decay", weight_decay, 0.0)
        for arg, value, low in (
            ("block_size", block_size, 1),
            ("min_8bit_size", min_8bit_size, 0),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Integral)
                or value < low
            ):
                raise ValueError(
                    f"Argument `{arg}` of {cls_name} must be an int >= {low}. "
                    f"Received: {arg}={value!r}"
                )
        super().__init__(
            learning_rate=learning_rate,
            name=name,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            **kwargs,
        )
        self.beta_1 = check_real(cls_name, "beta_1", beta_1, 0.0, 1.0, high_open=True)
        self.beta_2 = check_real(cls_name, "beta_2", beta_2, 0.0, 1.0, high_open=True)
        self.epsilon = check_real(cls_name, "epsilon", epsilon, 0.0)
        self.block_size = int(block_size)
        self.min_8bit_size = int(min_8bit_size)

    def _is_8bit(self, variable):
        return math.prod(variable.shape) >= max(self.min_8bit_size, 1)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        # Per variable: (m, v) float32, or (m_codes, m_absmax, v_codes, v_absmax).
        self._moment_state = []
        for var in var_list:
            name = var.path.replace("/", "_") if hasattr(var, "path") else var.name
            if not self._is_8bit(var):
                m = self.add_variable(var.shape, dtype="float32", name=f"{name}_m")
                v = self.add_variable(var.shape, dtype="float32", name=f"{name}_v")
                self._moment_state.append((m, v))
                continue
            n_blocks = -(-math.prod(var.shape) // self.block_size)
            codes_shape = (n_blocks, self.block_size)
            state = []
            for moment in ("m", "v"):
                state.append(
                    self.add_variable(
                        codes_shape, dtype="uint8", name=f"{name}_{moment}_codes"
                    )
                )
                state.append(
                    self.add_variable(
                        (n_blocks,), dtype="float32", name=f"{name}_{moment}_absmax"
                    )
                )
            self._moment_state.append(tuple(state))

    def _dequantize(self, codes_var, absmax_var, table):
        values = ops.take(table, ops.cast(codes_var, "int32"))
        return ops.multiply(values, ops.expand_dims(absmax_var, -1))

    def _quantize(self, x, table, signed):
        absmax = ops.max(ops.abs(x), axis=-1)
        safe = ops.where(ops.greater(absmax, 0.0), absmax, 1.0)
        index = quantize(ops.divide(x, ops.expand_dims(safe, -1)), table, signed)
        return ops.cast(index, "uint8"), absmax

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, "float32")
        step = ops.cast(self.iterations + 1, "float32")
        beta_1 = ops.cast(self.beta_1, "float32")
        beta_2 = self.beta_2
        bc1 = one_minus_power(self.beta_1, step, "float32")
        bc2_sqrt = ops.sqrt(one_minus_power(self.beta_2, step, "float32"))
        state = self._moment_state[self._get_variable_index(variable)]
        g = ops.cast(gradient, "float32")
        if len(state) == 2:
            m_var, v_var = state
            m = ops.add(ops.multiply(m_var, beta_1), ops.multiply(g, 1.0 - beta_1))
            v = ops.add(
                ops.multiply(v_var, beta_2), ops.multiply(ops.square(g), 1.0 - beta_2)
            )
            self.assign(m_var, m)
            self.assign(v_var, v)
        else:
            m_codes, m_absmax, v_codes, v_absmax = state
            n_blocks = m_absmax.shape[0]
            g = _blocks(ops.reshape(g, (-1,)), n_blocks, self.block_size)
            signed_table = ops.convert_to_tensor(dynamic_map(True))
            unsigned_table = ops.convert_to_tensor(dynamic_map(False))
            m = self._dequantize(m_codes, m_absmax, signed_table)
            v = self._dequantize(v_codes, v_absmax, unsigned_table)
            m = ops.add(ops.multiply(m, beta_1), ops.multiply(g, 1.0 - beta_1))
            v = ops.add(
                ops.multiply(v, beta_2), ops.multiply(ops.square(g), 1.0 - beta_2)
            )
            codes, absmax = self._quantize(m, signed_table, True)
            self.assign(m_codes, codes)
            self.assign(m_absmax, absmax)
            codes, absmax = self._quantize(v, unsigned_table, False)
            self.assign(v_codes, codes)
            self.assign(v_absmax, absmax)
        denom = ops.add(ops.divide(ops.sqrt(v), bc2_sqrt), self.epsilon)
        update = ops.multiply(ops.divide(m, denom), ops.divide(lr, bc1))
        if len(state) == 4:
            size = math.prod(variable.shape)
            update = ops.reshape(ops.reshape(update, (-1,))[:size], variable.shape)
        self.assign_sub(variable, ops.cast(update, variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "block_size": self.block_size,
                "min_8bit_size": self.min_8bit_size,
            }
        )
        return config
