"""tf.data input pipeline: TFRecords -> masked k-space -> zero-filled image -> model inputs.

Per slice, on the fly:

1. parse the example (:mod:`tfmri.data.schema`);
2. undersample: a fresh random mask per slice for training (stateless TF RNG), a fixed
   mask per volume for evaluation (fastMRI's, seeded from the file name), or the
   file's own mask for test files whose k-space is already undersampled;
3. zero-filled image: ``ifft2c`` of the masked k-space, complex centre crop to the
   recon size, magnitude (RSS over coils for multi-coil);
4. normalise input and target with the input's mean and std, clamp to [-6, 6].

Each slice's k-space is first divided by a power of two near its largest component
(:func:`tfmri.data.transforms.kspace_scale`, ``inputs["scale"]``): everything the
networks see and use (``mean``, ``std``, ``measured``) is in those units, whatever the
scanner's, so that k-space times ``c`` gives images times ``c`` and no overflow to NaN.
The scored images (``zero_filled_image``, ``target_image``) are in the file's units;
a de-normalised prediction is brought to them by ``scale``
(:func:`tfmri.data.transforms.denormalize_per_slice` with ``scale``).

Elements are ``(inputs, target)``; ``inputs`` is a dict with the normalised
``zero_filled`` image [crop, crop, 1] and the metadata needed to de-normalise
(``mean``, ``std``, ``scale``) and to group slices by volume (``volume``, ``slice_index``,
``num_slices``, ``max_value``). Test splits, which have no target, yield ``inputs`` only.

The normalised, clamped images are what the network sees and learns (fastMRI keeps
the clamp there). What is scored is what fastMRI scores: evaluation datasets also
yield ``zero_filled_image`` (the zero-filled magnitude as computed) and
``target_image`` (the stored target, cropped), float32 [crop, crop], never clamped.
"""

import contextlib
import dataclasses
import os

import tensorflow as tf

from tfmri.data import manifest as manifests
from tfmri.data import masks, records, schema, transforms

AUTOTUNE = tf.data.AUTOTUNE


# What every element's inputs carry of its record: to score it and to group slices by volume.
METADATA = ("max_value", "volume", "slice_index", "num_slices")

DataError = manifests.DataError  # raised for data that cannot be used as asked


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    mask: masks.MaskSpec
    batch_size: int = 8
    crop_size: int = 320
    shuffle_buffer: int = 64
    seed: int = 0
    drop_remainder: bool = False
    # None: tf.data's autotuner picks the parallelism and buffer sizes. A number fixes
    # them and turns the autotuner off: next to a training step that keeps every core
    # busy, the autotuner's work made a pix2pix step take 1.02 s instead of 0.70 s in
    # about half the runs on 2 cores (bench/bench_train.py).
    parallel_calls: int | None = None
    # Also yield inputs["measured"] (complex64 [crop, W], or [coils, crop, W] multi-coil:
    # the measured data in hybrid space) and inputs["mask"] (float32 [W]) for k-space
    # data consistency.
    data_consistency: bool = False
    # Yield "measured" and "mask" as for data consistency, without the model using them;
    # multi-coil too ([coils, crop, W]): the CS-TV baseline reconstructs from them.
    measured: bool = False
    # Evaluation: yield zero_filled_image and target_image at each file's recon crop
    # (fastmri_files.recon_crop: its header's recon size, or W x W for k-space narrower
    # than it), what fastMRI scores, instead of the crop_size square the network sees
    # (tfmri.evaluation.volumes places a method's square output in that frame).
    recon_crop: bool = False
    # False: scoring only (evaluation with recon_crop; zero-filled and CS-TV need no
    # network). No network input and no --crop_size check: "measured" (with ``measured``)
    # holds the rows of each file's recon crop, so files of any recon size are read,
    # also those narrower or shorter than crop_size that a network could not take.
    network_input: bool = True
    # (count, index): training reads only the shard files index, index + count, ...
    # (a multi-worker run's file-level split of the data; workers draw different masks).
    file_shard: tuple[int, int] = (1, 0)


