"""k-space data consistency for magnitude reconstructions, single-coil and multi-coil.

The network predicts a normalised magnitude image of the ``S x S`` crop. Data
consistency puts back what was measured: in hybrid space (readout transformed and
cropped to ``S`` rows, phase-encoding columns not transformed, ``[S, W]``), the
sampled columns of the prediction are replaced by the measured ones. The prediction
has no phase, so it borrows the zero-filled image's phase, and the columns outside
the ``S``-wide crop come from the zero-filled image too. On the zero-filled input it
is the identity; on anything else its sampled columns equal the measured data.
Multi-coil: the prediction takes the phase of the zero-filled image combined with coil
maps estimated from the fully sampled centre, is expanded to coil images with the same
maps, and each coil's sampled columns are replaced by its measured ones; the result is
combined with the maps again.
"""

import tensorflow as tf

from tfmri.data import coils, transforms


def _with_phase(image, zero_filled):
    """complex64 [B, S, W]: the magnitude ``image`` [B, S, S] with the phase of the
    zero-filled complex image [B, S, W] in the crop, the zero-filled image outside it."""
    size = tf.shape(image)[-1]
    left = transforms.width_crop_start(tf.shape(zero_filled)[-1], size)
    inner = transforms.crop_width(zero_filled, size)
    magnitude = tf.abs(inner)
    phase = tf.where(
        magnitude > 0,
        inner / tf.cast(tf.maximum(magnitude, 1e-30), inner.dtype),
        tf.ones_like(inner),
    )
    return tf.concat(
        [
            zero_filled[:, :, :left],
            # tf.complex, not tf.cast: the same value, and a gradient that takes the real
            # part explicitly instead of warning that a cast drops the imaginary one.
            tf.complex(image, tf.zeros_like(image)) * phase,
            zero_filled[:, :, left + size :],
        ],
        axis=-1,
    )


def consistent_hybrid(image, measured, mask, maps=None):
    """The hybrid data of ``image`` with the measured columns put back.

    Args:
      image: float32 [B, S, S], de-normalised magnitude prediction of the crop.
      measured: complex64 [B, S, W] (single-coil) or [B, C, S, W] (multi-coil), the
        measured hybrid data (zero where unsampled).
      mask: float32 [B, W], 1 where a column was sampled.
      maps: multi-coil only, complex64 [B, C, S, W] coil maps
        (:func:`tfmri.data.coils.estimate_maps`): the prediction is expanded to coil
        images with them, and the measured columns are put back coil by coil.

    Returns:
      complex64, the shape of ``measured``.
    """
    coil_images = transforms.columns_to_image(measured)
    if maps is None:
        estimate = _with_phase(image, coil_images)
    else:
        estimate = coils.expand(_with_phase(image, coils.combine(coil_images, maps)), maps)
    return put_back(estimate, measured, mask)


def put_back(coil_images, measured, mask):
    """The hybrid data of complex ``coil_images`` (the shape of ``measured``: [B, S, W]
    or [B, C, S, W]) with their sampled columns replaced by the ``measured`` ones."""
    sampled = tf.cast(mask, measured.dtype)[:, None, :]
    if measured.shape.rank == 4:
        sampled = sampled[:, None]
    columns = transforms.image_to_columns(coil_images)
    return sampled * measured + (1 - sampled) * columns


def complex_consistent(image, measured, mask, maps=None):
    """complex64 [B, S, W]: the complex image [B, S, W] (rows of the crop, every column)
    with the measured columns put back; multi-coil through ``maps`` [B, C, S, W]
    (expanded to coil images, put back coil by coil, combined). The measured data and
    the image are in the same units (a cascade divides both by the slice's std)."""
    if maps is None:
        return transforms.columns_to_image(put_back(image, measured, mask))
    coil_images = transforms.columns_to_image(put_back(coils.expand(image, maps), measured, mask))
    return coils.combine(coil_images, maps)


def smooth_abs(image):
    """float32 ``|image|`` of a complex image, as ``sqrt(re^2 + im^2 + tiny)``: the
    gradient of ``tf.abs`` is undefined at 0, and a model's output is differentiated."""
    return tf.sqrt(tf.square(tf.math.real(image)) + tf.square(tf.math.imag(image)) + 1e-30)


def maps_of(inputs):
    """Coil maps [B, C, S, W] of multi-coil ``inputs["measured"]`` (estimated from its fully
    sampled centre), or None for single-coil data."""
    measured = inputs["measured"]
    if measured.shape.rank != 4:
        return None
    return coils.estimate_maps(measured, tf.cast(inputs["mask"], tf.float32))


def normalized_complex(inputs, size, maps=None):
    """float32 [B, S, S, 2]: the complex zero-filled image of the crop (combined with
    ``maps``, :func:`maps_of`, multi-coil) as real and imaginary channels, divided by the
    normalisation's ``std`` and clamped as the magnitude input is."""
    image = transforms.columns_to_image(inputs["measured"])
    if maps is not None:
        image = coils.combine(image, maps)
    image = transforms.crop_width(image, size)
    std = tf.cast(tf.reshape(inputs["std"], [-1, 1, 1, 1]), tf.float32)
    channels = tf.stack([tf.math.real(image), tf.math.imag(image)], axis=-1)
    scaled = channels / (std + transforms.NORMALIZATION_EPS)
    clamp = transforms.NORMALIZATION_CLAMP
    return tf.clip_by_value(scaled, -clamp, clamp)


def apply(normalized, inputs, maps=None):
    """Data consistency of a normalised prediction [B, S, S, 1] -> normalised [B, S, S, 1].

    ``inputs`` holds ``mean``, ``std`` [B] (the normalisation), ``measured`` and
    ``mask`` (see :func:`consistent_hybrid`); multi-coil ``measured`` ([B, C, S, W])
    goes through coil maps (``maps``, or :func:`maps_of` it when not given), and the coil
    images are combined with them. Not clamped: it is the model's output.
    """
    mean = tf.reshape(inputs["mean"], [-1, 1, 1])
    std = tf.reshape(inputs["std"], [-1, 1, 1])
    image = transforms.denormalize(tf.cast(normalized[..., 0], tf.float32), mean, std)
    measured, mask = inputs["measured"], tf.cast(inputs["mask"], tf.float32)
    if maps is None:
        maps = maps_of(inputs)
    hybrid = consistent_hybrid(image, measured, mask, maps)
    complex_image = transforms.columns_to_image(hybrid)
    if maps is not None:
        complex_image = coils.combine(complex_image, maps)
    magnitude = smooth_abs(transforms.crop_width(complex_image, tf.shape(image)[-1]))
    return ((magnitude - mean) / (std + transforms.NORMALIZATION_EPS))[..., None]
