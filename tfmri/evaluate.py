"""Evaluates a trained model with the fastMRI metrics, per volume, against zero-filled.

  python -m tfmri.evaluate --flagfile=configs/demo.cfg [--checkpoint=<model_dir>/ckpt-N]

Reconstructs every slice of ``--val_split`` with the fixed per-volume masks, scores
NMSE, PSNR and SSIM per volume for the model and for the zero-filled input, and writes
``metrics.csv``, ``metrics.json`` and ``examples.png`` to ``--output_dir`` (default
``<model_dir>/eval``); see :mod:`tfmri.evaluation.evaluate`. Prints the table.
"""

import os

from absl import flags

from tfmri import cli

cli.quiet_tensorflow()

from tfmri import fileio, runtime  # noqa: E402
from tfmri.errors import UserError  # noqa: E402
from tfmri.evaluation import evaluate, metrics  # noqa: E402
from tfmri.flagdefs import common, recipe  # noqa: E402, F401 - common: --checkpoint, --output_dir

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_figure_volumes", 4, "Volumes shown in examples.png.")


@cli.user_errors_to_exit
def main(argv):
    run = recipe.run_config_of(FLAGS)
    run.data.check_exists()
    if FLAGS.num_figure_volumes < 1:
        raise UserError(f"--num_figure_volumes={FLAGS.num_figure_volumes}: must be >= 1")
    runtime.configure()
    output_dir = FLAGS.output_dir or os.path.join(run.runtime.model_dir, "eval")
    fileio.check_directory_path(output_dir, "--output_dir")
    rows, summary, checkpoint = evaluate.evaluate(
        run, FLAGS.checkpoint, output_dir, FLAGS.num_figure_volumes
    )
    print(f"{checkpoint} on {run.data.val_split} (fastMRI metrics per volume, mean +/- std)")
    print(metrics.table(summary, len(rows) // 2))
    print(f"per-volume results and examples.png in {output_dir}")


if __name__ == "__main__":
    cli.run(main)
