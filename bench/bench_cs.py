"""tfmri's CS-TV against BART's, fastMRI's classical baseline, on the same slices.

  python bench/bench_cs.py [--data_dir=DIR --split=singlecoil_val] [--acceleration=8]
  python bench/bench_cs.py --sweep        # tfmri only: lambda x iterations grid

Reads fastMRI HDF5 volumes (default: the demo's synthetic data, generated into a
temporary directory), takes ``--slices_per_volume`` middle slices of every volume of
the split, undersamples them with the fixed per-volume masks tfmri evaluates with
(random mask, fastMRI's centre fraction for the acceleration), and reconstructs them:

* BART: ``bart pics -d0 -S -R T:7:0:0.01 -i 200`` per slice with sensitivity maps from
  ``bart ecalib -d0 -m1``, single-coil too, as fastMRI's ``run_bart.py`` runs it; skipped
  with a note when ``bart`` is not installed (Debian: ``apt-get install bart``);
* tfmri: :func:`tfmri.baselines.cs_tv.reconstruct`, one batch per volume, compiled with
  XLA; each k-space shape (multi-coil: and count of sampled columns, padded to a
  multiple of 8) is compiled once before timing (the compile time is printed).

Prints NMSE / PSNR / SSIM (fastMRI's, per volume, then mean) and seconds per slice of
each, and the speed ratio. Both run on every core of the machine.
"""

import dataclasses
import os
import tempfile
import time

from absl import flags

from tfmri import cli

cli.quiet_tensorflow()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfmri.baselines import bart, cs_tv  # noqa: E402
from tfmri.data import fastmri_files, masks, synthetic, transforms  # noqa: E402
from tfmri.errors import UserError  # noqa: E402
from tfmri.evaluation import metrics  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "fastMRI HDF5 root (default: synthetic demo data).")
flags.DEFINE_string("split", "singlecoil_val", "Folder of --data_dir to read.")
flags.DEFINE_integer("slices_per_volume", 4, "Middle slices taken from each volume.", lower_bound=1)
flags.DEFINE_integer("max_volumes", 4, "Volumes read from the split.", lower_bound=1)
flags.DEFINE_enum("acceleration", "8", ["4", "8"], "4 (centre 0.08) or 8 (centre 0.04).")
flags.DEFINE_string(
    "cs_lambda",
    cs_tv.AUTO,
    "tfmri CS-TV regularisation weight: a number, or 'auto' to choose it on --tune_split "
    "as tfmri.report does.",
)
flags.DEFINE_string(
    "tune_split", "singlecoil_train", "Folder of --data_dir on which --cs_lambda=auto chooses."
)
flags.DEFINE_integer("cs_iterations", cs_tv.DEFAULT_ITERATIONS, "tfmri CS-TV iterations.")
flags.DEFINE_enum("cs_maps", cs_tv.DEFAULT_MAPS, list(cs_tv.MAPS), "tfmri CS-TV multi-coil maps.")
flags.DEFINE_string("bart", "bart", "The BART executable.")
flags.DEFINE_bool("sweep", False, "Only tfmri: NMSE / SSIM over a lambda x iterations grid.")

CENTER_FRACTIONS = {"4": "0.08", "8": "0.04"}
SWEEP_LAMBDAS = (0.001, 0.002, 0.005, 0.01, 0.02)
SWEEP_ITERATIONS = (50, 100, 200)


@dataclasses.dataclass(frozen=True)
class Slices:
    """The middle slices of one volume, undersampled, with what they are scored against."""

    name: str
    kspace: np.ndarray  # complex64 [n, (C,) H, W], masked
    mask: np.ndarray  # float32 [W]
    target: np.ndarray  # float32 [n, h, w], at the volume's recon crop
    crop: tuple  # (h, w): fastmri_files.recon_crop of the volume


