"""The cascade generator: data consistency after every stage, zero stages = zero-filled,
finite gradients, training (mirrored, every precision, resume), export and serving."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import (
    assert_generator_weights_finite,
    report_8x,
    run_tool,
    train_resume_export,
)
from tfmri.baselines import cs_tv
from tfmri.data import coils, fastmri_files, masks, pipeline, transforms
from tfmri.models import cascade, consistency, networks, pix2pix
from tfmri.serving import client
from tfmri.training import checkpoints

SPEC = masks.MaskSpec("random", (0.04,), (8,))
TINY = ["--generator=cascade", "--cascades=2", "--depth=3", "--base_filters=4"]
TINY += ["--d_base_filters=4", "--norm=instance", "--d_norm=instance", "--dropout=0"]
TINY += ["--data_consistency"]


def val_batch(records, split="singlecoil_val", batch_size=2):
    options = pipeline.PipelineOptions(SPEC, batch_size=batch_size, data_consistency=True)
    inputs, target = next(iter(pipeline.make_dataset(records, split, options, training=False)))
    return inputs, target


def _config(**changes):
    fields = dict(
        image_size=320,
        depth=3,
        base_filters=4,
        dropout=0.0,
        norm="instance",
        d_base_filters=4,
        d_norm="instance",
        generator="cascade",
        cascades=2,
        data_consistency=True,
    )
    return pix2pix.ModelConfig(**{**fields, **changes})


def _randomized(generator, seed=0):
    """The generator with every weight random (the stages' last layers start at zero)."""
    rng = np.random.default_rng(seed)
    for variable in generator.trainable_variables:
        variable.assign(0.05 * rng.standard_normal(variable.shape).astype(np.float32))
    return generator


def test_put_back_keeps_the_measured_columns_exactly():
    rng = np.random.default_rng(0)
    for shape in ((2, 16, 24), (2, 3, 16, 24)):  # single-coil, 3 coils
        measured = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(
            np.complex64
        )
        mask = (rng.random((2, 24)) < 0.4).astype(np.float32)
        measured *= mask.reshape(2, *[1] * (len(shape) - 2), 24)
        images = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
        hybrid = consistency.put_back(tf.constant(images), tf.constant(measured), mask).numpy()
        sampled = mask.astype(bool)
        for index in range(2):
            kept = hybrid[index][..., sampled[index]]
            np.testing.assert_array_equal(kept, measured[index][..., sampled[index]])
        columns = transforms.image_to_columns(images).numpy()
        for index in range(2):
            unsampled = ~sampled[index]
            np.testing.assert_array_equal(
                hybrid[index][..., unsampled], columns[index][..., unsampled]
            )


def test_every_stage_output_keeps_the_measured_columns(singlecoil_records):
    inputs, _ = val_batch(singlecoil_records)
    generator = _randomized(_config(cascades=3).build_generator())
    image = generator.complex_image(inputs)
    # Back in the measured units: the cascade divides by the slice's std.
    scale = tf.cast(inputs["std"] + transforms.NORMALIZATION_EPS, tf.complex64)[:, None, None]
    columns = (transforms.image_to_columns(image) * scale).numpy()
    measured = inputs["measured"].numpy()
    for index, mask in enumerate(inputs["mask"].numpy().astype(bool)):
        expected = measured[index][:, mask]
        np.testing.assert_allclose(
            columns[index][:, mask], expected, atol=1e-5 * np.abs(expected).max()
        )
    # The learned stages did change the image: the unsampled columns are not zero-filled.
    unsampled = ~inputs["mask"].numpy()[0].astype(bool)
    assert np.abs(columns[0][:, unsampled]).max() > 1e-3 * np.abs(measured[0]).max()


def test_zero_stages_give_the_zero_filled_image(singlecoil_records):
    inputs, _ = val_batch(singlecoil_records)
    output = cascade.CascadeGenerator(320, 0)(inputs)
    image = transforms.denormalize_per_slice(
        output[..., 0], inputs["mean"], inputs["std"], inputs["scale"]
    )
    expected = inputs["zero_filled_image"].numpy()
    np.testing.assert_allclose(image.numpy(), expected, atol=1e-5 * expected.max())


def test_zero_stages_on_multicoil_data_give_the_maps_combined_image(multicoil_records):
    _, records = multicoil_records
    inputs, _ = val_batch(records, "multicoil_val", batch_size=1)
    output = cascade.CascadeGenerator(320, 0)(inputs)
    image = transforms.denormalize_per_slice(output[..., 0], inputs["mean"], inputs["std"])
    maps = coils.estimate_maps(inputs["measured"], inputs["mask"])
    combined = coils.combine(transforms.columns_to_image(inputs["measured"]), maps)
    expected = np.abs(transforms.crop_width(combined, 320).numpy())
    np.testing.assert_allclose(image.numpy(), expected, atol=1e-5 * expected.max())


# From the zero-filled image, and from CS-TV (no gradient through it; few iterations).
CS_TV_START = dict(cascade_start="cs_tv", start_cs_lambda=0.01, start_cs_iterations=5)


@pytest.mark.parametrize("start", [{}, CS_TV_START], ids=["zero_filled", "cs_tv"])
def test_gradients_are_finite_and_reach_every_stage(singlecoil_records, start):
    inputs, target = val_batch(singlecoil_records)
    model = pix2pix.ReconstructionModel(_config(cascades=3, **start))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.abs(model(inputs, training=True) - target))
    variables = model.generator.trainable_variables
    gradients = tape.gradient(loss, variables)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in gradients)
    for stage in model.generator.networks:
        kernel = stage.get_layer("out_conv").kernel
        (gradient,) = [g for v, g in zip(variables, gradients) if v is kernel]
        assert np.abs(gradient.numpy()).max() > 0


