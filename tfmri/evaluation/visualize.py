"""Comparison images: zero-filled | reconstruction | target | error, one row per slice."""

import numpy as np
import tensorflow as tf

from tfmri import fileio

ERROR_GAIN = 5.0  # the error map is amplified to be visible next to the images


def comparison_grid(zero_filled, reconstruction, target) -> np.ndarray:
    """uint8 [rows * H, 4 * W] grid of float arrays [rows, H, W] (de-normalised).

    Each row is scaled by its target's maximum; the error column shows
    ``ERROR_GAIN * |reconstruction - target|`` on the same scale.
    """
    zero_filled, reconstruction, target = (
        np.asarray(a, np.float32) for a in (zero_filled, reconstruction, target)
    )
    rows = []
    for z, r, t in zip(zero_filled, reconstruction, target):
        scale = max(float(t.max()), 1e-12)
        error = ERROR_GAIN * np.abs(r - t)
        rows.append(np.concatenate([z, r, t, error], axis=1) / scale)
    return (np.clip(np.concatenate(rows, axis=0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_png(path, image):
    """Writes a uint8 [H, W] image as PNG, atomically."""
    data = tf.io.encode_png(np.asarray(image, np.uint8)[..., None]).numpy()
    with fileio.atomic_path(path) as temporary, open(temporary, "wb") as handle:
        handle.write(data)
