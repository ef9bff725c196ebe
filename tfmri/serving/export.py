"""The SavedModel export of ``python -m tfmri.export``, which TensorFlow Serving loads.

:func:`export` writes ``<export_dir>/<model_name>/<version>/`` (integer versions, TF Serving's
layout; the next free version by default, never an existing one), first under a
temporary name, renamed when complete. Two signatures, float32 in and out, any batch
size, images in the original intensity scale (the normalisation is inside):

* ``serving_default``: ``kspace_real``, ``kspace_imag`` [B, H, W] (undersampled
  single-coil k-space as two real tensors: TF Serving's REST API carries no complex
  numbers), or [B, C, H, W] with any coil count C for a model trained on multi-coil
  data, and ``mask`` [B, W] (1 where a column was sampled) -> ``reconstruction``
  [B, S, S] (S the crop size, 320 for knee; multi-coil: the RSS image's scale).
* ``zero_filled``: ``image`` [B, S, S] (a zero-filled magnitude image) ->
  ``reconstruction`` [B, S, S]. Not offered for data-consistency models, which need
  the k-space.

The answer is never silently wrong. A request fails, with a message naming the input,
before anything is computed when it holds non-finite values, or a mask that is not 0/1,
does not match the k-space's batch or width, or samples no column in some slice, or
when the batch is empty; a reconstruction that is not finite (an input too large for
float32) fails it too. Each example is computed in the units of a power of two near its
largest value, so k-space times ``c`` gives the reconstruction times ``c``.

Each version also holds ``assets.extra/tf_serving_warmup_requests``: TF Serving runs these
``serving_default`` requests (batches of :data:`WARMUP_BATCHES` slices) when it loads the
version, before it answers anyone, so the first client does not wait for the graph's
one-time set-up.
"""

import os
import re
import shutil

import keras
import tensorflow as tf

from tfmri import fileio, runlock
from tfmri.data import pipeline, transforms
from tfmri.errors import UserError
from tfmri.models import pix2pix
from tfmri.serving import client
from tfmri.training import checkpoints

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
WARMUP_BATCHES = (1, 8)


def _per_slice_statistics(images):
    """(mean, std) [B] of each image of [B, S, S], as the pipeline normalises a slice."""
    mean, std = tf.map_fn(
        transforms.instance_statistics, images, fn_output_signature=(tf.float32, tf.float32)
    )
    return mean, std


def _per_example(values, rank):
    """float32 [B] -> [B, 1, ..., 1] of ``rank`` dims, to scale a batch example by example."""
    return tf.reshape(values, tf.concat([[-1], tf.ones([rank - 1], tf.int32)], axis=0))


def _after(checks, *tensors):
    """``tensors`` as identities that run only once every op of ``checks`` has passed.

    A tf.function runs ops without a data dependency in any order: without this, a
    gather on a bad mask may fail first, with a message that names no input.
    """
    with tf.control_dependencies([check for check in checks if check is not None]):
        return [tf.identity(tensor) for tensor in tensors]


def _request_checks(kspace_real, kspace_imag, mask, crop_size):
    """The assertions on a ``serving_default`` request, each naming the input at fault."""
    shape = tf.shape(kspace_real)
    checks = [
        tf.debugging.assert_all_finite(value, f"{name} holds NaN or infinite values")
        for name, value in (("kspace_real", kspace_real), ("kspace_imag", kspace_imag))
    ]
    checks += [
        tf.debugging.assert_all_finite(mask, "mask holds NaN or infinite values"),
        tf.debugging.assert_equal(
            shape, tf.shape(kspace_imag), "kspace_real and kspace_imag differ"
        ),
        tf.debugging.assert_greater_equal(
            shape[0], 1, "kspace_real holds no slice: its batch (first) dimension is 0"
        ),
        tf.debugging.assert_equal(
            tf.shape(mask)[0],
            shape[0],
            "mask batch != k-space batch: send one mask row [W] per slice of kspace_real",
        ),
        tf.debugging.assert_equal(tf.shape(mask)[-1], shape[-1], "mask width != k-space width"),
        tf.debugging.assert_greater_equal(
            tf.minimum(shape[-2], shape[-1]),
            crop_size,
            f"k-space is smaller than the crop: the model reconstructs {crop_size} x {crop_size}",
        ),
    ]
    binary = (mask == 0.0) | (mask == 1.0)
    checks.append(
        tf.debugging.Assert(
            tf.reduce_all(binary),
            [
                "mask holds values other than 0 and 1 (1 where a column was sampled, 0 where "
                "not); found:",
                tf.boolean_mask(mask, ~binary),
            ],
        )
    )
    sampled = tf.reduce_any(mask == 1.0, axis=-1)
    checks.append(
        tf.debugging.Assert(
            tf.reduce_all(sampled),
            [
                "mask samples no column in the rows (slices)",
                tf.where(~sampled)[:, 0],
                "; every slice needs at least one sampled column",
            ],
        )
    )
    return checks


