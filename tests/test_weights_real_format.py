"""With format-exact weight files in ``$TORCH_HOME`` the suite runs its "real" paths offline.

The files of :mod:`tests.weight_files` carry the upstream names and key layouts but random-init
values, registered through ``$BENCH_WEIGHT_HASHES``. To the code they are the published weights,
and that is the point: every branch a lab with the real files runs (``allow_random_backbones:
false``, LPIPS/DISTS/FID on loaded trunks, the LPIPS(VGG) training term, the compressai zoo) is
exercised here, and the suite's numbers are checked against what the upstream packages compute
when they load the same files themselves. The hash checks that make ``real`` honest are tested
on files that are *not* registered.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench import weight_files
from bench.cli import main
from bench.codec import load_codec
from bench.codec.checkpoints import load_pretrained, zoo_weights_path
from bench.config import load_config
from bench.metrics.distribution import InceptionFeatures, PatchFID, extract_patches, frechet_distance
from bench.metrics.perceptual import DISTS, LPIPS
from bench.metrics.weights import BACKBONES, RandomBackboneWarning, resolve_backbones
from bench.utils import BenchError
from bench.weight_files import HASHES_ENV, ZOO_FILES, ZOO_ROOT_URL, hash_problem, registered_hashes, zoo_availability
from tests.conftest import REPO, write_png
from tests.weight_files import ZOO_QUALITIES, WeightFiles


def _pair(seed: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Two uint8 batches (B=2): smooth images and noisy copies of them."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand((2, 3, size // 8, size // 8), generator=generator)
    images = torch.nn.functional.interpolate(base, size=size, mode="bilinear") * 255
    noisy = images + 25 * torch.randn(images.shape, generator=generator)
    return images.round().to(torch.uint8), noisy.clamp(0, 255).round().to(torch.uint8)


def _unregistered_copy(files: WeightFiles, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A $TORCH_HOME holding one stand-in file under its upstream name, with no hash registered."""
    folder = tmp_path / "torch_home" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / name).symlink_to(files.checkpoints / name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(HASHES_ENV, raising=False)
    return folder / name


# ----------------------------------------------------------------------------- the files are format-exact


def test_zoo_file_table_is_compressais() -> None:
    from compressai.zoo.image import model_urls

    assert {q: f"{ZOO_ROOT_URL}/{name}" for q, name in ZOO_FILES.items()} == model_urls["mbt2018-mean"]["mse"]


def test_the_upstream_loaders_read_the_files(real_weights: WeightFiles) -> None:
    """torchvision, torch-fidelity and compressai load them through their own (strict) code paths."""
    from compressai.zoo import mbt2018_mean
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torchvision.models import AlexNet_Weights, VGG16_Weights, alexnet, vgg16

    alexnet(weights=AlexNet_Weights.IMAGENET1K_V1)
    vgg16(weights=VGG16_Weights.IMAGENET1K_V1)
    FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])  # no path: torch.hub's cache
    for quality in ZOO_QUALITIES:
        assert (192 if quality <= 4 else 320) == mbt2018_mean(quality, pretrained=True, progress=False).M
    assert all(hash_problem(real_weights.checkpoints / name) is None for name in registered_hashes())


# ----------------------------------------------------------------------------- real labels, upstream values


def test_metrics_without_random_backbones_run_and_say_real(real_weights: WeightFiles, tmp_path: Path) -> None:
    for folder, seed in (("reference", 0), ("reconstructions", 1)):
        for i in range(2):
            write_png(tmp_path / folder / f"im{i}.png", 64, 64, seed=seed * 10 + i)
    out, summary = tmp_path / "per_image.csv", tmp_path / "summary.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomBackboneWarning)
        code = main(
            [
                "metrics",
                "--reference",
                str(tmp_path / "reference"),
                "--reconstructions",
                str(tmp_path / "reconstructions"),
                "--out",
                str(out),
                "--summary",
                str(summary),
                "--no-download",
                "--no-swd",
                "--no-niqe",
                "--device",
                "cpu",
            ]
        )
    assert code == 0
    row = pd.read_csv(summary).iloc[0]
    assert row["lpips_backbone"] == row["dists_backbone"] == row["fid_backbone"] == "real"
    assert set(pd.read_csv(out)["lpips_backbone"]) == {"real"}


