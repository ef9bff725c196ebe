"""Writes the real-anatomy check set: the MNI152 T1 template as fastMRI single-coil files.

  pip install -e ".[anatomy]"
  python tools/make_real_anatomy.py --output_dir=data/anatomy

Creates <output_dir>/singlecoil_val/mni152_t1_<plane>_<n>.h5 (6 volumes x 6 slices by
default) from the template nilearn ships in its package (no download), and
<output_dir>/singlecoil_tune/ (3 volumes of other slices) on which --cs_lambda=auto
chooses CS-TV's weight, as a user would on their own scans. Check results on it; never
train or tune defaults on it (tfmri/data/anatomy.py says how it is made).
"""

from absl import flags

from tfmri import cli

cli.quiet_tensorflow(load=False)

from tfmri.data import anatomy  # noqa: E402
from tfmri.errors import UserError  # noqa: E402
from tfmri.progress import ProgressBar  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Directory to write singlecoil_val/ into.")
flags.DEFINE_integer("volumes_per_plane", 2, "Volumes per plane (axial, coronal, sagittal).", 1)
flags.DEFINE_integer("num_slices", 6, "Slices per volume.", lower_bound=1)
flags.DEFINE_float("noise", 0.01, "k-space noise std over the image maximum.", lower_bound=0.0)
flags.DEFINE_integer("seed", 0, "Seed of the phases, noise and widths.")
flags.DEFINE_integer(
    "tune_volumes_per_plane", 1, "Volumes per plane of singlecoil_tune (0: none).", lower_bound=0
)
flags.mark_flag_as_required("output_dir")


@cli.user_errors_to_exit
def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
    spec = anatomy.AnatomySpec(
        FLAGS.volumes_per_plane,
        FLAGS.num_slices,
        noise=FLAGS.noise,
        seed=FLAGS.seed,
        tune_volumes_per_plane=FLAGS.tune_volumes_per_plane,
    )
    try:
        template_shape = anatomy.load_template().shape
    except ImportError as error:
        raise UserError(str(error)) from None
    bar = ProgressBar(len(anatomy.volume_plan(template_shape, spec)), "volumes")
    written = anatomy.generate(spec, FLAGS.output_dir, lambda done, total: bar.update())
    bar.close()
    splits = (
        f"{anatomy.SPLIT}, {anatomy.TUNE_SPLIT}" if spec.tune_volumes_per_plane else anatomy.SPLIT
    )
    print(f"wrote {len(written)} volumes to {FLAGS.output_dir} ({splits})")


if __name__ == "__main__":
    cli.run(main)
