"""Writes synthetic volumes in the exact fastMRI HDF5 layout.

  python -m tfmri.synthesize --output_dir=data/synthetic --num_volumes=10
  python -m tfmri.synthesize --output_dir=data/phantom --data_source=knee

``--data_source=knee`` writes the knee phantom (tfmri/data/synthetic.py); ``natural`` (the
demo's default) photographs bundled with scikit-image made into MR-like objects
(tfmri/data/natural.py), training and validation from different photographs.

Creates <output_dir>/{singlecoil,multicoil}_{train,val,test}/file*.h5. Test files hold
only undersampled k-space with its mask, as fastMRI's test sets do.
"""

from absl import flags

from tfmri import cli
from tfmri.errors import UserError

cli.quiet_tensorflow(load=False)

from tfmri.data import synthetic  # noqa: E402
from tfmri.flagdefs import common  # noqa: E402, F401 - define flags
from tfmri.flagdefs import synthetic as synthetic_flags  # noqa: E402, F401 - define flags
from tfmri.progress import ProgressBar  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_float("val_fraction", 0.2, "Fraction of the volumes in the validation split.")
flags.DEFINE_float("test_fraction", 0.1, "Fraction of the volumes in the test split.")
DEFAULT_SLICES = 12


@cli.user_errors_to_exit
def main(argv):
    if not FLAGS.output_dir:
        raise UserError("--output_dir is required: where the split sub-directories go")
    synthetic_flags.check_counts(FLAGS, ("num_volumes", "num_slices", "coils"))
    try:
        spec = synthetic.SyntheticSpec(
            FLAGS.num_volumes,
            FLAGS.num_slices or DEFAULT_SLICES,
            FLAGS.coils,
            FLAGS.data_seed,
            FLAGS.val_fraction,
            FLAGS.test_fraction,
            FLAGS.data_source,
        )
        synthetic.split_sizes(spec.num_volumes, spec.val_fraction, spec.test_fraction)
    except ValueError as error:
        raise UserError(f"--num_volumes/--val_fraction/--test_fraction: {error}") from None
    bar = ProgressBar(FLAGS.num_volumes, "volumes")
    written = synthetic.generate(spec, FLAGS.output_dir, lambda done, total: bar.update())
    bar.close()
    counts = ", ".join(f"{split} {len(paths)}" for split, paths in written.items())
    print(f"wrote {FLAGS.num_volumes} volumes ({counts}) to {FLAGS.output_dir}")


if __name__ == "__main__":
    cli.run(main)
