"""The real download path against a real HTTP server on 127.0.0.1 (tests/loopback_http.py).

Covers the shared helper (streaming to .part, Range resume after a cut, a server that ignores
Range, checksum mismatch, 404, a server that stalls or never answers: a timeout, not a hang),
HTTP mirrors (``BENCH_DATA_MIRROR=http://...`` serving ``../shared/data``), wikiphotos through its
pinned GitHub URL template, and the compressai zoo download going through the same helper.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bench import data, download
from bench.codec import checkpoints
from bench.utils import BenchError, sha256_file

from .loopback_http import LoopbackServer

FIX = "the fix"
BLOB = bytes(range(256)) * 4096  # 1 MiB, so a cut lands well inside the file
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()


@pytest.fixture(autouse=True)
def _short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stalls fail in a fraction of a second instead of the real 60 s."""
    monkeypatch.setattr(download, "DOWNLOAD_TIMEOUT_S", 0.3)


def on_server(monkeypatch: pytest.MonkeyPatch, server: LoopbackServer, name: str) -> data.DatasetSpec:
    """Point dataset ``name``'s upstream at the loopback server: same URL path, only the host differs."""
    spec = data.get_dataset(name)

    def rehost(url: str | None) -> str | None:
        return None if url is None else server.url(urlsplit(url).path)

    local = dataclasses.replace(spec, url_template=rehost(spec.url_template), archive_url=rehost(spec.archive_url))
    monkeypatch.setitem(data.DATASETS, name, local)
    return spec


def fetch_blob(server: LoopbackServer, dest: Path, sha: str = BLOB_SHA) -> None:
    download.download(server.url("/blob.bin"), dest, check=download.sha256_is(sha), fix=FIX)


# ------------------------------------------------------------------------------------ the helper


