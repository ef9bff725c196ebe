"""Batch reconstruction of ``python -m tfmri.reconstruct``: every fastMRI volume of a
directory through an exported model's ``serving_default`` signature.

:func:`run` writes one HDF5 file per volume, under the volume's name, holding ``reconstruction``
float32 [slices, 320, 320]: the format fastMRI's leaderboard takes. Test files use
their own mask (their k-space is already undersampled); fully sampled files are
undersampled with the volume's fixed fastMRI mask of --mask_type,
--center_fractions and --accelerations. Each output is written under a temporary
name and renamed when complete; a rerun keeps only the volumes whose output checks as
finished (:func:`is_done`: intact, and made by the same model and mask from the same
input) and redoes the rest. Bad files
are named with the reason: ``--on_error=fail`` stops, ``skip`` goes on and lists them.
"""

import json
import os

import h5py
import numpy as np
import tensorflow as tf

from tfmri import fileio, runlock
from tfmri.data import fastmri_files, masks
from tfmri.errors import UserError
from tfmri.progress import ProgressBar
from tfmri.serving import client

RECONSTRUCTION = "reconstruction"
MADE_FROM = "made_from"


def load_model(path):
    """The ``serving_default`` signature of an exported model version."""
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        parent = os.path.dirname(os.path.normpath(path))
        versions = (
            sorted(v for v in os.listdir(parent) if v.isdigit()) if os.path.isdir(parent) else []
        )
        present = f"versions present: {', '.join(versions)}" if versions else "export one first"
        raise UserError(f"--saved_model={path}: no SavedModel there ({present})")
    return tf.saved_model.load(path).signatures[client.SIGNATURE]


def reconstruct_volume(signature, kspace, mask, batch_size):
    """float32 [slices, S, S] of undersampled complex [slices, (C,) H, W] k-space and its mask."""
    parts = []
    for start in range(0, len(kspace), batch_size):
        inputs = client.split_kspace(kspace[start : start + batch_size], mask)
        outputs = signature(**{name: tf.constant(value) for name, value in inputs.items()})
        parts.append(outputs["reconstruction"].numpy())
    return np.concatenate(parts)


def made_from(model, volume_path, spec):
    """What an output is a reconstruction of, as JSON text (kept in its ``made_from``
    attribute): the SavedModel (path, size and time of saved_model.pb), the mask spec,
    and the input (size and time). A rerun keeps an output only if they are the same."""

    def stamp(path):
        status = os.stat(path)
        return [status.st_size, status.st_mtime_ns]

    return json.dumps(
        {
            "saved_model": os.path.realpath(model),
            "saved_model_pb": stamp(os.path.join(model, "saved_model.pb")),
            "mask": [spec.mask_type, list(spec.center_fractions), list(spec.accelerations)],
            "input": stamp(volume_path),
        },
        sort_keys=True,
    )


def write_reconstruction(path, image, provenance=None):
    """Writes ``reconstruction`` float32 [slices, S, S] to ``path``, atomically, with
    ``provenance`` (:func:`made_from`) as its ``made_from`` attribute when given."""
    if os.path.isdir(path) and not os.path.islink(path):
        raise UserError(f"{path}: a directory stands where the reconstruction goes; remove it")
    with fileio.atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as handle:
            handle.create_dataset(RECONSTRUCTION, data=image.astype(np.float32))
            if provenance is not None:
                handle.attrs[MADE_FROM] = provenance


