"""Coil sensitivity maps and coil combination, in hybrid space (multi-coil data).

One owner for what CS-TV and k-space data consistency both need: maps estimated from
the fully sampled centre of the measured data, coil images combined with them, and an
image expanded to coil images. Shapes are hybrid: ``[B, C, h, W]`` (coils, the ``h``
rows of the recon crop, all ``W`` phase-encoding columns).
"""

import tensorflow as tf

from tfmri.data import transforms


def sampled_center_run(mask):
    """float32 [W]: 1 on the contiguous run of sampled columns around the middle, else 0."""
    width = tf.shape(mask)[0]
    middle = width // 2
    sampled = tf.cast(mask > 0, tf.int32)
    # Index of the first unsampled column going right from the middle, and going left.
    right = tf.argmin(tf.concat([sampled[middle:], [0]], axis=0), output_type=tf.int32)
    left = tf.argmin(
        tf.concat([tf.reverse(sampled[:middle], [0]), [0]], axis=0), output_type=tf.int32
    )
    index = tf.range(width)
    return tf.cast((index >= middle - left) & (index < middle + right), tf.float32)


def estimate_maps(measured, mask, eps=1e-6):
    """Coil sensitivities from the centre of k-space, in the hybrid rows.

    Args:
      measured: complex64 [B, C, h, W] measured hybrid data (zero where unsampled).
      mask: float32 [B, W].
      eps: floor of the root sum of squares, relative to its maximum per slice.

    Returns:
      complex64 [B, C, h, W] maps with sum over coils of |S|^2 <= 1 per pixel.
    """
    centre = tf.map_fn(sampled_center_run, mask)
    low = transforms.columns_to_image(measured * tf.cast(centre[:, None, None, :], measured.dtype))
    rss = tf.sqrt(tf.reduce_sum(tf.abs(low) ** 2, axis=1, keepdims=True))
    floor = eps * tf.reduce_max(rss, axis=[1, 2, 3], keepdims=True)
    return low / tf.cast(tf.maximum(rss, floor), low.dtype)


def combine(coil_images, maps):
    """complex64 [B, h, W]: ``sum_c conj(S_c) x_c`` of coil images [B, C, h, W]; with
    maps normalised as :func:`estimate_maps` makes them, its magnitude is the RSS of the
    coil images wherever the maps are."""
    return tf.reduce_sum(tf.math.conj(maps) * coil_images, axis=1)


def expand(image, maps):
    """complex64 [B, C, h, W]: the coil images ``S_c x`` of an image [B, h, W]."""
    return maps * image[:, None]
