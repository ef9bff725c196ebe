"""Image-domain transforms with fastMRI conventions, in TensorFlow.

All FFTs are centred and orthonormal and act on the two innermost axes, so
``ifft2c(fft2c(x)) == x`` and Parseval holds. ``tf.signal.ifft2d`` divides by H * W;
the orthonormal scaling multiplies it back by ``sqrt(H * W)``.
"""

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


def complex_abs(x):
    """Magnitude: complex64 [...] -> float32 [...]."""
    return tf.abs(x)


def rss(x, axis=-3):
    """Root-sum-of-squares over the coil axis: [..., coils, H, W] -> float32 [..., H, W].

    Accepts complex (coil images) or real (coil magnitudes) input.
    """
    magnitude_squared = tf.math.real(x * tf.math.conj(x)) if x.dtype.is_complex else x * x
    return tf.sqrt(tf.reduce_sum(magnitude_squared, axis=axis))


def center_crop(x, height, width):
    """Crops the centre ``height`` x ``width`` of [..., H, W] (real or complex).

    Follows fastMRI's rounding: the crop starts at ``(H - height) // 2``. Raises
    ``InvalidArgumentError`` in a graph when the input is smaller than the crop.
    """
    shape = tf.shape(x)
    tf.debugging.assert_greater_equal(
        shape[-2:],
        tf.stack([height, width]),
        message="center_crop: image is smaller than the crop size",
    )
    top = (shape[-2] - height) // 2
    left = (shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


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