def test_download_streams_through_part_and_checks(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["/blob.bin"] = BLOB
    fetch_blob(http_server, tmp_path / "blob.bin")
    assert (tmp_path / "blob.bin").read_bytes() == BLOB
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.bin"]


def test_cut_transfer_resumes_with_a_range_request(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["/blob.bin"] = BLOB
    http_server.fault("/blob.bin", "drop")
    fetch_blob(http_server, tmp_path / "blob.bin")
    assert (tmp_path / "blob.bin").read_bytes() == BLOB
    assert [r.range for r in http_server.requests] == [None, f"bytes={len(BLOB) // 2}-"]


def test_cut_every_time_keeps_the_part_and_a_rerun_resumes(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["/blob.bin"] = BLOB
    http_server.fault("/blob.bin", "drop", times=download.ATTEMPTS)
    dest = tmp_path / "blob.bin"
    with pytest.raises(
        BenchError,
        match=rf"^could not download {re.escape(http_server.url('/blob.bin'))}: connection "
        rf"closed after \d+ of {len(BLOB)} bytes, 3 times .*a rerun resumes.*; {FIX}$",
    ):
        fetch_blob(http_server, dest)
    part = tmp_path / "blob.bin.part"
    assert not dest.exists() and 0 < part.stat().st_size < len(BLOB)
    kept = part.stat().st_size
    fetch_blob(http_server, dest)  # the server is healthy again: the next run resumes the .part
    assert dest.read_bytes() == BLOB and not part.exists()
    assert http_server.requests[-1].range == f"bytes={kept}-"


def test_server_that_ignores_range_restarts_the_file(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["/blob.bin"] = BLOB
    (tmp_path / "blob.bin.part").write_bytes(BLOB[:1000])
    http_server.fault("/blob.bin", "norange")
    fetch_blob(http_server, tmp_path / "blob.bin")
    assert (tmp_path / "blob.bin").read_bytes() == BLOB


def test_stale_part_longer_than_the_file_starts_over(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["/blob.bin"] = BLOB
    (tmp_path / "blob.bin.part").write_bytes(b"x" * (len(BLOB) + 10))  # 416 from the server
    fetch_blob(http_server, tmp_path / "blob.bin")
    assert (tmp_path / "blob.bin").read_bytes() == BLOB


def test_checksum_mismatch_deletes_the_download(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.files["/blob.bin"] = BLOB
    with pytest.raises(
        BenchError,
        match=rf"^checksum mismatch for {re.escape(http_server.url('/blob.bin'))} "
        rf"\(the download was deleted\): its sha256 is {BLOB_SHA}, expected 0123$",
    ):
        fetch_blob(http_server, tmp_path / "blob.bin", sha="0123")
    assert list(tmp_path.iterdir()) == []


def test_404_is_one_line_naming_the_url(http_server: LoopbackServer, tmp_path: Path) -> None:
    with pytest.raises(
        download.NotFound,
        match=rf"^could not download {re.escape(http_server.url('/blob.bin'))} "
        rf"\(HTTP 404 Not Found\); {FIX}$",
    ):
        fetch_blob(http_server, tmp_path / "blob.bin")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("fault", "says"), [("stall", r"no data for 0\.3 s after \d+ bytes"), ("hang", r"no answer within 0\.3 s")]
)
def test_server_that_stops_answering_times_out(
    http_server: LoopbackServer, tmp_path: Path, fault: str, says: str
) -> None:
    http_server.files["/blob.bin"] = BLOB
    http_server.fault("/blob.bin", fault, times=download.ATTEMPTS)
    with pytest.raises(BenchError, match=rf"^could not download .*/blob\.bin: {says}, 3 times .*; {FIX}$"):
        fetch_blob(http_server, tmp_path / "blob.bin")
    assert not (tmp_path / "blob.bin").exists()
    if fault == "stall":  # what arrived before each stall is kept: every attempt resumed after the last
        assert [r.range for r in http_server.requests][1:] == [
            f"bytes={len(BLOB) // 2}-",
            f"bytes={len(BLOB) * 3 // 4}-",
        ]


def test_unreachable_server_fails_at_once(tmp_path: Path, http_server: LoopbackServer) -> None:
    url = http_server.url("/blob.bin").replace(f":{http_server.port}", ":1")  # nothing listens on port 1
    with pytest.raises(BenchError, match=rf"^could not download {re.escape(url)} \(.*refused.*\); {FIX}$"):
        download.download(url, tmp_path / "blob.bin", fix=FIX)


def test_zoo_weights_download_goes_through_the_helper(
    http_server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zoo file whose bytes do not match the sha256 prefix in its name never lands in $TORCH_HOME."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    name = checkpoints.zoo_weights_path(1).name
    http_server.files[f"/zoo/{name}"] = b"not the weights"
    monkeypatch.setattr(checkpoints, "zoo_weights_url", lambda quality: http_server.url(f"/zoo/{name}"))
    with pytest.raises(BenchError, match=rf"checksum mismatch for .*/zoo/{re.escape(name)} .*expected "):
        checkpoints.load_pretrained(1)
    assert list((tmp_path / "hub" / "checkpoints").iterdir()) == []


# ----------------------------------------------------------------------------------- the datasets


def test_wikiphotos_url_template_pins_the_commit() -> None:
    spec = data.get_dataset("wikiphotos")
    assert re.fullmatch(r"[0-9a-f]{40}", data.WIKIPHOTOS_COMMIT)
    assert spec.url_template == (
        f"https://raw.githubusercontent.com/Zelex/images/{data.WIKIPHOTOS_COMMIT}/wikipedia-photos/{{name}}"
    )
    assert all(e.file_sha256 for e in data.read_manifest("wikiphotos"))
    assert data.attribution_file("wikiphotos") is not None


@pytest.fixture
def wikiphotos_dir(mirror: Path) -> Path:
    """The mirror's wikiphotos folder (skips when absent)."""
    path = mirror / "wikiphotos"
    if not (path / "001.png").exists():
        pytest.skip(f"wikiphotos is not in the mirror {mirror}")
    return path


def test_fresh_clone_fetches_wikiphotos_from_its_upstream_url(
    http_server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wikiphotos_dir: Path
) -> None:
    """No mirror: the 49 files come from the pinned raw-GitHub paths and verify against the manifest."""
    monkeypatch.delenv(data.MIRROR_ENV)
    spec = on_server(monkeypatch, http_server, "wikiphotos")
    http_server.mounts[urlsplit(spec.url_template.format(name="")).path] = wikiphotos_dir
    paths = data.fetch("wikiphotos", tmp_path)
    names = [e.name for e in data.read_manifest("wikiphotos")]
    assert [p.name for p in paths] == names and len(names) == 49
    assert http_server.paths() == [urlsplit(spec.url_template.format(name=n)).path for n in names]
    assert all(sha256_file(p) == e.file_sha256 for p, e in zip(paths, data.read_manifest("wikiphotos"), strict=True))
    attribution = (tmp_path / "wikiphotos" / "ATTRIBUTION.md").read_text()
    assert data.WIKIPHOTOS_COMMIT in attribution and attribution.count("commons.wikimedia.org") == 50
    assert not list((tmp_path / "wikiphotos").glob("*.part"))


def test_http_mirror_serves_wikiphotos(
    http_server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mirror: Path, wikiphotos_dir: Path
) -> None:
    http_server.mounts["/lab/data"] = mirror
    monkeypatch.setenv(data.MIRROR_ENV, http_server.url("/lab/data/"))
    paths = data.fetch("wikiphotos", tmp_path)
    assert len(paths) == 49 and http_server.paths()[0] == "/lab/data/wikiphotos/001.png"
    again = data.fetch("wikiphotos", tmp_path)  # valid files are kept: no new request
    assert again == paths and len(http_server.requests) == 49


def test_http_mirror_without_the_file_falls_back_to_upstream(
    http_server: LoopbackServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kodak_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = on_server(monkeypatch, http_server, "kodak")
    http_server.mounts[urlsplit(spec.url_template.format(name="")).path] = kodak_dir
    http_server.mounts["/lab"] = kodak_dir.parent
    http_server.fault("/lab/kodak/kodim05.png", "404")
    monkeypatch.setenv(data.MIRROR_ENV, http_server.url("/lab"))
    with caplog.at_level(logging.WARNING):
        paths = data.fetch("kodak", tmp_path)
    assert len(paths) == 24 and "/graphics/kodak/kodak/kodim05.png" in http_server.paths()
    assert f"the mirror {http_server.url('/lab')} has no kodak/kodim05.png" in caplog.text


def test_http_mirror_with_a_corrupt_file_keeps_nothing(
    http_server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kodak_dir: Path
) -> None:
    http_server.mounts["/lab"] = kodak_dir.parent
    http_server.files["/lab/kodak/kodim02.png"] = b"<html>login page</html>"
    monkeypatch.setenv(data.MIRROR_ENV, http_server.url("/lab"))
    with pytest.raises(
        BenchError,
        match=r"^checksum mismatch for http://127\.0\.0\.1:\d+/lab/kodak/kodim02\.png "
        r"\(the download was deleted\): it is not a readable image",
    ):
        data.fetch("kodak", tmp_path)
    assert sorted(p.name for p in (tmp_path / "kodak").iterdir()) == ["kodim01.png"]


def test_mirror_only_dataset_missing_from_an_http_mirror(
    http_server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(data.DATASETS, "kodak", dataclasses.replace(data.get_dataset("kodak"), url_template=None))
    monkeypatch.setenv(data.MIRROR_ENV, http_server.url("/lab"))
    with pytest.raises(
        download.NotFound,
        match=r"^could not download http://127\.0\.0\.1:\d+/lab/kodak/kodim01\.png "
        r"\(HTTP 404 Not Found\); check that the mirror .* serves kodak/kodim01\.png, or unset ",
    ):
        data.fetch("kodak", tmp_path)


def test_cli_fetch_from_an_unreachable_upstream_is_one_line(
    http_server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main

    monkeypatch.delenv(data.MIRROR_ENV)
    on_server(monkeypatch, http_server, "wikiphotos")  # serves nothing: every file is a 404
    assert main(["datasets", "fetch", "wikiphotos", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(
        r"could not download http://127\.0\.0\.1:\d+/Zelex/images/[0-9a-f]{40}/wikipedia-photos/001\.png "
        r"\(HTTP 404 Not Found\); with no internet, put wikiphotos/001\.png in a mirror",
        err,
    )
