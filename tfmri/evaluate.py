"""Evaluates a trained model with the fastMRI metrics, per volume, against zero-filled.

  python -m tfmri.evaluate --flagfile=configs/demo.cfg [--checkpoint=<model_dir>/ckpt-N]

Reconstructs every slice of ``--val_split`` with the fixed per-volume masks, computes
NMSE, PSNR and SSIM per volume (fastMRI's conventions, in float64) for the model and
for the zero-filled input, and writes to ``--output_dir`` (default
``<model_dir>/eval``): ``metrics.csv`` (one row per volume and method),
``metrics.json`` (the same plus mean and standard deviation) and ``examples.png``
(zero-filled | reconstruction | target | 5 x error for the middle slice of the first
volumes). Prints the table.
"""

import csv
import io
import os

from absl import flags

from tfmri import cli

cli.quiet_tensorflow()

import numpy as np  # noqa: E402

from tfmri import checkpoints, config, fileio, metrics, runtime, visualize, volumes  # noqa: E402
from tfmri.data import pipeline  # noqa: E402
from tfmri.errors import UserError  # noqa: E402
from tfmri.progress import ProgressBar  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "checkpoint",
    None,
    "Checkpoint to evaluate (a ckpt-N prefix or a directory; default: the newest in --model_dir).",
)
flags.DEFINE_string("output_dir", None, "Where the results go (default: <model_dir>/eval).")
flags.DEFINE_integer("num_figure_volumes", 4, "Volumes shown in examples.png.")


def evaluate(model_dir, checkpoint, output_dir):
    """Evaluates; writes the results; returns (rows, summary, checkpoint path)."""
    _, entry, _ = pipeline.split_info(FLAGS.data_dir, FLAGS.val_split)  # before any work
    model, checkpoint = checkpoints.load_model(model_dir, checkpoint)
    options = pipeline.PipelineOptions(
        config.mask_spec(),
        batch_size=FLAGS.batch_size,
        crop_size=FLAGS.crop_size,
        data_consistency=model.config.data_consistency,
    )
    dataset = pipeline.make_dataset(FLAGS.data_dir, FLAGS.val_split, options, training=False)
    # The method is what the checkpoint is, whatever --model says.
    label = "unet" if model.discriminator is None else "pix2pix"
    rows, examples = [], []
    bar = ProgressBar(entry.statistics.num_volumes, "volumes")
    reconstructed = volumes.reconstruct_volumes(volumes.model_predictor(model), dataset)
    with pipeline.naming_damaged_records(FLAGS.data_dir, FLAGS.val_split):
        for name, zero_filled, reconstruction, target in reconstructed:
            for method, image in (("zero_filled", zero_filled), (label, reconstruction)):
                scores = metrics.volume_metrics(target, image)
                rows.append({"volume": name, "method": method, **scores})
            bar.update()
            if len(examples) < FLAGS.num_figure_volumes:
                middle = len(target) // 2
                examples.append((zero_filled[middle], reconstruction[middle], target[middle]))
    bar.close()
    if not rows:
        raise UserError(f"--val_split={FLAGS.val_split}: no slices to evaluate")
    summary = metrics.summarize(rows)

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["volume", "method", *metrics.NAMES])
    writer.writeheader()
    writer.writerows(rows)
    fileio.write_text(os.path.join(output_dir, "metrics.csv"), buffer.getvalue())
    fileio.write_json(
        os.path.join(output_dir, "metrics.json"),
        {
            "checkpoint": checkpoint,
            "data_dir": FLAGS.data_dir,
            "split": FLAGS.val_split,
            "mask": FLAGS.mask_type,
            "center_fractions": FLAGS.center_fractions,
            "accelerations": FLAGS.accelerations,
            "volumes": rows,
            "summary": summary,
        },
    )
    grid = visualize.comparison_grid(*(np.stack(column) for column in zip(*examples)))
    visualize.write_png(os.path.join(output_dir, "examples.png"), grid)
    return rows, summary, checkpoint


@cli.user_errors_to_exit
def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
    config.check()
    if FLAGS.num_figure_volumes < 1:
        raise UserError(f"--num_figure_volumes={FLAGS.num_figure_volumes}: must be >= 1")
    runtime.configure()
    output_dir = FLAGS.output_dir or os.path.join(FLAGS.model_dir, "eval")
    fileio.check_directory_path(output_dir, "--output_dir")
    rows, summary, checkpoint = evaluate(FLAGS.model_dir, FLAGS.checkpoint, output_dir)
    print(f"{checkpoint} on {FLAGS.val_split} (fastMRI metrics per volume, mean +/- std)")
    print(metrics.table(summary, len(rows) // 2))
    print(f"per-volume results and examples.png in {output_dir}")


if __name__ == "__main__":
    cli.run(main)
