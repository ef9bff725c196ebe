"""fastMRI HDF5 volumes -> sharded TFRecords, in parallel, resumable and validated.

Layout of the output directory::

    manifest.json                      # written last: schema, shards, counts, statistics
    <split>/shard-00000-of-00004.tfrecord[.gz]
    <split>/shard-00000-of-00004.tfrecord[.gz].json   # the shard's own record (resume)

A split is a sub-directory of the input holding ``.h5`` files (``singlecoil_train``,
...), or the input directory itself. Volumes are dealt to shards round-robin in name
order, so the assignment depends only on the inputs and ``num_shards``. Each shard is
written under a temporary name, then its record, then renamed: a shard that exists
under its final name is complete. A rerun skips complete shards whose inputs and
options are unchanged and redoes the rest, so a run killed at any point and restarted
gives the same records as an uninterrupted one.
"""

import collections
import contextlib
import dataclasses
import glob
import json
import multiprocessing
import os
import sys
import time

from absl import logging

from tfmri import fileio, runlock
from tfmri.data import fastmri_files, records, schema
from tfmri.data import manifest as manifests
from tfmri.errors import UserError

COMPRESSIONS = {"NONE": "", "GZIP": ".gz"}
ON_ERROR = fastmri_files.ON_ERROR
MANIFEST = manifests.FILE_NAME


def tfrecord_compression(name):
    """The ``compression_type`` TensorFlow's TFRecord readers and writers take for a name."""
    return "" if name == "NONE" else name


class ConversionError(UserError):
    """A conversion that must stop; the message names the file and the fix."""


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    num_shards: int = 4
    num_workers: int = 2
    compression: str = "NONE"
    on_error: str = "fail"
    layout: str = "hybrid"  # what the records hold: schema.LAYOUTS

    def __post_init__(self):
        if self.num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {self.num_shards}")
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {self.num_workers}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(
                f"compression must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}"
            )
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be fail or skip, got {self.on_error!r}")
        if self.layout not in schema.LAYOUTS:
            raise ValueError(
                f"layout must be one of {', '.join(schema.LAYOUTS)}, got {self.layout!r}"
            )


@dataclasses.dataclass(frozen=True)
class ShardTask:
    split: str
    path: str  # final TFRecord path
    inputs: tuple[str, ...]  # HDF5 volumes, in write order
    compression: str
    on_error: str
    layout: str = "hybrid"

    @property
    def record_path(self):
        return self.path + ".json"

    def fingerprint(self):
        """What a finished shard must have been made from for a rerun to keep it."""
        files = []
        for path in self.inputs:
            try:
                status = os.stat(path)
                files.append([os.path.basename(path), status.st_size, status.st_mtime_ns])
            except OSError:  # a dangling link: read_volume names it, skip mode skips it
                files.append([os.path.basename(path), None, None])
        return {
            "schema_version": schema.SCHEMA_VERSION,
            "compression": self.compression,
            "on_error": self.on_error,
            "layout": self.layout,
            "inputs": files,
        }


def discover_splits(input_dir) -> dict[str, list[str]]:
    """Maps split name -> sorted HDF5 paths; raises FastMRIFileError when there are none.

    Sub-directories are taken by their real path: a symbolic link to the input itself or
    to a split already found is not a split of its own (its volumes would be converted
    twice); it is logged and left out.
    """
    if not os.path.isdir(input_dir):
        raise fastmri_files.FastMRIFileError(input_dir, "no such directory", "check --input_dir")
    splits = {}
    seen = {os.path.realpath(input_dir): os.path.basename(os.path.normpath(input_dir))}
    for entry in sorted(
        os.listdir(input_dir),
        key=lambda name: (os.path.islink(os.path.join(input_dir, name)), name),
    ):
        subdirectory = os.path.join(input_dir, entry)
        if os.path.isdir(subdirectory) and glob.glob(os.path.join(subdirectory, "*.h5")):
            real = os.path.realpath(subdirectory)
            if real in seen:
                logging.warning(
                    "%s: the same directory as %s (a link); not converted twice",
                    subdirectory,
                    seen[real],
                )
                continue
            seen[real] = entry
            splits[entry] = fastmri_files.list_volumes(subdirectory)
    if glob.glob(os.path.join(input_dir, "*.h5")):
        splits[os.path.basename(os.path.normpath(input_dir))] = fastmri_files.list_volumes(
            input_dir
        )
    if not splits:
        raise fastmri_files.FastMRIFileError(
            input_dir,
            "no .h5 files in the directory or its sub-directories",
            "point --input_dir at fastMRI data (e.g. the output of make_synthetic_fastmri.py)",
        )
    return splits


