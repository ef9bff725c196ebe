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
acceleration it was trained at (read from the ``flags.cfg`` of its run); its method is
what its ``model.json`` says (``unet`` without a discriminator, else ``pix2pix``).

Writes to ``--report_dir``: ``report.md`` (NMSE, PSNR, SSIM per volume, mean and
standard deviation, and seconds per slice, per setting and method), ``report.json``
(the same, per-volume rows included), ``examples_<A>x.png`` (the middle slice of the
first volumes by every method, with 5 x error maps) and ``training_curves.png``
(``D_real``, ``D_fake``, ``G_GAN``, ``G_L1`` and the validation metrics of each run, read
from its TensorBoard event files).

Seconds per slice are the time spent in the method per slice in steady state (the
first batch, which traces and compiles, is run once more untimed first); the input
pipeline (reading, FFT, zero-filled image) is shared by all methods and not counted.
"""

import dataclasses
import glob
import os
import time

from absl import flags

from tfmri import cli

cli.quiet_tensorflow()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfmri import checkpoints, config, fileio, metrics, runtime, volumes  # noqa: E402, F401
from tfmri.baselines import cs_tv  # noqa: E402
from tfmri.data import masks, pipeline  # noqa: E402
from tfmri.errors import UserError  # noqa: E402
from tfmri.progress import ProgressBar  # noqa: E402

FLAGS = flags.FLAGS
METHODS = ("zero_filled", "cs_tv", "unet", "pix2pix")
LEARNED = ("unet", "pix2pix")
TUNE_SLICES = 2  # middle slices per volume on which --cs_lambda=auto scores each lambda
flags.DEFINE_list("methods", list(METHODS), f"Methods to compare, of {', '.join(METHODS)}.")
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
    "the lambdas within 10 % of the best NMSE).",
)
flags.DEFINE_integer("cs_iterations", cs_tv.DEFAULT_ITERATIONS, "CS-TV iterations.")
flags.DEFINE_string(
    "cs_tune_split",
    None,
    "Split of --data_dir on which --cs_lambda=auto chooses lambda (default: --train_split); "
    "never the evaluated --val_split.",
)
flags.DEFINE_string(
    "check_data_dir",
    None,
    "Converted TFRecords of a check set (the real-anatomy set of tools/make_real_anatomy.py): "
    "every method is also scored on its --check_split, in a section of its own.",
)
flags.DEFINE_string("check_split", "singlecoil_val", "Split of --check_data_dir scored.")
flags.DEFINE_string(
    "check_tune_split",
    "singlecoil_tune",
    "Split of --check_data_dir on which --cs_lambda=auto chooses lambda for the check set.",
)
flags.DEFINE_integer(
    "cs_tune_volumes", 4, "Volumes of --cs_tune_split used by --cs_lambda=auto.", lower_bound=1
)
flags.DEFINE_string("report_dir", "runs/report", "Where report.md, report.json and figures go.")
flags.DEFINE_integer("num_example_volumes", 2, "Volumes (middle slice) in examples_<A>x.png.")

CURVES = (
    ("train", "D_real"),
    ("train", "D_fake"),
    ("train", "G_GAN"),
    ("train", "G_L1"),
    ("val", "nmse"),
    ("val", "psnr"),
    ("val", "ssim"),
)


def _read_run_flags(model_dir) -> dict:
    """{name: value} of the ``--name=value`` lines of a run's flags.cfg."""
    path = os.path.join(model_dir, checkpoints.FLAGS_FILE)
    if not os.path.exists(path):
        raise UserError(f"{path}: missing; is {model_dir} the --model_dir of a training run?")
    values = {}
    with open(path) as handle:
        for line in handle:
            if line.startswith("--") and "=" in line:
                name, value = line[2:].rstrip("\n").split("=", 1)
                values[name] = value
    return values


