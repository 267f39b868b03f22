"""``python -m bench perf`` on tiny random-init models (CPU, seconds), its speed-up switches, and the cost figure.

No timing is asserted: the tests check that the table has the rows and columns it promises, that its
derived columns follow from its measured ones, that every speed-up switch gives the plain call's
output (bit-identical, or within the stated tolerance), and that the peak-memory window resets.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from bench.cli import main
from bench.codec import decode_latent, encode, load_codec
from bench.diffusion.model import load_decoder
from bench.diffusion.pipeline import decode_batch, inference_layout
from bench.diffusion.samplers import plan_sampling
from bench.perf import (
    VARIANTS,
    Context,
    PerfSettings,
    StepInputs,
    Variant,
    compare_variants,
    comparison_variants,
    input_image,
    peak_bf16_flops,
    prepare_size,
    synthetic_image,
)
from bench.points import grid_points
from bench.report.cost import plot_cost
from bench.utils import MIB, BenchError, peak_memory_mb, reset_peak_memory
from tests.conftest import write_png
from tests.test_report import summary_table
from tests.test_samplers_decode import CONFIGS, tiny_decoder, tiny_msh

# channels_last and other thread counts reorder float32 sums inside the convolutions: outputs in
# [-1, 1] may differ in the last bits, far below the 1/255 step of the 8-bit images the decoder writes.
CPU_LAYOUT_TOLERANCE = 1e-4
GRID = [
    {"sampler": "ddim", "steps": [2]},
    {"sampler": "ddpm", "steps": [3]},
    {"sampler": "dpmpp", "steps": [2]},
    {"sampler": "ddim", "steps": [2], "guidance": [2.0]},
    {"sampler": "ddpm", "steps": [2], "n_avg": [3]},
]
SIZES = [[64, 128], [64, 64]]  # [height, width], listed largest first: the run sorts them
BATCHES = [2, 1]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("perf")
    msh = tmp / "msh.pt"
    codec = tiny_msh(msh)
    decoders = {f"decoder-{kind}": tmp / f"decoder-{kind}.pt" for kind in CONFIGS}
    for kind in CONFIGS:
        tiny_decoder(decoders[f"decoder-{kind}"], codec, **CONFIGS[kind])
    config = tmp / "perf.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device": "cpu",
                "sampling": {"grid": GRID, "seeds": [0]},
                "perf": {
                    "sizes": SIZES,
                    "batch_sizes": BATCHES,
                    "repetitions": 2,
                    "warmup": 0,
                    "max_steps_timed": 2,
                    "compare_threads": [1],
                },
            }
        )
    )
    return {"msh": msh, "decoder": decoders["decoder-residual"], **decoders, "config": config, "tmp": tmp}


def perf(checkpoints: dict[str, Path], out: Path) -> int:
    return main(
        [
            "perf",
            "--config",
            str(checkpoints["config"]),
            "--quality",
            "1",
            "--checkpoint",
            str(checkpoints["msh"]),
            "--decoder-checkpoint",
            str(checkpoints["decoder"]),
            "--out",
            str(out),
        ]
    )


@pytest.fixture(scope="module")
def table(checkpoints: dict[str, Path]) -> pd.DataFrame:
    out = checkpoints["tmp"] / "results" / "perf.csv"
    assert perf(checkpoints, out) == 0
    return pd.read_csv(out)


def test_every_point_size_and_batch_has_a_row(table: pd.DataFrame) -> None:
    rows = table[table["ablation"].isna()]
    points = ["msh", *(p.id for p in grid_points({"grid": GRID, "seeds": [0]}))]
    expected = {(f"{w}x{h}", point, batch) for h, w in SIZES for point in points for batch in BATCHES}
    assert set(zip(rows["size"], rows["point"], rows["batch"], strict=True)) == expected
    assert len(rows) == len(expected)
    assert list(rows["size"].drop_duplicates()) == ["64x64", "128x64"]  # smallest first (memory attribution)
    assert (rows["input"] == "synthetic").all() or rows["input"].str.startswith("kodak/").all()


def test_truncated_chains_are_labelled_and_extrapolated(table: pd.DataFrame) -> None:
    rows = table[table["ablation"].isna()].set_index(["size", "point", "batch"])
    ddpm = rows.loc[("64x64", "ddpm-k3-s0", 1)]
    assert ddpm["nfe"] == 3 and ddpm["timed_steps"] == 2 and bool(ddpm["extrapolated"])
    ddim = rows.loc[("64x64", "ddim-k2-eta0-s0", 1)]
    assert ddim["nfe"] == 2 and ddim["timed_steps"] == 2 and not bool(ddim["extrapolated"])
    guided = rows.loc[("64x64", "ddim-k2-eta0-w2-s0", 1)]
    assert guided["nfe"] == 4 and guided["timed_steps"] == 2  # two network evaluations per step
    msh = rows.loc[("64x64", "msh", 1)]
    assert msh["nfe"] == 0 and not bool(msh["extrapolated"]) and math.isnan(msh["overhead_ratio"])


def test_derived_columns_follow_from_the_measured_ones(table: pd.DataFrame) -> None:
    rows = table[table["ablation"].isna()]
    assert (rows["s_per_image_min"] <= rows["s_per_image"]).all()
    assert (rows["s_per_image"] <= rows["s_per_image_max"]).all()
    assert (rows["images_per_s"] - 1 / rows["s_per_image"]).abs().max() < 1e-9
    assert rows.groupby(["size", "point"])["best_batch"].sum().eq(1).all()
    best = rows[rows["best_batch"]].set_index(["size", "point"])["images_per_s"].sort_index()
    assert rows.groupby(["size", "point"])["images_per_s"].max().sort_index().equals(best)
    diffusion = rows[rows["decoder"] == "diffusion"]
    assert (diffusion["overhead_ratio"] > 0).all() and (diffusion["unet_s"] > 0).all()
    achieved = diffusion["nfe"] * diffusion["unet_gflop_per_image"] * 1e9 / diffusion["s_per_image"] / 1e12
    assert (achieved / diffusion["achieved_tflops"] - 1).abs().max() < 1e-9
    assert rows["peak_bf16_tflops"].isna().all() and (rows["note"] == "no bf16 peak: not a GPU").all()
    assert (rows["peak_mem_mb"] > 0).all() and (rows["entropy_decode_s"] > 0).all()


def test_bare_forward_carries_the_rows_of_one_network_call(
    checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The overhead ratio's unit is a forward on as many rows as the point's own calls carry (batch,
    x2 under guidance, x N under averaging), so that it measures the sampler, not how the network batches."""
    import bench.perf.measure

    rows_asked: list[int] = []
    forward = bench.perf.measure.unet_forward
    monkeypatch.setattr(
        bench.perf.measure, "unet_forward", lambda ctx, size, rows: rows_asked.append(rows) or forward(ctx, size, rows)
    )
    assert perf(checkpoints, tmp_path / "perf.csv") == 0
    points = grid_points({"grid": GRID, "seeds": [0]})
    per_image = [(2 if p.guidance not in (None, 0.0, 1.0) else 1) * (p.n_avg or 1) for p in points]
    assert {2, 3} <= set(per_image)
    assert rows_asked == [batch * rows for _ in SIZES for batch in sorted(BATCHES) for rows in per_image]


