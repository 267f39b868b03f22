"""Figures from synthetic summary tables: files, labels, colours, skipped panels, atomic output."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.baselines import load_published
from bench.cli import main
from bench.report import (
    Crop,
    default_selection,
    load_summary,
    plot_rdp,
    plot_samples,
    plot_tradeoff,
    save_figure,
    write_rdp_figure,
)
from bench.report.style import method_color
from bench.utils import BenchError
from tests.conftest import write_png

DIFFUSION = [
    ("ddim-k5-eta0-s0", "ddim", 5, 0.0),
    ("ddim-k20-eta0-s0", "ddim", 20, 0.0),
    ("ddpm-k50-s0", "ddpm", 50, None),
]


def summary_table(backbone: str = "random-init", dataset: str = "kodak") -> pd.DataFrame:
    """MSH at three qualities, three diffusion points at the two lowest, JPEG at two qualities."""
    rows = []
    for quality, bpp in ((1, 0.18), (2, 0.3), (3, 0.45)):
        diffusion = [(p, "diffusion", s, k, e) for p, s, k, e in DIFFUSION] if quality < 3 else []
        points = [("msh", "msh", None, None, None), *diffusion]
        for i, (point, decoder, sampler, steps, eta) in enumerate(points):
            psnr = 24 + 3 * quality - 1.2 * i
            row = {
                "dataset": dataset,
                "codec": "msh",
                "quality": quality,
                "point": point,
                "decoder": decoder,
                "sampler": sampler,
                "steps": steps,
                "eta": eta,
                "nfe": steps or 0,
                "n_seeds": 1,
                "bpp": bpp,
                "psnr": psnr,
                "psnr_ci_lo": psnr - 0.3,
                "psnr_ci_hi": psnr + 0.3,
                "ms_ssim": 0.9,
                "lpips": 0.4 - 0.05 * i,
                "lpips_ci_lo": 0.38 - 0.05 * i,
                "lpips_ci_hi": 0.42 - 0.05 * i,
                "fid": 60.0 - 8 * i,
                "swd": 50.0 - 7 * i,
                "niqe": 6.0 - 0.3 * i,
                "niqe_reference": 3.0,
                "lpips_backbone": backbone,
                "dists_backbone": backbone,
                "fid_backbone": backbone,
            }
            rows.append(row)
    for quality, bpp in ((10, 0.25), (50, 0.7)):
        rows.append(
            {
                "dataset": dataset,
                "codec": "jpeg",
                "quality": quality,
                "point": f"jpeg-q{quality}",
                "decoder": "jpeg",
                "bpp": bpp,
                "psnr": 22 + quality / 10,
                "lpips": 0.5,
                "fid": 90.0,
                "swd": 70.0,
                "niqe": 7.0,
                "lpips_backbone": backbone,
                "fid_backbone": backbone,
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture
def summary_csv(tmp_path: Path) -> Path:
    path = tmp_path / "summary.csv"
    summary_table().to_csv(path, index=False)
    return path


def _labels(figure: Figure) -> set[str]:
    return {ax.get_ylabel() for ax in figure.axes} | {ax.get_xlabel() for ax in figure.axes}


def _legend_colors(figure: Figure) -> dict[str, tuple[float, float, float]]:
    (legend,) = [ax.get_legend() for ax in figure.axes if ax.get_legend() is not None]
    pairs = zip(legend.legend_handles, legend.get_texts(), strict=True)
    return {text.get_text(): mcolors.to_rgb(handle.get_color()) for handle, text in pairs}


def _notes(figure: Figure) -> str:
    return "\n".join(text.get_text() for ax in figure.axes for text in ax.texts)


def test_rdp_and_tradeoff_write_pdf_and_png(summary_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures" / "rdp_kodak.pdf"
    assert main(["report", "rdp", "--summary", str(summary_csv), "--out", str(out)]) == 0
    assert out.read_bytes()[:5] == b"%PDF-" and out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "figures" / "tradeoff_kodak.pdf"
    assert main(["report", "tradeoff", "--summary", str(summary_csv), "--dataset", "kodak", "--out", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".png").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "rdp_kodak.pdf",
        "rdp_kodak.png",
        "tradeoff_kodak.pdf",
        "tradeoff_kodak.png",
    ]


def test_random_backbones_are_named_on_the_axes() -> None:
    random = summary_table("random-init")
    rdp = plot_rdp(random).figure
    expected = {"LPIPS ↓ (random backbone)", "FID ↓ (random backbone)", "PSNR [dB] ↑", "SWD ×10³ ↓", "NIQE ↓"}
    assert expected <= _labels(rdp)
    tradeoff = plot_tradeoff(random).figure
    assert {"LPIPS ↓ (random backbone)", "FID ↓ (random backbone)", "SWD ×10³ ↓"} <= _labels(tradeoff)
    real = _labels(plot_rdp(summary_table("real")).figure)
    assert "LPIPS ↓" in real and "FID ↓" in real and not any("random" in label for label in real)


def test_published_points_stay_off_random_backbone_axes() -> None:
    published = load_published("kodak")
    random = plot_rdp(summary_table("random-init"), published)
    assert "published LPIPS not drawn: ours uses a random backbone" in _notes(random.figure)
    assert "HiFiC (published)" in _legend_colors(random.figure)  # still drawn on the PSNR panel
    (lpips_axes,) = [ax for ax in random.figure.axes if ax.get_ylabel().startswith("LPIPS")]
    assert all(line.get_marker() != "*" for line in lpips_axes.get_lines())  # no HiFiC star there
    real = plot_rdp(summary_table("real"), published)
    (lpips_axes,) = [ax for ax in real.figure.axes if ax.get_ylabel().startswith("LPIPS")]
    assert any(line.get_marker() == "*" for line in lpips_axes.get_lines())


def _fid_named(table: pd.DataFrame, protocol: str, size: int) -> pd.DataFrame:
    """The table as `python -m bench metrics` writes it: FID under its protocol-named column."""
    return table.rename(columns={"fid": f"fid_{protocol}_p{size}"})


@pytest.mark.parametrize(
    ("protocol", "size", "label"),
    [
        ("hific", 256, "FID/256 ↓"),
        ("hific", 128, "FID (128 px, hific) ↓"),
        ("nonoverlap", 256, "FID (256 px, nonoverlap) ↓"),
    ],
)
def test_fid_axes_name_the_patch_protocol_and_size(tmp_path: Path, protocol: str, size: int, label: str) -> None:
    path = tmp_path / "summary.csv"
    _fid_named(summary_table("real"), protocol, size).to_csv(path, index=False)
    table = load_summary(path)
    assert label in _labels(plot_rdp(table).figure) and label in _labels(plot_tradeoff(table).figure)


def test_published_fid256_stays_off_other_patch_axes() -> None:
    published = load_published("div2k-valid")
    assert published["fid"].notna().any()  # HiFiC's FID/256

    def fid_panel(size: int) -> tuple[Figure, Axes]:
        table = _fid_named(summary_table("real", dataset="div2k-valid"), "hific", size)
        figure = plot_rdp(table, published).figure
        (axes,) = [ax for ax in figure.axes if ax.get_ylabel().startswith("FID")]
        return figure, axes

    figure, axes = fid_panel(128)
    assert all(line.get_marker() != "*" for line in axes.get_lines())
    assert "published FID/256 not drawn: ours is FID (128 px, hific)" in _notes(figure)
    figure, axes = fid_panel(256)
    assert any(line.get_marker() == "*" for line in axes.get_lines())


def test_a_table_mixing_fid_patch_sizes_is_refused() -> None:
    table = _fid_named(summary_table(), "hific", 128).assign(fid_hific_p256=1.0)
    with pytest.raises(BenchError, match="128 px hific, 256 px hific"):
        plot_rdp(table)


def test_the_same_method_has_the_same_colour_in_every_figure() -> None:
    table = summary_table()
    rdp = _legend_colors(plot_rdp(table).figure)
    tradeoff_figure = plot_tradeoff(table).figure
    tradeoff = _legend_colors(tradeoff_figure)
    assert rdp["MSH"] == tradeoff["MSH"] == mcolors.to_rgb(method_color("msh"))
    assert rdp["JPEG"] == mcolors.to_rgb(method_color("jpeg"))
    # A diffusion setting's shade in the RDP legend is the face colour of its point in the trade-off plane.
    collections = [coll for ax in tradeoff_figure.axes for coll in ax.collections]
    faces = {tuple(np.round(c[:3], 6)) for coll in collections for c in coll.get_facecolors()}
    for label in ("DDIM, 5 steps", "DDIM, 20 steps", "DDPM, 50 steps"):
        assert tuple(np.round(rdp[label], 6)) in faces
    assert rdp["DDIM, 5 steps"] != rdp["DDIM, 20 steps"]
    other = _legend_colors(plot_rdp(summary_table(dataset="div2k-valid")).figure)
    assert other == rdp  # and across datasets


def test_an_all_nan_metric_is_skipped_with_a_note() -> None:
    table = summary_table().assign(fid=math.nan)
    table = table.drop(columns=["swd"])
    rdp = plot_rdp(table)
    assert set(rdp.skipped) == {"fid", "swd"}
    assert not any(label.startswith(("FID", "SWD")) for label in _labels(rdp.figure))
    assert "FID not shown: no values in the summary" in _notes(rdp.figure)
    tradeoff = plot_tradeoff(table)
    assert set(tradeoff.skipped) == {"fid", "swd"}
    assert len([ax for ax in tradeoff.figure.axes if ax.get_xlabel()]) == 2 * 2  # 2 qualities x (lpips, niqe)
    with pytest.raises(BenchError, match="none of the metrics"):
        plot_rdp(table, metrics=["fid", "swd"])


def test_error_bars_come_from_the_ci_columns() -> None:
    figure = plot_rdp(summary_table(), metrics=["psnr"]).figure
    ax: Axes = next(ax for ax in figure.axes if ax.get_ylabel().startswith("PSNR"))
    bars = [c for c in ax.collections if c.get_segments()]
    spans = {round(abs(seg[1][1] - seg[0][1]), 6) for coll in bars for seg in coll.get_segments()}
    assert spans == {0.6}


def test_no_partial_file_when_saving_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figure = plot_rdp(summary_table(), metrics=["psnr"]).figure
    original = Figure.savefig

    def fail_on_png(self: Figure, fname: object, **kwargs: object) -> None:
        if kwargs.get("format") == "png":
            raise RuntimeError("disk full")
        original(self, fname, **kwargs)

    monkeypatch.setattr(Figure, "savefig", fail_on_png)
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(figure, tmp_path / "rdp.pdf")
    assert list(tmp_path.iterdir()) == []  # neither the PDF nor a temporary file
    with pytest.raises(BenchError, match=r"must be a \.pdf path"):
        save_figure(figure, tmp_path / "rdp.png")


def test_bad_summaries_are_clear_errors(tmp_path: Path) -> None:
    out = tmp_path / "rdp.pdf"
    with pytest.raises(BenchError, match="does not exist"):
        write_rdp_figure(tmp_path / "missing.csv", out)
    pd.concat([summary_table(), summary_table(dataset="div2k-valid")]).to_csv(tmp_path / "two.csv", index=False)
    with pytest.raises(BenchError, match="choose one with --dataset"):
        write_rdp_figure(tmp_path / "two.csv", out)
    with pytest.raises(BenchError, match="no rows for dataset 'clic'"):
        load_summary(tmp_path / "two.csv", "clic")
    summary_table().drop(columns=["bpp"]).to_csv(tmp_path / "nobpp.csv", index=False)
    with pytest.raises(BenchError, match=r"lacks the columns \['bpp'\]"):
        write_rdp_figure(tmp_path / "nobpp.csv", out)
    msh_only = summary_table()
    msh_only[msh_only["decoder"] != "diffusion"].to_csv(tmp_path / "msh.csv", index=False)
    assert main(["report", "tradeoff", "--summary", str(tmp_path / "msh.csv"), "--out", str(out)]) == 2
    assert not out.exists()


def test_point_columns_are_parsed_when_absent() -> None:
    table = summary_table().drop(columns=["decoder", "sampler", "steps", "eta"])
    assert set(_legend_colors(plot_rdp(table).figure)) >= {"MSH", "DDIM, 5 steps", "DDPM, 50 steps", "JPEG"}


@pytest.fixture
def work(tmp_path: Path) -> tuple[Path, Path]:
    """A reference image and reconstructions of it at quality 1 for every point of the summary."""
    reference = tmp_path / "ref"
    write_png(reference / "kodim01.png", 48, 64)
    for i, point in enumerate(["msh", *(p for p, *_ in DIFFUSION)]):
        write_png(tmp_path / "work" / "kodak" / "q1" / point / "kodim01.png", 48, 64, seed=i + 1)
    return reference, tmp_path / "work"


def test_samples_default_to_msh_fewest_ddim_and_most_ddpm_at_the_lowest_rate(
    work: tuple[Path, Path], summary_csv: Path, tmp_path: Path
) -> None:
    quality, points = default_selection(load_summary(summary_csv))
    assert (quality, points) == (1, ["msh", "ddim-k5-eta0-s0", "ddpm-k50-s0"])
    reference, work_dir = work
    out = tmp_path / "samples_kodak.pdf"
    args = [
        "report",
        "samples",
        "--summary",
        str(summary_csv),
        "--out",
        str(out),
        "--reference",
        str(reference),
        "--work",
        str(work_dir),
        "--image",
        "kodim01",
        "--crop",
        "8",
        "4",
        "32",
    ]
    assert main(args) == 0
    assert out.is_file() and out.with_suffix(".png").is_file()


def test_samples_panels_show_the_crop(work: tuple[Path, Path]) -> None:
    reference, work_dir = work
    plot = plot_samples(reference, work_dir, "kodak", 1, ["msh", "ddpm-k50-s0"], "kodim01", Crop(8, 4, 32))
    titles = [ax.get_title() for ax in plot.figure.axes if ax.get_title()]
    assert titles == ["kodim01", "Original", "MSH", "DDPM, 50 steps"]
    crops = [ax.get_images()[0].get_array().shape for ax in plot.figure.axes[1:4]]
    assert crops == [(32, 32, 3)] * 3


def test_samples_bad_crop_or_missing_reconstruction(work: tuple[Path, Path]) -> None:
    reference, work_dir = work
    with pytest.raises(BenchError, match="does not fit inside"):
        plot_samples(reference, work_dir, "kodak", 1, ["msh"], "kodim01", Crop(40, 0, 32))
    with pytest.raises(BenchError, match="decode point 'ddim-k10-eta0-s0' at quality 1 first"):
        plot_samples(reference, work_dir, "kodak", 1, ["ddim-k10-eta0-s0"], "kodim01", Crop(0, 0, 16))
    with pytest.raises(BenchError, match="reference image .* does not exist"):
        plot_samples(reference, work_dir, "kodak", 1, ["msh"], "kodim99", Crop(0, 0, 16))


def test_several_seeds_are_separate_series_of_one_colour() -> None:
    table = summary_table()
    second = table[table["decoder"] == "diffusion"].assign(point=lambda t: t["point"].str.replace("-s0", "-s1"))
    first = table.assign(seed=np.where(table["decoder"] == "diffusion", 0.0, np.nan))  # MSH and JPEG have none
    both = pd.concat([first, second.assign(seed=1.0)], ignore_index=True)
    colors = _legend_colors(plot_rdp(both).figure)
    assert colors["DDIM, 5 steps, seed 0"] == colors["DDIM, 5 steps, seed 1"]
    assert "MSH" in colors  # a decoder without a seed keeps its plain label
    assert {"DDIM, seed 0", "DDIM, seed 1"} <= set(_legend_colors(plot_tradeoff(both).figure))


def with_knob_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The synthetic table plus, at quality 1, a t0 sweep of DDPM-50, a guidance sweep of DDIM-5 and
    an averaging sweep of DDPM-50 (their plain points are the table's own DDIM-5 and DDPM-50 rows)."""
    base = table[(table["quality"] == 1)].set_index("point")
    sweeps = [
        ("ddpm-k50-t0.2-s0", "ddpm-k50-s0", {"t0": 0.2}, 10),
        ("ddpm-k50-t0.5-s0", "ddpm-k50-s0", {"t0": 0.5}, 25),
        ("ddim-k5-eta0-w2-s0", "ddim-k5-eta0-s0", {"guidance": 2.0}, 10),
        ("ddpm-k50-n4-s0", "ddpm-k50-s0", {"n_avg": 4}, 200),
    ]
    rows = [
        base.loc[plain].to_dict() | knobs | {"point": point, "nfe": nfe, "psnr": 25.0 + i, "swd": 40.0 - i}
        for i, (point, plain, knobs, nfe) in enumerate(sweeps)
    ]
    return pd.concat([table, pd.DataFrame(rows)], ignore_index=True)