def split_info(data_dir, split):
    """(manifest, the split, its shard paths), every shard checked to exist whole."""
    manifest = manifests.read(data_dir)
    return manifest, manifest.split(split), manifest.shard_paths(split)


def fixed_volume_mask(spec, volume, width):
    """float32 [W]: the evaluation mask of a volume (graph mode, via NumPy)."""

    def compute(volume_bytes, width_value):
        return masks.fixed_volume_mask(spec, volume_bytes.decode(), int(width_value))

    mask = tf.numpy_function(compute, [volume, width], tf.float32, stateful=False)
    mask.set_shape([None])
    return mask


def record_mask_seed(seed, volume, slice_index):
    """int64 [2]: the stateless seed of a training slice's mask, a function of the run's
    ``seed`` (which the training changes every epoch), the volume name and the slice."""
    volume_hash = tf.strings.to_hash_bucket_fast(volume, 2**62)
    return tf.stack([volume_hash, tf.cast(slice_index, tf.int64) + 1_000_003 * seed])


def zero_filled_of_measured(measured, crop_size):
    """The zero-filled magnitude of measured hybrid data, cropped to ``crop_size`` squared.

    Args:
      measured: complex64 [crop_size, W] (single-coil) or [coils, crop_size, W]
        (multi-coil), zero where unsampled (:func:`measured_of_record`).
      crop_size: side of the square recon crop (320 for fastMRI knee).

    Returns:
      float32 [crop_size, crop_size]: ``|crop(ifft2c(k * mask))|``, RSS over coils if
      multi-coil.
    """
    image = transforms.center_crop(transforms.columns_to_image(measured), crop_size, crop_size)
    if measured.shape.rank == 3:
        return transforms.rss(image, axis=-3)
    return transforms.complex_abs(image)


def zero_filled_and_measured(kspace, mask, crop_size):
    """Single-coil zero-filled image and the measured data data consistency needs.

    Args:
      kspace: complex64 [H, W]; mask: float32 [W]; crop_size: the square crop side.

    Returns:
      (float32 [crop_size, crop_size] zero-filled magnitude, :func:`zero_filled_of_measured`;
      complex64 [crop_size, W] measured data in hybrid space,
      :func:`tfmri.data.transforms.measured_rows`).
    """
    measured = measured_of_record(kspace, mask, crop_size, "kspace")
    return zero_filled_of_measured(measured, crop_size), measured


def measured_of_record(data, mask, crop_size, layout):
    """The measured hybrid data [..., crop_size, W] of a record's ``kspace`` feature.

    ``layout="kspace"``: :func:`tfmri.data.transforms.measured_rows` of the k-space;
    ``"hybrid"``: the stored rows are already transformed along the readout, so the
    centre ``crop_size`` of them, with the unsampled columns zeroed.
    """
    if layout == "hybrid":
        rows = transforms.center_crop(data, crop_size, tf.shape(data)[-1])
        return rows * tf.cast(mask, rows.dtype)
    return transforms.measured_rows(data, mask, crop_size)


def recon_crop_of(recon_size, width):
    """int32 (height, width) of fastmri_files.recon_crop in the graph: the recon size, or
    (W, W) when the k-space's ``width`` W is smaller than the recon width."""
    narrow = width < recon_size[1]
    return tf.where(narrow, width, recon_size[0]), tf.where(narrow, width, recon_size[1])


def _scaled(features):
    """(k-space feature divided by its :func:`transforms.kspace_scale`, the scale)."""
    data = features["kspace"]
    scale = transforms.kspace_scale(data, list(range(data.shape.rank)))
    return data / tf.cast(scale, data.dtype), scale


