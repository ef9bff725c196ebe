"""Reconstructing a validation split volume by volume, with any method.

A method is a ``predict(inputs) -> float32 [B, S, S]`` function of a batch of the
evaluation pipeline (:func:`tfmri.data.pipeline.make_dataset`, ``training=False``),
giving de-normalised reconstructions; :func:`reconstruct_volumes` groups its slices
into volumes next to the zero-filled input and the target. ``tfmri.evaluate`` and
``tfmri.report`` both use it, so their numbers for a checkpoint are the same.
"""

import collections
import time

import numpy as np
import tensorflow as tf

from tfmri.data import fastmri_files, transforms


def denormalized(images, inputs):
    """float32 [B, S, S]: normalised images [B, S, S, 1] in the batch's intensity scale
    (the file's units, with the pipeline's ``scale``)."""
    images = tf.cast(images[..., 0], tf.float32)
    return transforms.denormalize_per_slice(
        images, inputs["mean"], inputs["std"], inputs.get("scale")
    )


def model_predictor(model):
    """predict(inputs) -> de-normalised float32 [B, S, S] reconstructions of the model."""
    run = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)
    keys = ("zero_filled", "mean", "std", "measured", "mask")

    def predict(inputs):
        return denormalized(run({key: inputs[key] for key in keys if key in inputs}), inputs)

    return predict


class Timer:
    """Seconds spent in a predict function per slice, in steady state: the first batch
    is predicted twice and only the second time counts (the first traces, compiles)."""

    def __init__(self, predict):
        self.predict = predict
        self.seconds = 0.0
        self.slices = 0

    def __call__(self, inputs):
        if not self.slices:
            np.asarray(self.predict(inputs))
        start = time.perf_counter()
        images = np.asarray(self.predict(inputs))
        self.seconds += time.perf_counter() - start
        self.slices += len(images)
        return images

    @property
    def seconds_per_slice(self):
        return self.seconds / self.slices if self.slices else None


def in_recon_frame(images, zero_filled):
    """Square outputs [B, S, S] placed in the centre of the scored frame: the zero-filled
    images [B, h, w] (a file's recon crop, which can differ from the network's crop),
    cropped where the frame is smaller; the same array when the shapes agree."""
    images, zero_filled = np.asarray(images), np.asarray(zero_filled)
    if images.shape == zero_filled.shape:
        return images
    height, width = zero_filled.shape[-2:]
    rows, columns = min(images.shape[-2], height), min(images.shape[-1], width)
    inner = fastmri_files.center_crop(images, rows, columns)
    frame = zero_filled.copy()
    top, left = (height - rows) // 2, (width - columns) // 2
    frame[..., top : top + rows, left : left + columns] = inner
    return frame


def reconstruct_volumes(predict, dataset):
    """Yields (volume name, zero-filled, reconstruction, target), float32 [slices, h, w].

    ``predict(inputs)`` gives the de-normalised reconstructions [B, S, S] of a batch.
    The zero-filled image and the target are the pipeline's unnormalised, unclamped
    ``zero_filled_image`` and ``target_image``: what fastMRI scores, at the crop or, with
    ``PipelineOptions.recon_crop``, at each file's recon crop (the reconstruction then
    placed in it, :func:`in_recon_frame`).
    """
    current, parts = None, collections.defaultdict(list)
    names = ("zero_filled", "reconstruction", "target")
    for inputs, _ in dataset:
        images = {
            "zero_filled": inputs["zero_filled_image"],
            "reconstruction": in_recon_frame(predict(inputs), inputs["zero_filled_image"]),
            "target": inputs["target_image"],
        }
        for index, name in enumerate(inputs["volume"].numpy()):
            name = name.decode()
            if name != current and current is not None:
                yield current, *(np.stack(parts[key]) for key in names)
                parts.clear()
            current = name
            for key in names:
                parts[key].append(np.asarray(images[key][index]))
    if current is not None:
        yield current, *(np.stack(parts[key]) for key in names)