def test_unet_flops_grow_at_least_with_the_pixels(table: pd.DataFrame) -> None:
    """Convolutions cost in proportion to the pixels, attention in proportion to their square, and the
    timestep-embedding layers not at all (a small share): doubling the pixels about doubles to quadruples them."""
    flops = table.groupby("size")["unet_gflop_per_image"].first()
    assert 1.95 <= flops["128x64"] / flops["64x64"] <= 4.0


def test_comparison_rows_name_each_switch_and_its_output_difference(table: pd.DataFrame) -> None:
    compared = table[table["ablation"].notna()]
    switches = ["plain", "no_grad", "channels_last", "bf16_autocast", "condition_per_step", "threads=1"]
    assert list(zip(compared["size"], compared["ablation"], strict=True)) == [
        (size, switch)
        for size in ("64x64", "128x64")
        for switch in switches  # every size: layouts pay off unevenly
    ]
    rows = compared[compared["size"] == "128x64"].set_index("ablation")
    assert rows.loc["plain", "speedup"] == 1.0
    assert rows.loc["no_grad", "max_abs_diff"] == 0.0 and rows.loc["condition_per_step", "max_abs_diff"] == 0.0
    assert rows.loc["channels_last", "max_abs_diff"] <= CPU_LAYOUT_TOLERANCE
    assert rows.loc["threads=1", "threads"] == 1
    assert rows.loc["bf16_autocast", "note"] == "skipped: CUDA only"
    assert math.isnan(rows.loc["bf16_autocast", "s_per_step"])


CPU_SWITCHES = [
    v
    for v in comparison_variants(PerfSettings((), (), 1, 0, None, True, compare_threads=(1, 2), compile=False))
    if v.name != "bf16_autocast"
]
BIT_IDENTICAL = {"plain", "no_grad", "condition_per_step"}


