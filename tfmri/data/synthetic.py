"""Synthetic knee volumes written in the exact fastMRI HDF5 layout.

The real fastMRI data needs a signed licence; these files stand in for it in the demo
and the tests. The reader cannot tell them apart from real ones: same keys, dtypes,
shapes, attributes and ISMRMRD header, k-space at the real (tiny) scale with zero-padded
edge columns, and an anatomy-like image (a leg with fat, muscle, femur, tibia, patella,
cartilage and joint fluid, fine texture, a smooth phase) so that reconstruction is a
learnable, non-trivial task. Everything is deterministic for a seed.

The image is built on the 640 x W oversampled grid; the centre 320 x 320 (the recon
size) covers the knee. The targets follow the data: ``reconstruction_esc`` is
``|crop(ifft2c(kspace))|`` and ``reconstruction_rss`` the root-sum-of-squares of the
cropped coil images.
"""

import dataclasses
import os

import h5py
import numpy as np

from tfmri import fileio
from tfmri.data import fastmri_files
from tfmri.data.masks import MaskFunction, MaskSpec, volume_seed

READOUT = 640
RECON = 320
WIDTHS = (368, 368, 368, 372, 356)  # phase-encoding widths seen in fastMRI knee data
ACQUISITIONS = ("CORPD_FBK", "CORPDFS_FBK")
SOURCES = ("knee", "natural")
# Test files are undersampled with fastMRI's standard settings.
TEST_MASKS = (MaskSpec("random", (0.08,), (4,)), MaskSpec("random", (0.04,), (8,)))


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    num_volumes: int = 6
    num_slices: int = 8
    coils: int = 1
    seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.1
    source: str = "knee"  # of SOURCES: the knee phantom, or photographs made MR-like


def split_sizes(num_volumes, val_fraction, test_fraction):
    """(train, val, test) volume counts; at least one val and test volume once there are 3."""
    if num_volumes < 1:
        raise ValueError(f"num_volumes must be >= 1, got {num_volumes}")
    num_val = max(round(num_volumes * val_fraction), 1 if num_volumes >= 3 else 0)
    num_test = max(round(num_volumes * test_fraction), 1 if num_volumes >= 3 else 0)
    num_train = num_volumes - num_val - num_test
    if num_train < 1:
        raise ValueError(
            f"num_volumes={num_volumes} leaves no training volume with val_fraction="
            f"{val_fraction} and test_fraction={test_fraction}"
        )
    return num_train, num_val, num_test


# ---------------------------------------------------------------------------- anatomy


def grid(height, width):
    """float64 (u, v) [height, width]: pixel coordinates of a centred ``height`` x
    ``width`` grid in units where the recon crop spans [-1, 1]."""
    rows = (np.arange(height) - height / 2) / (RECON / 2)
    cols = (np.arange(width) - width / 2) / (RECON / 2)
    return np.meshgrid(rows, cols, indexing="ij")


def _smooth_noise(rng, shape, sigma_pixels):
    """Zero-mean, unit-std Gaussian-filtered white noise (filtered in Fourier space)."""
    noise = rng.standard_normal(shape)
    freq_y = np.fft.fftfreq(shape[0])[:, None]
    freq_x = np.fft.fftfreq(shape[1])[None, :]
    gain = np.exp(-2.0 * (np.pi * sigma_pixels) ** 2 * (freq_y**2 + freq_x**2))
    smooth = np.real(np.fft.ifft2(np.fft.fft2(noise) * gain))
    return (smooth - smooth.mean()) / (smooth.std() + 1e-12)


def _ellipse(u, v, center, axes, angle=0.0, softness=0.004):
    """Soft-edged ellipse indicator in [0, 1]."""
    cos, sin = np.cos(angle), np.sin(angle)
    du, dv = u - center[0], v - center[1]
    ru = (cos * du + sin * dv) / axes[0]
    rv = (-sin * du + cos * dv) / axes[1]
    radius = np.sqrt(ru**2 + rv**2)
    return 1.0 / (1.0 + np.exp((radius - 1.0) / softness * min(axes)))


