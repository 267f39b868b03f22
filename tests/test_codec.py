"""The MSH codec end to end with small random-init models: real entropy coding, real files.

References come from compressai itself: the eval-mode ``forward`` of the same model (its quantised
latent is the input of ``g_s``, captured with a hook; its output is ``x_hat``).
"""

from __future__ import annotations

import json
import re
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from compressai.models import MeanScaleHyperprior
from compressai.ops import compute_padding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.cli import main
from bench.codec import (
    MSHCodec,
    decode_dir,
    decode_latent,
    encode,
    encode_dir,
    encode_file,
    load_codec,
    pad,
    read_image,
    synthesize,
    training_latent,
    unpad,
)
from bench.codec.checkpoints import save_checkpoint, zoo_weights_path
from bench.utils import BenchError
from tests.weight_files import register_hashes


def tiny_net(seed: int) -> MeanScaleHyperprior:
    """A small random-init model whose latents span many integers (g_a's last layer scaled up)."""
    torch.manual_seed(seed)
    net = MeanScaleHyperprior(N=16, M=24)
    with torch.no_grad():
        net.g_a[-1].weight.mul_(20.0)
    net.update(force=True)
    return net.eval()


@pytest.fixture(scope="module")
def codec() -> MSHCodec:
    return MSHCodec.from_net(tiny_net(0), quality=1, device="cpu")


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "q1.pt"
    save_checkpoint(path, tiny_net(0), quality=1, lmbda=0.0018, step=0)
    return path


