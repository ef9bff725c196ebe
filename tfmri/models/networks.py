"""pix2pix networks for 1-channel MR images: a U-Net generator and two discriminators.

Images are channels-last, ``[batch, height, width, channels]``, normalised as the
pipeline yields them (per-slice standardised, clamped to [-6, 6]). Every network ends
in a float32 layer, so its output is float32 under a mixed-precision policy.
"""

import keras
import tensorflow as tf

from tfmri.data import transforms
from tfmri.models import matmul_conv, winograd

NORMS = ("batch", "instance", "none")
OUTPUT_ACTIVATIONS = ("linear", "tanh")
MAX_FILTERS = 512  # pix2pix caps the filters at 8 x 64
# U-Net convolutions whose output (down) or output (up: the skip it is joined to) is at
# most this many pixels on a side run as matrix products (tfmri.models.matmul_conv):
# 8 x 8 and below, where the kernels are large and the maps small.
MATMUL_MAX_SIDE = 8
# PatchGAN stride-1 convolutions with at least this many channels in and out run by
# Winograd's algorithm (tfmri.models.winograd): the reference setting's and the knee
# configs' 256 -> 512 layer. Since its tiles are cut with tf.slice it is faster alone on
# every width bench/bench_layers.py sweeps (64 -> 128 included), but the demo's
# 64 -> 128 PatchGAN stays direct so that the main job's networks, and the figures
# measured with them, stay as they were: lowering this changes the main job.
WINOGRAD_MIN_CHANNELS = 256


def max_depth(size: int) -> int:
    """How many times ``size`` halves to an integer (320 -> 6)."""
    depth = 0
    while size % 2 == 0 and size > 1:
        size //= 2
        depth += 1
    return depth


def _normalize(x, kind, name):
    """Applies the norm layer of ``kind`` (batch, instance or none) to ``x``."""
    if kind == "batch":
        # With several replicas, statistics over the global batch; the synchronised
        # layer is slower, so only then.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return FusedBatchNormalization(synchronized=replicas > 1, name=name)(x)
    if kind == "instance":
        return keras.layers.GroupNormalization(groups=-1, name=name)(x)
    if kind == "none":
        return x
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {kind!r}")


