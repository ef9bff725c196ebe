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

from tfmri import checkpoints, fileio, metrics, run_config, runtime, visualize, volumes  # noqa: E402
from tfmri.data import pipeline  # noqa: E402
from tfmri.errors import UserError  # noqa: E402
from tfmri.flagdefs import common, recipe  # noqa: E402, F401 - common: --checkpoint, --output_dir
from tfmri.progress import ProgressBar  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_figure_volumes", 4, "Volumes shown in examples.png.")


def evaluate(run: run_config.RunConfig, checkpoint, output_dir, num_figure_volumes=4):
    """Evaluates ``run``'s checkpoint (default: its newest) on ``run.data.val_split``
    with ``run.mask``; writes the results; returns (rows, summary, checkpoint path)."""
    data = run.data
    _, entry, _ = pipeline.split_info(data.data_dir, data.val_split)  # before any work
    model, checkpoint = checkpoints.load_model(run.runtime.model_dir, checkpoint)
    options = pipeline.PipelineOptions(
        run.mask,
        batch_size=data.batch_size,
        crop_size=data.crop_size,
        data_consistency=model.config.data_consistency,
    )
    dataset = pipeline.make_dataset(data.data_dir, data.val_split, options, training=False)
    # The method is what the checkpoint is, whatever --model says.
    label = "unet" if model.discriminator is None else "pix2pix"
    rows, examples = [], []
    bar = ProgressBar(entry.statistics.num_volumes, "volumes")
    reconstructed = volumes.reconstruct_volumes(volumes.model_predictor(model), dataset)
    with pipeline.naming_damaged_records(data.data_dir, data.val_split):
        for name, zero_filled, reconstruction, target in reconstructed:
            for method, image in (("zero_filled", zero_filled), (label, reconstruction)):
                scores = metrics.volume_metrics(target, image)
                rows.append({"volume": name, "method": method, **scores})
            bar.update()
            if len(examples) < num_figure_volumes:
                middle = len(target) // 2
                examples.append((zero_filled[middle], reconstruction[middle], target[middle]))
    bar.close()
    if not rows:
        raise UserError(f"--val_split={data.val_split}: no slices to evaluate")
    summary = metrics.summarize(rows)
    _write_results(run, checkpoint, rows, summary, examples, output_dir)
    return rows, summary, checkpoint


def _write_results(run, checkpoint, rows, summary, examples, output_dir):
    """metrics.csv, metrics.json and examples.png in ``output_dir``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["volume", "method", *metrics.NAMES])
    writer.writeheader()
    writer.writerows(rows)
    fileio.write_text(os.path.join(output_dir, "metrics.csv"), buffer.getvalue())
    fileio.write_json(
        os.path.join(output_dir, "metrics.json"),
        {
            "checkpoint": checkpoint,
            "data_dir": run.data.data_dir,
            "split": run.data.val_split,
            "mask": run.mask.mask_type,
            "center_fractions": [f"{value:g}" for value in run.mask.center_fractions],
            "accelerations": [str(value) for value in run.mask.accelerations],
            "volumes": rows,
            "summary": summary,
        },
    )
    grid = visualize.comparison_grid(*(np.stack(column) for column in zip(*examples)))
    visualize.write_png(os.path.join(output_dir, "examples.png"), grid)


@cli.user_errors_to_exit
def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
    run = recipe.run_config_of(FLAGS)
    run.data.check_exists()
    if FLAGS.num_figure_volumes < 1:
        raise UserError(f"--num_figure_volumes={FLAGS.num_figure_volumes}: must be >= 1")
    runtime.configure()
    output_dir = FLAGS.output_dir or os.path.join(run.runtime.model_dir, "eval")
    fileio.check_directory_path(output_dir, "--output_dir")
    rows, summary, checkpoint = evaluate(
        run, FLAGS.checkpoint, output_dir, FLAGS.num_figure_volumes
    )
    print(f"{checkpoint} on {run.data.val_split} (fastMRI metrics per volume, mean +/- std)")
    print(metrics.table(summary, len(rows) // 2))
    print(f"per-volume results and examples.png in {output_dir}")


if __name__ == "__main__":
    cli.run(main)
