"""Datasets: registry, manifest verification, mirror resolution, archive pinning, loaders, CLI."""

from __future__ import annotations

import dataclasses
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import data
from bench.cli import main
from bench.training import RandomCrops, crop_batches
from bench.utils import BenchError

from .conftest import write_png


def test_registry_has_real_sources() -> None:
    for name in ("kodak", "clic2020-professional-valid", "clic2020-professional-test", "div2k-valid", "div2k-train"):
        spec = data.get_dataset(name)
        assert (spec.url_template or spec.archive_url or "").startswith(("http://", "https://"))
    assert len(data.read_manifest("kodak")) == 24
    with pytest.raises(BenchError, match="known datasets"):
        data.get_dataset("imagenet")


def test_fetch_kodak_from_mirror_verifies_and_resumes(tmp_path: Path, kodak_dir: Path) -> None:
    paths = data.fetch("kodak", tmp_path, kodak_dir.parent)
    assert [p.name for p in paths] == [f"kodim{i:02d}.png" for i in range(1, 25)]
    # A second run keeps the valid files (no copy) and replaces a corrupt one.
    before = paths[1].stat().st_mtime_ns
    raw = bytearray(paths[0].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    paths[0].write_bytes(bytes(raw))
    again = data.fetch("kodak", tmp_path, kodak_dir.parent)
    assert again == paths and paths[1].stat().st_mtime_ns == before
    entry = data.read_manifest("kodak")[0]
    data.verify_file(paths[0], entry)


def test_corrupt_byte_is_rejected(tmp_path: Path, kodak_dir: Path) -> None:
    entry = data.read_manifest("kodak")[2]
    image = np.asarray(Image.open(kodak_dir / entry.name).convert("RGB")).copy()
    image[10, 10, 0] ^= 1  # one pixel value changed, re-encoded losslessly
    path = tmp_path / entry.name
    Image.fromarray(image).save(path)
    with pytest.raises(BenchError, match=f"checksum mismatch for .*{entry.name}"):
        data.verify_file(path, entry)


def test_lossless_reencoding_verifies(tmp_path: Path, kodak_dir: Path) -> None:
    entry = data.read_manifest("kodak")[3]
    path = tmp_path / entry.name
    Image.open(kodak_dir / entry.name).save(path, compress_level=1)
    data.verify_file(path, entry)


def test_non_image_file_is_a_clear_error(tmp_path: Path) -> None:
    """A dataset's file names its fault and keeps the fetch hint (a user's file gets none: test_images.py)."""
    path = tmp_path / "kodim01.png"
    path.write_text("not an image")
    with pytest.raises(BenchError, match=r"kodim01\.png: it is not a readable image .*datasets fetch` again"):
        data.verify_file(path, data.read_manifest("kodak")[0])


def test_mirror_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data.MIRROR_ENV, str(tmp_path / "env"))
    assert data.mirror_root("config-value") == tmp_path / "env"
    monkeypatch.delenv(data.MIRROR_ENV)
    assert data.mirror_root("config-value") == Path("config-value")
    assert data.mirror_root(None) is None


def test_mirror_only_file_missing_from_the_mirror_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(data.DATASETS, "kodak", dataclasses.replace(data.get_dataset("kodak"), url_template=None))
    monkeypatch.setenv(data.MIRROR_ENV, str(tmp_path / "empty"))
    with pytest.raises(BenchError, match="kodak/kodim01.png is only available from a mirror"):
        data.fetch("kodak", tmp_path / "root")


def _zip_of_pngs(path: Path, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            png = write_png(path.parent / f"tmp{i}.png", 40, 48, seed=i)
            zf.write(png, f"valid/{i:04d}.png")
            png.unlink()
        zf.writestr("__MACOSX/._0000.png", b"junk")
    return path


def test_archive_checksum_is_pinned_then_enforced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.LOCK_FILE_ENV, str(tmp_path / "lock.tsv"))
    name = "div2k-valid"
    spec = data.get_dataset(name)
    mirror = tmp_path / "mirror"
    _zip_of_pngs(mirror / name / spec.archive_name, 3)
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror))
    paths = data.fetch(name, tmp_path / "root")
    assert [p.name for p in paths] == ["0000.png", "0001.png", "0002.png"]
    assert spec.archive_name in data.read_lock()
    # A different archive under the same name now fails against the pin.
    archive = tmp_path / "root" / "_archives" / spec.archive_name
    _zip_of_pngs(archive, 2)
    with pytest.raises(BenchError, match="checksum mismatch"):
        data.fetch(name, tmp_path / "root")


def test_prepare_eval_crops_and_limits(tmp_path: Path, kodak_dir: Path) -> None:
    out = data.prepare_eval(
        "kodak", tmp_path / "raw", tmp_path / "eval", max_images=3, crop=128, mirror=kodak_dir.parent
    )
    assert [p.name for p in out] == ["kodim01.png", "kodim02.png", "kodim03.png"]
    assert all(Image.open(p).size == (128, 128) for p in out)


def test_resize_short_side_crop() -> None:
    image = Image.fromarray(np.zeros((300, 500, 3), np.uint8))
    assert data.resize_short_side_crop(image, 256).size == (256, 256)
    with pytest.raises(BenchError):
        data.centre_crop(image, 400)


def test_random_crops_are_deterministic(tmp_path: Path) -> None:
    paths = [write_png(tmp_path / f"{i}.png", 70, 90, seed=i) for i in range(3)]
    first = next(crop_batches(RandomCrops(paths, 32, seed=7), 4))
    second = next(crop_batches(RandomCrops(paths, 32, seed=7), 4))
    other = next(crop_batches(RandomCrops(paths, 32, seed=8), 4))
    assert first.shape == (4, 3, 32, 32) and first.min() >= 0.0 and first.max() <= 1.0
    assert torch_equal(first, second) and not torch_equal(first, other)
    with pytest.raises(BenchError, match="smaller than"):
        RandomCrops(paths, 128)


def torch_equal(a, b) -> bool:  # noqa: ANN001 - tiny helper
    return bool((a == b).all())


def test_cli_fetch_and_list(tmp_path: Path, kodak_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "list"]) == 0
    assert "kodak" in capsys.readouterr().out
    assert main(["datasets", "fetch", "kodak", "--root", str(tmp_path), "--mirror", str(kodak_dir.parent)]) == 0
    assert "24 verified images" in capsys.readouterr().out
    assert len(list((tmp_path / "kodak").glob("*.png"))) == 24


def test_cli_bad_dataset_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["datasets", "fetch", "imagenet", "--root", str(tmp_path)]) == 2
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err


def test_list_images_requires_pngs(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no PNG images"):
        data.list_images(tmp_path)
    shutil.rmtree(tmp_path)
    with pytest.raises(BenchError):
        data.list_images(tmp_path)
