"""The matrix-product convolutions agree with TensorFlow's and Keras's own, values and gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmri.models import matmul_conv, networks

SHAPES = [(1, 2, 3, 5), (2, 4, 6, 3), (1, 8, 4, 7), (3, 16, 2, 2)]  # batch, side, C_in, C_out


def _random(shape, seed):
    return tf.constant(np.random.default_rng(seed).standard_normal(shape), tf.float32)


def _close(a, b, tolerance=1e-5):
    scale = max(float(tf.reduce_max(tf.abs(b))), 1.0)
    return float(tf.reduce_max(tf.abs(a - b))) <= tolerance * scale


def _keras_transposed(kernel, side, channels):
    layer = keras.layers.Conv2DTranspose(
        kernel.shape[2], 4, strides=2, padding="same", use_bias=False
    )
    layer.build((None, side, side, channels))
    layer.kernel.assign(kernel)
    return layer


@pytest.mark.parametrize("batch, side, c_in, c_out", SHAPES)
def test_im2col_and_col2im_are_adjoint(batch, side, c_in, c_out):
    del c_out
    x = _random([batch, side, side, c_in], 0)
    patches = _random([batch, side // 2, side // 2, 16 * c_in], 1)
    left = tf.reduce_sum(matmul_conv.im2col(x) * patches)
    right = tf.reduce_sum(x * matmul_conv.col2im(patches))
    assert abs(float(left - right)) <= 1e-4 * float(tf.reduce_sum(tf.abs(x)))


@pytest.mark.parametrize("batch, side, c_in, c_out", SHAPES)
def test_conv_equals_conv2d_with_gradients(batch, side, c_in, c_out):
    x = _random([batch, side, side, c_in], 2)
    kernel = _random([4, 4, c_in, c_out], 3)
    weights = _random([batch, side // 2, side // 2, c_out], 4)
    results = []
    for op in (lambda a, k: tf.nn.conv2d(a, k, 2, "SAME"), matmul_conv.conv):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = op(x, kernel)
            loss = tf.reduce_sum(y * weights)
        results.append([y, *tape.gradient(loss, [x, kernel])])
    for ours, reference in zip(results[1], results[0]):
        assert ours.shape == reference.shape and _close(ours, reference)


@pytest.mark.parametrize("batch, side, c_in, c_out", SHAPES)
def test_conv_transpose_equals_keras_with_gradients(batch, side, c_in, c_out):
    # A transposed convolution from c_out channels at side / 2 to c_in channels at side.
    x = _random([batch, side // 2, side // 2, c_out], 5)
    kernel = _random([4, 4, c_in, c_out], 6)
    weights = _random([batch, side, side, c_in], 7)
    reference_layer = _keras_transposed(kernel, side // 2, c_out)
    results = []
    for op in (lambda a, k: reference_layer(a), matmul_conv.conv_transpose):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = op(x, kernel)
            loss = tf.reduce_sum(y * weights)
        gradient_x = tape.gradient(loss, x)
        results.append([y, gradient_x])
    # The kernel gradient of the Keras layer is w.r.t. its variable.
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(reference_layer(x) * weights)
    results[0].append(tape.gradient(loss, reference_layer.kernel))
    with tf.GradientTape() as tape:
        tape.watch(kernel)
        loss = tf.reduce_sum(matmul_conv.conv_transpose(x, kernel) * weights)
    results[1].append(tape.gradient(loss, kernel))
    for ours, reference in zip(results[1], results[0]):
        assert ours.shape == reference.shape and _close(ours, reference)


def test_layers_load_plain_layer_weights_and_agree():
    inputs = _random([2, 8, 8, 3], 8)
    plain = keras.layers.Conv2D(5, 4, strides=2, padding="same")
    ours = matmul_conv.MatmulConv2D(5, 4, strides=2, padding="same")
    plain.build(inputs.shape)
    ours.build(inputs.shape)
    plain.bias.assign(_random([5], 9))
    ours.set_weights(plain.get_weights())
    assert _close(ours(inputs), plain(inputs))

    small = _random([2, 4, 4, 5], 10)
    plain_t = keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same", activation="relu")
    ours_t = matmul_conv.MatmulConv2DTranspose(3, 4, strides=2, padding="same", activation="relu")
    plain_t.build(small.shape)
    ours_t.build(small.shape)
    plain_t.bias.assign(_random([3], 11))
    ours_t.set_weights(plain_t.get_weights())
    assert _close(ours_t(small), plain_t(small))


def test_generator_traces_with_an_unknown_batch_size():
    # As an exported serving signature traces it: [None, S, S, 1].
    model = networks.unet_generator(32, 4, 4, 0.0, "batch")
    assert any(isinstance(layer, matmul_conv.MatmulConv2DTranspose) for layer in model.layers)
    serve = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32)],
    )
    images = _random([3, 32, 32, 1], 14)
    assert _close(serve(images), model(images, training=False))


def test_layers_refuse_other_convolutions():
    with pytest.raises(ValueError, match="4 x 4, stride-2"):
        matmul_conv.MatmulConv2D(4, 3, strides=2, padding="same")
    with pytest.raises(ValueError, match="4 x 4, stride-2"):
        matmul_conv.MatmulConv2DTranspose(4, 4, strides=1, padding="same")
    with pytest.raises(ValueError, match="4 x 4, stride-2"):
        matmul_conv.MatmulConv2D(4, 4, strides=2, padding="valid")


def test_generator_uses_them_on_small_maps_only_and_matches_plain_layers(monkeypatch):
    # Down outputs of a 64 x 64, 6-level network: 32, 16, 8, 4, 2, 1 pixels a side, so
    # levels 2-5 (8 x 8 and below) run as matrix products, both ways.
    model = networks.unet_generator(64, 6, 4, 0.0, "batch")
    matmul_levels = sorted(
        int(layer.name[len("down")])
        for layer in model.layers
        if isinstance(layer, matmul_conv.MatmulConv2D) and layer.name.startswith("down")
    )
    transposed = [
        layer.name for layer in model.layers if isinstance(layer, matmul_conv.MatmulConv2DTranspose)
    ]
    assert matmul_levels == [2, 3, 4, 5]
    assert sorted(transposed) == ["up2_conv", "up3_conv", "up4_conv"]  # level 5 has no up

    monkeypatch.setattr(networks, "MATMUL_MAX_SIDE", 0)
    plain = networks.unet_generator(64, 6, 4, 0.0, "batch")
    assert not any(
        isinstance(layer, (matmul_conv.MatmulConv2D, matmul_conv.MatmulConv2DTranspose))
        for layer in plain.layers
    )
    plain.set_weights(model.get_weights())
    images = _random([2, 64, 64, 1], 12)
    for training in (False, True):
        assert _close(model(images, training=training), plain(images, training=training), 1e-4)


def test_mixed_precision_layers_compute_in_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = matmul_conv.MatmulConv2D(4, 4, strides=2, padding="same")
        transposed = matmul_conv.MatmulConv2DTranspose(2, 4, strides=2, padding="same")
        y = layer(_random([1, 8, 8, 2], 13))
        z = transposed(y)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert y.dtype == tf.bfloat16 and z.dtype == tf.bfloat16 and z.shape == (1, 8, 8, 2)
    reference = tf.nn.conv2d(
        _random([1, 8, 8, 2], 13), tf.cast(layer.kernel, tf.float32), 2, "SAME"
    ) + tf.cast(layer.bias, tf.float32)
    assert _close(tf.cast(y, tf.float32), reference, 2e-2)