def plan(splits, output_dir, options: ConvertOptions) -> list[ShardTask]:
    """Deals each split's volumes round-robin over min(num_shards, volumes) shards."""
    tasks = []
    suffix = ".tfrecord" + COMPRESSIONS[options.compression]
    for split, paths in splits.items():
        count = min(options.num_shards, len(paths))
        for index in range(count):
            name = f"shard-{index:05d}-of-{count:05d}{suffix}"
            tasks.append(
                ShardTask(
                    split,
                    os.path.join(output_dir, split, name),
                    tuple(paths[index::count]),
                    options.compression,
                    options.on_error,
                    options.layout,
                )
            )
    return tasks


def is_complete(task: ShardTask) -> bool:
    """A shard is kept when it is a regular file (not a link) of the size its record
    gives, and the record is one this converter wrote for the same inputs and options."""
    if os.path.islink(task.path) or not os.path.isfile(task.path):
        return False
    try:
        with open(task.record_path) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return False
    if not (
        isinstance(record, dict)
        and record.get("fingerprint") == task.fingerprint()
        and record.get("file") == os.path.basename(task.path)
        and record.get("shard_bytes") == os.path.getsize(task.path)
        and isinstance(record.get("bytes_read"), int)
        and isinstance(record.get("volumes"), list)
        and isinstance(record.get("skipped"), list)
    ):
        return False
    volumes = record["volumes"]
    return all(
        isinstance(volume, dict) and _VOLUME_KEYS <= volume.keys() for volume in volumes
    ) and record.get("num_slices") == sum(volume["num_slices"] for volume in volumes)


# Set in each worker process: where to report finished volumes.
_progress_queue = None


def _init_worker(queue, parent=None):
    """Sets up the progress queue; in a worker process (``parent``: the converter's
    pid) also its signals: SIGINT ignored (a Ctrl-C reaches the whole process group;
    the converter handles it and terminates the pool), SIGTERM fatal (the pool's
    terminate() sends it; a forked worker would inherit the converter's handler), and
    SIGTERM too when the converter dies, however it dies, so that no worker writes
    shards after it is gone."""
    global _progress_queue
    _progress_queue = queue
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if parent is None:
        return
    import ctypes  # only worker processes need these two
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    pr_set_pdeathsig = 1  # <linux/prctl.h>: a signal for this process when its parent exits
    with contextlib.suppress(OSError, AttributeError):  # not Linux: only the pool's terminate
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)  # the converter died before prctl took effect


def convert_shard(task: ShardTask) -> dict:
    """Writes one shard and its record; returns the record."""

    volumes, skipped = [], []
    bytes_read = 0
    with fileio.atomic_path(task.path) as temporary:
        with records.RecordWriter(temporary, task.compression) as writer:
            for path in task.inputs:
                try:
                    volume = fastmri_files.read_volume(path)
                except fastmri_files.FastMRIFileError as error:
                    fastmri_files.on_bad_file(error, task.on_error, skipped, ConversionError)
                    _report(path, 0, 0)
                    continue
                for slice_index in range(volume.num_slices):
                    writer.write(schema.slice_example(volume, slice_index, task.layout))
                size = volume.kspace.nbytes + (0 if volume.target is None else volume.target.nbytes)
                bytes_read += size
                volumes.append(_volume_summary(volume))
                _report(path, volume.num_slices, size)
        record = {
            "split": task.split,
            "file": os.path.basename(task.path),
            "fingerprint": task.fingerprint(),
            "volumes": volumes,
            "skipped": skipped,
            "num_slices": sum(v["num_slices"] for v in volumes),
            "bytes_read": bytes_read,
            "shard_bytes": os.path.getsize(temporary),
        }
        fileio.write_json(task.record_path, record)
    return record


def _report(path, num_slices, num_bytes):
    if _progress_queue is not None:
        _progress_queue.put((path, num_slices, num_bytes))


# What a shard's record says of each volume (_volume_summary), read by the manifest.
_VOLUME_KEYS = {
    "volume",
    "num_slices",
    "kspace_shape",
    "coils",
    "recon_size",
    "acquisition",
    "max_value",
    "acceleration",
    "has_target",
}


def _volume_summary(volume):
    return {
        "volume": volume.name,
        "num_slices": volume.num_slices,
        "kspace_shape": list(volume.kspace.shape[1:]),
        "coils": volume.kspace.shape[1] if volume.is_multicoil else 1,
        "recon_size": list(volume.header.recon_size),
        "acquisition": volume.acquisition,
        "max_value": volume.max_value,
        "acceleration": volume.acceleration,
        "has_target": volume.target is not None,
    }


