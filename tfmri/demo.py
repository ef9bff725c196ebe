"""The main job, end to end on synthetic fastMRI data.

  python -m tfmri.demo --workdir=runs/demo

1. writes synthetic single-coil volumes in the fastMRI layout: photographs made
   MR-like (``--data_source=natural``, the default) or the knee phantom (``knee``),
2. converts them to TFRecords,
3. writes and converts the real-anatomy check set (``python -m tfmri.real_anatomy``;
   never trained on; ``--nocheck_set`` skips it),
4. trains pix2pix with ``configs/demo.cfg`` and evaluates it,
5. trains the L1 U-Net baseline with ``configs/demo_unet.cfg`` and the cascade started
   from CS-TV with ``configs/demo_cs_cascade.cfg`` (two small U-Nets correcting CS-TV's
   solution, L1), and evaluates them,
6. with ``--with_4x``, also trains the three at 4x (``configs/demo_4x.cfg``,
   ``configs/demo_unet_4x.cfg``, ``configs/demo_cs_cascade_4x.cfg``); with
   ``--with_cascade``, also the cascade generator
   with and without the discriminator (``configs/demo_cascade*.cfg``), at 8x (and 4x);
   the configs train with k-space data consistency,
   ``--nodata_consistency`` trains every run without it, into ``<workdir>/<run>_nodc``
   (the cascades, which need it, are then left out),
7. writes the comparison report (``tfmri.report``, ``configs/report_demo.cfg``):
   zero-filled, CS-TV, U-Net, pix2pix and cs_cascade side by side, at 8x (and 4x), on the
   validation split and on the check set, in ``<workdir>/report`` (``report_nodc``),
   and prints its tables,
8. exports the learned model it recommends (the best 8x run on the validation
   split by SSIM, the figure fastMRI's leaderboard ranks by) for TF Serving, to
   ``<export_dir>/<model_name>/<version>`` (``savedmodel/demo/1`` by default),
9. reconstructs the test split through that SavedModel's ``serving_default``
   signature (``tfmri.reconstruct``) into ``<workdir>/reconstructions``, and prints
   the commands that serve the model and call it.

Steps 4 to 9 run the same commands a user runs (printed as they start), with
``--data_dir``, ``--model_dir`` and ``--report_dir`` pointed into ``--workdir``. Every
step keeps what an earlier run finished, so rerunning is cheap and an interrupted run
resumes; the export is redone only when the recommended checkpoint changed.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys

from absl import flags

from tfmri import cli

cli.quiet_tensorflow()

from tfmri import fileio  # noqa: E402
from tfmri.data import anatomy, convert, synthetic  # noqa: E402
from tfmri.errors import UserError  # noqa: E402
from tfmri.flagdefs import common  # noqa: E402, F401 - define flags
from tfmri.flagdefs import synthetic as synthetic_flags  # noqa: E402, F401 - define flags
from tfmri.progress import ProgressBar  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/demo", "Where the synthetic data, TFRecords and runs go.")
flags.DEFINE_bool("with_4x", False, "Also train at 4x and report 4x next to 8x.")
flags.DEFINE_bool(
    "with_cascade",
    False,
    "Also train the cascade generator, with the discriminator (configs/demo_cascade.cfg) and "
    "with L1 alone (configs/demo_cascade_l1.cfg), about as long as the U-Net runs, and "
    "report it next to them.",
)
flags.DEFINE_bool(
    "data_consistency",
    True,
    "Train with k-space data consistency, as the demo configs do (the learned methods keep "
    "the measured k-space, as CS-TV does); --nodata_consistency trains every run without "
    "it, into <workdir>/<run>_nodc (and leaves out cs_cascade, which needs it).",
)
flags.DEFINE_bool(
    "check_set",
    True,
    "Also write the real-anatomy check set (python -m tfmri.real_anatomy) into "
    "<workdir>/anatomy and score every method on it in the report's check-set section.",
)
flags.DEFINE_multi_string(
    "train_flag",
    [],
    "A flag passed to every training run after its config (repeatable), e.g. "
    "--train_flag=--epochs=2 for a quicker, weaker run.",
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
RUNS_8X = (("pix2pix", "demo.cfg"), ("unet", "demo_unet.cfg"))
RUNS_4X = (("pix2pix_4x", "demo_4x.cfg"), ("unet_4x", "demo_unet_4x.cfg"))
# The cascade started from CS-TV (it needs data consistency: not with --nodata_consistency).
CS_CASCADE_8X = (("cs_cascade", "demo_cs_cascade.cfg"),)
CS_CASCADE_4X = (("cs_cascade_4x", "demo_cs_cascade_4x.cfg"),)
# The run names are the report's method names (pix2pix.ModelConfig.method).
CASCADE_8X = (("pix2pix_cascade", "demo_cascade.cfg"), ("cascade", "demo_cascade_l1.cfg"))
CASCADE_4X = (
    ("pix2pix_cascade_4x", "demo_cascade_4x.cfg"),
    ("cascade_4x", "demo_cascade_l1_4x.cfg"),
)
MAIN_ACCELERATION = 8
# Records which checkpoint the last export came from, so a rerun does not export again.
EXPORT_RECORD = "savedmodel.json"
DEFAULT_MODEL_NAME = "demo"


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """What the main job makes, trains and exports (directories absolute: the steps run
    from the repository root)."""

    workdir: str
    export_dir: str
    model_name: str = DEFAULT_MODEL_NAME
    num_volumes: int = 10
    num_slices: int = 12
    data_seed: int = 0
    data_source: str = "natural"
    with_4x: bool = False
    with_cascade: bool = False
    data_consistency: bool = True
    check_set: bool = True
    train_flags: tuple = ()

    @property
    def suffix(self) -> str:
        """Of the run and report directories: runs without data consistency are apart."""
        return "" if self.data_consistency else "_nodc"

    def runs(self, only_8x=False):
        """[(run name, config file)] of the runs it trains, the 8x ones first."""
        cs_cascade = self.data_consistency
        runs = RUNS_8X + (CS_CASCADE_8X if cs_cascade else ())
        runs += CASCADE_8X if self.with_cascade else ()
        if self.with_4x and not only_8x:
            runs += RUNS_4X + (CS_CASCADE_4X if cs_cascade else ())
            runs += CASCADE_4X if self.with_cascade else ()
        return [(name + self.suffix, config_file) for name, config_file in runs]

    def methods_8x(self):
        """[(run name, method)] of the 8x runs: each is named after its method."""
        return [(name, name.removesuffix(self.suffix)) for name, _ in self.runs(only_8x=True)]


def demo_config(values) -> DemoConfig:
    """The DemoConfig of the flags of ``values`` (absl FlagValues), checked."""
    if values.num_volumes < 3:
        raise UserError(f"--num_volumes={values.num_volumes}: must be >= 3 (train, val, test)")
    synthetic_flags.check_counts(values, ("num_slices",))
    if values.with_cascade and not values.data_consistency:
        raise UserError(
            "--with_cascade --nodata_consistency: the cascade generator puts the measured "
            "k-space back after every stage; drop one of them"
        )
    return DemoConfig(
        workdir=os.path.abspath(values.workdir),
        export_dir=os.path.abspath(values.export_dir),
        model_name=values.model_name or DEFAULT_MODEL_NAME,
        num_volumes=values.num_volumes,
        num_slices=values.num_slices or DemoConfig.num_slices,
        data_seed=values.data_seed,
        data_source=values.data_source,
        with_4x=values.with_4x,
        with_cascade=values.with_cascade,
        data_consistency=values.data_consistency,
        check_set=values.check_set,
        train_flags=tuple(values.train_flag),
    )


def _step(message):
    print(f"== {message}", flush=True)


def _run(module, flagfile, overrides):
    command = [sys.executable, "-m", module, *([f"--flagfile={flagfile}"] if flagfile else [])]
    command += overrides
    shown = " ".join(["python", *command[1:]])
    _step(shown)
    # From the repository root: configs include each other by paths relative to it.
    result = subprocess.run(command, cwd=ROOT)
    if result.returncode != 0:
        raise UserError(f"{module} failed (exit {result.returncode}); rerun the demo to resume")


def _check_source(raw_dir, spec):
    """Refuses to add volumes of another source to an existing work directory."""
    record = os.path.join(raw_dir, "source.json")
    previous = None
    if os.path.exists(record):
        try:
            with open(record) as handle:
                previous = json.load(handle)["source"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(
                f"{record}: not a record of the data source ({error}); delete it, or give "
                "another --workdir"
            ) from None
    elif os.path.isdir(raw_dir) and os.listdir(raw_dir):
        previous = "knee"  # written before the record existed, when the phantom was all
    if previous is not None:
        if previous != spec.source:
            raise UserError(
                f"--data_source={spec.source}: {raw_dir} holds {previous} volumes; give "
                f"another --workdir or --data_source={previous}"
            )
    else:
        os.makedirs(raw_dir, exist_ok=True)
        fileio.write_json(record, {"source": spec.source})


def check_set(workdir):
    """Writes and converts the real-anatomy check set (kept if already there); returns
    its TFRecords directory."""
    raw = os.path.join(workdir, "anatomy")
    records = os.path.join(workdir, "anatomy_tfrecords")
    _step(f"real-anatomy check set (MNI152, never trained on) -> {raw}")
    try:
        spec = anatomy.AnatomySpec()
        bar = ProgressBar(len(anatomy.volume_plan(anatomy.load_template().shape, spec)), "volumes")
    except ImportError as error:
        raise UserError(f"{error}; or run the demo with --nocheck_set") from None
    anatomy.generate(spec, raw, lambda done, total: bar.update())
    bar.close()
    bar = ProgressBar(convert.count_volumes(raw), "volumes")
    convert.convert(
        raw, records, convert.ConvertOptions(num_shards=1, num_workers=1), lambda *_: bar.update()
    )
    bar.close()
    return records


def recommended_run(report_dir, runs):
    """(run name, method, SSIM) of the learned run with the best mean SSIM at 8x on the
    validation split (never on the check set)."""
    with open(os.path.join(report_dir, "report.json")) as handle:
        document = json.load(handle)
    result = next(
        r
        for r in document["results"]
        if r["acceleration"] == MAIN_ACCELERATION and r.get("data", "main") == "main"
    )
    summary = result["summary"]
    ssim, name, method = max(
        (summary[method]["ssim"]["mean"], name, method)
        for name, method in runs
        if method in summary
    )
    return name, method, ssim


def latest_checkpoint(model_dir):
    """The newest checkpoint's prefix, from the ``checkpoint`` file TensorFlow keeps."""
    with open(os.path.join(model_dir, "checkpoint")) as handle:
        name = re.search(r'^model_checkpoint_path: "(.*)"', handle.read(), re.M).group(1)
    return os.path.join(model_dir, os.path.basename(name))


