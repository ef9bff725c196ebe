"""The training model: pix2pix (a U-Net or cascade generator + a conditional
discriminator), or the generator trained with L1 alone (the U-Net: fastMRI's baseline).

``ReconstructionModel.train_step`` reads like the pix2pix paper: generate, update the
discriminator on real and (detached) generated images, then update the generator
against the updated discriminator with GAN loss + lambda * L1. Without a
discriminator (``discriminator = "none"``) the same model trains with L1 alone.

Batches are the pipeline's ``(inputs, target)``: ``inputs["zero_filled"]`` and
``target`` float32 ``[batch, S, S, 1]`` normalised, plus ``mean``, ``std``, ``scale``
and ``max_value`` ``[batch]`` to de-normalise (times ``scale``: the file's units) and
compute the fastMRI metrics.

Losses are averaged over the *global* batch (``tf.nn.compute_average_loss``), so that
gradients summed over the replicas of a ``tf.distribute`` strategy equal those of one
replica on the whole batch.
"""

import dataclasses

import keras
import tensorflow as tf

from tfmri.baselines import cs_tv
from tfmri.data import transforms
from tfmri.models import cascade, consistency, image_metrics, networks, optimizers

DISCRIMINATORS = ("patch", "pixel", "none")
GENERATOR_INPUTS = ("magnitude", "complex")
GENERATORS = ("unet", "cascade")
GAN_MODES = ("vanilla", "lsgan")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything that defines the networks and the losses (not the optimisation)."""

    image_size: int = 320
    depth: int = 6
    base_filters: int = 64
    dropout: float = 0.5
    norm: str = "batch"
    residual: bool = True
    output_activation: str = "linear"
    discriminator: str = "patch"
    n_layers: int = 3
    d_base_filters: int = 64
    d_norm: str = "batch"
    gan_mode: str = "vanilla"
    lambda_l1: float = 100.0
    ssim_weight: float = 0.0
    data_consistency: bool = False  # put the measured k-space columns back
    multicoil: bool = False  # trained on multi-coil data: exported for [B, C, H, W] k-space
    # What the generator sees: the zero-filled magnitude, or also the complex zero-filled
    # image (coil-combined with estimated maps multi-coil) as 2 more channels.
    generator_input: str = "magnitude"
    # The generator: one U-Net, or a cascade of ``cascades`` small U-Nets (depth,
    # base_filters, dropout, norm) on the complex image with data consistency after each
    # (tfmri.models.cascade), one U-Net for all stages with ``share_weights``.
    generator: str = "unet"
    cascades: int = 5
    share_weights: bool = False
    # Where the cascade starts: the zero-filled image, or the CS-TV solution (lambda
    # start_cs_lambda, a number or "auto": chosen by the training on its training split
    # and stored in the run's model.json; start_cs_iterations iterations).
    cascade_start: str = "zero_filled"
    start_cs_lambda: float | str = cs_tv.AUTO
    start_cs_iterations: int = cs_tv.DEFAULT_ITERATIONS

    def __post_init__(self):
        if self.discriminator not in DISCRIMINATORS:
            raise ValueError(
                f"discriminator must be one of {', '.join(DISCRIMINATORS)}, "
                f"got {self.discriminator!r}"
            )
        if self.gan_mode not in GAN_MODES:
            raise ValueError(
                f"gan_mode must be one of {', '.join(GAN_MODES)}, got {self.gan_mode!r}"
            )
        if self.lambda_l1 < 0 or self.ssim_weight < 0:
            raise ValueError("lambda_l1 and ssim_weight must be >= 0")
        if self.generator_input not in GENERATOR_INPUTS:
            raise ValueError(
                f"generator_input must be one of {', '.join(GENERATOR_INPUTS)}, "
                f"got {self.generator_input!r}"
            )
        if self.generator_input == "complex" and not self.data_consistency:
            raise ValueError(
                "generator_input complex needs the measured data: add --data_consistency"
            )
        if self.generator not in GENERATORS:
            raise ValueError(
                f"generator must be one of {', '.join(GENERATORS)}, got {self.generator!r}"
            )
        # A number given as text (a flag) is kept as a float, "auto" as is.
        try:
            lam = cs_tv.parse_lambda(self.start_cs_lambda)
        except ValueError as error:
            raise ValueError(f"--start_cs_lambda={self.start_cs_lambda}: {error}") from None
        object.__setattr__(self, "start_cs_lambda", lam)
        if self.generator == "cascade":
            self._check_cascade()
        elif self.cascade_start != "zero_filled":
            raise ValueError(
                f"cascade_start {self.cascade_start} starts the cascade generator: add "
                "--generator=cascade"
            )

    @property
    def method(self) -> str:
        """The method's name in evaluations and reports: its generator trained with L1
        alone (``unet``, ``cascade``, ``cs_cascade`` for a cascade started from CS-TV) or
        against the discriminator (``pix2pix``, ``pix2pix_cascade``,
        ``pix2pix_cs_cascade``)."""
        gan = self.discriminator != "none"
        if self.generator == "cascade":
            name = "cs_cascade" if self.cascade_start == "cs_tv" else "cascade"
            return f"pix2pix_{name}" if gan else name
        return "pix2pix" if gan else "unet"

    def _check_cascade(self):
        if not self.data_consistency:
            raise ValueError(
                "generator cascade puts the measured k-space back after every stage: add "
                "--data_consistency"
            )
        if self.cascades < 0:
            raise ValueError(f"cascades must be >= 0, got {self.cascades}")
        if self.generator_input != "magnitude" or not self.residual:
            raise ValueError(
                "generator cascade sees the complex image and its stages are residual: "
                "leave --generator_input and --residual at their defaults"
            )
        if self.output_activation != "linear":
            raise ValueError("generator cascade: its stages have a linear output")
        if self.cascade_start not in cascade.STARTS:
            raise ValueError(
                f"cascade_start must be one of {', '.join(cascade.STARTS)}, "
                f"got {self.cascade_start!r}"
            )
        if self.start_cs_iterations < 1:
            raise ValueError(f"start_cs_iterations must be >= 1, got {self.start_cs_iterations}")

    @property
    def starts_from_cs_tv(self) -> bool:
        return self.generator == "cascade" and self.cascade_start == "cs_tv"

    def build_generator(self):
        if self.generator == "cascade":
            return cascade.CascadeGenerator(
                self.image_size,
                self.cascades,
                self.share_weights,
                self.depth,
                self.base_filters,
                self.dropout,
                self.norm,
                self.cascade_start,
                None if self.start_cs_lambda == cs_tv.AUTO else self.start_cs_lambda,
                self.start_cs_iterations,
            )
        return networks.unet_generator(
            self.image_size,
            self.depth,
            self.base_filters,
            self.dropout,
            self.norm,
            self.residual,
            self.output_activation,
            channels=3 if self.generator_input == "complex" else 1,
        )

    def build_discriminator(self):
        if self.discriminator == "patch":
            return networks.patch_discriminator(
                self.image_size, self.n_layers, self.d_base_filters, self.d_norm
            )
        if self.discriminator == "pixel":
            return networks.pixel_discriminator(self.image_size, self.d_base_filters, self.d_norm)
        return None


def gan_loss(logits, real: bool, mode: str):
    """Per-example GAN loss of discriminator ``logits`` [B, h, w, 1] against real or fake.

    ``vanilla``: binary cross-entropy on the logits; ``lsgan``: squared error to 1 or 0.
    Returns float32 [B], the mean over the patch positions.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.ones_like(logits) if real else tf.zeros_like(logits)
    if mode == "vanilla":
        loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    elif mode == "lsgan":
        loss = tf.square(logits - labels)
    else:
        raise ValueError(f"gan mode must be one of {', '.join(GAN_MODES)}, got {mode!r}")
    return tf.reduce_mean(loss, axis=[1, 2, 3])


