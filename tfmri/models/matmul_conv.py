"""The U-Net's 4 x 4 stride-2 convolutions on small feature maps, as matrix products.

Deep in the pix2pix U-Net the maps are tiny (8 x 8 down to 1 x 1) and the kernels
large (4 x 4 x 1024 x 512 is 32 MiB). There oneDNN re-lays out the kernel on every
call and its weight-gradient kernel is slow. As "patches times kernel" the same
layers are matrix products on the kernel as stored, faster on those maps (per-pass
and whole-step timings in docs/results.md#figures-behind-design-choices;
bench/bench_train.py times the step).

``im2col`` gathers the 4 x 4 patches of a stride-2 "same" convolution (one pixel of
zero padding on each side of an even-sized map); ``col2im`` is its adjoint, which
adds every patch entry back to the pixel it came from. Each is the other's gradient.
"""

import keras
import tensorflow as tf

KERNEL = 4
STRIDE = 2


def im2col(x):
    """``[B, H, W, C]`` (H and W even) -> patches ``[B, H/2, W/2, 16 C]`` in (kh, kw, c) order."""

    @tf.custom_gradient
    def gather(x):
        padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        patches = tf.image.extract_patches(
            padded, [1, KERNEL, KERNEL, 1], [1, STRIDE, STRIDE, 1], [1, 1, 1, 1], "VALID"
        )
        return patches, col2im

    return gather(x)


def col2im(patches):
    """Adjoint of :func:`im2col`: ``[B, h, w, 16 C]`` -> ``[B, 2h, 2w, C]``."""

    @tf.custom_gradient
    def scatter(patches):
        shape = tf.shape(patches)
        batch, height, width = shape[0], shape[1], shape[2]
        channels = patches.shape[-1] // (KERNEL * KERNEL)
        taps = tf.reshape(patches, [batch, height, width, KERNEL, KERNEL, channels])
        rows = _fold(taps, axis=1, taps_axis=3)  # [B, h, 2, w, 4, C]
        pixels = _fold(rows, axis=3, taps_axis=4)  # [B, h, 2, w, 2, C]
        return tf.reshape(pixels, [batch, 2 * height, 2 * width, channels]), im2col

    return scatter(patches)


def _fold(t, axis, taps_axis):
    """Sums the 4 kernel taps on ``taps_axis`` into the 2 pixels each patch step covers.

    Along ``axis``, patch m's taps 0-3 land on pixels 2m - 1 ... 2m + 2. So pixel 2m
    (even) gets tap 1 of patch m and tap 3 of patch m - 1; pixel 2m + 1 (odd) gets tap
    2 of patch m and tap 0 of patch m + 1. Returns (even, odd) stacked on ``axis + 1``.
    """

    def tap(k):
        return tf.gather(t, k, axis=taps_axis)

    even = tap(1) + _shift(tap(3), axis, 1)
    odd = tap(2) + _shift(tap(0), axis, -1)
    return tf.stack([even, odd], axis=axis + 1)


def _shift(t, axis, step):
    """``out[i] = t[i - step]`` along ``axis`` for ``step`` +1 or -1, zero where undefined."""
    rank = len(t.shape)
    paddings = [[0, 0]] * rank
    paddings[axis] = [1, 0] if step > 0 else [0, 1]
    begin = [0] * rank
    begin[axis] = 0 if step > 0 else 1
    size = [-1] * rank
    size[axis] = tf.shape(t)[axis]
    return tf.slice(tf.pad(t, paddings), begin, size)


def conv(x, kernel):
    """``tf.nn.conv2d(x, kernel, 2, "SAME")`` for a 4 x 4 ``kernel`` [4, 4, C_in, C_out]."""
    shape = tf.shape(x)
    patches = tf.reshape(im2col(x), [-1, KERNEL * KERNEL * kernel.shape[2]])
    out = _times(patches, tf.reshape(tf.convert_to_tensor(kernel), [-1, kernel.shape[3]]))
    return tf.reshape(out, [shape[0], shape[1] // 2, shape[2] // 2, kernel.shape[3]])


def conv_transpose(x, kernel):
    """Keras's ``Conv2DTranspose(4, strides=2, "same")`` for a ``kernel`` [4, 4, C_out, C_in].

    The transposed convolution is the adjoint of :func:`conv` with the same kernel.
    """
    shape = tf.shape(x)
    flat = tf.reshape(x, [-1, kernel.shape[3]])
    kernel = tf.reshape(tf.convert_to_tensor(kernel), [-1, kernel.shape[3]])
    patches = _times_transposed(flat, kernel)
    return col2im(tf.reshape(patches, [shape[0], shape[1], shape[2], kernel.shape[0]]))


# The products below keep the large operand (the kernel, or the patches' gradient)
# in its stored row-major layout: oneDNN's GEMM is slower on a transposed large
# operand with a few dozen rows on the other side
# (docs/results.md#figures-behind-design-choices).


def _times_transposed(a, b):
    """``a @ b^T`` for a short ``a`` [M, K] and a large ``b`` [N, K], as ``(b @ a^T)^T``."""

    @tf.custom_gradient
    def product(a, b):
        def gradient(upstream):  # [M, N]
            return tf.matmul(upstream, b), tf.matmul(upstream, a, transpose_a=True)

        return tf.transpose(tf.matmul(b, a, transpose_b=True)), gradient

    return product(a, b)


def _times(a, b):
    """``a @ b`` whose gradient for ``a`` is :func:`_times_transposed`."""

    @tf.custom_gradient
    def product(a, b):
        def gradient(upstream):
            return _times_transposed(upstream, b), tf.matmul(a, upstream, transpose_a=True)

        return tf.matmul(a, b), gradient

    return product(a, b)


def require_settings(layer, kernel, stride, padding):
    """Raises ValueError unless ``layer`` (a Keras Conv2D or Conv2DTranspose) is a
    ``kernel`` x ``kernel``, stride-``stride``, ``padding``, undilated, ungrouped,
    channels-last convolution without output padding: what a fast path computes."""
    if (
        tuple(layer.kernel_size) != (kernel, kernel)
        or tuple(layer.strides) != (stride, stride)
        or layer.padding != padding
        or layer.data_format != "channels_last"
        or tuple(layer.dilation_rate) != (1, 1)
        or getattr(layer, "groups", 1) != 1
        or getattr(layer, "output_padding", None) is not None
    ):
        raise ValueError(
            f"{type(layer).__name__} only computes {kernel} x {kernel}, stride-{stride}, "
            f"{padding!r}, undilated, channels-last convolutions"
        )


@keras.saving.register_keras_serializable(package="tfmri")
class MatmulConv2D(keras.layers.Conv2D):
    """``Conv2D(filters, 4, strides=2, padding="same")`` computed by :func:`conv`.

    Same variables and config as ``Conv2D``: checkpoints load into either.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        require_settings(self, KERNEL, STRIDE, "same")

    def convolution_op(self, inputs, kernel):
        return conv(inputs, kernel)


@keras.saving.register_keras_serializable(package="tfmri")
class MatmulConv2DTranspose(keras.layers.Conv2DTranspose):
    """``Conv2DTranspose(filters, 4, strides=2, padding="same")`` by :func:`conv_transpose`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        require_settings(self, KERNEL, STRIDE, "same")

    def call(self, inputs):
        outputs = conv_transpose(inputs, self.kernel)
        if self.use_bias:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
