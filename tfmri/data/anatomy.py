"""A real-anatomy check set: an MR image shipped inside a PyPI package, as fastMRI files.

The synthetic phantom is what tfmri trains and tunes on; this set is what checks that
the results hold on real anatomy. It is never used to train or to choose a default.

The source is the MNI152 T1 template (ICBM 2009a, symmetric, 1 mm, 197 x 233 x 189
voxels) that nilearn ships inside its package: an average of real T1-weighted brain
scans, read from the installed package without any download. Volumes are stacks of
neighbouring slices in the three planes (axial, coronal, sagittal), each written as
the synthetic generator writes its files: the brain trimmed to its bounding box and
resized (cubic) to span ``EXTENT`` of the 320-pixel recon crop, as a head fills a
real scan's field of view, in the centre of the 640 x W oversampled grid, a smooth
phase, the centred
orthonormal FFT, complex Gaussian noise added in k-space, zero-padded edge columns,
scaled to fastMRI's tiny single-coil intensities, and ``reconstruction_esc`` the
cropped magnitude of the fully sampled data.

Next to the check volumes (``singlecoil_val``) it writes a few volumes of other
slices (``singlecoil_tune``, disjoint from them): the "user's own data" on which
``--cs_lambda=auto`` chooses CS-TV's weight before the check set is scored, as a user
would choose it on scans of their own. Neither split is ever trained on.

With ``coils`` > 1 the set is multi-coil (``multicoil_val``, ``multicoil_tune``): each
slice is seen through the receive fields of a ring of coil wires around the head
(:func:`birdcage_maps`: Biot-Savart's field of straight wires, so each coil is bright
near its wire and its phase turns around it), with noise correlated across neighbouring
coils (:func:`noise_covariance`), as a real array's is; the target is the root sum of
squares of the cropped coil images, as fastMRI's ``reconstruction_rss``.
"""

import dataclasses
import importlib.resources
import os

import numpy as np

from tfmri.data import fastmri_files, synthetic

TEMPLATE_PACKAGE = "nilearn.datasets.data"
TEMPLATE_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
PLANES = ("axial", "coronal", "sagittal")
EXTENT = 280  # pixels of the 320 crop spanned by the brain's longer side
SPLIT = "singlecoil_val"
TUNE_SPLIT = "singlecoil_tune"
CLEAN = "_clean"  # file name suffix of a clean-background twin


@dataclasses.dataclass(frozen=True)
class AnatomySpec:
    volumes_per_plane: int = 2
    num_slices: int = 6
    slice_spacing: int = 3  # voxels (mm) between neighbouring slices of a volume
    noise: float = 0.01  # k-space noise std over the image maximum (the pixel SNR)
    seed: int = 0
    tune_volumes_per_plane: int = 1  # volumes of TUNE_SPLIT, from other slices
    # Check volumes per plane with a clean background: the twins of the first check
    # volumes (same slices, mask, noise), the noise kept inside the head alone. Off by
    # default until the main job's figures are measured with them.
    clean_volumes_per_plane: int = 0
    coils: int = 1  # > 1: a multi-coil set, in multicoil_val and multicoil_tune

    @property
    def splits(self) -> tuple[str, str]:
        """(check split, tuning split) of the set."""
        if self.coils > 1:
            return SPLIT.replace("singlecoil", "multicoil"), TUNE_SPLIT.replace(
                "singlecoil", "multicoil"
            )
        return SPLIT, TUNE_SPLIT


def load_template() -> np.ndarray:
    """float32 [197, 233, 189]: the MNI152 T1 template, from nilearn's package data.

    Raises ImportError naming the package to install when nilearn or nibabel is absent.
    """
    try:
        import nibabel

        path = importlib.resources.files(TEMPLATE_PACKAGE) / TEMPLATE_FILE
    except ModuleNotFoundError as error:
        raise ImportError(
            f"the real-anatomy set needs {error.name}, a dependency of tfmri: pip install -e . "
            "(nilearn ships the MNI152 template, nibabel reads it)"
        ) from None
    with importlib.resources.as_file(path) as local:
        return np.asarray(nibabel.load(local).dataobj, dtype=np.float32)


