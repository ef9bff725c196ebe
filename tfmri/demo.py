"""The end-to-end demo on synthetic fastMRI data.

  python -m tfmri.demo --workdir=runs/demo

Generates synthetic single-coil knee volumes in the fastMRI layout, converts them to
TFRecords, reads one epoch of the training and validation splits through the tf.data
pipeline (8x random masks, as the seed project) and prints a summary, including the
zero-filled baseline's fastMRI metrics on the validation split. Every step keeps what
an earlier run finished, so rerunning is cheap.
"""

import collections
import os
import time

from absl import flags

from tfmri import cli

cli.quiet_tensorflow()

import numpy as np  # noqa: E402

from tfmri import metrics  # noqa: E402
from tfmri.data import convert, masks, pipeline, synthetic, transforms  # noqa: E402
from tfmri.progress import ProgressBar  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/demo", "Where the synthetic data, TFRecords and logs go.")
flags.DEFINE_integer("num_volumes", 10, "Synthetic volumes to generate.", lower_bound=3)
flags.DEFINE_integer("num_slices", 12, "Slices per synthetic volume.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the synthetic data.")
flags.DEFINE_integer("batch_size", 8, "Batch size of the pipeline.", lower_bound=1)


def _step(message):
    print(f"== {message}", flush=True)


def evaluate_zero_filled(dataset):
    """Per-volume fastMRI metrics of the de-normalised zero-filled input vs the target."""
    volumes = collections.defaultdict(lambda: ([], []))
    for inputs, target in dataset:
        zero_filled = transforms.denormalize(
            inputs["zero_filled"][..., 0],
            inputs["mean"][:, None, None],
            inputs["std"][:, None, None],
        )
        gt = transforms.denormalize(
            target[..., 0], inputs["mean"][:, None, None], inputs["std"][:, None, None]
        )
        for name, z, g in zip(inputs["volume"].numpy(), zero_filled.numpy(), gt.numpy()):
            volumes[name][0].append(g)
            volumes[name][1].append(z)
    return [metrics.volume_metrics(np.stack(g), np.stack(z)) for g, z in volumes.values()]


@cli.user_errors_to_exit
def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}; all options are --flags")
    raw_dir = os.path.join(FLAGS.workdir, "fastmri")
    records_dir = os.path.join(FLAGS.workdir, "tfrecords")

    _step(f"synthetic fastMRI volumes -> {raw_dir}")
    spec = synthetic.SyntheticSpec(FLAGS.num_volumes, FLAGS.num_slices, 1, FLAGS.seed)
    bar = ProgressBar(FLAGS.num_volumes, "volumes")
    synthetic.generate(spec, raw_dir, lambda done, total: bar.update())
    bar.close()

    _step(f"HDF5 -> TFRecords -> {records_dir}")
    bar = ProgressBar(convert.count_volumes(raw_dir), "volumes")
    manifest = convert.convert(
        raw_dir,
        records_dir,
        convert.ConvertOptions(num_shards=4, num_workers=2),
        lambda *_: bar.update(),
    )
    bar.close()
    print(convert.summary(manifest))

    options = pipeline.PipelineOptions(
        masks.MaskSpec("random", (0.04,), (8,)), batch_size=FLAGS.batch_size
    )
    for split, training in (("singlecoil_train", True), ("singlecoil_val", False)):
        _step(f"one epoch of {split} through the tf.data pipeline (8x random masks)")
        dataset = pipeline.make_dataset(records_dir, split, options, training)
        input_spec, target_spec = dataset.element_spec
        started, slices = time.monotonic(), 0
        for inputs, _ in dataset:
            slices += int(inputs["zero_filled"].shape[0])
        seconds = time.monotonic() - started
        print(
            f"{split}: {slices} slices, input {input_spec['zero_filled'].shape[1:]}, "
            f"target {target_spec.shape[1:]}, {seconds:.1f} s ({slices / seconds:.0f} slices/s)"
        )

    _step("zero-filled baseline on singlecoil_val (fastMRI metrics, per volume)")
    results = evaluate_zero_filled(
        pipeline.make_dataset(records_dir, "singlecoil_val", options, False)
    )
    for name in ("nmse", "psnr", "ssim"):
        values = np.array([r[name] for r in results])
        print(
            f"  {name.upper():5s} {values.mean():.4f} +/- {values.std():.4f}  ({len(values)} volumes)"
        )


if __name__ == "__main__":
    cli.run(main)