def _scaled_back(reconstruction, scale, inputs):
    """float32 [B, S, S] reconstruction of the input divided by ``scale`` [B] -> the
    reconstruction in the request's units, checked finite (``inputs``: their names).

    ``scale`` is a power of two: multiplying back is exact, unless it overflows.
    """
    (reconstruction,) = _after(
        [
            tf.debugging.assert_all_finite(
                reconstruction,
                "reconstruction is not finite although the request is: the model gives NaN or "
                "infinity (its weights?); export a checkpoint with finite weights",
            )
        ],
        reconstruction,
    )
    image = reconstruction * _per_example(scale, 3)
    return tf.debugging.assert_all_finite(
        image,
        f"reconstruction is not finite: {inputs} too large for float32 (the image "
        "overflows 3.4e38 in the request's units); send the data scaled down",
    )


class Reconstructor(tf.Module):
    """The exported computation around a trained ReconstructionModel (its generator and options).

    Scale invariant: each example is divided by a power of two near its largest value
    (:func:`tfmri.data.transforms.kspace_scale`) and reconstructed in those units, so
    k-space times ``c`` gives the reconstruction times ``c`` (1e-30 <= c <= 1e30), with
    no statistic overflowing or underflowing and the normalisation's ``eps`` negligible.
    """

    def __init__(self, model: pix2pix.ReconstructionModel, crop_size: int):
        super().__init__(name="reconstructor")
        self.model = model
        self.crop_size = crop_size

    def _reconstruct(self, zero_filled, measured=None, mask=None):
        """float32 [B, S, S] zero-filled magnitude -> [B, S, S] reconstruction, same scale."""
        mean, std = _per_slice_statistics(zero_filled)
        inputs = {
            "zero_filled": transforms.normalize(
                zero_filled, mean[:, None, None], std[:, None, None]
            )[..., None],
            "mean": mean,
            "std": std,
        }
        if measured is not None:
            inputs["measured"], inputs["mask"] = measured, mask
        output = self.model(inputs, training=False)
        return transforms.denormalize_per_slice(output[..., 0], mean, std)

    def from_kspace(self, kspace_real, kspace_imag, mask):
        """float32 [B, (C,) H, W] twice and [B, W] -> float32 [B, S, S] (``serving_default``)."""
        size = self.crop_size
        checks = _request_checks(kspace_real, kspace_imag, mask, size)
        kspace_real, kspace_imag, mask = _after(checks, kspace_real, kspace_imag, mask)
        rank = kspace_real.shape.rank
        scale = transforms.kspace_scale(
            tf.complex(kspace_real, kspace_imag), list(range(1 - rank, 0))
        )
        # Dividing by a power of two is exact: these units change no digit of the data.
        per_example = _per_example(scale, rank)
        kspace = tf.complex(kspace_real / per_example, kspace_imag / per_example)

        zero_filled, measured = tf.map_fn(
            lambda args: pipeline.zero_filled_and_measured(*args, size),
            (kspace, mask),
            fn_output_signature=(tf.float32, tf.complex64),
        )
        if self.model.config.data_consistency:
            image = self._reconstruct(zero_filled, measured, mask)
        else:
            image = self._reconstruct(zero_filled)
        image = _scaled_back(image, scale, "kspace_real/kspace_imag")
        return tf.ensure_shape(image, [None, size, size])  # static in the signature

    def from_zero_filled(self, image):
        """float32 [B, S, S] zero-filled magnitude -> [B, S, S] (``zero_filled``)."""
        (image,) = _after(
            [tf.debugging.assert_all_finite(image, "image holds NaN or infinite values")], image
        )
        scale = transforms.kspace_scale(tf.complex(image, tf.zeros_like(image)), [-2, -1])
        reconstruction = self._reconstruct(image / _per_example(scale, 3))
        return _scaled_back(reconstruction, scale, "image")


