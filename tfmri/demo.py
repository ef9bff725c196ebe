"""The main job, end to end on synthetic fastMRI data.

  python -m tfmri.demo --workdir=runs/demo

1. writes synthetic single-coil knee volumes in the fastMRI layout,
2. converts them to TFRecords,
3. trains pix2pix with ``configs/demo.cfg`` and evaluates it,
4. trains the L1 U-Net baseline with ``configs/demo_unet.cfg`` and evaluates it,
5. with ``--with_4x``, also trains both at 4x (``configs/demo_4x.cfg``,
   ``configs/demo_unet_4x.cfg``); with ``--data_consistency``, every run is trained
   with k-space data consistency, into ``<workdir>/<run>_dc``,
6. writes the comparison report (``tfmri.report``, ``configs/report_demo.cfg``):
   zero-filled, CS-TV, U-Net and pix2pix side by side, at 8x (and 4x), in
   ``<workdir>/report`` (``report_dc``), and prints its tables.

Steps 3 to 6 run the same commands a user runs (printed as they start), with
``--data_dir``, ``--model_dir`` and ``--report_dir`` pointed into ``--workdir``. Every
step keeps what an earlier run finished, so rerunning is cheap and an interrupted run
resumes.
"""

import os
import subprocess
import sys

from absl import flags

from tfmri import cli

cli.quiet_tensorflow()

from tfmri.data import convert, synthetic  # noqa: E402
from tfmri.errors import UserError  # noqa: E402
from tfmri.progress import ProgressBar  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/demo", "Where the synthetic data, TFRecords and runs go.")
flags.DEFINE_integer("num_volumes", 10, "Synthetic volumes to generate.", lower_bound=3)
flags.DEFINE_integer("num_slices", 12, "Slices per synthetic volume.", lower_bound=1)
flags.DEFINE_integer("data_seed", 0, "Seed of the synthetic data.")
flags.DEFINE_bool("with_4x", False, "Also train at 4x and report 4x next to 8x.")
flags.DEFINE_bool(
    "data_consistency",
    False,
    "Train every run with --data_consistency, in <workdir>/<run>_dc (the learned methods "
    "then keep the measured k-space, as CS-TV does).",
)

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
RUNS_8X = (("pix2pix", "demo.cfg"), ("unet", "demo_unet.cfg"))
RUNS_4X = (("pix2pix_4x", "demo_4x.cfg"), ("unet_4x", "demo_unet_4x.cfg"))


def _step(message):
    print(f"== {message}", flush=True)


def _run(module, flagfile, overrides):
    command = [sys.executable, "-m", module, f"--flagfile={flagfile}", *overrides]
    shown = " ".join(["python", *command[1:]])
    _step(shown)
    result = subprocess.run(command)
    if result.returncode != 0:
        raise UserError(f"{module} failed (exit {result.returncode}); rerun the demo to resume")


@cli.user_errors_to_exit
def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
    raw_dir = os.path.join(FLAGS.workdir, "fastmri")
    records_dir = os.path.join(FLAGS.workdir, "tfrecords")

    _step(f"synthetic fastMRI volumes -> {raw_dir}")
    spec = synthetic.SyntheticSpec(FLAGS.num_volumes, FLAGS.num_slices, 1, FLAGS.data_seed)
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

    suffix = "_dc" if FLAGS.data_consistency else ""
    runs = [(name + suffix, cfg) for name, cfg in RUNS_8X + (RUNS_4X if FLAGS.with_4x else ())]
    for index, (name, config_file) in enumerate(runs):
        model_dir = os.path.join(FLAGS.workdir, name)
        overrides = [f"--data_dir={records_dir}", f"--model_dir={model_dir}"]
        overrides += ["--data_consistency"] if FLAGS.data_consistency else []
        flagfile = os.path.join(CONFIGS, config_file)
        _run("tfmri.train", flagfile, overrides)
        if index < len(RUNS_8X):
            _run("tfmri.evaluate", flagfile, overrides)

    if FLAGS.with_4x:
        settings = ["--center_fractions=0.08,0.04", "--accelerations=4,8"]
    else:
        settings = ["--center_fractions=0.04", "--accelerations=8"]
    checkpoints = ",".join(os.path.join(FLAGS.workdir, name) for name, _ in runs)
    overrides = [
        f"--data_dir={records_dir}",
        f"--checkpoints={checkpoints}",
        f"--report_dir={os.path.join(FLAGS.workdir, 'report' + suffix)}",
        *settings,
    ]
    _run("tfmri.report", os.path.join(CONFIGS, "report_demo.cfg"), overrides)


if __name__ == "__main__":
    cli.run(main)
