"""The MSH codec on files: PNG → ``.bin`` containers → PNG, one file or a whole folder.

Every output goes through :func:`bench.utils.atomic_path`. Encoding a folder reads every image
first (by :func:`bench.images.load_rgb`'s rule per mode, and against the bitstream's size limit)
and, when any is bad, stops with one error listing every bad file and nothing written. Decoding a
folder likewise verifies every container (magic, version, size, CRC, weights hash, the header's
size against the z string) before it writes the first PNG; bad single files leave no output behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from bench.codec.bitstream import Bitstream, size_problem, unpack
from bench.codec.msh import (
    MSHCodec,
    decode_latent,
    encode,
    load_codec,
    synthesize_batch,
    verify_stream,
)
from bench.data import list_images
from bench.images import load_rgb, shape_batches
from bench.utils import BenchError, atomic_path, atomic_write_bytes, progress_options, short_list

T = TypeVar("T")


@dataclass(frozen=True)
class EncodeResult:
    """Size of one written container; ``bpp`` counts every byte of the file, header included."""

    bpp: float
    nbytes: int
    height: int
    width: int


def read_image(path: str | os.PathLike) -> Tensor:
    """An image file (:func:`bench.images.load_rgb`) as a [1,3,H,W] float tensor in [0,1]."""
    return torch.from_numpy(load_rgb(path).copy()).permute(2, 0, 1).unsqueeze(0).float().div(255.0)


def check_batch_size(batch_size: int) -> None:
    """A BenchError unless ``batch_size`` >= 1 (worded like ``decode --decoder diffusion``'s check)."""
    if batch_size < 1:
        raise BenchError(f"'batch_size' must be >= 1, got {batch_size}")


def _input_problem(path: Path) -> str | None:
    """Why the image file ``path`` cannot be encoded (unreadable, refused mode, too large), or None."""
    try:
        height, width = load_rgb(path).shape[:2]
    except BenchError as err:
        return str(err)
    problem = size_problem(height, width)
    return None if problem is None else f"{path} is too large to encode ({problem})"


def check_inputs(paths: Sequence[Path]) -> None:
    """Read every input image before anything is written; one BenchError lists every bad file."""
    problems = [problem for path in paths if (problem := _input_problem(path)) is not None]
    if len(problems) == 1 and len(paths) == 1:
        raise BenchError(problems[0])
    if problems:
        raise BenchError(
            f"{len(problems)} of {len(paths)} images cannot be encoded, nothing was written: {short_list(problems)}"
        )


def write_png(x: Tensor, path: str | os.PathLike) -> Path:
    """Write a [1,3,H,W] or [3,H,W] tensor in [0,1] as an 8-bit RGB PNG (rounded), atomically."""
    pixels = x.detach().squeeze(0).clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(pixels)).save(tmp, format="PNG")
    return Path(path)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _write_stream(path: Path, blob: bytes, height: int, width: int) -> EncodeResult:
    atomic_write_bytes(path, blob)
    return EncodeResult(len(blob) * 8 / (height * width), len(blob), height, width)


def encode_file(codec: MSHCodec, png: str | os.PathLike, out_bin: str | os.PathLike) -> EncodeResult:
    """Encode one image file into one container file."""
    check_inputs([Path(png)])
    image = read_image(png)
    return _write_stream(Path(out_bin), encode(codec, image)[0], *image.shape[-2:])


def encode_dir(
    codec: MSHCodec, src_dir: str | os.PathLike, out_dir: str | os.PathLike, *, batch_size: int = 4
) -> dict[str, EncodeResult]:
    """Encode every PNG of ``src_dir`` to ``out_dir/{name}.bin``; same-size images share a g_a batch.

    Every image is read and checked first (:func:`check_inputs`): a bad one stops the run before
    the first container is written, with every bad file named.
    """
    check_batch_size(batch_size)
    paths = list_images(src_dir)
    check_inputs(paths)
    results: dict[str, EncodeResult] = {}
    with tqdm(total=len(paths), desc=f"encode q{codec.quality}", unit="img", **progress_options()) as bar:
        for chunk in _chunks(paths, batch_size):
            images = {path: read_image(path) for path in chunk}
            for indices in shape_batches([tuple(images[path].shape) for path in chunk]):
                group = [chunk[i] for i in indices]
                blobs = encode(codec, torch.cat([images[p] for p in group]))
                for path, blob in zip(group, blobs, strict=True):
                    height, width = images[path].shape[-2:]
                    results[path.stem] = _write_stream(Path(out_dir) / f"{path.stem}.bin", blob, height, width)
            bar.update(len(chunk))
    return results


