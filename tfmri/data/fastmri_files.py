"""Reading and validating fastMRI HDF5 volumes (single-coil and multi-coil).

One file holds one volume:

* ``kspace``: complex64 [slices, H, W] (single-coil) or [slices, coils, H, W] (multi-coil).
* target: ``reconstruction_esc`` (single-coil) or ``reconstruction_rss`` (multi-coil),
  float32 [slices, recon_h, recon_w]; absent from test files.
* ``mask``: test files only, [W], 1 where a column was sampled.
* ``ismrmrd_header``: XML giving the encoded and recon matrix sizes.
* attributes: ``acquisition``, ``max``, ``norm``, ``patient_id`` (+ ``acceleration`` in test).

Every problem is raised as :class:`FastMRIFileError` naming the file and what to do.
"""

import dataclasses
import os
import xml.etree.ElementTree as ElementTree

import h5py
import numpy as np
from absl import logging

from tfmri.errors import UserError

ISMRMRD_NAMESPACE = "{http://www.ismrm.org/ISMRMRD}"
SINGLECOIL_TARGET = "reconstruction_esc"
MULTICOIL_TARGET = "reconstruction_rss"


class FastMRIFileError(UserError, ValueError):
    """A fastMRI file (or directory) that cannot be used; the message names it."""

    def __init__(self, path, problem, fix=None):
        self.path = str(path)
        self.problem = problem
        message = f"{path}: {problem}"
        if fix:
            message += f"; {fix}"
        super().__init__(message)


@dataclasses.dataclass(frozen=True)
class Header:
    """What tfmri needs from ``ismrmrd_header``."""

    encoded_size: tuple[int, int]  # (x, y) = (readout H, phase-encoding W)
    recon_size: tuple[int, int]  # (x, y), the target size, 320 x 320 for knee
    padding_left: int  # first acquired phase-encoding column
    padding_right: int  # one past the last acquired column


@dataclasses.dataclass
class Volume:
    """A validated fastMRI volume held in memory."""

    path: str
    kspace: np.ndarray  # complex64 [slices, H, W] or [slices, coils, H, W]
    target: np.ndarray | None  # float32 [slices, recon_h, recon_w]; None for test files
    mask: np.ndarray | None  # float32 [W]; test files only
    header: Header
    attrs: dict

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def num_slices(self) -> int:
        return self.kspace.shape[0]

    @property
    def is_multicoil(self) -> bool:
        return self.kspace.ndim == 4

    @property
    def acquisition(self) -> str:
        return str(self.attrs.get("acquisition", ""))

    @property
    def max_value(self) -> float:
        """The volume maximum of the target (``attrs['max']``); 0 when unknown (test files)."""
        return float(self.attrs.get("max", 0.0))

    @property
    def acceleration(self) -> int:
        """The acceleration of a test file's mask; 0 for fully sampled files."""
        return int(self.attrs.get("acceleration", 0))


def parse_header(xml_bytes, path="<header>") -> Header:
    """Parses the sizes out of an ISMRMRD XML header."""
    try:
        root = ElementTree.fromstring(xml_bytes)
    except ElementTree.ParseError as error:
        raise FastMRIFileError(path, f"ismrmrd_header is not valid XML ({error})") from None

    def integer(*keys):
        element = root
        for key in ("encoding",) + keys:
            element = element.find(ISMRMRD_NAMESPACE + key)
            if element is None:
                raise FastMRIFileError(path, f"ismrmrd_header lacks encoding/{'/'.join(keys)}")
        return int(float(element.text))

    encoded = (
        integer("encodedSpace", "matrixSize", "x"),
        integer("encodedSpace", "matrixSize", "y"),
    )
    recon = (integer("reconSpace", "matrixSize", "x"), integer("reconSpace", "matrixSize", "y"))
    center = integer("encodingLimits", "kspace_encoding_step_1", "center")
    maximum = integer("encodingLimits", "kspace_encoding_step_1", "maximum") + 1
    padding_left = encoded[1] // 2 - center
    return Header(encoded, recon, padding_left, padding_left + maximum)


