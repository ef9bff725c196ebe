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
