"""The PatchGAN's stride-1 4 x 4 convolutions by Winograd's minimal filtering, F(3 x 3, 4 x 4).

A direct convolution spends 16 multiply-adds per output pixel and channel pair.
Winograd's algorithm gets a 3 x 3 block of outputs from a 6 x 6 input tile with 36
multiplies per channel pair, once the tile and the kernel are transformed: 4 x fewer
(3.5 x on the reference PatchGAN's 31 x 31 output, whose last tiles overhang). The 36
multiplies of all tiles are 36 matrix products ``[tiles, C_in] x [C_in, C_out]``; the
transforms are products with small constant matrices. The result equals the direct
convolution up to float32 rounding (about 1e-5 of the largest value; the transforms'
entries are at most 8 in size).

The transforms come from Toom-Cook interpolation (Lavin and Gray 2016, "Fast
Algorithms for Convolutional Neural Networks") at the points 0, 1, -1, 2, -2 and
infinity. They are built here, in float64, by :func:`transform_matrices`.
"""

import keras
import numpy as np
import tensorflow as tf

from tfmri.models import matmul_conv

TAPS = 4  # kernel side
OUTPUTS = 3  # output block side: tiles of OUTPUTS + TAPS - 1 = 6
POINTS = (0, 1, -1, 2, -2)
TILE = OUTPUTS + TAPS - 1


def transform_matrices(outputs, taps, points):
    """``A^T`` [m, n], ``B^T`` [n, n] and ``G`` [n, r] of F(m, r), float64, such that the
    correlation ``y[i] = sum_k d[i + k] g[k]`` (i < m, d of length n = m + r - 1) is
    ``A^T ((G g) * (B^T d))``.

    The correlation is the transpose of the linear convolution of g with an m-tap h,
    which Toom-Cook computes as ``V^-1 ((G g) * (H h))``: V, G and H evaluate
    polynomials of n, r and m coefficients at the ``points`` (n - 1 of them) and at
    infinity (the leading coefficient). So ``A^T = H^T`` and ``B^T = V^-T``.
    """
    size = outputs + taps - 1
    if len(points) != size - 1 or len(set(points)) != len(points):
        raise ValueError(f"F({outputs}, {taps}) needs {size - 1} distinct finite points")

    def evaluation(coefficients):
        rows = [[float(point) ** power for power in range(coefficients)] for point in points]
        return np.array(rows + [[0.0] * (coefficients - 1) + [1.0]])

    return evaluation(outputs).T, np.linalg.inv(evaluation(size)).T, evaluation(taps)


def _transforms():
    """The 2-D transforms as Kronecker products, for tensors of flattened tiles.

    Returns ``tile`` [36, 36], ``kernel`` [36, 16] and ``output`` [9, 36]. :func:`conv`
    gathers each 6 x 6 tile as its four 3 x 3 blocks, so the tile transform's columns
    are in block order: column (si, sj, ri, rj) is tile entry (3 si + ri, 3 sj + rj).
    """
    output_t, input_t, kernel_t = transform_matrices(OUTPUTS, TAPS, POINTS)
    by_entry = np.kron(input_t, input_t)
    tile = np.zeros((TILE * TILE, 4 * OUTPUTS * OUTPUTS))
    for column, (si, sj, ri, rj) in enumerate(np.ndindex(2, 2, OUTPUTS, OUTPUTS)):
        tile[:, column] = by_entry[:, (si * OUTPUTS + ri) * TILE + sj * OUTPUTS + rj]
    return tile, np.kron(kernel_t, kernel_t), np.kron(output_t, output_t)


TILE_TRANSFORM, KERNEL_TRANSFORM, OUTPUT_TRANSFORM = _transforms()


def conv(x, kernel):
    """``tf.nn.conv2d(x, kernel, 1, "VALID")`` for a 4 x 4 ``kernel``, by F(3 x 3, 4 x 4).

    Args:
      x: float32 ``[B, H, W, C_in]``, H and W known when traced (B may be unknown).
      kernel: float32 ``[4, 4, C_in, C_out]``.

    Returns:
      float32 ``[B, H - 3, W - 3, C_out]``.
    """
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    if height is None or width is None or channels is None:
        raise ValueError(f"winograd.conv needs a known height, width and depth, got {x.shape}")
    batch = tf.shape(x)[0]
    out_h, out_w = height - TAPS + 1, width - TAPS + 1
    tiles_h, tiles_w = -(-out_h // OUTPUTS), -(-out_w // OUTPUTS)
    # Tile (t, u) covers blocks t, t + 1 down and u, u + 1 across: pad to whole blocks.
    padded = tf.pad(
        x,
        [
            [0, 0],
            [0, (tiles_h + 1) * OUTPUTS - height],
            [0, (tiles_w + 1) * OUTPUTS - width],
            [0, 0],
        ],
    )
    blocks = tf.reshape(padded, [batch, tiles_h + 1, OUTPUTS, tiles_w + 1, OUTPUTS, channels])
    blocks = tf.transpose(blocks, [2, 4, 0, 1, 3, 5])  # [3, 3, B, tiles_h + 1, tiles_w + 1, C]
    # tf.slice, not Python slicing: the gradient of StridedSlice (StridedSliceGrad) took
    # 3.4 ms a call on these shapes, a third of the layer's time; Slice's is a Pad.
    quarters = [
        tf.slice(blocks, [0, 0, 0, si, sj, 0], [OUTPUTS, OUTPUTS, -1, tiles_h, tiles_w, channels])
        for si in range(2)
        for sj in range(2)
    ]
    tiles = tf.reshape(tf.stack(quarters), [4 * OUTPUTS * OUTPUTS, -1])
    tiles = tf.matmul(tf.constant(TILE_TRANSFORM, x.dtype), tiles)
    tiles = tf.reshape(tiles, [TILE * TILE, -1, channels])  # [36, B tiles_h tiles_w, C_in]
    weights = tf.matmul(
        tf.constant(KERNEL_TRANSFORM, kernel.dtype), tf.reshape(kernel, [TAPS * TAPS, -1])
    )
    products = tf.matmul(tiles, tf.reshape(weights, [TILE * TILE, channels, -1]))
    out_channels = kernel.shape[3]
    outputs = tf.matmul(
        tf.constant(OUTPUT_TRANSFORM, x.dtype), tf.reshape(products, [TILE * TILE, -1])
    )
    outputs = tf.reshape(outputs, [OUTPUTS, OUTPUTS, batch, tiles_h, tiles_w, out_channels])
    outputs = tf.transpose(outputs, [2, 3, 0, 4, 1, 5])
    outputs = tf.reshape(outputs, [batch, tiles_h * OUTPUTS, tiles_w * OUTPUTS, out_channels])
    return tf.slice(outputs, [0, 0, 0, 0], [-1, out_h, out_w, out_channels])


@keras.saving.register_keras_serializable(package="tfmri")
class WinogradConv2D(keras.layers.Conv2D):
    """``Conv2D(filters, 4, padding="valid")`` computed by :func:`conv` in float32.

    Same variables and config as ``Conv2D``: checkpoints load into either. Under a
    mixed-precision policy it computes as ``Conv2D`` does (the transforms would lose
    digits in 16 bits).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        matmul_conv.require_settings(self, TAPS, 1, "valid")

    def convolution_op(self, inputs, kernel):
        if inputs.dtype != tf.float32:
            return super().convolution_op(inputs, kernel)
        return conv(inputs, kernel)
