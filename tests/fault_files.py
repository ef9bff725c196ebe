"""Mutated fastMRI files for the fault-injection tests (tests/test_faults.py).

:func:`write_cases` writes, from a fixed seed, well over a hundred damaged, odd or
hostile variants of two small synthetic volumes (a training file and a test file),
each under its own name, into ``<root>/singlecoil_train`` and ``<root>/singlecoil_test``,
next to the unchanged originals. Each case is one of these classes:

* ``flip``: bytes of the HDF5 metadata (superblock, object headers, heaps; never the raw
  data) XOR-ed with random values;
* ``truncate``: the file cut at a random length;
* ``header``: one field of ``ismrmrd_header`` made empty, text, NaN, huge, negative,
  fractional or zero, the header not XML or not text;
* ``attribute``: ``max`` NaN, zero, negative, infinite, text, an array or missing;
  ``acceleration`` text, an array, fractional or negative;
* ``dataset``: ``kspace`` a group, float, of rank 2 or 5, empty, fewer rows or columns
  than the crop, multi-coil in a single-coil directory, with an infinity, too large
  for float32, or large but usable; targets of the wrong shape, all zero, NaN, a group;
  test masks all zero, of the wrong width, not binary;
* ``link``: ``kspace`` an external link to another file or a soft link; a dangling
  link, a link loop, a link to a directory;
* ``special``: a FIFO, a directory, an empty file and a text file named ``.h5``.

``expected`` says what :func:`tfmri.data.fastmri_files.read_volume` must do with the
case: ``"refuse"``, ``"accept"``, or None where either is right (random damage that may
miss what is read).
"""

import dataclasses
import os
import shutil
import xml.etree.ElementTree as ElementTree

import h5py
import numpy as np

from tfmri.data import fastmri_files, masks, synthetic

SEED = 30
NUM_FLIPS = 40
NUM_TRUNCATIONS = 12
NAMESPACE = fastmri_files.ISMRMRD_NAMESPACE


@dataclasses.dataclass(frozen=True)
class Case:
    name: str  # the file's name, file_<class>_<what>.h5
    kind: str  # the class (module docstring)
    expected: str | None  # "refuse", "accept", or None (either)
    split: str  # singlecoil_train or singlecoil_test


def write_base(root, seed=SEED, width=368):
    """(training file, test file): two-slice synthetic volumes under ``root``."""
    train_dir = os.path.join(root, "singlecoil_train")
    test_dir = os.path.join(root, "singlecoil_test")
    os.makedirs(train_dir, exist_ok=True)
    os.makedirs(test_dir, exist_ok=True)
    kspace, target, header, _ = synthetic.make_volume(seed, 2, 1, width)
    train = os.path.join(train_dir, "good_train.h5")
    synthetic.write_volume(train, kspace, target, header, "CORPD_FBK", "fault0")
    spec = masks.MaskSpec("random", (0.08,), (4,))
    mask, num_low = masks.MaskFunction(spec)(width, seed=1)
    test = os.path.join(test_dir, "good_test.h5")
    synthetic.write_volume(test, kspace, None, header, "CORPD_FBK", "fault1", (mask, 4, num_low))
    return train, test


def _raw_data_ranges(path):
    """[(start, end)] byte ranges of the file holding datasets' raw data."""
    ranges = []

    def visit(_, item):
        if isinstance(item, h5py.Dataset):
            offset = item.id.get_offset()
            if offset is not None:
                ranges.append((offset, offset + item.id.get_storage_size()))

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    return sorted(ranges)


def _metadata_offsets(path):
    """Every byte offset of the file outside the datasets' raw data."""
    size = os.path.getsize(path)
    inside = np.zeros(size, bool)
    for start, end in _raw_data_ranges(path):
        inside[start:end] = True
    return np.flatnonzero(~inside)


def _flip(source, target, rng, offsets):
    shutil.copy(source, target)
    count = int(rng.integers(1, 9))
    with open(target, "r+b") as handle:
        for offset in rng.choice(offsets, size=count, replace=False):
            handle.seek(int(offset))
            byte = handle.read(1)[0]
            handle.seek(int(offset))
            handle.write(bytes([byte ^ int(rng.integers(1, 256))]))


def _truncate(source, target, rng):
    shutil.copy(source, target)
    size = os.path.getsize(target)
    with open(target, "r+b") as handle:
        handle.truncate(int(rng.integers(0, size)))


def _edit(source, target, change):
    """A copy of ``source`` at ``target``, opened for ``change(handle)``."""
    shutil.copy(source, target)
    with h5py.File(target, "a") as handle:
        change(handle)


def _replace(handle, key, data):
    del handle[key]
    handle.create_dataset(key, data=data)


