"""Every flagfile in configs/ parses and describes a valid mask and model."""

import glob
import os

import pytest
from absl import flags

from tests.conftest import ROOT
from tfmri import config

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.cfg")))
REQUIRED = {
    "demo.cfg",
    "knee_singlecoil_8x_pix2pix.cfg",
    "knee_singlecoil_4x_pix2pix.cfg",
    "knee_singlecoil_8x_unet.cfg",
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
    spec = config.mask_spec()
    model = config.model_config()
    assert flags.FLAGS.data_dir and flags.FLAGS.model_dir
    name = os.path.basename(path)
    if name.startswith("knee_singlecoil_8x"):
        assert spec == spec.__class__("random", (0.04,), (8,))
    if name == "knee_singlecoil_8x_pix2pix.cfg":
        assert model.discriminator == "pixel" and flags.FLAGS.learning_rate < 2e-4
    if name == "knee_singlecoil_4x_pix2pix.cfg":
        assert spec.accelerations == (4,) and spec.center_fractions == (0.08,)
    if "unet" in name:
        assert model.discriminator == "none"