def read_stream(path: str | os.PathLike) -> bytes:
    """The bytes of a container file (a missing file is a BenchError)."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise BenchError(f"cannot read bitstream {path}: {err.strerror}") from None


def read_header(path: str | os.PathLike) -> Bitstream:
    """Parse and verify a container file (no model needed)."""
    return unpack(read_stream(path), source=str(path))


def bitstream_paths(src: str | os.PathLike) -> list[Path]:
    """``src`` itself when it is a file, else the ``*.bin`` files of the folder, sorted."""
    src = Path(src)
    if src.is_file():
        return [src]
    paths = sorted(src.glob("*.bin")) if src.is_dir() else []
    if not paths:
        raise BenchError(f"no bitstreams at {src}: give a .bin file or a folder of them (`python -m bench encode`)")
    return paths


def codec_for_streams(
    paths: Sequence[Path],
    *,
    checkpoint: str | os.PathLike | None = None,
    pretrained: bool = False,
    device: str | torch.device = "auto",
) -> MSHCodec:
    """Load the MSH codec at the quality recorded in the containers (all must share one)."""
    qualities = sorted({read_header(p).quality for p in paths})
    if len(qualities) != 1:
        raise BenchError(f"the bitstreams mix qualities {qualities}; decode one quality's folder at a time")
    return load_codec(qualities[0], checkpoint=checkpoint, pretrained=pretrained, device=device)


def decode_file(codec: MSHCodec, bin_path: str | os.PathLike, out_png: str | os.PathLike) -> Path:
    """Decode one container to its MSH reconstruction as an 8-bit PNG."""
    latent = decode_latent(codec, read_stream(bin_path), source=str(bin_path))
    return write_png(synthesize_batch(codec, [latent])[0], out_png)


def decode_dir(
    codec: MSHCodec, src_dir: str | os.PathLike, out_dir: str | os.PathLike, *, batch_size: int = 4
) -> list[Path]:
    """Decode every ``*.bin`` of ``src_dir`` to ``out_dir/{name}.png`` (all verified before any write)."""
    check_batch_size(batch_size)
    paths = bitstream_paths(src_dir)
    blobs = {path: read_stream(path) for path in paths}
    for path, blob in blobs.items():
        verify_stream(codec, blob, source=str(path))
    written = []
    with tqdm(total=len(paths), desc=f"decode q{codec.quality}", unit="img", **progress_options()) as bar:
        for chunk in _chunks(paths, batch_size):
            latents = [decode_latent(codec, blobs[path], source=str(path)) for path in chunk]
            for path, image in zip(chunk, synthesize_batch(codec, latents), strict=True):
                written.append(write_png(image, Path(out_dir) / f"{path.stem}.png"))
            bar.update(len(chunk))
    return written


def encode_path(
    codec: MSHCodec, src: str | os.PathLike, dst: str | os.PathLike, *, batch_size: int = 4
) -> dict[str, EncodeResult]:
    """:func:`encode_dir` when ``src`` is a folder, else :func:`encode_file` (``dst`` is then the .bin)."""
    if Path(src).is_dir():
        return encode_dir(codec, src, dst, batch_size=batch_size)
    return {Path(src).stem: encode_file(codec, src, dst)}


def decode_path(codec: MSHCodec, src: str | os.PathLike, dst: str | os.PathLike, *, batch_size: int = 4) -> list[Path]:
    """:func:`decode_dir` when ``src`` is a folder, else :func:`decode_file` (``dst`` is then the .png)."""
    if Path(src).is_dir():
        return decode_dir(codec, src, dst, batch_size=batch_size)
    return [decode_file(codec, src, dst)]
