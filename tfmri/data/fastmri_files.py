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
import math
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
        """The volume maximum of the target (``attrs['max']``, checked positive where there
        is a target); 0 when unknown (test files)."""
        value = _number(self.attrs.get("max")) if self.target is not None else None
        return value if value is not None and math.isfinite(value) else 0.0

    @property
    def acceleration(self) -> int:
        """The acceleration of a test file's mask; 0 for fully sampled files."""
        return int(self.attrs.get("acceleration", 0))


# Each side of k-space and of the recon crop must be at least this: fastMRI's SSIM
# window is 7 x 7, and no real acquisition is smaller.
MIN_SIDE = 8
# Header sizes above this are not a scanner's (a corrupt or tampered header).
MAX_HEADER_SIZE = 2**16


def parse_header(xml_bytes, path="<header>") -> Header:
    """Parses the sizes out of an ISMRMRD XML header; a field that is missing, not a
    whole number, or a size that is not positive raises FastMRIFileError naming it."""
    if isinstance(xml_bytes, np.ndarray) and xml_bytes.size == 1:
        xml_bytes = xml_bytes.reshape(-1)[0]
    if isinstance(xml_bytes, np.bytes_ | np.str_):
        xml_bytes = xml_bytes.item()
    if not isinstance(xml_bytes, bytes | str):
        raise FastMRIFileError(
            path, f"ismrmrd_header holds {type(xml_bytes).__name__}, expected XML text"
        )
    try:
        root = ElementTree.fromstring(xml_bytes)
    except (ElementTree.ParseError, ValueError, LookupError) as error:
        raise FastMRIFileError(path, f"ismrmrd_header is not valid XML ({error})") from None

    def integer(*keys, lowest=0):
        element = root
        for key in ("encoding",) + keys:
            element = element.find(ISMRMRD_NAMESPACE + key)
            if element is None:
                raise FastMRIFileError(path, f"ismrmrd_header lacks encoding/{'/'.join(keys)}")
        text = (element.text or "").strip()
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (
            math.isfinite(value) and value == int(value) and lowest <= value <= MAX_HEADER_SIZE
        ):
            raise FastMRIFileError(
                path,
                f"ismrmrd_header encoding/{'/'.join(keys)} is {text[:40]!r}, expected a whole "
                f"number from {lowest} to {MAX_HEADER_SIZE}",
                "repair the header",
            )
        return int(value)

    encoded = (
        integer("encodedSpace", "matrixSize", "x", lowest=1),
        integer("encodedSpace", "matrixSize", "y", lowest=1),
    )
    recon = (
        integer("reconSpace", "matrixSize", "x", lowest=1),
        integer("reconSpace", "matrixSize", "y", lowest=1),
    )
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
    if os.path.islink(path) and not os.path.exists(path):
        raise FastMRIFileError(
            path, "a link that leads to no file (dangling, or a loop)", "fix or remove the link"
        )
    if not os.path.isfile(path):
        what = "a directory" if os.path.isdir(path) else "not a regular file"
        raise FastMRIFileError(path, "no such file" if not os.path.lexists(path) else what)
    if not h5py.is_hdf5(path):
        raise FastMRIFileError(path, "not an HDF5 file", "is it a fastMRI .h5 volume?")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise FastMRIFileError(
            path, f"truncated or unreadable HDF5 file ({error})", "download or copy it again"
        ) from None


def _dataset(path, handle, key, required=True):
    """``handle[key]`` if it is a dataset stored in the file itself; None when absent and
    not ``required``. Links (an external file's data, a soft link) and groups are refused."""
    link = handle.get(key, getlink=True)
    if link is None:
        if required:
            raise FastMRIFileError(path, f"missing dataset {key!r}", "is it a fastMRI volume?")
        return None
    if not isinstance(link, h5py.HardLink):
        kind = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
        raise FastMRIFileError(
            path,
            f"{key!r} is {kind}, not a dataset stored in the file",
            "copy the data into the file (h5py: del the link, create_dataset)",
        )
    item = handle[key]
    if not isinstance(item, h5py.Dataset):
        raise FastMRIFileError(path, f"{key!r} is a {type(item).__name__.lower()}, not a dataset")
    return item


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
        dataset = _dataset(path, handle, key)
        _check_declared_size(path, key, dataset)
        return dataset[()]
    except FastMRIFileError:
        raise
    except MemoryError:
        raise FastMRIFileError(
            path, f"dataset {key!r} is too large to read into memory", "check the file"
        ) from None
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as error:
        raise FastMRIFileError(
            path,
            f"dataset {key!r} cannot be read, the file is truncated or corrupt "
            f"({_first_line(error)})",
            "download or copy it again",
        ) from None


def _first_line(error):
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:200]}" if text else type(error).__name__


# No transform of usable k-space may leave float32: the centred orthonormal 2D inverse
# FFT (and the RSS over coils) grows the largest magnitude by at most sqrt(H * W * C).
FLOAT32_LIMIT = float(np.finfo(np.float32).max) / 4


def _require_finite(path, key, array):
    """Refuses NaN or infinite values; returns the largest absolute real or imaginary part."""
    parts = array.view(np.float32) if np.iscomplexobj(array) else array
    peak = float(np.max(np.abs(parts)))  # NaN or inf when any value is
    if not math.isfinite(peak):
        bad_slice = int(np.argwhere(~np.isfinite(array))[0][0])
        raise FastMRIFileError(
            path,
            f"dataset {key!r} holds NaN or infinite values (first in slice {bad_slice})",
            "exclude the file (--on_error=skip) or repair it",
        )
    return peak


def _require_transformable(path, kspace, peak):
    growth = math.sqrt(2 * math.prod(kspace.shape[1:]))
    if peak * growth > FLOAT32_LIMIT:
        raise FastMRIFileError(
            path,
            f"k-space values up to {peak:.3g} are too large: its image would not fit in float32",
            "rescale the k-space",
        )


