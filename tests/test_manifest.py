"""The typed manifest: what the converter wrote, read back; old and broken files."""

import json
import os
import shutil

import pytest

from tfmri.data import manifest


def _copy(records, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(records, copy)
    with open(copy / manifest.FILE_NAME) as handle:
        return copy, json.load(handle)


def test_reads_what_the_converter_wrote(singlecoil_records, tmp_path):
    copy, raw = _copy(singlecoil_records, tmp_path)
    read = manifest.read(str(copy))
    for name, entry in raw["splits"].items():
        split = read.split(name)
        assert list(split.shards) == entry["shards"]
        assert split.num_slices == sum(entry["shard_slices"])
        assert split.statistics.num_volumes == entry["statistics"]["num_volumes"]
        assert sorted(split.statistics.widths) == sorted(
            int(shape.split("x")[-1]) for shape in entry["statistics"]["kspace_shapes"]
        )
    assert read.layout == raw["layout"] and read.reader_compression == ""
    assert read.shard_paths("singlecoil_train")[0] == os.path.join(
        str(copy), raw["splits"]["singlecoil_train"]["shards"][0]
    )


def test_an_old_manifest_without_layout_reads_as_kspace(singlecoil_records, tmp_path):
    copy, raw = _copy(singlecoil_records, tmp_path)
    del raw["layout"]
    (copy / manifest.FILE_NAME).write_text(json.dumps(raw))
    assert manifest.read(str(copy)).layout == "kspace"


def test_an_incomplete_manifest_is_one_line(singlecoil_records, tmp_path):
    copy, raw = _copy(singlecoil_records, tmp_path)
    del raw["splits"]["singlecoil_train"]["shard_slices"]
    (copy / manifest.FILE_NAME).write_text(json.dumps(raw))
    with pytest.raises(manifest.DataError, match="incomplete manifest .*rerun the conversion"):
        manifest.read(str(copy))