def _read_record(path):
    """The JSON object at ``path``, or None when it is absent or not one (redone)."""
    try:
        with open(path) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def export_recommended(config, model_dir):
    """Exports the run's newest checkpoint unless the last export was of it; returns
    the SavedModel's version directory."""
    record_path = os.path.join(config.workdir, EXPORT_RECORD)
    checkpoint = latest_checkpoint(model_dir)
    record = _read_record(record_path)
    if record is not None:
        saved = os.path.join(str(record.get("saved_model")), "saved_model.pb")
        if record.get("checkpoint") == checkpoint and os.path.isfile(saved):
            _step(f"{record['saved_model']} is already the export of {checkpoint}")
            return record["saved_model"]
    model_root = os.path.join(config.export_dir, config.model_name)
    before = set(os.listdir(model_root)) if os.path.isdir(model_root) else set()
    overrides = [f"--model_dir={model_dir}", f"--checkpoint={checkpoint}"]
    overrides += [f"--model_name={config.model_name}", f"--export_dir={config.export_dir}"]
    _run("tfmri.export", os.path.join(model_dir, "flags.cfg"), overrides)
    (version,) = set(os.listdir(model_root)) - before
    saved_model = os.path.join(model_root, version)
    fileio.write_json(record_path, {"checkpoint": checkpoint, "saved_model": saved_model})
    return saved_model


