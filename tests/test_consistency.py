"""k-space data consistency: hybrid-space measured data, column replacement, training."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import run_module
from tfmri.data import coils, masks, pipeline, transforms
from tfmri.models import consistency

SPEC = masks.MaskSpec("random", (0.04,), (8,))


def _numpy_measured_rows(kspace, mask, height):
    """Independent reference: centred orthonormal inverse FFT over H, then the row crop."""
    shifted = np.fft.ifftshift(kspace * mask, axes=-2)
    rows = np.fft.fftshift(np.fft.ifft(shifted, axis=-2, norm="ortho"), axes=-2)
    top = (rows.shape[-2] - height) // 2
    return rows[..., top : top + height, :]


def test_measured_rows_match_numpy():
    rng = np.random.default_rng(0)
    kspace = (rng.standard_normal((40, 30)) + 1j * rng.standard_normal((40, 30))).astype(
        np.complex64
    )
    mask, _ = masks.MaskFunction(masks.MaskSpec("random", (0.1,), (4,)))(30, seed=(1, 2))
    actual = transforms.measured_rows(tf.constant(kspace), tf.constant(mask), 16).numpy()
    np.testing.assert_allclose(actual, _numpy_measured_rows(kspace, mask, 16), atol=1e-5)
    assert np.all(actual[:, mask == 0] == 0)


def _validation_batches(records):
    options = pipeline.PipelineOptions(SPEC, batch_size=2, data_consistency=True)
    return list(pipeline.make_dataset(records, "singlecoil_val", options, training=False))


def test_consistency_is_the_identity_on_the_zero_filled_image(singlecoil_records):
    for inputs, _ in _validation_batches(singlecoil_records):
        image = transforms.center_crop(transforms.columns_to_image(inputs["measured"]), 320, 320)
        mean = inputs["mean"][:, None, None]
        std = inputs["std"][:, None, None]
        unclamped = ((tf.abs(image) - mean) / (std + transforms.NORMALIZATION_EPS))[..., None]
        output = consistency.apply(unclamped, inputs)
        np.testing.assert_allclose(output.numpy(), unclamped.numpy(), atol=1e-4)


def test_sampled_columns_are_the_measured_ones(singlecoil_records):
    inputs, target = _validation_batches(singlecoil_records)[0]
    mean, std = inputs["mean"][:, None, None], inputs["std"][:, None, None]
    prediction = transforms.denormalize(target[..., 0], mean, std)  # anything but zero-filled
    hybrid = consistency.consistent_hybrid(prediction, inputs["measured"], inputs["mask"])
    sampled = inputs["mask"].numpy() > 0
    measured = inputs["measured"].numpy()
    np.testing.assert_array_equal(hybrid.numpy()[:, :, sampled[0]], measured[:, :, sampled[0]])
    # The unsampled columns come from the prediction, not from the (zero) measurement.
    assert np.abs(hybrid.numpy()[:, :, ~sampled[0]]).mean() > 0.01 * np.abs(measured).mean()


def test_consistency_has_finite_gradients(singlecoil_records):
    inputs, _ = _validation_batches(singlecoil_records)[0]
    normalized = tf.Variable(tf.zeros_like(inputs["zero_filled"]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.abs(consistency.apply(normalized, inputs)))
    gradient = tape.gradient(loss, normalized)
    assert np.all(np.isfinite(gradient.numpy())) and np.abs(gradient.numpy()).max() > 0


def _multicoil_batches(records, split="multicoil_val"):
    options = pipeline.PipelineOptions(SPEC, batch_size=2, data_consistency=True)
    return list(pipeline.make_dataset(records, split, options, training=False))


def test_multicoil_sampled_columns_are_the_measured_ones_coil_by_coil(multicoil_records):
    _, records = multicoil_records
    inputs, target = _multicoil_batches(records)[0]
    measured, mask = inputs["measured"], inputs["mask"]
    assert measured.shape.rank == 4 and measured.shape[1] == 4  # [B, coils, S, W]
    mean, std = inputs["mean"][:, None, None], inputs["std"][:, None, None]
    prediction = transforms.denormalize(target[..., 0], mean, std)
    maps = coils.estimate_maps(measured, mask)
    hybrid = consistency.consistent_hybrid(prediction, measured, mask, maps).numpy()
    sampled = mask.numpy()[0] > 0
    np.testing.assert_array_equal(hybrid[..., sampled], measured.numpy()[..., sampled])
    assert np.abs(hybrid[..., ~sampled]).mean() > 0.01 * np.abs(measured.numpy()).mean()


def test_multicoil_consistency_keeps_the_zero_filled_rss_and_has_finite_gradients(
    multicoil_records,
):
    _, records = multicoil_records
    inputs, _ = _multicoil_batches(records)[0]
    # The zero-filled RSS image, put through data consistency, stays close to itself
    # (exactly where the maps describe the coils; the centre-estimated maps are smooth).
    image = transforms.rss(
        transforms.center_crop(transforms.columns_to_image(inputs["measured"]), 320, 320)
    )
    mean, std = inputs["mean"][:, None, None], inputs["std"][:, None, None]
    unclamped = ((image - mean) / (std + transforms.NORMALIZATION_EPS))[..., None]
    output = consistency.apply(unclamped, inputs).numpy()
    relative = np.linalg.norm(output - unclamped.numpy()) / np.linalg.norm(unclamped.numpy())
    assert relative < 0.05, relative
    normalized = tf.Variable(tf.zeros_like(inputs["zero_filled"]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.abs(consistency.apply(normalized, inputs)))
    gradient = tape.gradient(loss, normalized)
    assert np.all(np.isfinite(gradient.numpy())) and np.abs(gradient.numpy()).max() > 0


@pytest.mark.slow
def test_multicoil_training_and_evaluation_with_data_consistency(multicoil_records, tmp_path):
    _, records = multicoil_records
    model_dir = str(tmp_path / "run")
    common = [f"--data_dir={records}", f"--model_dir={model_dir}"]
    common += ["--train_split=multicoil_train", "--val_split=multicoil_val"]
    tiny = ["--depth=3", "--base_filters=4", "--d_base_filters=4", "--norm=instance"]
    tiny += ["--d_norm=instance", "--dropout=0", "--batch_size=1", "--data_consistency"]
    result = run_module("-m", "tfmri.train", *common, *tiny, "--epochs=1", "--epochs_decay=0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val_ssim" in result.stdout + result.stderr
    result = run_module("-m", "tfmri.evaluate", f"--flagfile={model_dir}/flags.cfg")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.load(open(os.path.join(model_dir, "eval", "metrics.json")))
    assert {row["method"] for row in report["volumes"]} == {"zero_filled", "pix2pix"}
    assert all(np.isfinite(row["ssim"]) for row in report["volumes"])


@pytest.mark.slow
def test_training_and_evaluation_with_data_consistency(singlecoil_records, tmp_path):
    model_dir = str(tmp_path / "run")
    common = [f"--data_dir={singlecoil_records}", f"--model_dir={model_dir}"]
    tiny = ["--depth=3", "--base_filters=4", "--d_base_filters=4", "--norm=instance"]
    tiny += ["--d_norm=instance", "--dropout=0", "--batch_size=2", "--data_consistency"]
    result = run_module("-m", "tfmri.train", *common, *tiny, "--epochs=1", "--epochs_decay=0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.load(open(os.path.join(model_dir, "model.json")))["config"]["data_consistency"]
    result = run_module("-m", "tfmri.evaluate", f"--flagfile={model_dir}/flags.cfg")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.load(open(os.path.join(model_dir, "eval", "metrics.json")))
    assert {row["method"] for row in report["volumes"]} == {"zero_filled", "pix2pix"}
