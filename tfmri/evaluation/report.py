"""The comparison report of ``python -m tfmri.report`` (its usage and the files it
writes are in that module's docstring): zero-filled, CS-TV and trained models, at each
acceleration, as :func:`report` of a :class:`ReportConfig`.

Each (centre fraction, acceleration) pair is one setting: the split is undersampled
with the fixed per-volume masks of that setting only (those ``tfmri.evaluate`` uses),
and every method reconstructs the same slices from them. A trained method's
checkpoint is evaluated at the acceleration it was trained at (its run's
``run_config.json``); its method is its ``ModelConfig.method``: ``unet``, ``cascade`` or
``cs_cascade`` (the cascade started from CS-TV) trained with L1 alone, ``pix2pix``,
``pix2pix_cascade`` or ``pix2pix_cs_cascade`` with the discriminator.
Seconds per slice are the method's time in steady state (the first batch, which traces
and compiles, runs once more untimed first); the shared input pipeline is not counted.
"""

import dataclasses
import glob
import math
import os
import time

import numpy as np
import tensorflow as tf

from tfmri import fileio, run_config
from tfmri.baselines import bart, cs_tv
from tfmri.data import manifest, masks, pipeline
from tfmri.errors import UserError
from tfmri.evaluation import metrics, volumes
from tfmri.progress import ProgressBar
from tfmri.training import checkpoints

METHODS = (
    "zero_filled",
    "cs_tv",
    "bart",
    "unet",
    "pix2pix",
    "cascade",
    "pix2pix_cascade",
    "cs_cascade",
    "pix2pix_cs_cascade",
)
LEARNED = METHODS[3:]
# BART is asked for by name (a Debian package, about 7 s a slice on 2 cores); so are the
# cascade generator's rows.
DEFAULT_METHODS = ("zero_filled", "cs_tv", "unet", "pix2pix")
CURVES = (
    ("train", "D_real"),
    ("train", "D_fake"),
    ("train", "G_GAN"),
    ("train", "G_L1"),
    ("val", "nmse"),
    ("val", "psnr"),
    ("val", "ssim"),
)


class Run:
    """A trained checkpoint: its method, the mask it was trained with, its model."""

    def __init__(self, path):
        self.path = path
        self.model_dir = path if os.path.isdir(path) else os.path.dirname(path)
        if not os.path.isdir(self.model_dir):
            raise UserError(f"--checkpoints: {path} is neither a run directory nor a ckpt-N")
        saved = run_config.RunConfig.load(self.model_dir)
        if saved is None:
            raise UserError(
                f"{os.path.join(self.model_dir, run_config.RUN_CONFIG_FILE)}: missing; is "
                f"{self.model_dir} the --model_dir of a training run?"
            )
        self.method = saved.model.method
        accelerations = saved.mask.accelerations
        if len(accelerations) != 1:
            raise UserError(
                f"--checkpoints: {path} was trained with --accelerations="
                f"{','.join(map(str, accelerations))}; the report compares runs trained at one "
                "acceleration each"
            )
        self.acceleration = accelerations[0]
        self.data_consistency = saved.model.data_consistency
        # Its rows' name in the report: the method, "+dc" added when another run of the
        # same method and acceleration differs from it by data consistency (check()).
        self.key = self.method
        self.label = f"{self.method} {self.acceleration}x ({self.model_dir})"

    def load(self):
        model, self.checkpoint = checkpoints.load_model(self.model_dir, self.path)
        return model


