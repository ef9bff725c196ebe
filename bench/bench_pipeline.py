"""Input pipeline and converter throughput on synthetic single-coil knee data.

  python bench/bench_pipeline.py [--num_volumes=40 --num_slices=30] [--coils=8]

Prints, on the same files and cores:
* a bare h5py read of every volume (the I/O ceiling) and the converter, in MB/s, both
  from disk (the files are evicted from the page cache first with posix_fadvise), and
  the bare read from the page cache (a memory-copy ceiling) for comparison;
* a straightforward per-slice h5py + NumPy loader (8x random mask, ifft2c, crop,
  normalise) and tfmri's tf.data training pipeline doing the same work, configured
  exactly as tfmri.train configures it (fixed parallelism of the core count, in-order
  reads and maps, shuffle buffer 64, batch 8), in slices/s;
* fastMRI's own loader on the same training files (bench/fastmri_loader.py:
  SliceDataset + UnetDataTransform, RandomMaskFunc 0.04 / 8x, DataLoader with 2
  workers), in a process of its own, in every repeat right after tfmri's pipeline;
and the ratios, each of two medians measured in this run. ``--coils=K`` (K > 1) makes
the same measurement on multi-coil files (every loader combines the coils by RSS;
fastMRI's with ``challenge="multicoil"``). Without fastMRI installed
(pip install -e ".[bench]") its row is skipped and no ratio to it is printed.
"""

import collections
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import flags, logging

from tfmri import cli

cli.quiet_tensorflow()

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from tfmri.data import convert, masks, pipeline, synthetic  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer(
    "num_volumes",
    40,
    "Synthetic volumes (train split gets most): 40 x 30 slices make a pass of 900 training "
    "slices, a few seconds for either loader, so per-pass start-up costs do not dominate.",
)
flags.DEFINE_integer("num_slices", 30, "Slices per volume.")
flags.DEFINE_integer("coils", 1, "1: single-coil files; K > 1: multi-coil files of K coils.")
flags.DEFINE_integer("batch_size", 8, "Batch size of both loaders.")
flags.DEFINE_integer("epochs", 5, "tfmri pipeline epochs timed (after one warm-up epoch).")
flags.DEFINE_integer("fastmri_passes", 2, "fastMRI loader passes timed (after one warm-up).")
flags.DEFINE_integer("repeats", 3, "Times each measurement is repeated; medians are printed.")

SPEC = masks.MaskSpec("random", (0.04,), (8,))
FASTMRI_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fastmri_loader.py")


def evict(paths):
    """Drops the files from the page cache, so that the next read comes from disk."""
    os.sync()  # dirty pages (files just written) cannot be dropped until written back
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def bare_read(paths):
    started, total = time.monotonic(), 0
    for path in paths:
        with h5py.File(path) as handle:
            for key in ("kspace", "reconstruction_esc"):
                if key in handle:
                    total += handle[key][()].nbytes
    return total / 1e6 / (time.monotonic() - started)


def run_converter(raw, records):
    """MB/s of python -m tfmri.convert, run as a user runs it (its workers load no TensorFlow)."""
    command = [sys.executable, "-m", "tfmri.convert", "--input_dir", raw]
    command += ["--output_dir", records, "--num_shards=4", "--num_workers=2"]
    subprocess.run(command, check=True, capture_output=True)
    with open(os.path.join(records, convert.MANIFEST)) as handle:
        manifest = json.load(handle)
    return manifest["bytes_converted"] / 1e6 / manifest["seconds"]


def numpy_loader(paths, batch_size):
    """The straightforward loader: per slice, read, mask, ifft2c, crop, normalise."""
    mask_function = masks.MaskFunction(SPEC, seed=0)
    index = []
    for path in paths:
        with h5py.File(path) as handle:
            index += [(path, s) for s in range(handle["kspace"].shape[0])]
    started, batch = time.monotonic(), []
    for path, slice_index in index:
        with h5py.File(path) as handle:
            kspace = handle["kspace"][slice_index]
            key = "reconstruction_rss" if kspace.ndim == 3 else "reconstruction_esc"
            target = handle[key][slice_index]
        mask, _ = mask_function(kspace.shape[-1])
        shifted = np.fft.ifftshift(kspace * mask, axes=(-2, -1))
        image = np.fft.fftshift(np.fft.ifft2(shifted, norm="ortho"), axes=(-2, -1))
        top, left = (image.shape[-2] - 320) // 2, (image.shape[-1] - 320) // 2
        image = np.abs(image[..., top : top + 320, left : left + 320])
        if image.ndim == 3:
            image = np.sqrt((image**2).sum(axis=0))
        mean, std = image.mean(), image.std(ddof=1)
        normalized = np.clip((image - mean) / (std + 1e-11), -6, 6)
        normalized_target = np.clip((target - mean) / (std + 1e-11), -6, 6)
        batch.append((normalized, normalized_target))
        if len(batch) == batch_size:
            np.stack([b[0] for b in batch]), np.stack([b[1] for b in batch])
            batch = []
    return len(index) / (time.monotonic() - started)


