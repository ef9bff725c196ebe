"""A run stopped by a signal, a full disk or a bad flagfile or run record ends in one
line and a known exit status, with no traceback, no process left behind and nothing
that looks complete; a rerun of the same command resumes (issue 30, points 5, 6, 9).

The signal tests run the real entry points in subprocesses. The conversion is slowed
by a ``sitecustomize`` that makes each volume read take 0.1 s (the workers inherit it),
so that it is still running when the signal comes without gigabytes of input.
"""

import errno
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, run_app

from tfmri import cli, runlock
from tfmri.data import convert, synthetic
from tfmri.errors import UserError
from tfmri.run_config import RunConfig

SLOW_READS = """
import time
from tfmri.data import fastmri_files
_read_volume = fastmri_files.read_volume
def read_volume(*args, **kwargs):
    time.sleep(0.1)
    return _read_volume(*args, **kwargs)
fastmri_files.read_volume = read_volume
"""
FULL_DISK = """
import errno, os
from tfmri.data import records
def write(self, buffers):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
records.RecordWriter.write = write
"""
CONVERT_FLAGS = ("--num_shards=8", "--num_workers=2")
TINY_TRAINING = (
    "--depth=3",
    "--base_filters=4",
    "--d_base_filters=4",
    "--norm=instance",
    "--d_norm=instance",
    "--dropout=0",
    "--batch_size=2",
    "--epochs_decay=0",
)


