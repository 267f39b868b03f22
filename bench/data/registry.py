"""The dataset registry: every evaluation and training set, its real source and its committed manifest.

Every dataset has a real source (per-file URLs or an archive URL). A per-file dataset's files are
listed, with their checksums, in ``bench/manifests/NAME.tsv``; a dataset may also ship an
attribution file (``bench/manifests/NAME_ATTRIBUTION.md``). Adding a dataset is one
:class:`DatasetSpec` here (and its manifest); :mod:`bench.data.fetching` gets and checks the files.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from bench.utils import BenchError

MANIFEST_DIR = Path(__file__).resolve().parents[1] / "manifests"


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: where it comes from, how it is checked and how evaluation prepares it.

    ``url_template`` (per-file download, ``{name}`` is a manifest file name) and ``archive_url``
    (one zip holding the images) are exclusive; a dataset with neither exists only in mirrors.
    ``eval_resize`` is the evaluation preprocessing: ``None`` keeps images as they are; an integer
    S resizes the shorter side to S (bicubic, antialiased) and centre-crops S×S.
    """

    name: str
    role: str  # "eval" or "train"
    description: str
    url_template: str | None = None
    archive_url: str | None = None
    has_manifest: bool = False
    eval_resize: int | None = None
    licence: str = ""

    @property
    def archive_name(self) -> str:
        """File name of the archive (as served upstream and as expected in a mirror)."""
        if self.archive_url is None:
            raise BenchError(f"dataset {self.name!r} has no archive")
        return self.archive_url.rsplit("/", 1)[-1]


_CLIC = "https://data.vision.ee.ethz.ch/cvl/clic"
_DIV2K = "http://data.vision.ee.ethz.ch/cvl/DIV2K"
# wikiphotos' files are byte-identical to GitHub Zelex/images, folder wikipedia-photos/, at this
# commit (pinned, never a branch, so the committed manifest stays the check).
WIKIPHOTOS_COMMIT = "0b8a89db599a384124fb991b85d40cfd63c73d58"
_WIKIPHOTOS = f"https://raw.githubusercontent.com/Zelex/images/{WIKIPHOTOS_COMMIT}/wikipedia-photos"

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "kodak",
            "eval",
            "Kodak Lossless True Color suite: 24 RGB images, 768x512 and 512x768, evaluated as they are.",
            url_template="https://r0k.us/graphics/kodak/kodak/{name}",
            has_manifest=True,
            licence="released by Kodak for unrestricted usage",
        ),
        DatasetSpec(
            "clic2020-professional-valid",
            "eval",
            "CLIC 2020 professional validation set (41 PNGs), shorter side resized to 768, centre crop.",
            archive_url=f"{_CLIC}/professional_valid_2020.zip",
            eval_resize=768,
            licence="Unsplash licence",
        ),
        DatasetSpec(
            "clic2020-professional-test",
            "eval",
            "CLIC 2020 professional test set (250 PNGs), shorter side resized to 768, centre crop.",
            archive_url=f"{_CLIC}/test/CLIC2020Professional_test.zip",
            eval_resize=768,
            licence="Unsplash licence",
        ),
        DatasetSpec(
            "div2k-valid",
            "eval",
            "DIV2K validation HR (100 PNGs, 2K), shorter side resized to 768, centre crop.",
            archive_url=f"{_DIV2K}/DIV2K_valid_HR.zip",
            eval_resize=768,
            licence="academic research only",
        ),
        DatasetSpec(
            "div2k-train",
            "train",
            "DIV2K training HR (800 PNGs, 2K): the GPU training set.",
            archive_url=f"{_DIV2K}/DIV2K_train_HR.zip",
            licence="academic research only",
        ),
        DatasetSpec(
            "clic2020-professional-train",
            "train",
            "CLIC 2020 professional training set (585 PNGs).",
            archive_url=f"{_CLIC}/professional_train_2020.zip",
            licence="Unsplash licence",
        ),
        DatasetSpec(
            "wikiphotos",
            "train",
            "49 downsampled Wikimedia Commons photographs (~1.5 Mpixel) for CPU-scale training, "
            "from GitHub Zelex/images at a pinned commit (attribution: ATTRIBUTION.md beside them).",
            url_template=f"{_WIKIPHOTOS}/{{name}}",
            has_manifest=True,
            licence="Creative Commons, per file (see ATTRIBUTION.md)",
        ),
    )
}


@dataclass(frozen=True)
class ManifestEntry:
    """One image of a committed manifest."""

    name: str
    width: int
    height: int
    pixel_sha256: str
    file_sha256: str | None


def get_dataset(name: str) -> DatasetSpec:
    """The registered dataset ``name``, or a BenchError listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise BenchError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None


def read_manifest(name: str) -> list[ManifestEntry]:
    """The committed manifest of a dataset, sorted by file name."""
    path = MANIFEST_DIR / f"{name}.tsv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    entries = [
        ManifestEntry(r["name"], int(r["width"]), int(r["height"]), r["pixel_sha256"], r.get("file_sha256") or None)
        for r in rows
    ]
    return sorted(entries, key=lambda e: e.name)


def attribution_file(name: str) -> Path | None:
    """The attribution list shipped with dataset ``name`` (``manifests/NAME_ATTRIBUTION.md``), if any."""
    path = MANIFEST_DIR / f"{name}_ATTRIBUTION.md"
    return path if path.is_file() else None
