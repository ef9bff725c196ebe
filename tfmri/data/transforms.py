"""Image-domain transforms with fastMRI conventions, in TensorFlow.

All FFTs are centred and orthonormal and act on the two innermost axes, so
``ifft2c(fft2c(x)) == x`` and Parseval holds. ``tf.signal.ifft2d`` divides by H * W;
the orthonormal scaling multiplies it back by ``sqrt(H * W)``.
"""

import numpy as np
import tensorflow as tf

# fastMRI's U-Net normalisation: per-slice standardisation, then a clamp.
NORMALIZATION_EPS = 1e-11
NORMALIZATION_CLAMP = 6.0


def _shift_last_two(x, sign):
    shape = tf.shape(x)
    shifts = tf.stack([shape[-2] // 2, shape[-1] // 2]) * sign
    return tf.roll(x, shift=shifts, axis=[-2, -1])


def fftshift2(x):
    """``np.fft.fftshift`` over the two innermost axes of a [..., H, W] tensor."""
    return _shift_last_two(x, 1)


def ifftshift2(x):
    """``np.fft.ifftshift`` over the two innermost axes of a [..., H, W] tensor."""
    return _shift_last_two(x, -1)


def _sqrt_num_pixels(x):
    shape = tf.shape(x)
    return tf.sqrt(tf.cast(shape[-2] * shape[-1], tf.float32))


def fft2c(image):
    """Centred orthonormal 2D FFT: complex64 [..., H, W] image -> complex64 [..., H, W] k-space."""
    kspace = fftshift2(tf.signal.fft2d(ifftshift2(image)))
    return kspace / tf.cast(_sqrt_num_pixels(image), kspace.dtype)


def ifft2c(kspace):
    """Centred orthonormal 2D inverse FFT: complex64 [..., H, W] k-space -> complex64 image."""
    image = fftshift2(tf.signal.ifft2d(ifftshift2(kspace)))
    return image * tf.cast(_sqrt_num_pixels(kspace), image.dtype)


def _ifft1c_last(x):
    """Centred orthonormal 1D inverse FFT over the innermost axis."""
    length = tf.shape(x)[-1]
    shifted = tf.roll(x, shift=-(length // 2), axis=-1)
    image = tf.roll(tf.signal.ifft(shifted), shift=length // 2, axis=-1)
    return image * tf.cast(tf.sqrt(tf.cast(length, tf.float32)), image.dtype)


def _fft1c_last(x):
    """Centred orthonormal 1D FFT over the innermost axis."""
    length = tf.shape(x)[-1]
    shifted = tf.roll(x, shift=-(length // 2), axis=-1)
    kspace = tf.roll(tf.signal.fft(shifted), shift=length // 2, axis=-1)
    return kspace / tf.cast(tf.sqrt(tf.cast(length, tf.float32)), kspace.dtype)


def measured_rows(kspace, mask, height):
    """The measured data in hybrid space: readout transformed and cropped, columns not.

    ``center_crop(ifft1c over H of (kspace * mask), height rows)``; the readout
    transform runs only over the sampled columns, the others are exactly zero. Its
    inverse transform over W is the zero-filled complex image of the cropped rows
    (:func:`columns_to_image`); data consistency replaces its sampled columns.

    Args:
      kspace: complex64 [..., H, W].
      mask: float32 [W], 1 where a column is sampled (others are ignored, as if zero).
      height: rows kept (the crop height).

    Returns:
      complex64 [..., height, W].
    """
    kspace = tf.convert_to_tensor(kspace)
    sampled = tf.cast(tf.where(mask > 0)[:, 0], tf.int32)
    rank = kspace.shape.rank
    to_columns_first = list(range(rank - 2)) + [rank - 1, rank - 2]
    columns = tf.transpose(tf.gather(kspace, sampled, axis=-1), to_columns_first)  # [..., n, H]
    columns = columns * tf.cast(tf.gather(mask, sampled), columns.dtype)[:, None]
    rows_kept = center_crop(_ifft1c_last(columns), tf.shape(columns)[-2], height)  # [..., n, h]
    # Put the transformed columns back in place, zeros elsewhere: gather from [cols; 0].
    num_columns = tf.shape(kspace)[-1]
    slot = tf.tensor_scatter_nd_update(
        tf.fill([num_columns], tf.shape(sampled)[0]),
        sampled[:, None],
        tf.range(tf.shape(sampled)[0]),
    )
    padded = tf.concat([rows_kept, tf.zeros_like(rows_kept[..., :1, :])], axis=-2)
    return tf.transpose(tf.gather(padded, slot, axis=-2), to_columns_first)  # [..., h, W]


def columns_to_image(hybrid):
    """complex64 [..., h, W] hybrid data -> complex64 [..., h, W] image (ifft1c over W)."""
    return _ifft1c_last(hybrid)


def image_to_columns(image):
    """complex64 [..., h, W] image -> complex64 [..., h, W] hybrid data (fft1c over W)."""
    return _fft1c_last(image)


def cropped_ifft2c(kspace, mask, height, width):
    """``center_crop(ifft2c(kspace * mask), height, width)``, computed with less work.

    The readout (H) transform runs only over the sampled columns, whose other columns
    are zero, and the phase-encoding (W) transform only over the ``height`` rows kept
    by the crop: at 8x on 640 x 368 k-space about a quarter of the full 2D FFT's work.

    Args:
      kspace: complex64 [..., H, W].
      mask: float32 [W], 1 where a column is sampled (others are ignored, as if zero).
      height, width: the crop size.

    Returns:
      complex64 [..., height, width].
    """
    image = columns_to_image(measured_rows(kspace, mask, height))
    return center_crop(image, height, width)


def kspace_scale(kspace, axes):
    """float32 per-example power of two near the largest component of ``kspace``.

    Dividing k-space by it puts the largest real or imaginary part near 1 (in [1, 2), give or take
    the logarithm's rounding), so that
    what follows (FFTs, squares in the statistics, the normalisation's ``eps``, the
    networks) runs in one range whatever the scanner's units: k-space times ``c`` gives
    the image times ``c``, from 1e-30 to 1e30, and never an overflow to NaN. Dividing
    and multiplying by a power of two is exact, so at any scale the result is the one
    computed on the scaled data, multiplied back. All-zero k-space gets 1.

    Args:
      kspace: complex64 [...] (any rank).
      axes: the axes reduced (the rest index the examples: ``[-2, -1]`` for one
        single-coil slice per entry of a batch [B, H, W], ``[-3, -2, -1]`` multi-coil).

    Returns:
      float32, ``kspace``'s shape without ``axes``.
    """
    kspace = tf.convert_to_tensor(kspace)
    largest = tf.maximum(
        tf.reduce_max(tf.abs(tf.math.real(kspace)), axis=axes),
        tf.reduce_max(tf.abs(tf.math.imag(kspace)), axis=axes),
    )
    # In float64: every float32 (subnormals too) and its power of two are exact there.
    exponent = tf.floor(tf.math.log(tf.cast(largest, tf.float64)) / np.log(2.0))
    scale = tf.where(
        (largest > 0) & tf.math.is_finite(largest),
        tf.pow(tf.constant(2.0, tf.float64), exponent),
        tf.ones_like(exponent),
    )
    return tf.cast(scale, tf.float32)


def complex_abs(x):
    """Magnitude: complex64 [...] -> float32 [...]."""
    return tf.abs(x)


def rss(x, axis=-3):
    """Root-sum-of-squares over the coil axis: [..., coils, H, W] -> float32 [..., H, W].

    Accepts complex (coil images) or real (coil magnitudes) input.
    """
    x = tf.convert_to_tensor(x)
    magnitude_squared = tf.math.real(x * tf.math.conj(x)) if x.dtype.is_complex else x * x
    return tf.sqrt(tf.reduce_sum(magnitude_squared, axis=axis))


def center_crop(x, height, width):
    """Crops the centre ``height`` x ``width`` of [..., H, W] (real or complex).

    Follows fastMRI's rounding: the crop starts at ``(H - height) // 2``. Raises
    ``InvalidArgumentError`` in a graph when the input is smaller than the crop.
    """
    x = tf.convert_to_tensor(x)
    shape = tf.shape(x)
    tf.debugging.assert_greater_equal(
        shape[-2:],
        tf.stack([height, width]),
        message="center_crop: image is smaller than the crop size",
    )
    top = (shape[-2] - height) // 2
    left = (shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


def width_crop_start(total_width, width):
    """First column of the centre ``width`` columns of ``total_width`` (fastMRI's rounding)."""
    return (total_width - width) // 2


def crop_width(x, width):
    """The centre ``width`` columns of [..., W] (the one width crop: the readout is
    cropped when the hybrid data are made, :func:`measured_rows`)."""
    left = width_crop_start(tf.shape(x)[-1], width)
    return x[..., left : left + width]


def normalize_instance(image, eps=NORMALIZATION_EPS, clamp=NORMALIZATION_CLAMP):
    """Standardises one slice with its own statistics, then clamps, as fastMRI's U-Net does.

    Args:
      image: float32 [H, W] (or [..., H, W], statistics taken over everything).
      eps: added to the standard deviation.
      clamp: the normalised values are clipped to [-clamp, clamp].

    Returns:
      (float32 normalised image, float32 scalar mean, float32 scalar std). The std is
      the sample standard deviation (Bessel-corrected), as ``torch.std`` computes it.
    """
    mean, std = instance_statistics(image)
    return normalize(image, mean, std, eps, clamp), mean, std


def instance_statistics(image):
    """(mean, Bessel-corrected std) of all entries of a float tensor, as float32 scalars."""
    count = tf.cast(tf.size(image), tf.float32)
    mean = tf.reduce_mean(image)
    sum_squares = tf.reduce_sum(tf.square(image - mean))
    std = tf.sqrt(sum_squares / tf.maximum(count - 1.0, 1.0))
    return mean, std


def normalize(image, mean, std, eps=NORMALIZATION_EPS, clamp=NORMALIZATION_CLAMP):
    """``clip((image - mean) / (std + eps), -clamp, clamp)``; used for input and target alike."""
    normalized = (image - mean) / (std + eps)
    return tf.clip_by_value(normalized, -clamp, clamp)


def denormalize(normalized, mean, std):
    """``normalized * std + mean``: back to the original intensity scale, as fastMRI does.

    Inverts :func:`normalize` up to the clamp and the negligible ``eps``.
    """
    return normalized * std + mean


def denormalize_per_slice(normalized, mean, std, scale=None):
    """:func:`denormalize` of a batch ``[B, ...]`` with one ``mean`` and ``std`` [B] per
    slice, times the slice's ``scale`` [B] when given (the pipeline's k-space scale,
    :func:`kspace_scale`: back to the file's units)."""
    shape = tf.concat([tf.shape(mean), tf.ones([tf.rank(normalized) - 1], tf.int32)], axis=0)
    image = denormalize(normalized, tf.reshape(mean, shape), tf.reshape(std, shape))
    if scale is None:
        return image
    return image * tf.reshape(tf.cast(scale, image.dtype), shape)
