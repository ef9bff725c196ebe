"""The real-anatomy check set: the MNI152 template as valid fastMRI single-coil files."""

import os

import numpy as np
import pytest
from scipy import ndimage

from tests.test_transforms import numpy_ifft2c
from tfmri.data import anatomy, convert, fastmri_files, pipeline, synthetic


@pytest.fixture(scope="module")
def anatomy_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("anatomy")
    spec = anatomy.AnatomySpec(volumes_per_plane=1, num_slices=2, clean_volumes_per_plane=1)
    return str(root), anatomy.generate(spec, str(root)), spec


def test_files_are_fastmri_volumes_of_the_template(anatomy_set):
    _, paths, spec = anatomy_set
    # Per plane a check volume, its clean twin and a tuning volume.
    assert len(paths) == 3 * len(anatomy.PLANES)
    assert [p.split("/")[-2] for p in paths] == [anatomy.SPLIT] * 6 + [anatomy.TUNE_SPLIT] * 3
    template = anatomy.load_template()
    assert template.shape == (197, 233, 189) and template.max() > 0
    for path in paths:
        volume = fastmri_files.read_volume(path)
        assert volume.kspace.shape[0] == spec.num_slices and volume.kspace.shape[1] == 640
        assert volume.kspace.dtype == np.complex64 and volume.target.shape[1:] == (320, 320)
        # The target is the cropped magnitude of the fully sampled data (numpy reference).
        width = volume.kspace.shape[-1]
        left = (width - 320) // 2
        expected = np.abs(numpy_ifft2c(volume.kspace))[:, 160:480, left : left + 320]
        np.testing.assert_allclose(volume.target, expected, rtol=0, atol=1e-4 * expected.max())
        # At fastMRI's tiny scale, and a brain, not noise: a large part of the crop is tissue.
        assert 1e-4 < volume.max_value < 1e-3
        assert np.mean(volume.target > 0.2 * volume.max_value) > 0.25
        # Zero-padded edge columns, as in real data.
        assert np.all(volume.kspace[..., 0] == 0) and np.all(volume.kspace[..., -1] == 0)


def test_planes_differ_and_generation_is_deterministic(anatomy_set, tmp_path):
    _, paths, spec = anatomy_set
    again = anatomy.generate(spec, str(tmp_path))
    for first, second in zip(paths, again):
        np.testing.assert_array_equal(
            fastmri_files.read_volume(first).kspace, fastmri_files.read_volume(second).kspace
        )
    noisy = [p for p in paths[:6] if anatomy.CLEAN not in os.path.basename(p)]
    targets = [fastmri_files.read_volume(p).target[0] for p in noisy]
    assert not np.allclose(targets[0], targets[1]) and not np.allclose(targets[1], targets[2])


def test_converts_and_feeds_the_evaluation_pipeline(anatomy_set, tmp_path):
    root, paths, _ = anatomy_set
    records = str(tmp_path / "records")
    convert.convert(root, records, convert.ConvertOptions(num_shards=1, num_workers=1))
    options = pipeline.PipelineOptions(pipeline.masks.MaskSpec("random", (0.04,), (8,)))
    dataset = pipeline.make_dataset(records, anatomy.SPLIT, options, training=False)
    names = {name.decode() for inputs, _ in dataset for name in inputs["volume"].numpy()}
    assert names == {p.split("/")[-1] for p in paths[:6]}


def test_a_clean_twin_is_its_volume_with_the_background_masked(anatomy_set, tmp_path):
    """Same slices, width, phase and noise inside the head; outside, the target is zero but
    for the ringing of the zeroed edge columns. The noisy volumes do not depend on it."""
    _, paths, spec = anatomy_set
    noisy = fastmri_files.read_volume(paths[0])
    clean = fastmri_files.read_volume(paths[1])
    assert paths[1].endswith(f"axial_0{anatomy.CLEAN}.h5")
    assert clean.kspace.shape == noisy.kspace.shape
    assert np.all(clean.kspace[..., 0] == 0) and np.all(clean.kspace[..., -1] == 0)
    head = noisy.target > 0.2 * noisy.max_value
    tissue = ndimage.binary_dilation(noisy.target > 0.05 * noisy.max_value, iterations=8)
    far = ~tissue  # the background, 8 pixels or more from anything above the noise
    assert far.mean() > 0.05 and head.mean() > 0.25
    noise_floor = np.mean(noisy.target[far])
    assert noise_floor > 1e-3 * noisy.max_value  # the noisy twin has a noise background
    assert np.mean(clean.target[far]) < 0.05 * noise_floor
    np.testing.assert_allclose(
        clean.target[head], noisy.target[head], rtol=0, atol=0.02 * noisy.max_value
    )
    without = anatomy.generate(
        anatomy.AnatomySpec(volumes_per_plane=1, num_slices=2, clean_volumes_per_plane=0),
        str(tmp_path),
    )
    assert len(without) == 6 and all(anatomy.CLEAN not in os.path.basename(p) for p in without)
    for path in without:
        twin = [p for p in paths if p.split("/")[-2:] == path.split("/")[-2:]][0]
        np.testing.assert_array_equal(
            fastmri_files.read_volume(path).kspace, fastmri_files.read_volume(twin).kspace
        )


