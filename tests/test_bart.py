"""BART as a report method: its .cfl files, its rows against BART called directly, and
the one-line refusals when BART or the HDF5 files it reads are missing."""

import json
import os
import shutil

import numpy as np
import pytest

from tests.conftest import run_module
from tfmri.baselines import bart
from tfmri.data import convert, fastmri_files, masks, synthetic
from tfmri.evaluation import metrics

needs_bart = pytest.mark.skipif(bart.find() is None, reason="BART is not installed")


def _report(records, report_dir, *extra):
    return run_module(
        "-m",
        "tfmri.report",
        f"--data_dir={records}",
        "--val_split=singlecoil_val",
        "--center_fractions=0.04",
        "--accelerations=8",
        f"--report_dir={report_dir}",
        *extra,
    )


def test_cfl_files_round_trip_in_column_major_order(tmp_path):
    array = (np.arange(24) + 1j * np.arange(24)[::-1]).reshape(2, 3, 4).astype(np.complex64)
    base = str(tmp_path / "array")
    bart.write_cfl(base, array)
    with open(base + ".hdr") as handle:
        assert handle.read().splitlines()[1].split() == ["2", "3", "4"] + ["1"] * 13
    # Column-major: the first axis varies fastest on disk.
    on_disk = np.fromfile(base + ".cfl", np.complex64)
    np.testing.assert_array_equal(on_disk[:3], array[:, 0, 0].tolist() + [array[0, 1, 0]])
    np.testing.assert_array_equal(bart.read_cfl(base)[..., 0].reshape(2, 3, 4), array)


@needs_bart
def test_cfl_files_read_as_bart_reads_them(tmp_path):
    array = np.arange(6, dtype=np.complex64).reshape(2, 3) * (1 + 2j)
    bart.write_cfl(str(tmp_path / "in"), array)
    # BART's own flip along the first axis, read back.
    os.system(f"bart flip 1 {tmp_path / 'in'} {tmp_path / 'out'}")
    np.testing.assert_array_equal(bart.read_cfl(str(tmp_path / "out")).reshape(2, 3), array[::-1])


@needs_bart
@pytest.mark.slow
def test_report_rows_equal_bart_on_the_raw_files(singlecoil_raw, singlecoil_records, tmp_path):
    report_dir = str(tmp_path / "report")
    result = _report(singlecoil_records, report_dir, "--methods=zero_filled,bart")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(report_dir, "report.json")) as handle:
        (setting,) = json.load(handle)["results"]
    rows = {r["volume"]: r for r in setting["volumes"] if r["method"] == "bart"}
    zero_filled = {r["volume"]: r for r in setting["volumes"] if r["method"] == "zero_filled"}
    assert rows and rows.keys() == zero_filled.keys()
    spec = masks.MaskSpec("random", (0.04,), (8,))
    for name, row in rows.items():
        volume = fastmri_files.read_volume(os.path.join(singlecoil_raw, "singlecoil_val", name))
        mask, _ = masks.MaskFunction(spec)(volume.kspace.shape[-1], seed=masks.volume_seed(name))
        crop = volume.target.shape[-2:]
        images = np.stack([bart.reconstruct(k * mask, crop) for k in volume.kspace])
        expected = metrics.volume_metrics(volume.target, images)
        assert row["nmse"] == pytest.approx(expected["nmse"], rel=1e-4)
        assert row["ssim"] == pytest.approx(expected["ssim"], abs=1e-5)
        assert row["nmse"] < zero_filled[name]["nmse"]
    assert setting["seconds_per_slice"]["bart"] > 0
    with open(os.path.join(report_dir, "report.md")) as handle:
        text = handle.read()
    assert "BART (fastMRI's classical baseline): `bart ecalib -d0 -m1`" in text
    assert f"| bart | {setting['summary']['bart']['nmse']['mean']:.4f}" in text


def test_report_without_bart_is_one_line_naming_the_flag(singlecoil_records, tmp_path):
    report_dir = str(tmp_path / "report")
    result = _report(
        singlecoil_records, report_dir, "--methods=zero_filled,bart", "--bart=/nonexistent/bart"
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "--bart=/nonexistent/bart is not an executable" in last and "apt-get install" in last
    assert not os.path.exists(report_dir)


def test_report_without_the_hdf5_files_is_one_line(tmp_path):
    raw = str(tmp_path / "raw")
    synthetic.generate(synthetic.SyntheticSpec(num_volumes=3, num_slices=1, seed=5), raw)
    records = str(tmp_path / "records")
    convert.convert(raw, records, convert.ConvertOptions(num_shards=1, num_workers=1))
    shutil.rmtree(os.path.join(raw, "singlecoil_val"))
    report_dir = str(tmp_path / "report")
    # Any executable passes the first check; the missing folder is found before any work.
    result = _report(records, report_dir, "--methods=zero_filled,bart", "--bart=true")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert os.path.join(raw, "singlecoil_val") in last and "leave bart out" in last
    assert not os.path.exists(report_dir)


def test_report_md_says_when_bart_is_not_compared(singlecoil_records, tmp_path):
    report_dir = str(tmp_path / "report")
    result = _report(singlecoil_records, report_dir, "--methods=zero_filled", "--bart=/no/bart")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(report_dir, "report.md")) as handle:
        text = handle.read()
    assert "BART (fastMRI's classical baseline) is not compared: it is not installed" in text
