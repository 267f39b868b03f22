"""Decoder training: loss terms, conditioning dropout, overfitting, resume, NaN guard, LPIPS fallback,
and the end-to-end check that a CI-trained decoder reads the bits."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from compressai.models import MeanScaleHyperprior
from PIL import Image

from bench.cli import main as cli_main
from bench.codec import MSHCodec, load_codec, pad
from bench.codec.checkpoints import save_checkpoint
from bench.config import load_config
from bench.diffusion import train
from bench.diffusion.losses import (
    VGG_WEIGHTS,
    TrainBatch,
    diffusion_loss,
    min_snr_weight,
    perceptual_loss,
    prepare_batch,
    uncond_keep_mask,
    vb_term,
)
from bench.diffusion.model import DecoderConfig, DiffusionDecoder, load_decoder
from bench.diffusion.samplers import sample
from bench.diffusion.schedule import make_schedule
from bench.diffusion.train import DecoderTrainConfig, train_decoder
from bench.points import Knobs
from bench.training import partial_path
from bench.utils import BenchError, Terminated
from tests.ci_workflow import WorkflowRun
from tests.conftest import REPO, write_png

M, N = 24, 16


@pytest.fixture()
def no_torch_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $TORCH_HOME: no VGG weights, and nothing may be downloaded into the real one."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory: pytest.TempPathFactory) -> tuple[MSHCodec, Path]:
    """A random-init MSH codec (small widths) and its checkpoint file."""
    torch.manual_seed(0)
    net = MeanScaleHyperprior(N, M)
    path = tmp_path_factory.mktemp("msh") / "q1.pt"
    save_checkpoint(path, net, quality=1)
    return load_codec(1, checkpoint=path, device="cpu"), path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("train")
    return [write_png(folder / f"im{i}.png", 96, 80, seed=i) for i in range(2)]


def tiny_model_config(**overrides) -> DecoderConfig:
    base = dict(
        latent_channels=M,
        num_channels=8,
        channel_mult=(1, 2, 2),
        num_res_blocks=1,
        num_heads=2,
        prediction_type="epsilon",
        learn_sigma=True,
        train_timesteps=100,
        respacing=None,
    )
    return DecoderConfig(**{**base, **overrides})


def tiny_train_config(**overrides) -> DecoderTrainConfig:
    base = dict(
        quality=1,
        steps=6,
        batch_size=2,
        crop=32,
        lr=1e-3,
        weight_decay=0.0,
        lr_schedule="constant",
        ema=0.9,
        loss="l1",
        rho=0.0,
        min_snr_gamma=5.0,
        p_uncond=0.5,
        grad_clip=1.0,
        checkpoint_every=2,
        seed=3,
        allow_random_backbones=True,
    )
    return DecoderTrainConfig(**{**base, **overrides})


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [-1, 1] (peak-to-peak 2)."""
    return 10 * math.log10(4.0 / torch.mean((a - b) ** 2).item())


# ----------------------------------------------------------------------------- loss terms


@pytest.mark.parametrize("loss", ["l1", "l2"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_min_snr_weight_is_the_x0_space_weight_in_the_target_space(prediction_type: str, loss: str) -> None:
    """Numerically: the weighted loss on a target equals w times the same loss on the x0 estimate that
    the prediction implies (``predict_x0``), w = min(SNR, γ) for eps, clamp(SNR, 1, γ) otherwise, for
    t across the whole schedule (SNR from ~1e4 to ~1e-8, so both clamps act)."""
    schedule, gamma = make_schedule("cosine", 1000, None), 5.0
    generator = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 10, 100, 300, 500, 700, 900, 999])
    shape = (len(t), 3, 4, 4)
    x0, noise, error = (torch.randn(shape, generator=generator, dtype=torch.float64) for _ in range(3))
    x_t = schedule.q_sample(x0, t, noise).double()
    target = schedule.target(prediction_type, x0, noise, t).double()
    x0_hat = schedule.predict_x0(prediction_type, target + error, x_t, t).double()
    power = {"l1": 1, "l2": 2}[loss]
    snr = schedule.snr(t).double()
    w = snr.clamp(max=gamma) if prediction_type == "epsilon" else snr.clamp(min=1.0, max=gamma)
    in_target_space = min_snr_weight(snr, prediction_type, gamma, loss) * error.abs().pow(power).flatten(1).mean(1)
    in_x0_space = w * (x0_hat - x0).abs().pow(power).flatten(1).mean(1)
    torch.testing.assert_close(in_target_space, in_x0_space, rtol=1e-4, atol=0)