class Run:
    """A trained checkpoint: its method, the mask it was trained with, its model."""

    def __init__(self, path):
        self.path = path
        self.model_dir = path if os.path.isdir(path) else os.path.dirname(path)
        if not os.path.isdir(self.model_dir):
            raise UserError(f"--checkpoints: {path} is neither a run directory nor a ckpt-N")
        run_flags = _read_run_flags(self.model_dir)
        self.config = checkpoints.read_model_config(self.model_dir)
        discriminator = self.config["config"].get("discriminator")
        self.method = "unet" if discriminator in (None, "none") else "pix2pix"
        accelerations = run_flags.get("accelerations", "").split(",")
        if len(accelerations) != 1 or not accelerations[0]:
            raise UserError(
                f"--checkpoints: {path} was trained with --accelerations="
                f"{run_flags.get('accelerations')}; the report compares runs trained at one "
                "acceleration each"
            )
        self.acceleration = int(accelerations[0])
        self.label = f"{self.method} {self.acceleration}x ({self.model_dir})"

    def load(self):
        model, self.checkpoint = checkpoints.load_model(self.model_dir, self.path)
        return model


def settings():
    """[(acceleration, MaskSpec)] of the centre fraction / acceleration pairs."""
    fractions, accelerations = FLAGS.center_fractions, FLAGS.accelerations
    if len(fractions) != len(accelerations):
        raise UserError(
            f"--center_fractions={','.join(fractions)} --accelerations={','.join(accelerations)}: "
            "give one centre fraction per acceleration"
        )
    pairs = []
    for fraction, acceleration in zip(fractions, accelerations):
        try:
            spec = masks.parse_spec(FLAGS.mask_type, [fraction], [acceleration])
        except ValueError as error:
            raise UserError(f"--center_fractions/--accelerations: {error}") from None
        pairs.append((spec.accelerations[0], spec))
    return pairs


@dataclasses.dataclass(frozen=True)
class Source:
    """Data a report scores: the main data, or the check set."""

    label: str  # "main" or "check"
    data_dir: str
    split: str
    tune_split: str
    flags: tuple  # (data dir flag, split flag, tuning split flag): named in errors
    num_volumes: int = 0


def sources():
    """[Source] of the flags: the main data, then the check set if one is given."""
    found = [
        Source(
            "main",
            FLAGS.data_dir,
            FLAGS.val_split,
            FLAGS.cs_tune_split or FLAGS.train_split,
            ("--data_dir", "--val_split", "--cs_tune_split"),
        )
    ]
    if FLAGS.check_data_dir:
        names = ("--check_data_dir", "--check_split", "--check_tune_split")
        found.append(
            Source("check", FLAGS.check_data_dir, FLAGS.check_split, FLAGS.check_tune_split, names)
        )
    return found


def _checked_source(source, cs_auto):
    """The source with its volume count, after checking its directory and splits."""
    data_flag, split_flag, tune_flag = source.flags
    if not source.data_dir or not os.path.isdir(source.data_dir):
        raise UserError(f"{data_flag}={source.data_dir}: no such directory (converted TFRecords)")
    if cs_auto:
        if source.tune_split == source.split:
            raise UserError(
                f"{tune_flag}={source.tune_split}: lambda would be chosen on the slices it is "
                "scored on; give another split (a training split, or scans kept aside for tuning)"
            )
        try:
            pipeline.split_info(source.data_dir, source.tune_split)
        except UserError as error:
            raise UserError(
                f"--cs_lambda=auto tunes on {tune_flag}={source.tune_split}: {error}; give "
                f"{tune_flag}=<a split with targets> or a number, e.g. "
                f"--cs_lambda={cs_tv.DEFAULT_LAMBDA}"
            ) from None
    try:
        _, entry, _ = pipeline.split_info(source.data_dir, source.split)
    except UserError as error:
        raise UserError(f"{split_flag}={source.split}: {error}") from None
    return dataclasses.replace(source, num_volumes=entry.statistics.num_volumes)


