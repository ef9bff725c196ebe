"""Cartesian undersampling masks with fastMRI semantics, in NumPy and in TensorFlow.

A mask selects k-space columns (the last axis, W). Every mask keeps
``num_low_frequencies = round(W * center_fraction)`` contiguous centre columns and
adds columns chosen by the mask type:

* ``random``: each other column independently with probability
  ``(W / acc - num_low) / (W - num_low)``.
* ``equispaced``: every ``acc``-th column from a random offset in ``[0, acc)``.
* ``equispaced_fraction``: as equispaced, with a spacing chosen so that the kept
  fraction of all columns is ``1 / acc``.
* ``magic``: equispaced lines placed to exploit conjugate symmetry (Defazio 2019).
* ``magic_fraction``: magic with the centre counted in the ``1 / acc`` budget.

When several ``(center_fraction, acceleration)`` pairs are given one is drawn per mask.

Two implementations share these semantics:

* :class:`MaskFunction` (NumPy) reproduces fastMRI's random streams exactly. It makes
  the fixed per-volume masks of validation and test, seeded from the file name
  (:func:`volume_seed`), and is the reference the tests compare against.
* :func:`sample_mask` (TensorFlow, stateless RNG) draws fresh training masks inside a
  ``tf.data`` graph with the same distribution.

TensorFlow is imported on the first call of a TensorFlow function, not with the
module: the synthetic data generator and the converter use the NumPy masks and run
without TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import sys

import numpy as np

MASK_TYPES = ("random", "equispaced", "equispaced_fraction", "magic", "magic_fraction")


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """What kind of mask to draw and with which (centre fraction, acceleration) pairs."""

    mask_type: str
    center_fractions: tuple[float, ...]
    accelerations: tuple[int, ...]

    def __post_init__(self):
        if self.mask_type not in MASK_TYPES:
            raise ValueError(
                f"unknown mask type {self.mask_type!r}: choose one of {', '.join(MASK_TYPES)}"
            )
        if not self.center_fractions or len(self.center_fractions) != len(self.accelerations):
            raise ValueError(
                "center_fractions and accelerations must be non-empty lists of the same length, "
                f"got {list(self.center_fractions)} and {list(self.accelerations)}"
            )
        for fraction in self.center_fractions:
            if not 0.0 < fraction < 1.0:
                raise ValueError(f"center fraction {fraction} must lie in (0, 1)")
        for acceleration in self.accelerations:
            if acceleration < 1 or acceleration != int(acceleration):
                raise ValueError(f"acceleration {acceleration} must be an integer >= 1")
        object.__setattr__(self, "center_fractions", tuple(float(f) for f in self.center_fractions))
        object.__setattr__(self, "accelerations", tuple(int(a) for a in self.accelerations))


def parse_spec(mask_type, center_fractions, accelerations) -> MaskSpec:
    """A MaskSpec from command-line strings (lists of numbers as text); ValueError if bad."""
    return MaskSpec(
        mask_type,
        tuple(float(value) for value in center_fractions),
        tuple(float(value) for value in accelerations),
    )


def volume_seed(volume_name: str) -> tuple[int, ...]:
    """The seed fastMRI uses to fix one mask per validation/test volume: the name's code points."""
    return tuple(map(ord, volume_name))


@functools.lru_cache(maxsize=4096)
def fixed_volume_mask(spec: MaskSpec, volume_name: str, width: int) -> np.ndarray:
    """float32 [width]: the one mask of a validation or test volume, as fastMRI fixes it
    (the mask function of ``spec`` seeded by :func:`volume_seed` of the file name).
    Cached, so the array is read-only."""
    mask, _ = MaskFunction(spec)(width, seed=volume_seed(volume_name))
    mask.setflags(write=False)
    return mask


def center_columns(width: int, num_low_frequencies: int) -> np.ndarray:
    """bool [width]: the ``num_low_frequencies`` contiguous centre columns."""
    mask = np.zeros(width, dtype=bool)
    start = (width - num_low_frequencies + 1) // 2
    mask[start : start + num_low_frequencies] = True
    return mask