def test_uncond_mask_drops_the_expected_fraction() -> None:
    g = torch.Generator().manual_seed(0)
    batch, p = 10, 0.25
    counts = [int((~uncond_keep_mask(batch, p, g)).sum()) for _ in range(2000)]
    assert set(counts) <= {math.floor(p * batch), math.ceil(p * batch)}
    assert np.mean(counts) / batch == pytest.approx(p, abs=0.01)
    assert not (~uncond_keep_mask(4, 0.0, g)).any() and not uncond_keep_mask(4, 1.0, g).any()


def test_training_zeroes_the_conditioning_of_exactly_the_dropped_samples(
    tiny_codec: tuple[MSHCodec, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    codec, _ = tiny_codec
    model = DiffusionDecoder(tiny_model_config(msh_input=True))
    seen = []
    original = model.drop_condition

    def spy(cond, keep):
        dropped = original(cond, keep)
        seen.append((cond, keep, dropped))
        return dropped

    monkeypatch.setattr(model, "drop_condition", spy)
    batch = prepare_batch(codec, torch.rand(8, 3, 64, 64))
    cfg = tiny_train_config(p_uncond=0.3)
    diffusion_loss(model, model.noise_schedule(None), batch, cfg, torch.Generator().manual_seed(1))
    (cond, keep, dropped) = seen[0]
    assert int((~keep).sum()) in (2, 3)
    for field in ("y_hat", "x_msh"):
        before, after = getattr(cond, field), getattr(dropped, field)
        assert torch.equal(after[keep], before[keep]) and before[keep].abs().sum() > 0
        assert not after[~keep].any()


def test_cosine_schedule_anneals_the_rate_that_each_step_takes(tiny_codec: tuple[MSHCodec, Path]) -> None:
    """cosine: lr at step 0, lr/2 half-way, falling to (almost) 0 at the last step; constant: lr throughout.
    The optimiser takes exactly that rate at each step."""
    codec, _ = tiny_codec
    cosine, constant = tiny_train_config(steps=8, lr_schedule="cosine"), tiny_train_config(steps=8)
    rates = [train.learning_rate(cosine, k) for k in range(8)]
    assert rates[0] == cosine.lr and rates[4] == pytest.approx(cosine.lr / 2)
    assert all(a > b for a, b in zip(rates[:-1], rates[1:], strict=True)) and 0 < rates[-1] < cosine.lr / 20
    assert {train.learning_rate(constant, k) for k in range(8)} == {constant.lr}
    run = train.new_run(tiny_model_config(), cosine, codec)
    schedule = run.model.noise_schedule()
    batch = prepare_batch(codec, torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    taken = []
    for _ in range(3):
        train.train_step(run, schedule, batch, cosine, None, 0.0)
        taken.append(run.optimizer.param_groups[0]["lr"])
    assert taken == rates[:3]


def test_vb_term_vanishes_for_the_true_posterior() -> None:
    sched = DiffusionDecoder(tiny_model_config()).noise_schedule(None)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1
    t = torch.tensor([1, 40, 70])  # (near t = T the posterior mean hardly depends on x0)
    x_t = sched.q_sample(x0, t, torch.randn(x0.shape, generator=g))
    exact = vb_term(sched, x0, x_t, t, x0, -torch.ones_like(x0))  # v = -1: the posterior variance
    assert exact.abs().max() < 1e-4
    wrong = vb_term(sched, x0, x_t, t, x0 + 0.5, -torch.ones_like(x0))
    assert (wrong.flatten(1).mean(1) > 1e-3).all()


def test_tiny_model_overfits_one_crop(tiny_codec: tuple[MSHCodec, Path]) -> None:
    """Same crop, same t, same noise every step: the hybrid loss (L1 on eps + VB) must fall 4x."""
    codec, _ = tiny_codec
    torch.manual_seed(0)
    model = DiffusionDecoder(tiny_model_config())
    sched = model.noise_schedule(None)
    batch = prepare_batch(codec, torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5)))
    cfg = tiny_train_config(p_uncond=0.0, min_snr_gamma=None)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        opt.zero_grad()
        loss, _ = diffusion_loss(model, sched, batch, cfg, torch.Generator().manual_seed(7))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 4, losses[::10]


def test_nan_loss_stops_with_a_clear_message(tiny_codec: tuple[MSHCodec, Path]) -> None:
    codec, _ = tiny_codec
    model = DiffusionDecoder(tiny_model_config())
    run = train.TrainRun(model, train.EMA(model, 0.9), torch.optim.AdamW(model.parameters()), torch.Generator())
    batch = prepare_batch(codec, torch.rand(2, 3, 64, 64))
    bad = TrainBatch(batch.x0 * float("nan"), batch.y_hat, batch.x_msh, batch.padding)
    with pytest.raises(BenchError, match="diverged at step 1"):
        train.train_step(run, model.noise_schedule(None), bad, tiny_train_config(), None, 0.0)


# ----------------------------------------------------------------------------- LPIPS weights


def test_rho_without_vgg_weights_falls_back_in_the_default_config(
    no_torch_weights: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(REPO / "configs" / "default.yaml")
    config["decoder"]["train"]["rho"] = 0.9
    cfg = DecoderTrainConfig.from_config(config, 1)
    with caplog.at_level(logging.WARNING):
        net, rho = perceptual_loss(cfg.rho, cfg.allow_random_backbones)
    assert net is None and rho == 0.0
    assert VGG_WEIGHTS in caplog.text and "effective rho = 0" in caplog.text


def test_rho_without_vgg_weights_is_an_error_in_the_paper_config(no_torch_weights: Path) -> None:
    cfg = DecoderTrainConfig.from_config(load_config(REPO / "configs" / "paper.yaml"), 1)
    assert cfg.rho > 0
    with pytest.raises(BenchError) as err:
        perceptual_loss(cfg.rho, cfg.allow_random_backbones)
    assert VGG_WEIGHTS in str(err.value) and str(no_torch_weights) in str(err.value) and "TORCH_HOME" in str(err.value)


@pytest.mark.parametrize("respacing", [None, 10])
def test_training_draws_t_from_the_configured_respacing(
    tiny_codec: tuple[MSHCodec, Path],
    images: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    respacing: int | None,
) -> None:
    """The paper trains with ``--timestep_respacing 1000``: with ``respacing`` K every step's loss runs
    on the K-step schedule (VB weight K/1000) and the network sees only the K kept original indices."""
    codec, msh_path = tiny_codec
    config = tiny_model_config(respacing=respacing)
    schedules, model_times = [], []
    real_loss = train.diffusion_loss

    def spy(model, schedule, *args, **kwargs):
        schedules.append(schedule)
        forward = model.forward
        model.forward = lambda x, t, cond: (model_times.append(t.clone()), forward(x, t, cond))[1]
        try:
            return real_loss(model, schedule, *args, **kwargs)
        finally:
            del model.forward

    monkeypatch.setattr(train, "diffusion_loss", spy)
    train_decoder(
        config,
        tiny_train_config(steps=8, batch_size=4, checkpoint_every=100),
        codec,
        msh_path,
        images,
        tmp_path / "dec.pt",
    )
    expected = DiffusionDecoder(config).noise_schedule(respacing)
    assert schedules and all(torch.equal(s.timestep_map, expected.timestep_map) for s in schedules)
    kept = set(expected.timestep_map.tolist())
    seen = set(torch.cat(model_times).tolist())
    assert seen <= kept and len(kept) == (10 if respacing else 100)


# ----------------------------------------------------------------------------- resume and CLI


def test_resume_after_kill_gives_the_uninterrupted_result(
    tiny_codec: tuple[MSHCodec, Path],
    images: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_torch_weights: Path,
) -> None:
    """Crops of 32 (padded to 64 like the codec), rho 0.9 without weights (falls back, recorded)."""
    codec, msh_path = tiny_codec
    config, cfg = tiny_model_config(msh_input=True), tiny_train_config(rho=0.9, lr_schedule="cosine")
    whole = train_decoder(config, cfg, codec, msh_path, images, tmp_path / "whole.pt")

    out = tmp_path / "killed.pt"
    real_step = train.train_step

    def killed_at_step_5(run, *args):
        if run.step == 4:  # the partial checkpoint of step 4 is on disk
            raise KeyboardInterrupt
        return real_step(run, *args)

    monkeypatch.setattr(train, "train_step", killed_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train_decoder(config, cfg, codec, msh_path, images, out)
    monkeypatch.setattr(train, "train_step", real_step)
    assert not out.exists() and torch.load(partial_path(out), weights_only=False)["step"] == 4

    with pytest.raises(BenchError, match="other settings.*lr"):
        train_decoder(config, dataclasses.replace(cfg, lr=5e-4), codec, msh_path, images, out)
    with pytest.raises(BenchError, match=r"other settings \(train\.steps: 6 -> 8\)"):  # the cosine depends on it
        train_decoder(config, dataclasses.replace(cfg, steps=8), codec, msh_path, images, out)
    train_decoder(config, cfg, codec, msh_path, images, out)
    assert not partial_path(out).exists()

    a, b = torch.load(whole, weights_only=False), torch.load(out, weights_only=False)
    assert a["step"] == b["step"] == 6
    assert a["rho_effective"] == b["rho_effective"] == 0.0 and a["train"]["rho"] == 0.9
    for name, value in a["ema"].items():
        assert torch.equal(value, b["ema"][name]), name
    assert load_decoder(out).checkpoint_info["msh"]["weights_hash"] == codec.weights_hash


def test_sigterm_saves_the_step_and_the_rerun_gives_the_uninterrupted_result(
    tiny_codec: tuple[MSHCodec, Path],
    images: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGTERM in step 3 (checkpoints every 2): the state after step 3 is saved, the message says so
    (the CLI prints it and exits 143), and the rerun ends with the weights of an uninterrupted run."""
    codec, msh_path = tiny_codec
    config, cfg = tiny_model_config(), tiny_train_config()
    whole = train_decoder(config, cfg, codec, msh_path, images, tmp_path / "whole.pt")
    out = tmp_path / "termed.pt"
    real_step = train.train_step

    def term_in_step_3(run, *args):
        if run.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(run, *args)

    monkeypatch.setattr(train, "train_step", term_in_step_3)
    with pytest.raises(
        Terminated, match=re.escape(f"interrupted by SIGTERM at step 3 (state saved in {partial_path(out)})")
    ):
        train_decoder(config, cfg, codec, msh_path, images, out)
    assert not out.exists() and torch.load(partial_path(out), weights_only=False)["step"] == 3
    monkeypatch.setattr(train, "train_step", real_step)
    train_decoder(config, cfg, codec, msh_path, images, out)
    a, b = torch.load(whole, weights_only=False), torch.load(out, weights_only=False)
    assert b["step"] == 6 and all(torch.equal(value, b["ema"][name]) for name, value in a["ema"].items())


def test_train_decoder_cli(tiny_codec: tuple[MSHCodec, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, msh_path = tiny_codec
    data = tmp_path / "data"
    for i in range(2):
        write_png(data / f"{i}.png", 80, 72, seed=i)
    out = tmp_path / "models" / "q1.pt"

    def args(data_dir: Path) -> list[str]:
        return [
            "train-decoder",
            "--config",
            str(REPO / "configs" / "ci.yaml"),
            "--quality",
            "1",
            "--msh-checkpoint",
            str(msh_path),
            "--data",
            str(data_dir),
            "--out",
            str(out),
            "--steps",
            "2",
            "--device",
            "cpu",
        ]

    assert cli_main(args(data)) == 0
    decoder = load_decoder(out)
    assert decoder.checkpoint_info["step"] == 2 and decoder.config.latent_channels == M
    assert cli_main(args(tmp_path / "missing")) == 2
    assert "missing does not exist" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the decoder reads the bits


@pytest.fixture(scope="module")
def ci_decoder(ci_local_run: WorkflowRun) -> tuple[Path, Path]:
    """The MSH and diffusion decoder that the CI workflow trained (configs/ci.yaml on wikiphotos): the
    models behind the golden table, trained once per session by ``ci_local_run``."""
    assert ci_local_run.result.returncode == 0, ci_local_run.output[-4000:]
    models = ci_local_run.workdir / "models"
    return models / "msh" / "q1.pt", models / "decoder" / "q1.pt"


def kodak_crops(kodak_dir: Path, size: int, count: int) -> torch.Tensor:
    crops = []
    for path in sorted(kodak_dir.glob("kodim*.png"))[:count]:
        image = np.asarray(Image.open(path).convert("RGB"))
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        crops.append(torch.from_numpy(image[top : top + size, left : left + size].copy()).permute(2, 0, 1))
    return torch.stack(crops).float() / 255


@pytest.mark.slow
def test_ci_decoder_uses_the_bits(ci_decoder: tuple[Path, Path], kodak_dir: Path) -> None:
    """After the CI training, the one-shot x0 from pure noise at t = T follows the bitstream.

    What each assertion proves (on held-out Kodak crops, one fixed noise draw for both branches):
    1. x0 with the real conditioning is far closer (PSNR) to the MSH reconstruction than x0 with
       the conditioning zeroed: the prediction depends on the bits. With ``residual_over_msh`` this
       alone would hold for an *untrained* model (zero-initialised output: x0 = x_msh exactly), so:
    2. training moved the network's own output away from zero (x0 != x_msh), so 1 is a property
       of trained weights, not of the initialisation; and
    3. the trained x0 is about as close to the *original* as MSH is (within 1 dB): what the
       network adds does not override the content carried by the bits with a generic image — the
       failure PAPER.md measured for eps-prediction (x0 from noise ~6 dB, unrelated textures);
    4. without the bits the same network is clearly further from the original.
    """
    msh_path, decoder_path = ci_decoder
    codec = load_codec(1, checkpoint=msh_path, device="cpu")
    model = load_decoder(decoder_path)
    x = kodak_crops(kodak_dir, 128, 2)
    batch = prepare_batch(codec, x)
    schedule = model.noise_schedule(None)
    t_last = torch.full((x.shape[0],), schedule.num_steps - 1)
    x_T = torch.randn(batch.x0.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cond = model.condition(batch.y_hat, batch.x_msh)
        x0_cond = schedule.predict_x0(model.config.prediction_type, model(x_T, t_last, cond)[:, :3], x_T, t_last)
        uncond = model.uncondition(cond)
        x0_uncond = schedule.predict_x0(model.config.prediction_type, model(x_T, t_last, uncond)[:, :3], x_T, t_last)
    x0_cond, x0_uncond = x0_cond.clamp(-1, 1), x0_uncond.clamp(-1, 1)
    assert pad(x)[1] == (0, 0, 0, 0)
    original, x_msh = batch.x0, batch.x_msh

    scores = {
        "cond_vs_msh": psnr(x0_cond, x_msh),
        "uncond_vs_msh": psnr(x0_uncond, x_msh),
        "cond_vs_original": psnr(x0_cond, original),
        "uncond_vs_original": psnr(x0_uncond, original),
        "msh_vs_original": psnr(x_msh, original),
        "mean_abs_residual": (x0_cond - x_msh).abs().mean().item(),
    }
    assert scores["cond_vs_msh"] > scores["uncond_vs_msh"] + 6.0, scores
    assert scores["mean_abs_residual"] > 1e-3, scores
    assert scores["cond_vs_original"] > scores["msh_vs_original"] - 1.0, scores
    assert scores["uncond_vs_original"] < scores["cond_vs_original"] - 2.0, scores


@pytest.mark.slow
def test_ci_decoder_moves_further_from_msh_as_t0_grows(ci_decoder: tuple[Path, Path], kodak_dir: Path) -> None:
    """Partial diffusion on a trained decoder: the longer the chain that starts from the
    noised MSH reconstruction, the further (mean absolute difference, averaged over three seeds)
    the output lands from MSH, up to where the noise has drowned the MSH start: from there on
    (t0 = 0.4 and 1 here) the distance levels off, and which of the two is larger depends on the
    CPU the decoder was trained on (0.1265 at t0 = 1 against 0.1291 at 0.4 on an AMD EPYC, the
    other way round on an Intel Xeon). t0 = 0 is MSH itself."""
    msh_path, decoder_path = ci_decoder
    codec = load_codec(1, checkpoint=msh_path, device="cpu")
    model = load_decoder(decoder_path)
    batch = prepare_batch(codec, kodak_crops(kodak_dir, 128, 2))
    cond = model.condition(batch.y_hat, batch.x_msh)
    distances = []
    for t0 in (0.0, 0.1, 0.4, 1.0):
        out = sample(
            model,
            cond,
            sampler="ddpm",
            steps=20,
            seeds=[0, 1, 2],
            clip=True,
            knobs=Knobs(t0=t0),
            x_start=batch.x_msh,
            progress=False,
        )
        distances.append(float((out - batch.x_msh[:, None]).abs().mean()))
    assert distances[0] == 0.0 < distances[1] < distances[2], distances
    assert distances[3] > distances[1] and distances[3] > 0.9 * distances[2], distances