def is_done(output, volume_path, crop_size, provenance=None):
    """Whether ``output`` is a finished reconstruction of ``volume_path``: a regular file
    (not a link) that opens and holds ``reconstruction`` float32 [slices, S, S] with the
    volume's slice count and the model's crop S (square, when the model does not say),
    all finite, made from ``provenance`` (:func:`made_from`; the same model, mask and
    input) when given. Anything else is redone."""
    if os.path.islink(output) or not os.path.isfile(output):
        return False
    try:
        with h5py.File(volume_path, "r") as handle:
            num_slices = handle["kspace"].shape[0]
        with h5py.File(output, "r") as handle:
            if provenance is not None and handle.attrs.get(MADE_FROM) != provenance:
                return False
            dataset = handle.get(RECONSTRUCTION)
            if not isinstance(dataset, h5py.Dataset) or dataset.dtype != np.float32:
                return False
            side = crop_size if crop_size is not None else dataset.shape[-1]
            if dataset.shape != (num_slices, side, side):
                return False
            return bool(np.isfinite(dataset[()]).all())
    except Exception:  # noqa: BLE001 - whatever is wrong with it, it is not done
        return False


def takes_multicoil(signature) -> bool:
    """Whether the signature's k-space is multi-coil [B, C, H, W]."""
    return signature.structured_input_signature[1]["kspace_real"].shape.rank == 4


def _check_kind(path, volume, multicoil):
    if volume.is_multicoil != multicoil:
        kinds = ("single-coil", "multi-coil")
        raise fastmri_files.FastMRIFileError(
            path,
            f"{kinds[volume.is_multicoil]} k-space; the model takes {kinds[multicoil]} k-space",
            f"reconstruct it with a model trained on {kinds[volume.is_multicoil]} data",
        )


def crop_size_of(signature):
    """The side of the square the model reconstructs (its output's static shape; None
    for exports made before tfmri recorded it there)."""
    return signature.structured_outputs["reconstruction"].shape[-1]


def _check_fits(path, kspace, crop_size):
    height, width = kspace.shape[-2:]
    if crop_size is not None and min(height, width) < crop_size:
        raise fastmri_files.FastMRIFileError(
            path,
            f"k-space {height} x {width} is smaller than the model's {crop_size} x {crop_size} "
            "crop",
            "reconstruct it with a model trained on a smaller --crop_size",
        )


def run(model, input_dir, output_dir, spec, batch_size=8, on_error="fail"):
    """Reconstructs the directory; returns (written, kept, skipped) volume names.

    Holds ``output_dir`` (:mod:`tfmri.runlock`) while it writes there.
    """
    signature = load_model(model)
    paths = fastmri_files.list_volumes(input_dir)
    with runlock.hold(output_dir, "a batch reconstruction", "--output_dir"):
        return _run(signature, model, paths, output_dir, spec, batch_size, on_error)


def _run(signature, model, paths, output_dir, spec, batch_size, on_error):
    crop_size = crop_size_of(signature)
    multicoil = takes_multicoil(signature)
    written, kept, skipped = [], [], []
    bar = ProgressBar(len(paths), "volumes")
    for path in paths:
        name = os.path.basename(path)
        target = os.path.join(output_dir, name)
        try:
            provenance = made_from(model, path, spec)
        except OSError:  # the input is a dangling link: read_volume names it
            provenance = None
        if provenance is not None and is_done(target, path, crop_size, provenance):
            kept.append(name)
            bar.update()
            continue
        try:
            volume = fastmri_files.read_volume(path)
            _check_kind(path, volume, multicoil)
            _check_fits(path, volume.kspace, crop_size)
            mask = volume.mask
            if mask is None:
                mask = masks.fixed_volume_mask(spec, name, volume.kspace.shape[-1])
            try:
                image = reconstruct_volume(signature, volume.kspace * mask, mask, batch_size)
            except tf.errors.InvalidArgumentError as error:
                problem = str(error).strip().splitlines()[0]
                raise fastmri_files.FastMRIFileError(
                    path, f"the model refused its k-space ({problem})"
                ) from None
            if not np.isfinite(image).all():
                raise fastmri_files.FastMRIFileError(
                    path, "the model's reconstruction is not finite; nothing written"
                )
        except fastmri_files.FastMRIFileError as error:
            fastmri_files.on_bad_file(error, on_error, skipped)
            bar.update()
            continue
        write_reconstruction(target, image, provenance)
        written.append(name)
        bar.update()
    bar.close()
    return written, kept, skipped