def check_flags():
    """Validates the report's flags before any work; returns (settings, runs, [Source])."""
    unknown = [method for method in FLAGS.methods if method not in METHODS]
    if unknown or not FLAGS.methods:
        raise UserError(f"--methods={','.join(FLAGS.methods)}: choose from {', '.join(METHODS)}")
    if FLAGS.batch_size < 1 or FLAGS.num_example_volumes < 0:
        raise UserError("--batch_size must be >= 1 and --num_example_volumes >= 0")
    try:
        regularization = cs_tv.parse_lambda(FLAGS.cs_lambda)
        cs_tv.CsTvOptions(cs_tv.DEFAULT_LAMBDA, FLAGS.cs_iterations)
    except ValueError as error:
        raise UserError(f"--cs_lambda/--cs_iterations: {error}") from None
    cs_auto = regularization == cs_tv.AUTO and "cs_tv" in FLAGS.methods
    checked = [_checked_source(source, cs_auto) for source in sources()]
    pairs = settings()
    runs = [Run(path) for path in FLAGS.checkpoints]
    wanted = {acceleration for acceleration, _ in pairs}
    for run in runs:
        if run.method not in FLAGS.methods:
            raise UserError(
                f"--checkpoints: {run.path} is a {run.method} run, not in --methods="
                f"{','.join(FLAGS.methods)}"
            )
        if run.acceleration not in wanted:
            raise UserError(
                f"--checkpoints: {run.path} was trained at {run.acceleration}x; add it to "
                f"--accelerations (now {','.join(FLAGS.accelerations)}) or leave the run out"
            )
    for method in (m for m in FLAGS.methods if m in LEARNED):
        if not any(run.method == method for run in runs):
            raise UserError(
                f"--methods has {method} but --checkpoints has no {method} run; train one "
                "(tfmri.train) and add its --model_dir, or leave it out of --methods"
            )
    return pairs, runs, checked