def plane_slices(template, plane, indices):
    """float32 [len(indices), h, w] slices of the template in one plane, head up, trimmed
    to the brain's bounding box in that plane and resized so its longer side is
    ``EXTENT`` pixels (h, w <= EXTENT)."""
    from scipy import ndimage

    axis = 2 - PLANES.index(plane)  # axial slices are along z, coronal y, sagittal x
    stack = np.rot90(np.moveaxis(template, axis, 0), k=1, axes=(1, 2))
    inside = (stack > 0.02 * stack.max()).any(axis=0)
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    box = stack[list(indices), rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    zoom = EXTENT / max(box.shape[1:])
    resized = ndimage.zoom(box.astype(np.float64), (1, zoom, zoom), order=3)
    return np.clip(resized[:, :EXTENT, :EXTENT], 0.0, None).astype(np.float32)


def _smooth_phase(rng, height, width):
    """float64 [height, width]: a smooth phase map (constant, ramps and a bowl)."""
    u, v = synthetic.grid(height, width)
    a, b, c, d = rng.uniform(-1.2, 1.2, size=4)
    return a + b * u + c * v + d * (u**2 + v**2)


def birdcage_maps(coils, height, width, radius, angles=None, phases=None):
    """complex128 [coils, height, width]: the receive fields of ``coils`` straight wires
    parallel to the bore, on a circle of ``radius`` (in :func:`synthetic.grid`'s units,
    where the recon crop spans [-1, 1]) around the grid's centre.

    By Biot-Savart, a wire at ``w`` (as the complex number column + i row) has at ``z``
    the field ``1 / (z - w)`` up to a constant: a magnitude falling as one over the
    distance and a phase that turns once around the wire. Each coil also has a constant
    phase of its own (``phases``, default 0); ``angles`` are the wires' positions
    (default evenly spaced). The maps are scaled so that their RSS is 1 at the centre.
    """
    rows, cols = synthetic.grid(height, width)
    z = cols + 1j * rows
    if angles is None:
        angles = 2 * np.pi * np.arange(coils) / coils
    if phases is None:
        phases = np.zeros(coils)
    wires = radius * np.exp(1j * np.asarray(angles, np.float64))
    maps = np.exp(1j * np.asarray(phases))[:, None, None] / (z[None] - wires[:, None, None])
    centre = np.sqrt((np.abs(maps[:, height // 2, width // 2]) ** 2).sum())
    return maps / centre


def random_birdcage_maps(rng, coils, height, width):
    """:func:`birdcage_maps` of one scan: the ring's radius 1.0-1.25 (the head spans
    0.875), each wire moved up to 0.15 rad along it, each coil's phase at random."""
    radius = rng.uniform(1.0, 1.25)
    angles = 2 * np.pi * np.arange(coils) / coils + rng.uniform(-0.15, 0.15, coils)
    return birdcage_maps(coils, height, width, radius, angles, rng.uniform(-np.pi, np.pi, coils))


def noise_covariance(rng, coils):
    """float64 [coils, coils]: the noise covariance of a ring of coils, unit mean variance.

    Neighbours on the ring share noise: the correlation falls as ``rho ** d`` with ``d``
    the number of steps between two coils around the ring, ``rho`` 0.1-0.3 (so the
    matrix is diagonally dominant, hence positive definite); each coil's noise level
    differs by up to 20 %."""
    rho = rng.uniform(0.1, 0.3)
    steps = np.abs(np.arange(coils)[:, None] - np.arange(coils)[None])
    correlation = rho ** np.minimum(steps, coils - steps)
    levels = rng.uniform(0.8, 1.2, coils)
    return correlation * levels[:, None] * levels[None]


def correlated_noise(rng, covariance, shape):
    """complex128 [coils, *shape]: circular complex Gaussian noise, each sample's coil
    vector of covariance ``covariance``."""
    white = rng.standard_normal((2, len(covariance), *shape))
    white = (white[0] + 1j * white[1]) / np.sqrt(2.0)
    return np.tensordot(np.linalg.cholesky(covariance), white, axes=1)


def head_support(image, dilation=4):
    """bool [h, w]: the head of an image slice, its pixels above 2 % of the maximum, holes
    filled and grown by ``dilation`` pixels (the margin a scanner's mask keeps)."""
    from scipy import ndimage

    inside = ndimage.binary_fill_holes(image > 0.02 * max(float(image.max()), 1e-30))
    return ndimage.binary_dilation(inside, iterations=dilation)


def make_volume(slices, rng, noise, width, coils=1, clean=False):
    """k-space and target of one volume of image slices [n, h, w] (h, w <= 320).

    With ``clean``, each slice's noisy coil images are set to zero outside the head
    (:func:`head_support`), as scanners and vendors' reconstructions mask the background
    of many real images, before the edge columns are zeroed; the noise inside is the
    same as without.

    Returns:
      (complex64 kspace [n, 640, width] or, multi-coil, [n, coils, 640, width], float32
      target [n, 320, 320] (RSS of the coil images multi-coil), Header).
    """
    acquired = width - 2 * int(rng.integers(14, 20))
    padding_left = (width - acquired) // 2
    header = fastmri_files.Header(
        (synthetic.READOUT, width),
        (synthetic.RECON, synthetic.RECON),
        padding_left,
        padding_left + acquired,
    )
    scale = rng.uniform(1.5e-4, 6e-4) / max(float(slices.max()), 1e-12)
    phase = np.exp(1j * _smooth_phase(rng, synthetic.READOUT, width))
    maps, covariance = None, None
    if coils > 1:
        maps = random_birdcage_maps(rng, coils, synthetic.READOUT, width)
        covariance = noise_covariance(rng, coils)
    kspace_slices, target_slices = [], []
    height, image_width = slices.shape[1:]
    top = (synthetic.READOUT - height) // 2
    left = (width - image_width) // 2
    for image_slice in slices:
        field = np.zeros((synthetic.READOUT, width))
        field[top : top + height, left : left + image_width] = scale * image_slice
        image = field * phase
        kspace = synthetic.fft2c(image if maps is None else maps * image[None])
        sigma = noise * scale * float(slices.max())
        if covariance is None:
            kspace += sigma * (
                rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)
            )
        else:  # the same variance per coil on average as single-coil, correlated
            kspace += sigma * np.sqrt(2.0) * correlated_noise(rng, covariance, kspace.shape[1:])
        if clean:
            support = np.zeros((synthetic.READOUT, width), bool)
            support[top : top + height, left : left + image_width] = head_support(image_slice)
            kspace = synthetic.fft2c(synthetic.ifft2c(kspace) * support)
        kspace[..., :padding_left] = 0
        kspace[..., padding_left + acquired :] = 0
        target = synthetic.target_of(kspace)
        kspace_slices.append(kspace.astype(np.complex64))
        target_slices.append(target.astype(np.float32))
    return np.stack(kspace_slices), np.stack(target_slices), header


def volume_plan(template_shape, spec: AnatomySpec):
    """[(split, file name, plane, slice indices)] of the set: check volumes spread around
    each plane's middle, within the central 40 % of the head, each of the first
    ``clean_volumes_per_plane`` followed by its clean twin (its name ending in CLEAN);
    tuning volumes just outside that range (alternately below and above), so they share
    no slice with the checks."""
    plan = []
    check_split, tune_split = spec.splits
    for plane in PLANES:
        depth = template_shape[2 - PLANES.index(plane)]
        extent = spec.num_slices * spec.slice_spacing
        low, high = int(depth * 0.3), int(depth * 0.7)
        starts = np.linspace(low, high - extent, spec.volumes_per_plane).astype(int)
        for number, start in enumerate(starts):
            indices = range(start, start + extent, spec.slice_spacing)
            plan.append((check_split, f"mni152_t1_{plane}_{number}.h5", plane, list(indices)))
            if number < spec.clean_volumes_per_plane:
                name = f"mni152_t1_{plane}_{number}{CLEAN}.h5"
                plan.append((check_split, name, plane, list(indices)))
        for number in range(spec.tune_volumes_per_plane):
            below, step = number % 2 == 0, number // 2 + 1
            gap = step * (extent + spec.slice_spacing)
            start = low - gap if below else high + gap - extent
            indices = range(start, start + extent, spec.slice_spacing)
            name = f"mni152_t1_{plane}_tune{number}.h5"
            plan.append((tune_split, name, plane, list(indices)))
    return plan


def generate(spec: AnatomySpec, output_dir, progress=None):
    """Writes ``<output_dir>/singlecoil_val/mni152_t1_<plane>_<n>.h5`` and
    ``<output_dir>/singlecoil_tune/mni152_t1_<plane>_tune<n>.h5``; returns the paths
    (check volumes first).

    Files that already exist and read as usable volumes are kept (the set is
    deterministic for ``spec``); others are rewritten.
    """
    template = load_template()
    plan = volume_plan(template.shape, spec)
    for split in {entry[0] for entry in plan}:
        os.makedirs(os.path.join(output_dir, split), exist_ok=True)
    # One seed per check volume first, so adding tuning volumes leaves the checks as they
    # were; a clean twin takes its noisy volume's seed (the same width, phase and noise).
    rng = np.random.default_rng(spec.seed)
    plan = sorted(plan, key=lambda entry: entry[0] != spec.splits[0])
    noisy = [entry for entry in plan if CLEAN not in entry[1]]
    seed_of = dict(zip((entry[1] for entry in noisy), rng.integers(0, 2**31, size=len(noisy))))
    written = []
    for done, (split, name, plane, indices) in enumerate(plan, start=1):
        path = os.path.join(output_dir, split, name)
        if not fastmri_files.is_usable(path):
            volume_rng = np.random.default_rng(seed_of[name.replace(CLEAN, "")])
            width = int(volume_rng.choice(synthetic.WIDTHS))
            kspace, target, header = make_volume(
                plane_slices(template, plane, indices),
                volume_rng,
                spec.noise,
                width,
                spec.coils,
                clean=CLEAN in name,
            )
            synthetic.write_volume(path, kspace, target, header, "AXT1", f"mni152_{plane}")
        written.append(path)
        if progress is not None:
            progress(done, len(plan))
    return written
