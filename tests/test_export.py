"""SavedModel export: layout, signatures, equality with the Keras model, bad requests."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT, run_module, run_tool
from tfmri.data import fastmri_files, masks, pipeline, transforms
from tfmri.models import pix2pix
from tfmri.training import checkpoints

SPEC = masks.MaskSpec("random", (0.04,), (8,))


def test_layout_versions_and_no_overwrite(exported):
    model_dir, export_dir, common = exported
    assert os.path.exists(os.path.join(export_dir, "knee", "1", "saved_model.pb"))
    again = run_module(
        "-m", "tfmri.export", *common, "--model_name=knee", f"--export_dir={export_dir}"
    )
    assert again.returncode == 0 and os.path.isdir(os.path.join(export_dir, "knee", "2"))
    taken = run_module(
        "-m",
        "tfmri.export",
        *common,
        "--model_name=knee",
        f"--export_dir={export_dir}",
        "--version=1",
    )
    assert taken.returncode == 1 and "never overwritten" in taken.stderr.strip().splitlines()[-1]
    assert not glob.glob(os.path.join(export_dir, "knee", ".*"))


def test_saved_model_cli_lists_both_signatures(exported):
    _, export_dir, _ = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run(
        [cli, "show", "--dir", os.path.join(export_dir, "knee", "1"), "--all"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    assert "signature_def['serving_default']" in text and "signature_def['zero_filled']" in text
    for name in ("kspace_real", "kspace_imag", "mask", "image", "reconstruction"):
        assert f"['{name}']" in text
    assert "DT_COMPLEX" not in text and "DT_FLOAT" in text
    assert "shape: (-1, -1, -1)" in text and "shape: (-1, 320, 320)" in text


LOAD_SCRIPT = """
import sys, numpy as np, tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
data = np.load(sys.argv[2])
out = loaded.signatures["serving_default"](
    kspace_real=tf.constant(data["real"]), kspace_imag=tf.constant(data["imag"]),
    mask=tf.constant(data["mask"]))
image = loaded.signatures["zero_filled"](image=tf.constant(data["zero_filled"]))
np.savez(sys.argv[3], kspace=out["reconstruction"].numpy(), image=image["reconstruction"].numpy())
"""


def test_fresh_process_signatures_equal_the_keras_model(exported, singlecoil_raw, tmp_path):
    model_dir, export_dir, _ = exported
    model = pix2pix.ReconstructionModel.from_config(checkpoints.read_model_config(model_dir))
    checkpoints.restore_weights(model, model_dir)
    # The Keras model on the pipeline's evaluation batch (fixed fastMRI masks).
    options = pipeline.PipelineOptions(SPEC, batch_size=3)
    inputs, _ = next(
        iter(pipeline.make_dataset(_records_of(model_dir), "singlecoil_val", options, False))
    )
    expected = transforms.denormalize(
        model(inputs)[..., 0], inputs["mean"][:, None, None], inputs["std"][:, None, None]
    ).numpy()
    # The same slices as a client would send them: raw k-space and the volume's mask.
    name = inputs["volume"].numpy()[0].decode()
    assert set(inputs["volume"].numpy()) == {name.encode()}  # one volume in the batch
    volume = fastmri_files.read_volume(os.path.join(singlecoil_raw, "singlecoil_val", name))
    indices = inputs["slice_index"].numpy()
    kspace = volume.kspace[indices]
    mask, _ = masks.MaskFunction(SPEC)(kspace.shape[-1], seed=masks.volume_seed(name))
    zero_filled = transforms.denormalize(
        inputs["zero_filled"][..., 0], inputs["mean"][:, None, None], inputs["std"][:, None, None]
    ).numpy()
    request = tmp_path / "request.npz"
    np.savez(
        request,
        real=kspace.real.astype(np.float32),
        imag=kspace.imag.astype(np.float32),
        mask=np.tile(mask, (len(indices), 1)).astype(np.float32),
        zero_filled=zero_filled.astype(np.float32),
    )
    response = tmp_path / "response.npz"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_SCRIPT,
            os.path.join(export_dir, "knee", "1"),
            request,
            response,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = np.load(response)
    scale = np.abs(expected).max()
    assert served["kspace"].shape == expected.shape == (len(indices), 320, 320)
    np.testing.assert_allclose(served["kspace"], expected, atol=1e-5 * scale)
    # zero_filled: the clamped input the pipeline gives differs from the raw image only
    # where the clamp bites, so compare where it does not.
    unclamped = np.abs(inputs["zero_filled"].numpy()[..., 0]) < 6
    np.testing.assert_allclose(
        served["image"][unclamped], served["kspace"][unclamped], atol=1e-4 * scale
    )


def _records_of(model_dir):
    flags_file = os.path.join(model_dir, "flags.cfg")
    for line in open(flags_file):
        if line.startswith("--data_dir="):
            return line.strip().split("=", 1)[1]
    raise AssertionError("no --data_dir in flags.cfg")


@pytest.fixture(scope="module")
def serving(exported):
    _, export_dir, _ = exported
    return tf.saved_model.load(os.path.join(export_dir, "knee", "1")).signatures["serving_default"]


def _request(batch=1, height=640, width=368):
    rng = np.random.default_rng(0)
    real = rng.standard_normal((batch, height, width)).astype(np.float32) * 1e-4
    mask = np.zeros((batch, width), np.float32)
    mask[:, width // 2 - 8 : width // 2 + 8] = 1
    mask[:, ::8] = 1
    return real, real.copy(), mask


def test_batch_and_width_are_dynamic(serving):
    for batch, width in ((1, 368), (3, 372)):
        real, imag, mask = _request(batch, width=width)
        out = serving(kspace_real=real, kspace_imag=imag, mask=mask)["reconstruction"]
        assert out.shape == (batch, 320, 320) and out.dtype == tf.float32


def test_nan_in_a_request_fails_it_naming_the_input(serving):
    real, imag, mask = _request()
    real[0, 10, 10] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="kspace_real holds NaN"):
        serving(kspace_real=real, kspace_imag=imag, mask=mask)


def test_wrong_shapes_and_dtypes_fail_clearly(serving):
    real, imag, mask = _request(height=100, width=100)
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than the crop"):
        serving(kspace_real=real, kspace_imag=imag, mask=mask[:, :100])
    real, imag, mask = _request()
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask width"):
        serving(kspace_real=real, kspace_imag=imag, mask=mask[:, :300])
    # A float64 tensor (what a DT_DOUBLE request carries) is refused, not cast.
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        serving(kspace_real=tf.constant(real, tf.float64), kspace_imag=imag, mask=mask)


def test_mixed_precision_model_exports_with_float32_inputs_and_outputs(exported, tmp_path):
    model_dir, _, common = exported
    export_dir = str(tmp_path / "savedmodel")
    result = run_tool(
        "-m",
        "tfmri.export",
        *common,
        "--precision=mixed_bfloat16",
        "--model_name=bf16",
        f"--export_dir={export_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    signature = tf.saved_model.load(os.path.join(export_dir, "bf16", "1")).signatures[
        "serving_default"
    ]
    specs = signature.structured_input_signature[1]
    assert {spec.dtype for spec in specs.values()} == {tf.float32}
    real = np.zeros((1, 640, 368), np.float32)
    real[0, 320, 184] = 1e-3
    mask = np.ones((1, 368), np.float32)
    output = signature(kspace_real=real, kspace_imag=real, mask=mask)["reconstruction"]
    assert output.dtype == tf.float32 and np.all(np.isfinite(output.numpy()))
