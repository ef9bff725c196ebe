"""k-space data consistency for magnitude reconstructions (single-coil).

The network predicts a normalised magnitude image of the ``S x S`` crop. Data
consistency puts back what was measured: in hybrid space (readout transformed and
cropped to ``S`` rows, phase-encoding columns not transformed, ``[S, W]``), the
sampled columns of the prediction are replaced by the measured ones. The prediction
has no phase, so it borrows the zero-filled image's phase, and the columns outside
the ``S``-wide crop come from the zero-filled image too. On the zero-filled input it
is the identity; on anything else its sampled columns equal the measured data.
"""

import tensorflow as tf

from tfmri.data import transforms


def consistent_hybrid(image, measured, mask):
    """The hybrid data of ``image`` with the measured columns put back.

    Args:
      image: float32 [B, S, S], de-normalised magnitude prediction of the crop.
      measured: complex64 [B, S, W], the measured hybrid data (zero where unsampled).
      mask: float32 [B, W], 1 where a column was sampled.

    Returns:
      complex64 [B, S, W].
    """
    zero_filled = transforms.columns_to_image(measured)  # [B, S, W]
    size = tf.shape(image)[-1]
    left = transforms.width_crop_start(tf.shape(measured)[-1], size)
    inner = transforms.crop_width(zero_filled, size)
    magnitude = tf.abs(inner)
    phase = tf.where(
        magnitude > 0,
        inner / tf.cast(tf.maximum(magnitude, 1e-30), inner.dtype),
        tf.ones_like(inner),
    )
    estimate = tf.concat(
        [
            zero_filled[:, :, :left],
            # tf.complex, not tf.cast: the same value, and a gradient that takes the real
            # part explicitly instead of warning that a cast drops the imaginary one.
            tf.complex(image, tf.zeros_like(image)) * phase,
            zero_filled[:, :, left + size :],
        ],
        axis=-1,
    )
    columns = transforms.image_to_columns(estimate)
    sampled = tf.cast(mask[:, None, :], columns.dtype)
    return sampled * measured + (1 - sampled) * columns


def apply(normalized, inputs):
    """Data consistency of a normalised prediction [B, S, S, 1] -> normalised [B, S, S, 1].

    ``inputs`` holds ``mean``, ``std`` [B] (the normalisation), ``measured`` and
    ``mask`` (see :func:`consistent_hybrid`). Not clamped: it is the model's output.
    """
    mean = tf.reshape(inputs["mean"], [-1, 1, 1])
    std = tf.reshape(inputs["std"], [-1, 1, 1])
    image = transforms.denormalize(tf.cast(normalized[..., 0], tf.float32), mean, std)
    hybrid = consistent_hybrid(image, inputs["measured"], inputs["mask"])
    complex_image = transforms.crop_width(transforms.columns_to_image(hybrid), tf.shape(image)[-1])
    # sqrt(re^2 + im^2 + tiny): the gradient of |z| is undefined at 0.
    magnitude = tf.sqrt(
        tf.square(tf.math.real(complex_image)) + tf.square(tf.math.imag(complex_image)) + 1e-30
    )
    return ((magnitude - mean) / (std + transforms.NORMALIZATION_EPS))[..., None]