@keras.saving.register_keras_serializable(package="tfmri")
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """pix2pix's schedule: ``initial`` for ``constant_steps``, then linear to 0 over ``decay_steps``."""

    def __init__(self, initial, constant_steps, decay_steps):
        self.initial = float(initial)
        self.constant_steps = int(constant_steps)
        self.decay_steps = int(decay_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        if self.decay_steps <= 0:
            return tf.fill([], self.initial)
        fraction = (step - self.constant_steps) / float(self.decay_steps)
        return self.initial * (1.0 - tf.clip_by_value(fraction, 0.0, 1.0))

    def get_config(self):
        return {
            "initial": self.initial,
            "constant_steps": self.constant_steps,
            "decay_steps": self.decay_steps,
        }


def step_conv_flops(model) -> dict:
    """Floating-point operations of the convolutions in one ``train_step`` per slice,
    ``{"generator": ..., "discriminator": ...}`` (the latter only with a discriminator),
    for a U-Net generator (:func:`networks.conv_flops` counts a forward pass).

    Generator: the forward pass, then the kernel and input gradients of every
    convolution except the input gradient of the first, which nothing needs:
    ``3 G - g0``. Discriminator: three forward passes (real and fake for its own
    update, then fake again for the generator's loss), kernel gradients in the first
    two, input gradients in all three except the first layer's in the two whose input
    needs none: ``8 D - 2 d0``. Norms, activations and the optimisers are not counted.
    """
    if model.config.generator != "unet":
        raise ValueError(f"step_conv_flops counts a U-Net's step, not a {model.config.generator}'s")

    def first_conv(network):
        return networks.conv_layer_flops(next(filter(networks.is_conv, network.layers)))

    generator, discriminator = model.generator, model.discriminator
    work = {"generator": 3 * networks.conv_flops(generator) - first_conv(generator)}
    if discriminator is not None:
        work["discriminator"] = 8 * networks.conv_flops(discriminator) - 2 * first_conv(
            discriminator
        )
    return work


def _denormalize(image, inputs):
    """De-normalised, in the file's units (the pipeline's ``scale``, when given)."""
    return transforms.denormalize_per_slice(
        image, inputs["mean"], inputs["std"], inputs.get("scale")
    )


@keras.saving.register_keras_serializable(package="tfmri")
class ReconstructionModel(keras.Model):
    """pix2pix (or, without a discriminator, the L1 U-Net) with its own train/test steps.

    Call it on ``inputs`` (the pipeline's dict, or the zero-filled image
    ``[B, S, S, 1]``) to get the normalised reconstruction ``float32 [B, S, S, 1]``;
    with ``data_consistency`` the dict must hold ``measured`` and ``mask``.
    """

    def __init__(self, config: ModelConfig | dict, **kwargs):
        # Its inputs stay as given: in mixed precision Keras would cast the float inputs
        # (mean, std, mask) to the compute dtype, and de-normalising or data consistency
        # in bfloat16 loses digits; the networks cast their own inputs.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = ModelConfig(**config)
        self.config = config
        self.generator = config.build_generator()
        self.discriminator = config.build_discriminator()
        names = ["G_L1", "nmse", "psnr", "ssim"]
        if self.discriminator is not None:
            names = ["D_real", "D_fake", "G_GAN"] + names
        if config.ssim_weight > 0:
            names.append("G_SSIM")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compile(self, g_optimizer, d_optimizer=None, **kwargs):
        """``d_optimizer`` is needed with a discriminator. Both are built here, before
        ``fit``: a two-optimiser ``train_step`` under a multi-replica strategy fails
        otherwise."""
        super().compile(**kwargs)
        if self.discriminator is not None and d_optimizer is None:
            raise ValueError("a model with a discriminator needs a d_optimizer")
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer if self.discriminator is not None else None
        self.g_optimizer.build(self.generator.trainable_variables)
        if self.d_optimizer is not None:
            self.d_optimizer.build(self.discriminator.trainable_variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras's TensorFlow trainer builds a model from a batch of the first fit()
        # iterator, averaged over replicas; under MultiWorkerMirroredStrategy that
        # average fails on dict inputs (keras-team/keras#20329). The networks are built
        # in __init__ and both optimisers in compile: there is nothing to build.
        return

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            if self.config.data_consistency:
                raise ValueError("a data-consistency model needs the pipeline's inputs dict")
            return self.generator(inputs, training=training)
        if self.config.generator == "cascade":
            keys = ("measured", "mask", "mean", "std")
            return self.generator({key: inputs[key] for key in keys}, training=training)
        generator_input = inputs["zero_filled"]
        # Multi-coil maps, estimated once for the complex input and data consistency.
        maps = consistency.maps_of(inputs) if self.config.data_consistency else None
        if self.config.generator_input == "complex":
            complex_image = consistency.normalized_complex(inputs, self.config.image_size, maps)
            generator_input = tf.concat([generator_input, complex_image], axis=-1)
        output = self.generator(generator_input, training=training)
        if self.config.data_consistency:
            output = consistency.apply(output, inputs, maps)
        return output

    def _reconstruction_losses(self, inputs, target, fake):
        """Per-example generator losses other than the GAN loss: {name: float32 [B]}."""
        losses = {
            "G_L1": self.config.lambda_l1 * tf.reduce_mean(tf.abs(fake - target), axis=[1, 2, 3])
        }
        if self.config.ssim_weight > 0:
            similarity = image_metrics.ssim(
                _denormalize(target, inputs), _denormalize(fake, inputs), inputs["max_value"]
            )
            losses["G_SSIM"] = self.config.ssim_weight * (1.0 - similarity)
        return losses

    def _discriminator_step(self, zero_filled, target, fake):
        with tf.GradientTape() as tape:
            real_logits = self.discriminator([zero_filled, target], training=True)
            fake_logits = self.discriminator([zero_filled, fake], training=True)
            d_real = gan_loss(real_logits, True, self.config.gan_mode)
            d_fake = gan_loss(fake_logits, False, self.config.gan_mode)
            loss = tf.nn.compute_average_loss(0.5 * (d_real + d_fake))
            scaled = _scale(self.d_optimizer, loss)
        variables = self.discriminator.trainable_variables
        self.d_optimizer.apply(tape.gradient(scaled, variables), variables)
        return d_real, d_fake

    def train_step(self, data):
        inputs, target = data
        zero_filled = inputs["zero_filled"]
        with tf.GradientTape() as tape:
            fake = self(inputs, training=True)
            per_example = self._reconstruction_losses(inputs, target, fake)
            if self.discriminator is not None:
                with tape.stop_recording():
                    d_real, d_fake = self._discriminator_step(
                        zero_filled, target, tf.stop_gradient(fake)
                    )
                fake_logits = self.discriminator([zero_filled, fake], training=True)
                per_example["G_GAN"] = gan_loss(fake_logits, True, self.config.gan_mode)
            loss = tf.nn.compute_average_loss(tf.add_n(list(per_example.values())))
            scaled = _scale(self.g_optimizer, loss)
        variables = self.generator.trainable_variables
        self.g_optimizer.apply(tape.gradient(scaled, variables), variables)

        if self.discriminator is not None:
            per_example["D_real"], per_example["D_fake"] = d_real, d_fake
        for name, values in per_example.items():
            self.trackers[name].update_state(values)
        # The image metrics are validation metrics (test_step): computing them on every
        # training batch would cost about a tenth of a step.
        return _logs({name: self.trackers[name].result() for name in per_example})

    def test_step(self, data):
        inputs, target = data
        # Slices weighted 0 pad a batch to whole replica batches (training.train).
        weight = inputs.get("weight")
        fake = self(inputs, training=False)
        for name, values in self._reconstruction_losses(inputs, target, fake).items():
            self.trackers[name].update_state(values, sample_weight=weight)
        self._update_image_metrics(inputs, target, fake, weight)
        return _logs(
            {
                name: self.trackers[name].result()
                for name in self.trackers
                if name not in ("D_real", "D_fake", "G_GAN")
            }
        )

    def _update_image_metrics(self, inputs, target, fake, weight=None):
        """Slice-averaged NMSE, PSNR and SSIM of the de-normalised prediction against the
        stored target (the evaluation pipeline's ``target_image``, never clamped); data
        without it (not from the pipeline) are scored against the de-normalised target."""
        if "target_image" in inputs:
            gt = tf.cast(inputs["target_image"], tf.float32)[..., None]
        else:
            gt = _denormalize(target, inputs)
        prediction = _denormalize(tf.cast(fake, tf.float32), inputs)
        data_range = inputs["max_value"]
        scores = {
            "nmse": image_metrics.nmse(gt, prediction),
            "psnr": image_metrics.psnr(gt, prediction, data_range),
            "ssim": image_metrics.ssim(gt, prediction, data_range),
        }
        for name, values in scores.items():
            self.trackers[name].update_state(values, sample_weight=weight)

    def get_config(self):
        return {**super().get_config(), "config": dataclasses.asdict(self.config)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _logs(values):
    """The step's logs as fit() can average them over the replicas.

    Across several workers, Keras 3's fit averages each log value with a collective
    reduce over axis 0, which fails on scalars (tensorflow/tensorflow#72388): there the
    values get a length-1 axis (each worker's Mean trackers cover equally many
    examples, so the average of their results is the global mean).
    """
    strategy = tf.distribute.get_strategy()
    in_multi_worker = getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and in_multi_worker():
        return {name: tf.reshape(value, [1]) for name, value in values.items()}
    return values


def _scale(optimizer, loss):
    """The loss to differentiate: scaled by a LossScaleOptimizer (float16), else as is."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.scale_loss(loss)
    return loss


def make_optimizer(schedule, beta_1, beta_2, precision, name):
    """Adam (on the fused kernel) with pix2pix's betas; loss-scaled under ``mixed_float16``."""
    optimizer = optimizers.FusedAdam(schedule, beta_1=beta_1, beta_2=beta_2, name=name)
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_loss_scale")
    return optimizer
