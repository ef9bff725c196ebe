"""What is scored is what fastMRI scores: the stored target and the unclamped images.

``bright_singlecoil.h5`` holds voxels up to ~40 standard deviations above the
zero-filled mean, far beyond the pipeline's [-6, 6] clamp: a clamped copy of either
image moves the figures by about 10 dB (fastMRI's own figures are in the JSON).
"""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import FIXTURES, run_module
from tests.test_transforms import numpy_ifft2c
from tfmri.data import convert, fastmri_files, masks, pipeline
from tfmri.evaluation import metrics
from tfmri.models import pix2pix
from tfmri.training import train

NAME = "bright_singlecoil.h5"
with open(os.path.join(FIXTURES, "bright_singlecoil.json")) as _handle:
    EXPECTED = json.load(_handle)["zero_filled"]


def _spec(case):
    return masks.MaskSpec(case["mask"], (case["center_fraction"],), (case["acceleration"],))


@pytest.fixture(scope="module")
def bright_records(tmp_path_factory):
    root = tmp_path_factory.mktemp("bright")
    os.makedirs(root / "raw" / "singlecoil_val")
    shutil.copy(os.path.join(FIXTURES, NAME), root / "raw" / "singlecoil_val" / NAME)
    records = str(root / "records")
    convert.convert(str(root / "raw"), records, convert.ConvertOptions(num_shards=1, num_workers=1))
    return str(root / "raw"), records


@pytest.mark.parametrize("case", EXPECTED, ids=[f"{c['acceleration']}x" for c in EXPECTED])
def test_fixture_is_beyond_the_clamp_and_masks_match(case):
    volume = fastmri_files.read_volume(os.path.join(FIXTURES, NAME))
    mask, _ = masks.MaskFunction(_spec(case))(volume.kspace.shape[-1], seed=masks.volume_seed(NAME))
    assert int(mask.sum()) == case["sampled_columns"]
    # The premise of the fixture: the target's maximum lies far above the clamp.
    image = np.abs(numpy_ifft2c(volume.kspace * mask))[:, 160:480, 26:346]
    spread = max((t.max() - z.mean()) / z.std(ddof=1) for t, z in zip(volume.target, image))
    assert spread > 30


# 256: a network crop smaller than the files' 320 x 320 recon size. The report still
# scores the recon crop, as fastMRI does, so its figures are fastMRI's.
@pytest.mark.parametrize("crop", ["320", "256"])
def test_report_zero_filled_equals_fastmri_on_bright_voxels(bright_records, tmp_path, crop):
    _, records = bright_records
    report_dir = str(tmp_path / "report")
    result = run_module(
        "-m",
        "tfmri.report",
        f"--crop_size={crop}",
        f"--data_dir={records}",
        "--val_split=singlecoil_val",
        "--methods=zero_filled",
        "--checkpoints=",
        "--center_fractions=" + ",".join(str(c["center_fraction"]) for c in EXPECTED),
        "--accelerations=" + ",".join(str(c["acceleration"]) for c in EXPECTED),
        f"--report_dir={report_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(report_dir, "report.json")) as handle:
        results = {r["acceleration"]: r for r in json.load(handle)["results"]}
    for case in EXPECTED:
        (row,) = results[case["acceleration"]]["volumes"]
        for name in metrics.NAMES:
            assert row[name] == pytest.approx(case[name], rel=1e-4), (case["acceleration"], name)


def test_validation_metrics_score_the_stored_target(bright_records):
    # The TensorBoard validation metrics (ReconstructionModel.test_step): the de-normalised
    # prediction against the stored target, per slice, data range the volume maximum.
    raw, records = bright_records
    case = EXPECTED[1]
    options = pipeline.PipelineOptions(_spec(case), batch_size=1)
    dataset = pipeline.make_dataset(records, "singlecoil_val", options, training=False)
    keras.utils.set_random_seed(0)
    config = pix2pix.ModelConfig(
        image_size=320, depth=3, base_filters=4, dropout=0.0, norm="instance", discriminator="none"
    )
    model = pix2pix.ReconstructionModel(config)
    model.compile(keras.optimizers.SGD(0.0))
    scores = model.evaluate(dataset.map(train.model_inputs), return_dict=True, verbose=0)

    volume = fastmri_files.read_volume(os.path.join(raw, "singlecoil_val", NAME))
    expected = {name: [] for name in metrics.NAMES}
    for inputs, _ in dataset:
        index = int(inputs["slice_index"][0])
        prediction = model(inputs, training=False).numpy()[0, ..., 0]
        prediction = prediction * float(inputs["std"][0]) + float(inputs["mean"][0])
        prediction = prediction * float(inputs["scale"][0])  # in the file's units
        gt = volume.target[index][None]
        expected["nmse"].append(metrics.nmse(gt, prediction[None]))
        expected["psnr"].append(metrics.psnr(gt, prediction[None], volume.max_value))
        expected["ssim"].append(metrics.ssim(gt, prediction[None], volume.max_value))
    for name in metrics.NAMES:
        assert scores[name] == pytest.approx(np.mean(expected[name]), rel=1e-4), name


def test_evaluation_pipeline_yields_the_unclamped_images(bright_records):
    raw, records = bright_records
    case = EXPECTED[1]
    options = pipeline.PipelineOptions(_spec(case), batch_size=2)
    dataset = pipeline.make_dataset(records, "singlecoil_val", options, training=False)
    volume = fastmri_files.read_volume(os.path.join(raw, "singlecoil_val", NAME))
    mask, _ = masks.MaskFunction(_spec(case))(volume.kspace.shape[-1], seed=masks.volume_seed(NAME))
    zero_filled = np.abs(numpy_ifft2c(volume.kspace * mask))[:, 160:480, 26:346]
    ((inputs, _),) = list(dataset)
    np.testing.assert_array_equal(inputs["target_image"].numpy(), volume.target)
    np.testing.assert_allclose(
        inputs["zero_filled_image"].numpy(), zero_filled, rtol=0, atol=1e-5 * zero_filled.max()
    )
    assert float(tf.reduce_max(inputs["zero_filled"])) == 6.0  # the network input is clamped
