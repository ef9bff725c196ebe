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


@pytest.mark.slow
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


@pytest.mark.slow
def test_fresh_process_signatures_equal_the_keras_model(exported, singlecoil_raw, tmp_path):
    model_dir, export_dir, _ = exported
    model = pix2pix.ReconstructionModel.from_config(checkpoints.read_model_config(model_dir))
    checkpoints.restore_weights(model, model_dir)
    # The Keras model on the pipeline's evaluation batch (fixed fastMRI masks).
    options = pipeline.PipelineOptions(SPEC, batch_size=3)
    inputs, _ = next(
        iter(pipeline.make_dataset(_records_of(model_dir), "singlecoil_val", options, False))
    )
    expected = transforms.denormalize_per_slice(
        model(inputs)[..., 0], inputs["mean"], inputs["std"], inputs["scale"]
    ).numpy()
    # The same slices as a client would send them: raw k-space and the volume's mask.
    name = inputs["volume"].numpy()[0].decode()
    assert set(inputs["volume"].numpy()) == {name.encode()}  # one volume in the batch
    volume = fastmri_files.read_volume(os.path.join(singlecoil_raw, "singlecoil_val", name))
    indices = inputs["slice_index"].numpy()
    kspace = volume.kspace[indices]
    mask, _ = masks.MaskFunction(SPEC)(kspace.shape[-1], seed=masks.volume_seed(name))
    zero_filled = transforms.denormalize_per_slice(
        inputs["zero_filled"][..., 0], inputs["mean"], inputs["std"], inputs["scale"]
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


@pytest.mark.slow
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


SCALES = [1e-30, 1e-20, 1e-10, 1e-3, 1.0, 7.3, 1e10, 1e20, 1e30]


@pytest.fixture(scope="module")
def volume_request(singlecoil_raw):
    """Two slices of a validation volume as a client sends them, complex128 [2, H, W],
    and their mask float32 [2, W]."""
    directory = os.path.join(singlecoil_raw, "singlecoil_val")
    volume = fastmri_files.read_volume(os.path.join(directory, sorted(os.listdir(directory))[0]))
    mask, _ = masks.MaskFunction(SPEC)(volume.kspace.shape[-1], seed=0)
    kspace = volume.kspace[:2].astype(np.complex128) * mask
    return kspace, np.tile(mask, (2, 1)).astype(np.float32)


def _relative_error(answer, expected):
    return np.linalg.norm(answer - expected) / np.linalg.norm(expected)


def test_kspace_times_c_gives_the_reconstruction_times_c(serving, volume_request):
    kspace, mask = volume_request
    reference = serving(
        kspace_real=kspace.real.astype(np.float32),
        kspace_imag=kspace.imag.astype(np.float32),
        mask=mask,
    )["reconstruction"].numpy()
    assert np.all(np.isfinite(reference)) and np.abs(reference).max() > 0
    errors = {}
    for c in SCALES:
        scaled = kspace * c  # in float64, then rounded once to float32
        answer = serving(
            kspace_real=scaled.real.astype(np.float32),
            kspace_imag=scaled.imag.astype(np.float32),
            mask=mask,
        )["reconstruction"].numpy()
        assert answer.shape == reference.shape and np.all(np.isfinite(answer)), c
        errors[c] = _relative_error(answer.astype(np.float64), c * reference.astype(np.float64))
    assert max(errors.values()) <= 1e-4, errors


def _zero_filled_image(kspace, size=320):
    """NumPy's |centre crop of the orthonormal centred 2-D inverse FFT|, [B, size, size]."""
    image = np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    top, left = (image.shape[-2] - size) // 2, (image.shape[-1] - size) // 2
    return np.abs(image[..., top : top + size, left : left + size])


def test_zero_filled_image_times_c_gives_the_reconstruction_times_c(exported, volume_request):
    _, export_dir, _ = exported
    signature = tf.saved_model.load(os.path.join(export_dir, "knee", "1")).signatures["zero_filled"]
    image = _zero_filled_image(volume_request[0])
    reference = signature(image=image.astype(np.float32))["reconstruction"].numpy()
    assert np.all(np.isfinite(reference)) and np.abs(reference).max() > 0
    errors = {}
    for c in SCALES:
        answer = signature(image=(image * c).astype(np.float32))["reconstruction"].numpy()
        assert np.all(np.isfinite(answer)), c
        errors[c] = _relative_error(answer.astype(np.float64), c * reference.astype(np.float64))
    assert max(errors.values()) <= 1e-4, errors


def test_bad_masks_and_batches_fail_naming_the_input_before_any_gather(serving):
    real, imag, mask = _request(batch=3)
    one_empty_row = mask.copy()
    one_empty_row[1] = 0
    cases = [
        ((real, imag, mask * 2), r"mask holds values other than 0 and 1.*\[2 2 2"),
        ((real, imag, np.zeros_like(mask)), r"mask samples no column in the rows.*\[0 1 2\]"),
        ((real, imag, one_empty_row), r"mask samples no column in the rows.*\] \[1\] \["),
        ((real, imag, mask[:1]), r"mask batch != k-space batch"),
        ((real[:0], imag[:0], mask[:0]), r"kspace_real holds no slice"),
    ]
    for (r, i, m), message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message) as raised:
            serving(kspace_real=r, kspace_imag=i, mask=m)
        assert "indices[" not in raised.value.message