def test_lpips_and_dists_equal_the_upstream_packages_on_the_same_files(real_weights: WeightFiles) -> None:
    import lpips
    from DISTS_pytorch import DISTS_pt

    resolved = resolve_backbones(["alexnet", "vgg16"], allow_random=False, download=False)
    x, y = _pair(0)
    ours_lpips, ours_dists = LPIPS(resolved["alexnet"])(x, y), DISTS(resolved["vgg16"])(x, y)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # lpips/DISTS ask torchvision with `pretrained=True`
        upstream_lpips = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()
        theirs_lpips = upstream_lpips(x.float() / 127.5 - 1, y.float() / 127.5 - 1).reshape(-1)
        theirs_dists = DISTS_pt.DISTS().eval()(x.float() / 255, y.float() / 255, batch_average=False)
    assert ours_lpips.min() > 0 and ours_dists.min() > 0
    torch.testing.assert_close(ours_lpips, theirs_lpips, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours_dists, theirs_dists.reshape(-1), rtol=1e-5, atol=1e-6)


def _fid_both_ways() -> tuple[dict[str, float | int | str], torch.Tensor, torch.Tensor]:
    """The suite's PatchFID summary, and torch-fidelity's own features of the same patches."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    resolved = resolve_backbones(["inception"], allow_random=False, download=False)["inception"]
    (x, y), patch = _pair(1), 32
    meter = PatchFID(InceptionFeatures(resolved), patch_size=patch, protocol="nonoverlap", batch_size=8)
    meter.update(x, y)
    extractor = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).eval()  # loads the file itself
    with torch.no_grad():
        f_x, f_y = (extractor(extract_patches(t, patch, "nonoverlap"))[0] for t in (x, y))
    return meter.compute(), f_x, f_y


def test_inception_features_kid_and_fid_equal_torch_fidelity_on_the_same_patches(real_weights: WeightFiles) -> None:
    """KID through torch-fidelity's own features and function; FID through the closed form on its
    features, which tests/test_metrics_distribution.py ties to torch-fidelity's formula (the
    2048-d eigendecomposition itself is the slow test below)."""
    from torch_fidelity.metric_kid import kid_features_to_metric

    ours, f_x, f_y = _fid_both_ways()
    kid = kid_features_to_metric(
        f_x, f_y, kid_subsets=100, kid_subset_size=ours["n_patches"], rng_seed=0, verbose=False
    )
    fid, kid_ours = ours["fid_nonoverlap_p32"], ours["kid_nonoverlap_p32"]
    assert ours["n_patches"] == 8 and fid > 1e-3 and kid_ours > 1e-6  # features that tell the images apart
    assert kid_ours == pytest.approx(kid["kernel_inception_distance_mean"], rel=1e-6, abs=1e-9)
    assert fid == pytest.approx(frechet_distance(f_x, f_y), rel=1e-9)


@pytest.mark.slow
def test_fid_equals_torch_fidelitys_formula_on_2048_features(real_weights: WeightFiles) -> None:
    """The same FID through torch-fidelity's eigvals formula (a minute of CPU for 2048 x 2048)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    ours, f_x, f_y = _fid_both_ways()
    fid = fid_statistics_to_metric(fid_features_to_statistics(f_x), fid_features_to_statistics(f_y), False)
    assert ours["fid_nonoverlap_p32"] == pytest.approx(fid["frechet_inception_distance"], rel=1e-4)


# ----------------------------------------------------------------------------- the LPIPS(VGG) training term


def test_rho_09_trains_with_lpips_vgg_on_the_zoo_latent(real_weights: WeightFiles, tmp_path: Path) -> None:
    """rho = 0.9 with the VGG file present: the term is in the loss, its gradient reaches the UNet,
    the checkpoint records 0.9; the default config's decoder fits the zoo's M = 192 latent."""
    from bench.diffusion.losses import diffusion_loss, perceptual_loss, prepare_batch
    from bench.diffusion.model import DecoderConfig, DiffusionDecoder
    from bench.diffusion.train import DecoderTrainConfig, train_decoder

    msh = tmp_path / "msh.pt"
    assert main(["export-msh", "--quality", "1", "--out", str(msh)]) == 0
    codec = load_codec(1, checkpoint=msh, device="cpu")
    config = load_config(REPO / "configs" / "default.yaml")
    config["allow_random_backbones"] = False
    config["decoder"]["train"] |= {"rho": 0.9, "steps": 2, "batch_size": 1, "crop": 32, "checkpoint_every": 2}
    cfg = DecoderTrainConfig.from_config(config, 1)
    model_config = DecoderConfig.from_section(config["decoder"]["model"], codec.net.M, codec.net.N)
    assert model_config.latent_channels == 192

    lpips_net, rho = perceptual_loss(cfg.rho, cfg.allow_random_backbones)
    assert lpips_net is not None and rho == 0.9
    model = DiffusionDecoder(model_config)
    schedule = model.noise_schedule(respacing=None)
    batch = prepare_batch(codec, torch.rand((1, 3, 32, 32), generator=torch.Generator().manual_seed(0)))
    losses = {}
    for term in (0.0, rho):
        model.zero_grad()
        loss, stats = diffusion_loss(model, schedule, batch, cfg, torch.Generator().manual_seed(1), lpips_net, term)
        losses[term] = loss
    assert stats["lpips"] > 0 and losses[rho].item() == pytest.approx(losses[0.0].item() + rho * stats["lpips"])
    model.zero_grad()
    (losses[rho] - losses[0.0]).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

    images = [write_png(tmp_path / "data" / f"{i}.png", 48, 48, seed=i) for i in range(2)]
    out = train_decoder(model_config, cfg, codec, msh, images, tmp_path / "decoder.pt")
    saved = torch.load(out, map_location="cpu", weights_only=False)
    assert saved["rho_effective"] == 0.9 and saved["train"]["rho"] == 0.9