def settings(mask_type, fractions, accelerations):
    """[(acceleration, MaskSpec)] of the centre fraction / acceleration pairs (as typed)."""
    if len(fractions) != len(accelerations):
        raise UserError(
            f"--center_fractions={','.join(fractions)} --accelerations={','.join(accelerations)}: "
            "give one centre fraction per acceleration"
        )
    pairs = []
    for fraction, acceleration in zip(fractions, accelerations):
        try:
            spec = masks.parse_spec(mask_type, [fraction], [acceleration])
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


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """What a report compares, on which data, and how."""

    methods: tuple
    checkpoints: tuple  # run directories or ckpt-N prefixes of the learned methods
    settings: tuple  # ((acceleration, MaskSpec), ...)
    sources: tuple  # (Source, ...): the main data, then the check set if any
    crop_size: int
    batch_size: int
    cs_lambda: str  # a number, or "auto"
    cs_iterations: int
    cs_tune_volumes: int
    num_example_volumes: int
    mask_type: str
    bart: str = "bart"  # BART's executable
    cs_maps: str = cs_tv.DEFAULT_MAPS  # CS-TV's multi-coil maps, of cs_tv.MAPS

    @property
    def cs_auto(self) -> bool:
        return cs_tv.parse_lambda(self.cs_lambda) == cs_tv.AUTO


def raw_split_dir(source):
    """The HDF5 folder of ``source``'s split: where its records were converted from."""
    input_dir = manifest.input_dir_of(source.data_dir)
    return None if input_dir is None else os.path.join(input_dir, source.split)


def _checked_source(source, cs_auto, with_bart=False):
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
    raw = raw_split_dir(source) if with_bart else None
    if with_bart and (raw is None or not os.path.isdir(raw)):
        raise UserError(
            f"--methods has bart, which reads the HDF5 files {data_flag}={source.data_dir} "
            f"was converted from, but {raw or 'its manifest names none'} is not there; restore "
            "them, or leave bart out of --methods"
        )
    return dataclasses.replace(source, num_volumes=entry.statistics.num_volumes)


def _name_rows(runs):
    """Sets each run's ``key``: two runs of one method and acceleration are compared
    only when one has data consistency and the other not (``pix2pix+dc`` next to
    ``pix2pix``); anything else would mix their rows."""
    groups = {}
    for run in runs:
        groups.setdefault((run.method, run.acceleration), []).append(run)
    for (method, acceleration), group in groups.items():
        if len(group) == 1:
            continue
        if len(group) > 2 or group[0].data_consistency == group[1].data_consistency:
            paths = ", ".join(run.path for run in group)
            raise UserError(
                f"--checkpoints: {paths} are all {method} runs at {acceleration}x; give one, "
                "or one with --data_consistency and one without"
            )
        for run in group:
            run.key = f"{method}+dc" if run.data_consistency else method


def method_order(key):
    """Sort key of a row name: METHODS' order, a ``+dc`` variant after its method."""
    base, _, variant = key.partition("+")
    return METHODS.index(base), variant


def check(config: ReportConfig):
    """Checks the data and runs before any work; returns (runs, [Source] with counts)."""
    cs_auto = config.cs_auto and "cs_tv" in config.methods
    with_bart = "bart" in config.methods
    if with_bart and bart.find(config.bart) is None:
        raise UserError(
            f"--methods has bart, but --bart={config.bart} is not an executable here; "
            f"{bart.INSTALL}, or leave bart out of --methods"
        )
    checked = [_checked_source(source, cs_auto, with_bart) for source in config.sources]
    runs = [Run(path) for path in config.checkpoints]
    wanted = {acceleration for acceleration, _ in config.settings}
    for run in runs:
        if run.method not in config.methods:
            raise UserError(
                f"--checkpoints: {run.path} is a {run.method} run, not in --methods="
                f"{','.join(config.methods)}"
            )
        if run.acceleration not in wanted:
            now = ",".join(str(acceleration) for acceleration in sorted(wanted))
            raise UserError(
                f"--checkpoints: {run.path} was trained at {run.acceleration}x; add it to "
                f"--accelerations (now {now}) or leave the run out"
            )
    _name_rows(runs)
    for method in (m for m in config.methods if m in LEARNED):
        if not any(run.method == method for run in runs):
            raise UserError(
                f"--methods has {method} but --checkpoints has no {method} run; train one "
                "(tfmri.train) and add its --model_dir, or leave it out of --methods"
            )
    return runs, checked


