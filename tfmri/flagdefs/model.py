"""The flags of the networks and their losses (``ModelConfig``)."""

from absl import flags

from tfmri.baselines import cs_tv
from tfmri.models import cascade, networks, pix2pix

flags.DEFINE_enum(
    "model",
    "pix2pix",
    ["pix2pix", "unet"],
    "pix2pix: the generator trained against the discriminator (GAN + L1 loss); unet: "
    "with L1 alone (with --generator=unet, fastMRI's U-Net baseline).",
)
flags.DEFINE_enum(
    "generator",
    "unet",
    list(pix2pix.GENERATORS),
    "unet: pix2pix's U-Net on the magnitude image; cascade: --cascades small U-Nets "
    "(--depth, --base_filters, --norm, --dropout) on the complex image, the measured "
    "k-space put back after each (needs --data_consistency).",
)
flags.DEFINE_integer("cascades", 5, "Stages of --generator=cascade.")
flags.DEFINE_boolean("share_weights", False, "--generator=cascade: one U-Net for every stage.")
flags.DEFINE_enum(
    "cascade_start",
    "zero_filled",
    list(cascade.STARTS),
    "--generator=cascade: the image the first stage corrects, the zero-filled one or the "
    "CS-TV solution (the method cs_cascade; its stages learn what CS-TV misses).",
)
flags.DEFINE_string(
    "start_cs_lambda",
    cs_tv.AUTO,
    "--cascade_start=cs_tv: CS-TV's lambda, a number > 0 or 'auto' (chosen by tfmri.train "
    "on the training split as tfmri.report's --cs_lambda=auto chooses, kept in model.json).",
)
flags.DEFINE_integer(
    "start_cs_iterations",
    cs_tv.DEFAULT_ITERATIONS,
    "--cascade_start=cs_tv: CS-TV iterations.",
    lower_bound=1,
)
flags.DEFINE_integer("depth", 6, "U-Net down-sampling steps (at most 6 for 320 x 320).")
flags.DEFINE_integer("base_filters", 64, "Filters of the U-Net's outermost level.")
flags.DEFINE_float(
    "dropout", 0.5, "Dropout in the three U-Net decoder levels next to the innermost, as pix2pix."
)
flags.DEFINE_enum("norm", "batch", list(networks.NORMS), "Normalisation layers of the U-Net.")
flags.DEFINE_boolean("residual", True, "Predict a correction added to the zero-filled input.")
flags.DEFINE_enum(
    "output_activation",
    "linear",
    list(networks.OUTPUT_ACTIVATIONS),
    "U-Net output: linear, or tanh scaled to the normalisation's clamp [-6, 6].",
)
flags.DEFINE_enum(
    "discriminator", "patch", ["patch", "pixel"], "PatchGAN (70 x 70 with 3 layers) or PixelGAN."
)
flags.DEFINE_integer("n_layers", 3, "Stride-2 layers of the PatchGAN discriminator.")
flags.DEFINE_integer("d_base_filters", 64, "Filters of the discriminator's first layer.")
flags.DEFINE_enum("d_norm", "batch", list(networks.NORMS), "Discriminator normalisation.")
flags.DEFINE_enum("gan_mode", "vanilla", list(pix2pix.GAN_MODES), "GAN loss: BCE or least squares.")
flags.DEFINE_float("lambda_l1", 100.0, "Weight of the L1 loss in the generator loss.")
flags.DEFINE_float("ssim_weight", 0.0, "Weight of an extra (1 - SSIM) generator loss.")
flags.DEFINE_enum(
    "generator_input",
    "magnitude",
    list(pix2pix.GENERATOR_INPUTS),
    "What the generator sees: the zero-filled magnitude, or also the complex zero-filled "
    "image (coil-combined with estimated maps, multi-coil) as real and imaginary channels "
    "(needs --data_consistency).",
)
flags.DEFINE_boolean(
    "data_consistency",
    False,
    "Replace the sampled k-space columns of the output by the measured ones (the output "
    "borrows the zero-filled phase; multi-coil: coil by coil, through coil maps estimated "
    "from the fully sampled centre).",
)
