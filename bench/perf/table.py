"""The whole perf table of a config (``python -m bench perf``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from bench.codec import load_codec
from bench.config import config_hash, load_config
from bench.diffusion import load_decoder
from bench.perf.flops import peak_note
from bench.perf.measure import Context, flag_best_batch, measure_msh, measure_point, prepare_size
from bench.perf.settings import PerfSettings
from bench.perf.variants import compare_variants, comparison_variants
from bench.points import Point, grid_points
from bench.utils import (
    code_version,
    device_description,
    resolve_device,
)

COLUMNS: tuple[str, ...] = (
    "size",
    "height",
    "width",
    "point",
    "decoder",
    "sampler",
    "steps",
    "eta",
    "seed",
    "ablation",
    "batch",
    "nfe",
    "timed_steps",
    "extrapolated",
    "s_per_image",
    "s_per_image_min",
    "s_per_image_max",
    "s_per_step",
    "s_per_step_min",
    "s_per_step_max",
    "setup_s",
    "unet_s",
    "overhead_ratio",
    "images_per_s",
    "best_batch",
    "speedup",
    "max_abs_diff",
    "warmup_s",
    "peak_mem_mb",
    "peak_mem_kind",
    "unet_gflop_per_image",
    "achieved_tflops",
    "peak_bf16_tflops",
    "peak_fraction",
    "entropy_decode_s",
    "repetitions",
    "warmup",
    "threads",
    "input",
    "device",
    "torch",
    "code_version",
    "config_hash",
    "msh_weights",
    "decoder_weights",
    "note",
)


def measure_all(
    ctx: Context, points: Sequence[Point], *, image: str | Path | None = None, mirror: str | Path | None = None
) -> pd.DataFrame:
    """Every row of the perf table: MSH and ``points`` at every size and batch, then the speed-up comparison."""
    settings = ctx.settings
    sizes = [prepare_size(ctx, h, w, image, mirror) for h, w in settings.sizes]
    rows: list[dict[str, Any]] = []
    total = len(sizes) * len(settings.batch_sizes) * (len(points) + 1)
    with tqdm(total=total, desc="perf", unit="point") as bar:
        for size in sizes:
            for batch in settings.batch_sizes:
                rows.append(size.columns | measure_msh(ctx, size, batch))
                bar.update()
                for point in points:
                    bar.set_postfix_str(f"{size.columns['size']} b{batch} {point.id}")
                    rows.append(size.columns | measure_point(ctx, size, point, batch))
                    bar.update()
    table = flag_best_batch(pd.DataFrame(rows)).assign(threads=torch.get_num_threads(), note=peak_note(ctx.device))
    if settings.compare:
        variants = comparison_variants(settings)
        compared = [size.columns | row for size in sizes for row in compare_variants(ctx, size, variants)]
        table = pd.concat([table, pd.DataFrame(compared)], ignore_index=True)
    return table


def run_perf(
    config_path: str | Path,
    *,
    quality: int,
    msh_checkpoint: str | Path,
    decoder_checkpoint: str | Path,
    device: str | None = None,
    image: str | Path | None = None,
    mirror: str | Path | None = None,
    compile_model: bool | None = None,
) -> pd.DataFrame:
    """The perf table of a config's decoder points for the MSH codec at ``quality`` and its decoder.

    ``device`` defaults to the config's; ``image`` (cropped to each size) to the mirror's Kodak, else
    a generated image; ``compile_model`` overrides ``perf.compile``.
    """
    from bench.diffusion import check_decoder_matches_codec, inference_layout  # imports diffusers when used

    config = load_config(config_path)
    settings = PerfSettings.from_config(config)
    if compile_model is not None:
        settings = dataclasses.replace(settings, compile=compile_model)
    torch_device = resolve_device(device or config["device"])
    codec = load_codec(quality, checkpoint=msh_checkpoint, device=torch_device)
    model = inference_layout(load_decoder(decoder_checkpoint, device=torch_device))  # as `decode` runs it
    check_decoder_matches_codec(model, codec, decoder_checkpoint)
    ctx = Context(codec, model, settings, torch_device, clip=bool(config["sampling"]["clip_denoised"]))
    table = measure_all(ctx, grid_points(config["sampling"]), image=image, mirror=mirror or config["data_mirror"])
    table = table.assign(
        repetitions=settings.repetitions,
        warmup=settings.warmup,
        device=device_description(torch_device),
        torch=torch.__version__,
        code_version=code_version(),
        config_hash=config_hash(config),
        msh_weights=codec.weights_hash,
        decoder_weights=model.checkpoint_info["weights_hash"],
    )
    return table.reindex(
        columns=[c for c in COLUMNS if c in table.columns] + [c for c in table.columns if c not in COLUMNS]
    )