def list_volumes(directory) -> list[str]:
    """The ``.h5`` files of a directory, sorted; raises when there are none."""
    if not os.path.isdir(directory):
        raise FastMRIFileError(directory, "no such directory", "check the path")
    paths = sorted(
        os.path.join(directory, name) for name in os.listdir(directory) if name.endswith(".h5")
    )
    if not paths:
        raise FastMRIFileError(
            directory, "directory holds no .h5 files", "point it at a fastMRI data directory"
        )
    return paths


def _open(path):
    if not os.path.isfile(path):
        raise FastMRIFileError(path, "no such file")
    if not h5py.is_hdf5(path):
        raise FastMRIFileError(path, "not an HDF5 file", "is it a fastMRI .h5 volume?")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise FastMRIFileError(
            path, f"truncated or unreadable HDF5 file ({error})", "download or copy it again"
        ) from None


def _check_declared_size(path, key, dataset):
    """Refuses a dataset whose declared shape needs more bytes than the file holds (a
    corrupt header would otherwise make NumPy allocate them all before reading)."""
    if dataset.dtype.kind not in "biufc" or dataset.compression is not None:
        return
    declared = dataset.size * dataset.dtype.itemsize
    stored = min(dataset.id.get_storage_size(), os.path.getsize(path))
    if declared > stored:
        raise FastMRIFileError(
            path,
            f"dataset {key!r} declares shape {dataset.shape} ({declared / 1e6:,.1f} MB) but the "
            f"file holds {stored / 1e6:,.1f} MB of it; the file is truncated or corrupt",
            "download or copy it again",
        )


def _read(path, handle, key):
    try:
        dataset = handle[key]
        _check_declared_size(path, key, dataset)
        return dataset[()]
    except MemoryError:
        raise FastMRIFileError(
            path, f"dataset {key!r} is too large to read into memory", "check the file"
        ) from None
    except (OSError, RuntimeError, KeyError) as error:
        raise FastMRIFileError(
            path,
            f"dataset {key!r} cannot be read, the file is truncated or corrupt ({error})",
            "download or copy it again",
        ) from None


def _require_finite(path, key, array):
    finite = np.isfinite(array)
    if not finite.all():
        bad_slice = int(np.argwhere(~finite)[0][0])
        raise FastMRIFileError(
            path,
            f"dataset {key!r} holds NaN or infinite values (first in slice {bad_slice})",
            "exclude the file (--on_error=skip) or repair it",
        )


def read_volume(path, check_finite=True) -> Volume:
    """Reads and validates one fastMRI volume.

    Raises:
      FastMRIFileError: not an HDF5 file, truncated, missing ``kspace``, wrong rank or
        dtype, non-finite values, a target whose shape does not match the recon size, or
        a test file without its mask.
    """
    path = str(path)
    with _open(path) as handle:
        if "kspace" not in handle:
            raise FastMRIFileError(path, "missing dataset 'kspace'", "is it a fastMRI volume?")
        dataset = handle["kspace"]
        if dataset.ndim not in (3, 4):
            raise FastMRIFileError(
                path,
                f"dataset 'kspace' has rank {dataset.ndim} {dataset.shape}, expected "
                "[slices, H, W] (single-coil) or [slices, coils, H, W] (multi-coil)",
            )
        if dataset.dtype != np.complex64:
            raise FastMRIFileError(
                path, f"dataset 'kspace' has dtype {dataset.dtype}, expected complex64"
            )
        if "ismrmrd_header" not in handle:
            raise FastMRIFileError(path, "missing dataset 'ismrmrd_header'")
        header = parse_header(_read(path, handle, "ismrmrd_header"), path)
        kspace = _read(path, handle, "kspace")
        if 0 in kspace.shape:
            raise FastMRIFileError(path, f"dataset 'kspace' is empty {kspace.shape}")
        attrs = {key: _plain(value) for key, value in handle.attrs.items()}
        target_key = MULTICOIL_TARGET if kspace.ndim == 4 else SINGLECOIL_TARGET
        target = _read(path, handle, target_key) if target_key in handle else None
        mask = _read(path, handle, "mask") if "mask" in handle else None

    if check_finite:
        _require_finite(path, "kspace", kspace)
    if target is not None:
        _check_target(path, target_key, target, kspace, header)
        if check_finite:
            _require_finite(path, target_key, target)
    if mask is not None:
        mask = _check_mask(path, mask, kspace.shape[-1])
    if target is None and mask is None:
        raise FastMRIFileError(
            path,
            f"neither a target ({target_key!r}) nor a test 'mask' is present",
            "single-coil files need reconstruction_esc, multi-coil reconstruction_rss",
        )
    return Volume(path, kspace, target, mask, header, attrs)


