"""The TFRecord feature schema: one ``tf.train.Example`` per k-space slice.

This is the only place the schema is defined; the converter writes with
:func:`slice_example` and the pipeline reads with :func:`parse_slice`.
Bump ``SCHEMA_VERSION`` whenever a feature changes meaning; the manifest records it
and the pipeline refuses data written under another version.
"""

import numpy as np
import tensorflow as tf

SCHEMA_VERSION = 1

FEATURES = {
    # complex64 little-endian bytes of one slice, [H, W] or [coils, H, W]
    "kspace": tf.io.FixedLenFeature([], tf.string),
    "kspace_shape": tf.io.VarLenFeature(tf.int64),
    # float32 bytes of the target slice [recon_h, recon_w]; empty for test files
    "target": tf.io.FixedLenFeature([], tf.string),
    # float32 bytes [W] of a test file's sampling mask; empty otherwise
    "mask": tf.io.FixedLenFeature([], tf.string),
    "recon_size": tf.io.FixedLenFeature([2], tf.int64),
    "volume": tf.io.FixedLenFeature([], tf.string),  # the HDF5 file name
    "slice_index": tf.io.FixedLenFeature([], tf.int64),
    "num_slices": tf.io.FixedLenFeature([], tf.int64),
    "max_value": tf.io.FixedLenFeature([], tf.float32),  # volume max of the target
    "acquisition": tf.io.FixedLenFeature([], tf.string),
    "acceleration": tf.io.FixedLenFeature([], tf.int64),  # test files; 0 when fully sampled
}


def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float(value):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))


def slice_example(volume, slice_index) -> bytes:
    """Serialises slice ``slice_index`` of a :class:`~tfmri.data.fastmri_files.Volume`."""
    kspace = np.ascontiguousarray(volume.kspace[slice_index], dtype="<c8")
    target = b""
    if volume.target is not None:
        target = np.ascontiguousarray(volume.target[slice_index], dtype="<f4").tobytes()
    mask = b"" if volume.mask is None else np.asarray(volume.mask, dtype="<f4").tobytes()
    features = {
        "kspace": _bytes(kspace.tobytes()),
        "kspace_shape": _ints(kspace.shape),
        "target": _bytes(target),
        "mask": _bytes(mask),
        "recon_size": _ints(volume.header.recon_size),
        "volume": _bytes(volume.name.encode()),
        "slice_index": _ints([slice_index]),
        "num_slices": _ints([volume.num_slices]),
        "max_value": _float(volume.max_value),
        "acquisition": _bytes(volume.acquisition.encode()),
        "acceleration": _ints([volume.acceleration]),
    }
    example = tf.train.Example(features=tf.train.Features(feature=features))
    # Deterministic: map order must not depend on the process, or reruns would differ.
    return example.SerializeToString(deterministic=True)


def parse_slice(serialized, kspace_rank=None):
    """Parses one serialised example (graph mode).

    ``kspace_rank`` (2 single-coil, 3 multi-coil), when known, makes the k-space rank static.

    Returns a dict with ``kspace`` complex64 [H, W] or [coils, H, W], ``target`` float32
    [recon_h, recon_w] (shape [0, 0] for test files), ``mask`` float32 [W] (empty unless
    test), ``has_target`` bool, and the scalar metadata of :data:`FEATURES`.
    """
    parsed = tf.io.parse_single_example(serialized, FEATURES)
    kspace_shape = tf.cast(tf.sparse.to_dense(parsed["kspace_shape"]), tf.int32)
    kspace = tf.reshape(tf.io.decode_raw(parsed["kspace"], tf.complex64), kspace_shape)
    if kspace_rank is not None:
        kspace = tf.ensure_shape(kspace, [None] * kspace_rank)
    target_values = tf.io.decode_raw(parsed["target"], tf.float32)
    has_target = tf.size(target_values) > 0
    recon_size = tf.cast(parsed["recon_size"], tf.int32)
    target = tf.reshape(target_values, tf.where(has_target, recon_size, tf.zeros_like(recon_size)))
    return {
        "kspace": kspace,
        "target": target,
        "has_target": has_target,
        "mask": tf.io.decode_raw(parsed["mask"], tf.float32),
        "recon_size": recon_size,
        "volume": parsed["volume"],
        "slice_index": tf.cast(parsed["slice_index"], tf.int32),
        "num_slices": tf.cast(parsed["num_slices"], tf.int32),
        "max_value": parsed["max_value"],
        "acquisition": parsed["acquisition"],
        "acceleration": tf.cast(parsed["acceleration"], tf.int32),
    }