@pytest.mark.parametrize("variant", CPU_SWITCHES, ids=lambda v: v.name)
@pytest.mark.parametrize("kind", ["residual", "paper"])
def test_each_switch_gives_the_plain_output(checkpoints: dict[str, Path], variant: Variant, kind: str) -> None:
    """Every CPU switch reproduces the plain network call: bit for bit where it changes no arithmetic,
    within :data:`CPU_LAYOUT_TOLERANCE` where it reorders sums (memory layout, thread count)."""
    model = load_decoder(checkpoints[f"decoder-{kind}"])
    generator = torch.Generator().manual_seed(3)
    y_hat = torch.randn(2, 24, 4, 6, generator=generator)
    x_msh = torch.rand(2, 3, 64, 96, generator=generator) * 2 - 1
    cond = model.condition(y_hat, x_msh if model.config.needs_msh else None)
    inputs = StepInputs(torch.randn(2, 3, 64, 96, generator=generator), torch.tensor([10, 90]), cond)
    with torch.inference_mode():
        plain = model(inputs.x_t, inputs.t, inputs.cond)
    with variant.make(model, inputs) as call:
        out = call()
    if variant.name in BIT_IDENTICAL:
        assert torch.equal(out, plain)
    else:
        torch.testing.assert_close(out, plain, rtol=0, atol=CPU_LAYOUT_TOLERANCE)
    assert all(p.is_contiguous() for p in model.parameters())  # the switch undid itself


@pytest.mark.parametrize("kind, sampler", [("residual", "ddim"), ("paper", "ddpm"), ("residual", "dpmpp")])
def test_the_decode_layout_gives_the_plain_output(checkpoints: dict[str, Path], kind: str, sampler: str) -> None:
    """The decode path's default layout (channels-last on the CPU) samples what the model as loaded samples,
    within :data:`CPU_LAYOUT_TOLERANCE`, noise included (two images, two seeds, three steps)."""
    codec = load_codec(1, checkpoint=checkpoints["msh"], device="cpu")
    latent = decode_latent(codec, encode(codec, synthetic_image(64, 128))[0])
    model = load_decoder(checkpoints[f"decoder-{kind}"])
    plan = plan_sampling(model, sampler=sampler, steps=3, clip=True)
    plain = decode_batch(model, codec, [latent, latent], plan, [0, 1])
    fast = decode_batch(inference_layout(model), codec, [latent, latent], plan, [0, 1])
    assert model.unet.input_conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, plain, rtol=0, atol=CPU_LAYOUT_TOLERANCE)


def test_a_switch_that_fails_to_compile_is_a_row_with_a_note(checkpoints: dict[str, Path]) -> None:
    @contextlib.contextmanager
    def broken(model: object, inputs: object) -> Iterator[object]:
        raise torch._dynamo.exc.TorchDynamoException("no C++ compiler found")
        yield  # pragma: no cover - a generator-based context manager

    settings = PerfSettings(
        ((64, 64),),
        (1,),
        repetitions=1,
        warmup=0,
        max_steps_timed=None,
        compare=True,
        compare_threads=(),
        compile=False,
    )
    ctx = Context(
        load_codec(1, checkpoint=checkpoints["msh"], device="cpu"),
        load_decoder(checkpoints["decoder"]),
        settings,
        torch.device("cpu"),
        clip=True,
    )
    size = prepare_size(ctx, 64, 64, image=None, mirror=None)
    assert VARIANTS[0].name == "plain"  # compare_variants measures the others against the first
    plain, failed = compare_variants(ctx, size, [VARIANTS[0], Variant("compile", broken)])
    assert plain["speedup"] == 1.0 and plain["max_abs_diff"] == 0.0
    assert failed["note"] == "failed: TorchDynamoException: no C++ compiler found" and "s_per_step" not in failed


