"""The main job (python -m tfmri.demo) ends with a servable SavedModel, shrunk to seconds."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from tests.conftest import run_tool

# The main job, run end to end in processes of its own: minutes on 2 cores.
pytestmark = pytest.mark.slow

# The demo's steps, on 4 volumes x 3 slices and one training epoch per run.
QUICK = [
    "--num_volumes=4",
    "--num_slices=3",
    "--train_flag=--epochs=1",
    "--train_flag=--epochs_decay=0",
]

# Loads the export in a process of its own and reconstructs a test file through its
# serving_default signature with the file's own mask; prints the result as JSON.
LOAD_AND_CALL = """
import json, sys
import h5py, numpy as np, tensorflow as tf
signature = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
with h5py.File(sys.argv[2]) as handle:
    kspace, mask = handle["kspace"][()], handle["mask"][()].astype(np.float32)
masked = kspace * mask
out = signature(
    kspace_real=tf.constant(masked.real, tf.float32),
    kspace_imag=tf.constant(masked.imag, tf.float32),
    mask=tf.constant(np.repeat(mask[None], len(kspace), axis=0)),
)["reconstruction"].numpy()
print(json.dumps(out.tolist()))
"""


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    workdir, export_dir = root / "runs", root / "savedmodel"
    result = run_tool(
        "-m",
        "tfmri.demo",
        f"--workdir={workdir}",
        f"--export_dir={export_dir}",
        *QUICK,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, export_dir, result.stdout


def test_main_job_exports_the_best_validation_run_and_prints_how_to_serve_it(demo_run):
    workdir, export_dir, stdout = demo_run
    with open(workdir / "report" / "report.json") as handle:
        summary = json.load(handle)["results"][0]["summary"]
    learned = ("unet", "pix2pix", "cs_cascade")
    best = max(learned, key=lambda method: summary[method]["ssim"]["mean"])
    assert f"== recommended: {best} ({best}," in stdout
    with open(workdir / "savedmodel.json") as handle:
        record = json.load(handle)
    assert record["saved_model"] == str(export_dir / "demo" / "1")
    assert record["checkpoint"].startswith(str(workdir / best / "ckpt-"))
    assert os.path.isfile(export_dir / "demo" / "1" / "saved_model.pb")
    assert f"-v {export_dir / 'demo'}:/models/demo -e MODEL_NAME=demo tensorflow/serving" in stdout
    assert "python -m tfmri.client --input=" in stdout
    assert "--model_name=demo" in stdout


def test_main_job_savedmodel_in_a_fresh_process_equals_its_reconstructions(demo_run):
    workdir, export_dir, _ = demo_run
    test_dir = workdir / "fastmri" / "singlecoil_test"
    names = sorted(os.listdir(test_dir))
    assert names and sorted(os.listdir(workdir / "reconstructions")) == names
    fresh = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_AND_CALL,
            str(export_dir / "demo" / "1"),
            str(test_dir / names[0]),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    served = np.array(json.loads(fresh.stdout.strip().splitlines()[-1]), np.float32)
    with h5py.File(workdir / "reconstructions" / names[0]) as handle:
        reconstructed = handle["reconstruction"][()]
    assert reconstructed.shape == served.shape and served.shape[1:] == (320, 320)
    assert np.abs(served).max() > 0
    np.testing.assert_allclose(reconstructed, served, rtol=0, atol=1e-5 * np.abs(served).max())


def test_main_job_scores_the_real_anatomy_check_set(demo_run):
    workdir, _, stdout = demo_run
    with open(workdir / "report" / "report.json") as handle:
        document = json.load(handle)
    assert document["check"]["data_dir"] == str(workdir / "anatomy_tfrecords")
    (check,) = [r for r in document["results"] if r["data"] == "check"]
    assert set(check["summary"]) == {"zero_filled", "cs_tv", "unet", "pix2pix", "cs_cascade"}
    assert {row["volume"] for row in check["volumes"]} == {
        name for name in os.listdir(workdir / "anatomy" / "singlecoil_val")
    }
    assert "== check set 8x" in stdout
    # The demo data are photographs made MR-like, and the runs keep the measured data.
    with open(workdir / "fastmri" / "source.json") as handle:
        assert json.load(handle)["source"] == "natural"
    with open(workdir / "unet" / "model.json") as handle:
        assert json.load(handle)["config"]["data_consistency"]


def test_main_job_refuses_to_mix_data_sources(tmp_path):
    raw = tmp_path / "runs" / "fastmri"
    raw.mkdir(parents=True)
    (raw / "source.json").write_text('{"source": "knee"}')
    result = run_tool("-m", "tfmri.demo", f"--workdir={tmp_path / 'runs'}", *QUICK)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "--data_source=natural" in last and "knee" in last
    assert os.listdir(raw) == ["source.json"]


# tfmri.demo defines a --data_consistency of its own: it is imported only in processes
# of its own, never next to the training flags.
LIST_RUNS = """
import json
from tfmri import demo
config = demo.DemoConfig("w", "e", with_4x=True, with_cascade=True)
print(json.dumps([[n for n, _ in config.runs()], [n for n, _ in config.runs(only_8x=True)]]))
print(json.dumps([n for n, _ in demo.DemoConfig("w", "e", data_consistency=False).runs()]))
"""


def test_with_cascade_trains_the_cascade_runs_next_to_the_unet_ones(tmp_path):
    listed = run_tool("-c", LIST_RUNS)
    assert listed.returncode == 0, listed.stderr[-3000:]
    *_, both, without_consistency = listed.stdout.strip().splitlines()
    names, names_8x = json.loads(both)
    # Without data consistency the cascades, which need it, are left out.
    assert json.loads(without_consistency) == ["pix2pix_nodc", "unet_nodc"]
    assert names == [
        "pix2pix",
        "unet",
        "cs_cascade",
        "pix2pix_cascade",
        "cascade",
        "pix2pix_4x",
        "unet_4x",
        "cs_cascade_4x",
        "pix2pix_cascade_4x",
        "cascade_4x",
    ]
    assert names_8x == names[:5]
    result = run_tool(
        "-m",
        "tfmri.demo",
        f"--workdir={tmp_path / 'runs'}",
        "--with_cascade",
        "--nodata_consistency",
    )
    assert result.returncode == 1
    assert "--with_cascade --nodata_consistency" in result.stderr.strip().splitlines()[-1]
    assert not os.path.exists(tmp_path / "runs")