def _recon_frame(data, features, mask, layout, has_target):
    """(measured hybrid rows [(C,) h, W] and zero-filled magnitude [h, w] of the scaled
    k-space ``data``, target [h, w] or None) at the record's recon crop."""
    height, width = recon_crop_of(features["recon_size"], tf.shape(data)[-1])
    if layout == "hybrid":
        rows = transforms.center_crop(data, height, tf.shape(data)[-1])
        rows = rows * tf.cast(mask, rows.dtype)
    else:
        rows = transforms.measured_rows(data, mask, height)
    image = transforms.center_crop(transforms.columns_to_image(rows), height, width)
    zero_filled = transforms.rss(image, axis=-3) if data.shape.rank == 3 else tf.abs(image)
    target = transforms.center_crop(features["target"], height, width) if has_target else None
    return rows, zero_filled, target


def _scored_only(features, mask, has_target, with_measured, layout):
    """Parsed example + mask -> (inputs, target) of a scoring-only pipeline
    (``PipelineOptions.network_input`` False): the recon-crop frame, no network input."""
    data, scale = _scaled(features)
    rows, zero_filled, target = _recon_frame(data, features, mask, layout, has_target)
    inputs = {key: features[key] for key in METADATA}
    inputs["scale"] = scale
    inputs["zero_filled_image"] = tf.ensure_shape(zero_filled * scale, [None, None])
    if with_measured:
        inputs["measured"] = rows
        inputs["mask"] = tf.cast(mask, tf.float32)
    if not has_target:
        return inputs
    inputs["target_image"] = target
    return inputs, target


def _prepare(
    features,
    mask,
    crop_size,
    has_target,
    with_measured=False,
    scored=False,
    layout="kspace",
    recon_crop=False,
):
    """Parsed example + mask -> (inputs, target), or inputs alone without a target.

    ``scored``: also yield the unnormalised ``zero_filled_image`` and ``target_image``
    (at the crop, or with ``recon_crop`` at the record's recon crop).
    ``layout``: what the record's ``kspace`` holds (:data:`tfmri.data.schema.LAYOUTS`).
    """
    kspace, scale = _scaled(features)
    measured = measured_of_record(kspace, mask, crop_size, layout)
    zero_filled = zero_filled_of_measured(measured, crop_size)
    normalized, mean, std = transforms.normalize_instance(zero_filled)
    inputs = {
        "zero_filled": tf.ensure_shape(normalized[..., None], [crop_size, crop_size, 1]),
        "mean": mean,
        "std": std,
        "scale": scale,
        **{key: features[key] for key in METADATA},
    }
    if with_measured:
        inputs["measured"] = tf.ensure_shape(
            measured, [None] * (kspace.shape.rank - 2) + [crop_size, None]
        )
        inputs["mask"] = tf.cast(mask, tf.float32)
    scored_target = None
    if scored and recon_crop:
        _, zero_filled_frame, scored_target = _recon_frame(
            kspace, features, mask, layout, has_target
        )
        inputs["zero_filled_image"] = tf.ensure_shape(zero_filled_frame * scale, [None, None])
    elif scored:
        inputs["zero_filled_image"] = tf.ensure_shape(zero_filled * scale, [crop_size, crop_size])
    if not has_target:
        return inputs
    target = transforms.center_crop(features["target"], crop_size, crop_size)
    target = tf.ensure_shape(target, [crop_size, crop_size])
    if scored:
        inputs["target_image"] = target if scored_target is None else scored_target
    return inputs, transforms.normalize(target[..., None] / scale, mean, std)


@contextlib.contextmanager
def naming_damaged_records(data_dir, *splits):
    """Turns a tf.errors.DataLossError raised in the block, while reading ``splits`` of
    ``data_dir``, into the one-line :func:`corrupt_data_error`."""
    try:
        yield
    except tf.errors.DataLossError as error:
        raise corrupt_data_error(data_dir, splits, error) from None


def corrupt_data_error(data_dir, splits, error) -> DataError:
    """The one-line error for a tf.errors.DataLossError met reading ``splits``: it names
    the first damaged shard and the record's byte offset (found by checking them all)."""
    splits = list(dict.fromkeys(split for split in splits if split))
    manifest = manifests.read(data_dir)
    for split in splits:
        entry = manifest.splits.get(split)
        for shard in entry.shards if entry else ():
            path = os.path.join(data_dir, shard)
            found = records.find_corruption(path, manifest.compression)
            if found is not None:
                offset, problem = found
                return DataError(
                    f"{path}: damaged record at byte {offset} ({problem}); delete the shard "
                    "and rerun the conversion (it rewrites only missing shards)"
                )
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return DataError(
        f"{data_dir}: a record of split(s) {', '.join(splits)} cannot be read ({first}); "
        "rerun the conversion with --overwrite"
    )


