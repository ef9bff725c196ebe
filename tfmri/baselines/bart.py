"""BART, fastMRI's classical baseline, through its command line and .cfl files.

fastMRI's recipe (``fastmri_examples/cs/run_bart.py``), per slice: sensitivity maps from
``bart ecalib -d0 -m1`` (single-coil too: the k-space as a one-coil array, so the map
carries the image's phase), then ``bart pics -d0 -S -R T:7:0:0.01 -i 200``. BART is not a
Python package (Debian: ``apt-get install bart``); :func:`find` says whether it is here.
"""

import os
import shutil
import subprocess
import tempfile

import numpy as np

from tfmri.data import fastmri_files
from tfmri.errors import UserError

ECALIB = ("ecalib", "-d0", "-m1")
PICS = ("pics", "-d0", "-S", "-R", "T:7:0:0.01", "-i", "200")
INSTALL = "install BART (Debian: apt-get install bart)"


def find(executable="bart"):
    """The path of the BART executable, or None when it is not installed."""
    return shutil.which(executable)


def write_cfl(base, array):
    """Writes ``array`` as BART's ``base.hdr`` and ``base.cfl`` (complex64, column-major)."""
    dims = list(array.shape) + [1] * (16 - array.ndim)
    with open(base + ".hdr", "w") as handle:
        handle.write("# Dimensions\n" + " ".join(map(str, dims)) + "\n")
    np.asarray(array, np.complex64).ravel(order="F").tofile(base + ".cfl")


def read_cfl(base):
    """complex64 array of BART's ``base.hdr`` and ``base.cfl``, trailing 1s kept."""
    with open(base + ".hdr") as handle:
        dims = [int(value) for value in handle.read().splitlines()[1].split()]
    return np.fromfile(base + ".cfl", np.complex64).reshape(dims, order="F")


def _run(executable, *arguments):
    try:
        subprocess.run([executable, *arguments], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        last = (error.stderr or error.stdout or "").strip().splitlines()
        raise UserError(
            f"bart {arguments[0]} failed (exit {error.returncode}): "
            f"{last[-1] if last else 'no message'}"
        ) from None


def reconstruct(masked_kspace, crop, executable="bart"):
    """BART's image of one slice, fastMRI's recipe.

    Args:
      masked_kspace: complex [H, W] (single-coil) or [C, H, W], zero where unsampled.
      crop: (height, width) of the output, the file's recon crop.

    Returns:
      float32 [height, width] magnitude, centre-cropped.
    """
    coils = masked_kspace if masked_kspace.ndim == 3 else masked_kspace[None]
    with tempfile.TemporaryDirectory(prefix="tfmri-bart-") as workdir:
        kspace, maps, image = (os.path.join(workdir, name) for name in ("kspace", "maps", "image"))
        write_cfl(kspace, np.transpose(coils, (1, 2, 0))[None])  # BART: [1, H, W, coils]
        _run(executable, *ECALIB, kspace, maps)
        _run(executable, *PICS, kspace, maps, image)
        result = np.abs(read_cfl(image)).reshape(coils.shape[-2:])
    return fastmri_files.center_crop(result, *crop).astype(np.float32)


def predictor(raw_dir, executable="bart"):
    """predict(inputs) -> BART's images [B, h, w] of a scoring-only evaluation batch.

    BART needs the k-space as scanned, which hybrid records no longer hold, so each slice
    is read from the HDF5 file it was converted from (``raw_dir``, a split folder),
    masked with the batch's fixed mask and cropped to the batch's recon crop."""
    held = {}

    def volume_of(name):
        if name not in held:
            path = os.path.join(raw_dir, name)
            if not os.path.isfile(path):
                raise UserError(
                    f"{path}: missing; BART reads the HDF5 files the records were converted "
                    "from: restore them, or leave bart out of --methods"
                )
            held.clear()  # one volume at a time: slices come in volume order
            held[name] = fastmri_files.read_volume(path)
        return held[name]

    def predict(inputs):
        crop = tuple(int(side) for side in inputs["zero_filled_image"].shape[-2:])
        images = []
        for name, index, mask in zip(
            np.asarray(inputs["volume"]),
            np.asarray(inputs["slice_index"]),
            np.asarray(inputs["mask"]),
        ):
            volume = volume_of(name.decode() if isinstance(name, bytes) else str(name))
            images.append(reconstruct(volume.kspace[int(index)] * mask, crop, executable))
        return np.stack(images)

    return predict