def _build(model, size):
    """Runs the model once: Keras exports only built models."""
    inputs = {
        "zero_filled": tf.zeros([1, size, size, 1]),
        "mean": tf.zeros([1]),
        "std": tf.ones([1]),
    }
    if model.config.data_consistency:
        coils = [1] if model.config.multicoil else []
        inputs["measured"] = tf.zeros([1, *coils, size, size], tf.complex64)
        inputs["mask"] = tf.ones([1, size])
    model(inputs, training=False)


def warmup_request(batch, crop_size, multicoil, model_name):
    """One warm-up ``PredictRequest`` of ``serving_default``: k-space [batch, (1,) 2S, S]
    of one constant value at fastMRI's tiny scale, every column sampled (S =
    ``crop_size``). Constant tensors are stored as one value, so the file stays small."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = client.SIGNATURE
    shape = [batch, *([1] if multicoil else []), 2 * crop_size, crop_size]
    for name in ("kspace_real", "kspace_imag"):
        request.inputs[name].CopyFrom(tf.make_tensor_proto(1e-4, tf.float32, shape))
    request.inputs["mask"].CopyFrom(tf.make_tensor_proto(1.0, tf.float32, [batch, crop_size]))
    return request


def write_warmup_requests(version_dir, model_name, crop_size, multicoil):
    """Writes TF Serving's warm-up file (``PredictionLog`` records) into a version."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(version_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for batch in WARMUP_BATCHES:
            request = warmup_request(batch, crop_size, multicoil, model_name)
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def next_version(model_root) -> int:
    if not os.path.isdir(model_root):
        return 1
    versions = [int(name) for name in os.listdir(model_root) if re.fullmatch(r"\d+", name)]
    return max(versions, default=0) + 1


def export(model_dir, checkpoint, export_dir, model_name, version=None):
    """Writes the SavedModel; returns (its directory, the checkpoint exported)."""
    model, checkpoint = checkpoints.load_model(model_dir, checkpoint)
    model_root = os.path.join(export_dir, model_name)
    # Held while a version is chosen and written: two exports never pick the same one.
    with runlock.hold(model_root, "an export", "--export_dir"):
        return _export(model, checkpoint, model_root, version)


def _export(model, checkpoint, model_root, version):
    version = next_version(model_root) if version is None else version
    target = os.path.join(model_root, str(version))
    if os.path.exists(target):
        raise UserError(f"{target}: exists; versions are never overwritten, pick another --version")
    size = model.config.image_size
    if model.config.starts_from_cs_tv:
        # TF Serving runs no XLA JIT by default: the SavedModel's CS-TV start is plain ops.
        model.generator.compile_start = False
    _build(model, size)
    reconstructor = Reconstructor(model, size)
    archive = keras.export.ExportArchive()
    archive.track(model)
    kspace_shape = [None] * (4 if model.config.multicoil else 3)  # [B, (C,) H, W]
    archive.add_endpoint(
        "serving_default",
        lambda kspace_real, kspace_imag, mask: {
            "reconstruction": reconstructor.from_kspace(kspace_real, kspace_imag, mask)
        },
        input_signature=[
            tf.TensorSpec(kspace_shape, tf.float32, name="kspace_real"),
            tf.TensorSpec(kspace_shape, tf.float32, name="kspace_imag"),
            tf.TensorSpec([None, None], tf.float32, name="mask"),
        ],
    )
    if not model.config.data_consistency:
        archive.add_endpoint(
            "zero_filled",
            lambda image: {"reconstruction": reconstructor.from_zero_filled(image)},
            input_signature=[tf.TensorSpec([None, size, size], tf.float32, name="image")],
        )
    temporary = fileio.temporary_name(target)
    try:
        archive.write_out(temporary, verbose=False)
        name = os.path.basename(model_root)
        write_warmup_requests(temporary, name, size, model.config.multicoil)
        os.replace(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return target, checkpoint