def cs_lambda_for(config, source, spec):
    """(lambda, {candidate: mean NMSE, SSIM} or None) of one setting: --cs_lambda, or chosen."""
    regularization = cs_tv.parse_lambda(config.cs_lambda)
    if regularization != cs_tv.AUTO:
        return regularization, None
    return cs_tv.choose_on_split(
        source.data_dir,
        source.tune_split,
        spec,
        config.cs_tune_volumes,
        config.cs_iterations,
        config.cs_maps,
    )


def _dataset(config, source, spec, measured=False, data_consistency=False, network=True):
    """The evaluation dataset, scored at each file's recon crop as fastMRI scores;
    ``network`` False: zero-filled and CS-TV only, read at any recon size."""
    options = pipeline.PipelineOptions(
        spec,
        batch_size=config.batch_size,
        crop_size=config.crop_size,
        data_consistency=data_consistency,
        measured=measured,
        recon_crop=True,
        network_input=network,
    )
    return pipeline.make_dataset(source.data_dir, source.split, options, training=False)


def cs_predictor(options):
    """predict(inputs) -> CS-TV reconstructions [B, h, w] at each file's recon crop, from
    the measured hybrid data of a scoring-only dataset (its rows are the crop's)."""

    def predict(inputs):
        images = cs_tv.reconstruct_hybrid_xla(
            inputs["measured"], inputs["mask"], options, int(inputs["zero_filled_image"].shape[-1])
        )
        return images * tf.cast(inputs["scale"], images.dtype)[:, None, None]

    return predict


def _zero_filled_of(inputs):
    return inputs["zero_filled_image"]


def evaluate_method(name, predict, dataset, rows, examples, bar, methods):
    """Appends the method's per-volume rows (zero-filled's too, if in ``methods``, when
    ``name`` is the first pass, ``zero_filled`` or ``cs_tv``); returns its seconds per slice."""
    timer = volumes.Timer(predict)
    for volume, zero_filled, image, target in volumes.reconstruct_volumes(timer, dataset):
        middle = len(target) // 2
        shown = examples.setdefault(volume, {"target": target[middle]})
        if name in ("zero_filled", "cs_tv"):
            if "zero_filled" in methods:
                rows.append(metrics.volume_row(volume, "zero_filled", target, zero_filled))
            shown["zero_filled"] = zero_filled[middle]
        if name != "zero_filled":
            rows.append(metrics.volume_row(volume, name, target, image))
            shown[name] = image[middle]
        bar.update()
    return timer.seconds_per_slice if name != "zero_filled" else None


def evaluate_setting(config, source, acceleration, spec, runs, bar):
    """(rows, {method: seconds per slice}, examples, CS-TV lambda or None, its tuning
    scores or None) of one acceleration."""
    splits = [source.split] + [source.tune_split] * ("cs_tv" in config.methods)
    with pipeline.naming_damaged_records(source.data_dir, *splits):
        return _evaluate_setting(config, source, acceleration, spec, runs, bar)


def _evaluate_setting(config, source, acceleration, spec, runs, bar):
    rows, seconds, examples = [], {}, {}
    regularization, tuning = None, None
    methods = config.methods
    # The first pass gives zero-filled (every method's input) and, if asked, CS-TV.
    if "cs_tv" in methods:
        regularization, tuning = cs_lambda_for(config, source, spec)
        options = cs_tv.CsTvOptions(regularization, config.cs_iterations, config.cs_maps)
        predict = cs_predictor(options)
        dataset = _dataset(config, source, spec, measured=True, network=False)
        seconds["cs_tv"] = evaluate_method("cs_tv", predict, dataset, rows, examples, bar, methods)
    else:
        dataset = _dataset(config, source, spec, network=False)
        evaluate_method("zero_filled", _zero_filled_of, dataset, rows, examples, bar, methods)
    if "bart" in methods:
        predict = bart.predictor(raw_split_dir(source), bart.find(config.bart))
        dataset = _dataset(config, source, spec, measured=True, network=False)
        seconds["bart"] = evaluate_method("bart", predict, dataset, rows, examples, bar, methods)
    for run in (r for r in runs if r.acceleration == acceleration):
        model = run.load()
        dataset = _dataset(config, source, spec, data_consistency=model.config.data_consistency)
        seconds[run.key] = evaluate_method(
            run.key, volumes.model_predictor(model), dataset, rows, examples, bar, methods
        )
    rows.sort(key=lambda row: method_order(row["method"]))
    return rows, seconds, examples, regularization, tuning


