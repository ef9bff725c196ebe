"""Natural-image volumes (the demo's default data): valid fastMRI files of MR-like objects."""

import glob
import os

import h5py
import numpy as np
import pytest

from tests.test_transforms import numpy_ifft2c
from tfmri.data import natural, synthetic


@pytest.fixture(scope="module")
def natural_raw(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("natural"))
    spec = synthetic.SyntheticSpec(num_volumes=6, num_slices=3, seed=2, source="natural")
    return root, synthetic.generate(spec, root)


def _read(path):
    with h5py.File(path) as handle:
        return handle["kspace"][()], handle["reconstruction_esc"][()], dict(handle.attrs)


def test_files_are_fastmri_volumes(natural_raw):
    _, written = natural_raw
    assert [len(written[split]) for split in ("train", "val", "test")] == [4, 1, 1]
    for path in written["train"] + written["val"]:
        kspace, target, attrs = _read(path)
        assert kspace.dtype == np.complex64 and kspace.shape[1] == 640
        assert target.shape == (3, 320, 320) and attrs["max"] == pytest.approx(target.max())
        width = kspace.shape[-1]
        expected = np.abs(numpy_ifft2c(kspace))[:, 160:480, (width - 320) // 2 :][..., :320]
        np.testing.assert_allclose(target, expected, rtol=0, atol=1e-4 * expected.max())
        assert 1e-4 < target.max() < 1e-3  # fastMRI's tiny single-coil scale
        assert np.all(kspace[..., 0] == 0) and np.all(kspace[..., -1] == 0)  # padded edges


def test_objects_on_a_dark_background_with_structure(natural_raw):
    _, written = natural_raw
    for path in written["train"] + written["val"]:
        _, target, _ = _read(path)
        peak = target.max()
        # The corners of the crop are background: noise only, far below the object.
        corners = np.concatenate([target[:, :12, :12].ravel(), target[:, -12:, -12:].ravel()])
        background = np.median(corners)
        assert background < 0.05 * peak
        # The object covers a good part of the crop, and is not flat inside.
        inside = target > 4 * background
        assert 0.1 < inside.mean() < 0.98
        assert np.median(target[:, 110:210, 110:210]) > 4 * background
        assert target[inside].std() > 0.1 * target[inside].mean()
        # Neighbouring slices are neighbouring crops: alike, not equal.
        first, second = target[0] / peak, target[1] / peak
        assert 0 < np.abs(first - second).mean() < 0.5 * np.abs(first).mean()


def test_validation_photographs_are_not_trained_on(natural_raw, tmp_path):
    assert not set(natural.TRAIN_IMAGES) & set(natural.VAL_IMAGES)
    rng = np.random.default_rng(0)
    assert {natural.random_params(rng, "val")["name"] for _ in range(50)} <= set(natural.VAL_IMAGES)
    assert {natural.random_params(rng, "train")["name"] for _ in range(200)} == set(
        natural.TRAIN_IMAGES
    )
    for name in natural.TRAIN_IMAGES + natural.VAL_IMAGES:
        image = natural.load_image(name)
        assert image.ndim == 2 and min(image.shape) >= 300 and 0 <= image.min() < image.max() <= 1


def test_generation_is_deterministic(natural_raw, tmp_path):
    root, written = natural_raw
    again = synthetic.generate(
        synthetic.SyntheticSpec(num_volumes=6, num_slices=3, seed=2, source="natural"),
        str(tmp_path),
    )
    for first, second in zip(written["train"], again["train"]):
        assert os.path.basename(first) == os.path.basename(second)
        np.testing.assert_array_equal(_read(first)[0], _read(second)[0])
    assert len(glob.glob(os.path.join(root, "*", "*.h5"))) == 6


def test_unknown_source_is_refused():
    with pytest.raises(ValueError, match="source"):
        synthetic.make_volume(0, 1, 1, 368, source="brain")