def load_slices(directory, max_volumes=None, slices_per_volume=None):
    """[Slices] of the middle slices of each volume, each at its own recon crop."""
    max_volumes = max_volumes or FLAGS.max_volumes
    slices_per_volume = slices_per_volume or FLAGS.slices_per_volume
    spec = masks.parse_spec("random", [CENTER_FRACTIONS[FLAGS.acceleration]], [FLAGS.acceleration])
    volumes = []
    for path in fastmri_files.list_volumes(directory)[:max_volumes]:
        volume = fastmri_files.read_volume(path)
        if volume.target is None:
            raise UserError(f"{path}: no target to compare with; use a train or val split")
        middle, half = volume.num_slices // 2, slices_per_volume // 2
        chosen = slice(max(middle - half, 0), max(middle - half, 0) + slices_per_volume)
        mask = masks.fixed_volume_mask(spec, volume.name, volume.kspace.shape[-1])
        kspace = volume.kspace[chosen] * mask
        target = fastmri_files.cropped_target(volume)[chosen]
        crop = fastmri_files.recon_crop(volume)
        volumes.append(Slices(volume.name, kspace.astype(np.complex64), mask, target, crop))
    if not volumes:
        raise UserError(f"{directory}: no .h5 volumes")
    return volumes


def tfmri_reconstruct(volumes, options):
    """Reconstructions per volume, steady-state seconds, compile seconds."""

    def run(slices):
        masks_ = tf.constant(np.tile(slices.mask, (len(slices.kspace), 1)), tf.float32)
        return cs_tv.reconstruct(tf.constant(slices.kspace), masks_, options, slices.crop)

    first_of_shape = {}  # one volume per compiled shape: XLA compiles once each
    for slices in volumes:
        columns = cs_tv.column_bucket(int(np.sum(slices.mask > 0)), slices.mask.shape[-1])
        first_of_shape.setdefault((slices.kspace.shape, slices.crop, columns), slices)
    start = time.perf_counter()
    for slices in first_of_shape.values():
        run(slices).numpy()
    compile_seconds = time.perf_counter() - start
    images, seconds = [], 0.0
    for slices in volumes:
        start = time.perf_counter()
        images.append(run(slices).numpy())
        seconds += time.perf_counter() - start
    return images, seconds, compile_seconds


def _scores(volumes, images):
    rows = [
        {"volume": slices.name, "method": "m", **metrics.volume_metrics(slices.target, image)}
        for slices, image in zip(volumes, images)
    ]
    return metrics.summarize(rows)["m"]


def _line(name, scores, seconds_per_slice):
    cells = "".join(f"{scores[m]['mean']:>10.4f}" for m in metrics.NAMES)
    return f"{name:<28}{cells}{seconds_per_slice:>12.3f}"


def choose_lambda(data_dir):
    """--cs_lambda=auto: cs_tv.choose_lambda on 2 middle slices of 4 volumes of --tune_split
    (the choice tfmri.report makes on its converted data)."""
    directory = os.path.join(data_dir, FLAGS.tune_split)
    if FLAGS.tune_split == FLAGS.split or not os.path.isdir(directory):
        raise UserError(
            f"--tune_split: {directory} is not a directory other than --split's; give a "
            "split to choose lambda on, or a number, e.g. --cs_lambda=0.005"
        )
    groups = []
    for slices in load_slices(directory, 4, 2):
        masks_ = tf.constant(np.tile(slices.mask, (len(slices.kspace), 1)), tf.float32)
        measured = cs_tv.measured_hybrid(tf.constant(slices.kspace), masks_, slices.crop[0])
        groups.append((measured, masks_, slices.target))
    chosen, scores = cs_tv.choose_lambda(groups, FLAGS.cs_iterations, maps=FLAGS.cs_maps)
    table = ", ".join(f"{k:g}: {v['nmse']:.4f}/{v['ssim']:.4f}" for k, v in scores.items())
    print(f"lambda {chosen:g} chosen on {FLAGS.tune_split} (lambda: NMSE/SSIM) {table}")
    return chosen


