"""Never lose or mix a run: locked directories, recipe checks on resume, guarded
conversions, and one line for every bad input (issue: "Never lose or mix a run").

Each numbered case of the issue is driven as a user drives it: the command in a
subprocess, or the application's function in-process with real files.
"""

import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys

import h5py
import numpy as np
import pytest

from tests import test_train
from tests.conftest import ROOT, run_module, run_tool
from tfmri import fileio, runlock
from tfmri.data import convert, fastmri_files, records, synthetic
from tfmri.errors import UserError

# test_train's tiny networks, one step of one epoch, no images.
TINY = test_train.TINY + [
    "--max_steps_per_epoch=1",
    "--epochs=1",
    "--epochs_decay=0",
    "--num_images=0",
]
LAUNCHER = os.path.join(ROOT, "tools", "launch_local_cluster.py")


def _train_args(records, model_dir, *extra):
    return ["-m", "tfmri.train", f"--data_dir={records}", f"--model_dir={model_dir}", *TINY, *extra]


def _train(records, model_dir, *extra):
    return run_module(*_train_args(records, model_dir, *extra))


def _last_line(result):
    return result.stderr.strip().splitlines()[-1]


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _write_lock(directory, pid, host=None, start_time=None):
    os.makedirs(directory, exist_ok=True)
    owner = {
        "pid": pid,
        "host": host or socket.gethostname(),
        "start_time": start_time,
        "purpose": "training",
        "since": "2026-11-26T00:00:00",
    }
    with open(os.path.join(directory, runlock.LOCK_NAME), "w") as handle:
        json.dump(owner, handle)


# 1. Two runs into one directory.


@pytest.mark.slow
def test_a_held_model_dir_refuses_a_second_training(singlecoil_records, tmp_path):
    model_dir = str(tmp_path / "run")
    # This test's own process stands for the first run: alive, on this host.
    _write_lock(model_dir, os.getpid(), start_time=runlock._start_time(os.getpid()))
    result = run_tool(*_train_args(singlecoil_records, model_dir))  # another process
    assert result.returncode == 1
    line = _last_line(result)
    assert line.startswith(f"error: --model_dir={model_dir}: in use by training")
    assert f"pid {os.getpid()} on {socket.gethostname()}" in line
    assert sorted(os.listdir(model_dir)) == [runlock.LOCK_NAME]  # nothing written


@pytest.mark.slow
def test_an_export_into_a_held_model_name_is_refused(exported):
    model_dir, export_dir, common = exported
    held = os.path.join(export_dir, "knee")
    versions = sorted(os.listdir(held))
    _write_lock(held, os.getpid(), start_time=runlock._start_time(os.getpid()))
    try:
        result = run_tool(
            "-m", "tfmri.export", *common, "--model_name=knee", f"--export_dir={export_dir}"
        )
    finally:
        os.remove(os.path.join(held, runlock.LOCK_NAME))
    assert result.returncode == 1
    assert _last_line(result).startswith(f"error: --export_dir={held}: in use by training")
    assert sorted(os.listdir(held)) == versions


def test_lock_is_released_and_a_stale_one_is_taken_over(tmp_path, capsys):
    directory = str(tmp_path / "run")
    _write_lock(directory, _dead_pid())
    with runlock.hold(directory, "training", "--model_dir") as path:
        assert "stale lock" in capsys.readouterr().out
        with open(path) as handle:
            assert json.load(handle)["pid"] == os.getpid()
        with pytest.raises(runlock.DirectoryInUse, match="in use by training"):
            with runlock.hold(directory, "training", "--model_dir"):
                pass
    assert not os.path.exists(os.path.join(directory, runlock.LOCK_NAME))


def test_a_recycled_pid_is_not_the_holder(tmp_path):
    directory = str(tmp_path / "run")
    start = runlock._start_time(os.getpid())
    _write_lock(directory, os.getpid(), start_time=start - 1 if start else 0)
    with runlock.hold(directory, "training", "--model_dir"):
        pass


def test_a_lock_from_another_host_names_the_file_to_delete(tmp_path):
    directory = str(tmp_path / "run")
    _write_lock(directory, 1, host="elsewhere.example")
    with pytest.raises(runlock.DirectoryInUse) as caught:
        with runlock.hold(directory, "training", "--model_dir"):
            pass
    assert "on elsewhere.example" in str(caught.value)
    assert os.path.join(directory, runlock.LOCK_NAME) in str(caught.value)