def _env(sitecustomize_dir=None):
    """The environment of a user who set no TensorFlow log level (the applications
    quieten TensorFlow themselves, so stderr holds only their own lines), with the
    ``sitecustomize.py`` of ``sitecustomize_dir`` first on the path if given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "TFMRI_QUIET"))}
    if sitecustomize_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(sitecustomize_dir), env.get("PYTHONPATH")])
        )
    return env


def _run(*args, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env or _env(),
    )


@pytest.fixture(scope="module")
def many_volumes(tmp_path_factory):
    """41 volumes of 2 slices: one synthetic file and 40 hard links to it."""
    raw = tmp_path_factory.mktemp("many_volumes")
    spec = synthetic.SyntheticSpec(num_volumes=1, num_slices=2, val_fraction=0, test_fraction=0)
    (original,) = synthetic.generate(spec, raw)["train"]
    for index in range(40):
        os.link(original, os.path.join(os.path.dirname(original), f"file2{index:06d}.h5"))
    return str(raw)


def _children(pid):
    """The pids whose parent is ``pid`` (from /proc)."""
    found = []
    for stat_path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat_path) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat_path.split("/")[2]))
    return found


def _running(pid):
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _wait_for(condition, process, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None and not condition():
        time.sleep(0.02)
    assert process.poll() is None, "the command finished before the signal: make it slower"
    assert condition(), "the command did not get there in time"


def _assert_one_line(result_stderr, stdout, expected):
    assert "Traceback" not in result_stderr + stdout, result_stderr[-3000:]
    lines = [line for line in result_stderr.splitlines() if line.strip()]
    assert lines == [expected], result_stderr[-3000:]


def _stopped_run(args, signal_number, ready, whole_group, env):
    """Starts ``python args``, sends the signal once ``ready()``; returns (process,
    stdout, stderr, the pids of its children just before the signal)."""
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a terminal's Ctrl-C reaches all
    )
    try:
        _wait_for(ready, process)
        children = _children(process.pid)
        if whole_group:
            os.killpg(process.pid, signal_number)
        else:
            process.send_signal(signal_number)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process, stdout, stderr, children


def _shards(directory):
    """{relative path: bytes} of the shards and their records in ``directory``."""
    found = {}
    for path in glob.glob(os.path.join(directory, "*", "shard-*")):
        with open(path, "rb") as handle:
            found[os.path.relpath(path, directory)] = handle.read()
    return found


@pytest.mark.slow
@pytest.mark.parametrize(
    "signal_number, whole_group, status",
    [(signal.SIGTERM, False, 143), (signal.SIGINT, True, 130)],
    ids=["sigterm-to-the-converter", "sigint-to-the-process-group"],
)
def test_a_conversion_stopped_by_a_signal_stops_its_workers_and_resumes(
    many_volumes, tmp_path, signal_number, whole_group, status
):
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_READS)
    output_dir = str(tmp_path / "records")
    command = ["-m", "tfmri.convert", f"--input_dir={many_volumes}", f"--output_dir={output_dir}"]
    command += CONVERT_FLAGS

    def one_shard_done():  # and the workers started
        return glob.glob(os.path.join(output_dir, "*", "shard-*.json"))

    process, stdout, stderr, workers = _stopped_run(
        command, signal_number, one_shard_done, whole_group, _env(slow)
    )

    assert process.returncode == status, stderr[-3000:]
    name = signal.Signals(signal_number).name
    _assert_one_line(stderr, stdout, f"interrupted ({name}): rerun the same command to resume")
    assert len(workers) == 2, workers
    deadline = time.monotonic() + 5
    while any(map(_running, workers)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [pid for pid in workers if _running(pid)], "workers outlived the converter"
    assert not os.path.exists(os.path.join(output_dir, runlock.LOCK_NAME))
    assert not os.path.exists(os.path.join(output_dir, convert.MANIFEST))
    assert not glob.glob(os.path.join(output_dir, "*", ".*.tmp-*"))
    stopped_with = _shards(output_dir)
    assert 0 < len(stopped_with) < 16, sorted(stopped_with)  # 8 shards and 8 records

    rerun = _run(*command)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    with open(os.path.join(output_dir, convert.MANIFEST)) as handle:
        assert json.load(handle)["resumed_shards"] == len(stopped_with) // 2
    reference_dir = str(tmp_path / "reference")
    convert.convert(
        many_volumes, reference_dir, convert.ConvertOptions(num_shards=8, num_workers=2)
    )
    assert _shards(output_dir) == _shards(reference_dir)


@pytest.mark.slow
def test_training_stopped_by_sigterm_says_so_and_releases_its_directory(
    singlecoil_records, tmp_path
):
    model_dir = str(tmp_path / "run")
    command = ["-m", "tfmri.train", f"--data_dir={singlecoil_records}", f"--model_dir={model_dir}"]
    command += [*TINY_TRAINING, "--epochs=1000", "--checkpoint_every_steps=2"]

    def training():
        return glob.glob(os.path.join(model_dir, "ckpt-*.index"))

    process, stdout, stderr, _ = _stopped_run(command, signal.SIGTERM, training, False, _env())

    assert process.returncode == 143, stderr[-3000:]
    _assert_one_line(stderr, stdout, "interrupted (SIGTERM): rerun the same command to resume")
    assert not os.path.exists(os.path.join(model_dir, runlock.LOCK_NAME))


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs where this process may mount one (root), else None."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)]
    try:
        mounted = subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        mounted = False
    yield str(mount_point) if mounted else None
    if mounted:
        subprocess.run(["umount", str(mount_point)], capture_output=True, timeout=30)


def _assert_full_disk_line(result, path):
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(f"error: {path}"), lines[0]
    assert "No space left on device (ENOSPC); free space" in lines[0], lines[0]


def _assert_no_conversion(output_dir):
    """Nothing under a final name: no shard, no record, no manifest, no lock."""
    assert not glob.glob(os.path.join(output_dir, "*", "shard-*"))
    assert not glob.glob(os.path.join(output_dir, "*", ".*.tmp-*"))
    assert not os.path.exists(os.path.join(output_dir, convert.MANIFEST))
    assert not os.path.exists(os.path.join(output_dir, runlock.LOCK_NAME))


@pytest.mark.parametrize("num_workers", [1, 2])
def test_a_conversion_onto_a_full_disk_is_one_line(singlecoil_raw, tmp_path, num_workers):
    """Every shard write raises ENOSPC (a ``sitecustomize``; the workers inherit it)."""
    full = tmp_path / "full"
    full.mkdir()
    (full / "sitecustomize.py").write_text(FULL_DISK)
    output_dir = str(tmp_path / "records")
    command = ["-m", "tfmri.convert", f"--input_dir={singlecoil_raw}"]
    command += [f"--output_dir={output_dir}", f"--num_workers={num_workers}"]
    result = _run(*command, env=_env(full))
    _assert_full_disk_line(result, output_dir)
    _assert_no_conversion(output_dir)


def test_a_conversion_onto_a_real_full_disk_is_one_line(singlecoil_raw, small_disk):
    if small_disk is None:
        pytest.skip("cannot mount a tmpfs here; the in-process test covers the message")
    output_dir = os.path.join(small_disk, "records")
    result = _run(
        "-m", "tfmri.convert", f"--input_dir={singlecoil_raw}", f"--output_dir={output_dir}"
    )
    _assert_full_disk_line(result, output_dir)
    _assert_no_conversion(output_dir)


def _assert_checkpoints_complete(model_dir):
    """No unfinished save left, and every checkpoint the index lists has its files."""
    import tensorflow as tf

    assert not glob.glob(os.path.join(model_dir, "ckpt-*_temp*"))
    state = tf.train.get_checkpoint_state(model_dir)
    for path in [] if state is None else state.all_model_checkpoint_paths:
        path = os.path.join(model_dir, os.path.basename(path))
        assert os.path.exists(path + ".index"), path
        tf.train.load_checkpoint(path)  # readable to the end


@pytest.mark.slow
def test_training_onto_a_full_disk_is_one_line(singlecoil_records, tmp_path, monkeypatch):
    """In process: a save raising TensorFlow's ENOSPC error after leaving its _temp folder."""
    import tensorflow as tf

    model_dir = str(tmp_path / "run")
    os.makedirs(os.path.join(model_dir, "ckpt-1_temp"))  # what an earlier failed save left
    saves = []

    def full(self, checkpoint_number=None):
        saves.append(checkpoint_number)
        if len(saves) == 1:
            assert not os.path.exists(os.path.join(model_dir, "ckpt-1_temp"))
        unfinished = os.path.join(self.directory, f"ckpt-{checkpoint_number}_temp")
        os.makedirs(unfinished)
        raise tf.errors.ResourceExhaustedError(
            None,
            None,
            f"{{{{function_node __wrapped__SaveV2}}}} {unfinished}/part-00000-of-00001.data-"
            "00000-of-00001.tempstate1; No space left on device [Op:SaveV2]",
        )

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full)
    result = run_app(
        "tfmri.train",
        f"--data_dir={singlecoil_records}",
        f"--model_dir={model_dir}",
        *TINY_TRAINING,
        "--epochs=1",
        "--max_steps_per_epoch=1",
    )
    _assert_full_disk_line(result, os.path.join(model_dir, "ckpt-"))
    assert saves
    _assert_checkpoints_complete(model_dir)
    assert not os.path.exists(os.path.join(model_dir, runlock.LOCK_NAME))


