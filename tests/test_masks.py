import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import FIXTURES
from tfmri.data import masks

REFERENCE = np.load(os.path.join(FIXTURES, "fastmri_masks.npz"))
CASES = json.loads(str(REFERENCE["index"]))


def _spec(case):
    return masks.MaskSpec(
        case["kind"], tuple(case["center_fractions"]), tuple(case["accelerations"])
    )


@pytest.mark.parametrize("case", CASES, ids=[c["key"] for c in CASES])
def test_seeded_masks_equal_fastmri_reference(case):
    seed = case["seed"] if isinstance(case["seed"], int) else masks.volume_seed(case["seed"])
    mask, num_low = masks.MaskFunction(_spec(case))(case["width"], seed=seed)
    assert num_low == case["num_low_frequencies"]
    np.testing.assert_array_equal(mask.astype(np.uint8), REFERENCE[case["key"]])


def test_explicit_seed_does_not_disturb_the_stream():
    spec = masks.MaskSpec("random", (0.08,), (4,))
    undisturbed = masks.MaskFunction(spec, seed=5)
    disturbed = masks.MaskFunction(spec, seed=5)
    first = undisturbed(368)[0]
    disturbed(368, seed=123)
    np.testing.assert_array_equal(disturbed(368)[0], first)
    np.testing.assert_array_equal(disturbed(368, seed=123)[0], disturbed(368, seed=123)[0])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mask_type": "spiral", "center_fractions": (0.08,), "accelerations": (4,)},
        {"mask_type": "random", "center_fractions": (0.08,), "accelerations": (0,)},
        {"mask_type": "random", "center_fractions": (0.08, 0.04), "accelerations": (4,)},
        {"mask_type": "random", "center_fractions": (1.5,), "accelerations": (4,)},
    ],
)
def test_bad_mask_spec_is_refused(kwargs):
    with pytest.raises(ValueError):
        masks.MaskSpec(**kwargs)


@pytest.mark.parametrize("width", [356, 368, 372])
@pytest.mark.parametrize("acceleration", [3, 4, 8])
@pytest.mark.parametrize("offset", range(8))
def test_tf_magic_lattice_equals_numpy(width, acceleration, offset):
    if offset >= acceleration:
        pytest.skip("offsets are drawn in [0, acceleration)")
    expected = masks._magic_columns(width, acceleration, offset)
    actual = masks._magic_columns_tf(
        tf.constant(width), tf.constant(acceleration), tf.constant(offset)
    )
    np.testing.assert_array_equal(actual.numpy(), expected)


def _tf_masks(spec, width, count):
    sample = tf.function(lambda seed: masks.sample_mask(spec, width, seed))
    return [sample(tf.constant([i, 17], tf.int64)) for i in range(count)]


@pytest.mark.parametrize("kind", masks.MASK_TYPES)
@pytest.mark.parametrize("center_fraction,acceleration", [(0.08, 4), (0.04, 8)])
def test_tf_masks_keep_the_centre_and_reach_the_acceleration(kind, center_fraction, acceleration):
    width = 368
    spec = masks.MaskSpec(kind, (center_fraction,), (acceleration,))
    drawn = _tf_masks(spec, width, 200)
    reference = masks.MaskFunction(spec, seed=0)
    reference_fraction = np.mean([reference(width)[0].mean() for _ in range(200)])
    for mask, num_low in drawn:
        assert int(num_low) == round(width * center_fraction) or kind == "magic_fraction"
        expected_center = masks.center_columns(width, int(num_low))
        assert np.all(mask.numpy()[expected_center] == 1)
        assert set(np.unique(mask.numpy())) <= {0.0, 1.0}
    fraction = np.mean([mask.numpy().mean() for mask, _ in drawn])
    # Same distribution as fastMRI's sampler: same expected sampled fraction.
    assert fraction == pytest.approx(reference_fraction, rel=0.03)
    if kind in ("random", "equispaced_fraction", "magic_fraction"):
        assert fraction == pytest.approx(1 / acceleration, rel=0.1)


def test_tf_masks_are_deterministic_per_seed_and_vary_across_seeds():
    spec = masks.MaskSpec("random", (0.08, 0.04), (4, 8))
    first = _tf_masks(spec, 368, 20)
    second = _tf_masks(spec, 368, 20)
    for (a, _), (b, _) in zip(first, second):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert len({m.numpy().tobytes() for m, _ in first}) == 20
    # Both (center fraction, acceleration) pairs are drawn.
    assert {int(n) for _, n in first} == {29, 15}


def test_tf_masks_work_inside_tf_data_with_dynamic_width():
    spec = masks.MaskSpec("equispaced", (0.08,), (4,))
    widths = tf.data.Dataset.from_tensor_slices([356, 368, 372])
    dataset = widths.map(
        lambda w: masks.sample_mask(spec, w, tf.stack([tf.cast(w, tf.int64), 1]))[0]
    )
    assert [int(m.shape[0]) for m in dataset] == [356, 368, 372]


def test_apply_mask_zeroes_exactly_the_unsampled_columns():
    kspace = tf.complex(tf.random.normal([2, 5, 6]), tf.random.normal([2, 5, 6]))
    mask = tf.constant([1, 0, 0, 1, 1, 0], tf.float32)
    masked = masks.apply_mask(kspace, mask).numpy()
    np.testing.assert_array_equal(masked[..., [1, 2, 5]], 0)
    np.testing.assert_array_equal(masked[..., [0, 3, 4]], kspace.numpy()[..., [0, 3, 4]])


def test_a_volumes_fixed_mask_is_seeded_by_its_file_name():
    # fastMRI fixes one mask per evaluation volume, seeded by the code points of its name.
    spec = masks.MaskSpec("random", (0.04,), (8.0,))
    name = "file1000123.h5"
    expected, _ = masks.MaskFunction(spec)(368, seed=[ord(c) for c in name])
    fixed = masks.fixed_volume_mask(spec, name, 368)
    np.testing.assert_array_equal(fixed, expected)
    assert not np.array_equal(fixed, masks.fixed_volume_mask(spec, "file1000124.h5", 368))
    with pytest.raises(ValueError):
        fixed[0] = 1.0  # shared by every caller: read-only
