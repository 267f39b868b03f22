"""CLIC and DIV2K through the real archive path: zips with the upstream member layout, served by a
loopback HTTP server at the archive's own URL path (only the host differs).

Member layouts as upstream ships them: DIV2K_valid_HR.zip holds ``DIV2K_valid_HR/0801.png`` ..
``0900.png`` and DIV2K_train_HR.zip ``DIV2K_train_HR/0001.png`` .. ``0800.png``; CLIC 2020's
professional_valid_2020.zip holds ``valid/``, professional_train_2020.zip ``train/`` and
CLIC2020Professional_test.zip ``professional/``, each with macOS ``__MACOSX/`` resource forks.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from bench import data
from bench.cli import main
from bench.utils import BenchError

from .conftest import write_png
from .loopback_http import LoopbackServer
from .test_data_http import on_server

# dataset -> (folder inside the upstream zip, member names of our small stand-in)
LAYOUTS: dict[str, tuple[str, list[str]]] = {
    "div2k-valid": ("DIV2K_valid_HR", ["0801.png", "0802.png"]),
    "div2k-train": ("DIV2K_train_HR", ["0001.png", "0002.png"]),
    "clic2020-professional-valid": ("valid", ["alberto-montalesi-176097.png", "andrew-ruiz-376.png"]),
    "clic2020-professional-test": ("professional", ["abigail-keenan-86.png", "adam-birkett-200.png"]),
    "clic2020-professional-train": ("train", ["aaron-burden-1.png", "adrian-2.png"]),
}
EVAL_SETS = ["div2k-valid", "clic2020-professional-valid", "clic2020-professional-test"]


def test_registered_archives_are_the_upstream_urls() -> None:
    urls = {name: data.get_dataset(name).archive_url for name in LAYOUTS}
    assert urls == {
        "div2k-valid": "http://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",
        "div2k-train": "http://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
        "clic2020-professional-valid": "https://data.vision.ee.ethz.ch/cvl/clic/professional_valid_2020.zip",
        "clic2020-professional-test": "https://data.vision.ee.ethz.ch/cvl/clic/test/CLIC2020Professional_test.zip",
        "clic2020-professional-train": "https://data.vision.ee.ethz.ch/cvl/clic/professional_train_2020.zip",
    }
    assert all(data.get_dataset(name).eval_resize == 768 for name in EVAL_SETS)


def upstream_zip(tmp: Path, name: str, sizes: list[tuple[int, int]], seed: int = 0) -> bytes:
    """A zip laid out like dataset ``name``'s upstream archive, of generated images (height, width)."""
    folder, members = LAYOUTS[name]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{folder}/", b"")
        # the first len(sizes) members of the layout (a test archive needs no more)
        for i, (member, (height, width)) in enumerate(zip(members, sizes, strict=False)):
            zf.write(write_png(tmp / f"src-{seed}-{i}.png", height, width, seed=seed + i), f"{folder}/{member}")
            zf.writestr(f"__MACOSX/{folder}/._{member}", b"\x00\x05\x16\x07 resource fork")
    return buffer.getvalue()


@pytest.fixture
def upstream(http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> LoopbackServer:
    """No mirror, a lock file in tmp_path, and every archive dataset's upstream URL on the loopback server."""
    monkeypatch.delenv(data.MIRROR_ENV)
    monkeypatch.setenv(data.LOCK_FILE_ENV, str(tmp_path / "datasets.lock.tsv"))
    for name in LAYOUTS:
        on_server(monkeypatch, http_server, name)
    return http_server


def serve_archive(server: LoopbackServer, name: str, archive: bytes) -> str:
    """Serve ``archive`` at dataset ``name``'s upstream URL path; return that path."""
    path = urlsplit(data.get_dataset(name).archive_url).path
    server.files[path] = archive
    return path


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_first_fetch_pins_then_verifies_then_rejects_a_changed_archive(
    upstream: LoopbackServer, tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    archive = upstream_zip(tmp_path, name, [(40, 48), (48, 40)])
    path = serve_archive(upstream, name, archive)
    digest = hashlib.sha256(archive).hexdigest()
    spec = data.get_dataset(name)
    with caplog.at_level(logging.WARNING):
        paths = data.fetch(name, tmp_path / "first")
    assert [p.name for p in paths] == LAYOUTS[name][1]
    assert data.read_lock() == {spec.archive_name: digest}
    assert (
        f"pinned sha256 {digest} for {spec.archive_name} in {data.lock_file()} on first download: commit that file"
    ) in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert [p.name for p in data.fetch(name, tmp_path / "second")] == LAYOUTS[name][1]
    assert "pinned" not in caplog.text and data.read_lock() == {spec.archive_name: digest}
    assert upstream.paths() == [path, path]

    upstream.files[path] = upstream_zip(tmp_path, name, [(40, 48)], seed=9)
    changed = hashlib.sha256(upstream.files[path]).hexdigest()
    with pytest.raises(
        BenchError,
        match=(
            rf"^checksum mismatch for {re.escape(upstream.url(path))} \(the download was deleted\): sha256 {changed}, "
            rf"but {re.escape(str(data.lock_file()))} pins {digest}; fetch again \(or, if upstream really changed the "
            rf"archive, remove its line from the lock file\)$"
        ),
    ):
        data.fetch(name, tmp_path / "third")
    assert not list((tmp_path / "third").rglob("*.zip*")) and not list((tmp_path / "third").rglob("*.png"))


def test_cached_archive_that_no_longer_matches_is_deleted(upstream: LoopbackServer, tmp_path: Path) -> None:
    serve_archive(upstream, "div2k-valid", upstream_zip(tmp_path, "div2k-valid", [(40, 48)]))
    data.fetch("div2k-valid", tmp_path / "root")
    cached = tmp_path / "root" / "_archives" / "DIV2K_valid_HR.zip"
    cached.write_bytes(upstream_zip(tmp_path, "div2k-valid", [(40, 48)], seed=5))
    with pytest.raises(BenchError, match=rf"^checksum mismatch for {re.escape(str(cached))} \(deleted it\): sha256 "):
        data.fetch("div2k-valid", tmp_path / "root")
    assert not cached.exists()


@pytest.mark.parametrize("name", EVAL_SETS)
def test_prepare_each_eval_set_resizes_the_shorter_side_and_centre_crops(
    upstream: LoopbackServer, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A landscape image larger than 768 and a small portrait one both become 768×768 centre crops."""
    serve_archive(upstream, name, upstream_zip(tmp_path, name, [(780, 1020), (300, 200)]))
    out = tmp_path / "eval"
    assert main(["datasets", "prepare", name, "--root", str(tmp_path / "raw"), "--out", str(out)]) == 0
    assert "2 evaluation images" in capsys.readouterr().out
    members = LAYOUTS[name][1]
    assert sorted(p.name for p in out.iterdir()) == members
    for member, source in zip(members, ["src-0-0.png", "src-0-1.png"], strict=True):
        prepared = Image.open(out / member)
        assert prepared.size == (768, 768) and prepared.mode == "RGB"
        original = Image.open(tmp_path / source).convert("RGB")
        w, h = original.size
        scale = 768 / min(w, h)
        resized = original.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
        left, top = (resized.width - 768) // 2, (resized.height - 768) // 2
        expected = resized.crop((left, top, left + 768, top + 768))
        assert np.array_equal(np.asarray(prepared), np.asarray(expected))
