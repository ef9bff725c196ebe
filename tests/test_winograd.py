"""Winograd's F(3 x 3, 4 x 4) agrees with direct convolution, values and gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from numpy.lib.stride_tricks import sliding_window_view

from tfmri.models import networks, winograd

# batch, input side (height, width), C_in, C_out: outputs of 1 to 31 pixels, some
# overhanging the last 3 x 3 block, rectangular maps.
SHAPES = [(1, (4, 4), 1, 1), (2, (9, 7), 3, 5), (1, (12, 13), 4, 2), (3, (34, 34), 6, 8)]


def _random(shape, seed, scale=1.0):
    return tf.constant(np.random.default_rng(seed).standard_normal(shape) * scale, tf.float32)


def _relative_error(ours, theirs):
    return float(tf.reduce_max(tf.abs(ours - theirs)) / tf.reduce_max(tf.abs(theirs)))


@pytest.mark.parametrize(
    "outputs, taps, points",
    [(3, 4, (0, 1, -1, 2, -2)), (2, 3, (0, 1, -1)), (4, 3, (0, 1, -1, 2, -2))],
)
def test_transforms_compute_the_one_dimensional_correlation(outputs, taps, points):
    output_t, input_t, kernel_t = winograd.transform_matrices(outputs, taps, points)
    rng = np.random.default_rng(0)
    for _ in range(5):
        d, g = rng.standard_normal(outputs + taps - 1), rng.standard_normal(taps)
        expected = np.correlate(d, g, "valid")
        assert np.allclose(output_t @ ((kernel_t @ g) * (input_t @ d)), expected, atol=1e-12)


def test_transforms_need_the_right_number_of_distinct_points():
    with pytest.raises(ValueError, match="5 distinct finite points"):
        winograd.transform_matrices(3, 4, (0, 1, -1, 2))
    with pytest.raises(ValueError, match="distinct"):
        winograd.transform_matrices(3, 4, (0, 1, 1, 2, -2))


def test_conv_matches_a_numpy_correlation():
    x = _random([2, 11, 10, 3], 0)
    kernel = _random([4, 4, 3, 5], 1)
    windows = sliding_window_view(x.numpy(), (4, 4), axis=(1, 2))  # [B, 8, 7, C_in, 4, 4]
    expected = np.einsum("bhwcij,ijco->bhwo", windows, kernel.numpy())
    assert _relative_error(winograd.conv(x, kernel), tf.constant(expected)) < 1e-5


@pytest.mark.parametrize("batch, sides, c_in, c_out", SHAPES)
def test_conv_and_its_gradients_match_tensorflow(batch, sides, c_in, c_out):
    x = _random([batch, *sides, c_in], 2)
    kernel = _random([4, 4, c_in, c_out], 3)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel])
        ours = winograd.conv(x, kernel)
        theirs = tf.nn.conv2d(x, kernel, 1, "VALID")
    assert ours.shape == theirs.shape
    assert _relative_error(ours, theirs) < 1e-5
    upstream = _random(theirs.shape, 4)
    for mine, reference in zip(
        tape.gradient(ours, [x, kernel], upstream), tape.gradient(theirs, [x, kernel], upstream)
    ):
        assert _relative_error(mine, reference) < 1e-5


def test_conv_traces_with_an_unknown_batch_and_refuses_unknown_sides():
    kernel = _random([4, 4, 2, 3], 5)
    traced = tf.function(
        lambda x: winograd.conv(x, kernel), input_signature=[tf.TensorSpec([None, 9, 9, 2])]
    )
    x = _random([3, 9, 9, 2], 6)
    assert _relative_error(traced(x), tf.nn.conv2d(x, kernel, 1, "VALID")) < 1e-5
    unknown = tf.function(
        lambda x: winograd.conv(x, kernel), input_signature=[tf.TensorSpec([None, None, 9, 2])]
    )
    with pytest.raises(ValueError, match="known height, width and depth"):
        unknown.get_concrete_function()


def _pair(filters, channels, side, use_bias=True):
    plain = keras.layers.Conv2D(filters, 4, padding="valid", use_bias=use_bias)
    ours = winograd.WinogradConv2D(filters, 4, padding="valid", use_bias=use_bias)
    for layer in (plain, ours):
        layer.build((None, side, side, channels))
    ours.set_weights([_random(w.shape, 7 + i) for i, w in enumerate(plain.get_weights())])
    plain.set_weights(ours.get_weights())
    return plain, ours


def test_layer_is_a_conv2d_with_the_same_weights_and_config():
    plain, ours = _pair(4, 3, 10)
    x = _random([2, 10, 10, 3], 9)
    assert _relative_error(ours(x), plain(x)) < 1e-5
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(ours))
    assert type(rebuilt) is winograd.WinogradConv2D
    assert rebuilt.get_config() == ours.get_config()


def test_layer_refuses_other_convolutions():
    for kwargs in (
        dict(kernel_size=3),
        dict(kernel_size=4, strides=2),
        dict(kernel_size=4, padding="same"),
        dict(kernel_size=4, dilation_rate=2),
    ):
        with pytest.raises(ValueError, match="4 x 4, stride-1, 'valid'"):
            winograd.WinogradConv2D(2, **{"padding": "valid", **kwargs})


def test_layer_computes_as_conv2d_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        plain, ours = _pair(4, 3, 8, use_bias=False)
        x = _random([1, 8, 8, 3], 10)
        out = ours(x)
        assert out.dtype == tf.bfloat16
        difference = tf.cast(out, tf.float32) - tf.cast(plain(x), tf.float32)
        assert float(tf.reduce_max(tf.abs(difference))) == 0.0
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_patchgan_uses_it_on_wide_layers_only_and_matches_plain_layers(monkeypatch):
    def winograd_layers(model):
        return [layer.name for layer in model.layers if isinstance(layer, winograd.WinogradConv2D)]

    # The reference PatchGAN: 256 -> 512 channels at the stride-1 layer; the logits
    # layer has one output channel; the demo's (16 base filters) is narrow throughout.
    reference = networks.patch_discriminator(64, 3, 64, "batch")
    assert winograd_layers(reference) == ["conv3"]
    assert winograd_layers(networks.patch_discriminator(64, 3, 16, "instance")) == []

    monkeypatch.setattr(networks, "WINOGRAD_MIN_CHANNELS", 10**6)
    plain = networks.patch_discriminator(64, 3, 64, "batch")
    assert winograd_layers(plain) == []
    plain.set_weights(reference.get_weights())
    inputs = [_random([2, 64, 64, 1], 11), _random([2, 64, 64, 1], 12)]
    with tf.GradientTape(persistent=True) as tape:
        ours, theirs = reference(inputs, training=True), plain(inputs, training=True)
    assert _relative_error(ours, theirs) < 1e-4
    for mine, expected in zip(
        tape.gradient(ours, reference.trainable_variables),
        tape.gradient(theirs, plain.trainable_variables),
    ):
        assert _relative_error(mine, expected) < 1e-4