def smooth_images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Images in [0, 1] with structure at several scales (upsampled noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, max(1, height // 8), max(1, width // 8), generator=g)
    fine = torch.rand(batch, 3, height, width, generator=g)
    up = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return (0.8 * up + 0.2 * fine).clamp(0, 1)


def write_pngs(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        pixels = (smooth_images(1, h, w, seed=i)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        paths.append(folder / f"img{i:02d}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def compressai_reference(net: MeanScaleHyperprior, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(quantised y fed to g_s, x_hat clamped and cropped) from compressai's eval-mode forward."""
    padding, unpadding = compute_padding(x.size(-2), x.size(-1), min_div=64)
    captured: list[torch.Tensor] = []
    hook = net.g_s.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    with torch.no_grad():
        out = net(F.pad(x, padding))
    hook.remove()
    return captured[0], F.pad(out["x_hat"].clamp(0, 1), unpadding)


# ----------------------------------------------------------------------------- tensors


@pytest.mark.parametrize("size", [(64, 64), (40, 100), (130, 70)])
def test_round_trip_matches_compressai_forward(codec: MSHCodec, size: tuple[int, int]) -> None:
    x = smooth_images(1, *size)
    y_ref, x_ref = compressai_reference(codec.net, x)
    latent = decode_latent(codec, encode(codec, x)[0])
    assert torch.equal(latent.y_hat, y_ref)
    assert len(torch.unique(latent.y_hat.round())) > 5, "the test model's latent is degenerate"
    x_hat = synthesize(codec, latent)
    assert x_hat.shape == x.shape
    assert torch.allclose(x_hat, x_ref, atol=1e-5, rtol=0)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(height=st.integers(1, 150), width=st.integers(1, 150))
def test_any_size_round_trips(codec: MSHCodec, height: int, width: int) -> None:
    x = smooth_images(1, height, width)
    latent = decode_latent(codec, encode(codec, x)[0])
    assert (latent.height, latent.width) == (height, width)
    assert latent.y_hat.shape[-2:] == (-(-height // 64) * 4, -(-width // 64) * 4)
    y_ref, x_ref = compressai_reference(codec.net, x)
    assert torch.equal(latent.y_hat, y_ref)
    assert torch.allclose(synthesize(codec, latent), x_ref, atol=1e-5, rtol=0)
    padded_shape = tuple(16 * n for n in latent.y_hat.shape[-2:])
    assert synthesize(codec, latent, padded=True).shape[-2:] == padded_shape


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (33, 71), (128, 64)])
def test_training_latent_equals_decoded_latent_bit_exactly(codec: MSHCodec, size: tuple[int, int]) -> None:
    x = smooth_images(3, *size, seed=7)
    batch_latent = training_latent(codec, x)
    for i, blob in enumerate(encode(codec, x)):
        assert torch.equal(batch_latent[i : i + 1], decode_latent(codec, blob).y_hat)


def test_pad_unpad_inverse() -> None:
    x = torch.rand(2, 3, 37, 90)
    padded, padding = pad(x)
    assert padded.shape[-2:] == (64, 128)
    assert torch.equal(unpad(padded, padding), x)


def test_each_image_gets_its_own_container(codec: MSHCodec) -> None:
    x = smooth_images(2, 64, 64)
    x[1] = 1 - x[1]
    first, second = encode(codec, x)
    assert first != second
    assert torch.equal(decode_latent(codec, second).y_hat, decode_latent(codec, encode(codec, x[1:])[0]).y_hat)


def test_weights_hash_mismatch_names_both_hashes(codec: MSHCodec) -> None:
    other = MSHCodec.from_net(tiny_net(1), quality=1, device="cpu")
    blob = encode(other, smooth_images(1, 64, 64))[0]
    with pytest.raises(BenchError, match=f"{other.weights_hash}.*{codec.weights_hash}"):
        decode_latent(codec, blob)


# ----------------------------------------------------------------------------- files


def test_bpp_is_file_bits_over_pixels(codec: MSHCodec, tmp_path: Path) -> None:
    png = write_pngs(tmp_path / "img", [(50, 90)])[0]
    result = encode_file(codec, png, tmp_path / "a.bin")
    nbytes = (tmp_path / "a.bin").stat().st_size
    assert (result.nbytes, result.height, result.width) == (nbytes, 50, 90)
    assert result.bpp == nbytes * 8 / (50 * 90)


def test_folder_round_trip_equals_single_decodes(codec: MSHCodec, tmp_path: Path) -> None:
    sizes = [(64, 96), (96, 64), (64, 96), (70, 50), (64, 96)]
    write_pngs(tmp_path / "img", sizes)
    results = encode_dir(codec, tmp_path / "img", tmp_path / "bits", batch_size=3)
    assert sorted(results) == [f"img{i:02d}" for i in range(len(sizes))]
    written = decode_dir(codec, tmp_path / "bits", tmp_path / "rec", batch_size=3)
    assert len(written) == len(sizes)
    for i, (h, w) in enumerate(sizes):
        image = read_image(tmp_path / "img" / f"img{i:02d}.png")
        single = synthesize(codec, decode_latent(codec, encode(codec, image)[0]))
        decoded = np.asarray(Image.open(tmp_path / "rec" / f"img{i:02d}.png"))
        expected = (single[0].permute(1, 2, 0).numpy() * 255).round()
        assert decoded.shape == (h, w, 3)
        assert np.abs(decoded.astype(float) - expected).max() <= 1  # g_s batches may differ by an ulp


# ----------------------------------------------------------------------------- loading


def test_load_codec_needs_exactly_one_source(checkpoint: Path) -> None:
    with pytest.raises(BenchError, match="exactly one"):
        load_codec(1)
    with pytest.raises(BenchError, match="exactly one"):
        load_codec(1, checkpoint=checkpoint, pretrained=True)


def test_checkpoint_round_trip_keeps_the_weights_hash(codec: MSHCodec, checkpoint: Path) -> None:
    assert load_codec(1, checkpoint=checkpoint, device="cpu").weights_hash == codec.weights_hash


def test_checkpoint_of_another_quality_is_refused(checkpoint: Path) -> None:
    with pytest.raises(BenchError, match="quality-1 model"):
        load_codec(2, checkpoint=checkpoint)


def test_raw_compressai_state_dict_loads(codec: MSHCodec, tmp_path: Path) -> None:
    path = tmp_path / "raw.pth.tar"
    torch.save(tiny_net(0).state_dict(), path)
    assert load_codec(1, checkpoint=path, device="cpu").weights_hash == codec.weights_hash


def test_missing_and_corrupt_checkpoints_are_named(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="not found"):
        load_codec(1, checkpoint=tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match="junk.pt"):
        load_codec(1, checkpoint=tmp_path / "junk.pt")


def offline(*args: object, **kwargs: object) -> None:
    """Stands in for ``urllib.request.urlopen`` on a machine without a network."""
    raise urllib.error.URLError("network unreachable")


def test_pretrained_offline_names_file_and_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr("urllib.request.urlopen", offline)
    name = zoo_weights_path(1).name
    assert name.startswith("mbt2018-mean-1-")
    with pytest.raises(BenchError, match=f"{name}.*TORCH_HOME={tmp_path}"):
        load_codec(1, pretrained=True)
    assert list(tmp_path.rglob("*")) == [tmp_path / "hub", tmp_path / "hub" / "checkpoints"]


def test_pretrained_reads_the_torch_home_cache_without_network(
    codec: MSHCodec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr("urllib.request.urlopen", offline)
    cached = zoo_weights_path(2)
    cached.parent.mkdir(parents=True)
    torch.save(tiny_net(0).state_dict(), cached)  # stands in for the zoo file (same format, smaller model)
    register_hashes(monkeypatch, tmp_path / "hashes.txt", cached)  # a stand-in is "real" only once registered
    loaded = load_codec(2, pretrained=True, device="cpu")
    assert loaded.quality == 2 and loaded.weights_hash == codec.weights_hash


# ----------------------------------------------------------------------------- CLI


def test_cli_encode_then_decode(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = write_pngs(tmp_path / "img", [(72, 100)])[0]
    assert main(["encode", str(png), str(tmp_path / "a.bin"), "--quality", "1", "--checkpoint", str(checkpoint)]) == 0
    bpp = (tmp_path / "a.bin").stat().st_size * 8 / (72 * 100)
    assert f"{bpp:.4f} bpp" in capsys.readouterr().out
    args = ["decode", str(tmp_path / "a.bin"), str(tmp_path / "a.png"), "--decoder", "msh"]
    assert main([*args, "--checkpoint", str(checkpoint)]) == 0
    assert Image.open(tmp_path / "a.png").size == (100, 72)


def test_cli_folder_encode_prints_each_image_and_the_mean(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_pngs(tmp_path / "img", [(64, 64), (64, 128)])
    assert (
        main(
            ["encode", str(tmp_path / "img"), str(tmp_path / "bits"), "--quality", "1", "--checkpoint", str(checkpoint)]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "img00\t" in out and "img01\t" in out and out.splitlines()[-1].startswith("mean\t")
    assert (
        main(
            [
                "decode",
                str(tmp_path / "bits"),
                str(tmp_path / "rec"),
                "--decoder",
                "msh",
                "--checkpoint",
                str(checkpoint),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["img00.png", "img01.png"]


def _damage(blob: bytes, how: str) -> bytes:
    if how == "truncated":
        return blob[: len(blob) - 3]
    if how == "magic":
        return b"JUNK" + blob[4:]
    if how == "crc":
        return blob[:-1] + bytes([blob[-1] ^ 0x10])
    raise ValueError(how)


@pytest.mark.parametrize(
    "how, message",
    [
        ("truncated", "truncated"),
        ("magic", "not an rdp-bench bitstream"),
        ("crc", "CRC32"),
        ("weights", "encoded by weights"),
        ("missing", "cannot read|no bitstreams"),
    ],
)
@pytest.mark.parametrize("as_folder", [False, True])
def test_cli_bad_input_exits_2_without_output(
    codec: MSHCodec,
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    how: str,
    message: str,
    as_folder: bool,
) -> None:
    x = smooth_images(1, 64, 64)
    bits = tmp_path / "bits"
    bits.mkdir()
    (bits / "good.bin").write_bytes(encode(codec, x)[0])
    bad = bits / "bad.bin"
    if how == "weights":
        bad.write_bytes(encode(MSHCodec.from_net(tiny_net(1), 1, "cpu"), x)[0])
    elif how != "missing":
        bad.write_bytes(_damage(encode(codec, x)[0], how))
    src, dst = (bits, tmp_path / "rec") if as_folder else (bad, tmp_path / "rec" / "bad.png")
    if as_folder and how == "missing":
        src = tmp_path / "no-such-folder"
    code = main(["decode", str(src), str(dst), "--decoder", "msh", "--checkpoint", str(checkpoint)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err)
    assert not (tmp_path / "rec").exists() or not any((tmp_path / "rec").iterdir())


def test_cli_encode_bad_image_exits_2(checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_bytes(b"not a png")
    args = ["encode", str(tmp_path / "fake.png"), str(tmp_path / "a.bin"), "--quality", "1"]
    assert main([*args, "--checkpoint", str(checkpoint)]) == 2
    assert not (tmp_path / "a.bin").exists()


def test_cli_decode_with_pretrained_offline_exits_2(
    codec: MSHCodec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("urllib.request.urlopen", offline)
    (tmp_path / "a.bin").write_bytes(encode(codec, smooth_images(1, 64, 64))[0])
    assert main(["decode", str(tmp_path / "a.bin"), str(tmp_path / "a.png"), "--decoder", "msh", "--pretrained"]) == 2
    assert not (tmp_path / "a.png").exists()


def test_cli_decode_record(checkpoint: Path, codec: MSHCodec, tmp_path: Path) -> None:
    write_pngs(tmp_path / "img", [(64, 64), (72, 100)])
    assert (
        main(
            ["encode", str(tmp_path / "img"), str(tmp_path / "bits"), "--quality", "1", "--checkpoint", str(checkpoint)]
        )
        == 0
    )
    record_path = tmp_path / "out" / "decode.json"
    assert (
        main(
            [
                "decode",
                str(tmp_path / "bits"),
                str(tmp_path / "out"),
                "--decoder",
                "msh",
                "--checkpoint",
                str(checkpoint),
                "--record",
                str(record_path),
            ]
        )
        == 0
    )
    record = json.loads(record_path.read_text())
    assert record["n_images"] == 2 and record["decoder"] == "msh"
    assert record["msh_weights"] == codec.weights_hash
    assert record["decode_s_per_image"] == pytest.approx(record["seconds"] / 2)
    assert record["peak_mem_mb"] > 0
