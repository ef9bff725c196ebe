"""Writes synthetic volumes in the exact fastMRI HDF5 layout.

  python tools/make_synthetic_fastmri.py --output_dir=data/synthetic --num_volumes=10
  python tools/make_synthetic_fastmri.py --output_dir=data/phantom --source=knee

``--source=knee`` writes the knee phantom (tfmri/data/synthetic.py); ``natural`` (the
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
from tfmri.progress import ProgressBar  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Directory to write the split sub-directories into.")
flags.DEFINE_integer("num_volumes", 10, "Volumes in all, dealt to train/val/test.", lower_bound=1)
flags.DEFINE_integer(
    "num_slices", 12, "Slices per volume (real knee volumes have ~35).", lower_bound=1
)
flags.DEFINE_integer("coils", 1, "1 for single-coil files, K > 1 for multi-coil.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed; the same seed writes the same files.")
flags.DEFINE_float("val_fraction", 0.2, "Fraction of the volumes in the validation split.")
flags.DEFINE_float("test_fraction", 0.1, "Fraction of the volumes in the test split.")
flags.DEFINE_enum(
    "source",
    "knee",
    list(synthetic.SOURCES),
    "knee: the knee phantom; natural: photographs made MR-like (the demo's default).",
)
flags.mark_flag_as_required("output_dir")


@cli.user_errors_to_exit
def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
    try:
        spec = synthetic.SyntheticSpec(
            FLAGS.num_volumes,
            FLAGS.num_slices,
            FLAGS.coils,
            FLAGS.seed,
            FLAGS.val_fraction,
            FLAGS.test_fraction,
            FLAGS.source,
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
