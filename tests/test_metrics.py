import json
import os

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tests.conftest import FIXTURES
from tfmri import metrics

REFERENCE = np.load(os.path.join(FIXTURES, "fastmri_metrics.npz"))
CASES = json.loads(str(REFERENCE["cases"]))


@pytest.mark.parametrize("case", CASES, ids=[c["gt"] for c in CASES])
def test_metrics_equal_fastmri_reference(case):
    gt, pred = REFERENCE[case["gt"]], REFERENCE[case["pred"]]
    result = metrics.volume_metrics(gt, pred)
    for name in ("nmse", "psnr", "ssim"):
        assert result[name] == pytest.approx(case[name], rel=1e-4)


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
