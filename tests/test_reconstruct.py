"""Batch reconstruction of fastMRI directories with an exported model."""

import os
import shutil

import h5py
import numpy as np
import tensorflow as tf

from tests.conftest import run_module
from tfmri.data import fastmri_files, masks
from tfmri.serving import client


def _run(exported, input_dir, output_dir, *extra):
    _, export_dir, _ = exported
    model = os.path.join(export_dir, "knee", "1")
    return run_module(
        "-m",
        "tfmri.reconstruct",
        f"--saved_model={model}",
        f"--input_dir={input_dir}",
        f"--output_dir={output_dir}",
        "--batch_size=2",
        *extra,
    )


def test_reconstructs_validation_and_test_files(exported, singlecoil_raw, tmp_path):
    _, export_dir, _ = exported
    signature = tf.saved_model.load(os.path.join(export_dir, "knee", "1")).signatures[
        "serving_default"
    ]
    spec = masks.MaskSpec("random", (0.04,), (8,))
    for split in ("singlecoil_val", "singlecoil_test"):
        output_dir = tmp_path / split
        result = _run(exported, os.path.join(singlecoil_raw, split), output_dir)
        assert result.returncode == 0, result.stderr[-3000:]
        for path in fastmri_files.list_volumes(os.path.join(singlecoil_raw, split)):
            volume = fastmri_files.read_volume(path)
            with h5py.File(output_dir / volume.name) as handle:
                image = handle["reconstruction"][()]
            assert image.shape == (volume.num_slices, 320, 320) and image.dtype == np.float32
            # The same volume through the signature directly, in one call.
            mask = volume.mask
            if mask is None:
                mask, _ = masks.MaskFunction(spec)(
                    volume.kspace.shape[-1], seed=masks.volume_seed(volume.name)
                )
            inputs = client.split_kspace(volume.kspace * mask, mask)
            expected = signature(**inputs)["reconstruction"].numpy()
            np.testing.assert_allclose(image, expected, atol=1e-5 * np.abs(expected).max())
        assert not [n for n in os.listdir(output_dir) if n.startswith(".")]


def test_bad_file_fails_or_is_skipped(exported, singlecoil_raw, tmp_path):
    input_dir = tmp_path / "input"
    shutil.copytree(os.path.join(singlecoil_raw, "singlecoil_val"), input_dir)
    good = sorted(os.listdir(input_dir))
    bad = input_dir / "file9999999.h5"
    data = open(input_dir / good[0], "rb").read()
    bad.write_bytes(data[: len(data) // 3])  # truncated
    result = _run(exported, input_dir, tmp_path / "fail")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(bad) in last and "--on_error=skip" in last
    assert not (tmp_path / "fail" / "file9999999.h5").exists()

    result = _run(exported, input_dir, tmp_path / "skip", "--on_error=skip")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"skipped {bad}" in result.stdout
    assert sorted(os.listdir(tmp_path / "skip")) == good
    # A rerun keeps what is done.
    result = _run(exported, input_dir, tmp_path / "skip", "--on_error=skip")
    assert f"0 volumes reconstructed, {len(good)} kept" in result.stdout


def test_missing_version_directory(exported, singlecoil_raw, tmp_path):
    _, export_dir, _ = exported
    result = run_module(
        "-m",
        "tfmri.reconstruct",
        f"--saved_model={os.path.join(export_dir, 'knee', '7')}",
        f"--input_dir={os.path.join(singlecoil_raw, 'singlecoil_val')}",
        f"--output_dir={tmp_path / 'out'}",
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "no SavedModel there" in last and "versions present: 1" in last
