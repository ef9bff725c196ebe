"""Trains pix2pix (or the L1 U-Net baseline) on converted fastMRI data.

  python -m tfmri.train --flagfile=configs/demo.cfg
  tensorboard --logdir=<model_dir>/logs

The flagfile is the whole recipe (``tfmri.flagdefs.recipe``); ``main`` builds the
typed :class:`tfmri.run_config.RunConfig` of it and runs
:func:`tfmri.training.train.train`. The run saves the recipe in ``--model_dir``
(``run_config.json``, and ``flags.cfg`` to pass back as ``--flagfile``). Rerunning the
same command resumes from the newest checkpoint instead of starting over; a NaN or
infinite loss stops the run with a non-zero exit and keeps the last good checkpoint.
"""

from absl import flags

from tfmri import cli

cli.quiet_tensorflow()

from tfmri.flagdefs import recipe  # noqa: E402
from tfmri.training import train  # noqa: E402

FLAGS = flags.FLAGS


@cli.user_errors_to_exit
def main(argv):
    run = recipe.run_config_of(FLAGS)
    final = train.train(run)
    if final:
        print("final epoch: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(final.items())))
    print(
        f"checkpoints and logs in {run.runtime.model_dir}; evaluate with python -m tfmri.evaluate"
    )


if __name__ == "__main__":
    cli.run(main)
