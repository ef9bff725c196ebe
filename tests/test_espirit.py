"""ESPIRiT maps against sigpy's independent implementation and against the true coils.

The coils are sigpy's birdcage maps (8 and 16 coils); the object an ellipse with a
texture and a smooth phase; the k-space noise 0.1 % of its maximum. Maps are unique up
to a phase per pixel, so two maps agree when ``|<a, b>| / (|a| |b|)`` is near 1.
"""

import numpy as np
import pytest
import sigpy
import sigpy.mri
import tensorflow as tf

from tfmri.data import espirit


def _scan(num_coils, height, width, seed=0):
    """(centred k-space complex [C, H, W], true maps [C, H, W], object support [H, W])."""
    maps = sigpy.mri.birdcage_maps((num_coils, height, width)).astype(np.complex64)
    y, x = np.mgrid[-1 : 1 : height * 1j, -1 : 1 : width * 1j]
    support = x**2 / 0.6 + y**2 / 0.8 < 0.7
    image = support * (1 + 0.3 * np.cos(6 * x)) * np.exp(1j * (1.5 * x + 0.7 * y))
    kspace = sigpy.fft(maps * image, axes=(-2, -1))
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)
    return kspace + 1e-3 * np.abs(kspace).max() * noise, maps, support


def _mask(width, centre, every):
    mask = np.zeros(width, np.float32)
    mask[::every] = 1
    mask[width // 2 - centre // 2 : width // 2 - centre // 2 + centre] = 1
    return mask


def _ours(kspace, mask):
    """ESPIRiT of the measured data, given to tfmri in hybrid space (rows in image space)."""
    hybrid = sigpy.ifft(kspace * mask, axes=(-2,)).astype(np.complex64)
    maps, values, used = espirit.slice_maps(tf.constant(hybrid), tf.constant(mask))
    return maps.numpy(), values.numpy(), used.numpy()


def _agreement(a, b):
    inner = np.abs(np.sum(np.conj(a) * b, axis=0))
    return inner / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0) + 1e-30)


@pytest.mark.parametrize("num_coils", [8, 16])
def test_maps_equal_sigpys_espirit_and_the_true_coils(num_coils):
    kspace, truth, support = _scan(num_coils, 160, 128)
    mask = _mask(128, 24, 4)
    ours, values, _ = _ours(kspace, mask)
    theirs = sigpy.mri.app.EspiritCalib(
        kspace * mask, calib_width=24, thresh=0.02, kernel_width=6, crop=0.95, show_pbar=False
    ).run()
    with_sigpy = _agreement(ours, theirs)[support]
    with_truth = _agreement(ours, truth)[support]
    # tfmri solves the rows on a grid twice as tall (zero rows around the crop, see
    # test_an_object_cut_by_the_crop_keeps_the_true_maps), so its 6-row window spans half
    # sigpy's extent along the readout: agreement to 2e-4, not to machine precision.
    assert np.median(with_sigpy) > 0.99999 and np.percentile(with_sigpy, 1) > 0.9998
    assert np.median(with_truth) > 0.9999 and np.percentile(with_truth, 1) > 0.999
    # Both keep the object and drop most of the empty background, about equally.
    ours_kept = np.linalg.norm(ours, axis=0) > 0
    theirs_kept = np.linalg.norm(theirs, axis=0) > 0
    assert ours_kept[support].mean() > 0.99 and theirs_kept[support].mean() > 0.99
    # The shorter window (above) also moves where the eigenvalue falls below the crop
    # in the empty background: 4-5 % of the pixels differ (2 % on the crop's own grid).
    assert np.mean(ours_kept != theirs_kept) < 0.06
    assert np.all(values < 1 + 1e-3)  # G's eigenvalues lie in [0, 1]


@pytest.mark.parametrize("num_coils", [8, 16])
def test_seven_calibration_columns_still_give_the_true_maps(num_coils):
    """8x on narrow k-space leaves 7 centre columns, where a 24 x 24 calibration (BART's
    and sigpy's default) has none to use: tfmri takes more readout rows and narrower
    windows, and says so."""
    kspace, truth, support = _scan(num_coils, 320, 368)
    mask = _mask(368, 7, 8)
    ours, _, used = _ours(kspace, mask)
    first, columns, rows, kernel_rows, kernel_columns = used
    assert columns == 7 and mask[first : first + 7].all()
    assert kernel_rows == 6 and kernel_columns < 6 and rows > 24
    windows = (rows - kernel_rows + 1) * (columns - kernel_columns + 1)
    assert windows >= 2 * num_coils * kernel_rows * kernel_columns  # A overdetermined
    agreement = _agreement(ours, truth)[support]
    assert np.median(agreement) > 0.9995 and np.percentile(agreement, 1) > 0.998