def tuning_slices(source, spec):
    """[(measured, mask, target)] of the middle TUNE_SLICES slices of each of the first
    --cs_tune_volumes volumes of the tuning split, masked as evaluation masks them."""
    options = pipeline.PipelineOptions(spec, batch_size=1, crop_size=FLAGS.crop_size, measured=True)
    dataset = pipeline.make_dataset(source.data_dir, source.tune_split, options, training=False)
    volumes = {}
    for inputs, _ in dataset:
        name = inputs["volume"].numpy()[0].decode()
        if name not in volumes and len(volumes) == FLAGS.cs_tune_volumes:
            break
        volumes.setdefault(name, []).append(inputs)
    groups = []
    for slices in volumes.values():
        start = max(len(slices) // 2 - TUNE_SLICES // 2, 0)
        chosen = slices[start : start + TUNE_SLICES]
        groups.append(
            tuple(
                tf.concat([inputs[key] for inputs in chosen], axis=0)
                for key in ("measured", "mask", "target_image")
            )
        )
    return groups


def cs_lambda_for(source, spec):
    """(lambda, {candidate: mean NMSE, SSIM} or None) of one setting: --cs_lambda, or chosen."""
    regularization = cs_tv.parse_lambda(FLAGS.cs_lambda)
    if regularization != cs_tv.AUTO:
        return regularization, None
    best, scores = cs_tv.choose_lambda(
        tuning_slices(source, spec), FLAGS.cs_iterations, FLAGS.crop_size
    )
    return best, scores


def _dataset(source, spec, measured=False, data_consistency=False):
    options = pipeline.PipelineOptions(
        spec,
        batch_size=FLAGS.batch_size,
        crop_size=FLAGS.crop_size,
        data_consistency=data_consistency,
        measured=measured,
    )
    return pipeline.make_dataset(source.data_dir, source.split, options, training=False)


def cs_predictor(options, crop_size):
    """predict(inputs) -> CS-TV reconstructions [B, S, S] from the measured hybrid data."""
    return lambda inputs: cs_tv.reconstruct_hybrid_xla(
        inputs["measured"], inputs["mask"], options, crop_size
    )


def _zero_filled_of(inputs):
    return inputs["zero_filled_image"]


def evaluate_method(name, predict, dataset, rows, examples, bar):
    """Appends the method's per-volume rows (zero-filled's too when ``name`` is the first
    pass, ``zero_filled`` or ``cs_tv``); returns its seconds per slice."""
    timer = volumes.Timer(predict)
    for volume, zero_filled, image, target in volumes.reconstruct_volumes(timer, dataset):
        middle = len(target) // 2
        shown = examples.setdefault(volume, {"target": target[middle]})
        if name in ("zero_filled", "cs_tv"):
            if "zero_filled" in FLAGS.methods:
                rows.append(
                    {"volume": volume, "method": "zero_filled"}
                    | metrics.volume_metrics(target, zero_filled)
                )
            shown["zero_filled"] = zero_filled[middle]
        if name != "zero_filled":
            rows.append({"volume": volume, "method": name} | metrics.volume_metrics(target, image))
            shown[name] = image[middle]
        bar.update()
    return timer.seconds_per_slice if name != "zero_filled" else None


def evaluate_setting(source, acceleration, spec, runs, bar):
    """(rows, {method: seconds per slice}, examples, CS-TV lambda or None, its tuning
    scores or None) of one acceleration."""
    splits = [source.split] + [source.tune_split] * ("cs_tv" in FLAGS.methods)
    with pipeline.naming_damaged_records(source.data_dir, *splits):
        return _evaluate_setting(source, acceleration, spec, runs, bar)


def _evaluate_setting(source, acceleration, spec, runs, bar):
    rows, seconds, examples = [], {}, {}
    regularization, tuning = None, None
    # The first pass gives zero-filled (every method's input) and, if asked, CS-TV.
    if "cs_tv" in FLAGS.methods:
        regularization, tuning = cs_lambda_for(source, spec)
        options = cs_tv.CsTvOptions(regularization, FLAGS.cs_iterations)
        predict = cs_predictor(options, FLAGS.crop_size)
        seconds["cs_tv"] = evaluate_method(
            "cs_tv", predict, _dataset(source, spec, measured=True), rows, examples, bar
        )
    else:
        evaluate_method("zero_filled", _zero_filled_of, _dataset(source, spec), rows, examples, bar)
    for run in (r for r in runs if r.acceleration == acceleration):
        model = run.load()
        dataset = _dataset(source, spec, data_consistency=model.config.data_consistency)
        seconds[run.method] = evaluate_method(
            run.method, volumes.model_predictor(model), dataset, rows, examples, bar
        )
    order = {method: index for index, method in enumerate(METHODS)}
    rows.sort(key=lambda row: order[row["method"]])
    return rows, seconds, examples, regularization, tuning


def _methods_present(summary):
    return [method for method in METHODS if method in summary]


def _lambda_source(source):
    if cs_tv.parse_lambda(FLAGS.cs_lambda) != cs_tv.AUTO:
        return f"{float(FLAGS.cs_lambda):g}"
    return (
        f"chosen at each acceleration (best SSIM within 10 % of the best NMSE) on the "
        f"middle {TUNE_SLICES} slices of up to {FLAGS.cs_tune_volumes} volumes of "
        f"`{source.tune_split}`"
    )


def _data_line(source):
    return (
        f"Data: `{source.data_dir}`, split `{source.split}` ({source.num_volumes} volumes), "
        f"{FLAGS.mask_type} masks fixed per volume. CS-TV lambda {_lambda_source(source)}."
    )


def markdown(results, runs, checked) -> str:
    """report.md: one table per acceleration, like the seed project's; the check set's
    tables in a section of their own."""
    main, *check = checked
    lines = [
        "# tfmri comparison report",
        "",
        _data_line(main),
        "fastMRI metrics per volume (NMSE, PSNR, SSIM), mean +/- standard deviation over the "
        f"volumes. CS-TV: {FLAGS.cs_iterations} iterations. Seconds per "
        "slice: time in the method in steady state (after a warm-up call), on "
        f"{os.cpu_count()} CPU cores; zero-filled is the shared input.",
        "",
    ]
    for result in results:
        summary = result["summary"]
        if result["data"] == "check" and result is next(r for r in results if r["data"] == "check"):
            lines += [
                "# Check set",
                "",
                "The same methods and checkpoints on data none of them was trained or tuned "
                "on (the real-anatomy set: `tools/make_real_anatomy.py`).",
                _data_line(check[0]),
                "",
            ]
        prefix = "check set, " if result["data"] == "check" else ""
        lines += [
            f"## {prefix}{result['acceleration']}x (centre fraction {result['center_fraction']:g})",
            "",
            "| method | NMSE | PSNR | SSIM | s / slice |",
            "|---|---|---|---|---|",
        ]
        for method in _methods_present(summary):
            cells = [
                f"{summary[method][m]['mean']:.4f} +/- {summary[method][m]['std']:.4f}"
                for m in metrics.NAMES
            ]
            seconds = result["seconds_per_slice"].get(method)
            cells.append("-" if seconds is None else f"{seconds:.3f}")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        for method in (m for m in METHODS if m in FLAGS.methods and m not in summary):
            lines.append(f"| {method} | no run trained at {result['acceleration']}x | | | |")
        tuning = result["cs_tv"]["tuning"]
        if tuning:
            scores = ", ".join(
                f"{float(k):g}: {v['nmse']:.4f}/{v['ssim']:.4f}" for k, v in tuning.items()
            )
            lines += [
                "",
                f"CS-TV lambda {result['cs_tv']['lambda']:g}: the best SSIM of the lambdas "
                "within 10 % of the best NMSE on the tuning slices; (lambda: NMSE/SSIM) "
                f"{scores}.",
                "",
            ]
        lines += [f"![examples]({os.path.basename(result['figure'])})", ""]
    if runs:
        lines += ["## Checkpoints", ""]
        lines += [f"- {run.method} at {run.acceleration}x: `{run.checkpoint}`" for run in runs]
        lines += ["", "![training curves](training_curves.png)", ""]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def _save(figure, path):
    with fileio.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=80)


