import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT, run_tool
from tfmri.data import convert, fastmri_files, schema


def _records(output_dir):
    """split -> list of serialised records, in shard order."""
    manifest = json.load(open(os.path.join(output_dir, "manifest.json")))
    result = {}
    for split, entry in manifest["splits"].items():
        compression = manifest["compression"].replace("NONE", "")
        paths = [os.path.join(output_dir, shard) for shard in entry["shards"]]
        result[split] = [r.numpy() for r in tf.data.TFRecordDataset(paths, compression)]
    return result


def _numpy_hybrid(kspace, rows):
    """Reference: inverse DFT along H as a matrix product (centred, orthonormal), then
    the centre ``rows`` rows; written independently of the converter's FFT calls."""
    height = kspace.shape[-2]
    centred = np.arange(height) - height // 2
    dft = np.exp(2j * np.pi * np.outer(centred, centred) / height) / np.sqrt(height)
    top = (height - rows) // 2
    return np.einsum("rh,...hw->...rw", dft[top : top + rows], kspace.astype(np.complex128))


@pytest.fixture(scope="module")
def kspace_records(singlecoil_raw, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("kspace_records"))
    options = convert.ConvertOptions(num_shards=2, num_workers=1, layout="kspace")
    convert.convert(singlecoil_raw, directory, options)
    return directory


@pytest.mark.parametrize("layout", ["kspace", "hybrid"])
def test_round_trip_reproduces_hdf5_kspace(
    singlecoil_raw, singlecoil_records, kspace_records, layout
):
    """kspace: the file's k-space bit for bit; hybrid (the default): the same transformed
    along the readout and cropped to the recon height, to float32 rounding."""
    directory = kspace_records if layout == "kspace" else singlecoil_records
    assert json.load(open(os.path.join(directory, "manifest.json")))["layout"] == layout
    volumes = {}
    for path in glob.glob(os.path.join(singlecoil_raw, "*", "*.h5")):
        volumes[os.path.basename(path)] = fastmri_files.read_volume(path)
    seen = 0
    for records in _records(directory).values():
        for record in records:
            parsed = schema.parse_slice(record)
            volume = volumes[parsed["volume"].numpy().decode()]
            index = int(parsed["slice_index"])
            if layout == "kspace":
                assert parsed["kspace"].numpy().tobytes() == volume.kspace[index].tobytes()
            else:
                expected = _numpy_hybrid(volume.kspace[index], volume.header.recon_size[0])
                stored = parsed["kspace"].numpy()
                assert stored.shape == expected.shape == (320, volume.kspace.shape[-1])
                scale = np.abs(expected).max()
                np.testing.assert_allclose(stored, expected, rtol=0, atol=1e-5 * scale)
            if volume.target is not None:
                assert parsed["target"].numpy().tobytes() == volume.target[index].tobytes()
                assert float(parsed["max_value"]) == pytest.approx(volume.max_value)
            else:
                np.testing.assert_array_equal(parsed["mask"].numpy(), volume.mask)
                assert int(parsed["acceleration"]) == volume.acceleration
            assert int(parsed["num_slices"]) == volume.num_slices
            seen += 1
    assert seen == sum(v.num_slices for v in volumes.values())


def test_manifest_counts_and_statistics(singlecoil_records):
    manifest = json.load(open(os.path.join(singlecoil_records, "manifest.json")))
    assert manifest["schema_version"] == schema.SCHEMA_VERSION
    assert set(manifest["splits"]) == {"singlecoil_train", "singlecoil_val", "singlecoil_test"}
    train = manifest["splits"]["singlecoil_train"]
    assert len(train["shards"]) == 2 and sum(train["shard_slices"]) == 9
    assert train["statistics"]["num_volumes"] == 3 and train["statistics"]["has_target"]
    assert not manifest["splits"]["singlecoil_test"]["statistics"]["has_target"]
    for split in manifest["splits"].values():
        for shard, size in zip(split["shards"], split["shard_bytes"]):
            assert os.path.getsize(os.path.join(singlecoil_records, shard)) == size


