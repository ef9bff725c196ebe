"""Writes the real-anatomy check set: the MNI152 T1 template as fastMRI files.

  python -m tfmri.real_anatomy --output_dir=data/anatomy

Creates <output_dir>/singlecoil_val/mni152_t1_<plane>_<n>.h5 (6 volumes x 6 slices by
default) from the template nilearn ships in its package (no download), and
<output_dir>/singlecoil_tune/ (3 volumes of other slices) on which --cs_lambda=auto
chooses CS-TV's weight, as a user would on their own scans. Check results on it; never
train or tune defaults on it (tfmri/data/anatomy.py says how it is made). With
--coils=K > 1 the set is multi-coil, in multicoil_val/ and multicoil_tune/.
"""

from absl import flags

from tfmri import cli

cli.quiet_tensorflow(load=False)

from tfmri.data import anatomy  # noqa: E402
from tfmri.errors import UserError  # noqa: E402
from tfmri.flagdefs import common, synthetic  # noqa: E402, F401 - define flags
from tfmri.progress import ProgressBar  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("volumes_per_plane", 2, "Volumes per plane (axial, coronal, sagittal).", 1)
flags.DEFINE_float("noise", 0.01, "k-space noise std over the image maximum.", lower_bound=0.0)
flags.DEFINE_integer(
    "tune_volumes_per_plane", 1, "Volumes per plane of singlecoil_tune (0: none).", lower_bound=0
)
flags.DEFINE_integer(
    "clean_volumes_per_plane",
    0,
    "Check volumes per plane written again with a clean (masked) background (0: none).",
    lower_bound=0,
)
DEFAULT_SLICES = 6


@cli.user_errors_to_exit
def main(argv):
    if not FLAGS.output_dir:
        raise UserError("--output_dir is required: where singlecoil_val/ goes")
    synthetic.check_counts(FLAGS, ("num_slices", "coils"))
    spec = anatomy.AnatomySpec(
        FLAGS.volumes_per_plane,
        FLAGS.num_slices or DEFAULT_SLICES,
        noise=FLAGS.noise,
        seed=FLAGS.data_seed,
        tune_volumes_per_plane=FLAGS.tune_volumes_per_plane,
        coils=FLAGS.coils,
        clean_volumes_per_plane=FLAGS.clean_volumes_per_plane,
    )
    try:
        template_shape = anatomy.load_template().shape
    except ImportError as error:
        raise UserError(str(error)) from None
    bar = ProgressBar(len(anatomy.volume_plan(template_shape, spec)), "volumes")
    written = anatomy.generate(spec, FLAGS.output_dir, lambda done, total: bar.update())
    bar.close()
    splits = ", ".join(spec.splits if spec.tune_volumes_per_plane else spec.splits[:1])
    print(f"wrote {len(written)} volumes to {FLAGS.output_dir} ({splits})")


if __name__ == "__main__":
    cli.run(main)
