"""``python -m bench decode --decoder diffusion`` end to end with random-init tiny models (CPU, seconds).

A tiny MSH codec and a tiny diffusion decoder are written as real checkpoint files; images are
encoded with ``python -m bench encode`` and decoded with the diffusion decoder: right sizes, one
folder (or file) per seed, the JSON record beside the outputs, repeatable output, and bad
arguments stopping with exit code 2 before anything is written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from compressai.models import MeanScaleHyperprior
from PIL import Image

from bench.cli import main
from bench.codec import MSHCodec
from bench.codec.checkpoints import save_checkpoint
from bench.decode_record import DecodeRecord
from bench.diffusion.model import DecoderConfig, DiffusionDecoder
from bench.diffusion.train import save_decoder
from tests.conftest import write_png

SIZES = [(40, 60), (64, 128)]  # (H, W): one needs padding, the other not; two padded sizes → two batches


def tiny_msh(path: Path) -> MSHCodec:
    torch.manual_seed(0)
    net = MeanScaleHyperprior(N=16, M=24)
    net.update(force=True)
    save_checkpoint(path, net, quality=1, lmbda=0.0018, step=0)
    return MSHCodec.from_net(net.eval(), quality=1, device="cpu")


def tiny_config(**overrides: object) -> DecoderConfig:
    """A decoder for tiny_msh's latent: four levels, self-attention at the two lowest (H/8, H/16), cheap on the CPU."""
    return DecoderConfig(
        latent_channels=24,
        num_channels=8,
        channel_mult=(1, 1, 1, 2),
        num_res_blocks=1,
        num_heads=1,
        train_timesteps=100,
        respacing=None,
        **overrides,
    )


def tiny_decoder(path: Path, codec: MSHCodec, p_uncond: float = 0.1, **overrides: object) -> DecoderConfig:
    config = tiny_config(**overrides)
    torch.manual_seed(1)
    model = DiffusionDecoder(config)
    msh = {"checkpoint": "tiny", "quality": 1, "weights_hash": codec.weights_hash}
    save_decoder(path, config, model.state_dict(), msh=msh, rho_effective=0.0, step=0, train={"p_uncond": p_uncond})
    return config


CONFIGS = {
    # the default config's kind: x0 as a residual over the MSH reconstruction, MSH as input
    "residual": {"prediction_type": "sample", "residual_over_msh": True, "msh_input": True, "learn_sigma": False},
    # the paper's kind: eps prediction with learned-range variance, no MSH input
    "paper": {"prediction_type": "epsilon", "learn_sigma": True},
}


def tiny_setup(tmp_path: Path) -> dict[str, Path]:
    """A tiny MSH, one tiny decoder per CONFIGS entry, and the SIZES images encoded (paths by name)."""
    msh = tmp_path / "msh.pt"
    codec = tiny_msh(msh)
    decoders = {}
    for name, overrides in CONFIGS.items():
        decoders[name] = tmp_path / f"decoder-{name}.pt"
        tiny_decoder(decoders[name], codec, **overrides)
    images = tmp_path / "images"
    for i, (h, w) in enumerate(SIZES):
        write_png(images / f"img{i}.png", h, w, seed=i)
    bits = tmp_path / "bits"
    assert main(["encode", str(images), str(bits), "--quality", "1", "--checkpoint", str(msh)]) == 0
    return {"msh": msh, "bits": bits, "tmp": tmp_path, **decoders}


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    return tiny_setup(tmp_path)


def decode(setup: dict[str, Path], src: Path, out: str, *extra: str, decoder: str = "residual") -> int:
    return main(
        [
            "decode",
            str(src),
            out,
            "--decoder",
            "diffusion",
            "--checkpoint",
            str(setup["msh"]),
            "--decoder-checkpoint",
            str(setup[decoder]),
            "--device",
            "cpu",
            *extra,
        ]
    )


@pytest.mark.parametrize("decoder, sampler", [("residual", "ddim"), ("paper", "ddpm"), ("residual", "dpmpp")])
def test_folder_decode_writes_pngs_and_record_per_seed(setup: dict[str, Path], decoder: str, sampler: str) -> None:
    out = setup["tmp"] / "out-s{seed}"
    args = ["--sampler", sampler, "--steps", "2", "--seeds", "0", "1", "--batch-size", "2"]
    assert decode(setup, setup["bits"], str(out), *args, decoder=decoder) == 0
    for seed in (0, 1):
        folder = setup["tmp"] / f"out-s{seed}"
        for i, (h, w) in enumerate(SIZES):
            assert Image.open(folder / f"img{i}.png").size == (w, h)
        record = json.loads((folder / "decode_config.json").read_text())
        assert record["seed"] == seed
        assert record["sampling"]["sampler"] == sampler and record["sampling"]["steps"] == 2
        assert record["sampling"]["scheduler"]["num_train_timesteps"] > 0
        assert record["decoder_checkpoint"]["weights_hash"] and record["msh"]["quality"] == 1
        assert sorted(record["bitstreams"]) == ["img0.bin", "img1.bin"]