def test_shared_weights_have_one_network_and_the_same_flops():
    shared = _config(cascades=4, share_weights=True).build_generator()
    separate = _config(cascades=4).build_generator()
    assert len(shared.networks) == 1 and len(separate.networks) == 4
    assert 4 * shared.count_params() == separate.count_params()
    assert shared.conv_flops() == separate.conv_flops() > 0


def test_conv_flops_counts_multiply_adds_by_hand():
    import keras

    image = keras.Input((8, 8, 3))
    down = keras.layers.Conv2D(5, 3, strides=2, padding="same")(image)  # 4 x 4 x 5
    up = keras.layers.Conv2DTranspose(2, 4, strides=2, padding="same")(down)  # 8 x 8 x 2
    model = keras.Model(image, up)
    # 2 FLOPs per multiply-add: (3 x 3 x 3 x 5) per output pixel of the 4 x 4 map, and
    # (4 x 4 x 5 x 2) per input pixel of the transposed convolution's 4 x 4 map.
    assert networks.conv_flops(model) == 2 * (9 * 3 * 5 * 16) + 2 * (16 * 5 * 2 * 16)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(data_consistency=False), "add --data_consistency"),
        (dict(cascades=-1), "cascades must be >= 0"),
        (dict(output_activation="tanh"), "linear output"),
        (dict(generator="resnet"), "generator must be one of unet, cascade"),
    ],
)
def test_bad_cascade_settings_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        _config(**changes)


@pytest.fixture(scope="module")
def cascade_export(singlecoil_records, tmp_path_factory):
    """A tiny cascade pix2pix trained one epoch, then resumed for a second, and its export:
    (model dir, SavedModel version dir, the first run's last step)."""
    root = str(tmp_path_factory.mktemp("cascade"))
    model_dir, saved_model, _, first_step = train_resume_export(
        singlecoil_records, root, TINY, "cascade"
    )
    return model_dir, saved_model, first_step


@pytest.mark.slow
def test_training_resumes_where_it_stopped(cascade_export):
    model_dir, _, first_step = cascade_export
    assert first_step > 0
    assert int(tf.train.latest_checkpoint(model_dir).split("-")[-1]) == 2 * first_step
    config = checkpoints.read_model_config(model_dir)["config"]
    assert config["generator"] == "cascade" and config["cascades"] == 2