def knee_slice(rng, width, position, anatomy):
    """One complex image slice, complex128 [READOUT, width], magnitude roughly in [0, 1].

    ``position`` in [-1, 1] is the slice's place in the volume (edges are small),
    ``anatomy`` the per-volume random shape parameters.
    """
    u, v = grid(READOUT, width)  # the recon crop is [-1, 1]^2
    size = np.sqrt(max(1.0 - 0.55 * position**2, 0.05))
    shift = anatomy["shift"] + 0.05 * position

    leg_axes = (1.9, anatomy["leg_width"] * size + 0.15)
    leg = _ellipse(u, v, (0.0, shift), leg_axes)
    muscle = _ellipse(u, v, (0.0, shift), (leg_axes[0] - 0.1, leg_axes[1] - anatomy["fat"]))
    femur_center = (-0.55 + anatomy["gap"], shift + 0.03)
    tibia_center = (0.62 + anatomy["gap"], shift - 0.02)
    femur = _ellipse(u, v, femur_center, (0.5, 0.42 * size), anatomy["tilt"])
    femur_marrow = _ellipse(u, v, femur_center, (0.46, 0.38 * size), anatomy["tilt"])
    tibia = _ellipse(u, v, tibia_center, (0.38, 0.46 * size), -anatomy["tilt"])
    tibia_marrow = _ellipse(u, v, tibia_center, (0.34, 0.42 * size), -anatomy["tilt"])
    cartilage = np.clip(
        _ellipse(u, v, femur_center, (0.54, 0.45 * size), anatomy["tilt"])
        + _ellipse(u, v, tibia_center, (0.42, 0.49 * size), -anatomy["tilt"])
        - femur
        - tibia,
        0.0,
        1.0,
    ) * (np.abs(u - 0.03 - anatomy["gap"]) < 0.25)
    fluid = _ellipse(u, v, (0.03 + anatomy["gap"], shift + 0.25), (0.05, 0.18 * size))
    patella = _ellipse(u, v, (-0.25, shift - 0.62 * size), (0.22, 0.08), 0.3)

    fine = _smooth_noise(rng, u.shape, 1.2)
    coarse = _smooth_noise(rng, u.shape, 6.0)
    trabecular = _smooth_noise(rng, u.shape, 2.0)
    intensity = anatomy["intensity"]
    image = leg * intensity["fat"] * (1.0 + 0.06 * coarse)
    image += muscle * (intensity["muscle"] - intensity["fat"]) * (1.0 + 0.08 * fine + 0.12 * coarse)
    for bone, marrow in ((femur, femur_marrow), (tibia, tibia_marrow)):
        image = image * (1.0 - bone) + bone * intensity["cortex"]
        image += marrow * (intensity["marrow"] - intensity["cortex"]) * (1.0 + 0.25 * trabecular)
    image = image * (1.0 - patella) + patella * intensity["marrow"] * (1.0 + 0.2 * trabecular)
    image = image * (1.0 - cartilage) + cartilage * intensity["cartilage"] * (1.0 + 0.1 * fine)
    image = image * (1.0 - fluid) + fluid * intensity["fluid"]
    image = np.clip(image, 0.0, None)

    phase = anatomy["phase"]
    smooth_phase = phase[0] * u + phase[1] * v + phase[2] * u * v + phase[3] * (u**2 - v**2)
    return image * np.exp(1j * (smooth_phase + 0.3 * position))


def random_anatomy(rng):
    """Per-volume shape and contrast parameters."""
    fat_suppressed = rng.uniform() < 0.5
    return {
        "shift": rng.uniform(-0.08, 0.08),
        "leg_width": rng.uniform(0.78, 0.9),
        "fat": rng.uniform(0.06, 0.12),
        "gap": rng.uniform(-0.05, 0.05),
        "tilt": rng.uniform(-0.12, 0.12),
        "phase": rng.uniform(-1.5, 1.5, size=4),
        "fat_suppressed": fat_suppressed,
        "intensity": {
            "fat": 0.25 if fat_suppressed else 0.95,
            "muscle": rng.uniform(0.35, 0.45),
            "cortex": 0.04,
            "marrow": 0.3 if fat_suppressed else rng.uniform(0.75, 0.85),
            "cartilage": rng.uniform(0.6, 0.7),
            "fluid": 0.9 if fat_suppressed else 0.55,
        },
    }