def tf_pipeline(records, split, batch_size, epochs):
    """slices/s of the training pipeline as tfmri.train builds it, one dataset per epoch."""

    def epoch_dataset(epoch):
        options = pipeline.PipelineOptions(
            SPEC,
            batch_size=batch_size,
            shuffle_buffer=64,  # tfmri.train's --shuffle_buffer default
            seed=epoch,
            drop_remainder=True,
            parallel_calls=os.cpu_count() or 1,
        )
        return pipeline.make_dataset(records, split, options, training=True)

    for _ in epoch_dataset(0):  # warm-up: graph tracing and file cache
        pass
    started, slices = time.monotonic(), 0
    for epoch in range(1, epochs + 1):
        for inputs, _ in epoch_dataset(epoch):
            slices += int(inputs["zero_filled"].shape[0])
    return slices / (time.monotonic() - started)


def fastmri_available():
    return all(importlib.util.find_spec(name) for name in ("fastmri", "torch"))


def fastmri_loader(train_dir, batch_size, passes, challenge):
    """slices/s of fastMRI's loader on the same files, in its own process."""
    command = [sys.executable, FASTMRI_SCRIPT, f"--split_dir={train_dir}"]
    command += [f"--challenge={challenge}"]
    command += [f"--batch_size={batch_size}", f"--passes={passes}"]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])["slices_per_second"]


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as workdir:
        raw = os.path.join(workdir, "raw")
        spec = synthetic.SyntheticSpec(
            FLAGS.num_volumes, FLAGS.num_slices, FLAGS.coils, 0, 0.15, 0.1
        )
        challenge = "multicoil" if FLAGS.coils > 1 else "singlecoil"
        written = synthetic.generate(spec, raw)
        train_paths = written["train"]
        all_paths = [p for split in written.values() for p in split]
        records = os.path.join(workdir, "records")
        measured = collections.defaultdict(list)
        for repeat in range(FLAGS.repeats):
            evict(all_paths)
            measured["ceiling"].append(bare_read(all_paths))
            measured["warm"].append(bare_read(all_paths))
            evict(all_paths)
            shutil.rmtree(records, ignore_errors=True)
            measured["converter"].append(run_converter(raw, records))
            os.sync()  # no write-back of the new shards while the loaders are timed
            measured["loader"].append(numpy_loader(train_paths, FLAGS.batch_size))
            measured["tfdata"].append(
                tf_pipeline(records, f"{challenge}_train", FLAGS.batch_size, FLAGS.epochs)
            )
            if fastmri_available():
                train_dir = os.path.dirname(train_paths[0])
                measured["fastmri"].append(
                    fastmri_loader(train_dir, FLAGS.batch_size, FLAGS.fastmri_passes, challenge)
                )
            logging.info("repeat %d: %s", repeat, {k: round(v[-1], 1) for k, v in measured.items()})
    ceiling, warm, converter, loader, tfdata = (
        statistics.median(measured[key])
        for key in ("ceiling", "warm", "converter", "loader", "tfdata")
    )

    print(f"medians of {FLAGS.repeats} runs")
    print(
        f"data: {len(all_paths)} volumes ({len(train_paths)} train) x {FLAGS.num_slices} slices, "
        f"{challenge} ({FLAGS.coils} coil(s)) 640 x W, 8x random"
    )
    print(f"bare h5py read from disk (I/O ceiling)   {ceiling:8.1f} MB/s")
    print(f"bare h5py read from the page cache       {warm:8.1f} MB/s")
    print(
        f"converter tool (2 workers, from disk)    {converter:8.1f} MB/s = "
        f"{converter / ceiling:.2f} x I/O ceiling, {converter / warm:.2f} x page-cache read"
    )
    print(f"per-slice h5py + NumPy loader            {loader:8.1f} slices/s")
    print(
        f"tfmri tf.data pipeline (as tfmri.train)  {tfdata:8.1f} slices/s = "
        f"{tfdata / loader:.2f} x loader"
    )
    if measured["fastmri"]:
        anchor = statistics.median(measured["fastmri"])
        print(
            f"fastMRI SliceDataset + UnetDataTransform, DataLoader 2 workers {anchor:8.1f} slices/s"
        )
        print(f"tfmri pipeline vs fastMRI's loader, measured in this run: {tfdata / anchor:.2f} x")
    else:
        print("fastMRI's loader: fastmri/torch not installed (pip install -e '.[bench]'), no ratio")


if __name__ == "__main__":
    cli.run(main)
