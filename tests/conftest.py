"""Shared fixtures: small synthetic fastMRI data sets, generated once per session."""

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from tfmri.data import convert, synthetic  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def run_tool(*args, timeout=300):
    """Runs a command-line entry point; returns the CompletedProcess."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )


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
    """A tiny pix2pix trained one epoch and exported: (model_dir, export_dir, data flags)."""
    root = tmp_path_factory.mktemp("export")
    model_dir = str(root / "run")
    common = [f"--data_dir={singlecoil_records}", f"--model_dir={model_dir}"]
    tiny = ["--depth=3", "--base_filters=4", "--d_base_filters=4", "--norm=instance"]
    tiny += ["--d_norm=instance", "--dropout=0", "--batch_size=2", "--epochs=1"]
    result = run_tool("-m", "tfmri.train", *common, *tiny, "--epochs_decay=0")
    assert result.returncode == 0, result.stderr[-3000:]
    export_dir = str(root / "savedmodel")
    result = run_tool(
        "-m", "tfmri.export", *common, "--model_name=knee", f"--export_dir={export_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir, export_dir, common