def check_crop(manifest, split, crop_size):
    """Raises DataError unless every image of ``split`` holds a ``crop_size`` square.

    The crop is taken from the zero-filled image, k-space height x width (layout
    kspace) or recon height x k-space width (hybrid, which stores only those rows).
    """
    statistics = manifest.split(split).statistics
    where = f"split {split!r} of {manifest.directory}"
    widths = statistics.widths
    if widths and crop_size > min(widths):
        raise DataError(
            f"--crop_size={crop_size}: {where} has k-space {min(widths)} columns wide"
            f"{_named(statistics.narrowest)}; use --crop_size={min(widths)} or less"
        )
    hybrid = manifest.layout == "hybrid"
    rows = [size[0] for size in statistics.recon_sizes] if hybrid else statistics.heights
    shortest = statistics.shortest_recon if hybrid else statistics.shortest_kspace
    if rows and crop_size > min(rows):
        rows_are = (
            "recon heights (layout hybrid stores only those rows)"
            if hybrid
            else ("k-space heights")
        )
        fix = " or convert with --layout=kspace" if hybrid else ""
        raise DataError(
            f"--crop_size={crop_size}: {where} has {rows_are} of {min(rows)}"
            f"{_named(shortest)}; use --crop_size={min(rows)} or less{fix}"
        )


def _named(smallest):
    """`` (file X)``: the volume a crop error is about, when the manifest records it."""
    return f" ({smallest['volume']})" if smallest else ""


@dataclasses.dataclass(frozen=True)
class _Split:
    """What reading one split of converted data needs to know about it."""

    name: str
    data_dir: str
    paths: tuple
    compression: str
    layout: str
    has_target: bool
    kspace_rank: int  # 2 single-coil, 3 multi-coil
    with_measured: bool
    num_widths: int
    num_recon_sizes: int


def _split(data_dir, split, options: PipelineOptions, training: bool) -> _Split:
    """The split's facts from its manifest, after checking it can be read as asked."""
    manifest, entry, paths = split_info(data_dir, split)
    has_target = entry.statistics.has_target
    if training and not has_target:
        raise DataError(f"{data_dir}: split {split!r} has no targets and cannot be trained on")
    if options.network_input:
        check_crop(manifest, split, options.crop_size)
    coils = list(entry.statistics.coils)
    if len(coils) != 1:
        raise DataError(
            f"{data_dir}: split {split!r} mixes single-coil and multi-coil volumes (coils "
            f"{coils}); convert them into separate directories"
        )
    kspace_rank = 3 if coils[0] > 1 else 2
    return _Split(
        split,
        data_dir,
        tuple(paths),
        manifest.reader_compression,
        manifest.layout,
        has_target,
        kspace_rank,
        options.data_consistency or options.measured,
        len(entry.statistics.kspace_shapes),
        len(entry.statistics.recon_sizes),
    )


def _prepare_split(split: _Split, features, mask, options, scored):
    if not options.network_input:
        return _scored_only(features, mask, split.has_target, split.with_measured, split.layout)
    return _prepare(
        features,
        mask,
        options.crop_size,
        split.has_target,
        split.with_measured,
        scored=scored,
        layout=split.layout,
        recon_crop=options.recon_crop and scored,
    )


