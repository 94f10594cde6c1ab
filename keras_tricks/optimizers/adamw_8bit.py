"""AdamW with both moments stored in 8 bits, block-wise (Dettmers et al. 2022).

bitsandbytes's `AdamW8bit` as a Keras optimizer on every backend. Each moment
tensor is cut into blocks of `block_size` values; a block is stored as one
float32 `absmax` (its largest magnitude) and one uint8 code per value, the
index of the nearest of 256 values of a *dynamic* map (signed for the first
moment, unsigned for the second). Per update and block: dequantize, update
the moments in float32, update the weights with the un-quantized moments,
then quantize them again with the block's new absmax.

The nearest code is found from the float32 bit pattern of the value (see
`quantize`): a shift, one gather from a small host-made table and one integer
comparison, all elementwise.
"""

import functools
import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_tricks.optimizers._adam_math import AdamFamily

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


# Quantization by the float32 bit pattern. For `y = |x|` in `[0, 1]`, the
# exponent and the top `_MANTISSA_BITS` mantissa bits name one of ~2900 bins,
# fine enough that each holds at most one decision threshold between two
# neighbouring codes. A host-made int32 table gives per bin the number of
# thresholds below it (above bit `_SHIFT`) and the low `_SHIFT` bits of the
# threshold inside it (`1 << _SHIFT` when none): the nearest code is one
# shift, one gather from a 12 KB table and one integer comparison. (An
# arithmetic inverse of the map followed by a one-neighbour check costs
# about as much elementwise, but XLA on CPU fuses all of that float
# arithmetic into the loops of the check's gathers, which run scalar: that
# quantizer measured ~15-40x this one inside a compiled JAX step.)
_MANTISSA_BITS = 7
_SHIFT = 23 - _MANTISSA_BITS
_LOW_MASK = (1 << _SHIFT) - 1
_ENTRY_MASK = (1 << (_SHIFT + 1)) - 1  # the low bits of a table entry
_FIRST_EXPONENT = 127 - 23  # bins start at 2**-23; smaller values share bin 0
_BIN_OFFSET = _FIRST_EXPONENT << _MANTISSA_BITS
_N_BINS = (0x3F800000 >> _SHIFT) - _BIN_OFFSET + 1  # the last bin holds 1.0


def _thresholds(signed):
    """The decision thresholds between neighbouring non-negative codes.

    The non-negative codes are the whole unsigned map, or the upper 129 codes
    (0 to 1) of the signed one. Threshold `k` is the smallest float32 strictly
    nearer to code `k + 1` than to code `k` (exact float64 distances; a tie
    goes to the smaller code), so the nearest code of `y >= 0` is the number
    of thresholds `<= y`.
    """
    codes = dynamic_map(signed).astype(np.float64)
    positive = codes[127:] if signed else codes
    midpoints = (positive[:-1] + positive[1:]) / 2.0  # exact in float64
    thresholds = midpoints.astype(np.float32)
    return np.where(
        thresholds.astype(np.float64) > midpoints,
        thresholds,
        np.nextafter(thresholds, np.float32(np.inf)),
    )


@functools.cache
def _bin_table(signed):
    """The packed int32 table of `quantize` (see the comment above)."""
    bits = _thresholds(signed).view(np.int32).astype(np.int64)
    bins = np.arange(_N_BINS, dtype=np.int64) + _BIN_OFFSET
    low = bins << _SHIFT
    low[0] = 0
    below = np.searchsorted(bits, low, side="right")
    inside = np.searchsorted(bits, (bins + 1) << _SHIFT, side="left") - below
    # At most one threshold per bin; none in the first bin (which also takes
    # every smaller value) nor in the last (1.0, and anything clipped to it).
    assert inside.max() <= 1 and inside[0] == 0 and inside[-1] == 0
    inside_bits = bits[np.minimum(below, len(bits) - 1)]
    low_bits = np.where(inside == 1, inside_bits & _LOW_MASK, _LOW_MASK + 1)
    table = (below << (_SHIFT + 1) | low_bits).astype(np.int32)
    table.setflags(write=False)
    return table


def quantize(x, signed):
    """Indices (int32) of the codes of `dynamic_map(signed)` nearest to `x`.

    `x` holds float32 values in `[-1, 1]` (`[0, 1]` unsigned). The distance is
    exact; a tie between two codes goes to the one nearer zero. Elementwise
    `keras.ops` only (the bits of `|x|` index a host-made table).

    Example:

    ```python
    x = keras.ops.convert_to_tensor([0.5, -0.01, 1.0])
    codes = keras_tricks.optimizers.adamw_8bit.dynamic_map(signed=True)
    index = keras.ops.convert_to_numpy(quantize(x, signed=True))
    codes[index]  # the nearest codes: 0.50078124, -0.00971875, 1.0
    ```
    """
    table = ops.convert_to_tensor(_bin_table(signed))
    bits = ops.view(ops.abs(x), "int32")
    bins = ops.subtract(ops.right_shift(bits, _SHIFT), _BIN_OFFSET)
    entry = ops.take(table, ops.clip(bins, 0, _N_BINS - 1))
    above = ops.greater_equal(
        ops.bitwise_and(bits, _LOW_MASK), ops.bitwise_and(entry, _ENTRY_MASK)
    )
    p = ops.add(ops.right_shift(entry, _SHIFT + 1), ops.cast(above, "int32"))
    if not signed:
        return p
    # Signed map: 127 negative codes, 0 at index 127, 127 positive codes and
    # 1.0; the negative side mirrors the positive one without -1.
    return ops.where(ops.less(x, 0.0), 127 - ops.minimum(p, 127), 127 + p)


def _blocks(flat, n_blocks, block_size):
    pad = n_blocks * block_size - flat.shape[0]
    if pad:
        flat = ops.pad(flat, [(0, pad)])
    return ops.reshape(flat, (n_blocks, block_size))


@keras.saving.register_keras_serializable(package="keras_tricks")
class AdamW8bit(AdamFamily):
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
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            weight_decay=weight_decay,
            name=name,
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

    def _dequantize(self, codes, absmax, signed):
        table = ops.convert_to_tensor(dynamic_map(signed))
        values = ops.take(table, ops.cast(codes, "int32"))
        return ops.multiply(values, ops.expand_dims(absmax, -1))

    def _quantize(self, x, signed):
        """`(codes, absmax)` of blocks `x` (shape `(blocks, block_size)`)."""
        absmax = ops.max(ops.abs(x), axis=-1)
        safe = ops.where(ops.greater(absmax, 0.0), absmax, 1.0)
        index = quantize(ops.divide(x, ops.expand_dims(safe, -1)), signed)
        return ops.cast(index, "uint8"), absmax

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, "float32")
        _, bc1, bc2 = self._bias_corrections("float32")
        bc2_sqrt = ops.sqrt(bc2)
        beta_1 = ops.cast(self.beta_1, "float32")
        beta_2 = self.beta_2
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
            m = self._dequantize(m_codes, m_absmax, True)
            v = self._dequantize(v_codes, v_absmax, False)
            m = ops.add(ops.multiply(m, beta_1), ops.multiply(g, 1.0 - beta_1))
            v = ops.add(
                ops.multiply(v, beta_2), ops.multiply(ops.square(g), 1.0 - beta_2)
            )
            codes, absmax = self._quantize(m, True)
            self.assign(m_codes, codes)
            self.assign(m_absmax, absmax)
            codes, absmax = self._quantize(v, False)
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
                "block_size": self.block_size,
                "min_8bit_size": self.min_8bit_size,
            }
        )
        return config
