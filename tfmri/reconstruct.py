"""Reconstructs every fastMRI volume of a directory with an exported model.

  python -m tfmri.reconstruct --saved_model=savedmodel/knee/1 --input_dir=DIR --output_dir=DIR

Writes one HDF5 file per volume holding ``reconstruction`` float32 [slices, S, S], the
format fastMRI's leaderboard takes (:mod:`tfmri.serving.reconstruct`). Test files use
their own mask; fully sampled files are undersampled with the volume's fixed mask of
--mask_type, --center_fractions and --accelerations. A rerun skips the volumes already
done. Bad files are named with the reason: ``--on_error=fail`` stops, ``skip`` goes on
and lists them.
"""

from absl import flags

from tfmri import cli

cli.quiet_tensorflow()

from tfmri.errors import UserError  # noqa: E402
from tfmri.flagdefs import common  # noqa: E402, F401 - --batch_size, --input_dir, --output_dir, --on_error
from tfmri.flagdefs import mask as mask_flags  # noqa: E402
from tfmri.serving import reconstruct  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "An exported model version: savedmodel/NAME/N.")


@cli.user_errors_to_exit
def main(argv):
    for name in ("saved_model", "input_dir", "output_dir"):
        if not FLAGS[name].value:
            raise UserError(f"--{name} is required")
    if FLAGS.batch_size < 1:
        raise UserError(f"--batch_size={FLAGS.batch_size}: must be >= 1")
    spec = mask_flags.spec(FLAGS)
    written, kept, skipped = reconstruct.run(
        FLAGS.saved_model, FLAGS.input_dir, FLAGS.output_dir, spec, FLAGS.batch_size, FLAGS.on_error
    )
    print(
        f"{len(written)} volumes reconstructed, {len(kept)} kept from an earlier run, "
        f"{len(skipped)} skipped -> {FLAGS.output_dir}"
    )
    for entry in skipped:
        print(f"skipped {entry['file']}: {entry['reason']}")


if __name__ == "__main__":
    cli.run(main)
