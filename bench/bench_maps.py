"""Multi-coil CS-TV with two coil-map estimates, against BART, on realistic coils (issue 32).

  python bench/bench_maps.py [--acceleration=8] [--coils=8] [--crop=0.95]

MNI152 template slices (two axial, one coronal; tfmri/data/anatomy.py) seen through
sigpy's birdcage coils, a smooth random phase and complex Gaussian k-space noise, on a
640 x 368 grid; the target is the RSS of the cropped coil images, as fastMRI's
multi-coil targets. Each slice is undersampled with its fixed fastMRI random mask and
reconstructed by:

* tfmri CS-TV (:func:`tfmri.baselines.cs_tv.complex_image`, 100 iterations, not
  compiled) with ``rss`` maps (:func:`tfmri.data.coils.estimate_maps`, the low-resolution
  coil images over their RSS, what tfmri uses today) and with ``espirit`` maps
  (:func:`tfmri.data.espirit.estimate_maps`, ``--crop``); lambda per method by tfmri's
  rule (the best SSIM among the grid's lambdas within 10 % of the best NMSE), chosen on
  the scored slices themselves, which favours tfmri: an exploration, not a comparison
  to report as tfmri's;
* BART: ``ecalib -d0 -m1`` + ``pics -d0 -S -R T:7:0:0.01 -i 200``, fastMRI's recipe, when
  ``bart`` is on PATH.

Prints each slice's NMSE / SSIM and lambda, the seconds the maps took, and the means.
Needs sigpy (``pip install -e ".[bench]"``).
"""

import os
import time

from absl import app, flags

from tfmri import cli

cli.quiet_tensorflow()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfmri.baselines import bart, cs_tv  # noqa: E402
from tfmri.data import anatomy, coils, espirit, masks, synthetic, transforms  # noqa: E402
from tfmri.evaluation import metrics  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("acceleration", "8", ["4", "8"], "4 (centre 0.08) or 8 (centre 0.04).")
flags.DEFINE_integer("coils", 8, "Birdcage coils.", lower_bound=2)
flags.DEFINE_float("crop", espirit.CROP, "ESPIRiT: eigenvalue below which maps are zero.")
flags.DEFINE_float("noise", 0.0005, "k-space noise std over the k-space maximum.")
flags.DEFINE_integer("seed", 0, "Seed of the phase and the noise.")

HEIGHT, WIDTH, CROP_SIZE = 640, 368, 320
LAMBDAS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02)
SLICES = (("axial", 80), ("axial", 100), ("coronal", 110))


def scans(num_coils, noise, seed):
    """[(k-space complex64 [C, 640, 368], target float32 [320, 320])] of the slices."""
    import sigpy.mri

    rng = np.random.default_rng(seed)
    template = anatomy.load_template()
    maps = sigpy.mri.birdcage_maps((num_coils, HEIGHT, WIDTH), r=1.2).astype(np.complex64)
    result = []
    for plane, index in SLICES:
        image = anatomy.plane_slices(template, plane, [index])[0]
        field = np.zeros((HEIGHT, WIDTH))
        top, left = (HEIGHT - image.shape[0]) // 2, (WIDTH - image.shape[1]) // 2
        field[top : top + image.shape[0], left : left + image.shape[1]] = image / image.max()
        phase = np.exp(1j * anatomy._smooth_phase(rng, HEIGHT, WIDTH))
        kspace = synthetic.fft2c(maps * (field * phase)[None])
        sigma = noise * np.abs(kspace).max()
        kspace += sigma * (
            rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)
        )
        result.append((kspace.astype(np.complex64), synthetic.target_of(kspace).astype(np.float32)))
    return result


ESTIMATORS = ("rss", "espirit", "espirit+rss")


def estimate_maps(name, measured, mask):
    """complex64 [1, C, h, W] maps by one estimator: ``rss`` (tfmri's today), ``espirit``,
    or ``espirit+rss`` (ESPIRiT where its eigenvalue reaches --crop, rss elsewhere)."""
    if name == "rss":
        return coils.estimate_maps(measured, mask)
    maps = espirit.estimate_maps(measured, mask, crop=FLAGS.crop)
    if name == "espirit":
        return maps
    kept = tf.reduce_sum(tf.abs(maps) ** 2, axis=1, keepdims=True) > 0
    return tf.where(kept, maps, coils.estimate_maps(measured, mask))


