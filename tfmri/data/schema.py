"""The TFRecord feature schema: one ``tf.train.Example`` per k-space slice.

This is the only place the schema is defined; the converter writes with
:func:`slice_example` and the pipeline reads with :func:`parse_slice`.
Bump ``SCHEMA_VERSION`` whenever a feature changes meaning; the manifest records it
and the pipeline refuses data written under another version.
"""

import numpy as np

from tfmri.data import records

SCHEMA_VERSION = 1

# name -> (kind, shape); kind is bytes, int64 or float. shape None = variable length.
# What the "kspace" field holds (the manifest's "layout"; absent = "kspace"):
# "kspace": the slice's k-space as stored in the HDF5 file, [H, W] or [coils, H, W];
# "hybrid": the same transformed along the fully sampled readout (H) and cropped to the
#   recon height, [recon_h, W] or [coils, recon_h, W]: half the bytes of knee k-space
#   and no readout FFT left for every epoch. Undersampling masks whole columns, which
#   the readout transform leaves in place, so masking it is masking the k-space.
LAYOUTS = ("hybrid", "kspace")

FIELDS = {
    # complex64 little-endian bytes of one slice in the conversion's layout (LAYOUTS)
    "kspace": ("bytes", []),
    "kspace_shape": ("int64", None),
    # float32 bytes of the target slice [recon_h, recon_w]; empty for test files
    "target": ("bytes", []),
    # float32 bytes [W] of a test file's sampling mask; empty otherwise
    "mask": ("bytes", []),
    "recon_size": ("int64", [2]),
    "volume": ("bytes", []),  # the HDF5 file name
    "slice_index": ("int64", []),
    "num_slices": ("int64", []),
    "max_value": ("float", []),  # volume max of the target
    "acquisition": ("bytes", []),
    "acceleration": ("int64", []),  # test files; 0 when fully sampled
}


def features():
    """The ``tf.io`` parsing spec of :data:`FIELDS`."""
    import tensorflow as tf  # here, not above: the converter's workers must not load it

    dtypes = {"bytes": tf.string, "int64": tf.int64, "float": tf.float32}
    return {
        name: tf.io.VarLenFeature(dtypes[kind])
        if shape is None
        else tf.io.FixedLenFeature(shape, dtypes[kind])
        for name, (kind, shape) in FIELDS.items()
    }


def hybrid_rows(kspace, rows):
    """complex64 [..., rows, W]: ``kspace`` [..., H, W] inverse transformed along H
    (centred, orthonormal, as :mod:`tfmri.data.transforms`) and cropped to the centre
    ``rows`` (fastMRI's rounding: from ``(H - rows) // 2``)."""
    # In complex64, as stored (NumPy >= 2 transforms it in single precision, faster:
    # docs/results.md#figures-behind-design-choices).
    data = np.fft.ifftshift(np.asarray(kspace, np.complex64), axes=-2)
    data = np.fft.fftshift(np.fft.ifft(data, axis=-2, norm="ortho"), axes=-2)
    top = (data.shape[-2] - rows) // 2
    return np.ascontiguousarray(data[..., top : top + rows, :], dtype="<c8")


def slice_example(volume, slice_index, layout="kspace") -> list:
    """Serialises slice ``slice_index`` of a :class:`~tfmri.data.fastmri_files.Volume`.

    ``layout`` (of :data:`LAYOUTS`): what the ``kspace`` feature holds.
    Returns the ``tf.train.Example`` as a list of buffers (``b"".join`` gives the bytes);
    with ``layout="kspace"`` the k-space buffer is a view of the volume's array.
    """
    if layout == "hybrid":
        rows = min(volume.header.recon_size[0], volume.kspace.shape[-2])
        kspace = hybrid_rows(volume.kspace[slice_index], rows)
    elif layout == "kspace":
        kspace = np.ascontiguousarray(volume.kspace[slice_index], dtype="<c8")
    else:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    target = b""
    if volume.target is not None:
        target = np.ascontiguousarray(volume.target[slice_index], dtype="<f4")
    mask = b"" if volume.mask is None else np.asarray(volume.mask, dtype="<f4").tobytes()
    values = {
        "kspace": records.bytes_feature(kspace),
        "kspace_shape": records.int64_feature(kspace.shape),
        "target": records.bytes_feature(target),
        "mask": records.bytes_feature(mask),
        "recon_size": records.int64_feature(volume.header.recon_size),
        "volume": records.bytes_feature(volume.name.encode()),
        "slice_index": records.int64_feature([slice_index]),
        "num_slices": records.int64_feature([volume.num_slices]),
        "max_value": records.float_feature([volume.max_value]),
        "acquisition": records.bytes_feature(volume.acquisition.encode()),
        "acceleration": records.int64_feature([volume.acceleration]),
    }
    assert values.keys() == FIELDS.keys()
    return records.example(values)


def parse_slice(serialized, kspace_rank=None):
    """Parses one serialised example (graph mode).

    ``kspace_rank`` (2 single-coil, 3 multi-coil), when known, makes the k-space rank static.

    Returns a dict with ``kspace`` complex64 [H, W] or [coils, H, W], ``target`` float32
    [recon_h, recon_w] (shape [0, 0] for test files), ``mask`` float32 [W] (empty unless
    test), ``has_target`` bool, and the scalar metadata of :data:`FIELDS`.
    """
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, features())
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