def test_knob_sweeps_are_dashed_curves_in_the_tradeoff_and_left_out_of_the_rdp_figure() -> None:
    table = with_knob_rows(summary_table())
    figure = plot_tradeoff(table, perception=["swd"]).figure
    (legend,) = [ax.get_legend() for ax in figure.axes if ax.get_legend() is not None]
    styles = {
        text.get_text(): handle.get_linestyle()
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True)
    }
    assert styles["DDPM, 50 steps: start level t0 (from MSH)"] == "--"
    assert styles["DDIM, 5 steps: guidance w"] == "-."
    assert styles["DDPM, 50 steps: mean of N samples"] == ":"
    assert styles["DDPM"] == "-"  # the plain step curve
    labels = {text.get_text() for ax in figure.axes for text in ax.texts}
    assert {"t0=0.2 (10)", "t0=0.5 (25)", "w=2 (10)", "N=4 (200)"} <= labels
    assert not {"t0=1 (50)", "w=1 (5)", "N=1 (50)"} & labels  # plain points keep their one NFE label
    # the t0 curve runs from the MSH point (t0 = 0) through t0 = 0.2, 0.5 to the plain DDPM-50 point
    panel = figure.axes[0]
    dashed = [line for line in panel.get_lines() if line.get_linestyle() == "--"]
    assert [len(line.get_xdata()) for line in dashed] == [4]
    rdp = plot_rdp(table).figure
    assert not any("t0" in label or "guidance" in label for label in _legend_colors(rdp))
    assert "4 decode-time knob settings" in _notes(rdp)