# 2. Resuming with another recipe.


@pytest.fixture(scope="module")
def one_epoch_run(singlecoil_records, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("resume") / "run")
    result = _train(singlecoil_records, model_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir


@pytest.mark.slow
def test_resuming_with_another_recipe_refuses_listing_old_and_new(
    one_epoch_run, singlecoil_records
):
    with open(os.path.join(one_epoch_run, "flags.cfg")) as handle:
        saved = handle.read()
    changed = ["--accelerations=4", "--center_fractions=0.08", "--mask_type=equispaced"]
    changed.append("--lambda_l1=10")
    result = _train(singlecoil_records, one_epoch_run, *changed)
    assert result.returncode == 1
    line = _last_line(result)  # the error is the last line printed
    assert line.startswith(f"error: --model_dir={one_epoch_run}: holds a run with another recipe")
    for expected in ("--accelerations 8 -> 4", "--center_fractions 0.04 -> 0.08"):
        assert expected in line
    assert "--mask_type random -> equispaced" in line and "--lambda_l1 100.0 -> 10.0" in line
    with open(os.path.join(one_epoch_run, "flags.cfg")) as handle:
        assert handle.read() == saved


@pytest.mark.slow
def test_resuming_may_change_the_epochs_and_keeps_the_history(one_epoch_run, singlecoil_records):
    result = _train(singlecoil_records, one_epoch_run, "--epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(one_epoch_run, "history.jsonl")) as handle:
        events = [json.loads(line) for line in handle]
    assert [event["event"] for event in events] == ["start", "resume"]
    assert events[1]["changed"] == {"epochs": ["1", "2"]}
    assert events[1]["global_step"] == 1 and events[1]["checkpoint"].endswith("ckpt-1")


# 3 and 4. Conversions.


def _two_inputs_one_converted(tmp_path):
    """(first input, second input, output dir, options), the first converted there."""
    first, second = tmp_path / "a", tmp_path / "b"
    synthetic.generate(synthetic.SyntheticSpec(num_volumes=2, num_slices=2, seed=1), first)
    synthetic.generate(synthetic.SyntheticSpec(num_volumes=1, num_slices=2, seed=2), second)
    output = str(tmp_path / "records")
    options = convert.ConvertOptions(num_shards=2, num_workers=1)
    convert.convert(str(first), output, options)
    return first, second, output, options


def test_a_conversion_of_another_input_is_refused_unless_overwrite(tmp_path):
    first, second, output, options = _two_inputs_one_converted(tmp_path)
    old_shards = glob.glob(os.path.join(output, "*", "shard-*"))
    with pytest.raises(convert.ConversionError, match=f"holds the conversion of {first}"):
        convert.convert(str(second), output, options)
    assert all(os.path.exists(path) for path in old_shards)
    manifest = convert.convert(str(second), output, options, overwrite=True)
    assert manifest["input_dir"] == str(second)
    shards = glob.glob(os.path.join(output, "**", "shard-*.tfrecord"), recursive=True)
    listed = [s for split in manifest["splits"].values() for s in split["shards"]]
    assert sorted(os.path.relpath(path, output) for path in shards) == sorted(listed)


def test_the_same_input_resumes_and_a_tool_run_names_the_other_input(tmp_path):
    first, second, output, options = _two_inputs_one_converted(tmp_path)
    assert convert.convert(str(first), output, options)["resumed_shards"] == 2
    result = run_tool("-m", "tfmri.convert", f"--input_dir={second}", f"--output_dir={output}")
    assert result.returncode == 1
    assert _last_line(result).startswith(f"error: --output_dir={output}: holds the conversion of")
    assert "--overwrite" in _last_line(result)


def test_a_symlinked_directory_is_not_converted_twice(tmp_path):
    raw = tmp_path / "raw"
    synthetic.generate(synthetic.SyntheticSpec(num_volumes=2, num_slices=2, seed=1), raw)
    split = next(entry for entry in os.listdir(raw) if (raw / entry).is_dir())
    os.symlink(".", raw / "self")
    os.symlink(split, raw / "alias")
    splits = convert.discover_splits(str(raw))
    assert list(splits) == [split]
    manifest = convert.convert(str(raw), str(tmp_path / "out"), convert.ConvertOptions(1, 1))
    assert list(manifest["splits"]) == [split]
    assert manifest["splits"][split]["statistics"]["num_volumes"] == 2


# 5. A damaged record in the middle of a shard.


def _damage(records_dir):
    """Flips 64 bytes inside the middle record of a training shard (same size);
    returns (shard path, the record's byte offset)."""
    shard = sorted(glob.glob(os.path.join(records_dir, "singlecoil_train", "*.tfrecord")))[0]
    offsets, offset = [], 0
    with open(shard, "rb") as handle:
        data = bytearray(handle.read())
    while offset < len(data):  # walk the TFRecord framing: 8 + 4 + length + 4 bytes
        offsets.append(offset)
        offset += 16 + int.from_bytes(data[offset : offset + 8], "little")
    middle = offsets[len(offsets) // 2]
    data[middle + 100 : middle + 164] = bytes(b ^ 0xFF for b in data[middle + 100 : middle + 164])
    with open(shard, "wb") as handle:
        handle.write(data)
    return shard, middle


def test_a_damaged_record_names_its_shard_and_offset(singlecoil_records, tmp_path):
    damaged = str(tmp_path / "records")
    shutil.copytree(singlecoil_records, damaged)
    shard, offset = _damage(damaged)
    assert records.find_corruption(shard) == (offset, "record data checksum mismatch")
    result = _train(damaged, str(tmp_path / "run"), "--max_steps_per_epoch=0")
    assert result.returncode == 1
    line = _last_line(result)
    assert line == (
        f"error: {shard}: damaged record at byte {offset} (record data checksum mismatch); "
        "delete the shard and rerun the conversion (it rewrites only missing shards)"
    )
    assert "Traceback" not in result.stderr


# 6. A volume narrower than the model's crop.


def _narrow_copy(path, target_path, width):
    """A copy of a fastMRI file with only the centre ``width`` k-space columns."""
    with h5py.File(path, "r") as source, h5py.File(target_path, "w") as handle:
        kspace = source["kspace"][()]
        left = (kspace.shape[-1] - width) // 2
        handle.create_dataset("kspace", data=kspace[..., left : left + width])
        for key in ("ismrmrd_header", "reconstruction_esc"):
            handle.create_dataset(key, data=source[key][()])
        handle.attrs.update(dict(source.attrs))


def test_reconstruct_names_a_file_narrower_than_the_crop(exported, singlecoil_raw, tmp_path):
    _, export_dir, _ = exported
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    path = str(narrow / "file_narrow.h5")
    _narrow_copy(
        sorted(glob.glob(os.path.join(singlecoil_raw, "singlecoil_val", "*.h5")))[0], path, 300
    )
    model = os.path.join(export_dir, "knee", "1")
    base = ["-m", "tfmri.reconstruct", f"--saved_model={model}", f"--input_dir={narrow}"]
    result = run_module(*base, f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 1
    assert _last_line(result).startswith(f"error: {path}: k-space 640 x 300 is smaller")
    skipped = run_module(*base, f"--output_dir={tmp_path / 'out2'}", "--on_error=skip")
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    assert f"skipped {path}: k-space 640 x 300 is smaller" in skipped.stdout


# 7. A declared shape far larger than the file.


def _huge_declared(path, like):
    with h5py.File(like, "r") as source, h5py.File(path, "w") as handle:
        handle.create_dataset("kspace", shape=(4096, 640, 368000), dtype=np.complex64)
        handle.create_dataset("ismrmrd_header", data=source["ismrmrd_header"][()])
        handle.create_dataset("reconstruction_esc", data=source["reconstruction_esc"][()])


def test_a_huge_declared_shape_is_refused_before_reading(singlecoil_raw, tmp_path):
    like = sorted(glob.glob(os.path.join(singlecoil_raw, "singlecoil_train", "*.h5")))[0]
    raw = tmp_path / "raw"
    split = raw / "singlecoil_train"
    shutil.copytree(os.path.dirname(like), split)
    bad = str(split / "zz_huge.h5")
    _huge_declared(bad, like)
    with pytest.raises(fastmri_files.FastMRIFileError, match="declares shape"):
        fastmri_files.read_volume(bad)
    output = str(tmp_path / "records")
    result = run_tool("-m", "tfmri.convert", f"--input_dir={raw}", f"--output_dir={output}")
    assert result.returncode == 1
    assert _last_line(result).startswith(f"error: {bad}: dataset 'kspace' declares shape")
    result = run_tool(
        "-m",
        "tfmri.convert",
        f"--input_dir={raw}",
        f"--output_dir={output}",
        "--on_error=skip",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"skipped {bad}" in result.stdout


# 8 and 10. Crops that do not fit, checked before anything is written.


def _narrowest(raw, split):
    """(the smallest k-space width of the split, the names of its volumes that width)."""
    widths = {}
    for path in glob.glob(os.path.join(raw, split, "*.h5")):
        with h5py.File(path, "r") as handle:
            widths[os.path.basename(path)] = handle["kspace"].shape[-1]
    width = min(widths.values())
    return width, {name for name, value in widths.items() if value == width}


@pytest.mark.parametrize("crop", ["400", "10000"])
def test_a_crop_wider_than_the_data_stops_before_any_work(
    singlecoil_records, singlecoil_raw, tmp_path, crop
):
    model_dir = str(tmp_path / "run")
    result = _train(singlecoil_records, model_dir, f"--crop_size={crop}")
    assert result.returncode == 1
    width, names = _narrowest(singlecoil_raw, "singlecoil_train")
    line = _last_line(result)
    named = re.search(r"columns wide \((\S+)\); use", line)
    assert named and named.group(1) in names, line  # the file that limits the crop
    assert line == (
        f"error: --crop_size={crop}: split 'singlecoil_train' of {singlecoil_records} has "
        f"k-space {width} columns wide ({named.group(1)}); use --crop_size={width} or less"
    )
    assert not os.path.exists(model_dir)


def test_a_crop_the_unet_cannot_halve_names_crop_and_depth(singlecoil_records, tmp_path):
    model_dir = str(tmp_path / "run")
    result = _train(singlecoil_records, model_dir, "--crop_size=100")
    assert result.returncode == 1
    assert _last_line(result) == (
        "error: --crop_size=100 with --depth=3: the U-Net halves the crop 3 times, so it "
        "must be a multiple of 8; use --crop_size=96 or --depth=2 or less"
    )
    # 328 (a multiple of 8): taller than the 320 recon rows the (hybrid) records hold.
    result = _train(singlecoil_records, model_dir, "--crop_size=328")
    assert result.returncode == 1
    line = _last_line(result)
    assert "has recon heights (layout hybrid stores only those rows) of 320 (file" in line
    assert "); use --crop_size=320 or less" in line
    assert not os.path.exists(model_dir)


# 9. A file where a directory belongs.


def test_a_file_in_place_of_a_directory(singlecoil_records, singlecoil_raw, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for model_dir, where in ((blocker, "it"), (blocker / "run", str(blocker))):
        result = _train(singlecoil_records, str(model_dir))
        assert result.returncode == 1
        assert _last_line(result) == (
            f"error: --model_dir={model_dir}: {where} is a file, not a directory; "
            "give a directory path"
        )
    result = run_tool(
        "-m",
        "tfmri.convert",
        f"--input_dir={singlecoil_raw}",
        f"--output_dir={blocker / 'records'}",
    )
    assert result.returncode == 1 and "is a file, not a directory" in _last_line(result)
    with pytest.raises(UserError, match="is a file"):
        fileio.make_directory(str(blocker / "a" / "b"), "--output_dir")


# 10. Messages that were unclear.


def test_serving_client_checks_slices_and_port(singlecoil_raw):
    path = sorted(glob.glob(os.path.join(singlecoil_raw, "singlecoil_val", "*.h5")))[0]
    client = ["-m", "tfmri.client", f"--input={path}", "--model_name=knee"]
    result = run_tool(*client, "--slices=1:200")
    assert result.returncode == 1
    assert _last_line(result) == (
        f"error: --slices=1:200: {path} has 3 slices; give START:STOP with 0 <= START < STOP <= 3"
    )
    result = run_tool(*client, "--port=99999")
    assert result.returncode == 1
    assert _last_line(result).startswith("error: --port=99999: TCP ports are 1 to 65535")


@pytest.mark.slow
def test_launcher_passes_on_a_workers_input_error(tmp_path):
    args = ["--strategy=multi_worker", f"--data_dir={tmp_path / 'missing'}"]
    args.append(f"--model_dir={tmp_path / 'run'}")
    result = run_tool(LAUNCHER, "--num_workers=2", "--", *args)
    assert result.returncode == 1
    line = _last_line(result)
    assert line.startswith("error: worker ") and "--data_dir=" in line
    assert "rerun the same command to resume" not in result.stderr
