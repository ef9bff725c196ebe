"""tfmri: pix2pix MRI reconstruction from undersampled k-space, in TensorFlow/Keras."""

from setuptools import find_packages, setup

setup(
    name="tfmri",
    version="0.1.0",
    description="Reconstruct MR images from undersampled fastMRI k-space with a pix2pix GAN.",
    packages=find_packages(include=["tfmri", "tfmri.*"]),
    python_requires=">=3.11",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "h5py>=3.8",
        "numpy>=1.24",
        "absl-py>=1.4",
        "tensorboard>=2.21,<2.22",
        "crc32c>=2.3",  # TFRecord checksums for the converter, which runs without TensorFlow
        "tensorflow-serving-api>=2.21,<2.22",  # the serving client's gRPC PredictRequest
        "matplotlib>=3.7",  # the report's figures
        "tqdm>=4.60",  # progress bars (terminal and notebook)
        # The main job: scikit-image bundles the photographs of the demo data
        # (tfmri/data/natural.py); nilearn the MNI152 template of the real-anatomy check
        # set, which nibabel reads and scipy resizes (tfmri/data/anatomy.py).
        "scikit-image>=0.21",
        "scipy>=1.10",
        "nilearn>=0.10",
        "nibabel>=5",
    ],
    extras_require={
        # sigpy: an independent ESPIRiT that tests/test_espirit.py checks the maps against.
        "test": ["pytest>=7", "ruff>=0.5", "sigpy>=0.1.25"],
        # The anchors the benches measure side by side (bench/README.md); BART is a
        # Debian package: apt-get install bart.
        "bench": ["fastmri==0.3.0", "torch>=2.1", "sigpy>=0.1.25"],
    },
)
