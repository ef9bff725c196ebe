"""The shipped knee recipe's architecture end to end, on small data.

configs/knee_singlecoil_8x_pix2pix.cfg as it is (batch norm, depth 6 on 320 x 320,
whose innermost down convolution (10 x 10 -> 5 x 5) runs as a matrix product, dropout 0.5,
PixelGAN), only narrower and shorter: train, kill and resume, export, reload the
export in a fresh process, evaluate.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT, kill_after_checkpoint, run_tool
from tfmri.data import fastmri_files, masks, pipeline, transforms
from tfmri.models import matmul_conv, pix2pix
from tfmri.training import checkpoints

# One training of the knee recipe, killed and resumed in processes of its own.
pytestmark = pytest.mark.slow

RECIPE = os.path.join(ROOT, "configs", "knee_singlecoil_8x_pix2pix.cfg")
SMALLER = [
    "--base_filters=4",
    "--d_base_filters=4",
    "--batch_size=2",
    "--epochs=3",
    "--max_steps_per_epoch=2",
    "--checkpoint_every_steps=1",
    "--num_images=1",
]
SPEC = masks.MaskSpec("random", (0.04,), (8,))

LOAD_AND_CALL = """
import sys, numpy as np, tensorflow as tf
signature = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
data = np.load(sys.argv[2])
out = signature(kspace_real=tf.constant(data["real"]), kspace_imag=tf.constant(data["imag"]),
                mask=tf.constant(data["mask"]))["reconstruction"].numpy()
np.save(sys.argv[3], out)
"""


@pytest.fixture(scope="module")
def knee_run(singlecoil_records, tmp_path_factory):
    """The recipe trained 3 x 2 steps, killed after its first checkpoint and resumed."""
    model_dir = str(tmp_path_factory.mktemp("knee") / "run")
    args = ["-m", "tfmri.train", f"--flagfile={RECIPE}", f"--data_dir={singlecoil_records}"]
    args += [f"--model_dir={model_dir}", *SMALLER]
    killed_at = kill_after_checkpoint(args, model_dir, 1)
    assert killed_at < 6
    resumed = run_tool(*args, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {model_dir}/ckpt-{killed_at}" in resumed.stdout
    return model_dir


def test_recipe_architecture_is_what_the_knee_config_says(knee_run):
    config = checkpoints.read_model_config(knee_run)["config"]
    assert (config["norm"], config["depth"], config["dropout"]) == ("batch", 6, 0.5)
    assert config["discriminator"] == "pixel"
    model = pix2pix.ReconstructionModel(config)
    kinds = {type(layer) for layer in model.generator.layers}
    assert matmul_conv.MatmulConv2D in kinds  # the innermost down convolution, 10 -> 5
    assert tf.train.latest_checkpoint(knee_run).endswith("ckpt-6")


def test_recipe_exports_and_a_fresh_process_serves_what_keras_computes(
    knee_run, singlecoil_raw, singlecoil_records, tmp_path
):
    export_dir = str(tmp_path / "savedmodel")
    result = run_tool(
        "-m",
        "tfmri.export",
        f"--flagfile={knee_run}/flags.cfg",
        "--model_name=knee",
        f"--export_dir={export_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model, _ = checkpoints.load_model(knee_run)
    options = pipeline.PipelineOptions(SPEC, batch_size=2)
    inputs, _ = next(
        iter(pipeline.make_dataset(singlecoil_records, "singlecoil_val", options, False))
    )
    expected = transforms.denormalize_per_slice(
        model(inputs, training=False)[..., 0], inputs["mean"], inputs["std"], inputs["scale"]
    ).numpy()
    name = inputs["volume"].numpy()[0].decode()
    volume = fastmri_files.read_volume(os.path.join(singlecoil_raw, "singlecoil_val", name))
    kspace = volume.kspace[inputs["slice_index"].numpy()]
    mask, _ = masks.MaskFunction(SPEC)(kspace.shape[-1], seed=masks.volume_seed(name))
    request, response = tmp_path / "request.npz", tmp_path / "response.npy"
    masked = kspace * mask
    np.savez(
        request,
        real=masked.real.astype(np.float32),
        imag=masked.imag.astype(np.float32),
        mask=np.tile(mask, (len(kspace), 1)).astype(np.float32),
    )
    fresh = subprocess.run(
        [sys.executable, "-c", LOAD_AND_CALL, f"{export_dir}/knee/1", request, response],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    served = np.load(response)
    assert served.shape == expected.shape == (len(kspace), 320, 320)
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_recipe_evaluates(knee_run, tmp_path):
    result = run_tool(
        "-m", "tfmri.evaluate", f"--flagfile={knee_run}/flags.cfg", f"--output_dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "metrics.json") as handle:
        rows = json.load(handle)["volumes"]
    assert {row["method"] for row in rows} == {"zero_filled", "pix2pix"}
    assert all(np.isfinite(row[name]) for row in rows for name in ("nmse", "psnr", "ssim"))
