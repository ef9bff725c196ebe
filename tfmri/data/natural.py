"""Natural-image volumes: generic image structure for the embedded default.

A network trained on one synthetic phantom learns the phantom: on real anatomy it
paints the phantom's texture over the scan and is worse than the zero-filled input.
Photographs carry the statistics that transfer (edges of every orientation and
contrast, smooth shading, textures of many scales), and studies that trained MR
reconstruction on natural images found that it carries over to MR scans. The
photographs here are the ones scikit-image bundles inside its package (no download).

Each volume takes one photograph and makes an MR-like object of it: a crop of it
(random size, place, aspect, quarter turns and flip), resized so the object spans
200-300 pixels of the 320 recon crop, inside an irregular soft-edged outline on a
black background (as a head or a knee fills part of the field of view), with a random
intensity curve and a smooth bias field. Neighbouring slices of a volume are
neighbouring crops of the photograph, with an outline that grows towards the volume's
middle. :func:`tfmri.data.synthetic.make_volume` then adds what every synthetic file
has: a smooth phase, the centred FFT on the 640 x W grid, complex Gaussian k-space
noise, zero-padded edge columns and fastMRI's tiny intensity scale.

Training and validation volumes come from different photographs, so validation
measures structure the networks did not see.
"""

import functools
import importlib.resources

import numpy as np

from tfmri.data.synthetic import READOUT, grid

IMAGE_PACKAGE = "skimage.data"
# Photographs and micrographs; left out: charts, text, binary silhouettes, tiny images
# and the right-eye view of the motorcycle pair (near duplicate of the left).
TRAIN_IMAGES = (
    "astronaut.png",
    "brick.png",
    "cell.png",
    "chelsea.png",
    "clock_motion.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "phantom.png",
    "retina.jpg",
    "rocket.jpg",
)
VAL_IMAGES = ("camera.png", "coffee.png", "moon.png")


@functools.cache
def load_image(name) -> np.ndarray:
    """float64 [h, w] in [0, 1]: a photograph bundled with scikit-image, in grey levels.

    Raises ImportError naming the package to install when scikit-image is absent.
    """
    from PIL import Image

    try:
        path = importlib.resources.files(IMAGE_PACKAGE) / name
    except ModuleNotFoundError:
        raise ImportError(
            "natural-image volumes need the photographs bundled with scikit-image: "
            "pip install scikit-image"
        ) from None
    with importlib.resources.as_file(path) as local, Image.open(local) as image:
        grey = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    return grey


def pool(split) -> tuple:
    """The photographs of a split: the training ones for ``train``, others otherwise."""
    return TRAIN_IMAGES if split == "train" else VAL_IMAGES


def random_params(rng, split):
    """Per-volume parameters of :func:`natural_slice`."""
    names = pool(split)
    name = names[int(rng.integers(len(names)))]
    height, width = load_image(name).shape
    side = rng.uniform(0.45, 0.95) * min(height, width)
    aspect = rng.uniform(0.75, 1.33)
    crop = (min(side * aspect**0.5, height - 16), min(side / aspect**0.5, width - 16))
    harmonics = np.arange(2, 7)
    return {
        "name": name,
        "crop": crop,
        "corner": (rng.uniform(0, height - crop[0]), rng.uniform(0, width - crop[1])),
        "drift": rng.uniform(-1.0, 1.0, size=2) * 0.04 * np.array(crop),
        "turns": int(rng.integers(4)),
        "flip": bool(rng.uniform() < 0.5),
        "extent": rng.uniform(200, 300),
        "offset": rng.uniform(-20, 20, size=2),
        # Outline: an ellipse whose radius varies with the angle by a few harmonics.
        "axes": (rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0)),
        "harmonics": harmonics,
        "amplitudes": rng.uniform(0.0, 0.12, size=len(harmonics)) / harmonics**0.5,
        "phases": rng.uniform(0, 2 * np.pi, size=len(harmonics)),
        "gamma": float(np.exp(rng.uniform(np.log(0.6), np.log(1.7)))),
        "invert": bool(rng.uniform() < 0.25),
        "bias": rng.uniform(-0.25, 0.25, size=3),
        "phase": rng.uniform(-1.5, 1.5, size=4),
    }


def _resize(image, shape):
    from scipy import ndimage

    zoom = (shape[0] / image.shape[0], shape[1] / image.shape[1])
    return np.clip(ndimage.zoom(image, zoom, order=3, grid_mode=True, mode="reflect"), 0, 1)


def _outline(shape, params, size):
    """Soft-edged irregular object support in [0, 1] on a grid of ``shape``."""
    rows = (np.arange(shape[0]) - (shape[0] - 1) / 2) / (shape[0] / 2)
    cols = (np.arange(shape[1]) - (shape[1] - 1) / 2) / (shape[1] / 2)
    u, v = np.meshgrid(rows, cols, indexing="ij")
    angle = np.arctan2(u, v)
    wobble = sum(
        a * np.cos(k * angle + p)
        for k, a, p in zip(params["harmonics"], params["amplitudes"], params["phases"])
    )
    radius = np.sqrt((u / params["axes"][0]) ** 2 + (v / params["axes"][1]) ** 2)
    edge = size * (1.0 + wobble)
    return 1.0 / (1.0 + np.exp((radius - edge) / 0.015))


def natural_slice(rng, width, position, params):
    """One complex image slice, complex128 [READOUT, width], magnitude in [0, 1].

    ``position`` in [-1, 1] is the slice's place in the volume (the outline is smaller
    at the edges), ``params`` the volume's :func:`random_params`.
    """
    del rng  # the slice is a function of the volume's parameters and its position
    image = load_image(params["name"])
    crop_h, crop_w = params["crop"]
    top = params["corner"][0] + params["drift"][0] * position
    left = params["corner"][1] + params["drift"][1] * position
    top = int(np.clip(top, 0, image.shape[0] - crop_h))
    left = int(np.clip(left, 0, image.shape[1] - crop_w))
    patch = image[top : top + int(crop_h), left : left + int(crop_w)]
    patch = np.rot90(patch, params["turns"])
    if params["flip"]:
        patch = patch[:, ::-1]
    scale = params["extent"] / max(patch.shape)
    shape = (max(int(patch.shape[0] * scale), 8), max(int(patch.shape[1] * scale), 8))
    patch = _resize(patch, shape)
    if params["invert"]:
        patch = 1.0 - patch
    patch = 0.05 + 0.95 * patch ** params["gamma"]
    size = np.sqrt(max(1.0 - 0.35 * position**2, 0.3))
    patch = patch * _outline(shape, params, size)

    u, v = grid(READOUT, width)
    field = np.zeros((READOUT, width))
    top = int(READOUT / 2 - shape[0] / 2 + params["offset"][0])
    left = int(width / 2 - shape[1] / 2 + params["offset"][1])
    field[top : top + shape[0], left : left + shape[1]] = patch
    a, b, c = params["bias"]
    field *= np.clip(1.0 + a * u + b * v + c * (u**2 + v**2), 0.3, None)
    field /= max(float(field.max()), 1e-12)
    p = params["phase"]
    phase = p[0] + p[1] * u + p[2] * v + p[3] * (u**2 + v**2)
    return field * np.exp(1j * (phase + 0.3 * position))