def test_maps_have_unit_norm_or_none_and_coil_zero_is_real():
    kspace, _, _ = _scan(8, 96, 80)
    ours, values, _ = _ours(kspace, _mask(80, 20, 3))
    norm = np.linalg.norm(ours, axis=0)
    kept = values >= espirit.CROP
    np.testing.assert_allclose(norm[kept], 1, atol=1e-4)
    assert np.all(norm[~kept] == 0)
    assert np.all(ours[0][kept].real > 0) and np.abs(ours[0].imag).max() < 1e-4


def test_a_batch_gives_the_maps_of_each_slice():
    first, _, _ = _scan(4, 64, 48, seed=1)
    second, _, _ = _scan(4, 64, 48, seed=2)
    masks = np.stack([_mask(48, 16, 2), _mask(48, 12, 3)])
    hybrid = np.stack(
        [sigpy.ifft(k * m, axes=(-2,)) for k, m in zip([first, second], masks)]
    ).astype(np.complex64)
    batch = espirit.estimate_maps(tf.constant(hybrid), tf.constant(masks)).numpy()
    for index in range(2):
        single, _, _ = espirit.slice_maps(tf.constant(hybrid[index]), tf.constant(masks[index]))
        np.testing.assert_allclose(batch[index], single.numpy(), atol=1e-5)


@pytest.mark.parametrize("num_coils", [8, 16])
def test_an_object_cut_by_the_crop_keeps_the_true_maps(num_coils):
    """A knee runs through the whole readout field of view, so the recon crop's rows cut
    it. On the crop's own periodic grid the maps would have to jump where the last row
    wraps to the first (there, the 1st percentile of the agreement was 0.92)."""
    height, width = 320, 128
    truth = sigpy.mri.birdcage_maps((num_coils, height, width)).astype(np.complex64)
    y, x = np.mgrid[-1 : 1 : height * 1j, -1 : 1 : width * 1j]
    support = np.abs(x) < 0.7  # every row
    image = support * (1 + 0.3 * np.cos(6 * x) * np.cos(5 * y)) * np.exp(1j * (1.5 * x + 0.7 * y))
    kspace = sigpy.fft(truth * image, axes=(-2, -1))
    rng = np.random.default_rng(1)
    kspace += (
        1e-3
        * np.abs(kspace).max()
        * (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape))
    )
    mask = _mask(width, 24, 4)
    rows = slice(height // 4, 3 * height // 4)  # the crop: the middle half of the rows
    hybrid = sigpy.ifft(kspace * mask, axes=(-2,)).astype(np.complex64)[:, rows]
    maps, _, _ = espirit.slice_maps(tf.constant(hybrid), tf.constant(mask))
    agreement = _agreement(maps.numpy(), truth[:, rows])[support[rows]]
    assert np.median(agreement) > 0.9999 and np.percentile(agreement, 1) > 0.999
    assert (np.linalg.norm(maps.numpy(), axis=0) > 0)[support[rows]].mean() > 0.99


def test_gram_images_equal_the_centred_fft_of_the_summed_projection():
    """The two products with DFT factors against NumPy's centred 2D FFT of the
    projection summed along its offset differences, placed at the middle of the grid."""
    rng = np.random.default_rng(1)
    num_coils, kr, kc, height, width = 2, 3, 2, 12, 10
    size = num_coils * kr * kc
    half = rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))
    projection = (half @ half.conj().T).astype(np.complex64)
    grid = np.zeros((height, width, num_coils, num_coils), np.complex128)
    pairs = projection.reshape(num_coils, kr, kc, num_coils, kr, kc)
    for r1, c1, r2, c2 in np.ndindex(kr, kc, kr, kc):
        grid[height // 2 + r1 - r2, width // 2 + c1 - c2] += pairs[:, r1, c1, :, r2, c2]
    shifted = np.fft.ifftshift(grid, axes=(0, 1))
    expected = np.fft.fftshift(np.fft.fft2(shifted, axes=(0, 1)), axes=(0, 1)) / (kr * kc)
    rows = np.arange(3, 9)
    gram = espirit._gram_images(
        tf.constant(projection), num_coils, kr, kc, height, width, tf.constant(rows)
    ).numpy()
    np.testing.assert_allclose(gram, expected[rows], atol=1e-4 * np.abs(expected).max())
