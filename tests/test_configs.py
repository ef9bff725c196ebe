"""Every flagfile in configs/ parses and describes a valid mask and model."""

import glob
import os

import pytest
from absl import flags

from tests.conftest import ROOT
from tfmri import report  # noqa: F401  (defines the report's flags)
from tfmri.flagdefs import recipe

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.cfg")))
REQUIRED = {
    "demo.cfg",
    "knee_singlecoil_8x_pix2pix.cfg",
    "knee_singlecoil_4x_pix2pix.cfg",
    "knee_singlecoil_8x_unet.cfg",
    "demo_cascade.cfg",
    "knee_singlecoil_8x_cascade.cfg",
    "knee_singlecoil_4x_cascade.cfg",
}


@pytest.fixture
def parsed_flags():
    """Parses a flagfile into the global flags, and restores them afterwards."""
    cwd = os.getcwd()
    os.chdir(ROOT)  # the configs include each other by paths relative to the root
    try:
        yield lambda path: flags.FLAGS(["test", f"--flagfile={path}"])
    finally:
        flags.FLAGS.unparse_flags()
        os.chdir(cwd)


def test_the_required_configs_exist():
    assert REQUIRED <= {os.path.basename(path) for path in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_config_is_a_valid_recipe(parsed_flags, path):
    parsed_flags(path)
    run = recipe.run_config_of(flags.FLAGS)
    spec, model = run.mask, run.model
    assert run.data.data_dir and run.runtime.model_dir
    name = os.path.basename(path)
    if name.startswith("knee_singlecoil_8x"):
        assert spec == spec.__class__("random", (0.04,), (8,))
    if name == "knee_singlecoil_8x_pix2pix.cfg":
        assert model.discriminator == "pixel" and flags.FLAGS.learning_rate < 2e-4
    if name == "knee_singlecoil_4x_pix2pix.cfg":
        assert spec.accelerations == (4,) and spec.center_fractions == (0.08,)
    if "unet" in name or "cascade_l1" in name:
        assert model.discriminator == "none"
    if "cascade" in name:
        assert model.generator == "cascade" and model.data_consistency
        assert model.cascade_start == ("cs_tv" if "cs_cascade" in name else "zero_filled")
    else:
        assert model.generator == "unet"


def _training_runs(parsed_flags):
    """{model_dir: (method, accelerations)} of the training configs."""
    runs = {}
    for path in CONFIGS:
        if not os.path.basename(path).startswith("report_"):
            parsed_flags(path)
            method = recipe.run_config_of(flags.FLAGS).model.method
            runs[flags.FLAGS.model_dir] = (method, tuple(flags.FLAGS.accelerations))
            flags.FLAGS.unparse_flags()
    return runs


@pytest.mark.parametrize("name", ["report_demo.cfg", "report_knee_singlecoil.cfg"])
def test_report_recipe_names_a_config_per_method_and_acceleration(parsed_flags, name):
    runs = _training_runs(parsed_flags)
    parsed_flags(os.path.join(ROOT, "configs", name))
    learned = [method for method in flags.FLAGS.methods if method not in ("zero_filled", "cs_tv")]
    assert {"unet", "pix2pix"} <= set(learned)
    wanted = {
        (method, acceleration) for method in learned for acceleration in flags.FLAGS.accelerations
    }
    named = []
    for model_dir in flags.FLAGS.checkpoints:
        assert model_dir in runs, f"{model_dir} is the --model_dir of no config"
        method, accelerations = runs[model_dir]
        assert len(accelerations) == 1
        named.append((method, accelerations[0]))
    assert sorted(named) == sorted(wanted)


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_config_opens_with_what_it_gives(path):
    """A header before the first flag: what it trains, its own command, the expected
    time and results, and where they are measured (tests/test_docs.py checks the link)."""
    with open(path) as handle:
        lines = handle.read().splitlines()
    first_flag = next(index for index, line in enumerate(lines) if line.startswith("--"))
    header = lines[:first_flag]
    assert header and all(line.startswith("#") for line in header)
    name = os.path.basename(path)
    app = "report" if name.startswith("report_") else "train"
    assert f"# Command: python -m tfmri.{app} --flagfile=configs/{name}" in header
    assert any(line.startswith("# Expected: ") for line in header)
    assert any(line.startswith("# Measured: docs/results.md#") for line in header)
    assert len(header) >= 4  # a line on what it trains, beside the three above