def test_a_reconstruction_that_overflows_float32_is_refused_naming_the_input(serving):
    # Flat k-space is a delta in the image, sqrt(H * W) = 485 times the k-space value:
    # 3e38 there is beyond float32 (3.4e38) whatever the model does.
    real = np.full((1, 640, 368), 3e38, np.float32)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match="reconstruction is not finite: kspace_real/kspace_imag too large for float32",
    ):
        serving(
            kspace_real=real, kspace_imag=np.zeros_like(real), mask=np.ones((1, 368), np.float32)
        )


def test_a_non_finite_model_output_is_refused_and_blamed_on_the_model():
    from tfmri.serving import export

    reconstruction = tf.constant([[[1.0, np.nan], [0.0, 1.0]]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="the model gives NaN or infinity"):
        export._scaled_back(reconstruction, tf.constant([1.0]), "image")
    scaled = export._scaled_back(tf.constant([[[1.5, -3.0]]]), tf.constant([2.0**-120]), "image")
    np.testing.assert_array_equal(scaled.numpy(), np.array([[[1.5, -3.0]]]) * 2.0**-120)


def _warmup_requests(version_dir):
    from tensorflow_serving.apis import prediction_log_pb2

    from tfmri.serving import export

    path = os.path.join(version_dir, export.WARMUP_FILE)
    logs = [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(path)
    ]
    return [log.predict_log.request for log in logs]


def test_the_export_holds_warmup_requests_that_its_signature_answers(exported, serving):
    """TF Serving runs assets.extra/tf_serving_warmup_requests at load: each must be a
    serving_default request of the model that answers a finite [B, 320, 320] image."""
    from tfmri.serving import client, export

    _, export_dir, _ = exported
    requests = _warmup_requests(os.path.join(export_dir, "knee", "1"))
    assert [len(client.decode_grpc_request(r)["mask"]) for r in requests] == list(
        export.WARMUP_BATCHES
    )
    for request in requests:
        assert request.model_spec.name == "knee"
        assert request.model_spec.signature_name == "serving_default"
        inputs = client.decode_grpc_request(request)
        answer = serving(**{name: tf.constant(value) for name, value in inputs.items()})
        image = answer["reconstruction"].numpy()
        assert image.shape == (len(inputs["mask"]), 320, 320) and np.isfinite(image).all()


def test_warmup_requests_are_small_and_multicoil_ones_carry_a_coil_axis():
    from tfmri.serving import client, export

    single = client.decode_grpc_request(export.warmup_request(8, 320, False, "knee"))
    multi = client.decode_grpc_request(export.warmup_request(8, 320, True, "knee"))
    assert single["kspace_real"].shape == (8, 640, 320)
    assert multi["kspace_real"].shape == (8, 1, 640, 320) and multi["mask"].shape == (8, 320)
    assert (multi["mask"] == 1).all() and (multi["kspace_imag"] == np.float32(1e-4)).all()
    assert export.warmup_request(8, 320, True, "knee").ByteSize() < 1000
