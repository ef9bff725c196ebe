"""``manifest.json`` of a converted directory: the one module that writes and reads it.

The converter (:mod:`tfmri.data.convert`) builds the record and :func:`write` stores
it, last, once every shard is complete; the pipeline, training, evaluation and the
report read it with :func:`read`, typed. Layout of the file::

    {"schema_version", "input_dir", "compression", "layout", "num_shards",
     "splits": {split: {"shards", "shard_slices", "shard_bytes", "statistics"}},
     "skipped", "seconds", "resumed_shards", "bytes_converted"}
"""

import contextlib
import dataclasses
import json
import os

from tfmri import fileio
from tfmri.data import schema
from tfmri.errors import UserError

FILE_NAME = "manifest.json"
# Written when a conversion starts, long before the manifest: which input the directory
# converts, for reruns and for other conversions that find it unfinished.
START_FILE = ".conversion.json"


class DataError(UserError):
    """Converted data that cannot be used as asked; the message names the fix."""


@dataclasses.dataclass(frozen=True)
class Statistics:
    """What the converter saw in one split's volumes."""

    num_volumes: int
    num_slices: int
    kspace_shapes: dict  # "HxW" or "CxHxW" -> volumes of that shape
    coils: tuple  # the coil counts present (1: single-coil)
    recon_sizes: tuple  # (height, width) pairs present
    has_target: bool
    target_max: dict  # min, mean, max of the volumes' target maxima
    acquisitions: dict = dataclasses.field(default_factory=dict)
    accelerations: dict = dataclasses.field(default_factory=dict)
    bytes_read: int = 0
    bytes_written: int = 0
    # {"volume", "size"} of the volume with the fewest k-space columns, recon rows and
    # k-space rows (None in manifests written before they were recorded).
    narrowest: dict | None = None
    shortest_recon: dict | None = None
    shortest_kspace: dict | None = None

    @property
    def widths(self) -> list[int]:
        """The k-space widths present."""
        return [int(shape.split("x")[-1]) for shape in self.kspace_shapes]

    @property
    def heights(self) -> list[int]:
        """The k-space heights present."""
        return [int(shape.split("x")[-2]) for shape in self.kspace_shapes]


@dataclasses.dataclass(frozen=True)
class Split:
    name: str
    shards: tuple  # paths relative to the data directory
    shard_slices: tuple
    shard_bytes: tuple | None  # None in manifests written before sizes were recorded
    statistics: Statistics

    @property
    def num_slices(self) -> int:
        return sum(self.shard_slices)


@dataclasses.dataclass(frozen=True)
class Manifest:
    directory: str  # where it was read from
    schema_version: int
    input_dir: str
    compression: str  # NONE or GZIP
    layout: str  # what the records hold: schema.LAYOUTS
    splits: dict  # name -> Split
    skipped: tuple = ()

    @property
    def reader_compression(self) -> str:
        """The ``compression_type`` of TensorFlow's TFRecord readers for these shards."""
        return "" if self.compression == "NONE" else self.compression

    def split(self, name) -> Split:
        """The split ``name``; DataError naming the ones present otherwise."""
        if name not in self.splits:
            raise DataError(
                f"{self.directory}: no split {name!r}; the manifest has {', '.join(self.splits)}"
            )
        return self.splits[name]

    def shard_paths(self, name) -> list[str]:
        """The split's shard files, each checked to exist with its recorded size."""
        split = self.split(name)
        paths = [os.path.join(self.directory, shard) for shard in split.shards]
        sizes = split.shard_bytes or (None,) * len(paths)
        for path, expected in zip(paths, sizes):
            if not os.path.exists(path):
                raise DataError(
                    f"{path}: shard listed in the manifest is missing; rerun the conversion"
                )
            if expected is not None and os.path.getsize(path) != expected:
                raise DataError(
                    f"{path}: {os.path.getsize(path)} bytes, the manifest says {expected}: the "
                    "shard is truncated or was changed; delete it and rerun the conversion"
                )
        if not paths:
            raise DataError(f"{self.directory}: split {name!r} has no shards")
        return paths


def _split(name, entry) -> Split:
    raw = dict(entry["statistics"])
    fields = {field.name for field in dataclasses.fields(Statistics)}
    raw = {key: value for key, value in raw.items() if key in fields}
    raw["coils"] = tuple(raw["coils"])
    raw["recon_sizes"] = tuple(tuple(size) for size in raw["recon_sizes"])
    shard_bytes = entry.get("shard_bytes")
    return Split(
        name,
        tuple(entry["shards"]),
        tuple(entry["shard_slices"]),
        None if shard_bytes is None else tuple(shard_bytes),
        Statistics(**raw),
    )


def read(data_dir) -> Manifest:
    """The manifest of a converted directory, checked against this tfmri's schema."""
    path = os.path.join(data_dir, FILE_NAME)
    if not os.path.exists(path):
        raise DataError(
            f"{path}: no manifest; convert the data first with python -m tfmri.convert "
            "(an interrupted conversion has no manifest: rerun it to finish)"
        )
    try:
        with open(path) as handle:
            record = json.load(handle)
    except ValueError as error:
        raise DataError(f"{path}: not valid JSON ({error}); rerun the conversion") from None
    if record.get("schema_version") != schema.SCHEMA_VERSION:
        raise DataError(
            f"{path}: written with schema version {record.get('schema_version')}, this tfmri "
            f"reads version {schema.SCHEMA_VERSION}; convert the data again"
        )
    layout = record.get("layout", "kspace")  # conversions before layouts held k-space
    if layout not in schema.LAYOUTS:
        raise DataError(f"{path}: layout {layout!r} unknown; rerun the conversion")
    try:
        splits = {name: _split(name, entry) for name, entry in record["splits"].items()}
        return Manifest(
            directory=data_dir,
            schema_version=record["schema_version"],
            input_dir=record.get("input_dir", ""),
            compression=record.get("compression", "NONE"),
            layout=layout,
            splits=splits,
            skipped=tuple(record.get("skipped", ())),
        )
    except (KeyError, TypeError) as error:
        raise DataError(f"{path}: incomplete manifest ({error}); rerun the conversion") from None


def write(output_dir, record: dict):
    """Writes the converter's manifest record, atomically (the conversion's last file)."""
    fileio.write_json(os.path.join(output_dir, FILE_NAME), record)


def record_input(output_dir, input_dir):
    """Notes, before any shard, that ``output_dir`` holds a conversion of ``input_dir``."""
    fileio.write_json(
        os.path.join(output_dir, START_FILE), {"input_dir": os.path.abspath(input_dir)}
    )


def input_dir_of(output_dir):
    """The input directory of the conversion ``output_dir`` holds, finished (its manifest)
    or not (its start record), or None."""
    for name in (FILE_NAME, START_FILE):
        try:
            with open(os.path.join(output_dir, name)) as handle:
                return json.load(handle)["input_dir"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def remove(output_dir):
    """Removes the manifest and the start record of ``output_dir``, if there."""
    for name in (FILE_NAME, START_FILE):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(output_dir, name))
