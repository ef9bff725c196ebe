"""The TensorFlow-free TFRecord / tf.train.Example writer against TensorFlow's own."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT
from tfmri.data import records


def _example_from_protobuf_api(kspace, shape, name, value, index):
    feature = {
        "kspace": tf.train.Feature(bytes_list=tf.train.BytesList(value=[kspace.tobytes()])),
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(shape))),
        "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name])),
        "empty": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b""])),
        "value": tf.train.Feature(float_list=tf.train.FloatList(value=[value])),
        "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


@pytest.mark.parametrize("index", [0, 1, 127, 128, 300, 2**40, -1, -(2**63)])
def test_example_equals_the_protobuf_message(index):
    rng = np.random.default_rng(index % 1000)
    kspace = (rng.normal(size=(7, 1100)) + 1j * rng.normal(size=(7, 1100))).astype(np.complex64)
    buffers = records.example(
        {
            "kspace": records.bytes_feature(kspace),  # large: passed as a view
            "shape": records.int64_feature(kspace.shape),
            "name": records.bytes_feature(b"file1000001.h5"),
            "empty": records.bytes_feature(b""),
            "value": records.float_feature([0.000123]),
            "index": records.int64_feature([index]),
        }
    )
    assert any(isinstance(b, memoryview) for b in buffers), "k-space must not be copied"
    parsed = tf.train.Example.FromString(records.join(buffers))
    assert parsed == _example_from_protobuf_api(
        kspace, kspace.shape, b"file1000001.h5", 0.000123, index
    )


@pytest.mark.parametrize("compression", ["NONE", "GZIP"])
def test_tfrecord_file_equals_tensorflow_writer(tmp_path, compression):
    payloads = [b"", b"a", os.urandom(5000), np.arange(100_000, dtype=np.float32).tobytes()]
    mine, theirs = str(tmp_path / "mine"), str(tmp_path / "theirs")
    with records.RecordWriter(mine, compression) as writer:
        for payload in payloads:
            writer.write([payload[:10], memoryview(payload)[10:]])  # split buffers
    options = tf.io.TFRecordOptions(compression_type="" if compression == "NONE" else compression)
    with tf.io.TFRecordWriter(theirs, options) as writer:
        for payload in payloads:
            writer.write(payload)
    read = [r.numpy() for r in tf.data.TFRecordDataset(mine, options.compression_type)]
    assert read == payloads
    if compression == "NONE":  # the framing and checksums are byte for byte TensorFlow's
        assert open(mine, "rb").read() == open(theirs, "rb").read()


def test_corrupted_payload_fails_the_checksum(tmp_path):
    path = str(tmp_path / "records")
    with records.RecordWriter(path) as writer:
        writer.write(b"x" * 1000)
    data = bytearray(open(path, "rb").read())
    data[500] ^= 1
    open(path, "wb").write(bytes(data))
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(path))


def test_gzip_output_is_deterministic(tmp_path):
    files = []
    for name in ("a", "b"):
        files.append(str(tmp_path / name))
        with records.RecordWriter(files[-1], "GZIP") as writer:
            writer.write(b"same records" * 100)
    assert open(files[0], "rb").read() == open(files[1], "rb").read()


def test_generator_and_converter_do_not_load_tensorflow(singlecoil_raw, tmp_path):
    code = (
        "import sys; from tfmri.data import convert, synthetic; "
        f"convert.convert({singlecoil_raw!r}, {str(tmp_path)!r}, convert.ConvertOptions(num_workers=2)); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert os.path.exists(tmp_path / "manifest.json")
