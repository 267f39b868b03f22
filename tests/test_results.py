"""Dataset tables: per-point metrics and decode records are joined with parsed point columns."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.decode_record import DecodeRecord
from bench.results import collect
from bench.utils import BenchError

COMMON = {
    "n_images": 2,
    "seconds": 1.0,
    "peak_mem_mb": 10.0,
    "msh_weights": "ab",
    "device": "cpu",
    "cpu_numerics": "avx2",
}
# A diffusion point's record: every field the tables read.
DDIM_RECORD = DecodeRecord(
    decoder="diffusion",
    decode_s_per_image=3.0,
    nfe=10,
    decoder_weights="cd",
    rho=0.0,
    batch_size=2,
    threads=1,
    **COMMON,
)


def _point(tmp_path: Path, point: str, psnr: float, record: DecodeRecord | None) -> tuple[Path, Path, Path]:
    labels = {"dataset": "kodak", "codec": "mbt2018-mean", "quality": 1, "point": point}
    summary = tmp_path / f"{point}_summary.csv"
    per_image = tmp_path / f"{point}.csv"
    folder = tmp_path / point
    folder.mkdir()
    pd.DataFrame([labels | {"psnr": psnr, "psnr_ci_lo": psnr - 1, "psnr_ci_hi": psnr + 1}]).to_csv(summary, index=False)
    pd.DataFrame([labels | {"image": f"im{i}", "psnr": psnr + i} for i in range(2)]).to_csv(per_image, index=False)
    if record is not None:
        record.write(folder / "decode.json")
    return summary, per_image, folder


def test_collect_joins_records_and_point_columns(tmp_path: Path) -> None:
    msh = _point(tmp_path, "msh", 25.0, DecodeRecord(decoder="msh", decode_s_per_image=0.2, **COMMON))
    ddim = _point(
        tmp_path,
        "ddim-k10-eta0-s0",
        23.0,
        DDIM_RECORD,
    )
    per_image, summary = collect(*zip(msh, ddim, strict=True))
    assert list(summary["point"]) == ["msh", "ddim-k10-eta0-s0"]
    assert list(summary["nfe"]) == [0, 10]
    ddim_row = summary.iloc[1]
    assert (ddim_row["decoder"], ddim_row["sampler"], ddim_row["steps"], ddim_row["eta"]) == (
        "diffusion",
        "ddim",
        10,
        0.0,
    )
    assert summary.iloc[0]["decoder"] == "msh" and summary.iloc[0]["decode_s_per_image"] == 0.2
    assert pd.isna(summary.iloc[0]["batch_size"]) and summary.iloc[0]["msh_weights"] == "ab"
    assert (ddim_row["decoder_weights"], ddim_row["rho"], ddim_row["decode_s_per_image"]) == ("cd", 0.0, 3.0)
    assert (ddim_row["batch_size"], ddim_row["threads"]) == (2, 1)  # the settings a sample depends on
    assert len(per_image) == 4 and set(per_image["sampler"].dropna()) == {"ddim"}
    assert list(summary.columns[:4]) == ["dataset", "codec", "quality", "point"]


def test_missing_table_is_a_clear_error(tmp_path: Path) -> None:
    summary, per_image, folder = _point(tmp_path, "msh", 25.0, None)
    with pytest.raises(BenchError, match="does not exist"):
        collect([summary], [tmp_path / "nope.csv"], [folder])
    (folder / "decode.json").write_text("{broken")
    with pytest.raises(BenchError, match="not valid JSON"):
        collect([summary], [per_image], [folder])


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"nfe": None}, "no nfe"),  # a diffusion record written before the record held the decoder's fields
        ({"threads": None, "batch_size": None}, "no batch_size, no threads"),
        ({"seconds": "drop"}, "no seconds"),
        ({"speed": 1.0}, "unknown field speed"),
    ],
)
def test_an_incomplete_decode_record_is_one_error_naming_the_fix(tmp_path: Path, change: dict, problem: str) -> None:
    summary, per_image, folder = _point(tmp_path, "ddim-k10-eta0-s0", 23.0, DDIM_RECORD)
    data = json.loads((folder / "decode.json").read_text())
    data |= {key: value for key, value in change.items() if value != "drop"}
    for key in [key for key, value in change.items() if value == "drop"]:
        del data[key]
    (folder / "decode.json").write_text(json.dumps(data))
    with pytest.raises(
        BenchError,
        match=f"decode.json is not a decode record this code reads \\({problem}\\); delete the folder and decode again",
    ):
        collect([summary], [per_image], [folder])


def test_cli_writes_both_tables_or_nothing(tmp_path: Path) -> None:
    summary, per_image, folder = _point(tmp_path, "msh", 25.0, None)
    out = tmp_path / "results"
    args = [
        "tables",
        "--summaries",
        str(summary),
        "--per-image",
        str(per_image),
        "--reconstructions",
        str(folder),
        "--out-per-image",
        str(out / "per_image.csv"),
        "--out-summary",
        str(out / "summary.csv"),
    ]
    assert main(args) == 0
    assert pd.read_csv(out / "summary.csv")["nfe"].tolist() == [0]
    bad = [a if a != str(per_image) else str(tmp_path / "missing.csv") for a in args]
    bad[-1] = str(out / "summary2.csv")
    assert main(bad) == 2
    assert not (out / "summary2.csv").exists()