@keras.saving.register_keras_serializable(package="tfmri")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras's ``BatchNormalization``, trained with TensorFlow's fused kernel.

    Keras 3 computes the training-mode statistics and normalisation as about a dozen
    separate ops, forward and backward; ``FusedBatchNormV3`` does each direction in
    one (oneDNN on CPU). Same variables, outputs and moving statistics as the Keras
    layer (the fused kernel's moving variance is Bessel-corrected; that is undone to
    keep Keras's). Synchronised (multi-replica), masked or non-4D calls, and
    inference, go through the Keras layer.
    """

    def call(self, inputs, training=None, mask=None):
        fused = (
            training
            and self.trainable
            and not self.synchronized
            and mask is None
            and len(inputs.shape) == 4
            and self.axis in (-1, 3, [3], [-1])
            and self.scale
            and self.center
        )
        if not fused:
            return super().call(inputs, training=training, mask=mask)
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
        bessel = count / tf.maximum(count - 1.0, 1.0)
        outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=tf.cast(inputs, tf.float32),  # in float32 under mixed precision, as Keras
            scale=self.gamma,
            offset=self.beta,
            mean=self.moving_mean,
            variance=self.moving_variance * bessel,
            epsilon=self.epsilon,
            exponential_avg_factor=1.0 - self.momentum,
            data_format="NHWC",
            is_training=True,
        )
        self.moving_mean.assign(mean)
        self.moving_variance.assign(variance / bessel)
        return tf.cast(outputs, self.compute_dtype)


def _conv_layers(image_size, level):
    """The (down, up) convolution layer classes of U-Net level ``level``.

    The down convolution maps side ``image_size >> level`` to half that, the skip
    that level passes on; the up (transposed) one maps half of that side up to the
    skip's side. Both run as matrix products when the skip's side is small.
    """
    if image_size >> (level + 1) <= MATMUL_MAX_SIDE:
        return matmul_conv.MatmulConv2D, matmul_conv.MatmulConv2DTranspose
    return keras.layers.Conv2D, keras.layers.Conv2DTranspose


def _filters(base_filters, level):
    return min(base_filters * 2**level, MAX_FILTERS)


def dropout_level(level, depth) -> bool:
    """Whether decoder ``level`` (0 outermost, ``depth - 2`` innermost) has dropout.

    As pix2pix's ``unet_256``: not the innermost block (which upsamples the bottleneck),
    but the three blocks around it: at 256 x 256 and depth 8, the decoder outputs of
    4 x 4, 8 x 8 and 16 x 16 (the innermost gives 2 x 2).
    """
    return depth - 5 <= level <= depth - 3


def unet_generator(
    image_size=320,
    depth=6,
    base_filters=64,
    dropout=0.5,
    norm="batch",
    residual=True,
    output_activation="linear",
    name="generator",
    channels=1,
    out_channels=1,
    zero_output=False,
) -> keras.Model:
    """The pix2pix U-Net: ``depth`` stride-2 4 x 4 convolutions down, as many transposed up.

    Down: LeakyReLU(0.2), convolution, norm (none on the outermost level). Up: ReLU,
    transposed convolution, norm, dropout on the three decoder levels next to the
    innermost (:func:`dropout_level`), skip connections by concatenation. With
    ``residual`` the network predicts a correction added to the zero-filled input.
    ``tanh`` output is scaled to the normalisation's clamp range [-6, 6].

    Args:
      image_size: side of the square input; must halve cleanly ``depth`` times.
      channels: input channels; the first ``out_channels`` are what the residual is
        added to (3: the zero-filled magnitude, then the complex zero-filled image as
        real and imaginary).
      out_channels: output channels (2: a complex image, as a cascade stage predicts).
      zero_output: start the last convolution at zero, so that a residual network
        starts as the identity (a cascade's stages: its untrained stages add nothing).

    Returns:
      keras.Model: float32 ``[batch, image_size, image_size, channels]`` ->
      ``[batch, image_size, image_size, out_channels]``, float32.
    """
    _check_unet(image_size, depth, dropout, norm, output_activation)
    image = keras.Input((image_size, image_size, channels), name="zero_filled")
    skips = _unet_encoder(image, image_size, depth, base_filters, norm)
    x = _unet_decoder(skips, image_size, depth, base_filters, dropout, norm)
    x = keras.layers.ReLU(name="out_act")(x)
    x = keras.layers.Conv2DTranspose(
        out_channels,
        4,
        strides=2,
        padding="same",
        kernel_initializer="zeros" if zero_output else "glorot_uniform",
        name="out_conv",
    )(x)
    if output_activation == "tanh":
        x = keras.layers.Activation("tanh", name="out_tanh")(x)
        x = keras.layers.Rescaling(transforms.NORMALIZATION_CLAMP, name="out_scale")(x)
    x = keras.layers.Activation("linear", dtype="float32", name="out_float32")(x)
    if residual:
        corrected = (
            image
            if channels == out_channels
            else keras.layers.Lambda(
                lambda channel_stack: channel_stack[..., :out_channels], name="magnitude"
            )(image)
        )
        x = keras.layers.Add(dtype="float32", name="residual")([corrected, x])
    return keras.Model(image, x, name=name)


def conv_flops(network) -> int:
    """Floating-point operations (2 per multiply-add) of the convolutions of a functional
    ``network`` per example (:func:`conv_layer_flops`). Biases, norms and activations
    are not counted."""
    return sum(conv_layer_flops(layer) for layer in network.layers if is_conv(layer))


def is_conv(layer) -> bool:
    return isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose)


def conv_layer_flops(layer) -> int:
    """``2 k_h k_w C_in C_out`` per output pixel of a built convolution layer, per input
    pixel of a transposed one, for one example."""
    kernel_h, kernel_w, *_ = layer.kernel.shape
    channels_in, channels_out = layer.input.shape[-1], layer.output.shape[-1]
    grid = layer.input if isinstance(layer, keras.layers.Conv2DTranspose) else layer.output
    return int(2 * kernel_h * kernel_w * channels_in * channels_out * grid.shape[1] * grid.shape[2])


def _check_unet(image_size, depth, dropout, norm, output_activation):
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(
            f"output_activation must be one of {', '.join(OUTPUT_ACTIVATIONS)}, "
            f"got {output_activation!r}"
        )
    if not 1 <= depth <= max_depth(image_size):
        raise ValueError(
            f"depth must be between 1 and {max_depth(image_size)} for {image_size} x "
            f"{image_size} images (it halves cleanly only {max_depth(image_size)} times), "
            f"got {depth}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def _unet_encoder(image, image_size, depth, base_filters, norm):
    """The outputs of the ``depth`` down levels, outermost first."""
    x = image
    skips = []
    for level in range(depth):
        if level > 0:
            x = keras.layers.LeakyReLU(0.2, name=f"down{level}_act")(x)
        x = _conv_layers(image_size, level)[0](
            _filters(base_filters, level),
            4,
            strides=2,
            padding="same",
            use_bias=norm == "none" or level == 0,
            name=f"down{level}_conv",
        )(x)
        if 0 < level < depth - 1:
            x = _normalize(x, norm, f"down{level}_norm")
        skips.append(x)
    return skips


def _unet_decoder(skips, image_size, depth, base_filters, dropout, norm):
    """Up from the innermost level, each level concatenated with its skip."""
    x = skips[-1]
    for level in reversed(range(depth - 1)):
        x = keras.layers.ReLU(name=f"up{level}_act")(x)
        x = _conv_layers(image_size, level)[1](
            _filters(base_filters, level),
            4,
            strides=2,
            padding="same",
            use_bias=norm == "none",
            name=f"up{level}_conv",
        )(x)
        x = _normalize(x, norm, f"up{level}_norm")
        if dropout > 0 and dropout_level(level, depth):
            x = keras.layers.Dropout(dropout, name=f"up{level}_dropout")(x)
        x = keras.layers.Concatenate(name=f"up{level}_skip")([x, skips[level]])
    return x


def patch_discriminator(
    image_size=320, n_layers=3, base_filters=64, norm="batch", name="discriminator"
) -> keras.Model:
    """PatchGAN: ``n_layers`` stride-2 4 x 4 convolutions, then two stride-1 (70 x 70 at 3).

    Conditioned on the input: takes ``[zero_filled, image]`` (each ``[B, S, S, 1]``) and
    returns float32 logits ``[B, S', S', 1]``, one per overlapping patch: ``S' = S /
    2^(n_layers - 1) - 2`` (30 x 30 at 256 and 3 layers).
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    condition, image, x = _conditioned_inputs(image_size)
    x = keras.layers.Conv2D(base_filters, 4, strides=2, padding="same", name="conv0")(x)
    x = keras.layers.LeakyReLU(0.2, name="act0")(x)
    for index in range(1, n_layers + 1):
        if index < n_layers:
            x = keras.layers.Conv2D(
                _filters(base_filters, index),
                4,
                strides=2,
                padding="same",
                use_bias=norm == "none",
                name=f"conv{index}",
            )(x)
        else:
            x = _unit_stride_conv(x, _filters(base_filters, index), norm == "none", f"conv{index}")
        x = _normalize(x, norm, f"norm{index}")
        x = keras.layers.LeakyReLU(0.2, name=f"act{index}")(x)
    x = _unit_stride_conv(x, 1, True, "logits")
    x = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(x)
    return keras.Model([condition, image], x, name=name)


def _unit_stride_conv(x, filters, use_bias, name):
    """PatchGAN's stride-1 4 x 4 convolution: one pixel of zero padding on each side.

    Each such layer shrinks the map by one pixel (32 -> 31 -> 30 at 256 x 256 and 3
    layers), as in the published PatchGAN. ``padding="same"`` would pad an even kernel
    asymmetrically (1 before, 2 after) and compute an extra row and column of patches.
    Wide ones (:data:`WINOGRAD_MIN_CHANNELS`) are computed by Winograd's algorithm,
    with the same variables.
    """
    x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    wide = min(x.shape[-1], filters) >= WINOGRAD_MIN_CHANNELS
    layer = winograd.WinogradConv2D if wide else keras.layers.Conv2D
    return layer(filters, 4, padding="valid", use_bias=use_bias, name=name)(x)


def pixel_discriminator(image_size=320, base_filters=64, norm="batch", name="discriminator"):
    """PixelGAN: 1 x 1 convolutions only, one real/fake logit per pixel (1 x 1 field)."""
    condition, image, x = _conditioned_inputs(image_size)
    x = keras.layers.Conv2D(base_filters, 1, name="conv0")(x)
    x = keras.layers.LeakyReLU(0.2, name="act0")(x)
    x = keras.layers.Conv2D(base_filters * 2, 1, use_bias=norm == "none", name="conv1")(x)
    x = _normalize(x, norm, "norm1")
    x = keras.layers.LeakyReLU(0.2, name="act1")(x)
    x = keras.layers.Conv2D(1, 1, name="logits")(x)
    x = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(x)
    return keras.Model([condition, image], x, name=name)


def _conditioned_inputs(image_size):
    condition = keras.Input((image_size, image_size, 1), name="zero_filled")
    image = keras.Input((image_size, image_size, 1), name="image")
    return condition, image, keras.layers.Concatenate(name="condition")([condition, image])
