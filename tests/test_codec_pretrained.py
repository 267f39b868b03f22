"""compressai's pretrained mbt2018-mean q1 on Kodak through our files matches its published figures.

CompressAI ``results/image/kodak/compressai-mbt2018-mean_mse_cuda.json``, quality 1: 0.1239 bpp and
27.70 dB PSNR-RGB, averaged over the 24 images. compressai counts the entropy-coded strings only,
so the rate compared here is the container's payload; the header adds 37 bytes per image.
Runs only when the zoo file is in $TORCH_HOME (or ../shared/torch_home) and Kodak is mirrored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.codec import decode_dir, encode_dir, load_codec, read_header
from bench.codec.checkpoints import zoo_weights_path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PUBLISHED_BPP, PUBLISHED_PSNR = 0.1239, 27.70


def psnr_rgb(reference: Path, decoded: Path) -> float:
    a = np.asarray(Image.open(reference).convert("RGB"), dtype=np.float64)
    b = np.asarray(Image.open(decoded).convert("RGB"), dtype=np.float64)
    return 10 * np.log10(255.0**2 / np.mean((a - b) ** 2))


@pytest.mark.pretrained
def test_kodak_q1_matches_compressai(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if "TORCH_HOME" not in os.environ and (SHARED / "torch_home").is_dir():
        monkeypatch.setenv("TORCH_HOME", str(SHARED / "torch_home"))
    if not zoo_weights_path(1).is_file():
        pytest.skip(f"compressai zoo weights {zoo_weights_path(1)} are not available offline")
    kodak = Path(os.environ.get("BENCH_DATA_MIRROR") or SHARED / "data") / "kodak"
    if len(list(kodak.glob("kodim*.png"))) != 24:
        pytest.skip(f"the 24 Kodak images are not in {kodak}")

    codec = load_codec(1, pretrained=True)
    encode_dir(codec, kodak, tmp_path / "bits")
    decode_dir(codec, tmp_path / "bits", tmp_path / "rec")
    bpps, psnrs = [], []
    for image in sorted(kodak.glob("kodim*.png")):
        header = read_header(tmp_path / "bits" / f"{image.stem}.bin")
        bpps.append(header.payload_bytes * 8 / (header.height * header.width))
        psnrs.append(psnr_rgb(image, tmp_path / "rec" / f"{image.stem}.png"))
    assert abs(np.mean(bpps) - PUBLISHED_BPP) <= 0.01 * PUBLISHED_BPP
    assert abs(np.mean(psnrs) - PUBLISHED_PSNR) <= 0.05