def _methods_present(summary):
    return sorted(summary, key=method_order)


def _lambda_source(config, source):
    if not config.cs_auto:
        return f"{float(config.cs_lambda):g}"
    return (
        f"chosen at each acceleration (best SSIM within {cs_tv.NMSE_SLACK - 1:.0%} of the "
        f"best NMSE) on the middle {cs_tv.TUNE_SLICES} slices of up to "
        f"{config.cs_tune_volumes} volumes of `{source.tune_split}`"
    )


def _data_line(config, source):
    return (
        f"Data: `{source.data_dir}`, split `{source.split}` ({source.num_volumes} volumes), "
        f"{config.mask_type} masks fixed per volume. CS-TV lambda "
        f"{_lambda_source(config, source)}."
    )


def _bart_line(config):
    """What report.md says of BART, fastMRI's classical baseline: compared, or why not."""
    recipe = f"`bart {' '.join(bart.ECALIB)}` + `bart {' '.join(bart.PICS)}`"
    if "bart" in config.methods:
        return f"BART (fastMRI's classical baseline): {recipe}, per slice, on the HDF5 k-space."
    if bart.find(config.bart) is None:
        return (
            "BART (fastMRI's classical baseline) is not compared: it is not installed here; "
            f"{bart.INSTALL} and add bart to --methods."
        )
    return "BART (fastMRI's classical baseline) is not compared: add bart to --methods."


def markdown(config, results, runs, checked) -> str:
    """report.md: one table per acceleration, like the seed project's; the check set's
    tables in a section of their own."""
    main, *check = checked
    lines = [
        "# tfmri comparison report",
        "",
        _data_line(config, main),
        "fastMRI metrics per volume (NMSE, PSNR, SSIM), mean +/- standard deviation over the "
        "volumes, and the worst volume's figure (the highest NMSE, the lowest PSNR and SSIM); "
        f"the volume of the lowest SSIM is named. CS-TV: {config.cs_iterations} iterations, "
        f"{config.cs_maps} coil maps (multi-coil). Seconds per "
        "slice: time in the method in steady state (after a warm-up call), on "
        f"{os.cpu_count()} CPU cores; zero-filled is the shared input.",
        "",
    ]
    lines += [_bart_line(config), ""]
    for result in results:
        summary = result["summary"]
        if result["data"] == "check" and result is next(r for r in results if r["data"] == "check"):
            lines += [
                "# Check set",
                "",
                "The same methods and checkpoints on data none of them was trained or tuned "
                "on (the real-anatomy set: `python -m tfmri.real_anatomy`).",
                _data_line(config, check[0]),
                "",
            ]
        prefix = "check set, " if result["data"] == "check" else ""
        lines += [
            f"## {prefix}{result['acceleration']}x (centre fraction {result['center_fraction']:g})",
            "",
            "| method | NMSE | PSNR | SSIM | worst volume (SSIM) | s / slice |",
            "|---|---|---|---|---|---|",
        ]
        for method in _methods_present(summary):
            scores = summary[method]
            cells = [
                f"{scores[m]['mean']:.4f} +/- {scores[m]['std']:.4f} (worst {scores[m]['worst']:.4f})"
                for m in metrics.NAMES
            ]
            cells.append(f"`{scores['ssim']['worst_volume']}`")
            seconds = result["seconds_per_slice"].get(method)
            cells.append("-" if seconds is None else f"{seconds:.3f}")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        present = {key.partition("+")[0] for key in summary}
        for method in (m for m in METHODS if m in config.methods and m not in present):
            lines.append(f"| {method} | no run trained at {result['acceleration']}x | | | | |")
        tuning = result["cs_tv"]["tuning"]
        if tuning:
            chosen = f"CS-TV lambda {result['cs_tv']['lambda']:g}"
            lines += ["", f"{chosen}: {cs_tv.describe_choice(tuning)}.", ""]
        lines += [f"![examples]({os.path.basename(result['figure'])})", ""]
    if runs:
        lines += ["## Checkpoints", ""]
        lines += [f"- {run.key} at {run.acceleration}x: `{run.checkpoint}`" for run in runs]
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


