"""Converts fastMRI HDF5 volumes to sharded TFRecords, one example per slice.

  python -m tfmri.convert --input_dir=data/synthetic --output_dir=data/tfrecords

Resumable: rerun the same command after an interruption and it finishes the job,
keeping the shards that are complete. See tfmri/data/convert.py for the layout.
"""

from absl import flags

from tfmri import cli
from tfmri.errors import UserError

cli.quiet_tensorflow(load=False)

from tfmri.data import convert, schema  # noqa: E402
from tfmri.flagdefs import common  # noqa: E402, F401 - --input_dir, --output_dir, --on_error
from tfmri.progress import ProgressBar  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_shards", 4, "Shards per split (at most one per volume).", lower_bound=1)
flags.DEFINE_integer(
    "num_workers", 2, "Worker processes writing shards in parallel.", lower_bound=1
)
flags.DEFINE_enum("compression", "NONE", list(convert.COMPRESSIONS), "TFRecord compression.")
flags.DEFINE_enum(
    "layout",
    "hybrid",
    list(schema.LAYOUTS),
    "What the records hold: hybrid (k-space transformed along the readout and cropped to "
    "the recon height: half the bytes, no readout FFT per epoch) or kspace (as in the files).",
)
flags.DEFINE_boolean(
    "overwrite",
    False,
    "Remove the conversion --output_dir holds (shards, manifest) before converting; "
    "without it a rerun on the same input resumes, and another input is refused.",
)


@cli.user_errors_to_exit
def main(argv):
    for name, what in (
        ("input_dir", "the fastMRI .h5 files"),
        ("output_dir", "where the shards go"),
    ):
        if not FLAGS[name].value:
            raise UserError(f"--{name} is required: {what}")
    options = convert.ConvertOptions(
        FLAGS.num_shards, FLAGS.num_workers, FLAGS.compression, FLAGS.on_error, FLAGS.layout
    )
    bar = ProgressBar(convert.count_volumes(FLAGS.input_dir), "volumes")
    totals = {"bytes": 0}

    def progress(path, num_slices, num_bytes):
        totals["bytes"] += num_bytes
        elapsed = max(bar.elapsed(), 1e-9)
        bar.update(extra=f"{totals['bytes'] / 1e6 / elapsed:.1f} MB/s")

    manifest = convert.convert(
        FLAGS.input_dir, FLAGS.output_dir, options, progress, overwrite=FLAGS.overwrite
    )
    bar.close()
    print(convert.summary(manifest))
    if manifest["skipped"]:
        for skipped in manifest["skipped"]:
            print(f"skipped {skipped['file']}: {skipped['reason']}")


if __name__ == "__main__":
    cli.run(main)
