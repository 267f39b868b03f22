"""The on-disk container of one compressed image: a small versioned header, a CRC, the strings.

Layout of version 1 (big-endian; every field has a fixed size, so a reader needs no model to
check a file)::

    offset  size        field
    0       4           magic b"RDPB"
    4       1           format version (1)
    5       4           CRC32 of every byte after this field
    9       1           codec id (see CODEC_IDS)
    10      1           quality
    11      8           weights hash (the 16-hex state_dict_hash of the encoding model)
    19      4           original image height
    23      4           original image width
    27      1           number of y strings (ny)
    28      1           number of z strings (nz)
    29      4*(ny+nz)   length of each string, y strings first
    ...                 the y strings, then the z strings

Checks run in this order, so each bad file gets the message that names its fault: magic, version,
header size and string lengths against the file size (truncation), CRC, then the field values.
For mbt2018-mean (one y and one z string) the header is 37 bytes; bpp counts it.

Image sides are capped at :data:`MAX_SIDE` (16384) pixels although the fields hold 32 bits, so a
forged or damaged size is refused before a decoder allocates anything for it: 16384 is 8x the
longest side of any registered dataset (2040, DIV2K) and above any camera sensor's, while the MSH
synthesis of a 16384x16384 image would already need about N*H*W bytes (51 GB at N = 192) of
activations, so no image a machine here could decode is refused. Whether the sizes agree with the
strings is checked by the decoder (:func:`bench.codec.msh.decode_latent`).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from bench.utils import BenchError

MAGIC = b"RDPB"
VERSION = 1

# Codec names and their one-byte ids in the header. Ids are never reused once published.
CODEC_IDS: dict[str, int] = {"mbt2018-mean": 1}
_CODEC_NAMES = {code: name for name, code in CODEC_IDS.items()}

_PREFIX = struct.Struct(">4sBI")  # magic, version, crc32
_FIELDS = struct.Struct(">BB8sIIBB")  # codec id, quality, weights hash, height, width, ny, nz
_LENGTH = struct.Struct(">I")
_MAX_DIM = 2**32 - 1
_MAX_STRINGS = 255
MAX_SIDE = 2**14  # pixels per image side (module docstring)


def size_problem(height: int, width: int) -> str | None:
    """Why an image of ``height`` x ``width`` pixels cannot be stored, or None when it can."""
    if 1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE:
        return None
    return f"height {height}, width {width}: each side must be 1..{MAX_SIDE} pixels"


@dataclass(frozen=True)
class Bitstream:
    """One image's entropy-coded strings and the facts a decoder needs to read them back."""

    codec: str
    quality: int
    weights_hash: str  # 16 hex characters
    height: int
    width: int
    y_strings: tuple[bytes, ...]
    z_strings: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if self.codec not in CODEC_IDS:
            raise ValueError(f"unknown codec {self.codec!r} (known: {', '.join(CODEC_IDS)})")
        if not 0 <= self.quality <= 255:
            raise ValueError(f"quality {self.quality} does not fit in one byte")
        try:
            if len(bytes.fromhex(self.weights_hash)) != 8:
                raise ValueError
        except ValueError:
            raise ValueError(f"weights hash must be 16 hex characters, got {self.weights_hash!r}") from None
        if problem := size_problem(self.height, self.width):
            raise ValueError(problem)
        for name, strings in (("y", self.y_strings), ("z", self.z_strings)):
            if len(strings) > _MAX_STRINGS:
                raise ValueError(f"at most {_MAX_STRINGS} {name} strings, got {len(strings)}")
            if any(len(s) > _MAX_DIM for s in strings):
                raise ValueError(f"a {name} string is longer than {_MAX_DIM} bytes")

    @property
    def payload_bytes(self) -> int:
        """Bytes of entropy-coded strings (what compressai's own bpp figures count)."""
        return sum(map(len, self.y_strings)) + sum(map(len, self.z_strings))


def pack(stream: Bitstream) -> bytes:
    """Serialise ``stream`` into the version-1 container."""
    strings = (*stream.y_strings, *stream.z_strings)
    body = b"".join(
        (
            _FIELDS.pack(
                CODEC_IDS[stream.codec],
                stream.quality,
                bytes.fromhex(stream.weights_hash),
                stream.height,
                stream.width,
                len(stream.y_strings),
                len(stream.z_strings),
            ),
            *(_LENGTH.pack(len(s)) for s in strings),
            *strings,
        )
    )
    return _PREFIX.pack(MAGIC, VERSION, zlib.crc32(body)) + body


def unpack(data: bytes, *, source: str = "bitstream") -> Bitstream:
    """Parse and verify a container; any fault is a BenchError naming ``source`` and the fault."""
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            raise BenchError(f"{source} is truncated ({len(data)} bytes, not even a header)")
        raise BenchError(
            f"{source} is not an rdp-bench bitstream (starts with {data[:4]!r}, expected {MAGIC!r}); "
            "encode images with `python -m bench encode`"
        )
    if len(data) < _PREFIX.size + _FIELDS.size:
        raise BenchError(f"{source} is truncated ({len(data)} bytes, shorter than the header)")
    _, version, crc = _PREFIX.unpack_from(data)
    if version != VERSION:
        raise BenchError(
            f"{source} uses bitstream format version {version}; this rdp-bench reads version {VERSION} only"
        )
    codec_id, quality, weights_hash, height, width, ny, nz = _FIELDS.unpack_from(data, _PREFIX.size)
    lengths_at = _PREFIX.size + _FIELDS.size
    strings_at = lengths_at + _LENGTH.size * (ny + nz)
    if len(data) < strings_at:
        raise BenchError(f"{source} is truncated ({len(data)} bytes, shorter than its header of {strings_at})")
    lengths = [_LENGTH.unpack_from(data, lengths_at + _LENGTH.size * i)[0] for i in range(ny + nz)]
    expected = strings_at + sum(lengths)
    if len(data) != expected:
        fault = "truncated" if len(data) < expected else "corrupt (trailing bytes)"
        raise BenchError(f"{source} is {fault}: its header announces {expected} bytes, the file holds {len(data)}")
    actual_crc = zlib.crc32(memoryview(data)[_PREFIX.size :])
    if actual_crc != crc:
        raise BenchError(f"{source} is corrupt: CRC32 {actual_crc:08x} does not match the stored {crc:08x}")
    if codec_id not in _CODEC_NAMES:
        raise BenchError(f"{source} names codec id {codec_id}, unknown to this rdp-bench ({_CODEC_NAMES})")
    strings, offset = [], strings_at
    for length in lengths:
        strings.append(bytes(data[offset : offset + length]))
        offset += length
    try:
        return Bitstream(
            _CODEC_NAMES[codec_id], quality, weights_hash.hex(), height, width, tuple(strings[:ny]), tuple(strings[ny:])
        )
    except ValueError as err:
        raise BenchError(f"{source} has an invalid header: {err}") from None
