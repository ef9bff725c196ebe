"""fastMRI's evaluation metrics, per volume, in NumPy.

* NMSE = ||gt - pred||^2 / ||gt||^2 over the whole volume.
* PSNR = 10 log10(max(gt)^2 / MSE), max(gt) the volume maximum.
* SSIM = scikit-image's ``structural_similarity`` per slice (7 x 7 uniform window,
  K1 = 0.01, K2 = 0.03, sample covariance, ``data_range`` = volume max), averaged over
  slices. Implemented here with box sums so scikit-image is not a run-time dependency;
  the tests check it against scikit-image.

Volumes are float arrays [slices, H, W]; computed in float64.
"""

import math

import numpy as np

from tfmri.errors import UserError

NAMES = ("nmse", "psnr", "ssim")
SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def nmse(gt, pred) -> float:
    gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    return float(np.sum((gt - pred) ** 2) / np.sum(gt**2))


def psnr(gt, pred, data_range=None) -> float:
    gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    data_range = gt.max() if data_range is None else data_range
    mse = np.mean((gt - pred) ** 2)
    return float(10.0 * np.log10(data_range**2 / mse))


def _window_means(image, size):
    """Means over every full ``size`` x ``size`` window ('valid' positions)."""
    sums = np.cumsum(np.cumsum(image, axis=0), axis=1)
    sums = np.pad(sums, ((1, 0), (1, 0)))
    window = sums[size:, size:] - sums[:-size, size:] - sums[size:, :-size] + sums[:-size, :-size]
    return window / (size * size)


def ssim_slice(gt, pred, data_range) -> float:
    """Mean SSIM of one 2D slice, as ``skimage.metrics.structural_similarity``.

    scikit-image averages the SSIM map after cropping (window - 1) / 2 pixels from each
    border, which are exactly the positions where the window lies inside the image.
    """
    gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    size = SSIM_WINDOW
    count = size * size
    covariance_norm = count / (count - 1.0)
    mean_gt, mean_pred = _window_means(gt, size), _window_means(pred, size)
    var_gt = covariance_norm * (_window_means(gt * gt, size) - mean_gt**2)
    var_pred = covariance_norm * (_window_means(pred * pred, size) - mean_pred**2)
    cov = covariance_norm * (_window_means(gt * pred, size) - mean_gt * mean_pred)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    numerator = (2 * mean_gt * mean_pred + c1) * (2 * cov + c2)
    denominator = (mean_gt**2 + mean_pred**2 + c1) * (var_gt + var_pred + c2)
    return float(np.mean(numerator / denominator))


def ssim(gt, pred, data_range=None) -> float:
    """Mean over slices of :func:`ssim_slice`, ``data_range`` the volume max by default."""
    gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    data_range = gt.max() if data_range is None else data_range
    return float(np.mean([ssim_slice(g, p, data_range) for g, p in zip(gt, pred)]))


def volume_metrics(gt, pred) -> dict:
    """NMSE, PSNR and SSIM of one volume [slices, H, W]."""
    return {"nmse": nmse(gt, pred), "psnr": psnr(gt, pred), "ssim": ssim(gt, pred)}


def volume_row(volume, method, gt, pred) -> dict:
    """``{"volume", "method", nmse, psnr, ssim}`` of one method's reconstruction of one
    volume; raises UserError naming them when a score is not finite, so that no NaN
    reaches a results file."""
    scores = volume_metrics(gt, pred)
    bad = [f"{name} = {value}" for name, value in scores.items() if not math.isfinite(value)]
    if bad:
        cause = (
            "the reconstruction holds NaN or infinite values"
            if not np.all(np.isfinite(pred))
            else "the reconstruction equals the target, or the target is zero"
        )
        raise UserError(f"volume {volume}, method {method}: {', '.join(bad)} ({cause})")
    return {"volume": volume, "method": method, **scores}


# Which end of each metric is worse: a higher NMSE, a lower PSNR or SSIM.
WORSE = {"nmse": max, "psnr": min, "ssim": min}


def summarize(rows):
    """{method: {metric: {"mean", "std", "worst", "worst_volume"}}} over the volumes of
    ``rows``: a mean can hide one volume a method spoils, so the worst is kept beside it."""
    summary = {}
    for method in dict.fromkeys(row["method"] for row in rows):
        values = [row for row in rows if row["method"] == method]
        summary[method] = {}
        for metric in NAMES:
            worst = WORSE[metric](values, key=lambda row: row[metric])
            summary[method][metric] = {
                "mean": float(np.mean([row[metric] for row in values])),
                "std": float(np.std([row[metric] for row in values])),
                "worst": float(worst[metric]),
                "worst_volume": worst["volume"],
            }
    return summary


def table(summary, num_volumes) -> str:
    """The summary as a text table: one row per method, mean +/- std of each metric."""
    lines = [f"{'method':<16}{'NMSE':>22}{'PSNR':>20}{'SSIM':>20}   ({num_volumes} volumes)"]
    for method, values in summary.items():
        cells = "".join(f"{values[m]['mean']:>12.4f} +/- {values[m]['std']:<6.4f}" for m in NAMES)
        lines.append(f"{method:<16}{cells}")
    return "\n".join(lines)
