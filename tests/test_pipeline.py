import dataclasses
import glob
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.test_transforms import numpy_ifft2c
from tfmri.data import fastmri_files, masks, pipeline

SPEC = masks.MaskSpec("random", (0.04,), (8,))
OPTIONS = pipeline.PipelineOptions(SPEC, batch_size=2)


def _volumes(raw, split):
    paths = glob.glob(os.path.join(raw, split, "*.h5"))
    return {os.path.basename(p): fastmri_files.read_volume(p) for p in paths}


def _numpy_zero_filled(kspace, mask):
    """Independent reference: |crop(ifft2c(k * mask))|, RSS over coils, in NumPy."""
    image = numpy_ifft2c(kspace * mask)
    top, left = (image.shape[-2] - 320) // 2, (image.shape[-1] - 320) // 2
    image = np.abs(image[..., top : top + 320, left : left + 320])
    return np.sqrt((image**2).sum(axis=0)) if kspace.ndim == 3 else image


def _unbatch(dataset):
    return dataset.unbatch()


def _in_file_units(inputs, key):
    """``inputs[key]`` as NumPy, times the slice's k-space scale for what the pipeline
    gives in those units (``mean``, ``std``, ``measured``): in the file's units."""
    value = inputs[key].numpy()
    if key not in ("mean", "std", "measured"):
        return value
    return value * inputs["scale"].numpy().reshape(
        inputs["scale"].shape + (1,) * (value.ndim - inputs["scale"].ndim)
    )


def test_evaluation_zero_filled_matches_numpy_with_fastmri_masks(
    singlecoil_raw, singlecoil_records
):
    volumes = _volumes(singlecoil_raw, "singlecoil_val")
    dataset = pipeline.make_dataset(singlecoil_records, "singlecoil_val", OPTIONS, training=False)
    count = 0
    for inputs, target in _unbatch(dataset):
        volume = volumes[inputs["volume"].numpy().decode()]
        index = int(inputs["slice_index"])
        mask, _ = masks.MaskFunction(SPEC)(
            volume.kspace.shape[-1], seed=masks.volume_seed(volume.name)
        )
        expected = _numpy_zero_filled(volume.kspace[index], mask)
        mean, std = expected.mean(), expected.std(ddof=1)
        assert _in_file_units(inputs, "mean") == pytest.approx(mean, rel=1e-4)
        assert _in_file_units(inputs, "std") == pytest.approx(std, rel=1e-3)
        restored = inputs["zero_filled"].numpy()[..., 0] * _in_file_units(
            inputs, "std"
        ) + _in_file_units(inputs, "mean")
        unclamped = np.abs(inputs["zero_filled"].numpy()[..., 0]) < 6
        np.testing.assert_allclose(
            restored[unclamped], expected[unclamped], rtol=1e-3, atol=1e-3 * expected.max()
        )
        expected_target = np.clip((volume.target[index] - mean) / (std + 1e-11), -6, 6)
        np.testing.assert_allclose(target.numpy()[..., 0], expected_target, rtol=1e-3, atol=2e-3)
        assert float(inputs["max_value"]) == pytest.approx(volume.max_value)
        count += 1
    assert count == sum(v.num_slices for v in volumes.values())


def test_evaluation_order_and_masks_are_identical_on_every_pass(singlecoil_records):
    dataset = pipeline.make_dataset(singlecoil_records, "singlecoil_train", OPTIONS, training=False)
    first = [(i["volume"].numpy().tolist(), i["zero_filled"].numpy()) for i, _ in dataset]
    second = [(i["volume"].numpy().tolist(), i["zero_filled"].numpy()) for i, _ in dataset]
    for (name_a, image_a), (name_b, image_b) in zip(first, second):
        assert name_a == name_b
        np.testing.assert_array_equal(image_a, image_b)
    # Slices of a volume are contiguous and in order.
    order = [(i["volume"].numpy().decode(), int(i["slice_index"])) for i, _ in _unbatch(dataset)]
    names = [name for name, _ in order]
    assert all(
        names.index(n) + names.count(n) - 1 == len(names) - 1 - names[::-1].index(n)
        for n in set(names)
    )
    for name in set(names):
        assert [s for n, s in order if n == name] == sorted(s for n, s in order if n == name)


