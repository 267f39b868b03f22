"""The versioned bitstream container: round trips, and every damaged file is refused."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.codec.bitstream import MAGIC, MAX_SIDE, VERSION, Bitstream, pack, unpack
from bench.utils import BenchError

streams = st.builds(
    Bitstream,
    codec=st.just("mbt2018-mean"),
    quality=st.integers(0, 255),
    weights_hash=st.binary(min_size=8, max_size=8).map(bytes.hex),
    height=st.integers(1, MAX_SIDE),
    width=st.integers(1, MAX_SIDE),
    y_strings=st.lists(st.binary(max_size=64), max_size=4).map(tuple),
    z_strings=st.lists(st.binary(max_size=64), max_size=4).map(tuple),
)


def example() -> Bitstream:
    return Bitstream("mbt2018-mean", 3, "0123456789abcdef", 512, 768, (b"yyyy-payload",), (b"zz",))


@given(streams)
def test_round_trip(stream: Bitstream) -> None:
    assert unpack(pack(stream)) == stream


@given(streams)
def test_header_size_is_fixed_plus_four_bytes_per_string(stream: Bitstream) -> None:
    # magic 4, version 1, crc 4, codec 1, quality 1, hash 8, height 4, width 4, counts 2 = 29 bytes
    n_strings = len(stream.y_strings) + len(stream.z_strings)
    assert len(pack(stream)) == 29 + 4 * n_strings + stream.payload_bytes


@settings(max_examples=50)
@given(streams, st.data())
def test_any_truncation_is_refused(stream: Bitstream, data: st.DataObject) -> None:
    blob = pack(stream)
    cut = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(BenchError, match="truncated|not an rdp-bench"):
        unpack(blob[:cut])


@settings(max_examples=100)
@given(streams, st.data())
def test_any_flipped_byte_is_refused(stream: Bitstream, data: st.DataObject) -> None:
    blob = bytearray(pack(stream))
    position = data.draw(st.integers(0, len(blob) - 1))
    blob[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(BenchError):
        unpack(bytes(blob))


def test_wrong_magic_is_named() -> None:
    blob = b"PNG\x00" + pack(example())[4:]
    with pytest.raises(BenchError, match="not an rdp-bench bitstream"):
        unpack(blob, source="x.bin")


def test_unsupported_version_is_named() -> None:
    blob = bytearray(pack(example()))
    blob[len(MAGIC)] = VERSION + 1
    with pytest.raises(BenchError, match=f"version {VERSION + 1}"):
        unpack(bytes(blob))


def test_crc_mismatch_in_payload_is_named() -> None:
    blob = bytearray(pack(example()))
    blob[-1] ^= 0x01
    with pytest.raises(BenchError, match="CRC32"):
        unpack(bytes(blob))


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(BenchError, match="trailing"):
        unpack(pack(example()) + b"\x00")


def test_crc_covers_everything_after_its_field() -> None:
    blob = pack(example())
    (stored,) = struct.unpack(">I", blob[5:9])
    assert stored == zlib.crc32(blob[9:])


def test_source_name_appears_in_errors() -> None:
    with pytest.raises(BenchError, match="kodim01.bin"):
        unpack(b"", source="kodim01.bin")


@pytest.mark.parametrize(
    "field, value",
    [("codec", "jpeg"), ("quality", 256), ("weights_hash", "abc"), ("height", 0), ("width", 2**32)],
)
def test_pack_rejects_fields_that_do_not_fit(field: str, value: object) -> None:
    fields = {**example().__dict__, field: value}
    with pytest.raises(ValueError):
        Bitstream(**fields)
