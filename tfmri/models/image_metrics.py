"""fastMRI's metrics per slice, in TensorFlow, for training-time validation and losses.

The definitions (window, constants, data range) are :mod:`tfmri.evaluation.metrics`'s; these are
per-slice and differentiable, where :mod:`tfmri.evaluation.metrics` is per volume, in float64, for
the reported evaluation. All take images ``float32 [batch, H, W, 1]`` and a
``data_range`` ``float32 [batch]`` (the volume maximum of the target) and return
``float32 [batch]``.
"""

import tensorflow as tf

from tfmri.evaluation import metrics


def _window_mean(x):
    size = metrics.SSIM_WINDOW
    return tf.nn.avg_pool2d(x, size, strides=1, padding="VALID")


def ssim(gt, pred, data_range):
    """Mean SSIM of each slice, as scikit-image's ``structural_similarity`` computes it."""
    gt, pred = tf.cast(gt, tf.float32), tf.cast(pred, tf.float32)
    count = float(metrics.SSIM_WINDOW**2)
    covariance_norm = count / (count - 1.0)
    data_range = tf.reshape(tf.cast(data_range, tf.float32), [-1, 1, 1, 1])
    c1 = (metrics.SSIM_K1 * data_range) ** 2
    c2 = (metrics.SSIM_K2 * data_range) ** 2
    mean_gt, mean_pred = _window_mean(gt), _window_mean(pred)
    var_gt = covariance_norm * (_window_mean(gt * gt) - mean_gt**2)
    var_pred = covariance_norm * (_window_mean(pred * pred) - mean_pred**2)
    covariance = covariance_norm * (_window_mean(gt * pred) - mean_gt * mean_pred)
    numerator = (2 * mean_gt * mean_pred + c1) * (2 * covariance + c2)
    denominator = (mean_gt**2 + mean_pred**2 + c1) * (var_gt + var_pred + c2)
    return tf.reduce_mean(numerator / denominator, axis=[1, 2, 3])


def nmse(gt, pred):
    """``||gt - pred||^2 / ||gt||^2`` of each slice."""
    error = tf.reduce_sum(tf.square(gt - pred), axis=[1, 2, 3])
    return error / tf.maximum(tf.reduce_sum(tf.square(gt), axis=[1, 2, 3]), 1e-30)


def psnr(gt, pred, data_range):
    """``10 log10(data_range^2 / MSE)`` of each slice."""
    mse = tf.reduce_mean(tf.square(gt - pred), axis=[1, 2, 3])
    ratio = tf.square(tf.cast(data_range, tf.float32)) / tf.maximum(mse, 1e-30)
    return 10.0 * tf.math.log(ratio) / tf.math.log(10.0)