def center_crop(array, height, width):
    """The centre ``height`` x ``width`` of a NumPy array [..., H, W], fastMRI's rounding
    (the crop starts at ``(H - height) // 2``)."""
    top = (array.shape[-2] - height) // 2
    left = (array.shape[-1] - width) // 2
    return array[..., top : top + height, left : left + width]


def recon_crop(volume: Volume) -> tuple[int, int]:
    """(height, width) that reconstructions of ``volume`` are cropped to and scored at.

    fastMRI's rule: the recon size of the file's header (its target's size), except
    where the k-space is only ``W`` columns wide, fewer than the recon width (fastMRI's
    narrow FLAIR brain volumes): then ``(W, W)``, and the target is cropped to it too.
    A k-space with fewer rows than that height is refused (FastMRIFileError).
    """
    height, width = volume.header.recon_size
    rows, columns = volume.kspace.shape[-2:]
    if columns < width:
        height = width = columns
    if rows < height:
        raise FastMRIFileError(
            volume.path,
            f"k-space {rows} x {columns} has fewer rows than the crop {height} x {width} "
            "(its recon size)",
            "check the header's reconSpace",
        )
    return height, width


def cropped_target(volume: Volume):
    """float32 [slices, h, w]: the target at :func:`recon_crop` (centre crop, fastMRI's
    rounding), or None for test files."""
    if volume.target is None:
        return None
    return center_crop(volume.target, *recon_crop(volume))


def _check_target(path, key, target, kspace, header):
    if not np.issubdtype(target.dtype, np.floating):
        raise FastMRIFileError(path, f"dataset {key!r} has dtype {target.dtype}, expected float32")
    expected = (kspace.shape[0], header.recon_size[0], header.recon_size[1])
    if target.shape != expected:
        raise FastMRIFileError(
            path,
            f"dataset {key!r} has shape {target.shape}, expected {expected} "
            "(slices x recon size of ismrmrd_header)",
        )


def _check_mask(path, mask, width):
    mask = np.asarray(mask).reshape(-1)
    if mask.shape != (width,):
        raise FastMRIFileError(
            path, f"dataset 'mask' has shape {mask.shape}, expected ({width},) (k-space width)"
        )
    if not np.isin(mask, (0, 1)).all():
        raise FastMRIFileError(path, "dataset 'mask' holds values other than 0 and 1")
    return mask.astype(np.float32)


ON_ERROR = ("fail", "skip")


def on_bad_file(error: FastMRIFileError, on_error: str, skipped: list, stop=UserError):
    """The ``--on_error`` policy for a file that cannot be used.

    ``fail``: raises ``stop`` (a UserError class) with the file's message and the other
    choice; ``skip``: logs it and appends ``{"file", "reason"}`` to ``skipped``.
    """
    if on_error == "fail":
        raise stop(f"{error}; or rerun with --on_error=skip to leave it out")
    logging.warning("skipping %s", error)
    skipped.append({"file": error.path, "reason": error.problem})


def _plain(value):
    """HDF5 attribute -> JSON-friendly Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