def test_training_draws_fresh_masks_for_every_seed(singlecoil_records):
    # tfmri.train builds each epoch's dataset with a seed of its own.
    def epoch(seed):
        options = dataclasses.replace(OPTIONS, seed=seed)
        dataset = pipeline.make_dataset(singlecoil_records, "singlecoil_train", options, True)
        return {
            (i["volume"].numpy().decode(), int(i["slice_index"])): i["zero_filled"].numpy()
            for i, _ in _unbatch(dataset)
        }

    first, second = epoch(1), epoch(2)
    assert first.keys() == second.keys() and len(first) == 9
    differing = sum(not np.array_equal(first[k], second[k]) for k in first)
    assert differing == len(first)


def test_file_shards_split_the_training_slices_between_workers(singlecoil_records):
    def slices(file_shard):
        options = pipeline.PipelineOptions(SPEC, batch_size=1, file_shard=file_shard)
        dataset = pipeline.make_dataset(singlecoil_records, "singlecoil_train", options, True)
        return [(i["volume"].numpy().decode(), int(i["slice_index"])) for i, _ in dataset.unbatch()]

    everything, first, second = slices((1, 0)), slices((2, 0)), slices((2, 1))
    assert first and second and not set(first) & set(second)
    assert sorted(first + second) == sorted(everything) and len(everything) == 9
    with pytest.raises(pipeline.DataError, match="2 shard file.s. for 3 workers"):
        slices((3, 0))


def test_test_split_uses_the_files_own_mask_and_has_no_target(singlecoil_raw, singlecoil_records):
    volumes = _volumes(singlecoil_raw, "singlecoil_test")
    dataset = pipeline.make_dataset(singlecoil_records, "singlecoil_test", OPTIONS, training=False)
    assert isinstance(dataset.element_spec, dict)
    for inputs in dataset.unbatch():
        volume = volumes[inputs["volume"].numpy().decode()]
        expected = _numpy_zero_filled(volume.kspace[int(inputs["slice_index"])], volume.mask)
        restored = inputs["zero_filled"].numpy()[..., 0] * _in_file_units(
            inputs, "std"
        ) + _in_file_units(inputs, "mean")
        unclamped = np.abs(inputs["zero_filled"].numpy()[..., 0]) < 6
        np.testing.assert_allclose(
            restored[unclamped], expected[unclamped], rtol=1e-3, atol=1e-3 * expected.max()
        )
    with pytest.raises(pipeline.DataError, match="no targets"):
        pipeline.make_dataset(singlecoil_records, "singlecoil_test", OPTIONS, training=True)


def test_multicoil_zero_filled_is_rss_of_coil_images(multicoil_records):
    raw, records = multicoil_records
    volumes = _volumes(raw, "multicoil_train")
    dataset = pipeline.make_dataset(records, "multicoil_train", OPTIONS, training=False)
    for inputs, target in _unbatch(dataset):
        volume = volumes[inputs["volume"].numpy().decode()]
        mask, _ = masks.MaskFunction(SPEC)(
            volume.kspace.shape[-1], seed=masks.volume_seed(volume.name)
        )
        expected = _numpy_zero_filled(volume.kspace[int(inputs["slice_index"])], mask)
        assert _in_file_units(inputs, "mean") == pytest.approx(expected.mean(), rel=1e-4)
        assert target.shape == (320, 320, 1)


def test_missing_manifest_split_and_truncated_shard(singlecoil_records, tmp_path):
    with pytest.raises(pipeline.DataError, match="no manifest"):
        pipeline.make_dataset(str(tmp_path), "singlecoil_train", OPTIONS, training=True)
    with pytest.raises(pipeline.DataError, match="no split 'train'"):
        pipeline.make_dataset(singlecoil_records, "train", OPTIONS, training=True)
    copy = tmp_path / "copy"
    shutil.copytree(singlecoil_records, copy)
    manifest = json.load(open(copy / "manifest.json"))
    shard = copy / manifest["splits"]["singlecoil_train"]["shards"][0]
    with open(shard, "r+b") as handle:
        handle.truncate(os.path.getsize(shard) - 100)
    with pytest.raises(pipeline.DataError, match="truncated or was changed; delete it and rerun"):
        pipeline.make_dataset(str(copy), "singlecoil_train", OPTIONS, training=True)