def serving_commands(saved_model, test_dir, name):
    """The commands that serve the export (model name ``name``) with TF Serving and call it."""
    root = os.path.abspath(os.path.dirname(saved_model))
    example = sorted(os.listdir(test_dir))[0] if os.listdir(test_dir) else "FILE.h5"
    return "\n".join(
        [
            "serve it (TF Serving in docker, REST on 8501, gRPC on 8500):",
            f"  docker run -p 8500:8500 -p 8501:8501 -v {root}:/models/{name} "
            f"-e MODEL_NAME={name} tensorflow/serving",
            "call it:",
            f"  python -m tfmri.client --input={os.path.join(test_dir, example)} "
            f"--model_name={name} --protocol=rest --port=8501 --output=recon.npy",
        ]
    )


def make_data(config: DemoConfig):
    """Steps 1-3: synthetic volumes, their TFRecords, the check set; returns
    (raw_dir, records_dir, check set records or None)."""
    raw_dir = os.path.join(config.workdir, "fastmri")
    records_dir = os.path.join(config.workdir, "tfrecords")
    _step(f"synthetic fastMRI volumes ({config.data_source}) -> {raw_dir}")
    spec = synthetic.SyntheticSpec(
        config.num_volumes, config.num_slices, 1, config.data_seed, source=config.data_source
    )
    _check_source(raw_dir, spec)
    bar = ProgressBar(config.num_volumes, "volumes")
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
    check_dir = check_set(config.workdir) if config.check_set else None
    return raw_dir, records_dir, check_dir


