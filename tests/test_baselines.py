"""Published baseline points: every row sourced, the tables consistent, loading by dataset."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from bench import baselines
from bench.baselines import COLUMNS, METRIC_COLUMNS, load_published, published_files, read_published
from bench.data import DATASETS
from bench.utils import BenchError


def test_every_published_file_reads_and_cites_a_commit() -> None:
    files = {path.name for path in published_files()}
    assert {"hific.csv", "mbt2018_mean.csv"} <= files
    table = load_published()
    assert list(table.columns) == list(COLUMNS)
    assert table["source_commit"].map(lambda c: bool(re.fullmatch(r"[0-9a-f]{40}", c))).all()
    assert table["source_repo"].map(lambda r: bool(re.fullmatch(r"[\w.-]+/[\w.-]+", r))).all()
    assert table["protocol"].str.len().gt(20).all()


def test_dataset_names_are_ours_or_clearly_foreign() -> None:
    """A row named like one of our datasets must be that set; the others keep a name none of ours has."""
    table = load_published()
    ours = table[table["dataset"].isin(DATASETS)]
    assert set(ours["dataset"]) <= {"kodak", "div2k-valid"}
    foreign = table[~table["dataset"].isin(DATASETS)]
    assert (foreign["dataset"] == foreign["source_dataset"]).all()


@pytest.mark.parametrize("codec", ["hific", "mbt2018-mean"])
def test_rate_and_quality_rise_together_within_each_curve(codec: str) -> None:
    table = load_published()
    for _, curve in table[table["codec"] == codec].groupby("dataset"):
        curve = curve.sort_values("bpp")
        assert curve["bpp"].is_monotonic_increasing
        assert curve["psnr"].is_monotonic_increasing
        assert curve["ms_ssim"].is_monotonic_increasing
        if curve["lpips"].notna().all():
            assert curve["lpips"].is_monotonic_decreasing


def test_hific_has_three_models_per_dataset_and_no_kodak_fid() -> None:
    hific = load_published()
    hific = hific[hific["codec"] == "hific"]
    assert hific.groupby("source_dataset").size().to_dict() == {"clic2020": 3, "div2k": 3, "kodak": 3}
    assert set(hific["point"]) == {"hific-lo", "hific-mi", "hific-hi"}
    kodak = hific[hific["dataset"] == "kodak"]
    assert kodak["fid"].isna().all() and kodak["kid"].isna().all()  # data.csv has none for Kodak
    assert hific.loc[hific["dataset"] != "kodak", ["fid", "kid", "lpips", "niqe"]].notna().all().all()


def test_mbt2018_mean_kodak_matches_the_compressai_anchor() -> None:
    """The q1 point the CompressAI docs and PAPER.md quote: 0.1239 bpp, 27.70 dB."""
    kodak = load_published("kodak")
    q1 = kodak[(kodak["codec"] == "mbt2018-mean") & (kodak["quality"] == 1)].iloc[0]
    assert math.isclose(q1["bpp"], 0.1239, abs_tol=5e-5)
    assert math.isclose(q1["psnr"], 27.70, abs_tol=5e-3)
    assert sorted(kodak.loc[kodak["codec"] == "mbt2018-mean", "quality"]) == list(range(1, 9))


def test_load_published_filters_by_dataset() -> None:
    kodak = load_published("kodak")
    assert set(kodak["dataset"]) == {"kodak"}
    assert set(kodak["codec"]) == {"hific", "mbt2018-mean"}
    assert load_published("clic2020-professional-valid").empty
    assert list(load_published("no-such-set").columns) == list(COLUMNS)


def _write(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_a_row_without_source_or_a_missing_column_is_rejected(tmp_path: Path) -> None:
    good = read_published(baselines.DATA_DIR / "hific.csv")
    unsourced = good.copy()
    unsourced.loc[1, "source_commit"] = None
    with pytest.raises(BenchError, match="cite no source"):
        read_published(_write(tmp_path / "a.csv", unsourced))
    with pytest.raises(BenchError, match="lack the columns"):
        read_published(_write(tmp_path / "b.csv", good.drop(columns=["protocol"])))
    with pytest.raises(BenchError, match="positive bpp"):
        read_published(_write(tmp_path / "c.csv", good.assign(bpp=0.0)))
    with pytest.raises(BenchError, match="not a number"):
        read_published(_write(tmp_path / "e.csv", good.assign(psnr="about 30")))
    (tmp_path / "d.csv").write_bytes(b"")
    with pytest.raises(BenchError, match="cannot read"):
        read_published(tmp_path / "d.csv")


def test_metric_columns_are_numeric() -> None:
    table = load_published()
    for column in METRIC_COLUMNS:
        assert pd.api.types.is_float_dtype(table[column]), column