def test_gzip_and_parallel_workers_give_the_same_records(
    singlecoil_raw, singlecoil_records, tmp_path
):
    options = convert.ConvertOptions(num_shards=2, num_workers=2, compression="GZIP")
    convert.convert(singlecoil_raw, str(tmp_path), options)
    assert glob.glob(str(tmp_path / "*" / "*.tfrecord.gz"))
    assert _records(str(tmp_path)) == _records(singlecoil_records)


def _with_bad_file(singlecoil_raw, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(singlecoil_raw, raw)
    bad = sorted(glob.glob(str(raw / "singlecoil_train" / "*.h5")))[1]
    with open(bad, "r+b") as handle:
        handle.truncate(os.path.getsize(bad) // 3)
    return str(raw), bad


def test_on_error_fail_stops_with_the_file_name_and_leaves_no_partial_output(
    singlecoil_raw, tmp_path
):
    raw, bad = _with_bad_file(singlecoil_raw, tmp_path)
    out = tmp_path / "out"
    result = run_tool(
        "-m",
        "tfmri.convert",
        f"--input_dir={raw}",
        f"--output_dir={out}",
        "--num_shards=1",
        "--num_workers=2",
    )
    assert result.returncode != 0
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and bad in error_lines[0] and "--on_error=skip" in error_lines[0]
    assert not (out / "manifest.json").exists()
    assert not glob.glob(str(out / "**" / ".*tmp*"), recursive=True)
    assert not glob.glob(str(out / "singlecoil_train" / "*.tfrecord"))


def test_on_error_skip_lists_the_bad_file(singlecoil_raw, tmp_path):
    raw, bad = _with_bad_file(singlecoil_raw, tmp_path)
    options = convert.ConvertOptions(num_shards=2, num_workers=1, on_error="skip")
    manifest = convert.convert(raw, str(tmp_path / "out"), options)
    assert [s["file"] for s in manifest["skipped"]] == [bad]
    assert "truncated" in manifest["skipped"][0]["reason"]
    assert manifest["splits"]["singlecoil_train"]["statistics"]["num_volumes"] == 2


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--num_shards=0", "num_shards"),
        ("--compression=ZIP", "compression"),
        ("--on_error=ignore", "on_error"),
    ],
)
def test_bad_flags_stop_before_any_work(singlecoil_raw, tmp_path, flag, message):
    result = run_tool(
        "-m",
        "tfmri.convert",
        f"--input_dir={singlecoil_raw}",
        f"--output_dir={tmp_path / 'out'}",
        flag,
    )
    assert result.returncode != 0 and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_empty_input_directory(tmp_path):
    result = run_tool(
        "-m", "tfmri.convert", f"--input_dir={tmp_path}", f"--output_dir={tmp_path / 'o'}"
    )
    assert result.returncode != 0
    assert f"error: {tmp_path}: no .h5 files" in result.stderr


@pytest.mark.slow
def test_kill_and_rerun_finishes_with_the_same_records(tmp_path):
    from tfmri.data import synthetic

    raw = tmp_path / "raw"
    synthetic.generate(synthetic.SyntheticSpec(num_volumes=12, num_slices=6, seed=5), raw)
    reference = tmp_path / "reference"
    convert.convert(str(raw), str(reference), convert.ConvertOptions(num_shards=8, num_workers=1))

    killed = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "tfmri.convert",
        f"--input_dir={raw}",
        f"--output_dir={killed}",
        "--num_shards=8",
        "--num_workers=2",
    ]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    # Kill once a shard is complete and another is being written.
    while time.monotonic() < deadline:
        finished = glob.glob(str(killed / "*" / "*.tfrecord"))
        in_progress = glob.glob(str(killed / "*" / ".*.tmp-*"))
        if finished and in_progress:
            break
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "manifest.json").exists(), "the run finished before it could be killed"
    complete_before = set(glob.glob(str(killed / "*" / "*.tfrecord")))
    assert complete_before

    rerun = run_tool(*command[1:])
    assert rerun.returncode == 0, rerun.stderr
    manifest = json.load(open(killed / "manifest.json"))
    assert manifest["resumed_shards"] >= 1
    assert _records(str(killed)) == _records(str(reference))
    assert not glob.glob(str(killed / "**" / ".*tmp*"), recursive=True)
