"""Devices, distribution strategy, precision and determinism of a run.

Call :func:`configure` once, before TensorFlow creates its devices (that is, before
any op runs): splitting the CPU into logical devices is impossible afterwards.
"""

import keras
import tensorflow as tf
from absl import logging

from tfmri.errors import UserError


def split_cpu(num_devices: int):
    """Splits the CPU into ``num_devices`` logical devices (a real multi-replica
    MirroredStrategy without GPUs). 0 or 1 leaves it whole."""
    if num_devices <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices
        )
    except RuntimeError:
        current = len(tf.config.list_logical_devices("CPU"))
        if current != num_devices:
            raise UserError(
                f"--num_cpu_devices={num_devices}: TensorFlow already started with {current} "
                "CPU device(s); set it before anything runs (a fresh process)"
            ) from None


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``default`` (one device) or ``mirrored`` (every GPU, else every logical CPU)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
        logging.info("MirroredStrategy over %s", [device.name for device in devices])
        return strategy
    raise UserError(f"--strategy={name}: use default or mirrored")


def configure(num_cpu_devices=0, strategy="default", precision="float32", deterministic=False):
    """Sets up devices, precision and determinism; returns the strategy."""
    split_cpu(num_cpu_devices)
    keras.mixed_precision.set_global_policy(precision)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    return make_strategy(strategy)