def _score(target, image):
    return metrics.nmse(target[None], image[None]), metrics.ssim(target[None], image[None])


def tfmri_cs(measured, mask, maps, target):
    """(image [320, 320], lambda) by tfmri's rule over LAMBDAS."""
    candidates = []
    for regularization in LAMBDAS:
        solution = cs_tv.complex_image(
            measured, mask, regularization, cs_tv.DEFAULT_ITERATIONS, maps
        )
        image = np.abs(transforms.crop_width(solution, CROP_SIZE).numpy()[0])
        candidates.append((*_score(target, image), regularization, image))
    best_nmse = min(candidate[0] for candidate in candidates)
    near = [candidate for candidate in candidates if candidate[0] <= cs_tv.NMSE_SLACK * best_nmse]
    best = max(near, key=lambda candidate: candidate[1])
    return best[3], best[2]


def bart_image(masked_kspace):
    """(BART's image [320, 320], seconds): fastMRI's recipe on [C, H, W] k-space."""
    start = time.perf_counter()
    image = bart.reconstruct(masked_kspace, (CROP_SIZE, CROP_SIZE))
    return image, time.perf_counter() - start


def main(argv):
    del argv
    acceleration = int(FLAGS.acceleration)
    spec = masks.MaskSpec("random", (0.04 if acceleration == 8 else 0.08,), (acceleration,))
    have_bart = bart.find() is not None
    print(
        f"{len(SLICES)} MNI152 slices, {FLAGS.coils} birdcage coils, {acceleration}x random mask, "
        f"ESPIRiT crop {FLAGS.crop}, {os.cpu_count()} cores",
        flush=True,
    )
    totals = {}
    for number, (kspace, target) in enumerate(scans(FLAGS.coils, FLAGS.noise, FLAGS.seed)):
        mask, _ = masks.MaskFunction(spec)(WIDTH, seed=tuple(map(ord, f"slice{number}.h5")))
        mask = mask.astype(np.float32)
        masked = kspace * mask
        measured = transforms.measured_rows(tf.constant(masked), tf.constant(mask), CROP_SIZE)[None]
        batch_mask = tf.constant(mask)[None]
        zero_filled = transforms.center_crop(
            transforms.rss(transforms.ifft2c(tf.constant(masked)), axis=-3), CROP_SIZE, CROP_SIZE
        ).numpy()
        line = [f"slice {number}", "zero-filled {:.4f}/{:.3f}".format(*_score(target, zero_filled))]
        totals.setdefault("zero-filled", []).append(_score(target, zero_filled))
        for name in ESTIMATORS:
            start = time.perf_counter()
            maps = estimate_maps(name, measured, batch_mask)
            seconds = time.perf_counter() - start
            image, regularization = tfmri_cs(measured, batch_mask, maps, target)
            scores = _score(target, image)
            totals.setdefault(f"CS-TV, {name} maps", []).append(scores)
            line.append(
                "CS-TV {} {:.4f}/{:.3f} (l={:g}, maps {:.2f} s)".format(
                    name, *scores, regularization, seconds
                )
            )
        if have_bart:
            image, seconds = bart_image(masked)
            scores = _score(target, image)
            totals.setdefault("BART", []).append(scores)
            line.append("BART {:.4f}/{:.3f} ({:.1f} s)".format(*scores, seconds))
        print(" | ".join(line), flush=True)
    if not have_bart:
        print("BART: 'bart' not found; install it (Debian: apt-get install bart)")
    print(f"{'method':<24}{'NMSE':>10}{'SSIM':>10}   (mean over slices)")
    for name, scores in totals.items():
        values = np.array(scores)
        print(f"{name:<24}{values[:, 0].mean():>10.4f}{values[:, 1].mean():>10.3f}")


if __name__ == "__main__":
    app.run(main)
