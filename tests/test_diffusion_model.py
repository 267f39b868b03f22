"""The decoder network: multi-scale injection shapes, g_s initialisation, conditioning, checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from compressai.models import MeanScaleHyperprior

from bench.diffusion.model import Condition, DecoderConfig, DiffusionDecoder, load_decoder
from bench.diffusion.train import save_decoder
from bench.utils import BenchError

M, N = 24, 16  # tiny codec widths


def tiny_config(**overrides) -> DecoderConfig:
    base = dict(
        latent_channels=M,
        num_channels=8,
        channel_mult=(1, 2, 2, 2, 2),
        num_res_blocks=1,
        num_heads=2,
        prediction_type="sample",
        learn_sigma=True,
        train_timesteps=100,
        respacing=10,
    )
    return DecoderConfig(**{**base, **overrides})


def inputs(b: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y_hat = torch.randn(b, M, h // 16, w // 16, generator=g).round()
    x_msh = torch.rand(b, 3, h, w, generator=g) * 2 - 1
    x_t = torch.randn(b, 3, h, w, generator=g)
    return y_hat, x_msh, x_t


@pytest.mark.parametrize(("h", "w"), [(512, 768), (768, 512), (192, 256)])
@pytest.mark.parametrize("from_gs", [False, True])
def test_multiscale_features_match_every_unet_level(h: int, w: int, from_gs: bool) -> None:
    """One map per scale H/8..H, with the channel count of the UNet level it is concatenated into."""
    model = DiffusionDecoder(tiny_config(init_latent_decoder_from_gs=from_gs, gs_channels=N if from_gs else None))
    y_hat, x_msh, x_t = inputs(1, h, w)
    with torch.no_grad():
        cond = model.condition(y_hat, x_msh)
        assert sorted(cond.features) == [0, 1, 2, 3]  # level 4 (H/16) gets none, as in the paper
        for level, fmap in cond.features.items():
            assert fmap.shape == (1, model.unet.level_input_channels[level], h >> level, w >> level)
        if h * w <= 256 * 256:  # the full forward at Kodak size costs tens of CPU seconds
            assert model(x_t, torch.tensor([7]), cond).shape == (1, 6, h, w)


def test_unet_shallower_than_the_latent_decoder_injects_where_it_can() -> None:
    model = DiffusionDecoder(tiny_config(channel_mult=(1, 2, 2)))
    y_hat, x_msh, x_t = inputs(2, 64, 128)
    cond = model.condition(y_hat, x_msh)
    assert sorted(cond.features) == [0, 1, 2]
    assert model(x_t, torch.tensor([0, 99]), cond).shape == (2, 6, 64, 128)


def test_every_injected_map_reaches_the_output() -> None:
    """The gradient of the output reaches the latent decoder's stage for every injected level."""
    model = DiffusionDecoder(tiny_config(learn_sigma=False))
    torch.nn.init.normal_(model.unet.out[-1].weight)  # undo the zero-init so gradients flow back
    y_hat, x_msh, x_t = inputs(1, 64, 64)
    model(x_t, torch.tensor([3]), model.condition(y_hat, x_msh)).square().mean().backward()
    for stage in model.latent_decoder.stages:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in stage.parameters())


def test_gs_initialised_latent_decoder_starts_at_the_msh_reconstruction() -> None:
    torch.manual_seed(0)
    net = MeanScaleHyperprior(N, M).eval()
    model = DiffusionDecoder(tiny_config(init_latent_decoder_from_gs=True, gs_channels=N))
    model.init_from_codec(net.g_s.state_dict())
    y_hat, _, _ = inputs(2, 64, 128)
    with torch.no_grad():
        trunk = model.latent_decoder.trunk(y_hat)
        reference = net.g_s(y_hat)
    assert torch.equal(trunk[-1], reference)
    assert [a.shape[-1] for a in trunk] == [16, 32, 64, 128]


def test_time_conditioned_latent_decoder_is_not_cached_and_depends_on_t() -> None:
    model = DiffusionDecoder(tiny_config(time_conditioned_latent_decoder=True))
    y_hat, x_msh, _ = inputs(1, 64, 64)
    cond = model.condition(y_hat, x_msh)
    assert cond.features is None
    emb = model.unet.embed(torch.tensor([0, 90]))
    maps = model.latent_decoder(y_hat.expand(2, -1, -1, -1), emb)
    assert not torch.allclose(maps[0][0], maps[0][1])


def test_residual_over_msh_starts_exactly_at_msh() -> None:
    model = DiffusionDecoder(tiny_config(residual_over_msh=True, msh_input=True, learn_sigma=False))
    y_hat, x_msh, x_t = inputs(2, 64, 64)
    with torch.no_grad():
        out = model(x_t, torch.tensor([0, 99]), model.condition(y_hat, x_msh))
    assert torch.equal(out, x_msh)


