"""Shared fixtures: small synthetic fastMRI data sets, generated once per session."""

import contextlib
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfmri.data import convert, synthetic  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def pytest_configure(config):
    # The fast tier for development is `python -m pytest -m "not slow" tests` (about two
    # minutes on 2 cores); CI runs all. A module-scoped fixture that trains is charged to
    # its first test: mark every test that uses it, or the training joins the fast tier.
    config.addinivalue_line(
        "markers",
        "slow: trains a model (other than the shared `exported` one), runs the main job or "
        "a report, or starts TensorFlow in subprocesses; deselect with -m 'not slow'",
    )


def run_tool(*args, timeout=300):
    """Runs a command-line entry point; returns the CompletedProcess."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )


def run_app(module, *args):
    """Runs ``python -m <module> <args>`` in this process: its flags parsed as absl
    parses them, then its ``main``. Returns a CompletedProcess with the exit status and
    what it printed (Python's stdout and stderr).

    Much faster than :func:`run_tool` (TensorFlow is loaded once). Not for what changes
    the process for good: ``--num_cpu_devices``, ``--strategy=mirrored``,
    ``--deterministic`` and other ``--precision`` policies need :func:`run_tool`.
    """
    from absl import flags

    app = importlib.import_module(module)
    stdout, stderr = io.StringIO(), io.StringIO()
    status = 0
    cwd = os.getcwd()
    os.chdir(ROOT)  # as run_tool: flagfiles name each other relative to the root
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                app.main(flags.FLAGS([module, *args]))
            except flags.Error as error:
                print(f"FATAL Flags parsing error: {error}", file=sys.stderr)
                status = 1
            except SystemExit as exit_request:
                code = exit_request.code
                status = code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        flags.FLAGS.unparse_flags()
        os.chdir(cwd)
        import keras

        keras.mixed_precision.set_global_policy("float32")  # --precision is process-wide
    return subprocess.CompletedProcess(
        [module, *args], status, stdout.getvalue(), stderr.getvalue()
    )


def report_8x(report_dir, *flags):
    """Runs ``tfmri.report`` with ``flags`` at 8x (centre fraction 0.04, one example
    volume) into ``report_dir``, checks that it succeeded; returns its report.json."""
    result = run_app(
        "tfmri.report",
        *flags,
        "--center_fractions=0.04",
        "--accelerations=8",
        "--num_example_volumes=1",
        f"--report_dir={report_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(report_dir, "report.json")) as handle:
        return json.load(handle)


def train_resume_export(records, root, flags, model_name):
    """Trains ``flags`` on ``records`` one epoch into ``root``/run, resumes it for a
    second, exports it (each step checked); returns (model dir, SavedModel version dir,
    (first run, resumed run) CompletedProcesses, the first run's last step)."""
    import tensorflow as tf

    model_dir = os.path.join(root, "run")
    common = [f"--data_dir={records}", f"--model_dir={model_dir}", "--batch_size=2"]
    first = run_app("tfmri.train", *common, *flags, "--epochs=1", "--epochs_decay=0")
    assert first.returncode == 0, first.stderr[-3000:]
    first_step = int(tf.train.latest_checkpoint(model_dir).split("-")[-1])
    resumed = run_app("tfmri.train", *common, *flags, "--epochs=2", "--epochs_decay=0")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    export_dir = os.path.join(root, "savedmodel")
    result = run_app(
        "tfmri.export", *common, f"--model_name={model_name}", f"--export_dir={export_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    saved_model = os.path.join(export_dir, model_name, "1")
    return model_dir, saved_model, (first, resumed), first_step


def assert_generator_weights_finite(model_dir):
    """The newest checkpoint of ``model_dir`` holds generator weights, all finite."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
    weights = [
        reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name.startswith("generator/")
    ]
    assert weights and all(np.all(np.isfinite(weight)) for weight in weights)


def run_module(*args, timeout=None):
    """:func:`run_tool`'s call for a ``"-m", "tfmri.<app>", ...`` command line, run in
    this process by :func:`run_app` (``timeout`` is accepted and ignored)."""
    assert args[0] == "-m", args
    return run_app(args[1], *args[2:])


def kill_after_checkpoint(args, model_dir, min_step, timeout=240):
    """Starts a command, SIGKILLs it (and its children) once ``model_dir`` holds a
    complete checkpoint of step ``min_step`` or later; returns that step."""
    import tensorflow as tf

    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        latest = tf.train.latest_checkpoint(model_dir)  # complete checkpoints only
        if latest and int(latest.split("-")[-1]) >= min_step:
            break
        time.sleep(0.01)
    assert process.poll() is None, "the command finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return int(tf.train.latest_checkpoint(model_dir).split("-")[-1])


@pytest.fixture(scope="session")
def singlecoil_raw(tmp_path_factory):
    directory = tmp_path_factory.mktemp("singlecoil_raw")
    synthetic.generate(synthetic.SyntheticSpec(num_volumes=5, num_slices=3, seed=7), directory)
    return str(directory)


@pytest.fixture(scope="session")
def singlecoil_records(singlecoil_raw, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("singlecoil_records"))
    convert.convert(singlecoil_raw, directory, convert.ConvertOptions(num_shards=2, num_workers=1))
    return directory


@pytest.fixture(scope="session")
def multicoil_records(tmp_path_factory):
    raw = tmp_path_factory.mktemp("multicoil_raw")
    synthetic.generate(synthetic.SyntheticSpec(num_volumes=3, num_slices=2, coils=4, seed=3), raw)
    directory = str(tmp_path_factory.mktemp("multicoil_records"))
    convert.convert(str(raw), directory, convert.ConvertOptions(num_shards=1, num_workers=1))
    return str(raw), directory


@pytest.fixture(scope="session")
def exported(singlecoil_records, tmp_path_factory):
    """A tiny pix2pix trained one epoch and exported: (model_dir, export_dir, data flags).

    The one training of the fast tier (a few seconds), shared by its export, serving,
    reconstruction and fault tests."""
    root = tmp_path_factory.mktemp("export")
    model_dir = str(root / "run")
    common = [f"--data_dir={singlecoil_records}", f"--model_dir={model_dir}"]
    tiny = ["--depth=3", "--base_filters=4", "--d_base_filters=4", "--norm=instance"]
    tiny += ["--d_norm=instance", "--dropout=0", "--batch_size=2", "--epochs=1"]
    result = run_app("tfmri.train", *common, *tiny, "--epochs_decay=0")
    assert result.returncode == 0, result.stderr[-3000:]
    export_dir = str(root / "savedmodel")
    result = run_app("tfmri.export", *common, "--model_name=knee", f"--export_dir={export_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir, export_dir, common
