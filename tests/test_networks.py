"""Shapes and receptive fields of the pix2pix networks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmri.models import networks


def _field_along_width(model, size, inputs_count):
    """Width (pixels) of the input region that one central output value depends on."""
    images = [
        tf.Variable(tf.random.normal([1, size, size, 1], seed=i)) for i in range(inputs_count)
    ]
    with tf.GradientTape() as tape:
        output = model(images if inputs_count > 1 else images[0], training=False)
        height, width = output.shape[1], output.shape[2]
        value = output[0, height // 2, width // 2, 0]
    gradients = tape.gradient(value, images)
    touched = np.any([np.abs(g.numpy()[0, :, :, 0]) > 0 for g in gradients], axis=0)
    columns = np.flatnonzero(touched.any(axis=0))
    return columns.max() - columns.min() + 1


@pytest.mark.parametrize("depth", [1, 4, 6])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_generator_keeps_the_shape(depth, norm):
    model = networks.unet_generator(320, depth, 4, 0.5, norm)
    output = model(tf.zeros([2, 320, 320, 1]))
    assert output.shape == (2, 320, 320, 1) and output.dtype == tf.float32


def test_generator_dropout_where_pix2pix_unet_256_has_it():
    # pix2pix's unet_256 (8 downsamplings): no dropout in the innermost block (its decoder
    # gives 2 x 2 maps), dropout in the three blocks around it (decoder outputs 4, 8, 16),
    # none further out.
    model = networks.unet_generator(256, 8, 2, 0.5, "none")
    dropout_sizes = sorted(
        layer.output.shape[1] for layer in model.layers if isinstance(layer, keras.layers.Dropout)
    )
    assert dropout_sizes == [4, 8, 16]


def test_generator_depth_must_fit_the_image():
    assert networks.max_depth(320) == 6 and networks.max_depth(256) == 8
    with pytest.raises(ValueError, match="halves cleanly only 6 times"):
        networks.unet_generator(320, depth=7)


def test_residual_generator_starts_from_its_input():
    model = networks.unet_generator(64, 3, 4, 0.0, "none", residual=True)
    for layer in model.layers:  # zero every weight: the correction vanishes
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    image = tf.random.normal([1, 64, 64, 1])
    np.testing.assert_allclose(model(image).numpy(), image.numpy())


def test_tanh_output_is_bounded_by_the_clamp():
    model = networks.unet_generator(64, 3, 4, 0.0, "none", residual=False, output_activation="tanh")
    output = model(100.0 * tf.random.normal([2, 64, 64, 1]))
    assert float(tf.reduce_max(tf.abs(output))) <= 6.0


def test_patchgan_has_a_70_pixel_receptive_field():
    # The published 70 x 70 PatchGAN gives 30 x 30 logits on 256 x 256 images.
    model = networks.patch_discriminator(256, n_layers=3, base_filters=4, norm="none")
    assert model([tf.zeros([2, 256, 256, 1])] * 2).shape == (2, 30, 30, 1)
    assert _field_along_width(model, 256, 2) == 70


def test_patchgan_field_grows_with_layers():
    model = networks.patch_discriminator(256, n_layers=1, base_filters=4, norm="none")
    assert _field_along_width(model, 256, 2) == 16  # 4 + 3 * 2 + 3 * 2


def test_pixelgan_sees_one_pixel():
    model = networks.pixel_discriminator(64, base_filters=4, norm="none")
    assert model([tf.zeros([1, 64, 64, 1])] * 2).shape == (1, 64, 64, 1)
    assert _field_along_width(model, 64, 2) == 1


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (1, 2, 2, 4), (1, 1, 1, 2)])
def test_fused_batch_norm_trains_like_keras_batch_norm(policy, shape):
    keras.mixed_precision.set_global_policy(policy)
    try:
        layers = [keras.layers.BatchNormalization(), networks.FusedBatchNormalization()]
        for layer in layers:
            layer.build(shape)
            layer.gamma.assign(np.linspace(0.5, 1.5, shape[-1]))
            layer.beta.assign(np.linspace(-1, 1, shape[-1]))
            layer.moving_variance.assign(np.full(shape[-1], 2.0))
        x = tf.constant(np.random.default_rng(0).standard_normal(shape) * 3 + 1, tf.float32)
        weights = tf.constant(np.random.default_rng(1).standard_normal(shape), tf.float32)
        results = []
        for layer in layers:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
            grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
            stats = [layer.moving_mean, layer.moving_variance]
            results.append((y, *grads, *stats, layer(x, training=False)))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert results[1][0].dtype == results[0][0].dtype
    tolerance = 1e-4 if policy == "float32" else 2e-2
    for fused, plain in zip(results[1], results[0]):
        fused, plain = tf.cast(fused, tf.float32).numpy(), tf.cast(plain, tf.float32).numpy()
        np.testing.assert_allclose(fused, plain, atol=tolerance, rtol=tolerance)
