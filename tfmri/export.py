"""Exports a trained model as a SavedModel that TensorFlow Serving loads.

  python -m tfmri.export --flagfile=configs/demo.cfg --model_name=demo [--version=N]

Writes ``<export_dir>/<model_name>/<version>/`` (the next free version by default,
never an existing one) with the ``serving_default`` (k-space in) and ``zero_filled``
signatures described in :mod:`tfmri.serving.export`.
"""

import os
import re

from absl import flags

from tfmri import cli

cli.quiet_tensorflow()

from tfmri import runtime  # noqa: E402
from tfmri.errors import UserError  # noqa: E402
from tfmri.flagdefs import common, recipe  # noqa: E402, F401 - define the flags (a run's flags.cfg)
from tfmri.serving import export  # noqa: E402

FLAGS = flags.FLAGS


@cli.user_errors_to_exit
def main(argv):
    if not FLAGS.model_name or not re.fullmatch(r"[A-Za-z0-9_.-]+", FLAGS.model_name):
        raise UserError(f"--model_name={FLAGS.model_name}: give a name of letters, digits, _ . -")
    if FLAGS.version is not None and FLAGS.version < 1:
        raise UserError(f"--version={FLAGS.version}: versions are integers >= 1")
    if not FLAGS.model_dir:
        raise UserError("--model_dir is required: the training run to export")
    # The precision the model was trained in (the flagfile's); inputs and outputs stay
    # float32 whatever it is.
    runtime.configure(precision=FLAGS.precision)
    target, checkpoint = export.export(
        FLAGS.model_dir, FLAGS.checkpoint, FLAGS.export_dir, FLAGS.model_name, FLAGS.version
    )
    print(f"exported {checkpoint} to {target}")
    name, root = FLAGS.model_name, os.path.abspath(os.path.dirname(target))
    print(f"serve it: docker run -p 8500:8500 -p 8501:8501 -v {root}:/models/{name} \\")
    print(f"  -e MODEL_NAME={name} tensorflow/serving")


if __name__ == "__main__":
    cli.run(main)