@pytest.mark.parametrize(
    "name, tflops",
    [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", 835.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A100 80GB PCIe", 312.0),
        ("NVIDIA A10", 125.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA L4", 121.0),
        ("Tesla T4", math.nan),
    ],
)
def test_bf16_peak_is_looked_up_by_device_name(monkeypatch: pytest.MonkeyPatch, name: str, tflops: float) -> None:
    """Datasheet dense bf16 peaks; A10 is not an A100, L4 not an L40S, an unknown GPU is NaN."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    peak = peak_bf16_flops(torch.device("cuda"))
    assert (math.isnan(peak) and math.isnan(tflops)) or peak == tflops * 1e12
    assert math.isnan(peak_bf16_flops(torch.device("cpu")))


def test_peak_memory_window_resets() -> None:
    """A 256 MiB buffer raises the CPU peak by about its size; after a reset, with it freed, the peak forgets it."""
    device = torch.device("cpu")
    kind = reset_peak_memory(device)
    if kind != "rss_peak":
        pytest.skip("this system cannot reset the RSS high-water mark (/proc/self/clear_refs)")
    before = peak_memory_mb(device, kind)
    buffer = torch.ones(256 * MIB // 4)  # written, so resident
    with_buffer = peak_memory_mb(device, kind)
    del buffer
    reset_peak_memory(device)
    after = peak_memory_mb(device, kind)
    assert with_buffer - before >= 200
    assert after < with_buffer - 200


def test_input_comes_from_the_image_the_mirror_or_is_generated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kodak_dir: Path
) -> None:
    kodak, source = input_image(512, 768)  # the mirror of the test environment
    assert kodak.shape == (1, 3, 512, 768) and source.startswith("kodak/kodim")
    monkeypatch.delenv("BENCH_DATA_MIRROR")
    path = write_png(tmp_path / "photo.png", 80, 100)
    image, source = input_image(64, 64, image=path, mirror=tmp_path / "nowhere")
    assert image.shape == (1, 3, 64, 64) and source == "photo.png centre crop"
    with pytest.raises(BenchError, match="smaller than the perf size"):
        input_image(128, 64, image=path)
    generated, source = input_image(64, 128, mirror=tmp_path / "nowhere")
    assert generated.shape == (1, 3, 64, 128) and source == "synthetic" and 0 <= generated.min() <= generated.max() <= 1


def test_bad_inputs_exit_2_without_a_table(checkpoints: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = checkpoints["tmp"] / "bad.csv"
    args = [
        "perf",
        "--config",
        str(checkpoints["config"]),
        "--quality",
        "1",
        "--checkpoint",
        str(checkpoints["msh"]),
        "--out",
        str(out),
    ]
    assert main([*args, "--decoder-checkpoint", str(checkpoints["tmp"] / "missing.pt")]) == 2
    assert "decoder checkpoint not found" in capsys.readouterr().err
    other = checkpoints["tmp"] / "other-decoder.pt"
    codec = tiny_msh(checkpoints["tmp"] / "unused-msh.pt")
    object.__setattr__(codec, "weights_hash", "0" * 16)
    tiny_decoder(other, codec, **CONFIGS["residual"])
    assert main([*args, "--decoder-checkpoint", str(other)]) == 2
    assert "trained on MSH weights" in capsys.readouterr().err
    bad_config = checkpoints["tmp"] / "bad.yaml"
    bad_config.write_text(yaml.safe_dump({"perf": {"sizes": [[100, 64]]}}))
    assert perf({**checkpoints, "config": bad_config}, out) == 2
    assert "multiple of 64" in capsys.readouterr().err
    assert not out.exists()


def timed_summary() -> pd.DataFrame:
    """The report tests' summary with decode times: MSH fast, diffusion time growing with NFE."""
    table = summary_table()
    seconds = table["nfe"].fillna(0) * 0.8 + 0.05
    return table.assign(decode_s_per_image=seconds.where(table["decoder"] != "jpeg"))


def _labels(plot) -> tuple[set[str], set[str]]:
    axes = [ax for ax in plot.figure.axes if ax.get_xlabel()]
    return {ax.get_xlabel() for ax in axes}, {ax.get_ylabel() for ax in axes}


def test_cost_figure_draws_quality_against_seconds(tmp_path: Path) -> None:
    summary = tmp_path / "summary.csv"
    timed_summary().to_csv(summary, index=False)
    out = tmp_path / "figures" / "cost_kodak.pdf"
    assert main(["report", "cost", "--summary", str(summary), "--out", str(out)]) == 0
    assert out.stat().st_size > 0 and out.with_suffix(".png").stat().st_size > 0
    plot = plot_cost(timed_summary())
    x_labels, y_labels = _labels(plot)
    assert x_labels == {"Decode time [s / image]"}
    assert y_labels == {"LPIPS ↓ (random backbone)", "FID ↓ (random backbone)", "SWD ×10³ ↓", "PSNR [dB] ↑"}
    axes = [ax for ax in plot.figure.axes if ax.get_xlabel()]
    assert len(axes) == 2 * 4 and all(ax.get_xscale() == "log" for ax in axes)  # 2 qualities with diffusion points


def test_cost_figure_skips_missing_metrics_and_needs_times() -> None:
    plot = plot_cost(timed_summary().drop(columns=["fid"]))
    assert set(plot.skipped) == {"fid"}
    with pytest.raises(BenchError, match="decode_s_per_image"):
        plot_cost(summary_table())
    with pytest.raises(BenchError, match="no timed diffusion"):
        plot_cost(timed_summary().query("decoder != 'diffusion'"))