def _smallest(volumes, size):
    """{"volume", "size"} of the volume with the smallest ``size(volume)`` (None if none)."""
    if not volumes:
        return None
    volume = min(volumes, key=size)
    return {"volume": volume["volume"], "size": int(size(volume))}


def _split_statistics(records):
    volumes = [v for record in records for v in record["volumes"]]
    shapes = collections.Counter("x".join(map(str, v["kspace_shape"])) for v in volumes)
    maxima = [v["max_value"] for v in volumes if v["has_target"]]
    return {
        "num_volumes": len(volumes),
        "num_slices": sum(v["num_slices"] for v in volumes),
        "kspace_shapes": dict(sorted(shapes.items())),
        "coils": sorted({v["coils"] for v in volumes}),
        "recon_sizes": sorted({tuple(v["recon_size"]) for v in volumes}),
        # The volumes that limit the crop, named in the pipeline's errors.
        "narrowest": _smallest(volumes, lambda v: v["kspace_shape"][-1]),
        "shortest_recon": _smallest(volumes, lambda v: v["recon_size"][0]),
        "shortest_kspace": _smallest(volumes, lambda v: v["kspace_shape"][-2]),
        "acquisitions": dict(collections.Counter(v["acquisition"] for v in volumes)),
        "accelerations": dict(collections.Counter(str(v["acceleration"]) for v in volumes)),
        "has_target": all(v["has_target"] for v in volumes) if volumes else False,
        "target_max": {
            "min": min(maxima, default=0.0),
            "mean": sum(maxima) / len(maxima) if maxima else 0.0,
            "max": max(maxima, default=0.0),
        },
        "bytes_read": sum(record["bytes_read"] for record in records),
    }


def convert(input_dir, output_dir, options: ConvertOptions, progress=None, overwrite=False) -> dict:
    """Converts a directory of fastMRI volumes; returns the manifest (also written).

    ``progress(volume_path, num_slices, num_bytes)`` is called as each volume finishes.
    The conversion holds ``output_dir`` (:mod:`tfmri.runlock`). A directory that holds a
    conversion of another input is refused, or with ``overwrite`` emptied of it first.
    Raises ConversionError (``on_error='fail'``) naming the first bad file.
    """
    started = time.monotonic()
    splits = discover_splits(input_dir)
    with runlock.hold(output_dir, "a conversion", "--output_dir"):
        _claim(output_dir, input_dir, overwrite)
        return _convert(splits, input_dir, output_dir, options, progress, started)


def _claim(output_dir, input_dir, overwrite):
    """Records which input ``output_dir`` converts, refusing (or with ``overwrite``
    removing) the conversion of another input."""
    previous = manifests.input_dir_of(output_dir)
    same = previous is not None and os.path.realpath(previous) == os.path.realpath(input_dir)
    if overwrite:
        _remove_conversion(output_dir)
    elif previous is not None and not same:
        raise ConversionError(
            f"--output_dir={output_dir}: holds the conversion of {previous}, not "
            f"{os.path.abspath(input_dir)}; convert into another --output_dir, or add "
            "--overwrite to remove that conversion first"
        )
    manifests.record_input(output_dir, input_dir)


def _remove_conversion(output_dir):
    """Removes what a conversion wrote in ``output_dir``: shards, their records, manifest."""
    for pattern in ("*/shard-*-of-*.tfrecord*", "*/.*.tmp-*"):
        for path in glob.glob(os.path.join(output_dir, pattern)):
            os.remove(path)
    manifests.remove(output_dir)
    for entry in os.listdir(output_dir):
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(output_dir, entry))  # only the emptied split folders