def test_single_file_is_repeatable_and_seeds_differ(setup: dict[str, Path]) -> None:
    """Same seed → identical PNG; the paper-kind decoder starts from noise, so another seed differs."""
    src = setup["bits"] / "img0.bin"
    outs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        out = setup["tmp"] / f"{name}.png"
        assert decode(setup, src, str(out), "--sampler", "ddpm", "--steps", "2", "--seed", seed, decoder="paper") == 0
        outs[name] = np.asarray(Image.open(out))
        assert json.loads(out.with_suffix(".json").read_text())["seed"] == int(seed)
    assert np.array_equal(outs["a"], outs["b"])
    assert not np.array_equal(outs["a"], outs["c"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--sampler", "ddim"], "--steps"),
        (["--sampler", "ddim", "--steps", "0"], "'steps'"),
        (["--sampler", "ddpm", "--steps", "2", "--eta", "0.5"], "'eta'"),
        (["--sampler", "ddim", "--steps", "2", "--seeds", "0", "1"], "{seed}"),
        (["--sampler", "ddim", "--steps", "500"], "'steps'"),
        (["--sampler", "ddpm", "--steps", "2", "--t0", "1.5"], "'t0'"),
        (["--sampler", "ddpm", "--steps", "2", "--n-avg", "0"], "'n_avg'"),
        (["--sampler", "ddpm", "--steps", "2", "--guidance", "-1"], "'guidance'"),
    ],
)
def test_bad_arguments_exit_2_without_output(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = setup["tmp"] / "bad"
    assert decode(setup, setup["bits"], str(out), *extra) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_decoder_of_another_codec_is_refused(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    other = setup["tmp"] / "other.pt"
    codec = tiny_msh(setup["tmp"] / "unused-msh.pt")
    object.__setattr__(codec, "weights_hash", "0" * 16)
    tiny_decoder(other, codec, **CONFIGS["residual"])
    out = setup["tmp"] / "x.png"
    args = [
        "decode",
        str(setup["bits"] / "img0.bin"),
        str(out),
        "--decoder",
        "diffusion",
        "--checkpoint",
        str(setup["msh"]),
        "--decoder-checkpoint",
        str(other),
        "--sampler",
        "ddim",
        "--steps",
        "2",
    ]
    assert main(args) == 2
    assert "trained on MSH weights" in capsys.readouterr().err
    assert not out.exists()


def test_start_level_zero_is_the_msh_reconstruction(setup: dict[str, Path]) -> None:
    """t0 = 0 runs no network step: the PNGs are those of the MSH decoder, pixel for pixel."""
    msh_out, t0_out = setup["tmp"] / "msh", setup["tmp"] / "t0"
    assert (
        main(
            [
                "decode",
                str(setup["bits"]),
                str(msh_out),
                "--decoder",
                "msh",
                "--checkpoint",
                str(setup["msh"]),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert decode(setup, setup["bits"], str(t0_out), "--sampler", "ddpm", "--steps", "4", "--t0", "0") == 0
    for i in range(len(SIZES)):
        assert np.array_equal(
            np.asarray(Image.open(msh_out / f"img{i}.png")), np.asarray(Image.open(t0_out / f"img{i}.png"))
        )
    assert json.loads((t0_out / "decode_config.json").read_text())["sampling"]["network_evaluations"] == 0


def test_knobs_are_applied_and_recorded(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "knobs"
    args = ["--sampler", "ddim", "--steps", "4", "--t0", "0.5", "--guidance", "2", "--n-avg", "2"]
    assert decode(setup, setup["bits"], str(out), *args) == 0
    sampling = json.loads((out / "decode_config.json").read_text())["sampling"]
    assert (sampling["t0"], sampling["guidance"], sampling["n_avg"]) == (0.5, 2.0, 2)
    assert sampling["network_evaluations"] == sampling["steps_run"] * 2 * 2
    assert 0 < sampling["steps_run"] < 4
    plain = setup["tmp"] / "plain"
    assert decode(setup, setup["bits"], str(plain), "--sampler", "ddim", "--steps", "4") == 0
    assert not np.array_equal(np.asarray(Image.open(out / "img0.png")), np.asarray(Image.open(plain / "img0.png")))


def test_the_decode_record_holds_the_diffusion_fields_the_tables_read(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "recorded"
    args = ["--sampler", "ddim", "--steps", "4", "--guidance", "2", "--record", str(out / "decode.json")]
    assert decode(setup, setup["bits"], str(out), *args) == 0
    record = DecodeRecord.read(out)
    provenance = json.loads((out / "decode_config.json").read_text())
    assert record is not None and record.decoder == "diffusion" and record.n_images == len(SIZES)
    assert record.nfe == provenance["sampling"]["network_evaluations"] == 8
    assert record.decoder_weights == provenance["decoder_checkpoint"]["weights_hash"]
    assert (record.rho, record.batch_size, record.threads) == (
        0.0,
        provenance["batching"]["batch_size"],
        provenance["batching"]["threads"],
    )


def test_guidance_without_conditioning_dropout_is_refused(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    codec = tiny_msh(setup["tmp"] / "msh-again.pt")  # the same seeded weights as setup["msh"]
    tiny_decoder(setup["tmp"] / "no-dropout.pt", codec, p_uncond=0.0, **CONFIGS["residual"])
    setup = {**setup, "no-dropout": setup["tmp"] / "no-dropout.pt"}
    out = setup["tmp"] / "guided"
    args = ["--sampler", "ddim", "--steps", "2", "--guidance", "3"]
    assert decode(setup, setup["bits"], str(out), *args, decoder="no-dropout") == 2
    assert "'guidance'" in capsys.readouterr().err and not out.exists()
    assert decode(setup, setup["bits"], str(out), "--sampler", "ddim", "--steps", "2", decoder="no-dropout") == 0


def test_compiled_unet_gives_the_eager_output(setup: dict[str, Path]) -> None:
    """`--compile` is a speed switch only: compiled kernels may reorder float32 sums (differences of
    ~1e-6 in [-1, 1]), so an 8-bit pixel may land one level apart, never more; the record says compiled."""
    src = setup["bits"] / "img1.bin"
    outs = {}
    for flag in ("--no-compile", "--compile"):
        out = setup["tmp"] / f"{flag.strip('-')}.png"
        assert decode(setup, src, str(out), "--sampler", "ddim", "--steps", "2", flag) == 0
        outs[flag] = np.asarray(Image.open(out)).astype(int)
        assert json.loads(out.with_suffix(".json").read_text())["compiled"] == (flag == "--compile")
    difference = np.abs(outs["--compile"] - outs["--no-compile"])
    assert difference.max() <= 1 and (difference == 0).mean() > 0.99


def test_record_names_the_batches_and_threads(setup: dict[str, Path]) -> None:
    """A sample depends on its batch-mates and the threads at the rounding level: the record says both."""
    out = setup["tmp"] / "batched"
    assert decode(setup, setup["bits"], str(out), "--sampler", "ddim", "--steps", "2", "--batch-size", "2") == 0
    batching = json.loads((out / "decode_config.json").read_text())["batching"]
    assert batching["batch_size"] == 2
    assert batching["batches"] == [["img0.bin"], ["img1.bin"]]  # two padded sizes: never batched together
    assert batching["threads"] == torch.get_num_threads() and batching["cpu_capability"]


def test_threads_flag_wins_over_the_environment(setup: dict[str, Path]) -> None:
    """``python -m bench --threads 1`` gives the same bytes whatever OMP_NUM_THREADS says (a run by hand
    vs a Snakemake job): the flag, not the environment, fixes the threads."""
    digests = []
    for omp in ("1", "3"):
        out = setup["tmp"] / f"omp{omp}"
        env = {**os.environ, "OMP_NUM_THREADS": omp, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        cmd = [
            sys.executable,
            "-m",
            "bench",
            "--threads",
            "1",
            "decode",
            str(setup["bits"]),
            str(out),
            "--decoder",
            "diffusion",
            "--checkpoint",
            str(setup["msh"]),
            "--decoder-checkpoint",
            str(setup["residual"]),
            "--device",
            "cpu",
            "--sampler",
            "ddpm",
            "--steps",
            "2",
        ]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        record = json.loads((out / "decode_config.json").read_text())
        assert record["batching"]["threads"] == 1
        digests.append({p.name: p.read_bytes() for p in sorted(out.glob("*.png"))})
    assert digests[0] == digests[1] and len(digests[0]) == len(SIZES)