def train_runs(config: DemoConfig, records_dir):
    """Steps 4-6: trains (and evaluates the 8x runs); returns [(run name, config file)]."""
    runs = config.runs()
    evaluated = len(config.runs(only_8x=True))
    for index, (name, config_file) in enumerate(runs):
        model_dir = os.path.join(config.workdir, name)
        overrides = [f"--data_dir={records_dir}", f"--model_dir={model_dir}"]
        overrides += [] if config.data_consistency else ["--nodata_consistency"]
        overrides += list(config.train_flags)
        flagfile = os.path.join(CONFIGS, config_file)
        _run("tfmri.train", flagfile, overrides)
        if index < evaluated:
            _run("tfmri.evaluate", flagfile, overrides)
    return runs


def write_report(config: DemoConfig, records_dir, check_dir, runs):
    """Step 7: the comparison report; returns its directory."""
    if config.with_4x:
        settings = ["--center_fractions=0.08,0.04", "--accelerations=4,8"]
    else:
        settings = ["--center_fractions=0.04", "--accelerations=8"]
    checkpoints = ",".join(os.path.join(config.workdir, name) for name, _ in runs)
    report_dir = os.path.join(config.workdir, "report" + config.suffix)
    overrides = [
        f"--data_dir={records_dir}",
        f"--checkpoints={checkpoints}",
        f"--report_dir={report_dir}",
        *settings,
    ]
    overrides += [f"--check_data_dir={check_dir}"] if check_dir else []
    methods = ["zero_filled", "cs_tv"] + [method for _, method in config.methods_8x()]
    overrides.append(f"--methods={','.join(methods)}")
    _run("tfmri.report", os.path.join(CONFIGS, "report_demo.cfg"), overrides)
    return report_dir


def serve_recommended(config: DemoConfig, raw_dir, report_dir):
    """Steps 8-9: exports the recommended 8x run and reconstructs the test split with it."""
    name, method, ssim = recommended_run(report_dir, config.methods_8x())
    _step(f"recommended: {name} ({method}, validation SSIM {ssim:.4f} at {MAIN_ACCELERATION}x)")
    saved_model = export_recommended(config, os.path.join(config.workdir, name))
    test_dir = os.path.join(raw_dir, "singlecoil_test")
    reconstructions = os.path.join(config.workdir, "reconstructions")
    overrides = [f"--saved_model={saved_model}", f"--input_dir={test_dir}"]
    overrides += [f"--output_dir={reconstructions}"]
    _run("tfmri.reconstruct", None, overrides)
    print(serving_commands(saved_model, test_dir, config.model_name))


def demo(config: DemoConfig):
    """The main job, steps 1 to 9."""
    raw_dir, records_dir, check_dir = make_data(config)
    runs = train_runs(config, records_dir)
    report_dir = write_report(config, records_dir, check_dir, runs)
    serve_recommended(config, raw_dir, report_dir)


@cli.user_errors_to_exit
def main(argv):
    demo(demo_config(FLAGS))


if __name__ == "__main__":
    cli.run(main)
