"""export-msh: the zoo weights become a suite checkpoint, or one clear error offline."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest

from bench.cli import main
from bench.codec.checkpoints import zoo_weights_path


def test_export_without_zoo_weights_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(
        "urllib.request.urlopen", lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline"))
    )
    out = tmp_path / "q1.pt"
    assert main(["export-msh", "--quality", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert zoo_weights_path(1).name in err and "TORCH_HOME" in err
    assert not out.exists()


@pytest.mark.pretrained
def test_export_round_trips_the_zoo_weights(tmp_path: Path) -> None:
    if not zoo_weights_path(1).is_file():
        pytest.skip(f"compressai zoo weights {zoo_weights_path(1)} are not available offline")
    from bench.codec import load_codec

    out = tmp_path / "q1.pt"
    assert main(["export-msh", "--quality", "1", "--out", str(out)]) == 0
    assert load_codec(1, checkpoint=out).weights_hash == load_codec(1, pretrained=True).weights_hash