@pytest.mark.slow
def test_training_onto_a_real_full_disk_is_one_line(singlecoil_records, small_disk):
    if small_disk is None:
        pytest.skip("cannot mount a tmpfs here; the in-process test covers the message")
    model_dir = os.path.join(small_disk, "run")
    result = _run(
        "-m",
        "tfmri.train",
        f"--data_dir={singlecoil_records}",
        f"--model_dir={model_dir}",
        *TINY_TRAINING,
        "--epochs=3",
        "--checkpoint_every_steps=2",
        timeout=240,
    )
    _assert_full_disk_line(result, model_dir)
    _assert_checkpoints_complete(model_dir)
    assert not os.path.exists(os.path.join(model_dir, runlock.LOCK_NAME))


@pytest.mark.parametrize(
    "error, line",
    [
        (OSError(errno.EROFS, os.strerror(errno.EROFS), "/ro/x"), "/ro/x: Read-only file system"),
        (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/p"), "/p: Permission denied"),
        (OSError("Unable to create file (name = '/h.h5', errno = 28, error message = '')"), "Un"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/f"), None),
        (OSError("some other failure"), None),
        (ValueError("No space left on device"), None),
    ],
    ids=["erofs", "eacces", "h5py-enospc", "enoent-is-a-bug", "no-errno", "not-oserror"],
)
def test_only_storage_errors_become_one_line(error, line):
    found = cli.storage_error_line(error)
    assert (found is None) if line is None else found.startswith(line), found


def test_a_bug_raising_oserror_keeps_its_traceback():
    @cli.user_errors_to_exit
    def main(argv):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/nowhere")

    with pytest.raises(FileNotFoundError):
        main(["app"])


def _flagfiles(tmp_path):
    binary = tmp_path / "binary.cfg"
    binary.write_bytes(bytes(range(256)) * 4)
    nul = tmp_path / "nul.cfg"
    nul.write_bytes(b"--num_shards=2\n\0\0\0\n")
    big = tmp_path / "big.cfg"
    big.write_text("# padding\n" * 120_000)
    nested = tmp_path / "nested.cfg"
    nested.write_text(f"--num_shards=2\n--flagfile={binary}\n")
    return {
        "dev-zero": ("--flagfile=/dev/zero", "/dev/zero: not a regular file"),
        "binary": (f"--flagfile={binary}", f"{binary}: not UTF-8 text"),
        "nul-bytes": (f"--flagfile={nul}", f"{nul}: not text"),
        "over-1-mib": (f"--flagfile={big}", f"{big}: over 1048576 bytes"),
        "nested": (f"--flagfile={nested}", f"{binary} (named in {nested}): not UTF-8"),
        "missing": (f"--flagfile={tmp_path}/none.cfg", f"{tmp_path}/none.cfg: No such file"),
        "directory": (f"--flagfile={tmp_path}", f"{tmp_path}: not a regular file"),
    }


@pytest.mark.parametrize(
    "case", ["dev-zero", "binary", "nul-bytes", "over-1-mib", "nested", "missing", "directory"]
)
def test_a_flagfile_that_is_not_text_is_one_line(singlecoil_raw, tmp_path, case):
    flagfile, expected = _flagfiles(tmp_path)[case]
    output_dir = tmp_path / "out"
    result = _run(
        "-m",
        "tfmri.convert",
        flagfile,
        f"--input_dir={singlecoil_raw}",
        f"--output_dir={output_dir}",
        timeout=30,  # absl alone reads /dev/zero until memory runs out
    )
    assert result.returncode == 1, result.stderr[-3000:]
    _assert_one_line(result.stderr, result.stdout, result.stderr.strip())
    assert result.stderr.startswith(f"error: --flagfile={expected}"), result.stderr
    assert not output_dir.exists()


def test_the_flagfile_as_a_separate_argument_is_checked_too(tmp_path):
    with pytest.raises(UserError, match="/dev/zero: not a regular file"):
        cli.check_flagfiles(["--flagfile", "/dev/zero"])
    cli.check_flagfiles(["--", "--flagfile=/dev/zero"])  # absl reads no flag after --


def _damaged_model_dirs(model_dir, tmp_path):
    with open(os.path.join(model_dir, "model.json")) as handle:
        text = handle.read()
    record = json.loads(text)
    unknown = json.loads(text)
    unknown["config"]["colour"] = "blue"
    unknown_keras_key = json.loads(text)
    unknown_keras_key["extra"] = 1
    bad_value = json.loads(text)
    bad_value["config"]["discriminator"] = "octagon"
    contents = {
        "truncated": (text[: len(text) // 2], "not a model record"),
        "unknown-field": (json.dumps(unknown), "unknown model field 'colour'"),
        "unknown-keras-key": (json.dumps(unknown_keras_key), "unknown model field 'extra'"),
        "bad-value": (json.dumps(bad_value), "discriminator must be one of"),
        "not-an-object": (json.dumps([record]), 'no "config" object'),
        "binary": ("\udcff", "not a model record"),
    }
    damaged = {}
    for case, (content, message) in contents.items():
        copy = str(tmp_path / case)
        shutil.copytree(model_dir, copy)
        data = content.encode("utf-8", "surrogateescape")
        with open(os.path.join(copy, "model.json"), "wb") as handle:
            handle.write(data)
        damaged[case] = (copy, message)
    return damaged


@pytest.mark.parametrize("app", ["tfmri.evaluate", "tfmri.export"])
def test_a_damaged_model_json_is_one_line_naming_it(exported, tmp_path, app):
    model_dir, _, _ = exported
    for case, (copy, message) in _damaged_model_dirs(model_dir, tmp_path).items():
        if app == "tfmri.evaluate":
            where = [f"--output_dir={tmp_path}/eval-{case}"]
        else:
            where = [f"--export_dir={tmp_path}/export-{case}", "--model_name=knee"]
        result = run_app(app, f"--flagfile={model_dir}/flags.cfg", f"--model_dir={copy}", *where)
        assert result.returncode == 1, (case, result.stderr[-3000:])
        assert "Traceback" not in result.stderr, (case, result.stderr[-3000:])
        assert result.stderr.startswith(f"error: {copy}/model.json: {message}"), (
            case,
            result.stderr,
        )
        assert len(result.stderr.strip().splitlines()) == 1, (case, result.stderr)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"data": {"data_dir": "x"', "not a run record"),
        ('{"data": {"data_dir": "x", "colour": 1}}', "not a run record"),
    ],
    ids=["truncated", "unknown-field"],
)
def test_a_damaged_run_config_names_the_file(tmp_path, content, message):
    (tmp_path / "run_config.json").write_text(content)
    with pytest.raises(UserError, match=f"^{tmp_path}/run_config.json: {message}"):
        RunConfig.load(str(tmp_path))


@pytest.mark.slow
def test_reconstruct_stopped_by_sigint_says_so_and_a_rerun_finishes(
    exported, many_volumes, tmp_path
):
    _, export_dir, _ = exported
    input_dir = os.path.join(many_volumes, "singlecoil_train")
    output_dir = str(tmp_path / "out")
    command = ["-m", "tfmri.reconstruct", f"--saved_model={os.path.join(export_dir, 'knee', '1')}"]
    command += [f"--input_dir={input_dir}", f"--output_dir={output_dir}", "--batch_size=1"]

    def one_volume_done():
        return glob.glob(os.path.join(output_dir, "*.h5"))

    process, stdout, stderr, _ = _stopped_run(command, signal.SIGINT, one_volume_done, True, _env())

    assert process.returncode == 130, stderr[-3000:]
    _assert_one_line(stderr, stdout, "interrupted (SIGINT): rerun the same command to resume")
    assert not os.path.exists(os.path.join(output_dir, runlock.LOCK_NAME))
    assert not glob.glob(os.path.join(output_dir, ".*.tmp-*"))
    done = len(one_volume_done())
    assert 0 < done < 41
    rerun = _run(*command, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{41 - done} volumes reconstructed, {done} kept" in rerun.stdout