@pytest.mark.parametrize("volumes_per_plane, tune", [(1, 1), (2, 1), (3, 2)])
def test_tuning_volumes_share_no_slice_with_the_checks(volumes_per_plane, tune):
    spec = anatomy.AnatomySpec(volumes_per_plane, num_slices=6, tune_volumes_per_plane=tune)
    shape = (197, 233, 189)
    plan = anatomy.volume_plan(shape, spec)
    for plane in anatomy.PLANES:
        depth = shape[2 - anatomy.PLANES.index(plane)]
        checks = {
            i for split, _, p, ind in plan if p == plane and split == anatomy.SPLIT for i in ind
        }
        tuning = [ind for split, _, p, ind in plan if p == plane and split == anatomy.TUNE_SPLIT]
        assert len(checks) == volumes_per_plane * 6 and len(tuning) == tune
        for indices in tuning:
            assert not checks & set(indices) and 0 <= min(indices) and max(indices) < depth


def test_multicoil_variant_sees_the_slices_through_coil_maps(tmp_path):
    spec = anatomy.AnatomySpec(
        volumes_per_plane=1,
        num_slices=2,
        tune_volumes_per_plane=1,
        coils=4,
        clean_volumes_per_plane=1,
    )
    written = anatomy.generate(spec, str(tmp_path))
    assert spec.splits == ("multicoil_val", "multicoil_tune")
    assert sorted(os.listdir(tmp_path)) == ["multicoil_tune", "multicoil_val"]
    assert len(written) == 9
    volume = fastmri_files.read_volume(written[0])
    assert volume.is_multicoil and volume.kspace.shape[:3] == (2, 4, 640)
    # The target is the RSS of the cropped coil images of the fully sampled k-space.
    coil_images = np.abs(synthetic.center_crop(synthetic.ifft2c(volume.kspace), 320))
    np.testing.assert_allclose(
        volume.target,
        np.sqrt((coil_images**2).sum(axis=1)),
        rtol=1e-4,
        atol=1e-6 * volume.target.max(),
    )
    # The coils see different parts of the head: the centroids of their images differ.
    weights = coil_images[0] ** 2  # [coils, 320, 320]
    rows, columns = np.indices(weights.shape[1:])
    centroids = np.stack(
        [(weights * axis).sum(axis=(1, 2)) / weights.sum(axis=(1, 2)) for axis in (rows, columns)],
        axis=1,
    )
    spread = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1).max()
    assert spread > 10, spread


def test_birdcage_maps_are_sigpys_wire_fields_up_to_a_phase_per_coil():
    """On a square grid sigpy's ``birdcage_maps`` is the same wires' field, normalised to
    RSS 1 at every pixel and conjugated (its phase turns the other way): so per coil,
    ours times sigpy's has one phase everywhere, and ours over sigpy's is our RSS."""
    sigpy_mri = pytest.importorskip("sigpy.mri")
    coils, size, radius = 8, 320, 1.5
    ours = anatomy.birdcage_maps(coils, size, size, radius)
    theirs = sigpy_mri.birdcage_maps((coils, size, size), r=radius)
    product = ours * theirs
    phase_spread = np.abs(
        product / np.abs(product) - (product / np.abs(product)).mean((1, 2), keepdims=True)
    )
    assert phase_spread.max() < 1e-6
    rss = np.sqrt((np.abs(ours) ** 2).sum(axis=0))
    np.testing.assert_allclose(
        np.abs(ours) / np.abs(theirs), np.broadcast_to(rss, ours.shape), rtol=1e-9
    )
    assert rss[size // 2, size // 2] == pytest.approx(1.0)
    # Bright near the wire: coil 0's wire is at the right edge.
    assert np.abs(ours[0, size // 2, -1]) > 3 * np.abs(ours[0, size // 2, 0])


def test_correlated_noise_has_the_covariance_asked_for():
    rng = np.random.default_rng(4)
    covariance = anatomy.noise_covariance(rng, 8)
    assert np.all(np.linalg.eigvalsh(covariance) > 0)
    neighbours = covariance[0, 1] / np.sqrt(covariance[0, 0] * covariance[1, 1])
    assert 0.1 <= neighbours <= 0.3
    noise = anatomy.correlated_noise(rng, covariance, (200000,))
    measured = noise @ noise.conj().T / noise.shape[1]
    np.testing.assert_allclose(measured, covariance, atol=0.01)
    # Circular: the real and imaginary parts are uncorrelated and equally strong.
    assert abs(np.mean(noise.real**2) - np.mean(noise.imag**2)) < 0.01
    assert abs(np.mean(noise * noise)) < 0.01
