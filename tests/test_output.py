"""What a user sees: tfmri's own lines only, one line per user error, tracebacks for bugs."""

import os
import re
import subprocess
import sys

import pytest

from tests import test_train
from tests.conftest import ROOT
from tfmri import cli
from tfmri.errors import UserError

# TensorFlow's C++ log lines (absl format: I1126 01:45:47.27 ... file.cc:153] ...), its
# pre-initialisation notice, and Keras's own epoch header.
FOREIGN = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages|Epoch \d+/\d+)", re.MULTILINE)


def _as_new_user(*args):
    """Runs a command with no TensorFlow log settings in the environment."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_CPP")}
    env.pop("TFMRI_QUIET_TENSORFLOW", None)
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )


@pytest.mark.slow
def test_training_prints_only_tfmris_lines(singlecoil_records, tmp_path):
    model_dir = str(tmp_path / "run")
    args = ["-m", "tfmri.train", f"--data_dir={singlecoil_records}", f"--model_dir={model_dir}"]
    args += test_train.TINY + ["--max_steps_per_epoch=2", "--epochs=2", "--epochs_decay=0"]
    result = _as_new_user(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert not FOREIGN.search(output), FOREIGN.search(output).group(0)
    # One line per epoch (stdout is not a terminal here: no bar).
    assert re.findall(r"^epoch (\d)/2: [\d.]+ s; ", result.stdout, re.MULTILINE) == ["1", "2"]
    assert result.stderr == ""


@pytest.mark.slow
def test_a_user_error_is_the_only_line(tmp_path):
    result = _as_new_user(
        "-m", "tfmri.evaluate", f"--data_dir={tmp_path}/none", f"--model_dir={tmp_path}"
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"error: --data_dir={tmp_path}/none: no such directory; convert data there with "
        "python -m tfmri.convert\n"
    )


def test_only_user_errors_are_one_liners():
    @cli.user_errors_to_exit
    def user_mistake(argv):
        raise UserError("--flag=1: use 2")

    @cli.user_errors_to_exit
    def bug(argv):
        raise ValueError("an internal shape mismatch")

    with pytest.raises(SystemExit) as exited:
        user_mistake([])
    assert exited.value.code == 1
    with pytest.raises(ValueError, match="internal shape mismatch"):
        bug([])
