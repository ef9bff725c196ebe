"""tfmri.report: the same numbers as tfmri.evaluate and the CS-TV module, figures, bad flags."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import run_module
from tests.test_train import TINY
from tfmri.baselines import cs_tv
from tfmri.data import fastmri_files, masks
from tfmri.evaluation import metrics

CS_ITERATIONS = 20


def _train(records, model_dir, *extra):
    args = ["-m", "tfmri.train", f"--data_dir={records}", f"--model_dir={model_dir}", *TINY]
    result = run_module(*args, "--epochs=1", "--epochs_decay=1", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir


@pytest.fixture(scope="module")
def runs(singlecoil_records, tmp_path_factory):
    root = tmp_path_factory.mktemp("report_runs")
    pix2pix_8x = _train(singlecoil_records, str(root / "pix2pix_8x"))
    unet_4x = _train(
        singlecoil_records,
        str(root / "unet_4x"),
        "--model=unet",
        "--center_fractions=0.08",
        "--accelerations=4",
    )
    return pix2pix_8x, unet_4x


def _report_args(records, runs, report_dir, *extra):
    return [
        "-m",
        "tfmri.report",
        f"--data_dir={records}",
        "--val_split=singlecoil_val",
        "--center_fractions=0.08,0.04",
        "--accelerations=4,8",
        f"--checkpoints={runs[1]},{runs[0]}",
        "--methods=zero_filled,cs_tv,unet,pix2pix",
        f"--report_dir={report_dir}",
        f"--cs_iterations={CS_ITERATIONS}",
        "--batch_size=2",
        *extra,
    ]


@pytest.fixture(scope="module")
def report(singlecoil_records, runs, tmp_path_factory):
    report_dir = str(tmp_path_factory.mktemp("report"))
    result = run_module(*_report_args(singlecoil_records, runs, report_dir), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(report_dir, "report.json")) as handle:
        return report_dir, json.load(handle), result.stdout


def _rows(result, method):
    return {row["volume"]: row for row in result["volumes"] if row["method"] == method}


def _setting(document, acceleration):
    (result,) = [r for r in document["results"] if r["acceleration"] == acceleration]
    return result


@pytest.mark.slow
@pytest.mark.parametrize("which, acceleration, method", [(0, 8, "pix2pix"), (1, 4, "unet")])
def test_learned_numbers_equal_evaluate(report, runs, tmp_path, which, acceleration, method):
    _, document, _ = report
    model_dir = runs[which]
    output_dir = str(tmp_path / "eval")
    result = run_module(
        "-m", "tfmri.evaluate", f"--flagfile={model_dir}/flags.cfg", f"--output_dir={output_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(output_dir, "metrics.json")) as handle:
        evaluated = json.load(handle)["volumes"]
    setting = _setting(document, acceleration)
    for name in ("zero_filled", method):
        expected = {row["volume"]: row for row in evaluated if row["method"] == name}
        got = _rows(setting, name)
        assert set(got) == set(expected) and got
        for volume, row in got.items():
            for metric in metrics.NAMES:
                assert row[metric] == pytest.approx(expected[volume][metric], rel=1e-6, abs=1e-9)


@pytest.mark.slow
def test_cs_tv_numbers_equal_the_module_on_the_raw_files(report, singlecoil_raw):
    _, document, _ = report
    for acceleration, fraction in ((4, 0.08), (8, 0.04)):
        spec = masks.MaskSpec("random", (fraction,), (acceleration,))
        rows = _rows(_setting(document, acceleration), "cs_tv")
        zero_filled = _rows(_setting(document, acceleration), "zero_filled")
        assert rows
        for name, row in rows.items():
            volume = fastmri_files.read_volume(os.path.join(singlecoil_raw, "singlecoil_val", name))
            width = volume.kspace.shape[-1]
            mask, _ = masks.MaskFunction(spec)(width, seed=masks.volume_seed(name))
            # --cs_lambda=auto (the default) chose lambda on the training split.
            chosen = _setting(document, acceleration)["cs_tv"]["lambda"]
            assert chosen in cs_tv.LAMBDA_GRID
            image = cs_tv.reconstruct(
                volume.kspace,
                np.tile(mask, (volume.num_slices, 1)),
                cs_tv.CsTvOptions(chosen, CS_ITERATIONS),
            ).numpy()
            expected = metrics.volume_metrics(volume.target, image)
            assert row["nmse"] == pytest.approx(expected["nmse"], rel=1e-3)
            assert row["ssim"] == pytest.approx(expected["ssim"], abs=1e-4)
            assert row["nmse"] < zero_filled[name]["nmse"]


@pytest.mark.slow
def test_tables_timings_and_figures(report):
    report_dir, document, stdout = report
    assert [r["acceleration"] for r in document["results"]] == [4, 8]
    for result, learned in zip(document["results"], ("unet", "pix2pix")):
        assert set(result["summary"]) == {"zero_filled", "cs_tv", learned}
        assert result["seconds_per_slice"]["cs_tv"] > 0
        assert result["seconds_per_slice"][learned] > 0
    with open(os.path.join(report_dir, "report.md")) as handle:
        text = handle.read()
    for acceleration in (4, 8):
        nmse = _setting(document, acceleration)["summary"]["cs_tv"]["nmse"]
        assert f"| cs_tv | {nmse['mean']:.4f} +/- {nmse['std']:.4f}" in text
        worst = max(
            row["nmse"] for row in _rows(_setting(document, acceleration), "cs_tv").values()
        )
        assert nmse["worst"] == pytest.approx(worst) and f"(worst {worst:.4f})" in text
        # The lambda chosen on the training split is reported with the scores it won on.
        cs = _setting(document, acceleration)["cs_tv"]
        assert len(cs["tuning"]) == len(cs_tv.LAMBDA_GRID)
        assert f"CS-TV lambda {cs['lambda']:g}:" in text
    assert document["cs_tv"]["tune_split"] == "singlecoil_train"
    assert "== 4x" in stdout and "== 8x" in stdout
    for name in ("examples_4x.png", "examples_8x.png", "training_curves.png"):
        with open(os.path.join(report_dir, name), "rb") as handle:
            png = handle.read()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        image = tf.io.decode_png(png).numpy()
        assert image.shape[0] > 200 and image.shape[1] > 200
        assert image.std() > 10  # not a blank canvas
    curves = document["training_curves"]
    (pix2pix_curves,) = [c for label, c in curves.items() if label.startswith("pix2pix 8x")]
    assert {"train/D_real", "train/D_fake", "train/G_GAN", "train/G_L1", "val/ssim"} <= set(
        pix2pix_curves
    )
    assert pix2pix_curves["train/G_L1"][0] == [1, 2]  # one point per epoch


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--accelerations=4", "--center_fractions=0.08"], "trained at 8x"),
        (["--methods=zero_filled,cs_tv,unet,pix2pix,bm3d"], "--methods"),
        (["--accelerations=4,8", "--center_fractions=0.08"], "one centre fraction per"),
        (["--cs_lambda=0"], "--cs_lambda"),
        (["--cs_lambda=often"], "--cs_lambda"),
        (["--cs_tune_split=singlecoil_val"], "--cs_tune_split"),
        (["--cs_tune_split=singlecoil_tune"], "--cs_tune_split"),
    ],
)
def test_bad_flags(singlecoil_records, runs, tmp_path, extra, message):
    report_dir = str(tmp_path / "report")
    result = run_module(*_report_args(singlecoil_records, runs, report_dir, *extra))
    assert result.returncode == 1
    assert message in result.stderr.strip().splitlines()[-1]
    assert not os.path.exists(report_dir)


@pytest.mark.slow
def test_learned_method_without_a_checkpoint(singlecoil_records, runs, tmp_path):
    report_dir = str(tmp_path / "report")
    args = _report_args(singlecoil_records, runs, report_dir, f"--checkpoints={runs[0]}")
    # The pix2pix run alone: --methods still asks for unet.
    result = run_module(*args)
    assert result.returncode == 1
    assert "no unet run" in result.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_multicoil_zero_filled_and_cs_tv(multicoil_records, tmp_path):
    _, records = multicoil_records
    report_dir = str(tmp_path / "report")
    result = run_module(
        "-m",
        "tfmri.report",
        f"--data_dir={records}",
        "--val_split=multicoil_val",
        "--methods=zero_filled,cs_tv",
        "--center_fractions=0.04",
        "--accelerations=8",
        f"--cs_iterations={CS_ITERATIONS}",
        "--cs_tune_split=multicoil_train",
        f"--report_dir={report_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(report_dir, "report.json")) as handle:
        (setting,) = json.load(handle)["results"]
    cs, zero_filled = _rows(setting, "cs_tv"), _rows(setting, "zero_filled")
    assert cs and cs.keys() == zero_filled.keys()
    for volume, row in cs.items():
        assert row["nmse"] < zero_filled[volume]["nmse"]
        assert row["ssim"] > zero_filled[volume]["ssim"]
    assert not os.path.exists(os.path.join(report_dir, "training_curves.png"))


@pytest.mark.slow
def test_check_set_section_scores_its_own_data(singlecoil_records, tmp_path):
    """--check_data_dir: the same methods on a second data set, in a section of its own.
    Given the main data again, its numbers are the main section's."""
    report_dir = str(tmp_path / "report")
    result = run_module(
        "-m",
        "tfmri.report",
        f"--data_dir={singlecoil_records}",
        f"--check_data_dir={singlecoil_records}",
        "--check_tune_split=singlecoil_train",
        "--methods=zero_filled,cs_tv",
        "--center_fractions=0.04",
        "--accelerations=8",
        f"--cs_iterations={CS_ITERATIONS}",
        f"--report_dir={report_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(report_dir, "report.json")) as handle:
        document = json.load(handle)
    main, check = document["results"]
    assert (main["data"], check["data"]) == ("main", "check")
    assert document["check"]["data_dir"] == singlecoil_records
    for method in ("zero_filled", "cs_tv"):
        assert _rows(check, method).keys() == _rows(main, method).keys()
        for volume, row in _rows(check, method).items():
            for metric in metrics.NAMES:
                assert row[metric] == pytest.approx(_rows(main, method)[volume][metric], rel=1e-6)
    with open(os.path.join(report_dir, "report.md")) as handle:
        text = handle.read()
    assert "# Check set" in text and "## check set, 8x" in text
    assert os.path.exists(os.path.join(report_dir, "check_examples_8x.png"))
    assert "== check set 8x" in result.stdout


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--check_data_dir=/nonexistent"], "--check_data_dir"),
        (["--check_tune_split=singlecoil_val"], "--check_tune_split"),
        (["--check_split=nosuch"], "--check_split"),
    ],
)
def test_bad_check_set_flags(singlecoil_records, tmp_path, extra, message):
    report_dir = str(tmp_path / "report")
    args = [f"--check_data_dir={singlecoil_records}", "--check_tune_split=singlecoil_train"]
    result = run_module(
        "-m",
        "tfmri.report",
        f"--data_dir={singlecoil_records}",
        "--methods=zero_filled,cs_tv",
        "--center_fractions=0.04",
        "--accelerations=8",
        f"--report_dir={report_dir}",
        *args,
        *extra,
    )
    assert result.returncode == 1
    assert message in result.stderr.strip().splitlines()[-1]
    assert not os.path.exists(report_dir)