def test_msh_prior_skip_starts_at_the_gaussian_posterior_mean() -> None:
    """With msh_prior_std s a fresh model is the optimal denoiser for x0 ~ N(x_msh, s² I): derived
    here from the Gaussian posterior in float64, x_t itself at t = 0 and x_msh at pure noise."""
    s = 0.12
    model = DiffusionDecoder(tiny_config(residual_over_msh=True, msh_input=True, learn_sigma=False, msh_prior_std=s))
    y_hat, x_msh, _ = inputs(3, 64, 64)
    g = torch.Generator().manual_seed(5)
    x0 = x_msh + s * torch.randn(x_msh.shape, generator=g)
    t = torch.tensor([0, 50, 99])
    abar = model.noise_schedule(None).alphas_cumprod[t].view(-1, 1, 1, 1)  # float64
    x_t = (abar.sqrt() * x0 + (1 - abar).sqrt() * torch.randn(x0.shape, generator=g)).float()
    with torch.no_grad():
        out = model(x_t, t, model.condition(y_hat, x_msh))
    # posterior of x0 given x_t = a x0 + b eps, x0 ~ N(x_msh, s²): precision-weighted mean
    a, b2 = abar.sqrt(), 1 - abar
    posterior = (x_msh.double() / s**2 + a * x_t.double() / b2) / (1 / s**2 + abar / b2)
    torch.testing.assert_close(out.double(), posterior, rtol=0, atol=1e-5)
    assert (out[0] - x_t[0]).abs().max() < 0.02  # t = 0: nearly clean input passes through
    assert (out[2] - x_msh[2]).abs().max() < 1e-3  # pure noise: the MSH reconstruction
    with pytest.raises(BenchError, match="msh_prior_std"):
        tiny_config(msh_prior_std=s)  # needs residual_over_msh


def test_uncondition_zeroes_latent_and_msh_and_recomputes_cached_maps() -> None:
    model = DiffusionDecoder(tiny_config(msh_input=True))
    y_hat, x_msh, _ = inputs(3, 64, 64)
    with torch.no_grad():
        cond = model.condition(y_hat, x_msh)
        keep = torch.tensor([True, False, True])
        dropped = model.drop_condition(cond, keep)
        zero_maps = model.latent_decoder(torch.zeros_like(y_hat[:1]))
    assert torch.equal(dropped.y_hat[keep], y_hat[keep]) and not dropped.y_hat[1].any()
    assert torch.equal(dropped.x_msh[keep], x_msh[keep]) and not dropped.x_msh[1].any()
    for level, fmap in dropped.features.items():
        assert torch.allclose(fmap[1:2], zero_maps[level], atol=1e-6)
        assert torch.allclose(fmap[keep], cond.features[level][keep])
    uncond = model.uncondition(cond)
    assert not uncond.y_hat.any() and not uncond.x_msh.any()


def test_bad_inputs_are_clear_errors() -> None:
    model = DiffusionDecoder(tiny_config(msh_input=True))
    y_hat, x_msh, x_t = inputs(1, 64, 64)
    with pytest.raises(BenchError, match="pass x_msh"):
        model.condition(y_hat)
    with pytest.raises(BenchError, match="channels"):
        model.condition(y_hat[:, :10], x_msh)
    cond = model.condition(torch.zeros(1, M, 3, 3), torch.zeros(1, 3, 48, 48))
    with pytest.raises(BenchError, match="divisible by 16"):
        model(torch.zeros(1, 3, 40, 40), torch.tensor([0]), cond)
    with pytest.raises(BenchError, match="residual_over_msh"):
        tiny_config(prediction_type="epsilon", residual_over_msh=True)


def test_save_load_gives_identical_outputs(tmp_path: Path) -> None:
    config = tiny_config(msh_input=True, time_conditioned_latent_decoder=True)
    torch.manual_seed(1)
    model = DiffusionDecoder(config).eval()
    for p in model.parameters():  # non-trivial weights everywhere, zero-initialised layers included
        torch.nn.init.normal_(p, std=0.05)
    path = tmp_path / "q1.pt"
    save_decoder(path, config, model.state_dict(), step=3, rho_effective=0.0)
    loaded = load_decoder(path)
    assert loaded.config == config
    assert loaded.checkpoint_info["step"] == 3 and loaded.checkpoint_info["rho_effective"] == 0.0
    y_hat, x_msh, x_t = inputs(2, 64, 64)
    t = torch.tensor([4, 60])
    with torch.no_grad():
        expected = model(x_t, t, model.condition(y_hat, x_msh))
        got = loaded(x_t, t, loaded.condition(y_hat, x_msh))
    assert torch.equal(expected, got)
    assert not torch.equal(expected, torch.zeros_like(expected))


def test_config_round_trips_through_a_dict() -> None:
    config = tiny_config(init_latent_decoder_from_gs=True, gs_channels=N)
    assert DecoderConfig.from_dict(config.to_dict()) == config
    with pytest.raises(BenchError, match="unknown decoder config keys"):
        DecoderConfig.from_dict({**config.to_dict(), "colour": 1})
    assert dataclasses.replace(config, respacing=None).respacing is None


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", None])
def test_load_decoder_rejects_missing_corrupt_and_foreign_files(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "q1.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BenchError, match="q1.pt"):
        load_decoder(path)
    torch.save({"state_dict": {}}, path)
    with pytest.raises(BenchError, match="not an rdp-bench diffusion decoder"):
        load_decoder(path)


def test_noise_schedule_defaults_to_the_config_respacing() -> None:
    model = DiffusionDecoder(tiny_config())
    assert model.noise_schedule().num_steps == 10
    assert model.noise_schedule(None).num_steps == 100
    assert model.noise_schedule(5).timestep_map[-1].item() == 99


def test_condition_select_pairs_images_with_seeds() -> None:
    model = DiffusionDecoder(tiny_config(msh_input=True))
    y_hat, x_msh, _ = inputs(2, 64, 64)
    cond = model.condition(y_hat, x_msh)
    picked = cond.select(torch.tensor([1, 1, 0]))
    assert isinstance(picked, Condition)
    assert torch.equal(picked.y_hat[2], y_hat[0]) and torch.equal(picked.x_msh[0], x_msh[1])
    assert picked.features[0].shape[0] == 3