# ----------------------------------------------------------------------------- the compressai zoo


def test_export_msh_reads_the_zoo_file_and_records_it(real_weights: WeightFiles, tmp_path: Path) -> None:
    out = tmp_path / "q1.pt"
    assert main(["export-msh", "--quality", "1", "--out", str(out)]) == 0
    saved = torch.load(out, map_location="cpu", weights_only=True)
    assert saved["zoo_file"] == ZOO_FILES[1] and saved["M"] == 192
    assert load_codec(1, checkpoint=out).weights_hash == load_codec(1, pretrained=True).weights_hash

    images = tmp_path / "images"
    write_png(images / "a.png", 64, 64)
    assert main(["encode", str(images), str(tmp_path / "bits"), "--quality", "1", "--checkpoint", str(out)]) == 0
    record = tmp_path / "rec" / "decode.json"
    assert (
        main(
            [
                "decode",
                str(tmp_path / "bits"),
                str(tmp_path / "rec"),
                "--decoder",
                "msh",
                "--checkpoint",
                str(out),
                "--record",
                str(record),
            ]
        )
        == 0
    )
    (digest,) = registered_hashes()[ZOO_FILES[1]]
    expected = f"zoo:{ZOO_FILES[1]}:sha256={digest[:16]}:{load_codec(1, checkpoint=out).weights_hash}"
    assert json.loads(record.read_text())["msh_weights"] == expected


# ----------------------------------------------------------------------------- honest labels