def examples_figure(examples, acceleration, path):
    """Rows of slices, columns target and every method, each with a 5 x error map below."""
    pyplot = _pyplot()
    shown = list(examples)[: max(FLAGS.num_example_volumes, 1)]
    columns = ["target"] + [m for m in METHODS if m in examples[shown[0]]]
    figure, axes = pyplot.subplots(
        2 * len(shown),
        len(columns),
        figsize=(2.2 * len(columns), 4.4 * len(shown)),
        squeeze=False,
    )
    for row, volume in enumerate(shown):
        images = examples[volume]
        target = images["target"]
        scale = float(target.max()) or 1.0
        for column, name in enumerate(columns):
            image_axis, error_axis = axes[2 * row, column], axes[2 * row + 1, column]
            image_axis.imshow(images[name], cmap="gray", vmin=0, vmax=scale)
            error_axis.imshow(np.abs(images[name] - target), cmap="gray", vmin=0, vmax=scale / 5)
            image_axis.set_title(name if row == 0 else "", fontsize=9)
            if column == 0:
                image_axis.set_ylabel(volume, fontsize=8)
                error_axis.set_ylabel("5 x |error|", fontsize=8)
            for axis in (image_axis, error_axis):
                axis.set_xticks([])
                axis.set_yticks([])
    figure.suptitle(f"{acceleration}x, middle slices", fontsize=10)
    figure.tight_layout()
    _save(figure, path)
    pyplot.close(figure)


def read_curves(model_dir) -> dict:
    """{(writer, tag): (epochs, values)} of a run's per-epoch TensorBoard scalars."""
    curves = {}
    for writer, tag in CURVES:
        points = {}
        for path in sorted(glob.glob(os.path.join(model_dir, "logs", writer, "events.out.*"))):
            for record in tf.data.TFRecordDataset(path):
                event = tf.compat.v1.Event.FromString(record.numpy())
                for value in event.summary.value:
                    if value.tag == f"epoch/{tag}":
                        points[event.step] = float(tf.make_ndarray(value.tensor))
        if points:
            steps = sorted(points)
            curves[(writer, tag)] = (steps, [points[step] for step in steps])
    return curves


