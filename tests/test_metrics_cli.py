"""`python -m bench metrics` end to end on tiny folders: both tables, provenance, and clear errors."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from bench.cli import main
from bench.config import config_hash, load_config
from bench.metrics.niqe import niqe
from bench.metrics.weights import BACKBONES

from .conftest import SHARED, write_png

# The caller's $TORCH_HOME, read before the autouse fixture below empties it for each test.
USER_TORCH_HOME = os.environ.get("TORCH_HOME")
# Landscape and portrait images in one folder (two share a shape, so one batch holds two images).
SHAPES = {"land_a": (48, 64), "port": (64, 48), "land_b": (48, 64)}
FAST = ["--no-fid", "--no-dists", "--no-swd", "--no-niqe", "--no-download", "--allow-random-backbones"]


@pytest.fixture(autouse=True)
def _empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No backbone weights and no downloads: the offline situation the suite must handle."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def _degrade(image: np.ndarray, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 10, image.shape)
    return np.clip(image + noise, 0, 255).round().astype(np.uint8)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    """reference/, reconstructions/ (noisy copies) and bits/ (one .bin of known size per image)."""
    reference, reconstructions, bits = (tmp_path / name for name in ("reference", "reconstructions", "bits"))
    bits.mkdir()
    for seed, (stem, (height, width)) in enumerate(SHAPES.items()):
        path = write_png(reference / f"{stem}.png", height, width, seed=seed)
        reconstructions.mkdir(exist_ok=True)
        Image.fromarray(_degrade(np.asarray(Image.open(path)), seed)).save(reconstructions / f"{stem}.png")
        (bits / f"{stem}.bin").write_bytes(bytes(100 + 10 * seed))
    return reference, reconstructions, bits


def _run(reference: Path, reconstructions: Path, out: Path, *extra: str) -> int:
    return main(
        ["metrics", "--reference", str(reference), "--reconstructions", str(reconstructions), "--out", str(out), *extra]
    )


def small_metrics_config(tmp_path: Path, **metrics: object) -> Path:
    """A config for the tiny test images: CPU, random backbones allowed, small patches and samples."""
    config = tmp_path / "metrics.yaml"
    section = {
        "patch_size": 48,
        "bootstrap": 100,
        "batch_size": 2,
        "download_weights": False,
        "swd_patches_per_level": 256,
        **metrics,
    }
    config.write_text(yaml.safe_dump({"device": "cpu", "allow_random_backbones": True, "metrics": section}))
    return config


def test_end_to_end_writes_both_tables_with_provenance(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    reference, reconstructions, bits = folders
    config = small_metrics_config(tmp_path)
    out, summary_path = tmp_path / "out" / "per_image.csv", tmp_path / "out" / "summary.csv"
    with pytest.warns(UserWarning, match="RANDOM-INIT"):
        code = _run(
            reference,
            reconstructions,
            out,
            "--bitstreams",
            str(bits),
            "--summary",
            str(summary_path),
            "--config",
            str(config),
            "--label",
            "dataset=synthetic",
            "--label",
            "point=msh",
        )
    assert code == 0
    per_image, summary = pd.read_csv(out), pd.read_csv(summary_path, keep_default_na=False, na_values=[""])

    assert list(per_image["image"]) == sorted(SHAPES)
    assert list(per_image.columns[:2]) == ["dataset", "point"] and set(per_image["point"]) == {"msh"}
    for row in per_image.itertuples():
        height, width = SHAPES[row.image]
        assert (row.height, row.width) == (height, width)
        assert row.bpp == (bits / f"{row.image}.bin").stat().st_size * 8 / (height * width)
        ref = np.asarray(Image.open(reference / f"{row.image}.png"), dtype=np.float64)
        rec = np.asarray(Image.open(reconstructions / f"{row.image}.png"), dtype=np.float64)
        assert row.psnr == pytest.approx(10 * np.log10(255**2 / np.mean((ref - rec) ** 2)), rel=1e-9)
        assert math.isnan(row.ms_ssim)  # 48 px is too small for 5-scale MS-SSIM
        assert row.lpips > 0 and row.dists > 0
        assert math.isnan(row.niqe) and math.isnan(row.niqe_reference)  # NIQE needs 37 whole 96 px blocks
    assert set(per_image["lpips_backbone"]) == set(per_image["dists_backbone"]) == {"random-init"}
    assert set(per_image["config_hash"]) == {config_hash(load_config(config))}
    assert set(per_image["device"]) == {"cpu"} and per_image["code_version"].notna().all()

    row = summary.iloc[0]
    assert (row["dataset"], row["point"], row["n_images"]) == ("synthetic", "msh", 3)
    for metric in ("bpp", "psnr", "lpips", "dists"):
        assert row[f"{metric}_ci_lo"] <= row[metric] <= row[f"{metric}_ci_hi"]
        assert row[metric] == pytest.approx(per_image[metric].mean())
    # patch 48: each image holds one grid patch and no shifted one (48 - 24 < 48).
    assert row["n_patches"] == 3 and row["fid_protocol"] == "hific" and row["patch_size"] == 48
    assert math.isfinite(row["fid_hific_p48"]) and math.isfinite(row["kid_hific_p48"]) and "2048" in row["fid_warning"]
    assert math.isnan(row["kid_std_hific_p48"]) and row["kid_subset_size"] == 3  # every subset is all 3 patches
    assert not {"fid", "kid", "kid_std"} & set(summary.columns)
    assert row["fid_backbone"] == "random-init" and math.isfinite(row["swd"]) and "swd_level0" in summary
    assert row["config_hash"] == per_image["config_hash"][0] and row["device"] == "cpu"


def test_identical_folders_give_inf_psnr_and_zero_lpips(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    reference = folders[0]
    out = tmp_path / "same.csv"
    assert _run(reference, reference, out, *FAST) == 0
    with open(out, newline="") as f:
        assert {row["psnr"] for row in csv.DictReader(f)} == {"inf"}  # written as inf, not a cap or blank
    per_image = pd.read_csv(out)
    assert (per_image["psnr"] == math.inf).all() and (per_image["lpips"].abs() < 1e-6).all()
    summary = pd.read_csv(tmp_path / "same_summary.csv")
    assert summary["psnr"][0] == math.inf


def test_niqe_columns_score_both_the_reconstruction_and_its_reference(tmp_path: Path) -> None:
    reference, reconstructions = tmp_path / "reference", tmp_path / "reconstructions"
    reconstructions.mkdir()
    for seed, (height, width) in enumerate([(480, 768), (768, 480)]):  # 8x5 blocks: NIQE's 37-block limit passes
        image = np.asarray(Image.open(write_png(reference / f"im{seed}.png", height, width, seed=seed)))
        Image.fromarray(_degrade(image, seed)).save(reconstructions / f"im{seed}.png")
    out = tmp_path / "niqe.csv"
    only_niqe = ["--no-lpips", "--no-dists", "--no-fid", "--no-swd", "--no-download"]
    assert _run(reference, reconstructions, out, *only_niqe) == 0
    per_image, summary = pd.read_csv(out), pd.read_csv(tmp_path / "niqe_summary.csv")
    for row in per_image.itertuples():
        assert row.niqe == pytest.approx(niqe(np.asarray(Image.open(reconstructions / f"{row.image}.png"))))
        assert row.niqe_reference == pytest.approx(niqe(np.asarray(Image.open(reference / f"{row.image}.png"))))
        assert row.niqe != row.niqe_reference
    for metric in ("niqe", "niqe_reference"):
        assert summary[metric][0] == pytest.approx(per_image[metric].mean())
        assert summary[f"{metric}_ci_lo"][0] <= summary[metric][0] <= summary[f"{metric}_ci_hi"][0]
    assert not any(column.endswith("_backbone") for column in summary.columns)  # no network ran
    assert summary["niqe_model"][0] == "matlab"


def test_images_too_small_for_niqe_are_nan_with_one_warning_per_table(tmp_path: Path) -> None:
    """Three 256 px crops (2x2 blocks) and one 768x480 image: the crops get NaN, the table one warning."""
    reference = tmp_path / "reference"
    for seed, (height, width) in enumerate([(256, 256)] * 3 + [(480, 768)]):
        write_png(reference / f"im{seed}.png", height, width, seed=seed)
    only_niqe = ["--no-lpips", "--no-dists", "--no-fid", "--no-swd", "--no-download"]
    with pytest.warns(UserWarning) as caught:
        assert _run(reference, reference, tmp_path / "niqe.csv", *only_niqe) == 0
    size_warnings = [w for w in caught if "37 whole 96x96 blocks" in str(w.message)]
    assert len(size_warnings) == 1 and "3 of 4 images" in str(size_warnings[0].message)
    per_image = pd.read_csv(tmp_path / "niqe.csv").set_index("image")
    assert per_image.loc[["im0", "im1", "im2"], ["niqe", "niqe_reference"]].isna().all().all()
    assert np.isfinite(per_image.loc["im3", ["niqe", "niqe_reference"]].astype(float)).all()


def test_niqe_model_is_needed_only_by_images_large_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No cache, no download, no mirror: 256 px crops still get their (NaN) table; a full-size image
    stops the run with one line naming the model file, before any table is written."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("BENCH_DATA_MIRROR")
    only_niqe = ["--no-lpips", "--no-dists", "--no-fid", "--no-swd", "--no-download"]
    small = tmp_path / "small"
    write_png(small / "im0.png", 256, 256)
    with pytest.warns(UserWarning, match="37 whole"):
        assert _run(small, small, tmp_path / "small.csv", *only_niqe) == 0
    assert pd.read_csv(tmp_path / "small.csv")["niqe"].isna().all()
    large = tmp_path / "large"
    write_png(large / "im0.png", 480, 768)
    code = _run(large, large, tmp_path / "large.csv", *only_niqe)
    _assert_error(capsys, code, "niqe_pris_params.npz is not in", "download_weights is off", "BENCH_DATA_MIRROR")
    assert not (tmp_path / "large.csv").exists()


def _assert_error(capsys: pytest.CaptureFixture[str], code: int, *fragments: str) -> None:
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    errors = re.findall(r"error: .*", stderr)  # a progress bar may share the line
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in errors[0]


def test_unmatched_files_are_listed_and_nothing_is_written(
    folders: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference, reconstructions, bits = folders
    (reconstructions / "port.png").rename(reconstructions / "portrait.png")
    out = tmp_path / "out.csv"
    _assert_error(
        capsys,
        _run(reference, reconstructions, out, *FAST),
        "missing reconstructions for port",
        "without a reference: portrait",
    )
    (reconstructions / "portrait.png").rename(reconstructions / "port.png")
    (bits / "land_b.bin").unlink()
    _assert_error(
        capsys,
        _run(reference, reconstructions, out, "--bitstreams", str(bits), *FAST),
        "bitstreams missing",
        "land_b.bin",
    )
    assert list(tmp_path.glob("*.csv")) == [] and list(tmp_path.glob(".*")) == []


def test_shape_mismatch_and_corrupt_images_name_the_image(
    folders: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference, reconstructions, _ = folders
    Image.open(reconstructions / "port.png").transpose(Image.Transpose.TRANSPOSE).save(reconstructions / "port.png")
    out = tmp_path / "out.csv"
    _assert_error(capsys, _run(reference, reconstructions, out, *FAST), "image port", "64x48", "48x64")
    (reconstructions / "port.png").write_bytes(b"\x89PNG truncated")
    _assert_error(capsys, _run(reference, reconstructions, out, *FAST), "port.png cannot be read as an image")
    assert not out.exists() and not (tmp_path / "out_summary.csv").exists()


def test_missing_weights_without_permission_is_one_error(
    folders: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference, reconstructions, _ = folders
    code = _run(reference, reconstructions, tmp_path / "out.csv", "--no-download", "--no-swd", "--no-niqe")
    _assert_error(capsys, code, *(backbone.filename for backbone in BACKBONES.values()), "hub/checkpoints")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    ("label", "fragment"),
    [
        ("dataset", "KEY=VALUE"),
        ("psnr=1", "overwrite"),
        ("fid_hific_p256=1", "overwrite"),
        ("niqe_model=x", "overwrite"),
        ("a b=1", "identifier"),
        ("x=1", "twice"),
    ],
)
def test_bad_labels_are_rejected(
    folders: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], label: str, fragment: str
) -> None:
    extra = ["--label", "x=0"] if fragment == "twice" else []
    code = _run(folders[0], folders[1], tmp_path / "out.csv", *FAST, *extra, "--label", label)
    _assert_error(capsys, code, fragment)


# --- with real weights (skipped unless $TORCH_HOME or ../shared/torch_home has them) ----------


@pytest.fixture
def real_torch_home(monkeypatch: pytest.MonkeyPatch) -> Path:
    """A $TORCH_HOME holding the real AlexNet and VGG16 files (skips otherwise)."""
    needed = [BACKBONES[name].filename for name in ("alexnet", "vgg16")]
    for candidate in (USER_TORCH_HOME, str(SHARED / "torch_home")):
        if candidate and all((Path(candidate) / "hub" / "checkpoints" / f).is_file() for f in needed):
            monkeypatch.setenv("TORCH_HOME", candidate)
            return Path(candidate)
    pytest.skip(f"real LPIPS/DISTS backbones ({', '.join(needed)}) are in neither $TORCH_HOME nor {SHARED}/torch_home")


@pytest.mark.pretrained
def test_real_backbones_rank_jpeg_qualities(real_torch_home: Path, kodak_dir: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    reference.mkdir()
    image = Image.open(kodak_dir / "kodim01.png").convert("RGB")
    image.save(reference / "kodim01.png")
    results = {}
    for quality in (20, 80):
        folder = tmp_path / f"jpeg{quality}"
        folder.mkdir()
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        Image.open(buffer).save(folder / "kodim01.png")
        out = tmp_path / f"q{quality}.csv"
        assert _run(reference, folder, out, "--no-fid", "--no-swd", "--no-niqe", "--no-download") == 0
        results[quality] = pd.read_csv(out).iloc[0]
    assert results[20]["lpips_backbone"] == results[20]["dists_backbone"] == "real"
    assert results[20]["lpips"] > results[80]["lpips"] and results[20]["dists"] > results[80]["dists"]


def test_points_in_one_run_equal_each_point_run_alone(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """The workflow measures a dataset's points in one process (backbones loaded once): each point's
    tables must be those of a run of that point alone, with FID/KID, SWD and the bootstrap included."""
    reference, reconstructions, bits = folders
    other = tmp_path / "other"
    other.mkdir()
    for path in sorted(reconstructions.glob("*.png")):  # a second point: a stronger degradation
        Image.fromarray(_degrade(np.asarray(Image.open(path)), 7)).save(other / path.name)
    config = small_metrics_config(tmp_path, niqe=False)
    points = [(reconstructions, "a"), (other, "b")]
    common = ["--config", str(config), "--reference-cache", str(tmp_path / "cache")]
    for folder, name in points:
        out = tmp_path / "alone" / f"{name}.csv"
        assert _run(reference, folder, out, "--bitstreams", str(bits), "--label", f"point={name}", *common) == 0
    entries = [
        {
            "reconstructions": str(folder),
            "bitstreams": str(bits),
            "out": str(tmp_path / "together" / f"{name}.csv"),
            "labels": {"point": name},
        }
        for folder, name in points
    ]
    assert main(["metrics", "--reference", str(reference), "--points", json.dumps(entries), *common]) == 0
    for _, name in points:
        for table in (f"{name}.csv", f"{name}_summary.csv"):
            alone, together = (pd.read_csv(tmp_path / run / table) for run in ("alone", "together"))
            pd.testing.assert_frame_equal(together, alone, check_exact=True)
    assert pd.read_csv(tmp_path / "together" / "a_summary.csv")["fid_hific_p48"].notna().all()


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ("[{", "is not valid JSON"),
        ("[]", "non-empty JSON list"),
        ('[{"out": "x.csv"}]', "entry 1 lacks 'reconstructions'"),
        ('[{"reconstructions": "r", "out": "x.csv", "rate": "b"}]', "unknown keys ['rate']"),
        ('[{"reconstructions": "r", "out": "x.csv", "bitstreams": "b", "bpp_table": "t"}]', "give the rate one way"),
        ('[{"reconstructions": "r", "out": "x.csv", "labels": ["a"]}]', "'labels' must be a dict"),
    ],
)
def test_bad_points_are_one_line_naming_the_entry(
    folders: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], points: str, message: str
) -> None:
    reference, _, _ = folders
    assert main(["metrics", "--reference", str(reference), "--points", points, *FAST]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not list(tmp_path.rglob("*.csv"))


def test_points_and_single_point_flags_do_not_mix(
    folders: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference, reconstructions, _ = folders
    entry = json.dumps([{"reconstructions": str(reconstructions), "out": str(tmp_path / "a.csv")}])
    assert main(["metrics", "--reference", str(reference), "--points", entry, "--out", "b.csv", *FAST]) == 2
    assert "drop --out" in capsys.readouterr().err
    assert main(["metrics", "--reference", str(reference), *FAST]) == 2
    assert "give --reconstructions DIR and --out CSV" in capsys.readouterr().err
