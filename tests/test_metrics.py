import json
import os

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tests.conftest import FIXTURES
from tfmri.evaluation import metrics

REFERENCE = np.load(os.path.join(FIXTURES, "fastmri_metrics.npz"))
CASES = json.loads(str(REFERENCE["cases"]))
VOLUMES = np.load(os.path.join(FIXTURES, "fastmri_volume_metrics.npz"))
VOLUME_CASES = json.loads(str(VOLUMES["cases"]))


@pytest.mark.parametrize("case", CASES, ids=[c["gt"] for c in CASES])
def test_metrics_equal_fastmri_reference(case):
    gt, pred = REFERENCE[case["gt"]], REFERENCE[case["pred"]]
    result = metrics.volume_metrics(gt, pred)
    for name in ("nmse", "psnr", "ssim"):
        assert result[name] == pytest.approx(case[name], rel=1e-6)


@pytest.mark.parametrize("case", VOLUME_CASES, ids=[c["name"] for c in VOLUME_CASES])
def test_metrics_equal_fastmri_on_volumes_built_to_catch_slips(case):
    gt, pred = VOLUMES[case["gt"]], VOLUMES[case["pred"]]
    result = metrics.volume_metrics(gt, pred)
    for name in ("nmse", "psnr", "ssim"):
        assert result[name] == pytest.approx(case[name], rel=1e-6), name


def _slipped_ssim(gt, pred, per_slice_range=False, population=False):
    """SSIM with one of the usual slips, from scikit-image (an independent computation)."""
    values = [
        structural_similarity(
            g,
            p,
            data_range=float(g.max() if per_slice_range else gt.max()),
            use_sample_covariance=not population,
        )
        for g, p in zip(gt.astype(np.float64), pred.astype(np.float64))
    ]
    return float(np.mean(values))


def test_the_volume_fixture_and_tolerance_catch_the_usual_slips():
    # A per-slice data range and a population covariance each move some case's SSIM by
    # far more than the 1e-6 the test above allows, so that test would catch them.
    for slip in ({"per_slice_range": True}, {"population": True}):
        moved = max(
            abs(_slipped_ssim(VOLUMES[c["gt"]], VOLUMES[c["pred"]], **slip) - c["ssim"]) / c["ssim"]
            for c in VOLUME_CASES
        )
        assert moved > 1e-4, slip


def test_ssim_and_psnr_equal_scikit_image_on_random_images():
    rng = np.random.default_rng(1)
    gt = rng.random((2, 40, 33)).astype(np.float32)
    pred = (gt + 0.1 * rng.standard_normal(gt.shape)).astype(np.float32)
    data_range = float(gt.max())
    expected_ssim = np.mean(
        [structural_similarity(g, p, data_range=data_range) for g, p in zip(gt, pred)]
    )
    assert metrics.ssim(gt, pred) == pytest.approx(expected_ssim, abs=1e-6)
    assert metrics.psnr(gt, pred) == pytest.approx(
        peak_signal_noise_ratio(gt, pred, data_range=data_range), rel=1e-6
    )


def test_a_score_that_is_not_finite_is_refused_naming_the_volume():
    from tfmri.errors import UserError

    target = np.ones((2, 16, 16))
    prediction = target.copy()
    prediction[1, 3, 3] = np.nan
    with pytest.raises(UserError, match="volume file1.h5, method unet: nmse = nan.*NaN"):
        metrics.volume_row("file1.h5", "unet", target, prediction)
    row = metrics.volume_row("file1.h5", "unet", target, target * 0.9)
    assert row["volume"] == "file1.h5" and row["nmse"] == pytest.approx(0.01)


def test_json_results_never_hold_nan(tmp_path):
    from tfmri import fileio
    from tfmri.errors import UserError

    path = tmp_path / "metrics.json"
    with pytest.raises(UserError, match="metrics.json: not written, a value is not finite"):
        fileio.write_json(path, {"ssim": float("nan")})
    assert not path.exists() and not list(tmp_path.iterdir())


def test_summary_keeps_each_methods_worst_volume_beside_its_mean():
    rng = np.random.default_rng(3)
    rows = [
        {"volume": f"v{index}", "method": method, **dict(zip(metrics.NAMES, rng.random(3)))}
        for method in ("cs_tv", "unet")
        for index in range(5)
    ]
    summary = metrics.summarize(rows)
    for method in ("cs_tv", "unet"):
        mine = [row for row in rows if row["method"] == method]
        for metric, pick in (("nmse", np.argmax), ("psnr", np.argmin), ("ssim", np.argmin)):
            values = np.array([row[metric] for row in mine])
            worst = mine[int(pick(values))]
            assert summary[method][metric]["worst"] == worst[metric]
            assert summary[method][metric]["worst_volume"] == worst["volume"]
            assert summary[method][metric]["mean"] == pytest.approx(values.mean())
            assert summary[method][metric]["std"] == pytest.approx(values.std())