def curves_figure(runs, path):
    """One panel per curve of CURVES, one line per run; empty panels say so."""
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(2, 4, figsize=(16, 7))
    axes = axes.ravel()
    curves = {run.label: read_curves(run.model_dir) for run in runs}
    colours = {label: f"C{index}" for index, label in enumerate(curves)}
    for axis, (writer, tag) in zip(axes, CURVES):
        for label, run_curves in curves.items():
            if (writer, tag) in run_curves:
                axis.plot(*run_curves[(writer, tag)], marker=".", color=colours[label])
        axis.set_title(f"{tag} ({'validation' if writer == 'val' else 'training'})")
        axis.set_xlabel("epoch")
        if not axis.lines:
            axis.text(0.5, 0.5, "not logged", ha="center", transform=axis.transAxes)
    axes[-1].axis("off")
    for label, colour in colours.items():
        axes[-1].plot([], [], marker=".", color=colour, label=label)
    axes[-1].legend(loc="center", fontsize=9, title="runs")
    figure.tight_layout()
    _save(figure, path)
    pyplot.close(figure)
    return {label: {f"{w}/{t}": v for (w, t), v in c.items()} for label, c in curves.items()}


def report(output_dir):
    """Evaluates everything the flags ask for; writes the report; returns its JSON."""
    pairs, runs, checked = check_flags()
    passes = sum(1 + sum(run.acceleration == a for run in runs) for a, _ in pairs)
    bar = ProgressBar(passes * sum(source.num_volumes for source in checked), "volume passes")
    results = []
    for source, (acceleration, spec) in ((s, p) for s in checked for p in pairs):
        start = time.perf_counter()
        rows, seconds, examples, regularization, tuning = evaluate_setting(
            source, acceleration, spec, runs, bar
        )
        prefix = "check_" if source.label == "check" else ""
        figure = os.path.join(output_dir, f"{prefix}examples_{acceleration}x.png")
        if FLAGS.num_example_volumes:
            examples_figure(examples, acceleration, figure)
        results.append(
            {
                "data": source.label,
                "acceleration": acceleration,
                "center_fraction": spec.center_fractions[0],
                "mask_type": spec.mask_type,
                "summary": metrics.summarize(rows),
                "seconds_per_slice": seconds,
                "cs_tv": {
                    "lambda": regularization,
                    "tuning": None if tuning is None else {str(k): v for k, v in tuning.items()},
                },
                "wall_seconds": time.perf_counter() - start,
                "figure": figure,
                "volumes": rows,
            }
        )
    bar.close()
    curves = curves_figure(runs, os.path.join(output_dir, "training_curves.png")) if runs else {}
    auto = cs_tv.parse_lambda(FLAGS.cs_lambda) == cs_tv.AUTO
    main = checked[0]
    document = {
        "data_dir": main.data_dir,
        "split": main.split,
        "num_volumes": main.num_volumes,
        "check": None
        if len(checked) == 1
        else {
            "data_dir": checked[1].data_dir,
            "split": checked[1].split,
            "num_volumes": checked[1].num_volumes,
            "tune_split": checked[1].tune_split if auto else None,
        },
        "methods": [m for m in METHODS if m in FLAGS.methods],
        "cs_tv": {
            "lambda": FLAGS.cs_lambda,
            "iterations": FLAGS.cs_iterations,
            "tune_split": main.tune_split if auto else None,
        },
        "checkpoints": [
            {"method": r.method, "acceleration": r.acceleration, "checkpoint": r.checkpoint}
            for r in runs
        ],
        "results": results,
        "training_curves": curves,
    }
    fileio.write_json(os.path.join(output_dir, "report.json"), document)
    fileio.write_text(os.path.join(output_dir, "report.md"), markdown(results, runs, checked))
    return document


@cli.user_errors_to_exit
def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
    runtime.configure()
    document = report(FLAGS.report_dir)
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