def coil_sensitivities(rng, coils, width):
    """Smooth complex coil maps, complex128 [coils, READOUT, width], RSS close to 1 at the centre."""
    u, v = grid(READOUT, width)
    maps = []
    for coil in range(coils):
        angle = 2 * np.pi * coil / coils + rng.uniform(-0.2, 0.2)
        center_u, center_v = 1.3 * np.sin(angle), 1.3 * np.cos(angle)
        distance_squared = (u - center_u) ** 2 + (v - center_v) ** 2
        magnitude = np.exp(-distance_squared / (2 * 0.9**2))
        phase = rng.uniform(-np.pi, np.pi) + 0.5 * (u * np.cos(angle) + v * np.sin(angle))
        maps.append(magnitude * np.exp(1j * phase))
    maps = np.stack(maps)
    center_rss = np.sqrt((np.abs(maps[:, READOUT // 2, width // 2]) ** 2).sum())
    return maps / center_rss


# ---------------------------------------------------------------------------- k-space


# NumPy versions of the centred orthonormal transforms, for the file writers (here and
# tfmri.data.anatomy), which run without TensorFlow.


def fft2c(image):
    """Centred orthonormal 2D FFT, NumPy: complex [..., H, W] image -> k-space."""
    axes = (-2, -1)
    return np.fft.fftshift(
        np.fft.fft2(np.fft.ifftshift(image, axes=axes), axes=axes, norm="ortho"), axes=axes
    )


def ifft2c(kspace):
    """Centred orthonormal 2D inverse FFT, NumPy: complex [..., H, W] k-space -> image."""
    axes = (-2, -1)
    return np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(kspace, axes=axes), axes=axes, norm="ortho"), axes=axes
    )


def center_crop(x, size):
    """The centre ``size`` x ``size`` of [..., H, W], fastMRI's rounding."""
    return fastmri_files.center_crop(x, size, size)


def target_of(kspace):
    """float64 [RECON, RECON]: the target of one fully sampled slice as fastMRI stores it:
    the cropped magnitude of ``kspace`` [H, W] (``reconstruction_esc``), or the root sum of
    squares of the cropped coil images of [coils, H, W] (``reconstruction_rss``)."""
    cropped = np.abs(center_crop(ifft2c(kspace), RECON))
    return np.sqrt((cropped**2).sum(axis=0)) if kspace.ndim == 3 else cropped


def make_volume(seed, num_slices, coils, width, source="knee", split="train"):
    """k-space and target of one volume.

    ``source``: ``knee`` (the phantom of :func:`knee_slice`) or ``natural`` (a
    photograph made into an MR-like object, :mod:`tfmri.data.natural`, from the
    photographs of ``split``).

    Returns:
      (complex64 kspace [slices, H, W] or [slices, coils, H, W], float32 target
      [slices, 320, 320], Header, the volume's random parameters).
    """
    rng = np.random.default_rng(seed)
    if source == "natural":
        from tfmri.data import natural

        anatomy = natural.random_params(rng, split)
        make_slice = natural.natural_slice
        relative_noise = float(np.exp(rng.uniform(np.log(0.002), np.log(0.015))))
    elif source == "knee":
        anatomy = random_anatomy(rng)
        make_slice = knee_slice
        relative_noise = 0.004
    else:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    scale = rng.uniform(1.5e-4, 6e-4)  # real single-coil knee targets peak around 1e-4..1e-3
    acquired = width - 2 * int(rng.integers(14, 20))  # zero-padded edge columns, as in real data
    padding_left = (width - acquired) // 2
    header = fastmri_files.Header(
        (READOUT, width), (RECON, RECON), padding_left, padding_left + acquired
    )
    maps = coil_sensitivities(rng, coils, width) if coils > 1 else None
    noise_level = relative_noise * scale
    kspace_slices, target_slices = [], []
    for index in range(num_slices):
        position = 2.0 * (index + 0.5) / num_slices - 1.0
        image = scale * make_slice(rng, width, position, anatomy)
        coil_images = image[None] * maps if maps is not None else image
        kspace = fft2c(coil_images)
        kspace += noise_level * (
            rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)
        )
        kspace[..., :padding_left] = 0
        kspace[..., padding_left + acquired :] = 0
        target = target_of(kspace)
        kspace_slices.append(kspace.astype(np.complex64))
        target_slices.append(target.astype(np.float32))
    return np.stack(kspace_slices), np.stack(target_slices), header, anatomy


def ismrmrd_header(header, coils, acquisition):
    """A minimal valid ISMRMRD XML header (bytes) with fastMRI's fields."""
    encoded_x, encoded_y = header.encoded_size
    recon_x, recon_y = header.recon_size
    acquired = header.padding_right - header.padding_left
    center = encoded_y // 2 - header.padding_left
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.ismrm.org/ISMRMRD ismrmrd.xsd">
  <measurementInformation>
    <patientPosition>HFS</patientPosition>
    <protocolName>{acquisition}</protocolName>
  </measurementInformation>
  <acquisitionSystemInformation>
    <systemVendor>tfmri-synthetic</systemVendor>
    <systemFieldStrength_T>2.89362</systemFieldStrength_T>
    <receiverChannels>{coils}</receiverChannels>
  </acquisitionSystemInformation>
  <experimentalConditions>
    <H1resonanceFrequency_Hz>123251815</H1resonanceFrequency_Hz>
  </experimentalConditions>
  <encoding>
    <encodedSpace>
      <matrixSize><x>{encoded_x}</x><y>{encoded_y}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280</x><y>{280 * encoded_y / encoded_x:.2f}</y><z>4.5</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>{recon_x}</x><y>{recon_y}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>140</x><y>140</y><z>3</z></fieldOfView_mm>
    </reconSpace>
    <trajectory>cartesian</trajectory>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{acquired - 1}</maximum><center>{center}</center></kspace_encoding_step_1>
      <kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center></kspace_encoding_step_2>
      <slice><minimum>0</minimum><maximum>0</maximum><center>0</center></slice>
      <average><minimum>0</minimum><maximum>0</maximum><center>0</center></average>
      <contrast><minimum>0</minimum><maximum>0</maximum><center>0</center></contrast>
      <phase><minimum>0</minimum><maximum>0</maximum><center>0</center></phase>
      <repetition><minimum>0</minimum><maximum>0</maximum><center>0</center></repetition>
      <set><minimum>0</minimum><maximum>0</maximum><center>0</center></set>
      <segment><minimum>0</minimum><maximum>0</maximum><center>0</center></segment>
    </encodingLimits>
  </encoding>
  <sequenceParameters>
    <TR>2750</TR><TE>27</TE><TI>100</TI><flipAngle_deg>90</flipAngle_deg>
    <sequence_type>TurboSpinEcho</sequence_type><echo_spacing>6.7</echo_spacing>
  </sequenceParameters>
</ismrmrdHeader>
""".encode()


def write_volume(path, kspace, target, header, acquisition, patient_id, test_mask=None):
    """Writes one volume in the fastMRI layout, atomically.

    ``test_mask`` (float32 [W], with attrs ``acceleration`` and ``num_low_frequency``)
    makes a test file: masked k-space and the mask, no target, as fastMRI's test sets.
    """
    multicoil = kspace.ndim == 4
    coils = kspace.shape[1] if multicoil else 1
    with fileio.atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as handle:
            handle.attrs["acquisition"] = acquisition
            handle.attrs["patient_id"] = patient_id
            handle.create_dataset(
                "ismrmrd_header", data=np.bytes_(ismrmrd_header(header, coils, acquisition))
            )
            if test_mask is not None:
                mask, acceleration, num_low = test_mask
                handle.attrs["acceleration"] = acceleration
                handle.attrs["num_low_frequency"] = num_low
                handle.create_dataset("kspace", data=kspace * mask.astype(np.complex64))
                handle.create_dataset("mask", data=mask.astype(bool))
                return
            handle.attrs["max"] = float(target.max())
            handle.attrs["norm"] = float(np.linalg.norm(target.astype(np.float64)))
            handle.create_dataset("kspace", data=kspace)
            handle.create_dataset(fastmri_files.MULTICOIL_TARGET, data=target)
            if not multicoil:
                handle.create_dataset(fastmri_files.SINGLECOIL_TARGET, data=target)


def generate(spec: SyntheticSpec, output_dir, progress=None):
    """Writes ``<output_dir>/{singlecoil,multicoil}_{train,val,test}/file*.h5``.

    Returns a dict split -> list of written paths. Files that already exist and read as
    usable volumes (:func:`fastmri_files.is_usable`) are kept (the generator is
    deterministic), so an interrupted run can simply be restarted; others are rewritten.
    """
    challenge = "multicoil" if spec.coils > 1 else "singlecoil"
    sizes = split_sizes(spec.num_volumes, spec.val_fraction, spec.test_fraction)
    rng = np.random.default_rng(spec.seed)
    file_numbers = rng.choice(np.arange(1000000, 1002000), size=spec.num_volumes, replace=False)
    volume_seeds = rng.integers(0, 2**31, size=spec.num_volumes)
    written = {}
    index = 0
    for split, count in zip(("train", "val", "test"), sizes):
        split_dir = os.path.join(output_dir, f"{challenge}_{split}")
        os.makedirs(split_dir, exist_ok=True)
        written[split] = []
        for _ in range(count):
            name = f"file{file_numbers[index]}.h5"
            path = os.path.join(split_dir, name)
            volume_rng = np.random.default_rng(volume_seeds[index])
            width = int(volume_rng.choice(WIDTHS))
            acquisition = ACQUISITIONS[int(volume_rng.integers(len(ACQUISITIONS)))]
            if not fastmri_files.is_usable(path):
                kspace, target, header, _ = make_volume(
                    int(volume_seeds[index]),
                    spec.num_slices,
                    spec.coils,
                    width,
                    spec.source,
                    split,
                )
                test_mask = None
                if split == "test":
                    mask_spec = TEST_MASKS[index % len(TEST_MASKS)]
                    mask, num_low = MaskFunction(mask_spec)(width, seed=volume_seed(name))
                    test_mask = (mask, mask_spec.accelerations[0], num_low)
                write_volume(
                    path, kspace, target, header, acquisition, f"synthetic{index:05d}", test_mask
                )
            written[split].append(path)
            index += 1
            if progress is not None:
                progress(index, spec.num_volumes)
    return written