def _header_with(handle, field_path, text):
    root = ElementTree.fromstring(handle["ismrmrd_header"][()])
    element = root
    for key in field_path:
        element = element.find(NAMESPACE + key)
    element.text = text
    _replace(handle, "ismrmrd_header", np.bytes_(ElementTree.tostring(root)))


HEADER_FIELDS = {
    "recon_x": ("encoding", "reconSpace", "matrixSize", "x"),
    "recon_y": ("encoding", "reconSpace", "matrixSize", "y"),
    "encoded_y": ("encoding", "encodedSpace", "matrixSize", "y"),
    "center": ("encoding", "encodingLimits", "kspace_encoding_step_1", "center"),
    "maximum": ("encoding", "encodingLimits", "kspace_encoding_step_1", "maximum"),
}
BAD_HEADER_TEXT = {
    "empty": "",
    "text": "abc",
    "nan": "nan",
    "huge": "1e400",
    "negative": "-320",
    "fraction": "320.5",
    "zero": "0",
}


def _header_cases(train):
    cases = {}
    for field, path in HEADER_FIELDS.items():
        for what, text in BAD_HEADER_TEXT.items():
            if field in ("center", "maximum") and what == "zero":
                continue  # a centre or last line of 0 is a header's own business
            cases[f"header_{field}_{what}"] = (
                lambda handle, path=path, text=text: _header_with(handle, path, text),
                "refuse",
            )
    cases["header_not_xml"] = (
        lambda handle: _replace(handle, "ismrmrd_header", np.bytes_(b"<ismrmrdHeader")),
        "refuse",
    )
    cases["header_number"] = (lambda handle: _replace(handle, "ismrmrd_header", 42), "refuse")
    cases["header_missing"] = (lambda handle: handle.__delitem__("ismrmrd_header"), "refuse")
    cases["header_padded_whitespace"] = (
        lambda handle: _header_with(handle, HEADER_FIELDS["recon_x"], " 320 "),
        "accept",
    )
    return cases


def _set_attribute(key, value):
    def change(handle):
        handle.attrs[key] = value

    return change


def _attribute_cases():
    cases = {
        f"attribute_max_{what}": (_set_attribute("max", value), "refuse")
        for what, value in {
            "nan": np.nan,
            "zero": 0.0,
            "negative": -1.0,
            "infinite": np.inf,
            "text": "big",
            "array": np.array([1.0, 2.0]),
        }.items()
    }
    cases["attribute_max_missing"] = (lambda handle: handle.attrs.__delitem__("max"), "refuse")
    return cases


def _test_attribute_cases():
    return {
        f"attribute_acceleration_{what}": (_set_attribute("acceleration", value), "refuse")
        for what, value in {
            "text": "four",
            "array": np.array([4, 8]),
            "fraction": 4.5,
            "negative": -4,
        }.items()
    }


def _kspace_change(function):
    def change(handle):
        _replace(handle, "kspace", function(handle["kspace"][()]))

    return change


def _dataset_cases():
    def kspace_group(handle):
        del handle["kspace"]
        handle.create_group("kspace")

    def target_group(handle):
        del handle["reconstruction_esc"]
        handle.create_group("reconstruction_esc")

    def target_change(function):
        return lambda handle: _replace(
            handle, "reconstruction_esc", function(handle["reconstruction_esc"][()])
        )

    def with_infinity(kspace):
        kspace = kspace.copy()
        kspace[1, 5, 5] = np.inf
        return kspace

    def with_nan_target(target):
        target = target.copy()
        target[0, 7, 7] = np.nan
        return target

    return {
        "dataset_kspace_group": (kspace_group, "refuse"),
        "dataset_kspace_float": (_kspace_change(lambda k: np.abs(k).astype(np.float32)), "refuse"),
        "dataset_kspace_rank2": (_kspace_change(lambda k: k[0]), "refuse"),
        "dataset_kspace_rank5": (_kspace_change(lambda k: k[:, None, None]), "refuse"),
        "dataset_kspace_empty": (_kspace_change(lambda k: k[:0]), "refuse"),
        "dataset_kspace_100_rows": (_kspace_change(lambda k: k[:, 270:370]), "refuse"),
        "dataset_kspace_4_columns": (_kspace_change(lambda k: k[..., 182:186]), "refuse"),
        "dataset_kspace_multicoil": (_kspace_change(lambda k: np.stack([k, k], 1)), "refuse"),
        "dataset_kspace_infinity": (_kspace_change(with_infinity), "refuse"),
        "dataset_kspace_too_large": (
            _kspace_change(lambda k: (k / np.abs(k).max() * 3e38).astype(np.complex64)),
            "refuse",
        ),
        "dataset_kspace_times_1e30": (
            _kspace_change(lambda k: (k * np.float32(1e30)).astype(np.complex64)),
            "accept",
        ),
        "dataset_kspace_times_1e-30": (
            _kspace_change(lambda k: (k * np.float32(1e-30)).astype(np.complex64)),
            "accept",
        ),
        "dataset_target_shape": (target_change(lambda t: t[:, :300, :300]), "refuse"),
        "dataset_target_zero": (target_change(np.zeros_like), "refuse"),
        "dataset_target_nan": (target_change(with_nan_target), "refuse"),
        "dataset_target_group": (target_group, "refuse"),
        "dataset_target_int": (target_change(lambda t: (t * 1e6).astype(np.int32)), "refuse"),
    }


