"""Bring-your-own codecs: folders accepted when complete and consistent, rejected with a message naming
the fault; config entries validated; their rates measured, tabled and drawn like every other point."""

from __future__ import annotations

from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.baselines.byo import byo_points, check_byo, entry_labels
from bench.cli import main
from bench.config import validate_config
from bench.report import plot_rdp
from bench.report.style import method_color
from bench.results import collect
from bench.utils import BenchError
from tests.conftest import write_png

SIZES = {"a": (40, 56), "b": (56, 40)}  # name -> (height, width)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Reference PNGs, matching reconstructions and one bitstream file per image (mixed suffixes)."""
    reference, recon, bits = tmp_path / "ref", tmp_path / "recon", tmp_path / "bits"
    for seed, (name, (h, w)) in enumerate(SIZES.items()):
        write_png(reference / f"{name}.png", h, w, seed=seed)
        write_png(recon / f"{name}.png", h, w, seed=seed + 10)
    bits.mkdir()
    (bits / "a.bin").write_bytes(b"\x01" * 100)
    (bits / "b.tfci").write_bytes(b"\x02" * 37)
    return reference, recon, bits


def test_bitstream_folder_gives_bpp_from_file_sizes(folders: tuple[Path, Path, Path]) -> None:
    reference, recon, bits = folders
    table = check_byo(reference, recon, bitstreams=bits)
    assert list(table["image"]) == ["a", "b"]
    assert table.set_index("image")["bpp"].to_dict() == pytest.approx({"a": 800 / (40 * 56), "b": 296 / (56 * 40)})


def test_bpp_table_is_read_and_matched_by_name(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    reference, recon, _ = folders
    (tmp_path / "bpp.csv").write_text("image,bpp\nb.png,0.25\na,0.5\n")
    table = check_byo(reference, recon, bpp_table=tmp_path / "bpp.csv")
    assert table.set_index("image")["bpp"].to_dict() == {"a": 0.5, "b": 0.25}
    assert table["bytes"].isna().all()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("image,bpp\na,0.5\n", "missing b"),
        ("image,bpp\na,0.5\nb,0.1\nc,0.2\n", "unknown c"),
        ("image,bpp\na,0.5\nb,-1\n", "no positive finite bpp for b"),
        ("image,bpp\na,0.5\nb,inf\n", "no positive finite bpp for b"),
        ("image,bpp\na,0.5\na.png,0.5\nb,1\n", "more than once: a"),
        ("name,rate\na,0.5\nb,1\n", "must start with the columns image,bpp"),
    ],
)
def test_bad_bpp_tables(folders: tuple[Path, Path, Path], tmp_path: Path, content: str, message: str) -> None:
    reference, recon, _ = folders
    (tmp_path / "bpp.csv").write_text(content)
    with pytest.raises(BenchError, match=message):
        check_byo(reference, recon, bpp_table=tmp_path / "bpp.csv")


def test_missing_extra_resized_or_grey_reconstructions_are_named(folders: tuple[Path, Path, Path]) -> None:
    reference, recon, bits = folders
    (recon / "b.png").unlink()
    with pytest.raises(BenchError, match="missing reconstructions for b"):
        check_byo(reference, recon, bitstreams=bits)
    write_png(recon / "b.png", 40, 56)  # transposed size
    with pytest.raises(BenchError, match="b \\(56x40, reference 40x56\\)"):
        check_byo(reference, recon, bitstreams=bits)
    Image.fromarray(np.zeros((56, 40), np.uint8)).save(recon / "b.png")  # right size, greyscale
    with pytest.raises(BenchError, match="is a L image; save reconstructions as 8-bit RGB PNGs"):
        check_byo(reference, recon, bitstreams=bits)
    (recon / "b.png").write_bytes((reference / "b.png").read_bytes()[:60])  # truncated
    with pytest.raises(BenchError, match="cannot be read as an image"):
        check_byo(reference, recon, bitstreams=bits)