def served_and_keras(model_dir, saved_model, records, raw):
    """(served, Keras) reconstructions [1, 320, 320] of one validation slice: the
    SavedModel's serving_default on the file's masked k-space, and the run's newest
    checkpoint called on the pipeline's inputs; and those inputs."""
    model = pix2pix.ReconstructionModel.from_config(checkpoints.read_model_config(model_dir))
    checkpoints.restore_weights(model, model_dir)
    inputs, _ = val_batch(records, batch_size=1)
    expected = transforms.denormalize_per_slice(
        model(inputs)[..., 0], inputs["mean"], inputs["std"], inputs["scale"]
    ).numpy()
    name = inputs["volume"].numpy()[0].decode()
    volume = fastmri_files.read_volume(os.path.join(raw, "singlecoil_val", name))
    kspace = volume.kspace[inputs["slice_index"].numpy()]
    mask = masks.fixed_volume_mask(SPEC, name, kspace.shape[-1])
    request = client.split_kspace(kspace * mask, mask)
    signature = tf.saved_model.load(saved_model).signatures["serving_default"]
    served = signature(**{key: tf.constant(value) for key, value in request.items()})
    return served["reconstruction"].numpy(), expected, inputs


@pytest.mark.slow
def test_served_cascade_equals_the_keras_model(cascade_export, singlecoil_records, singlecoil_raw):
    model_dir, saved_model, _ = cascade_export
    image, expected, inputs = served_and_keras(
        model_dir, saved_model, singlecoil_records, singlecoil_raw
    )
    assert image.shape == expected.shape == (1, 320, 320)
    np.testing.assert_allclose(image, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # The trained cascade is not the zero-filled image.
    zero_filled = inputs["zero_filled_image"].numpy()
    assert np.abs(image - zero_filled).max() > 1e-3 * zero_filled.max()


@pytest.mark.slow
def test_report_names_cascade_rows_apart_from_the_unet(cascade_export, exported, tmp_path):
    model_dir, _, _ = cascade_export
    unet_dir, _, common = exported
    (setting,) = report_8x(
        tmp_path / "report",
        common[0],
        "--methods=zero_filled,pix2pix,pix2pix_cascade",
        f"--checkpoints={unet_dir},{model_dir}",
    )["results"]
    assert set(setting["summary"]) == {"zero_filled", "pix2pix", "pix2pix_cascade"}
    cascade_rows = [row for row in setting["volumes"] if row["method"] == "pix2pix_cascade"]
    unet_rows = [row for row in setting["volumes"] if row["method"] == "pix2pix"]
    assert len(cascade_rows) == len(unet_rows) > 0
    assert [row["ssim"] for row in cascade_rows] != [row["ssim"] for row in unet_rows]


@pytest.mark.slow
@pytest.mark.parametrize("start", [[], ["--cascade_start=cs_tv", "--start_cs_iterations=5"]])
def test_multicoil_cascade_trains(multicoil_records, tmp_path, start):
    from tests.test_multicoil import train_multicoil_unet

    _, records = multicoil_records
    flags = [*TINY, *start, "--batch_size=1"]
    config = train_multicoil_unet(records, str(tmp_path / "multicoil"), *flags)
    assert config["multicoil"] and config["generator"] == "cascade"
    if start:  # lambda auto, chosen on the multi-coil training split
        assert config["start_cs_lambda"] in cs_tv.LAMBDA_GRID


@pytest.mark.slow
@pytest.mark.parametrize(
    "precision, extra",
    [
        ("mixed_bfloat16", ["--strategy=mirrored", "--num_cpu_devices=2"]),
        ("mixed_float16", []),
    ],
)
def test_cascade_trains_mirrored_and_in_mixed_precision(
    singlecoil_records, tmp_path, precision, extra
):
    # A CPU split, a mirrored strategy and a precision policy change the process for good.
    model_dir = str(tmp_path / precision)
    result = run_tool(
        "-m",
        "tfmri.train",
        f"--data_dir={singlecoil_records}",
        f"--model_dir={model_dir}",
        *TINY,
        "--batch_size=2",
        f"--precision={precision}",
        *extra,
        "--epochs=1",
        "--epochs_decay=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    if extra:
        assert "2 replica(s)" in result.stdout
    assert_generator_weights_finite(model_dir)
