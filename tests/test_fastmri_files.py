import glob
import os
import shutil

import h5py
import numpy as np
import pytest

from tfmri.data import fastmri_files
from tfmri.data.fastmri_files import FastMRIFileError


@pytest.fixture
def train_file(singlecoil_raw, tmp_path):
    source = sorted(glob.glob(os.path.join(singlecoil_raw, "singlecoil_train", "*.h5")))[0]
    path = tmp_path / "file1000001.h5"
    shutil.copy(source, path)
    return str(path)


def _rewrite(path, key, data):
    with h5py.File(path, "a") as handle:
        del handle[key]
        handle.create_dataset(key, data=data)


def test_reads_a_singlecoil_volume(train_file):
    volume = fastmri_files.read_volume(train_file)
    assert volume.kspace.dtype == np.complex64 and volume.kspace.ndim == 3
    assert volume.target.shape == (volume.num_slices, 320, 320)
    assert volume.header.recon_size == (320, 320)
    assert volume.header.encoded_size == (640, volume.kspace.shape[-1])
    assert 0 < volume.header.padding_left < volume.header.padding_right <= volume.kspace.shape[-1]
    assert volume.max_value == pytest.approx(float(volume.target.max()))
    assert volume.acquisition in ("CORPD_FBK", "CORPDFS_FBK")
    assert volume.mask is None and not volume.is_multicoil


def test_reads_multicoil_and_test_volumes(multicoil_records, singlecoil_raw):
    raw, _ = multicoil_records
    multicoil = fastmri_files.read_volume(
        glob.glob(os.path.join(raw, "multicoil_train", "*.h5"))[0]
    )
    assert multicoil.is_multicoil and multicoil.kspace.shape[1] == 4
    assert multicoil.target.shape[1:] == (320, 320)
    test = fastmri_files.read_volume(
        glob.glob(os.path.join(singlecoil_raw, "singlecoil_test", "*.h5"))[0]
    )
    assert test.target is None and test.mask.shape == (test.kspace.shape[-1],)
    assert test.acceleration in (4, 8)


def _corrupt_not_hdf5(path):
    with open(path, "w") as handle:
        handle.write("this is not HDF5\n")


def _corrupt_truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)


def _corrupt_missing_kspace(path):
    with h5py.File(path, "a") as handle:
        del handle["kspace"]


def _corrupt_rank(path):
    with h5py.File(path, "r") as handle:
        kspace = handle["kspace"][()]
    _rewrite(path, "kspace", kspace[0])


def _corrupt_dtype(path):
    with h5py.File(path, "r") as handle:
        kspace = handle["kspace"][()]
    _rewrite(path, "kspace", np.abs(kspace).astype(np.float32))


def _corrupt_nan(path):
    with h5py.File(path, "a") as handle:
        kspace = handle["kspace"][()]
        kspace[1, 10, 10] = np.nan
        handle["kspace"][...] = kspace


def _corrupt_target_shape(path):
    with h5py.File(path, "r") as handle:
        target = handle["reconstruction_esc"][()]
    _rewrite(path, "reconstruction_esc", target[:, :300, :300])


BAD_INPUTS = {
    "not_hdf5": (_corrupt_not_hdf5, "not an HDF5 file"),
    "truncated": (_corrupt_truncate, "truncated"),
    "missing_kspace": (_corrupt_missing_kspace, "missing dataset 'kspace'"),
    "wrong_rank": (_corrupt_rank, "rank 2"),
    "wrong_dtype": (_corrupt_dtype, "dtype float32, expected complex64"),
    "nan": (_corrupt_nan, "NaN or infinite values \\(first in slice 1\\)"),
    "target_shape": (_corrupt_target_shape, "expected \\(3, 320, 320\\)"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_files_raise_one_clear_error_naming_the_file(train_file, name):
    corrupt, message = BAD_INPUTS[name]
    corrupt(train_file)
    with pytest.raises(FastMRIFileError, match=message) as error:
        fastmri_files.read_volume(train_file)
    assert str(error.value).startswith(train_file + ": ")
    assert "\n" not in str(error.value)


def test_empty_directory(tmp_path):
    with pytest.raises(FastMRIFileError, match="holds no .h5 files"):
        fastmri_files.list_volumes(str(tmp_path))
    with pytest.raises(FastMRIFileError, match="no such directory"):
        fastmri_files.list_volumes(str(tmp_path / "absent"))
