"""The flags of a run, shared by ``tfmri.train``, ``tfmri.evaluate`` and later apps.

A flagfile in ``configs/`` sets these and is the whole recipe of a run; each app
adds its own few flags (``--checkpoint``, ...) next to its ``main``. ``check()``
validates the values before any work starts and raises a UserError naming the flag.
"""

import dataclasses
import os

from absl import flags

from tfmri import mask_flags
from tfmri.data import masks
from tfmri.errors import UserError
from tfmri.models import networks, pix2pix

FLAGS = flags.FLAGS

# Data
flags.DEFINE_string("data_dir", None, "Converted TFRecords (the converter's --output_dir).")
flags.DEFINE_string("train_split", "singlecoil_train", "Split to train on.")
flags.DEFINE_string("val_split", "singlecoil_val", "Split to validate and evaluate on.")
flags.DEFINE_integer("crop_size", 320, "Side of the square recon crop the model sees.")
flags.DEFINE_integer("batch_size", 8, "Global batch size (split over the replicas).")
flags.DEFINE_integer("shuffle_buffer", 64, "Records in the training shuffle buffer.")

# Model
flags.DEFINE_enum("model", "pix2pix", ["pix2pix", "unet"], "pix2pix GAN, or the L1 U-Net baseline.")
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
flags.DEFINE_boolean(
    "data_consistency",
    False,
    "Replace the sampled k-space columns of the output by the measured ones "
    "(single-coil; the output borrows the zero-filled phase).",
)

# Optimisation
flags.DEFINE_float("learning_rate", 2e-4, "Adam learning rate of both networks.")
flags.DEFINE_float("beta1", 0.5, "Adam beta_1.")
flags.DEFINE_float("beta2", 0.999, "Adam beta_2.")
flags.DEFINE_integer("epochs", 100, "Epochs at the constant learning rate.")
flags.DEFINE_integer("epochs_decay", 100, "Epochs of linear decay of the learning rate to 0.")
flags.DEFINE_integer(
    "max_steps_per_epoch", 0, "Cap on the steps of an epoch (0: the whole training split)."
)
flags.DEFINE_integer("seed", 0, "Seed of the weights, data order and training masks.")

# Run time
flags.DEFINE_string("model_dir", None, "Where checkpoints, TensorBoard logs and flags go.")
flags.DEFINE_enum(
    "strategy",
    "default",
    ["default", "mirrored", "multi_worker"],
    "tf.distribute strategy: one device; MirroredStrategy over all devices; or "
    "MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (one process per worker, "
    "e.g. tools/launch_local_cluster.py).",
)
flags.DEFINE_integer(
    "num_cpu_devices", 0, "Split the CPU into this many logical devices (0: do not split)."
)
flags.DEFINE_enum(
    "precision",
    "float32",
    ["float32", "mixed_float16", "mixed_bfloat16"],
    "Compute precision; variables, outputs, losses and metrics stay float32.",
)
flags.DEFINE_boolean("deterministic", False, "Enable TensorFlow op determinism (slower).")
flags.DEFINE_integer(
    "checkpoint_every_steps", 0, "Also checkpoint every N steps (0: at the end of each epoch only)."
)
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept in --model_dir.")
flags.DEFINE_integer("log_every_steps", 10, "TensorBoard scalars every N steps (0: never).")
flags.DEFINE_integer("num_images", 4, "Validation slices shown in TensorBoard each epoch.")


def mask_spec() -> masks.MaskSpec:
    """The mask of --mask_type, --center_fractions, --accelerations (checked)."""
    return mask_flags.spec()


def model_config() -> pix2pix.ModelConfig:
    """The networks and losses of the flags (checked)."""
    depth_limit = networks.max_depth(FLAGS.crop_size)
    if FLAGS.depth < 1:
        raise UserError(f"--depth={FLAGS.depth}: must be >= 1")
    if FLAGS.depth > depth_limit:
        multiple = 2**FLAGS.depth
        nearest = max(multiple, FLAGS.crop_size // multiple * multiple)
        other_depth = f" or --depth={depth_limit} or less" if depth_limit >= 1 else ""
        raise UserError(
            f"--crop_size={FLAGS.crop_size} with --depth={FLAGS.depth}: the U-Net halves the "
            f"crop {FLAGS.depth} times, so it must be a multiple of {multiple}; use "
            f"--crop_size={nearest}{other_depth}"
        )
    try:
        # Every field but these two is the flag of the same name.
        fields = {
            field.name: FLAGS[field.name].value
            for field in dataclasses.fields(pix2pix.ModelConfig)
            if field.name not in ("image_size", "discriminator")
        }
        return pix2pix.ModelConfig(
            image_size=FLAGS.crop_size,
            discriminator=FLAGS.discriminator if FLAGS.model == "pix2pix" else "none",
            **fields,
        )
    except ValueError as error:
        raise UserError(f"model flags: {error}") from None


def check():
    """Validates the shared flags before any work; raises UserError naming the flag."""
    check_directories()
    _check_values()


def check_directories():
    """``--data_dir`` and ``--model_dir`` are given, and data_dir is a directory."""
    if not FLAGS.data_dir:
        raise UserError("--data_dir is required: the converter's --output_dir")
    if not os.path.isdir(FLAGS.data_dir):
        raise UserError(
            f"--data_dir={FLAGS.data_dir}: no such directory; convert data there with "
            "tools/convert_fastmri.py"
        )
    if not FLAGS.model_dir:
        raise UserError("--model_dir is required: where the checkpoints and logs go")


def _check_values():
    positive = ("batch_size", "crop_size", "base_filters", "d_base_filters", "n_layers")
    positive += ("keep_checkpoints",)
    for name in positive:
        if FLAGS[name].value < 1:
            raise UserError(f"--{name}={FLAGS[name].value}: must be >= 1")
    non_negative = ("epochs", "epochs_decay", "max_steps_per_epoch", "num_cpu_devices")
    non_negative += ("checkpoint_every_steps", "log_every_steps", "num_images")
    for name in non_negative:
        if FLAGS[name].value < 0:
            raise UserError(f"--{name}={FLAGS[name].value}: must be >= 0")
    if FLAGS.epochs + FLAGS.epochs_decay < 1:
        raise UserError("--epochs + --epochs_decay must be >= 1")
    if not FLAGS.learning_rate > 0:
        raise UserError(f"--learning_rate={FLAGS.learning_rate}: must be > 0")
    if not 0 <= FLAGS.dropout < 1:
        raise UserError(f"--dropout={FLAGS.dropout}: must be in [0, 1)")
    mask_spec()
    model_config()


def recipe_flags() -> list:
    """The flags of a run's recipe: this module's and the mask flags."""
    return [
        flag
        for module in (__name__, mask_flags.__name__)
        for flag in FLAGS.get_flags_for_module(module)
    ]


def flag_values() -> dict:
    """The shared flags' values, for hyperparameter logs and the saved run record."""
    return {flag.name: flag.value for flag in recipe_flags()}
