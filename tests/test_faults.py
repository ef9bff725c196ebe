"""Fault injection: mutated fastMRI files (tests/fault_files.py) through the applications,
tampered outputs of an earlier run, and k-space at every scale.

What the applications promise under bad input (README, "Bad input and faults"): every
file that cannot be used ends in one line naming it, skip mode goes on past it and
converts or reconstructs every good file beside it, no traceback, and nothing
non-finite is ever written. The signals and a full disk are in tests/test_interrupts.py.
"""

import glob
import json
import os
import shutil

import h5py
import numpy as np
import pytest
import tensorflow as tf

from tests import fault_files
from tests.conftest import run_app, run_tool
from tfmri.baselines import cs_tv
from tfmri.data import convert, fastmri_files, masks, pipeline, schema, synthetic
from tfmri.evaluation import report, volumes
from tfmri.training import checkpoints

SPEC = masks.MaskSpec("random", (0.08,), (4,))
MASK_FLAGS = ("--mask_type=random", "--center_fractions=0.08", "--accelerations=4")
SCALES = (1e-30, 1e-20, 1e-10, 1e-3, 1.0, 7.3, 1e10, 1e20, 1e30)


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    """(root, cases): the mutated files under root/singlecoil_{train,test}."""
    root = str(tmp_path_factory.mktemp("faults"))
    _, _, cases = fault_files.write_cases(root)
    return root, cases


def _paths(root, cases, split=None):
    return {
        os.path.join(root, case.split, case.name): case
        for case in cases
        if split is None or case.split == split
    }


def _good(root, split):
    name = "good_train.h5" if split == "singlecoil_train" else "good_test.h5"
    return os.path.join(root, split, name)


def _no_traceback(result):
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]


