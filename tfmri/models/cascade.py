"""An unrolled cascade generator: small U-Nets on the complex image, k-space data
consistency after each.

The cascade starts from the complex zero-filled image of the crop's rows, every column
(``[B, S, W]``; multi-coil combined with coil maps estimated from the fully sampled
centre), or with ``start="cs_tv"`` from the CS-TV solution of the same data
(:func:`tfmri.baselines.cs_tv.complex_image`, a fixed lambda and iteration count, no
gradient through it): the stages then learn what CS-TV misses, starting from it. Each
stage takes the centre ``S x S`` square as two channels (real,
imaginary), adds the correction its U-Net predicts, and puts the measured k-space
columns back (:func:`tfmri.models.consistency.complex_consistent`): what was measured
is kept exactly after every stage, and only the unmeasured columns are learned. Images
are divided by the slice's normalisation ``std``, so the networks see the scale the
magnitude U-Net sees. The output is the magnitude of the final square, normalised as
the pipeline normalises the target (unclamped), so the same losses and discriminator
train it as the U-Net generator.

With no stage it returns the zero-filled magnitude (single-coil exactly), or CS-TV's.
"""

import keras
import tensorflow as tf

from tfmri.baselines import cs_tv
from tfmri.data import coils, transforms
from tfmri.models import consistency, networks

STARTS = ("zero_filled", "cs_tv")
_cs_tv_compiled = tf.function(cs_tv.complex_image, jit_compile=True)


class CascadeGenerator(keras.Model):
    """``stages`` x (U-Net on the complex image + data consistency).

    Call it on a dict with ``measured`` (complex64 [B, S, W], or [B, C, S, W] multi-coil),
    ``mask`` (float32 [B, W]), ``mean`` and ``std`` ([B], the slice's normalisation);
    returns the normalised magnitude float32 [B, S, S, 1].

    ``share_weights``: one U-Net for every stage (fewer parameters, same FLOPs).
    ``depth``, ``base_filters``, ``dropout``, ``norm``: each stage's U-Net
    (:func:`tfmri.models.networks.unet_generator`, residual, linear output).
    ``start``: one of STARTS; ``cs_lambda``, ``cs_iterations``: the CS-TV start's.
    """

    def __init__(
        self,
        image_size,
        stages,
        share_weights=False,
        depth=3,
        base_filters=16,
        dropout=0.0,
        norm="instance",
        start="zero_filled",
        cs_lambda=None,
        cs_iterations=cs_tv.DEFAULT_ITERATIONS,
        **kwargs,
    ):
        kwargs.setdefault("autocast", False)  # the measured data stay complex64
        kwargs.setdefault("name", "generator")
        super().__init__(**kwargs)
        if stages < 0:
            raise ValueError(f"stages must be >= 0, got {stages}")
        if start not in STARTS:
            raise ValueError(f"start must be one of {', '.join(STARTS)}, got {start!r}")
        if start == "cs_tv" and not (cs_lambda or 0) > 0:
            raise ValueError(
                f"a cascade started from CS-TV needs its lambda (> 0), got {cs_lambda}: "
                "--start_cs_lambda=auto is chosen by tfmri.train and kept in model.json"
            )
        self.image_size = image_size
        self.stages = stages
        self.start = start
        self.cs_lambda = cs_lambda
        self.cs_iterations = cs_iterations
        # The CS-TV start runs compiled with XLA (twice as fast on CPU); an export turns
        # it off: TF Serving runs no XLA JIT unless told to.
        self.compile_start = True
        count = min(stages, 1) if share_weights else stages
        self.networks = [
            networks.unet_generator(
                image_size,
                depth,
                base_filters,
                dropout,
                norm,
                residual=True,
                channels=2,
                out_channels=2,
                zero_output=True,
                name=f"stage{index}",
            )
            for index in range(count)
        ]
        self.built = True  # the stage networks are built

    def call(self, inputs, training=False):
        std = tf.cast(inputs["std"], tf.float32) + transforms.NORMALIZATION_EPS
        square = transforms.crop_width(self.complex_image(inputs, training), self.image_size)
        magnitude = consistency.smooth_abs(square)
        mean = tf.reshape(tf.cast(inputs["mean"], tf.float32) / std, [-1, 1, 1])
        return (magnitude - mean)[..., None]

    def complex_image(self, inputs, training=False):
        """complex64 [B, S, W]: the last stage's image (every column), divided by the
        slice's std; its sampled columns are the measured ones."""
        std = tf.cast(inputs["std"], tf.float32) + transforms.NORMALIZATION_EPS
        mask = tf.cast(inputs["mask"], tf.float32)
        maps = consistency.maps_of(inputs)
        measured = inputs["measured"]
        scale = tf.reshape(tf.cast(std, measured.dtype), [-1] + [1] * (measured.shape.rank - 1))
        measured = measured / scale
        if self.start == "cs_tv":
            solve = _cs_tv_compiled if self.compile_start else cs_tv.complex_image
            image = tf.stop_gradient(
                solve(measured, mask, self.cs_lambda, self.cs_iterations, maps)
            )
        else:
            image = transforms.columns_to_image(measured)
            if maps is not None:
                image = coils.combine(image, maps)
        for index in range(self.stages):
            image = self._stage(self._network_of(index), image, training)
            image = consistency.complex_consistent(image, measured, mask, maps)
        return image

    def conv_flops(self):
        """Floating-point operations of the stages' convolutions per slice (each stage's
        U-Net once per stage, shared or not; the FFTs of data consistency not counted)."""
        return sum(networks.conv_flops(self._network_of(index)) for index in range(self.stages))

    def _network_of(self, stage):
        """The U-Net of a stage: its own, or the one all stages share."""
        return self.networks[stage % len(self.networks)]

    def _stage(self, network, image, training):
        """The image [B, S, W] with its centre square corrected by ``network``."""
        size = self.image_size
        left = transforms.width_crop_start(tf.shape(image)[-1], size)
        square = transforms.crop_width(image, size)
        channels = tf.stack([tf.math.real(square), tf.math.imag(square)], axis=-1)
        # The square's side is the network's input size; the graph does not know it
        # (crop_width slices at a computed column, k-space widths differ by batch).
        channels = tf.ensure_shape(channels, [None, size, size, 2])
        output = tf.cast(network(channels, training=training), tf.float32)
        corrected = tf.complex(output[..., 0], output[..., 1])
        return tf.concat([image[:, :, :left], corrected, image[:, :, left + size :]], axis=-1)