def _training_slices(split: _Split, options: PipelineOptions, parallel):
    """Prepared training slices: this worker's shards, shuffled, a seeded mask per slice."""
    paths = split.paths
    count, index = options.file_shard
    if count > len(paths):
        raise DataError(
            f"{split.data_dir}: split {split.name!r} has {len(paths)} shard file(s) for "
            f"{count} workers; convert again with --num_shards={count} or more"
        )
    files = tf.data.Dataset.from_tensor_slices(list(paths)).shard(count, index)
    files = files.shuffle(len(paths), seed=options.seed, reshuffle_each_iteration=True)
    # Never more parallel reads than files read at once: tf.data refuses that (a
    # one-shard conversion on a 2-core machine).
    cycle = min(len(paths[index::count]), 4)
    records = files.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type=split.compression),
        cycle_length=cycle,
        num_parallel_calls=parallel if parallel == AUTOTUNE else min(parallel, cycle),
        deterministic=True,
    )
    records = records.shuffle(options.shuffle_buffer, seed=options.seed)

    def prepare(serialized):
        features = schema.parse_slice(serialized, split.kspace_rank)
        width = tf.shape(features["kspace"])[-1]
        seed = record_mask_seed(options.seed, features["volume"], features["slice_index"])
        mask, _ = masks.sample_mask(options.mask, width, seed)
        return _prepare_split(split, features, mask, options, scored=False)

    # In order: with the seeded shuffles, an epoch's batches are a function of the seed
    # alone, so a resumed epoch sees the batches the killed one would have.
    return records.map(prepare, num_parallel_calls=parallel, deterministic=True)


def _evaluation_slices(split: _Split, options: PipelineOptions, parallel):
    """Prepared slices in manifest order, each volume's fixed mask (test files: their own)."""
    records = tf.data.TFRecordDataset(
        list(split.paths), compression_type=split.compression, num_parallel_reads=None
    )

    def prepare(serialized):
        features = schema.parse_slice(serialized, split.kspace_rank)
        if not split.has_target:
            mask = features["mask"]  # test k-space is already undersampled
        else:
            width = tf.shape(features["kspace"])[-1]
            mask = fixed_volume_mask(options.mask, features["volume"], width)
        return _prepare_split(split, features, mask, options, scored=True)

    return records.map(prepare, num_parallel_calls=parallel, deterministic=True)


def _batched(dataset, split: _Split, options: PipelineOptions, training: bool):
    if not training and options.recon_crop and (split.num_widths > 1 or split.num_recon_sizes > 1):
        # Scored at each file's recon crop, whose size can change at any volume.
        return dataset.batch(1)
    if not split.with_measured or split.num_widths == 1:
        return dataset.batch(options.batch_size, drop_remainder=options.drop_remainder)
    if not training:
        # Evaluation keeps the slices in order; widths can change at any slice.
        return dataset.batch(1)

    # The measured data keep the k-space width, which differs between volumes: a batch
    # holds slices of one width.
    def width(inputs, *target):
        return tf.cast(tf.shape(inputs["mask"])[0], tf.int64)

    return dataset.group_by_window(
        width,
        lambda key, window: window.batch(options.batch_size, drop_remainder=options.drop_remainder),
        window_size=options.batch_size,
    )


def make_dataset(data_dir, split, options: PipelineOptions, training: bool) -> tf.data.Dataset:
    """The batched, prefetched dataset of one split of converted data.

    Training: shards interleaved in parallel, records shuffled, a random mask per slice;
    the order and the masks are a function of ``options.seed`` alone (each slice's mask
    of the seed, its volume and its index), whatever the parallelism: ``tfmri.train``
    gives every epoch a seed of its own.
    Evaluation: shards read in manifest order, slices of a volume contiguous and in
    order, the same fixed mask for every slice of a volume, identical on every pass.
    """
    if not options.network_input and (training or not options.recon_crop):
        raise ValueError("network_input=False is for evaluation at the recon crop only")
    facts = _split(data_dir, split, options, training)
    parallel = AUTOTUNE if options.parallel_calls is None else options.parallel_calls
    if training:
        dataset = _training_slices(facts, options, parallel)
    else:
        dataset = _evaluation_slices(facts, options, parallel)
    dataset = _batched(dataset, facts, options, training)
    if options.parallel_calls is None:
        return dataset.prefetch(AUTOTUNE)
    fixed = tf.data.Options()
    fixed.autotune.enabled = False
    return dataset.prefetch(2).with_options(fixed)
