"""Evaluation images: a fetched dataset's images after its own preprocessing, as RGB PNGs."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from bench.data.fetching import fetch
from bench.data.registry import DATASETS, get_dataset
from bench.images import load_rgb
from bench.utils import BenchError, atomic_path


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The PNG images of a folder, sorted by name; an empty or missing folder is a BenchError.

    The message suggests fetching only when the folder is named after a registered dataset (a
    user's own folder gets no dataset hint).
    """
    folder = Path(folder)
    if not folder.is_dir():
        fault = f"folder {folder} does not exist" if not folder.exists() else f"{folder} is a file, not a folder"
    elif not (paths := sorted(folder.glob("*.png"))):
        fault = f"no PNG images (*.png) in {folder}"
    else:
        return paths
    if folder.name in DATASETS:
        fault += f"; run `python -m bench datasets fetch {folder.name} --root {folder.parent}` first"
    raise BenchError(fault)


def resize_short_side_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` (bicubic, antialiased), then centre-crop size×size."""
    w, h = image.size
    scale = size / min(w, h)
    resized = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
    return centre_crop(resized, size)


def centre_crop(image: Image.Image, size: int) -> Image.Image:
    """The central size×size square of an image at least that large in both sides."""
    w, h = image.size
    if min(w, h) < size:
        raise BenchError(f"cannot centre-crop a {w}x{h} image to {size}x{size}")
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


def prepare_eval(
    name: str,
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    max_images: int | None = None,
    crop: int | None = None,
    mirror: str | os.PathLike | None = None,
) -> list[Path]:
    """Fetch dataset ``name`` and write its evaluation images to ``out`` as RGB PNGs.

    Applies the dataset's own preprocessing (``eval_resize``), then keeps the first ``max_images``
    (by name) and centre-crops to ``crop`` when given (small CI runs).
    """
    spec = get_dataset(name)
    paths = fetch(name, root, mirror)[: max_images or None]
    written = []
    for path in paths:
        image = Image.fromarray(load_rgb(path))
        if spec.eval_resize is not None:
            image = resize_short_side_crop(image, spec.eval_resize)
        if crop is not None:
            image = centre_crop(image, crop)
        dest = Path(out) / f"{path.stem}.png"
        with atomic_path(dest) as tmp:
            image.save(tmp, format="PNG")
        written.append(dest)
    return written