def test_bitstream_problems_are_named(folders: tuple[Path, Path, Path]) -> None:
    reference, recon, bits = folders
    (bits / "b.bin").write_bytes(b"x")
    with pytest.raises(BenchError, match="several files share an image's stem .*: b"):
        check_byo(reference, recon, bitstreams=bits)
    (bits / "b.bin").unlink()
    (bits / "b.tfci").write_bytes(b"")
    with pytest.raises(BenchError, match="empty bitstreams .*: b"):
        check_byo(reference, recon, bitstreams=bits)
    (bits / "b.tfci").unlink()
    with pytest.raises(BenchError, match="no bitstream in .* for b"):
        check_byo(reference, recon, bitstreams=bits)


def test_exactly_one_rate_source(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    reference, recon, bits = folders
    with pytest.raises(BenchError, match="exactly one"):
        check_byo(reference, recon)
    with pytest.raises(BenchError, match="exactly one"):
        check_byo(reference, recon, bitstreams=bits, bpp_table=tmp_path / "x.csv")


def test_cli_checks_and_writes_the_bpp_table(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    reference, recon, bits = folders
    out = tmp_path / "bpp_out.csv"
    base = ["byo-check", "--reference", str(reference), "--reconstructions", str(recon)]
    assert main([*base, "--bitstreams", str(bits), "--out", str(out)]) == 0
    assert list(pd.read_csv(out).columns) == ["image", "bpp"]
    assert main([*base, "--bitstreams", str(tmp_path / "nowhere")]) == 2


# --- config entries ---------------------------------------------------------------------------------


def _entry(name: str = "cdc", dataset: str = "kodak", **rate: str) -> dict[str, str]:
    return {"name": name, "dataset": dataset, "reconstructions": "recon", **(rate or {"bpp_table": "bpp.csv"})}


def test_schema_fills_defaults_and_rejects_a_bad_rate_source_or_name() -> None:
    (entry,) = validate_config({"baselines": {"byo": [_entry()]}})["baselines"]["byo"]
    assert (entry["label"], entry["quality"]) == (None, None)
    assert validate_config({})["baselines"]["byo"] == []
    both = _entry(bitstreams="bits", bpp_table="bpp.csv")
    for bad, message in [
        (both, "is valid under each of"),
        ({"name": "cdc", "dataset": "kodak", "reconstructions": "recon"}, "is not valid under any of"),
        (_entry(name="cd-c"), "'cd-c' does not match"),
        (_entry(dataset="wikiphotos"), "'wikiphotos' is not one of"),
    ]:
        with pytest.raises(BenchError, match=message):
            validate_config({"baselines": {"byo": [bad]}})


def test_names_are_unique_per_dataset_not_across_datasets() -> None:
    entries = [_entry(), _entry(dataset="div2k-valid"), _entry(name="hific_local", bitstreams="bits")]
    points = byo_points(validate_config({"baselines": {"byo": entries}}))
    assert {dataset: list(by_point) for dataset, by_point in points.items()} == {
        "kodak": ["byo-cdc", "byo-hific_local"],
        "div2k-valid": ["byo-cdc"],
    }
    twice = validate_config({"baselines": {"byo": [*entries, _entry(bitstreams="other")]}})
    with pytest.raises(BenchError, match=r"'baselines.byo' names 'cdc' twice for dataset 'kodak' \(entries 0 and 3\)"):
        byo_points(twice)


def test_entry_labels_use_the_display_label_and_the_quality_when_given() -> None:
    assert entry_labels({"name": "cdc", "label": None, "quality": None}) == {"codec": "cdc"}
    assert entry_labels({"name": "cdc", "label": "CDC (x0)", "quality": 2}) == {"codec": "CDC (x0)", "quality": "2"}


# --- measured, tabled and drawn ----------------------------------------------------------------------

NO_NETWORKS = ["--no-lpips", "--no-dists", "--no-fid", "--no-swd", "--no-niqe", "--device", "cpu"]


def _measure(reference: Path, recon: Path, bpp_table: Path, out: Path, *labels: str) -> int:
    """``python -m bench metrics`` with the rate from ``bpp_table`` and only the network-free metrics."""
    args = ["--reference", reference, "--reconstructions", recon, "--bpp-table", bpp_table, "--out", out]
    return main(["metrics", *map(str, args), *NO_NETWORKS, *(f"--label={label}" for label in labels)])


def test_metrics_take_each_images_bpp_from_the_checked_table(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    reference, recon, bits = folders
    checked = tmp_path / "checked.csv"
    assert (
        main(
            [
                "byo-check",
                "--reference",
                str(reference),
                "--reconstructions",
                str(recon),
                "--bitstreams",
                str(bits),
                "--out",
                str(checked),
            ]
        )
        == 0
    )
    assert _measure(reference, recon, checked, tmp_path / "m.csv") == 0
    measured = pd.read_csv(tmp_path / "m.csv").set_index("image")["bpp"].to_dict()
    sizes = {name: (bits / file).stat().st_size for name, file in (("a", "a.bin"), ("b", "b.tfci"))}
    assert measured == pytest.approx({name: sizes[name] * 8 / (h * w) for name, (h, w) in SIZES.items()}, rel=1e-12)
    summary = pd.read_csv(tmp_path / "m_summary.csv")
    assert summary.loc[0, "bpp"] == pytest.approx(np.mean(list(measured.values())))


def test_metrics_reject_a_bad_table_or_two_rate_sources(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    reference, recon, bits = folders
    (tmp_path / "short.csv").write_text("image,bpp\na,0.5\n")
    assert _measure(reference, recon, tmp_path / "short.csv", tmp_path / "m.csv") == 2
    assert not (tmp_path / "m.csv").exists()
    with pytest.raises(SystemExit):  # argparse: --bitstreams and --bpp-table are mutually exclusive
        main(
            [
                "metrics",
                "--reference",
                str(reference),
                "--reconstructions",
                str(recon),
                "--bitstreams",
                str(bits),
                "--bpp-table",
                str(tmp_path / "short.csv"),
                "--out",
                str(tmp_path / "m.csv"),
            ]
        )


def test_entries_sharing_a_label_are_one_curve_in_the_tables_and_the_rdp_figure(
    folders: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Two rates of one codec (label CDC) and one other codec, measured for real, joined by `tables`
    from folders without decode records, drawn by the RDP figure with the label as the legend entry."""
    reference, recon, _ = folders
    points = {"byo-cdc_lo": ("CDC", 0.2), "byo-cdc_hi": ("CDC", 0.6), "byo-mine": ("mine", 0.4)}
    paths = []
    for point, (codec, bpp) in points.items():
        (tmp_path / f"{point}.bpp.csv").write_text(f"image,bpp\na,{bpp}\nb,{bpp}\n")
        out = tmp_path / f"{point}.csv"
        assert (
            _measure(
                reference,
                recon,
                tmp_path / f"{point}.bpp.csv",
                out,
                "dataset=kodak",
                f"codec={codec}",
                f"point={point}",
            )
            == 0
        )
        paths.append((tmp_path / f"{point}_summary.csv", out, recon))
    per_image, summary = collect(*zip(*paths, strict=True))
    assert len(per_image) == 6 and set(summary["decoder"]) == {"byo"}
    assert summary["nfe"].isna().all() and summary["decode_s_per_image"].isna().all()  # unknown, not zero
    assert summary.set_index("point")["bpp"].to_dict() == pytest.approx({p: bpp for p, (_, bpp) in points.items()})

    figure = plot_rdp(summary, metrics=["psnr"]).figure
    (legend,) = [ax.get_legend() for ax in figure.axes if ax.get_legend() is not None]
    entries = zip(legend.legend_handles, legend.get_texts(), strict=True)
    colours = {text.get_text(): mcolors.to_rgb(handle.get_color()) for handle, text in entries}
    assert colours == {name: mcolors.to_rgb(method_color(f"byo-{name}")) for name in ("CDC", "mine")}
    (panel,) = [ax for ax in figure.axes if ax.get_ylabel().startswith("PSNR")]
    drawn = sorted(len(container.lines[0].get_xdata()) for container in panel.containers)  # errorbar lines
    assert drawn == [1, 2]  # CDC's two rates are one line
