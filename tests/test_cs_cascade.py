"""The cascade started from CS-TV (--cascade_start=cs_tv): zero stages give CS-TV's
reconstruction, the lambda chosen on the training split and kept, training, resume,
export without XLA and serving equal to the Keras model, the report's row."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tests.conftest import (
    assert_generator_weights_finite,
    report_8x,
    run_tool,
    train_resume_export,
)
from tests.test_cascade import SPEC, served_and_keras, val_batch
from tfmri.baselines import cs_tv
from tfmri.data import transforms
from tfmri.models import cascade, pix2pix
from tfmri.training import checkpoints

ITERATIONS = 5  # CS-TV's 100 iterations take 0.15 s a slice: the tests run few
TINY = ["--generator=cascade", "--cascades=2", "--depth=3", "--base_filters=4"]
TINY += ["--norm=instance", "--dropout=0", "--data_consistency", "--model=unet"]
TINY += ["--cascade_start=cs_tv", f"--start_cs_iterations={ITERATIONS}"]


def _denormalized(output, inputs):
    return transforms.denormalize_per_slice(
        output[..., 0], inputs["mean"], inputs["std"], inputs["scale"]
    ).numpy()


def _in_file_units(images, inputs):
    """Images [B, h, w] of the pipeline's scaled data, times each slice's scale."""
    return (images * inputs["scale"][:, None, None]).numpy()


def test_zero_stages_give_the_cs_tv_reconstruction(singlecoil_records):
    inputs, _ = val_batch(singlecoil_records)
    options = cs_tv.CsTvOptions(regularization=0.01, iterations=20)
    expected = _in_file_units(
        cs_tv.reconstruct_hybrid(inputs["measured"], inputs["mask"], options), inputs
    )
    generator = cascade.CascadeGenerator(320, 0, start="cs_tv", cs_lambda=0.01, cs_iterations=20)
    compiled = _denormalized(generator(inputs), inputs)
    generator.compile_start = False  # as exported
    plain = _denormalized(generator(inputs), inputs)
    for image in (compiled, plain):
        np.testing.assert_allclose(image, expected, atol=1e-4 * expected.max())
    # CS-TV is not the zero-filled image: the start did change it.
    zero_filled = inputs["zero_filled_image"].numpy()
    assert np.abs(expected - zero_filled).max() > 0.01 * zero_filled.max()


def test_zero_stages_on_multicoil_data_give_the_cs_tv_reconstruction(multicoil_records):
    _, records = multicoil_records
    inputs, _ = val_batch(records, "multicoil_val", batch_size=1)
    # The baseline estimates the coil maps itself; the cascade passes its own, the
    # low-resolution maps of its data consistency.
    options = cs_tv.CsTvOptions(regularization=0.01, iterations=20, maps="rss")
    expected = _in_file_units(
        cs_tv.reconstruct_hybrid(inputs["measured"], inputs["mask"], options), inputs
    )
    generator = cascade.CascadeGenerator(320, 0, start="cs_tv", cs_lambda=0.01, cs_iterations=20)
    image = _denormalized(generator(inputs), inputs)
    np.testing.assert_allclose(image, expected, atol=1e-4 * expected.max())


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(generator="unet"), "starts the cascade generator: add --generator=cascade"),
        (dict(start_cs_lambda="-1"), "--start_cs_lambda=-1: CS-TV lambda must be 'auto' or a"),
        (dict(start_cs_lambda="inf"), "lambda must be 'auto' or a number > 0"),
        (dict(start_cs_iterations=0), "start_cs_iterations must be >= 1"),
        (dict(cascade_start="bart"), "cascade_start must be one of zero_filled, cs_tv"),
    ],
)
def test_bad_start_settings_are_refused(changes, message):
    fields = dict(generator="cascade", data_consistency=True, cascade_start="cs_tv")
    with pytest.raises(ValueError, match=message):
        pix2pix.ModelConfig(**{**fields, **changes})


def test_method_names_tell_the_start_apart():
    fields = dict(generator="cascade", data_consistency=True)
    names = {
        (start, discriminator): pix2pix.ModelConfig(
            **fields, cascade_start=start, discriminator=discriminator
        ).method
        for start in cascade.STARTS
        for discriminator in ("none", "patch")
    }
    assert names == {
        ("zero_filled", "none"): "cascade",
        ("zero_filled", "patch"): "pix2pix_cascade",
        ("cs_tv", "none"): "cs_cascade",
        ("cs_tv", "patch"): "pix2pix_cs_cascade",
    }


def test_an_unresolved_auto_lambda_is_refused_when_built():
    config = pix2pix.ModelConfig(generator="cascade", data_consistency=True, cascade_start="cs_tv")
    assert config.start_cs_lambda == cs_tv.AUTO
    with pytest.raises(ValueError, match="chosen by tfmri.train and kept in model.json"):
        config.build_generator()


@pytest.fixture(scope="module")
def cs_cascade_run(singlecoil_records, tmp_path_factory):
    """A tiny L1 cascade started from CS-TV (lambda auto), trained one epoch, resumed for
    a second, and exported: (model dir, SavedModel version dir, the two runs' outputs,
    the first run's last step)."""
    root = str(tmp_path_factory.mktemp("cs_cascade"))
    return train_resume_export(singlecoil_records, root, TINY, "cs")


@pytest.mark.slow
def test_auto_lambda_is_chosen_on_the_training_split_and_kept(cs_cascade_run, singlecoil_records):
    model_dir, _, (first, resumed), first_step = cs_cascade_run
    groups = cs_tv.tuning_slices(singlecoil_records, "singlecoil_train", SPEC)
    assert len(groups) == 3  # the fixture's 3 training volumes, 2 middle slices each
    expected, _ = cs_tv.choose_lambda(groups, ITERATIONS)
    config = checkpoints.read_model_config(model_dir)["config"]
    assert config["start_cs_lambda"] == pytest.approx(expected)
    assert f"--start_cs_lambda=auto: CS-TV lambda {expected:g} on singlecoil_train" in first.stdout
    with open(os.path.join(model_dir, "history.jsonl")) as handle:
        events = [json.loads(line) for line in handle]
    assert [event["start_cs_lambda"] for event in events] == [pytest.approx(expected)] * 2
    # The resumed run takes the kept lambda and does not choose again.
    assert "--start_cs_lambda=auto" not in resumed.stdout
    assert int(tf.train.latest_checkpoint(model_dir).split("-")[-1]) == 2 * first_step
    # The recipe keeps "auto": the run resumes with the flags it was started with.
    with open(os.path.join(model_dir, checkpoints.FLAGS_FILE)) as handle:
        assert "--start_cs_lambda=auto" in handle.read()


@pytest.mark.slow
def test_served_cs_cascade_equals_the_keras_model(
    cs_cascade_run, singlecoil_records, singlecoil_raw
):
    model_dir, saved_model, _, _ = cs_cascade_run
    image, expected, inputs = served_and_keras(
        model_dir, saved_model, singlecoil_records, singlecoil_raw
    )
    assert image.shape == expected.shape == (1, 320, 320)
    np.testing.assert_allclose(image, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # The trained stages changed CS-TV's image (the model with its stages dropped).
    lam = checkpoints.read_model_config(model_dir)["config"]["start_cs_lambda"]
    start = cascade.CascadeGenerator(320, 0, start="cs_tv", cs_lambda=lam, cs_iterations=ITERATIONS)
    cs_image = _denormalized(start(inputs), inputs)
    assert np.abs(image - cs_image).max() > 1e-3 * cs_image.max()
    # TF Serving runs no XLA JIT by default: no function of the export must be compiled.
    with open(os.path.join(saved_model, "saved_model.pb"), "rb") as handle:
        proto = saved_model_pb2.SavedModel.FromString(handle.read())
    library = proto.meta_graphs[0].graph_def.library
    must_compile = [
        function.signature.name
        for function in library.function
        if function.attr.get("_XlaMustCompile") and function.attr["_XlaMustCompile"].b
    ]
    assert must_compile == []


@pytest.mark.slow
def test_report_names_the_cs_cascade_row(cs_cascade_run, singlecoil_records, tmp_path):
    model_dir, _, _, _ = cs_cascade_run
    (setting,) = report_8x(
        tmp_path / "report",
        f"--data_dir={singlecoil_records}",
        "--methods=zero_filled,cs_tv,cs_cascade",
        f"--checkpoints={model_dir}",
        "--cs_lambda=0.01",
        "--cs_iterations=5",
    )["results"]
    assert set(setting["summary"]) == {"zero_filled", "cs_tv", "cs_cascade"}


@pytest.mark.slow
def test_cs_cascade_trains_on_two_mirrored_replicas(singlecoil_records, tmp_path):
    # A CPU split and a mirrored strategy change the process for good.
    model_dir = str(tmp_path / "mirrored")
    result = run_tool(
        "-m",
        "tfmri.train",
        f"--data_dir={singlecoil_records}",
        f"--model_dir={model_dir}",
        *TINY,
        "--start_cs_lambda=0.01",
        "--batch_size=2",
        "--strategy=mirrored",
        "--num_cpu_devices=2",
        "--epochs=1",
        "--epochs_decay=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replica(s)" in result.stdout
    assert_generator_weights_finite(model_dir)
