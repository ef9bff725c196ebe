"""Multi-coil end to end: training with data consistency, export, serving payloads and
batch reconstruction of multi-coil files."""

import glob
import os

import h5py
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import report_8x, run_app, run_tool
from tfmri.data import fastmri_files, masks, pipeline, transforms
from tfmri.models import pix2pix
from tfmri.serving import client
from tfmri.training import checkpoints

SPEC = masks.MaskSpec("random", (0.04,), (8,))
TINY = ["--depth=3", "--base_filters=4", "--d_base_filters=4", "--norm=instance"]
TINY += ["--d_norm=instance", "--dropout=0", "--batch_size=1", "--data_consistency"]


@pytest.fixture(scope="module")
def multicoil_export(multicoil_records, tmp_path_factory):
    """A tiny pix2pix with data consistency trained on multi-coil data, and its export:
    (raw dir, records dir, model dir, SavedModel version dir)."""
    raw, records = multicoil_records
    root = tmp_path_factory.mktemp("multicoil")
    model_dir = str(root / "run")
    common = [f"--data_dir={records}", f"--model_dir={model_dir}"]
    splits = ["--train_split=multicoil_train", "--val_split=multicoil_val"]
    result = run_app("tfmri.train", *common, *splits, *TINY, "--epochs=1", "--epochs_decay=0")
    assert result.returncode == 0, result.stderr[-3000:]
    export_dir = str(root / "savedmodel")
    result = run_app("tfmri.export", *common, "--model_name=brain", f"--export_dir={export_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return raw, records, model_dir, os.path.join(export_dir, "brain", "1")


def _signature(saved_model):
    return tf.saved_model.load(saved_model).signatures["serving_default"]


@pytest.mark.slow
def test_the_run_records_multicoil_and_the_export_takes_coils(multicoil_export):
    _, _, model_dir, saved_model = multicoil_export
    assert checkpoints.read_model_config(model_dir)["config"]["multicoil"] is True
    specs = _signature(saved_model).structured_input_signature[1]
    assert specs["kspace_real"].shape.rank == 4 and specs["mask"].shape.rank == 2


def _served_and_keras(raw, records, model_dir, saved_model):
    """(served image, the Keras model's image, the slice's masked k-space, its mask) of
    the first validation slice, sent as a client sends it."""
    model = pix2pix.ReconstructionModel.from_config(checkpoints.read_model_config(model_dir))
    checkpoints.restore_weights(model, model_dir)
    options = pipeline.PipelineOptions(SPEC, batch_size=1, data_consistency=True)
    inputs, _ = next(iter(pipeline.make_dataset(records, "multicoil_val", options, False)))
    expected = transforms.denormalize_per_slice(
        model(inputs)[..., 0], inputs["mean"], inputs["std"], inputs["scale"]
    ).numpy()
    name = inputs["volume"].numpy()[0].decode()
    volume = fastmri_files.read_volume(os.path.join(raw, "multicoil_val", name))
    kspace = volume.kspace[inputs["slice_index"].numpy()]
    mask = masks.fixed_volume_mask(SPEC, name, kspace.shape[-1])
    request = client.split_kspace(kspace * mask, mask)
    assert request["kspace_real"].shape == kspace.shape  # [B, C, H, W]
    served = _signature(saved_model)(**{k: tf.constant(v) for k, v in request.items()})
    return served["reconstruction"].numpy(), expected, kspace * mask, mask


@pytest.mark.slow
def test_served_reconstruction_equals_the_keras_model(multicoil_export):
    raw, records, model_dir, saved_model = multicoil_export
    served, expected, kspace, mask = _served_and_keras(raw, records, model_dir, saved_model)
    assert served.shape == expected.shape == (1, 320, 320)
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # Any coil count: the first two coils alone are a valid request too.
    two = client.split_kspace(kspace[:, :2], mask)
    answer = _signature(saved_model)(**{k: tf.constant(v) for k, v in two.items()})
    assert answer["reconstruction"].shape == (1, 320, 320)
    assert np.all(np.isfinite(answer["reconstruction"].numpy()))


@pytest.mark.slow
def test_rest_payload_of_a_multicoil_file_is_what_the_signature_takes(multicoil_export):
    raw, _, _, _ = multicoil_export
    path = sorted(glob.glob(os.path.join(raw, "multicoil_val", "*.h5")))[0]
    kspace, mask = client.load_request(path, SPEC, "0:1")
    inputs = client.split_kspace(kspace, mask)
    decoded = client.decode_rest_payload(client.rest_payload(inputs))
    assert decoded["kspace_real"].ndim == 4 and decoded["kspace_real"].shape[1] == 4
    for key, value in inputs.items():
        np.testing.assert_array_equal(decoded[key], value)


@pytest.mark.slow
def test_batch_reconstruction_of_multicoil_files(multicoil_export, tmp_path):
    raw, _, _, saved_model = multicoil_export
    output = tmp_path / "out"
    args = [f"--saved_model={saved_model}", f"--output_dir={output}", "--batch_size=2"]
    for split in ("multicoil_val", "multicoil_test"):  # test files carry their own mask
        result = run_app("tfmri.reconstruct", *args, f"--input_dir={os.path.join(raw, split)}")
        assert result.returncode == 0, result.stderr[-3000:]
        for path in glob.glob(os.path.join(raw, split, "*.h5")):
            with h5py.File(os.path.join(output, os.path.basename(path))) as handle:
                image = handle["reconstruction"][()]
            assert image.shape == (fastmri_files.read_volume(path).num_slices, 320, 320)
            assert image.dtype == np.float32 and np.all(np.isfinite(image))


@pytest.mark.slow
def test_a_single_coil_file_on_a_multicoil_model_is_one_line(
    multicoil_export, singlecoil_raw, tmp_path
):
    _, _, _, saved_model = multicoil_export
    result = run_app(
        "tfmri.reconstruct",
        f"--saved_model={saved_model}",
        f"--input_dir={os.path.join(singlecoil_raw, 'singlecoil_val')}",
        f"--output_dir={tmp_path / 'out'}",
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "single-coil k-space; the model takes multi-coil k-space" in last
    assert not glob.glob(str(tmp_path / "out" / "*.h5"))


@pytest.mark.slow
def test_report_has_learned_multicoil_rows(multicoil_export, tmp_path):
    _, records, model_dir, _ = multicoil_export
    (setting,) = report_8x(
        tmp_path / "report",
        f"--data_dir={records}",
        "--val_split=multicoil_val",
        "--methods=zero_filled,cs_tv,pix2pix",
        f"--checkpoints={model_dir}",
        "--cs_lambda=0.005",
        "--cs_iterations=10",
    )["results"]
    assert set(setting["summary"]) == {"zero_filled", "cs_tv", "pix2pix"}
    for scores in setting["summary"].values():
        assert all(np.isfinite(scores[name]["mean"]) for name in ("nmse", "psnr", "ssim"))


def train_multicoil_unet(records, model_dir, *flags):
    """Trains one epoch of ``--model=unet`` (L1 alone) with ``flags`` on the multi-coil
    splits; returns the run's model config."""
    result = run_app(
        "tfmri.train",
        f"--data_dir={records}",
        f"--model_dir={model_dir}",
        "--train_split=multicoil_train",
        "--val_split=multicoil_val",
        "--model=unet",
        *flags,
        "--epochs=1",
        "--epochs_decay=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return checkpoints.read_model_config(model_dir)["config"]


@pytest.mark.slow
def test_unet_trains_on_multicoil_data_with_consistency(multicoil_records, tmp_path):
    _, records = multicoil_records
    config = train_multicoil_unet(records, str(tmp_path / "unet"), *TINY)
    assert config["multicoil"] and config["discriminator"] == "none"


@pytest.mark.slow
def test_two_replicas_in_mixed_precision_on_multicoil_data(multicoil_records, tmp_path):
    # MirroredStrategy over 2 CPU devices and bfloat16 change the process: a process of its own.
    _, records = multicoil_records
    model_dir = str(tmp_path / "mirrored")
    result = run_tool(
        "-m",
        "tfmri.train",
        f"--data_dir={records}",
        f"--model_dir={model_dir}",
        "--train_split=multicoil_train",
        "--val_split=multicoil_val",
        *TINY[:-2],
        "--batch_size=2",
        "--data_consistency",
        "--strategy=mirrored",
        "--num_cpu_devices=2",
        "--precision=mixed_bfloat16",
        "--epochs=1",
        "--epochs_decay=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replica(s)" in result.stdout
    assert tf.train.latest_checkpoint(model_dir) is not None


@pytest.mark.slow
def test_report_compares_runs_with_and_without_consistency(
    multicoil_export, multicoil_records, tmp_path
):
    _, records, with_dc, _ = multicoil_export
    without_dc = str(tmp_path / "nodc")
    result = run_app(
        "tfmri.train",
        f"--data_dir={records}",
        f"--model_dir={without_dc}",
        "--train_split=multicoil_train",
        "--val_split=multicoil_val",
        *TINY[:-1],
        "--nodata_consistency",
        "--epochs=1",
        "--epochs_decay=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    common = [f"--data_dir={records}", "--val_split=multicoil_val", "--methods=zero_filled,pix2pix"]
    report_dir = tmp_path / "report"
    document = report_8x(report_dir, *common, f"--checkpoints={with_dc},{without_dc}")
    (setting,) = document["results"]
    assert set(setting["summary"]) == {"zero_filled", "pix2pix", "pix2pix+dc"}
    table = [line.split(" | ")[0] for line in (report_dir / "report.md").read_text().splitlines()]
    assert [row for row in table if row.startswith("| ") and row != "| method"] == [
        "| zero_filled",
        "| pix2pix",
        "| pix2pix+dc",
    ]
    assert {c["method"] for c in document["checkpoints"]} == {"pix2pix", "pix2pix+dc"}
    # Two runs that differ in nothing the report can name are refused.
    result = run_app(
        "tfmri.report",
        *common,
        "--center_fractions=0.04",
        "--accelerations=8",
        f"--checkpoints={with_dc},{with_dc}",
        f"--report_dir={tmp_path}/r2",
    )
    assert result.returncode == 1
    assert "are all pix2pix runs at 8x" in result.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_complex_generator_input_trains_exports_and_serves(multicoil_records, tmp_path):
    # --generator_input=complex: the generator also sees the maps-combined complex
    # zero-filled image as two channels.
    raw, records = multicoil_records
    model_dir = str(tmp_path / "complex")
    common = [f"--data_dir={records}", f"--model_dir={model_dir}"]
    result = run_app(
        "tfmri.train",
        *common,
        "--train_split=multicoil_train",
        "--val_split=multicoil_val",
        "--model=unet",
        "--generator_input=complex",
        *TINY,
        "--epochs=1",
        "--epochs_decay=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = checkpoints.read_model_config(model_dir)["config"]
    assert config["generator_input"] == "complex"
    assert (
        pix2pix.ReconstructionModel.from_config({"config": config}).generator.input_shape[-1] == 3
    )
    export_dir = str(tmp_path / "savedmodel")
    result = run_app("tfmri.export", *common, "--model_name=c", f"--export_dir={export_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    saved_model = os.path.join(export_dir, "c", "1")
    served, expected, _, _ = _served_and_keras(raw, records, model_dir, saved_model)
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_complex_generator_input_needs_the_measured_data(multicoil_records, tmp_path):
    _, records = multicoil_records
    result = run_app(
        "tfmri.train",
        f"--data_dir={records}",
        f"--model_dir={tmp_path / 'run'}",
        "--generator_input=complex",
        *TINY[:-1],
    )
    assert result.returncode == 1
    assert "needs the measured data: add --data_consistency" in result.stderr