def test_unregistered_backbone_file_of_the_right_name_is_not_real(
    weight_files: WeightFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = BACKBONES["alexnet"].filename
    path = _unregistered_copy(weight_files, name, tmp_path, monkeypatch)
    with pytest.raises(BenchError, match=rf"{path}.*7be5be79") as caught:
        resolve_backbones(["alexnet"], allow_random=False, download=False)
    assert HASHES_ENV in str(caught.value) and len(str(caught.value).splitlines()) == 1
    with pytest.warns(RandomBackboneWarning, match=rf"RANDOM-INIT.*{name}"):
        assert resolve_backbones(["alexnet"], allow_random=True, download=False)["alexnet"].provenance == "random-init"


def test_unregistered_zoo_file_is_refused_naming_it(
    weight_files: WeightFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unregistered_copy(weight_files, ZOO_FILES[1], tmp_path, monkeypatch)
    with pytest.raises(BenchError, match=rf"{zoo_weights_path(1)}.*e522738d"):
        load_pretrained(1)


def test_a_file_whose_hash_matches_its_name_needs_no_registration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = b"weights"
    path = tmp_path / f"net-{hashlib.sha256(content).hexdigest()[:8]}.pth"
    path.write_bytes(content)
    monkeypatch.delenv(HASHES_ENV, raising=False)
    assert hash_problem(path) is None
    path.write_bytes(b"other weights")
    assert hash_problem(path) is not None


def _fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the next job's process: nothing hashed in memory yet, and reading a file's bytes to hash
    them raises (so a value can only come from the record)."""
    weight_files._sha256.cache_clear()

    def no_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was hashed again")

    monkeypatch.setattr(weight_files, "sha256_file", no_read)


def _weights_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, age_s: float = 3600.0) -> Path:
    """A file whose name carries its own hash prefix (so it counts as upstream's), last written
    ``age_s`` ago, with no registered hashes and nothing hashed in memory."""
    content = b"weights"
    path = tmp_path / f"net-{hashlib.sha256(content).hexdigest()[:8]}.pth"
    path.write_bytes(content)
    written = time.time_ns() - int(age_s * 1e9)
    os.utime(path, ns=(written, written))
    monkeypatch.delenv(HASHES_ENV, raising=False)
    weight_files._sha256.cache_clear()
    return path


def test_a_files_hash_is_read_once_and_recorded_beside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next process takes the verified hash from ``.NAME.sha256`` while the file is unchanged."""
    path = _weights_file(tmp_path, monkeypatch)
    assert hash_problem(path) is None
    assert weight_files.hash_record_path(path).read_text().split()[0] == hashlib.sha256(b"weights").hexdigest()
    with monkeypatch.context() as patch:
        _fresh_process(patch)
        assert hash_problem(path) is None


@pytest.mark.parametrize("change", ["bytes", "replaced by rename", "forged record"])
def test_a_changed_file_is_hashed_again(change: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Other bytes of the same size, a replacement by rename, or a record whose stamp is not the
    file's: the record does not vouch for the file, its bytes are read and the mismatch is reported."""
    path = _weights_file(tmp_path, monkeypatch)
    assert hash_problem(path) is None
    if change == "bytes":
        path.write_bytes(b"WEIGHTS")  # same size
    elif change == "replaced by rename":
        other = tmp_path / "other"
        other.write_bytes(b"WEIGHTS")
        os.replace(other, path)
    else:
        path.write_bytes(b"WEIGHTS")
        weight_files.hash_record_path(path).write_text(f"{hashlib.sha256(b'weights').hexdigest()} 7 0 0\n")
    with monkeypatch.context() as patch:
        _fresh_process(patch)
        with pytest.raises(AssertionError, match="hashed again"):
            hash_problem(path)
    assert hash_problem(path) is not None


def test_a_file_written_moments_ago_gets_no_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """File times are coarse: a second write of the same size in the same tick would keep the stamp,
    so a file younger than RECORD_SETTLE_S is hashed but not recorded (checked again next time)."""
    path = _weights_file(tmp_path, monkeypatch, age_s=0.0)
    assert hash_problem(path) is None
    assert not weight_files.hash_record_path(path).exists()


def test_a_record_that_cannot_be_written_is_gone_without(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A weights folder the job cannot write to (a lab's shared, read-only cache; here a folder in
    the record's place, which fails the same way for root): the hash is still checked, no error, no
    temporary file left."""
    path = _weights_file(tmp_path, monkeypatch)
    weight_files.hash_record_path(path).mkdir()
    assert hash_problem(path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, weight_files.hash_record_path(path).name])


def test_a_malformed_hash_listing_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listing = tmp_path / "hashes.txt"
    listing.write_text("# ok\n" + "0" * 64 + "  good.pth\nnot-a-hash  bad.pth\n")
    monkeypatch.setenv(HASHES_ENV, str(listing))
    with pytest.raises(BenchError, match=rf"{listing} line 3 .*sha256sum"):
        registered_hashes()
    monkeypatch.setenv(HASHES_ENV, str(tmp_path / "absent.txt"))
    with pytest.raises(BenchError, match="absent.txt cannot be read"):
        registered_hashes()


def test_a_sha256sum_listing_registers_a_resave(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({"w": torch.zeros(2)}, path)
    assert hash_problem(path) is not None
    listing = tmp_path / "hashes.txt"
    listing.write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()} *some/dir/{path.name}\n")
    monkeypatch.setenv(HASHES_ENV, str(listing))
    assert hash_problem(path) is None
    assert list(registered_hashes()) == [path.name]


def test_zoo_availability_checks_presence_hash_and_reachability(
    weight_files: WeightFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weight_files.activate(monkeypatch)
    assert zoo_availability(ZOO_QUALITIES) is None
    monkeypatch.setattr("bench.weight_files.ZOO_ROOT_URL", "http://127.0.0.1:9")  # nothing listens: offline
    assert "mbt2018-mean-6" in zoo_availability([6])  # q6 is not in the fixture
    path = _unregistered_copy(weight_files, ZOO_FILES[1], tmp_path, monkeypatch)
    assert str(path) in zoo_availability([1])  # present but not upstream's bytes


def test_rho_with_an_unregistered_vgg_file_is_refused_or_falls_back(
    weight_files: WeightFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from bench.diffusion.losses import perceptual_loss

    path = _unregistered_copy(weight_files, BACKBONES["vgg16"].filename, tmp_path, monkeypatch)
    with pytest.raises(BenchError, match=rf"rho = 0.9 .*{path}.*397923af"):
        perceptual_loss(0.9, allow_random_backbones=False)
    assert perceptual_loss(0.9, allow_random_backbones=True) == (None, 0.0)
    assert "effective rho = 0" in caplog.text and str(path) in caplog.text
