"""TFRecord files and ``tf.train.Example`` protos written without TensorFlow.

The converter's workers use this so that they start in a fraction of a second (no
TensorFlow import) and hand the k-space bytes straight from the NumPy array to the
file: the proto's length-delimited fields are assembled as a list of buffers, the
TFRecord checksums are computed over those buffers, and the buffers are written one
after another, so a slice's k-space is never copied into an intermediate ``bytes``.

Wire formats (both are stable, documented formats):

* ``tf.train.Example``: protobuf ``Example{features: Features{map<string, Feature>}}``
  with ``Feature`` one of ``bytes_list`` (1), ``float_list`` (2), ``int64_list`` (3);
  map entries are written in sorted key order, so the bytes depend only on the values
  (a rerun of the converter writes identical files).
* TFRecord: per record, ``uint64 length``, ``uint32 masked_crc32c(length)``, the data,
  ``uint32 masked_crc32c(data)``, all little-endian. GZIP files are one gzip stream.
"""

import gzip
import struct

import crc32c

_MASK_DELTA = 0xA282EAD8


def masked_crc(buffers) -> int:
    """TFRecord's masked CRC-32C of the concatenation of ``buffers``."""
    crc = 0
    for buffer in buffers:
        crc = crc32c.crc32c(buffer, crc)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 two's complement, as protobuf encodes negative int64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(tag: int, payload_length: int) -> bytes:
    return bytes([tag]) + _varint(payload_length)


class Feature:
    """One feature's encoded ``Feature`` message, as header bytes plus an optional buffer."""

    def __init__(self, head: bytes, buffer=None):
        self.head = head
        self.buffer = buffer  # a large payload (k-space), written without a copy

    @property
    def size(self) -> int:
        return len(self.head) + (0 if self.buffer is None else memoryview(self.buffer).nbytes)

    def buffers(self):
        return [self.head] if self.buffer is None else [self.head, self.buffer]


def bytes_feature(value) -> Feature:
    """``Feature{bytes_list{value: [value]}}``; ``value`` is bytes or a contiguous array."""
    length = memoryview(value).nbytes
    inner = _length_delimited(0x0A, length)  # BytesList.value
    head = _length_delimited(0x0A, len(inner) + length) + inner  # Feature.bytes_list
    if length > 4096:
        return Feature(head, memoryview(value).cast("B"))
    return Feature(head + bytes(memoryview(value).cast("B")))


def int64_feature(values) -> Feature:
    """``Feature{int64_list{value: values}}`` (packed)."""
    packed = b"".join(_varint(int(v)) for v in values)
    inner = _length_delimited(0x0A, len(packed)) + packed
    return Feature(_length_delimited(0x1A, len(inner)) + inner)


def float_feature(values) -> Feature:
    """``Feature{float_list{value: values}}`` (packed float32)."""
    packed = struct.pack(f"<{len(values)}f", *values)
    inner = _length_delimited(0x0A, len(packed)) + packed
    return Feature(_length_delimited(0x12, len(inner)) + inner)


def example(features: dict) -> list:
    """Encodes ``{name: Feature}`` as a serialised ``tf.train.Example``, as a list of buffers."""
    entries, size = [], 0
    for name in sorted(features):
        key = name.encode()
        feature = features[name]
        entry_head = _length_delimited(0x0A, len(key)) + key
        entry_head += _length_delimited(0x12, feature.size)  # MapEntry.value
        entry_size = len(entry_head) + feature.size
        entry_head = _length_delimited(0x0A, entry_size) + entry_head  # Features.feature
        entries.append(entry_head)
        entries.extend(feature.buffers())
        size += len(entry_head) + feature.size
    return [_length_delimited(0x0A, size)] + entries  # Example.features


def join(buffers) -> bytes:
    return b"".join(buffers)


class RecordWriter:
    """Writes TFRecord files readable by ``tf.data.TFRecordDataset``.

    ``compression`` is ``"NONE"`` or ``"GZIP"``. The gzip header carries no file name or
    time stamp, so the same records always give the same file.
    """

    def __init__(self, path, compression="NONE"):
        if compression not in ("NONE", "GZIP"):
            raise ValueError(f"compression must be NONE or GZIP, got {compression!r}")
        self._raw = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._file = self._raw
        if compression == "GZIP":
            self._file = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0)

    def write(self, buffers):
        """Writes one record given as a list of buffers (or a single bytes object)."""
        if isinstance(buffers, (bytes, bytearray, memoryview)):
            buffers = [buffers]
        length = struct.pack("<Q", sum(memoryview(b).nbytes for b in buffers))
        self._file.write(length + struct.pack("<I", masked_crc([length])))
        for buffer in buffers:
            self._file.write(buffer)
        self._file.write(struct.pack("<I", masked_crc(buffers)))

    def close(self):
        if self._file is not self._raw:
            self._file.close()
        self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def find_corruption(path, compression="NONE"):
    """The first damaged record of a TFRecord file: (byte offset, problem), or None.

    Checks every record's length and data checksums. For GZIP files the offset is
    into the decompressed stream.
    """
    opener = gzip.open if compression == "GZIP" else open
    offset = 0
    try:
        with opener(path, "rb") as handle:
            while True:
                head = handle.read(12)
                if not head:
                    return None
                if len(head) < 12:
                    return offset, "truncated record header"
                length_bytes = head[:8]
                if struct.unpack("<I", head[8:])[0] != masked_crc([length_bytes]):
                    return offset, "record length checksum mismatch"
                (length,) = struct.unpack("<Q", length_bytes)
                data = handle.read(length)
                footer = handle.read(4)
                if len(data) < length or len(footer) < 4:
                    return offset, "truncated record"
                if struct.unpack("<I", footer)[0] != masked_crc([data]):
                    return offset, "record data checksum mismatch"
                offset += 12 + length + 4
    except (OSError, EOFError) as error:
        return offset, f"unreadable ({error})"