def test_corrupt_record_is_a_data_loss_error(singlecoil_records, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(singlecoil_records, copy)
    manifest = json.load(open(copy / "manifest.json"))
    shard = copy / manifest["splits"]["singlecoil_val"]["shards"][0]
    with open(shard, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\xff" * 64)
    dataset = pipeline.make_dataset(str(copy), "singlecoil_val", OPTIONS, training=False)
    with pytest.raises(tf.errors.DataLossError):
        for _ in dataset:
            pass


def test_one_shard_trains_with_more_parallel_calls_than_shards(singlecoil_raw, tmp_path):
    # One shard, and fixed parallelism (as tfmri.train sets it) above the shard count.
    from tfmri.data import convert

    records = str(tmp_path / "records")
    convert.convert(singlecoil_raw, records, convert.ConvertOptions(num_shards=1, num_workers=1))
    options = pipeline.PipelineOptions(SPEC, batch_size=2, parallel_calls=4)
    dataset = pipeline.make_dataset(records, "singlecoil_train", options, training=True)
    slices = sum(int(inputs["zero_filled"].shape[0]) for inputs, _ in dataset)
    with open(os.path.join(records, "manifest.json")) as handle:
        manifest = json.load(handle)
    assert slices == sum(manifest["splits"]["singlecoil_train"]["shard_slices"])


def test_training_order_and_masks_are_a_function_of_the_seed(singlecoil_records):
    # Parallel reads and maps, yet two passes with the same seed give the same batches,
    # and each slice's mask follows the slice, not its place in the stream.
    options = pipeline.PipelineOptions(SPEC, batch_size=1, seed=5, parallel_calls=2)

    def one_pass(opts):
        dataset = pipeline.make_dataset(singlecoil_records, "singlecoil_train", opts, training=True)
        return [
            (
                inputs["volume"].numpy()[0],
                int(inputs["slice_index"][0]),
                inputs["zero_filled"].numpy(),
            )
            for inputs, _ in dataset
        ]

    first, second = one_pass(options), one_pass(options)
    assert [(v, s) for v, s, _ in first] == [(v, s) for v, s, _ in second]
    for (_, _, a), (_, _, b) in zip(first, second):
        np.testing.assert_array_equal(a, b)
    # A different shuffle buffer reorders the slices, but each keeps its mask.
    reordered = one_pass(dataclasses.replace(options, shuffle_buffer=1))
    assert [(v, s) for v, s, _ in reordered] != [(v, s) for v, s, _ in first]
    by_slice = {(v, s): image for v, s, image in first}
    for volume, index, image in reordered:
        np.testing.assert_array_equal(image, by_slice[(volume, index)])


@pytest.mark.parametrize("split", ["singlecoil_val", "singlecoil_test"])
def test_hybrid_and_kspace_records_feed_the_same_inputs(
    singlecoil_raw, singlecoil_records, tmp_path, split
):
    """The default hybrid layout is a faster way to the same thing: every input the
    pipeline yields equals the one computed from k-space records (float32 rounding)."""
    from tfmri.data import convert

    kspace_dir = str(tmp_path / "kspace")
    options = convert.ConvertOptions(num_shards=2, num_workers=1, layout="kspace")
    convert.convert(singlecoil_raw, kspace_dir, options)
    for data_consistency in (False, True):
        pipeline_options = pipeline.PipelineOptions(
            SPEC, batch_size=1, data_consistency=data_consistency
        )
        hybrid = pipeline.make_dataset(singlecoil_records, split, pipeline_options, training=False)
        kspace = pipeline.make_dataset(kspace_dir, split, pipeline_options, training=False)
        count = 0
        for first, second in zip(hybrid, kspace):
            first = first[0] if isinstance(first, tuple) else first
            second = second[0] if isinstance(second, tuple) else second
            assert first.keys() == second.keys()
            for key in first:
                if key == "scale":  # of each layout's own data; the rest in file units
                    continue
                a, b = _in_file_units(first, key), _in_file_units(second, key)
                if a.dtype.kind in "fc":
                    scale = max(np.abs(b).max(), 1e-30)
                    np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * scale, err_msg=key)
                else:
                    np.testing.assert_array_equal(a, b)
            count += 1
        assert count > 0


def test_hybrid_records_refuse_a_crop_taller_than_they_hold(singlecoil_records):
    options = pipeline.PipelineOptions(SPEC, crop_size=330)
    with pytest.raises(pipeline.DataError, match="--layout=kspace"):
        pipeline.make_dataset(singlecoil_records, "singlecoil_val", options, training=False)