def _convert(splits, input_dir, output_dir, options, progress, started):
    _remove_temporaries(output_dir)  # a killed run's unfinished shards
    tasks = plan(splits, output_dir, options)
    done = [task for task in tasks if is_complete(task)]
    todo = [task for task in tasks if task not in done]
    logging.info("%d shards to write, %d already complete", len(todo), len(done))
    records = {task.path: _load_record(task) for task in done}
    if progress is not None:
        for record in records.values():
            for volume in record["volumes"]:
                progress(volume["volume"], 0, 0)
            for skipped in record["skipped"]:
                progress(skipped["file"], 0, 0)
    for task in todo:
        os.makedirs(os.path.dirname(task.path), exist_ok=True)
    try:
        written = _run(todo, options.num_workers, progress)
    finally:
        _remove_temporaries(output_dir)
    records.update(written)

    manifest = {
        "schema_version": schema.SCHEMA_VERSION,
        "input_dir": os.path.abspath(input_dir),
        "compression": options.compression,
        "layout": options.layout,
        "num_shards": options.num_shards,
        "splits": {},
        "skipped": [],
        "seconds": time.monotonic() - started,
        "resumed_shards": len(done),
        "bytes_converted": sum(record["bytes_read"] for record in written.values()),
    }
    for split in splits:
        split_records = [records[t.path] for t in tasks if t.split == split]
        manifest["splits"][split] = {
            "shards": [os.path.join(split, record["file"]) for record in split_records],
            "shard_slices": [record["num_slices"] for record in split_records],
            "statistics": _split_statistics(split_records),
        }
        shard_bytes = [
            os.path.getsize(os.path.join(output_dir, shard))
            for shard in manifest["splits"][split]["shards"]
        ]
        manifest["splits"][split]["shard_bytes"] = shard_bytes
        manifest["splits"][split]["statistics"]["bytes_written"] = sum(shard_bytes)
        manifest["skipped"] += [s for record in split_records for s in record["skipped"]]
    manifests.write(output_dir, manifest)
    return manifest


def _remove_temporaries(output_dir):
    for leftover in glob.glob(os.path.join(output_dir, "*", ".*.tmp-*")):
        os.remove(leftover)


def _load_record(task):
    with open(task.record_path) as handle:
        return json.load(handle)


def _run(tasks, num_workers, progress):
    if not tasks:
        return {}

    def converted(task, convert):
        try:
            return convert()
        except OSError as error:
            if error.filename is not None or error.errno is None:
                raise  # named already, or a message only (h5py's), kept whole
            # A write to a full disk names no file: name the shard, for the one-line error.
            raise OSError(error.errno, error.strerror, task.path) from error

    if num_workers == 1 or len(tasks) == 1:
        results = {}
        queue = _CallbackQueue(progress)
        _init_worker(queue)
        try:
            for task in tasks:
                results[task.path] = converted(task, lambda task=task: convert_shard(task))
        finally:
            _init_worker(None)
        return results
    # The workers need no TensorFlow. Forking is instant, but forking a process that has
    # loaded TensorFlow (and its thread pools) can deadlock: then start them afresh.
    method = "spawn" if "tensorflow" in sys.modules else "fork"
    context = multiprocessing.get_context(method)
    queue = context.Queue()
    results = {}
    workers = min(num_workers, len(tasks))
    # Leaving the block by an exception (an error, Ctrl-C, SIGTERM) terminates the pool.
    with context.Pool(workers, _init_worker, (queue, os.getpid())) as pool:
        pending = [(task, pool.apply_async(convert_shard, (task,))) for task in tasks]
        while pending:
            _drain(queue, progress)
            still_pending = []
            for task, result in pending:
                if result.ready():
                    results[task.path] = converted(task, result.get)  # a worker's error
                else:
                    still_pending.append((task, result))
            pending = still_pending
            if pending:
                time.sleep(0.05)
        _drain(queue, progress)
    return results


def _drain(queue, progress):
    while not queue.empty():
        message = queue.get()
        if progress is not None:
            progress(*message)


class _CallbackQueue:
    """The in-process stand-in for the workers' progress queue."""

    def __init__(self, progress):
        self.progress = progress

    def put(self, message):
        if self.progress is not None:
            self.progress(*message)


def summary(manifest) -> str:
    """One line: volumes, slices, bytes and speed of a conversion."""
    statistics = [split["statistics"] for split in manifest["splits"].values()]
    bytes_read = manifest["bytes_converted"]
    seconds = max(manifest["seconds"], 1e-9)
    return (
        f"{sum(s['num_volumes'] for s in statistics)} volumes, "
        f"{sum(s['num_slices'] for s in statistics)} slices in {len(statistics)} splits; "
        f"{bytes_read / 1e6:.1f} MB converted, "
        f"{sum(s['bytes_written'] for s in statistics) / 1e6:.1f} MB written "
        f"in {seconds:.1f} s ({bytes_read / 1e6 / seconds:.1f} MB/s); "
        f"{manifest['resumed_shards']} shards kept from an earlier run, "
        f"{len(manifest['skipped'])} files skipped"
    )


def count_volumes(input_dir) -> int:
    return sum(len(paths) for paths in discover_splits(input_dir).values())