def _magic_columns(width: int, acceleration: int, offset: int) -> np.ndarray:
    """bool [width]: lines on two interleaved lattices, one per half of k-space."""
    if offset % 2 == 0:
        positive_start, negative_start = offset + 1, offset + 2
    else:
        positive_start, negative_start = offset + 2, offset - 1
    positive = np.zeros((width + 1) // 2, dtype=bool)
    negative = np.zeros(width - (width + 1) // 2, dtype=bool)
    positive[positive_start::acceleration] = True
    negative[negative_start::acceleration] = True
    return np.fft.fftshift(np.concatenate([positive, negative[::-1]]))


class MaskFunction:
    """NumPy mask sampler whose random stream matches fastMRI's ``subsample`` module.

    Owns a ``np.random.RandomState``; a call with an explicit ``seed`` gives the same mask
    every time and leaves the sampler's own stream untouched.
    """

    def __init__(self, spec: MaskSpec, seed=None):
        self.spec = spec
        self.rng = np.random.RandomState(seed)

    def __call__(self, width: int, seed=None) -> tuple[np.ndarray, int]:
        """Returns (float32 [width] mask, 1 where sampled; number of centre columns)."""
        with self._temporary_seed(seed):
            return self._sample(int(width))

    @contextlib.contextmanager
    def _temporary_seed(self, seed):
        if seed is None:
            yield
            return
        state = self.rng.get_state()
        self.rng.seed(seed)
        try:
            yield
        finally:
            self.rng.set_state(state)

    def _sample(self, width: int) -> tuple[np.ndarray, int]:
        spec = self.spec
        choice = self.rng.randint(len(spec.center_fractions))
        center_fraction = spec.center_fractions[choice]
        acceleration = spec.accelerations[choice]
        num_low = round(width * center_fraction)
        kind = spec.mask_type
        if kind == "magic_fraction":
            target_columns = round(width / acceleration)
            num_low = max(min(num_low, target_columns), 1)
            remaining = target_columns - num_low
            acceleration = round(width / remaining) if remaining > 0 else 0
            kind = "magic"
        if kind == "random":
            probability = (width / acceleration - num_low) / (width - num_low)
            extra = self.rng.uniform(size=width) < probability
        elif kind == "equispaced":
            offset = self.rng.randint(0, high=round(acceleration))
            extra = np.zeros(width, dtype=bool)
            extra[offset::acceleration] = True
        elif kind == "equispaced_fraction":
            spacing = acceleration * (num_low - width) / (num_low * acceleration - width)
            offset = self.rng.randint(0, high=round(spacing))
            extra = np.zeros(width, dtype=bool)
            extra[np.around(np.arange(offset, width - 1, spacing)).astype(np.int64)] = True
        else:  # magic
            if acceleration < 1:
                raise ValueError(f"magic mask: acceleration too high for width {width}")
            offset = self.rng.randint(0, high=acceleration)
            extra = _magic_columns(width, acceleration, offset)
        mask = center_columns(width, num_low) | extra
        return mask.astype(np.float32), num_low


# --------------------------------------------------------------------------------------
# TensorFlow: graph-mode sampling with stateless RNG, for training inside tf.data.

tf = None  # bound to the tensorflow module by _tensorflow()


def _tensorflow():
    global tf
    if tf is None:
        # Usually already imported by the caller (tf.data tracing this code): taking it
        # from sys.modules keeps AutoGraph from trying to convert the import machinery.
        tf = sys.modules.get("tensorflow") or importlib.import_module("tensorflow")
    return tf


def _stateless_seeds(seed, count):
    """Splits one stateless seed (int [2]) into ``count`` independent seeds."""
    _tensorflow()
    return tf.unstack(tf.random.experimental.stateless_split(seed, num=count))


def _every_nth_tf(length, start, step):
    """bool [length]: positions ``start, start + step, ...`` (``start`` may be negative)."""
    _tensorflow()
    index = tf.range(length, dtype=tf.int32)
    return (index >= start) & (tf.math.floormod(index - start, step) == 0)


def _magic_columns_tf(width, acceleration, offset):
    _tensorflow()
    even = tf.math.floormod(offset, 2) == 0
    positive_start = tf.where(even, offset + 1, offset + 2)
    negative_start = tf.where(even, offset + 2, offset - 1)
    positive_length = (width + 1) // 2
    positive = _every_nth_tf(positive_length, positive_start, acceleration)
    negative = _every_nth_tf(width - positive_length, negative_start, acceleration)
    unshifted = tf.concat([positive, tf.reverse(negative, axis=[0])], axis=0)
    return tf.roll(unshifted, shift=width // 2, axis=0)


def _equispaced_fraction_tf(width, num_low, acceleration, random_offset):
    """bool [W]: columns every ``spacing`` (real-valued, rounded) from a random offset,
    spaced so that with the centre the whole mask keeps 1 / ``acceleration``."""
    width_f = tf.cast(width, tf.float64)
    acceleration_f = tf.cast(acceleration, tf.float64)
    num_low_f = tf.cast(num_low, tf.float64)
    spacing = acceleration_f * (num_low_f - width_f) / (num_low_f * acceleration_f - width_f)
    offset = tf.cast(random_offset(tf.cast(tf.round(spacing), tf.int32)), tf.float64)
    count = tf.cast(tf.math.ceil((width_f - 1.0 - offset) / spacing), tf.int32)
    positions = tf.round(offset + tf.cast(tf.range(count), tf.float64) * spacing)
    columns = tf.range(width, dtype=tf.int32)
    hits = tf.equal(columns[:, None], tf.cast(positions, tf.int32)[None, :])
    return tf.reduce_any(hits, axis=1)


def sample_mask(spec: MaskSpec, width, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """Draws one mask in TensorFlow (graph mode friendly, deterministic for a seed).

    Args:
      spec: the mask kind and its (centre fraction, acceleration) pairs.
      width: int32 scalar, the number of k-space columns W.
      seed: int32/int64 [2], a stateless RNG seed.

    Returns:
      (float32 [W] mask, 1 where sampled; int32 scalar number of centre columns).
    """
    _tensorflow()
    width = tf.cast(width, tf.int32)
    seed = tf.cast(seed, tf.int64)
    choice_seed, offset_seed, uniform_seed = _stateless_seeds(seed, 3)
    choice = tf.random.stateless_uniform(
        [], choice_seed, minval=0, maxval=len(spec.center_fractions), dtype=tf.int32
    )
    center_fraction = tf.gather(tf.constant(spec.center_fractions, tf.float64), choice)
    acceleration = tf.gather(tf.constant(spec.accelerations, tf.int32), choice)
    width_f = tf.cast(width, tf.float64)
    num_low = tf.cast(tf.round(width_f * center_fraction), tf.int32)
    kind = spec.mask_type

    if kind == "magic_fraction":
        target_columns = tf.cast(tf.round(width_f / tf.cast(acceleration, tf.float64)), tf.int32)
        num_low = tf.maximum(tf.minimum(num_low, target_columns), 1)
        remaining = target_columns - num_low
        tf.debugging.assert_positive(
            remaining, message="magic_fraction mask: acceleration too high for the width"
        )
        acceleration = tf.cast(tf.round(width_f / tf.cast(remaining, tf.float64)), tf.int32)
        kind = "magic"

    def random_offset(limit):
        return tf.random.stateless_uniform([], offset_seed, minval=0, maxval=limit, dtype=tf.int32)

    if kind == "random":
        acceleration_f = tf.cast(acceleration, tf.float64)
        num_low_f = tf.cast(num_low, tf.float64)
        probability = (width_f / acceleration_f - num_low_f) / (width_f - num_low_f)
        draws = tf.random.stateless_uniform([width], uniform_seed, dtype=tf.float64)
        extra = draws < probability
    elif kind == "equispaced":
        extra = _every_nth_tf(width, random_offset(acceleration), acceleration)
    elif kind == "equispaced_fraction":
        extra = _equispaced_fraction_tf(width, num_low, acceleration, random_offset)
    else:  # magic
        extra = _magic_columns_tf(width, acceleration, random_offset(acceleration))

    start = (width - num_low + 1) // 2
    columns = tf.range(width, dtype=tf.int32)
    center = (columns >= start) & (columns < start + num_low)
    return tf.cast(center | extra, tf.float32), num_low


def apply_mask(kspace, mask):
    """Zeroes the unsampled columns.

    Args:
      kspace: complex64 [..., H, W].
      mask: float32 [W] (or broadcastable to kspace), 1 where sampled.

    Returns:
      complex64 [..., H, W], the sampled entries unchanged and the others exactly 0.
    """
    _tensorflow()
    return kspace * tf.cast(mask, kspace.dtype)