def read_volume(path, check_finite=True) -> Volume:
    """Reads and validates one fastMRI volume: what every application takes as usable.

    Raises:
      FastMRIFileError, whatever is wrong with the file (and only that: any failure of
        h5py or NumPy on it becomes its one-line reason): not a regular HDF5 file,
        truncated, a link or group where a dataset belongs, missing ``kspace``, wrong
        rank or dtype, non-finite values, a header that is not XML or whose sizes are not
        positive whole numbers, k-space smaller than its recon crop (or than
        :data:`MIN_SIDE`), multi-coil k-space in a ``singlecoil_*`` directory (or the
        reverse), a target whose shape does not match the recon size or that is all
        zero, a ``max`` attribute that is not a positive number, a test file without
        its mask or whose mask samples no column, an ``acceleration`` that is not a
        whole number.
    """
    path = str(path)
    try:
        return _read_volume(path, check_finite)
    except FastMRIFileError:
        raise
    except MemoryError:
        raise FastMRIFileError(path, "too large to read into memory", "check the file") from None
    except Exception as error:  # h5py and NumPy raise many kinds on a damaged file
        raise FastMRIFileError(
            path, f"cannot be read ({_first_line(error)})", "download or copy it again"
        ) from None


def _read_volume(path, check_finite):
    with _open(path) as handle:
        dataset = _dataset(path, handle, "kspace")
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
        _check_kind_of_directory(path, dataset.ndim == 4)
        header = parse_header(_read(path, handle, "ismrmrd_header"), path)
        kspace = _read(path, handle, "kspace")
        if 0 in kspace.shape:
            raise FastMRIFileError(path, f"dataset 'kspace' is empty {kspace.shape}")
        attrs = {key: _plain(value) for key, value in handle.attrs.items()}
        target_key = MULTICOIL_TARGET if kspace.ndim == 4 else SINGLECOIL_TARGET
        has_target = _dataset(path, handle, target_key, required=False) is not None
        target = _read(path, handle, target_key) if has_target else None
        has_mask = _dataset(path, handle, "mask", required=False) is not None
        mask = _read(path, handle, "mask") if has_mask else None

    if check_finite:
        _require_transformable(path, kspace, _require_finite(path, "kspace", kspace))
    if target is not None:
        _check_target(path, target_key, target, kspace, header)
        if check_finite:
            _require_finite(path, target_key, target)
        if not np.any(target):
            raise FastMRIFileError(path, f"dataset {target_key!r} is all zero")
        attrs["max"] = _positive_max(path, attrs)
    if mask is not None:
        mask = _check_mask(path, mask, kspace.shape[-1])
    if target is None and mask is None:
        raise FastMRIFileError(
            path,
            f"neither a target ({target_key!r}) nor a test 'mask' is present",
            "single-coil files need reconstruction_esc, multi-coil reconstruction_rss",
        )
    if "acceleration" in attrs:
        attrs["acceleration"] = _whole_attribute(path, attrs, "acceleration")
    volume = Volume(path, kspace, target, mask, header, attrs)
    _check_sizes(volume)
    return volume


def _check_kind_of_directory(path, multicoil):
    """fastMRI names its directories by kind: multi-coil k-space in ``singlecoil_*`` (or
    the reverse) is a misplaced file, which one application would take and another refuse."""
    directory = os.path.basename(os.path.dirname(os.path.abspath(path)))
    expected = "multicoil" if multicoil else "singlecoil"
    other = "singlecoil" if multicoil else "multicoil"
    if directory.startswith(other):
        raise FastMRIFileError(
            path,
            f"{expected} k-space ({'[slices, coils, H, W]' if multicoil else '[slices, H, W]'}) "
            f"in the {other} directory {directory!r}",
            f"move it to a {expected}_* directory",
        )


def _check_sizes(volume):
    rows, columns = volume.kspace.shape[-2:]
    if min(rows, columns) < MIN_SIDE:
        raise FastMRIFileError(
            volume.path, f"k-space {rows} x {columns} is smaller than {MIN_SIDE} x {MIN_SIDE}"
        )
    height, width = recon_crop(volume)
    if min(height, width) < MIN_SIDE:
        raise FastMRIFileError(
            volume.path,
            f"recon crop {height} x {width} is smaller than {MIN_SIDE} x {MIN_SIDE}",
            "check the header's reconSpace",
        )


def _number(value):
    """A real scalar of an attribute value (a one-element list too), else None."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _positive_max(path, attrs):
    value = _number(attrs.get("max"))
    if value is None or not (math.isfinite(value) and value > 0):
        shown = "missing" if "max" not in attrs else f"{str(attrs['max'])[:40]!r}"
        raise FastMRIFileError(
            path,
            f"attribute 'max' (the target's maximum, the metrics' data range) is {shown}, "
            "expected a positive number",
            "set it to the target's maximum",
        )
    return value


def _whole_attribute(path, attrs, key):
    value = _number(attrs[key])
    if value is None or not (math.isfinite(value) and value == int(value) and value >= 0):
        raise FastMRIFileError(
            path,
            f"attribute {key!r} is {str(attrs[key])[:40]!r}, expected a whole number",
            "repair or remove the attribute",
        )
    return int(value)


def is_usable(path) -> bool:
    """Whether ``path`` is a volume :func:`read_volume` takes: the check a generator makes
    before it keeps a file an earlier run wrote (an empty or damaged one is rewritten)."""
    try:
        read_volume(path)
    except FastMRIFileError:
        return False
    return True


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
    if not mask.any():
        raise FastMRIFileError(path, "dataset 'mask' samples no column (all zero)")
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