def _mask_cases():
    def mask_change(function):
        return lambda handle: _replace(handle, "mask", function(handle["mask"][()]))

    return {
        "dataset_mask_zero": (mask_change(lambda m: np.zeros_like(m)), "refuse"),
        "dataset_mask_width": (mask_change(lambda m: m[:-3]), "refuse"),
        "dataset_mask_two": (mask_change(lambda m: m.astype(np.float32) * 2), "refuse"),
        "dataset_mask_missing": (lambda handle: handle.__delitem__("mask"), "refuse"),
    }


def _link_cases(directory, train):
    other = os.path.join(directory, "other_source.data")  # not .h5: not a volume itself
    shutil.copy(train, other)

    def external(handle):
        del handle["kspace"]
        handle["kspace"] = h5py.ExternalLink(other, "/kspace")

    def soft(handle):
        handle["kspace_copy"] = handle["kspace"][()]
        del handle["kspace"]
        handle["kspace"] = h5py.SoftLink("/kspace_copy")

    return {"link_kspace_external": (external, "refuse"), "link_kspace_soft": (soft, "refuse")}


def _special_files(directory):
    """Special entries of ``directory`` named like volumes: {name: expected}."""
    names = {}
    os.symlink(os.path.join(directory, "absent.data"), os.path.join(directory, "link_dangling.h5"))
    names["link_dangling.h5"] = "refuse"
    os.symlink("link_loop.h5", os.path.join(directory, "link_loop.h5"))
    names["link_loop.h5"] = "refuse"
    os.makedirs(os.path.join(directory, "folder.data"))
    os.symlink("folder.data", os.path.join(directory, "link_to_directory.h5"))
    names["link_to_directory.h5"] = "refuse"
    os.mkfifo(os.path.join(directory, "special_fifo.h5"))
    names["special_fifo.h5"] = "refuse"
    os.makedirs(os.path.join(directory, "special_directory.h5"))
    names["special_directory.h5"] = "refuse"
    open(os.path.join(directory, "special_empty.h5"), "w").close()
    names["special_empty.h5"] = "refuse"
    with open(os.path.join(directory, "special_text.h5"), "w") as handle:
        handle.write("kspace = [1, 2, 3]\n")
    names["special_text.h5"] = "refuse"
    return names


def write_cases(root, seed=SEED):
    """Writes the cases under ``root`` (see the module docstring); returns
    (good training file, good test file, [Case])."""
    train, test = write_base(root, seed)
    train_dir, test_dir = os.path.dirname(train), os.path.dirname(test)
    rng = np.random.default_rng(seed)
    cases = []

    def add(name, kind, expected, directory):
        cases.append(Case(name, kind, expected, os.path.basename(directory)))

    for source, directory in ((train, train_dir), (test, test_dir)):
        offsets = _metadata_offsets(source)
        base = os.path.basename(source)[: -len(".h5")]
        for index in range(NUM_FLIPS // 2):
            name = f"flip_{base}_{index:02d}.h5"
            _flip(source, os.path.join(directory, name), rng, offsets)
            add(name, "flip", None, directory)
        for index in range(NUM_TRUNCATIONS // 2):
            name = f"truncate_{base}_{index:02d}.h5"
            _truncate(source, os.path.join(directory, name), rng)
            add(name, "truncate", None, directory)

    edits = {
        **_header_cases(train),
        **_attribute_cases(),
        **_dataset_cases(),
        **_link_cases(train_dir, train),
    }
    for what, (change, expected) in edits.items():
        name = f"{what}.h5"
        _edit(train, os.path.join(train_dir, name), change)
        add(name, what.split("_")[0], expected, train_dir)
    test_headers = {
        f"header_test_recon_{what}": (
            lambda handle, text=text: _header_with(handle, HEADER_FIELDS["recon_x"], text),
            "refuse",
        )
        for what, text in (("zero", "0"), ("negative", "-320"))
    }
    test_edits = {**_test_attribute_cases(), **_mask_cases(), **test_headers}
    for what, (change, expected) in test_edits.items():
        name = f"{what}.h5"
        _edit(test, os.path.join(test_dir, name), change)
        add(name, what.split("_")[0], expected, test_dir)
    for name, expected in _special_files(train_dir).items():
        add(name, name.split("_")[0], expected, train_dir)
    return train, test, cases