def examples_figure(examples, acceleration, path, count):
    """Rows of the first ``count`` volumes' middle slices, columns target and every
    method, each with a 5 x error map below."""
    pyplot = _pyplot()
    shown = list(examples)[: max(count, 1)]
    columns = ["target"] + sorted(
        (key for key in examples[shown[0]] if key != "target"), key=method_order
    )
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
                        point = float(tf.make_ndarray(value.tensor))
                        if math.isfinite(point):  # a diverged epoch: a gap in the curve
                            points[event.step] = point
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


def _setting_result(config, source, acceleration, spec, runs, bar, output_dir):
    """report.json's entry for one data source and setting (and its example figure)."""
    start = time.perf_counter()
    rows, seconds, examples, regularization, tuning = evaluate_setting(
        config, source, acceleration, spec, runs, bar
    )
    prefix = "check_" if source.label == "check" else ""
    figure = os.path.join(output_dir, f"{prefix}examples_{acceleration}x.png")
    if config.num_example_volumes:
        examples_figure(examples, acceleration, figure, config.num_example_volumes)
    return {
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


def _document(config, checked, runs, results, curves):
    """report.json: the data, methods and checkpoints compared, and the results."""
    auto = config.cs_auto
    main, *check = checked
    return {
        "data_dir": main.data_dir,
        "split": main.split,
        "num_volumes": main.num_volumes,
        "check": None
        if not check
        else {
            "data_dir": check[0].data_dir,
            "split": check[0].split,
            "num_volumes": check[0].num_volumes,
            "tune_split": check[0].tune_split if auto else None,
        },
        "methods": [m for m in METHODS if m in config.methods],
        "cs_tv": {
            "lambda": config.cs_lambda,
            "iterations": config.cs_iterations,
            "maps": config.cs_maps,
            "tune_split": main.tune_split if auto else None,
        },
        "checkpoints": [
            {"method": r.key, "acceleration": r.acceleration, "checkpoint": r.checkpoint}
            for r in runs
        ],
        "results": results,
        "training_curves": curves,
    }


def report(config: ReportConfig, output_dir):
    """Evaluates everything ``config`` asks for; writes the report to ``output_dir``;
    returns its JSON."""
    runs, checked = check(config)
    pairs = config.settings
    classical = 1 + ("bart" in config.methods)
    passes = sum(classical + sum(run.acceleration == a for run in runs) for a, _ in pairs)
    bar = ProgressBar(passes * sum(source.num_volumes for source in checked), "volume passes")
    results = [
        _setting_result(config, source, acceleration, spec, runs, bar, output_dir)
        for source in checked
        for acceleration, spec in pairs
    ]
    bar.close()
    curves = curves_figure(runs, os.path.join(output_dir, "training_curves.png")) if runs else {}
    document = _document(config, checked, runs, results, curves)
    fileio.write_json(os.path.join(output_dir, "report.json"), document)
    fileio.write_text(
        os.path.join(output_dir, "report.md"), markdown(config, results, runs, checked)
    )
    return document