@pytest.fixture(scope="module")
def converted(faults, tmp_path_factory):
    """The conversion of the whole fault set in skip mode, run as a user runs it (a
    process of its own: damage that crashed HDF5 would fail this test, not the suite).
    Returns (output dir, {path: reason} skipped, [paths converted])."""
    root, _ = faults
    output = str(tmp_path_factory.mktemp("faults_records"))
    result = run_tool(
        "-m",
        "tfmri.convert",
        f"--input_dir={root}",
        f"--output_dir={output}",
        "--on_error=skip",
        "--num_workers=2",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _no_traceback(result)
    with open(os.path.join(output, "manifest.json")) as handle:
        manifest = json.load(handle)
    skipped = {entry["file"]: entry["reason"] for entry in manifest["skipped"]}
    done = []
    for record_path in glob.glob(os.path.join(output, "*", "shard-*.json")):
        with open(record_path) as handle:
            record = json.load(handle)
        split_dir = os.path.join(root, record["split"])
        done += [os.path.join(split_dir, volume["volume"]) for volume in record["volumes"]]
    return output, skipped, done


def test_the_fault_set_covers_each_class(faults):
    _, cases = faults
    assert len(cases) >= 100
    kinds = {case.kind for case in cases}
    assert kinds == {"flip", "truncate", "header", "attribute", "dataset", "link", "special"}
    assert len({case.name for case in cases}) == len(cases)


def test_skip_mode_converts_every_good_file_and_names_every_bad_one(faults, converted):
    root, cases = faults
    _, skipped, done = converted
    paths = _paths(root, cases)
    everything = set(paths) | {_good(root, "singlecoil_train"), _good(root, "singlecoil_test")}
    assert set(skipped) | set(done) == everything and not set(skipped) & set(done)
    assert {_good(root, "singlecoil_train"), _good(root, "singlecoil_test")} <= set(done)
    for path, case in paths.items():
        if case.expected == "refuse":
            assert path in skipped, case
        elif case.expected == "accept":
            assert path in done, case
    for reason in skipped.values():
        assert reason and "\n" not in reason
    # The random damage does both: some of it misses what is read, some of it does not.
    flips = [path for path, case in paths.items() if case.kind == "flip"]
    assert any(path in skipped for path in flips) and any(path in done for path in flips)


def test_the_converted_records_are_finite(converted):
    output, _, done = converted
    count = 0
    for shard in glob.glob(os.path.join(output, "*", "shard-*.tfrecord")):
        for serialized in tf.data.TFRecordDataset(shard):
            example = schema.parse_slice(serialized)
            for key in ("kspace", "target", "mask", "max_value"):
                assert np.all(np.isfinite(example[key].numpy())), key
            count += 1
    assert count == 2 * len(done)  # two slices a volume


def test_fail_mode_stops_at_the_first_bad_file_in_one_line(faults, tmp_path):
    root, _ = faults
    output = tmp_path / "records"
    result = run_tool(
        "-m", "tfmri.convert", f"--input_dir={root}", f"--output_dir={output}", "--num_workers=1"
    )
    assert result.returncode == 1
    _no_traceback(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1]
    assert root in errors[0] and "--on_error=skip" in errors[0]
    assert not (output / "manifest.json").exists()


@pytest.mark.parametrize("split", ["singlecoil_train", "singlecoil_test"])
def test_the_pipeline_gives_finite_images_of_every_converted_file(converted, split):
    output, _, _ = converted
    options = pipeline.PipelineOptions(SPEC, batch_size=2, data_consistency=True)
    count = 0
    for element in pipeline.make_dataset(output, split, options, training=False):
        inputs = element[0] if isinstance(element, tuple) else element
        for key, value in inputs.items():
            if value.dtype.is_floating or value.dtype.is_complex:
                assert np.all(np.isfinite(value.numpy())), key
        count += int(tf.shape(inputs["zero_filled"])[0])
    assert count > 0


@pytest.mark.parametrize("split", ["singlecoil_train", "singlecoil_test"])
def test_reconstruct_takes_and_refuses_the_files_convert_does(
    exported, faults, converted, tmp_path, split
):
    root, cases = faults
    _, skipped, done = converted
    output = tmp_path / "out"
    result = _reconstruct(exported, os.path.join(root, split), output, "--on_error=skip")
    assert result.returncode == 0, result.stderr[-3000:]
    _no_traceback(result)
    in_split = set(_paths(root, cases, split)) | {_good(root, split)}
    expected = sorted(os.path.basename(path) for path in in_split & set(done))
    assert sorted(os.listdir(output)) == expected
    for path in in_split & set(skipped):
        assert f"skipped {path}: " in result.stdout
    for name in expected:
        with h5py.File(output / name) as handle:
            image = handle["reconstruction"][()]
        assert image.shape == (2, 320, 320) and np.all(np.isfinite(image))


def _reconstruct(exported, input_dir, output_dir, *flags):
    _, export_dir, _ = exported
    return run_app(
        "tfmri.reconstruct",
        f"--saved_model={os.path.join(export_dir, 'knee', '1')}",
        f"--input_dir={input_dir}",
        f"--output_dir={output_dir}",
        *MASK_FLAGS,
        *flags,
    )


def _write_reconstruction(path, image):
    os.remove(path)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("reconstruction", data=image)


TAMPERING = {
    "empty": lambda path, image: open(path, "w").close(),
    "link": lambda path, image: (os.remove(path), os.symlink(path + ".elsewhere", path)),
    "link_to_a_finished_one": lambda path, image: (
        os.replace(path, path + ".moved"),
        os.symlink(path + ".moved", path),
    ),
    "truncated": lambda path, image: os.truncate(path, os.path.getsize(path) // 2),
    "fewer_slices": lambda path, image: _write_reconstruction(path, image[:1]),
    "other_crop": lambda path, image: _write_reconstruction(path, image[:, :300, :300]),
    "nan": lambda path, image: _write_reconstruction(path, np.full_like(image, np.nan)),
    "float64": lambda path, image: _write_reconstruction(path, image.astype(np.float64)),
    "no_dataset": lambda path, image: _write_reconstruction(path, image) or _rename_dataset(path),
}


def _rename_dataset(path):
    with h5py.File(path, "a") as handle:
        handle.move("reconstruction", "image")


def test_a_rerun_redoes_every_output_that_is_not_a_finished_reconstruction(
    exported, singlecoil_raw, tmp_path
):
    input_dir = tmp_path / "input"
    source = fastmri_files.list_volumes(os.path.join(singlecoil_raw, "singlecoil_train"))[0]
    input_dir.mkdir()
    for index in range(len(TAMPERING) + 1):
        shutil.copy(source, input_dir / f"file{index:03d}.h5")
    output = tmp_path / "out"
    first = _reconstruct(exported, input_dir, output)
    assert first.returncode == 0, first.stderr[-3000:]
    names = sorted(os.listdir(output))
    finished = {}
    for name in names:
        with h5py.File(output / name) as handle:
            finished[name] = handle["reconstruction"][()]
    for name, tamper in zip(names[1:], TAMPERING.values()):
        tamper(str(output / name), finished[name])
    rerun = _reconstruct(exported, input_dir, output)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(TAMPERING)} volumes reconstructed, 1 kept" in rerun.stdout
    for name in names:
        path = output / name
        assert path.is_file() and not path.is_symlink()
        with h5py.File(path) as handle:
            np.testing.assert_array_equal(handle["reconstruction"][()], finished[name])
    again = _reconstruct(exported, input_dir, output)
    assert f"0 volumes reconstructed, {len(names)} kept" in again.stdout
    # Finished, but with another mask: not this command's output, so all redone.
    other_mask = _reconstruct(
        exported, input_dir, output, "--center_fractions=0.04", "--accelerations=8"
    )
    assert f"{len(names)} volumes reconstructed, 0 kept" in other_mask.stdout


@pytest.fixture(scope="module")
def scaled_copies(tmp_path_factory):
    """{c: (raw dir, records dir)}: one volume with its k-space, target and max times c,
    under the same name in a directory of its own (its evaluation mask is the same)."""
    root = tmp_path_factory.mktemp("scaled")
    kspace, target, header, _ = synthetic.make_volume(11, 2, 1, 368)
    copies = {}
    for index, scale in enumerate(SCALES):
        raw = str(root / f"raw{index}")
        path = os.path.join(raw, "singlecoil_val", "file1000123.h5")
        os.makedirs(os.path.dirname(path))
        scaled_kspace = (kspace.astype(np.complex128) * scale).astype(np.complex64)
        scaled_target = (target.astype(np.float64) * scale).astype(np.float32)
        synthetic.write_volume(path, scaled_kspace, scaled_target, header, "CORPD_FBK", "scaled")
        records = str(root / f"records{index}")
        convert.convert(raw, records, convert.ConvertOptions(num_shards=1, num_workers=1))
        copies[scale] = (raw, records)
    return copies


def _relative_error(image, reference):
    return float(np.linalg.norm(image - reference) / np.linalg.norm(reference))


def _assert_scales(images):
    """``images[c]`` is ``c`` times ``images[1]`` to 1e-4 relative, for every scale."""
    reference = images[1.0].astype(np.float64)
    for scale, image in images.items():
        assert np.all(np.isfinite(image)), scale
        error = _relative_error(image.astype(np.float64) / scale, reference)
        assert error <= 1e-4, (scale, error)


def test_the_pipeline_model_and_cs_tv_are_scale_invariant(exported, scaled_copies):
    model_dir, _, _ = exported
    model, _ = checkpoints.load_model(model_dir)
    predict = volumes.model_predictor(model)
    cs = report.cs_predictor(cs_tv.CsTvOptions(regularization=0.005, iterations=10))
    results = {"zero_filled": {}, "model": {}, "target": {}, "cs_tv": {}}
    for scale, (_, records) in scaled_copies.items():
        options = pipeline.PipelineOptions(SPEC, batch_size=2, recon_crop=True)
        dataset = pipeline.make_dataset(records, "singlecoil_val", options, training=False)
        ((_, zero_filled, image, target),) = volumes.reconstruct_volumes(predict, dataset)
        results["zero_filled"][scale], results["model"][scale] = zero_filled, image
        results["target"][scale] = target
        scoring = pipeline.PipelineOptions(
            SPEC, batch_size=2, measured=True, recon_crop=True, network_input=False
        )
        dataset = pipeline.make_dataset(records, "singlecoil_val", scoring, training=False)
        ((_, _, image, _),) = volumes.reconstruct_volumes(cs, dataset)
        results["cs_tv"][scale] = image
    for images in results.values():
        _assert_scales(images)
    # Not a constant: the model's output depends on its input.
    assert np.std(results["model"][1.0]) > 0.05 * np.mean(results["model"][1.0])


@pytest.mark.slow
def test_reconstruct_is_scale_invariant(exported, scaled_copies, tmp_path):
    images = {}
    for index, (scale, (raw, _)) in enumerate(scaled_copies.items()):
        output = tmp_path / f"out{index}"
        result = _reconstruct(exported, os.path.join(raw, "singlecoil_val"), output)
        assert result.returncode == 0, result.stderr[-3000:]
        with h5py.File(output / "file1000123.h5") as handle:
            images[scale] = handle["reconstruction"][()]
    _assert_scales(images)


def test_kspace_narrower_than_the_network_crop_is_scored_by_fastmris_rule_not_a_traceback(
    exported, tmp_path
):
    """64 columns against a 320 x 320 recon size: fastMRI's rule scores it at 64 x 64.
    The converter takes it, zero-filled and CS-TV read it, and a 320 network is refused
    in one line naming the file and the --crop_size that would do."""
    model_dir, _, _ = exported
    raw = tmp_path / "raw"
    (raw / "singlecoil_val").mkdir(parents=True)
    kspace, target, header, _ = synthetic.make_volume(5, 2, 1, 64)
    target = np.pad(target, ((0, 0), (0, 0), (128, 128)))  # the header's 320 x 320
    synthetic.write_volume(
        str(raw / "singlecoil_val" / "narrow.h5"), kspace, target, header, "CORPD_FBK", "narrow"
    )
    records = str(tmp_path / "records")
    convert.convert(str(raw), records, convert.ConvertOptions(num_shards=1, num_workers=1))
    scoring = pipeline.PipelineOptions(
        SPEC, batch_size=1, measured=True, recon_crop=True, network_input=False
    )
    for inputs, target_image in pipeline.make_dataset(records, "singlecoil_val", scoring, False):
        assert inputs["zero_filled_image"].shape == target_image.shape == (1, 64, 64)
        assert np.all(np.isfinite(inputs["zero_filled_image"].numpy()))
    result = run_app(
        "tfmri.evaluate",
        f"--flagfile={model_dir}/flags.cfg",
        f"--data_dir={records}",
        "--val_split=singlecoil_val",
        f"--output_dir={tmp_path / 'eval'}",
    )
    assert result.returncode == 1
    _no_traceback(result)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --crop_size=320") and "narrow.h5" in last
    assert "--crop_size=64 or less" in last
