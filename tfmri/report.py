"""The comparison report: zero-filled, CS-TV and trained models, at each acceleration.

  python -m tfmri.report --flagfile=configs/report_demo.cfg
  python -m tfmri.report --flagfile=configs/demo.cfg --center_fractions=0.08,0.04 \\
      --accelerations=4,8 --methods=zero_filled,cs_tv,unet,pix2pix \\
      --checkpoints=runs/demo/unet,runs/demo/pix2pix,runs/demo/unet_4x,runs/demo/pix2pix_4x \\
      --report_dir=runs/demo/report

Each (centre fraction, acceleration) pair of ``--center_fractions`` / ``--accelerations``
is one setting: the validation split is undersampled with the fixed per-volume masks of
that setting only (the masks ``tfmri.evaluate`` uses), and every method reconstructs
the same slices from them. A trained method's checkpoint is evaluated at the
acceleration it was trained at (read from its run's ``run_config.json``); its method is
what its ``model.json`` says (``unet`` without a discriminator, else ``pix2pix``).

Writes to ``--report_dir``: ``report.md`` (NMSE, PSNR, SSIM per volume, mean and
standard deviation, the worst volume's figure and the name of the volume with the lowest
SSIM, and seconds per slice, per setting and method), ``report.json``
(the same, per-volume rows included), ``examples_<A>x.png`` (the middle slice of the
first volumes by every method, with 5 x error maps) and ``training_curves.png``
(``D_real``, ``D_fake``, ``G_GAN``, ``G_L1`` and the validation metrics of each run, read
from its TensorBoard event files).

Seconds per slice are the time spent in the method per slice in steady state (the
first batch, which traces and compiles, is run once more untimed first); the input
pipeline (reading, FFT, zero-filled image) is shared by all methods and not counted.
"""

from absl import flags

from tfmri import cli

cli.quiet_tensorflow()

from tfmri import runtime  # noqa: E402
from tfmri.baselines import cs_tv  # noqa: E402
from tfmri.errors import UserError  # noqa: E402
from tfmri.evaluation import metrics, report  # noqa: E402
from tfmri.flagdefs import recipe  # noqa: E402, F401 - the flags of the flagfiles it reads

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "methods",
    list(report.DEFAULT_METHODS),
    f"Methods to compare, of {', '.join(report.METHODS)} (bart: fastMRI's classical baseline, "
    "BART's ecalib + pics, needs --bart and the HDF5 files the records came from; cascade: "
    "the cascade generator "
    "trained with L1 alone, pix2pix_cascade: with the discriminator; cs_cascade, "
    "pix2pix_cs_cascade: the cascade started from CS-TV).",
)
flags.DEFINE_list(
    "checkpoints",
    [],
    "Training runs (--model_dir of tfmri.train, newest checkpoint) or ckpt-N prefixes of the "
    "learned methods, one per method and acceleration.",
)
flags.DEFINE_string(
    "cs_lambda",
    cs_tv.AUTO,
    "CS-TV regularisation weight (lambda): a number, or 'auto' to choose it at each "
    "acceleration on the middle slices of a few volumes of --cs_tune_split (best SSIM of "
    f"the lambdas within {cs_tv.NMSE_SLACK - 1:.0%} of the best NMSE).",
)
flags.DEFINE_integer("cs_iterations", cs_tv.DEFAULT_ITERATIONS, "CS-TV iterations.")
flags.DEFINE_enum(
    "cs_maps",
    cs_tv.DEFAULT_MAPS,
    list(cs_tv.MAPS),
    "CS-TV's multi-coil sensitivity maps, from the calibration region: espirit (ESPIRiT's "
    "inside the object, the low-resolution maps outside) or rss (the low-resolution coil "
    "images over their root sum of squares).",
)
flags.DEFINE_string(
    "cs_tune_split",
    None,
    "Split of --data_dir on which --cs_lambda=auto chooses lambda (default: --train_split); "
    "never the evaluated --val_split.",
)
flags.DEFINE_string(
    "check_data_dir",
    None,
    "Converted TFRecords of a check set (the real-anatomy set of python -m tfmri.real_anatomy): "
    "every method is also scored on its --check_split, in a section of its own.",
)
flags.DEFINE_string("check_split", "singlecoil_val", "Split of --check_data_dir scored.")
flags.DEFINE_string(
    "check_tune_split",
    "singlecoil_tune",
    "Split of --check_data_dir on which --cs_lambda=auto chooses lambda for the check set.",
)
flags.DEFINE_integer(
    "cs_tune_volumes",
    cs_tv.TUNE_VOLUMES,
    "Volumes of --cs_tune_split used by --cs_lambda=auto.",
    lower_bound=1,
)
flags.DEFINE_string("bart", "bart", "BART's executable, for --methods=...,bart.")
flags.DEFINE_string("report_dir", "runs/report", "Where report.md, report.json and figures go.")
flags.DEFINE_integer("num_example_volumes", 2, "Volumes (middle slice) in examples_<A>x.png.")


def report_config(values) -> report.ReportConfig:
    """The report.ReportConfig of the flags of ``values`` (absl FlagValues), checked."""
    unknown = [method for method in values.methods if method not in report.METHODS]
    if unknown or not values.methods:
        raise UserError(
            f"--methods={','.join(values.methods)}: choose from {', '.join(report.METHODS)}"
        )
    if values.batch_size < 1 or values.num_example_volumes < 0:
        raise UserError("--batch_size must be >= 1 and --num_example_volumes >= 0")
    try:
        cs_tv.parse_lambda(values.cs_lambda)
        cs_tv.CsTvOptions(cs_tv.DEFAULT_LAMBDA, values.cs_iterations)
    except ValueError as error:
        raise UserError(f"--cs_lambda/--cs_iterations: {error}") from None
    found = [
        report.Source(
            "main",
            values.data_dir,
            values.val_split,
            values.cs_tune_split or values.train_split,
            ("--data_dir", "--val_split", "--cs_tune_split"),
        )
    ]
    if values.check_data_dir:
        names = ("--check_data_dir", "--check_split", "--check_tune_split")
        found.append(
            report.Source(
                "check", values.check_data_dir, values.check_split, values.check_tune_split, names
            )
        )
    return report.ReportConfig(
        methods=tuple(values.methods),
        checkpoints=tuple(values.checkpoints),
        settings=tuple(
            report.settings(values.mask_type, values.center_fractions, values.accelerations)
        ),
        sources=tuple(found),
        crop_size=values.crop_size,
        batch_size=values.batch_size,
        cs_lambda=values.cs_lambda,
        cs_iterations=values.cs_iterations,
        cs_maps=values.cs_maps,
        cs_tune_volumes=values.cs_tune_volumes,
        num_example_volumes=values.num_example_volumes,
        mask_type=values.mask_type,
        bart=values.bart,
    )


@cli.user_errors_to_exit
def main(argv):
    config = report_config(FLAGS)
    runtime.configure()
    document = report.report(config, FLAGS.report_dir)
    for result in document["results"]:
        data = document["check"] if result["data"] == "check" else document
        name = "check set " if result["data"] == "check" else ""
        print(f"== {name}{result['acceleration']}x, {data['split']} (mean +/- std per volume)")
        print(metrics.table(result["summary"], data["num_volumes"]))
        timing = ", ".join(
            f"{method} {value:.3f}" for method, value in result["seconds_per_slice"].items()
        )
        print(f"seconds per slice: {timing or '-'}")
    print(f"report.md, report.json and figures in {FLAGS.report_dir}")


if __name__ == "__main__":
    cli.run(main)
