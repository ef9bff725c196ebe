import glob
import os

import h5py
import numpy as np
import pytest

from tests.conftest import run_tool
from tests.test_transforms import numpy_ifft2c
from tfmri.data import masks, synthetic


def _files(directory, split):
    return sorted(glob.glob(os.path.join(directory, f"*_{split}", "*.h5")))


def test_layout_matches_fastmri_singlecoil(singlecoil_raw):
    assert [len(_files(singlecoil_raw, s)) for s in ("train", "val", "test")] == [3, 1, 1]
    with h5py.File(_files(singlecoil_raw, "train")[0]) as handle:
        assert set(handle) == {
            "kspace",
            "reconstruction_esc",
            "reconstruction_rss",
            "ismrmrd_header",
        }
        assert handle["kspace"].dtype == np.complex64
        slices, height, width = handle["kspace"].shape
        assert (slices, height) == (3, 640) and width in synthetic.WIDTHS
        assert handle["reconstruction_esc"].dtype == np.float32
        assert handle["reconstruction_esc"].shape == (slices, 320, 320)
        assert {"acquisition", "max", "norm", "patient_id"} <= set(handle.attrs)
        kspace = handle["kspace"][()]
        target = handle["reconstruction_esc"][()]
        assert handle.attrs["max"] == pytest.approx(target.max())
    # Real single-coil knee scale: tiny k-space values, never near 1.
    magnitude = np.abs(kspace[kspace != 0])
    assert 1e-7 < np.median(magnitude) < 1e-3 and magnitude.max() < 1.0
    # The target is the magnitude of the cropped inverse FFT of the k-space.
    expected = np.abs(numpy_ifft2c(kspace)[:, 160:480, (width - 320) // 2 : (width + 320) // 2])
    np.testing.assert_allclose(target, expected, rtol=1e-4, atol=1e-4 * target.max())


def test_content_is_not_trivial(singlecoil_raw):
    with h5py.File(_files(singlecoil_raw, "train")[0]) as handle:
        target = handle["reconstruction_esc"][()]
        kspace = handle["kspace"][()]
    image = target[1] / target.max()
    # Several tissue intensities and fine texture, not a flat phantom.
    histogram, _ = np.histogram(image[image > 0.05], bins=20)
    assert (histogram > 0.01 * histogram.sum()).sum() >= 6
    assert np.abs(np.diff(image, axis=1)).mean() > 0.01
    # A smooth, non-zero phase.
    phase = np.angle(numpy_ifft2c(kspace[1]))[200:440, 100:260]
    assert np.std(phase) > 0.1
    # Slices differ.
    assert np.abs(target[0] - target[2]).mean() > 0.01 * target.max()


def test_test_split_holds_masked_kspace_and_its_mask(singlecoil_raw):
    path = _files(singlecoil_raw, "test")[0]
    with h5py.File(path) as handle:
        assert "reconstruction_esc" not in handle and "reconstruction_rss" not in handle
        kspace, mask = handle["kspace"][()], handle["mask"][()]
        acceleration = int(handle.attrs["acceleration"])
    assert acceleration in (4, 8) and mask.shape == (kspace.shape[-1],)
    np.testing.assert_array_equal(kspace[..., ~mask.astype(bool)], 0)
    spec = masks.MaskSpec("random", ((0.08 if acceleration == 4 else 0.04),), (acceleration,))
    expected, _ = masks.MaskFunction(spec)(
        kspace.shape[-1], seed=masks.volume_seed(os.path.basename(path))
    )
    np.testing.assert_array_equal(mask.astype(np.float32), expected)


def test_multicoil_layout(multicoil_records):
    raw, _ = multicoil_records
    with h5py.File(_files(raw, "train")[0]) as handle:
        assert "reconstruction_esc" not in handle
        kspace = handle["kspace"][()]
        target = handle["reconstruction_rss"][()]
    assert kspace.shape[:3] == (2, 4, 640)
    width = kspace.shape[-1]
    coil_images = numpy_ifft2c(kspace)[..., 160:480, (width - 320) // 2 : (width + 320) // 2]
    expected = np.sqrt((np.abs(coil_images) ** 2).sum(axis=1))
    np.testing.assert_allclose(target, expected, rtol=1e-4, atol=1e-4 * target.max())
    # Smooth coil sensitivities: each coil sees a different part of the image.
    energy = (np.abs(coil_images[0]) ** 2).sum(axis=(-2, -1))
    assert energy.max() / energy.min() < 20 and len(set(np.round(energy / energy.max(), 3))) == 4


def test_deterministic_for_a_seed(tmp_path):
    spec = synthetic.SyntheticSpec(num_volumes=3, num_slices=2, seed=11)
    first = synthetic.generate(spec, tmp_path / "a")
    second = synthetic.generate(spec, tmp_path / "b")
    other = synthetic.generate(
        synthetic.SyntheticSpec(num_volumes=3, num_slices=2, seed=12), tmp_path / "c"
    )
    for split in first:
        for a, b in zip(first[split], second[split]):
            assert os.path.basename(a) == os.path.basename(b)
            with h5py.File(a) as fa, h5py.File(b) as fb:
                np.testing.assert_array_equal(fa["kspace"][()], fb["kspace"][()])
    assert {os.path.basename(p) for p in first["train"]} != {
        os.path.basename(p) for p in other["train"]
    }


def test_cli_help_and_bad_flag():
    result = run_tool("-m", "tfmri.synthesize", "--help")
    assert result.returncode == 0 and "--num_volumes" in result.stdout
    result = run_tool("-m", "tfmri.synthesize", "--output_dir=/tmp/x", "--num_volumes=0")
    assert result.returncode != 0 and "num_volumes" in result.stderr
