"""Devices, distribution strategy, precision and determinism of a run.

Call :func:`configure` once, before TensorFlow creates its devices (that is, before
any op runs): splitting the CPU into logical devices is impossible afterwards.
"""

import ctypes
import dataclasses
import json
import os
import platform

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


@dataclasses.dataclass(frozen=True)
class Task:
    """This process's place in a cluster: worker ``index`` of ``num_workers``."""

    num_workers: int = 1
    index: int = 0
    is_chief: bool = True


def cluster_task() -> Task:
    """The task of ``TF_CONFIG`` (checked); a lone chief without it."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise UserError(
            "--strategy=multi_worker: TF_CONFIG is not set; start the workers with "
            "tools/launch_local_cluster.py, or set TF_CONFIG on each host (README, Scale-out)"
        )
    try:
        spec = json.loads(raw)
        cluster, task = spec["cluster"], spec["task"]
        kind, index = task["type"], int(task["index"])
        workers = list(cluster.get("worker", [])) + list(cluster.get("chief", []))
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(
            f"TF_CONFIG is not a cluster spec ({error!r}); expected "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
        ) from None
    if kind not in ("worker", "chief") or not 0 <= index < len(cluster.get(kind, [])):
        raise UserError(f"TF_CONFIG: task {task} is not in the cluster {cluster}")
    is_chief = kind == "chief" or ("chief" not in cluster and index == 0)
    position = index if kind == "worker" and "chief" not in cluster else index + (kind == "worker")
    return Task(len(workers), position, is_chief)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (every GPU, else every logical CPU) or
    ``multi_worker`` (MultiWorkerMirroredStrategy over the TF_CONFIG cluster)."""
    if name == "multi_worker":
        task = cluster_task()
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        logging.info("MultiWorkerMirroredStrategy: worker %d of %d", task.index, task.num_workers)
        return strategy
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
        logging.info("MirroredStrategy over %s", [device.name for device in devices])
        return strategy
    raise UserError(f"--strategy={name}: use default, mirrored or multi_worker")


# glibc's mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Makes glibc's malloc keep freed memory for reuse instead of returning it.

    By default glibc serves every allocation above 32 MiB (and, as its threshold
    adapts, many smaller ones) with a fresh mmap and unmaps it on free. A training
    step allocates and frees the same large tensors every time (a 4 x 4 x 1024 x 512
    kernel gradient is 32 MiB), so each step page-faulted them in again
    (docs/results.md#figures-behind-design-choices has the counts and times). With mmap
    off and no trimming, freed blocks stay in the heap and the next step reuses them;
    the process holds its peak memory instead of returning it between steps.

    Returns whether the setting was applied (glibc only; elsewhere a no-op).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**30))


def configure(num_cpu_devices=0, strategy="default", precision="float32", deterministic=False):
    """Sets up memory reuse, devices, precision and determinism; returns the strategy."""
    keep_freed_memory()
    split_cpu(num_cpu_devices)
    keras.mixed_precision.set_global_policy(precision)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    return make_strategy(strategy)
