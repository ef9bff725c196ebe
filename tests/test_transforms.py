import numpy as np
import pytest
import tensorflow as tf

from tfmri.data import transforms

RNG = np.random.default_rng(0)


def _complex(shape):
    return (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)).astype(np.complex64)


def numpy_ifft2c(kspace):
    axes = (-2, -1)
    shifted = np.fft.ifftshift(kspace, axes=axes)
    return np.fft.fftshift(np.fft.ifft2(shifted, axes=axes, norm="ortho"), axes=axes)


def numpy_fft2c(image):
    axes = (-2, -1)
    shifted = np.fft.ifftshift(image, axes=axes)
    return np.fft.fftshift(np.fft.fft2(shifted, axes=axes, norm="ortho"), axes=axes)


@pytest.mark.parametrize("shape", [(8, 6), (7, 5), (2, 3, 640, 368), (4, 9, 10)])
def test_centred_ffts_match_numpy(shape):
    x = _complex(shape)
    np.testing.assert_allclose(transforms.ifft2c(x).numpy(), numpy_ifft2c(x), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(transforms.fft2c(x).numpy(), numpy_fft2c(x), rtol=1e-4, atol=1e-5)


def test_ffts_are_orthonormal_inverses():
    x = _complex((3, 64, 48))
    np.testing.assert_allclose(transforms.ifft2c(transforms.fft2c(x)).numpy(), x, atol=1e-5)
    energy = np.sum(np.abs(x) ** 2)
    assert np.sum(np.abs(transforms.fft2c(x).numpy()) ** 2) == pytest.approx(energy, rel=1e-5)


@pytest.mark.parametrize(
    "shape,crop", [((640, 368), (320, 320)), ((7, 9), (4, 3)), ((2, 5, 6), (5, 5))]
)
def test_center_crop_matches_fastmri_offsets(shape, crop):
    x = _complex(shape)
    top, left = (shape[-2] - crop[0]) // 2, (shape[-1] - crop[1]) // 2
    expected = x[..., top : top + crop[0], left : left + crop[1]]
    np.testing.assert_array_equal(transforms.center_crop(x, *crop).numpy(), expected)


def test_center_crop_refuses_a_crop_larger_than_the_image():
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than the crop"):
        transforms.center_crop(tf.zeros([10, 300]), 320, 320)


def test_rss_and_abs():
    coils = _complex((4, 6, 5))
    np.testing.assert_allclose(
        transforms.rss(coils, axis=0).numpy(), np.sqrt((np.abs(coils) ** 2).sum(0)), rtol=1e-5
    )
    np.testing.assert_allclose(
        transforms.rss(np.abs(coils), axis=0).numpy(),
        np.sqrt((np.abs(coils) ** 2).sum(0)),
        rtol=1e-5,
    )
    np.testing.assert_allclose(transforms.complex_abs(coils).numpy(), np.abs(coils), rtol=1e-6)


def test_instance_normalisation_matches_fastmri_and_inverts():
    image = (RNG.random((32, 32)) * 3e-4).astype(np.float32)
    image[0, 0] = 1.0  # an outlier that must be clamped
    normalized, mean, std = transforms.normalize_instance(image)
    expected_mean, expected_std = image.mean(dtype=np.float64), image.std(ddof=1, dtype=np.float64)
    assert float(mean) == pytest.approx(expected_mean, rel=1e-5)
    assert float(std) == pytest.approx(expected_std, rel=1e-4)
    expected = np.clip((image - expected_mean) / (expected_std + 1e-11), -6, 6)
    np.testing.assert_allclose(normalized.numpy(), expected, rtol=1e-4, atol=1e-5)
    assert normalized.numpy().max() == pytest.approx(6.0)
    restored = transforms.denormalize(normalized, mean, std).numpy()
    unclamped = np.abs(expected) < 6
    np.testing.assert_allclose(restored[unclamped], image[unclamped], rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("shape", [(640, 368), (3, 64, 41), (33, 40)])
def test_cropped_ifft2c_equals_masked_full_transform_then_crop(shape):
    kspace = _complex(shape)
    mask = (RNG.random(shape[-1]) < 0.3).astype(np.float32)
    mask[shape[-1] // 2] = 1
    height, width = min(shape[-2], 32), min(shape[-1], 30)
    expected = numpy_ifft2c(kspace * mask)
    top, left = (shape[-2] - height) // 2, (shape[-1] - width) // 2
    expected = expected[..., top : top + height, left : left + width]
    actual = transforms.cropped_ifft2c(kspace, mask, height, width).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