def sweep(volumes):
    print(f"{'lambda':>8}{'iterations':>12}{'NMSE':>10}{'PSNR':>10}{'SSIM':>10}{'s/slice':>10}")
    count = sum(len(slices.kspace) for slices in volumes)
    for regularization in SWEEP_LAMBDAS:
        for iterations in SWEEP_ITERATIONS:
            images, seconds, _ = tfmri_reconstruct(
                volumes, cs_tv.CsTvOptions(regularization, iterations, FLAGS.cs_maps)
            )
            scores = _scores(volumes, images)
            cells = "".join(f"{scores[m]['mean']:>10.4f}" for m in metrics.NAMES)
            print(f"{regularization:>8}{iterations:>12}{cells}{seconds / count:>10.3f}", flush=True)


@cli.user_errors_to_exit
def main(argv):
    try:
        regularization = cs_tv.parse_lambda(FLAGS.cs_lambda)
        cs_tv.CsTvOptions(cs_tv.DEFAULT_LAMBDA, FLAGS.cs_iterations)
    except ValueError as error:
        raise UserError(f"--cs_lambda/--cs_iterations: {error}") from None
    with tempfile.TemporaryDirectory() as workdir:
        data_dir = FLAGS.data_dir
        if data_dir is None:
            data_dir = os.path.join(workdir, "fastmri")
            synthetic.generate(synthetic.SyntheticSpec(10, 12, 1, 0), data_dir)
        directory = os.path.join(data_dir, FLAGS.split)
        if not os.path.isdir(directory):
            raise UserError(f"--data_dir/--split: {directory} is not a directory")
        volumes = load_slices(directory)
        count = sum(len(slices.kspace) for slices in volumes)
        shape = "x".join(map(str, volumes[0].kspace.shape[1:]))
        crops = ", ".join(sorted({"x".join(map(str, slices.crop)) for slices in volumes}))
        print(
            f"{count} slices of {len(volumes)} volumes ({FLAGS.split}, k-space {shape}, recon crop {crops}), "
            f"{FLAGS.acceleration}x random mask, {os.cpu_count()} cores",
            flush=True,
        )
        if FLAGS.sweep:
            sweep(volumes)
            return
        if regularization == cs_tv.AUTO:
            regularization = choose_lambda(data_dir)
        options = cs_tv.CsTvOptions(regularization, FLAGS.cs_iterations, FLAGS.cs_maps)

        images, seconds, compile_seconds = tfmri_reconstruct(volumes, options)
        zero_filled = [
            np.asarray(
                (transforms.rss if slices.kspace.ndim == 4 else tf.abs)(
                    transforms.cropped_ifft2c(slices.kspace, slices.mask, *slices.crop)
                )
            )
            for slices in volumes
        ]
        print(f"{'method':<28}{'NMSE':>10}{'PSNR':>10}{'SSIM':>10}{'s/slice':>12}")
        print(_line("zero-filled", _scores(volumes, zero_filled), 0.0))
        label = (
            f"tfmri CS-TV (l={options.regularization:g}, {options.iterations} it, {options.maps})"
        )
        tfmri_per_slice = seconds / count
        print(_line(label, _scores(volumes, images), tfmri_per_slice), flush=True)
        print(
            f"  (tfmri: {compile_seconds:.1f} s of XLA compilation before timing, once per shape)"
        )

        if bart.find(FLAGS.bart) is None:
            print(f"BART: {FLAGS.bart!r} not found; install it (Debian: apt-get install bart)")
            return
        bart_images, start = [], time.perf_counter()
        for slices in volumes:
            bart_images.append(
                np.stack([bart.reconstruct(s, slices.crop, FLAGS.bart) for s in slices.kspace])
            )
        bart_per_slice = (time.perf_counter() - start) / count
        print(_line("BART pics T:7:0:0.01, 200 it", _scores(volumes, bart_images), bart_per_slice))
        print(f"tfmri CS-TV is {bart_per_slice / tfmri_per_slice:.1f} x faster per slice than BART")


if __name__ == "__main__":
    cli.run(main)
