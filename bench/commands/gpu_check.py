"""``python -m bench gpu-check``: what a lent GPU measures in minutes, in two modes.

``--mode perf`` (default; about 4 minutes on one GPU) writes one tidy CSV with a ``check`` column:

- ``unet_call``: one network call ``model(x_t, t, cond)`` of the **paper-size** decoder
  (``configs/paper.yaml``'s ``decoder.model``: 128 channels, mult 1,2,2,3,3, 3 res blocks, learned
  sigma) on a random-init zoo-size MSH latent (M = 192; timing needs no weights), at every size and
  batch of the paper config's ``perf`` section (768×512 and 256², batch 1/4/16), float32 or bf16
  autocast, eager or ``torch.compile``: median seconds per call and per image, peak memory, the
  compile time (``warmup_s``), the output difference from the float32 eager call and the MFU
  (FLOPs of the UNet forward, counted once per size by ``bench.perf``, ÷ time ÷ the device's dense
  bf16 peak, :data:`bench.perf.PEAK_BF16_FLOPS`; NaN with a note on unknown devices and CPUs).
  The timing, memory, FLOP counting and the float32/bf16/compile switches are ``bench.perf``'s.
- ``train_step``: optimiser steps of ``bench.diffusion.train`` at the paper's crop and batch
  (128, 4): frozen-codec batch preparation, loss (LPIPS(VGG) with random backbone weights when the
  VGG file is absent: same FLOPs, timing only), backward, AdamW, EMA. Random crops stand in for
  images (data loading excluded).
- ``determinism``: the project's decode path (``decode_batch`` → ``write_png``) run twice on the
  same bitstream with the same seed (DDPM: fresh noise every step), PNG bytes compared, under the
  torch defaults and with ``cudnn.deterministic``; the backend settings are columns.

Every measurement after the time budget (``--budget-s``) is a row saying it was skipped, so the
table always comes back; compiled rows go last (each new shape compiles).

``--mode train-default`` trains the **default** config's decoder on this device for ``--minutes``
of wall clock (the step count is fixed up front from a timed probe of the same steps, so the run is
reproducible) and decodes the config's grid on its evaluation images with the project's own
commands (datasets, train-msh, train-decoder, encode, decode, metrics, tables), then writes the
tables' summary with the training budget beside it (``train_steps``, ``compute_ratio`` against
the config's step count), to be set beside the CPU-trained default table.

``--shrink`` (perf) and a small ``--config`` (train-default) make both run in seconds on a CPU
(the tests); ``python -m bench.preflight`` checks the install first.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bench import perf
from bench.codec import MSHCodec, unpad, write_png
from bench.codec.checkpoints import build_model
from bench.config import load_config, with_overrides
from bench.diffusion import DecoderConfig, DiffusionDecoder
from bench.utils import (
    BenchError,
    code_version,
    device_description,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
    write_tables,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PAPER_QUALITY = 1  # zoo qualities 1-4 share the paper decoder's latent size (N=128, M=192)
TRAIN_REPS = 10  # timed optimiser steps of a training measurement (at most; the time box may stop earlier)
TRAIN_TIME_BOX_S = 20.0  # per training measurement
DETERMINISM_STEPS = 10  # DDPM steps of the determinism decode
VARIANT = {variant.name: variant for variant in perf.VARIANTS}
PRECISIONS = {"fp32": VARIANT["plain"], "bf16": VARIANT["bf16_autocast"]}


@dataclass(frozen=True)
class PerfCheck:
    """What ``--mode perf`` measures: the paper's perf grid, decoder and train crop/batch, or a shrunk copy."""

    perf: perf.PerfSettings
    model_section: dict[str, Any]
    train_crop: int
    train_batch: int
    train_steps: int  # timed optimiser steps (at most; the time box may stop earlier)
    compile: bool

    @classmethod
    def from_paper(cls, config: dict[str, Any], *, shrink: bool, compile_model: bool) -> PerfCheck:
        """The paper config's settings; ``shrink``: one 64² size, batch 1-2, an 8-channel UNet and
        2 timed train steps (CPU tests)."""
        settings = perf.PerfSettings.from_config(config)
        section, train = dict(config["decoder"]["model"]), config["decoder"]["train"]
        crop, batch, steps = int(train["crop"]), int(train["batch_size"]), TRAIN_REPS
        if shrink:
            settings = dataclasses.replace(settings, sizes=((64, 64),), batch_sizes=(1, 2), repetitions=1, warmup=1)
            section |= {"num_channels": 8, "num_res_blocks": 1}
            crop, batch, steps = 32, 2, 2
        return cls(settings, section, crop, batch, steps, compile_model)


@dataclass
class Budget:
    """A wall-clock deadline: measurements that would start after it are skipped with a note."""

    seconds: float
    start: float = dataclasses.field(default_factory=time.monotonic)

    def spent(self) -> bool:
        return time.monotonic() - self.start > self.seconds

    def skipped(self) -> dict[str, str]:
        return {"note": f"skipped: the {self.seconds:g} s budget (--budget-s) was spent"}


# ---------------------------------------------------------------------------------------------- models


def paper_context(check: PerfCheck, device: torch.device, clip: bool) -> perf.Context:
    """``bench.perf``'s context for a random-init zoo-size MSH and a random-init decoder of ``check``."""
    codec = MSHCodec.from_net(build_model(PAPER_QUALITY), PAPER_QUALITY, device)
    config = DecoderConfig.from_section(check.model_section, codec.net.M, codec.net.N)
    model = fill_zero_init(DiffusionDecoder(config), torch.Generator().manual_seed(0)).to(device).eval()
    return perf.Context(codec, model, check.perf, device, clip=clip)


@torch.no_grad()
def fill_zero_init(model: torch.nn.Module, generator: torch.Generator, std: float = 0.02) -> torch.nn.Module:
    """``model`` with every all-zero parameter (ADM's zero-initialised output convolutions, biases)
    drawn from N(0, std²): a fresh decoder outputs exactly zero whatever its other layers compute, so
    precision differences and non-deterministic kernels would be invisible to the checks. Timing is unaffected."""
    for parameter in model.parameters():
        if not parameter.any():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model


# ---------------------------------------------------------------------------------------------- UNet calls


def unet_row(ctx: perf.Context, case: Case, precision: str) -> dict[str, Any]:
    """One network call at ``precision`` on the model as it is (eager or compiled): time, memory, MFU."""
    measured = perf.time_variant(ctx, PRECISIONS[precision], case.inputs, case.reference)
    seconds, flops = measured.pop("s_per_step"), case.size.unet_flops * case.batch
    peak = perf.peak_bf16_flops(ctx.device)
    return measured | {
        "s_per_call": seconds,
        "s_per_call_min": measured.pop("s_per_step_min"),
        "s_per_call_max": measured.pop("s_per_step_max"),
        "s_per_image": seconds / case.batch,
        "images_per_s": case.batch / seconds,
        "unet_gflop_per_image": case.size.unet_flops / 1e9,
        "achieved_tflops": flops / seconds / 1e12,
        "peak_bf16_tflops": peak / 1e12,
        "mfu": flops / seconds / peak,
    }


@dataclass(frozen=True)
class Case:
    """One size and batch of the UNet table: the call's inputs and the float32 eager output."""

    size: perf.SizeInputs
    batch: int
    inputs: perf.StepInputs
    reference: torch.Tensor


def unet_cases(ctx: perf.Context, sizes: Sequence[perf.SizeInputs]) -> list[Case]:
    """Every size × batch with its inputs and the plain (float32, eager) output to compare against."""
    cases = []
    for size in sizes:
        for batch in ctx.settings.batch_sizes:
            inputs = perf.step_inputs(ctx, size, batch)
            with VARIANT["plain"].make(ctx.model, inputs) as call:
                cases.append(Case(size, batch, inputs, call().float()))
    return cases


def unet_rows(ctx: perf.Context, cases: Sequence[Case], budget: Budget, *, compiled: bool) -> list[dict[str, Any]]:
    """Every case × precision, eager or with the UNet under ``torch.compile`` (``bench.perf``'s switch)."""
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if compiled:
            stack.enter_context(enough_recompiles(2 * len(cases)))
            stack.enter_context(VARIANT["compile"].make(ctx.model, cases[0].inputs))
        for case in cases:
            for precision in PRECISIONS:
                row = {
                    "check": "unet_call",
                    **case.size.columns,
                    "batch": case.batch,
                    "precision": precision,
                    "compiled": compiled,
                }
                rows.append(row | _measured_or_note(budget, lambda: unet_row(ctx, case, precision)))  # noqa: B023
    return rows


def enough_recompiles(graphs: int) -> contextlib.AbstractContextManager:
    """Dynamo's recompile limit raised to ``graphs``: each shape and precision compiles its own graph,
    and past the limit (8 by default) dynamo would silently run the UNet eagerly in "compiled" rows."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # older torch
    return config.patch(**{name: max(graphs, getattr(config, name))})


def _measured_or_note(budget: Budget, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``measure()``, or a note when the budget is spent or torch.compile fails (a row, never a lost table)."""
    if budget.spent():
        return budget.skipped()
    try:
        return measure()
    except torch._dynamo.exc.TorchDynamoException as err:  # no compiler, unsupported op…
        return {"note": f"failed: {type(err).__name__}: {str(err).strip().splitlines()[0]}"}


# ---------------------------------------------------------------------------------------------- training


def timing_perceptual_loss(rho: float, device: torch.device) -> tuple[torch.nn.Module | None, str]:
    """LPIPS(VGG) for timing the rho term and a note: the real weights when present, else a
    random-init VGG16 (same FLOPs); None when rho is 0."""
    from bench.diffusion import perceptual_loss, vgg_weights_path

    if rho == 0:
        return None, ""
    if vgg_weights_path().is_file():
        return perceptual_loss(rho, allow_random_backbones=False)[0].to(device), ""
    import lpips

    net = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval().requires_grad_(False)
    return net.to(device), "LPIPS(VGG) with a random-init backbone (VGG16 weights absent; same FLOPs, timing only)"


def train_rate(
    model_config: DecoderConfig, train_cfg: Any, codec: MSHCodec, *, warmup: int, steps: int, time_box_s: float
) -> dict[str, Any]:
    """Optimiser steps per second of ``bench.diffusion.train`` for this model and train config on
    random crops (the codec's device): ``warmup`` untimed steps, then up to ``steps`` timed ones
    within ``time_box_s``; peak memory over the timed steps."""
    from bench.diffusion import new_run, prepare_batch, train_step

    device = codec.device
    run = new_run(model_config, train_cfg, codec)
    schedule = run.model.noise_schedule()
    crops = torch.Generator().manual_seed(train_cfg.seed)
    shape = (train_cfg.batch_size, 3, train_cfg.crop, train_cfg.crop)
    lpips_net, note = timing_perceptual_loss(train_cfg.rho, device)
    rho = train_cfg.rho if lpips_net is not None else 0.0

    def step() -> None:
        batch = prepare_batch(codec, torch.rand(shape, generator=crops).to(device))
        train_step(run, schedule, batch, train_cfg, lpips_net, rho)

    for _ in range(warmup):
        step()
    perf.synchronize(device)
    kind = reset_peak_memory(device)
    times: list[float] = []
    while len(times) < steps and (not times or sum(times) < time_box_s):
        times.append(perf.time_calls(step, warmup=0, repetitions=1, device=device)[0])
    return {
        "s_per_it": statistics.median(times),
        "it_per_s": len(times) / sum(times),
        "timed_steps": len(times),
        "peak_mem_mb": peak_memory_mb(device, kind),
        "peak_mem_kind": kind,
        "images_per_s": train_cfg.batch_size * len(times) / sum(times),
        "note": note or None,
    }


def train_row(ctx: perf.Context, check: PerfCheck, config: dict[str, Any], budget: Budget) -> dict[str, Any]:
    """The ``train_step`` row at the paper's crop and batch (``check``'s when shrunk)."""
    from bench.diffusion import DecoderTrainConfig

    shrunk = with_overrides(
        config, {"decoder.train.crop": check.train_crop, "decoder.train.batch_size": check.train_batch}
    )
    train_cfg = DecoderTrainConfig.from_config(shrunk, PAPER_QUALITY)
    row = {
        "check": "train_step",
        "size": f"{check.train_crop}x{check.train_crop}",
        "height": check.train_crop,
        "width": check.train_crop,
        "batch": check.train_batch,
        "precision": "bf16_autocast" if ctx.device.type == "cuda" else "fp32",
        "compiled": False,
        "rho": train_cfg.rho,
    }
    return row | _measured_or_note(
        budget,
        lambda: train_rate(
            ctx.model.config,
            train_cfg,
            ctx.codec,
            warmup=check.perf.warmup,
            steps=check.train_steps,
            time_box_s=TRAIN_TIME_BOX_S,
        ),
    )


# ---------------------------------------------------------------------------------------------- determinism


@contextlib.contextmanager
def cudnn_deterministic(enabled: bool) -> Iterator[None]:
    """``cudnn.deterministic = enabled`` and ``cudnn.benchmark = False`` inside, restored after."""
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    if enabled:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def png_bytes_of_decode(ctx: perf.Context, size: perf.SizeInputs, seed: int, folder: Path, name: str) -> bytes:
    """The PNG the decode path writes for ``size``'s latent: DDPM-``DETERMINISM_STEPS``, one seed."""
    from bench.diffusion import decode_batch, plan_sampling

    plan = plan_sampling(ctx.model, sampler="ddpm", steps=DETERMINISM_STEPS, clip=ctx.clip)
    images = decode_batch(ctx.model, ctx.codec, [size.latent], plan, [seed])
    return write_png(unpad(images[0, 0:1], size.latent.padding), folder / f"{name}.png").read_bytes()


def determinism_rows(ctx: perf.Context, size: perf.SizeInputs, budget: Budget) -> list[dict[str, Any]]:
    """Same bitstream, same seed, decoded twice: identical PNG bytes? Under the defaults and cudnn.deterministic."""
    rows = []
    for deterministic in (False, True):
        row = {
            "check": "determinism",
            **size.columns,
            "batch": 1,
            "precision": "fp32",
            "compiled": False,
            "sampler": "ddpm",
            "steps": DETERMINISM_STEPS,
            "seed": 0,
        }
        if budget.spent():
            rows.append(row | budget.skipped())
            continue
        with cudnn_deterministic(deterministic), tempfile.TemporaryDirectory() as folder:
            first, second = (png_bytes_of_decode(ctx, size, 0, Path(folder), name) for name in ("a", "b"))
            rows.append(
                row
                | {
                    "identical_png": first == second,
                    "png_sha256": hashlib.sha256(first).hexdigest()[:16],
                    "png_sha256_second": hashlib.sha256(second).hexdigest()[:16],
                    "cudnn_deterministic": torch.backends.cudnn.deterministic,
                    "cudnn_benchmark": torch.backends.cudnn.benchmark,
                    "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                    "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""),
                }
            )
    return rows


# ---------------------------------------------------------------------------------------------- mode perf

PERF_COLUMNS: tuple[str, ...] = (
    "check",
    "size",
    "height",
    "width",
    "batch",
    "precision",
    "compiled",
    "s_per_call",
    "s_per_call_min",
    "s_per_call_max",
    "s_per_image",
    "images_per_s",
    "warmup_s",
    "max_abs_diff",
    "peak_mem_mb",
    "peak_mem_kind",
    "unet_gflop_per_image",
    "achieved_tflops",
    "peak_bf16_tflops",
    "mfu",
    "rho",
    "s_per_it",
    "it_per_s",
    "timed_steps",
    "sampler",
    "steps",
    "seed",
    "identical_png",
    "png_sha256",
    "png_sha256_second",
    "cudnn_deterministic",
    "cudnn_benchmark",
    "deterministic_algorithms",
    "cublas_workspace_config",
    "threads",
    "repetitions",
    "warmup",
    "input",
    "device",
    "torch",
    "code_version",
    "note",
)


def run_perf_check(
    paper_config: str | os.PathLike,
    *,
    device: str,
    shrink: bool = False,
    compile_model: bool = True,
    budget_s: float = 200.0,
    mirror: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """The ``--mode perf`` table (see the module doc); ``compile_model`` False leaves the compiled rows out."""
    config = load_config(paper_config)
    check = PerfCheck.from_paper(config, shrink=shrink, compile_model=compile_model)
    torch_device = resolve_device(device)
    budget = Budget(budget_s)
    ctx = paper_context(check, torch_device, clip=bool(config["sampling"]["clip_denoised"]))
    sizes = [perf.prepare_size(ctx, h, w, None, mirror) for h, w in check.perf.sizes]
    cases = unet_cases(ctx, sizes)
    rows = unet_rows(ctx, cases, budget, compiled=False)
    rows += [train_row(ctx, check, config, budget), *determinism_rows(ctx, sizes[0], budget)]
    if check.compile:
        rows += unet_rows(ctx, cases, budget, compiled=True)  # last: every new shape compiles
    table = pd.DataFrame(rows)
    if (note := perf.peak_note(torch_device)) is not None:  # why the MFU column is NaN
        unet = table["check"] == "unet_call"
        table.loc[unet, "note"] = table.loc[unet, "note"].fillna(note) if "note" in table else note
    table = table.assign(
        threads=torch.get_num_threads(),
        repetitions=check.perf.repetitions,
        warmup=check.perf.warmup,
        device=device_description(torch_device),
        torch=torch.__version__,
        code_version=code_version(),
    )
    return table.reindex(columns=[c for c in PERF_COLUMNS if c in table.columns])


# ---------------------------------------------------------------------------------------------- mode train-default


def _bench(*argv: str | os.PathLike) -> None:
    """Run one ``python -m bench`` command in this process (its BenchError propagates as it is)."""
    from bench.commands import build_parser

    args = build_parser().parse_args([str(a) for a in argv])
    if args.func(args):
        raise BenchError(f"python -m bench {argv[0]} failed (see the lines above)")


@dataclass(frozen=True)
class Layout:
    """Where ``--mode train-default`` reads its inputs and puts its models and results under ``work``."""

    work: Path
    dataset: str
    quality: int
    eval_images: Path
    train_images: Path
    msh: Path

    @property
    def decoder(self) -> Path:
        return self.work / "models" / f"decoder_q{self.quality}.pt"

    @property
    def bits(self) -> Path:
        return self.work / self.dataset / f"q{self.quality}" / "bits"

    def recon(self, point: str) -> Path:
        return self.work / self.dataset / f"q{self.quality}" / point

    def metrics(self, point: str) -> tuple[Path, Path]:
        """The per-image and summary CSVs of ``point``."""
        folder = self.work / "metrics" / self.dataset / f"q{self.quality}"
        return folder / f"{point}.csv", folder / f"{point}_summary.csv"


def prepare_inputs(
    config_path: Path,
    config: dict[str, Any],
    work: Path,
    *,
    device: str,
    msh_checkpoint: str | os.PathLike | None,
    train_images: str | os.PathLike | None,
    eval_images: str | os.PathLike | None,
    mirror: str | os.PathLike | None,
) -> Layout:
    """The layout, with each input given or made by the project's commands: evaluation images
    (``datasets prepare`` with the config's crop and count), training images (``datasets fetch``)
    and the MSH codec (``train-msh`` with the config's ``msh.train``)."""
    datasets, quality = config["datasets"], config["decoder"]["qualities"][0]
    dataset, train_name = datasets["eval"][0], datasets["train"]
    mirror = mirror or config["data_mirror"]
    mirror_flags = ["--mirror", mirror] if mirror else []
    layout = Layout(
        work,
        dataset,
        quality,
        eval_images=Path(eval_images or work / "eval" / dataset),
        train_images=Path(train_images or work / "train" / train_name),
        msh=Path(msh_checkpoint or work / "models" / f"msh_q{quality}.pt"),
    )
    if eval_images is None:
        crop, count = datasets["eval_crop"], datasets["max_images"]
        _bench(
            "datasets",
            "prepare",
            dataset,
            "--root",
            work / "raw",
            "--out",
            layout.eval_images,
            *mirror_flags,
            *(["--crop", crop] if crop else []),
            *(["--max-images", count] if count else []),
        )
    if train_images is None:
        _bench("datasets", "fetch", train_name, "--root", work / "train", *mirror_flags)
    if msh_checkpoint is None:
        _bench(
            "train-msh",
            "--config",
            config_path,
            "--quality",
            quality,
            "--data",
            layout.train_images,
            "--out",
            layout.msh,
            "--device",
            device,
        )
    return layout


def decode_and_measure(
    layout: Layout, config_path: Path, config: dict[str, Any], *, device: str, batch_size: int
) -> tuple[list[Path], list[Path], list[Path]]:
    """Encode the evaluation images, decode every point (MSH and the config's grid), measure each:
    the per-point summary, per-image and reconstruction paths, in the order ``tables`` takes them."""
    from bench.points import grid_points

    _bench(
        "encode",
        layout.eval_images,
        layout.bits,
        "--quality",
        layout.quality,
        "--checkpoint",
        layout.msh,
        "--device",
        device,
    )
    sampling = config["sampling"]
    shared = [
        "--clip" if sampling["clip_denoised"] else "--no-clip",
        "--compile" if sampling["compile"] else "--no-compile",
        "--batch-size",
        batch_size,
    ]
    points: dict[str, list[Any]] = {"msh": ["--decoder", "msh"]}
    for point in grid_points(sampling):
        points[point.id] = [
            "--decoder",
            "diffusion",
            "--decoder-checkpoint",
            layout.decoder,
            "--point",
            point.id,
            *shared,
        ]
    summaries, per_images, folders = [], [], []
    for point, flags in points.items():
        recon, (per_image, summary) = layout.recon(point), layout.metrics(point)
        _bench(
            "decode",
            layout.bits,
            recon,
            *flags,
            "--checkpoint",
            layout.msh,
            "--device",
            device,
            "--record",
            recon / "decode.json",
        )
        labels = {"dataset": layout.dataset, "codec": "mbt2018-mean", "quality": layout.quality, "point": point}
        _bench(
            "metrics",
            "--config",
            config_path,
            "--reference",
            layout.eval_images,
            "--reconstructions",
            recon,
            "--bitstreams",
            layout.bits,
            "--out",
            per_image,
            "--summary",
            summary,
            "--device",
            device,
            *[arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")],
        )
        summaries.append(summary)
        per_images.append(per_image)
        folders.append(recon)
    return summaries, per_images, folders


def run_train_default(
    config_path: str | os.PathLike,
    *,
    work: str | os.PathLike,
    device: str,
    minutes: float,
    msh_checkpoint: str | os.PathLike | None = None,
    train_images: str | os.PathLike | None = None,
    eval_images: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    decode_batch_size: int | None = None,
) -> pd.DataFrame:
    """The ``--mode train-default`` summary (see the module doc): the tables' summary rows plus the
    training budget (``train_steps``, ``train_s``, ``compute_ratio`` = steps ÷ the config's steps)."""
    from bench.codec import load_codec
    from bench.data import list_images
    from bench.diffusion import DecoderTrainConfig

    if minutes <= 0:
        raise BenchError(f"--minutes must be > 0, got {minutes:g}")
    config_path, work = Path(config_path), Path(work)
    config = load_config(config_path)
    torch_device = resolve_device(device)
    layout = prepare_inputs(
        config_path,
        config,
        work,
        device=device,
        msh_checkpoint=msh_checkpoint,
        train_images=train_images,
        eval_images=eval_images,
        mirror=mirror,
    )
    codec = load_codec(layout.quality, checkpoint=layout.msh, device=torch_device)
    train_cfg = DecoderTrainConfig.from_config(config, layout.quality)
    model_config = DecoderConfig.from_section(config["decoder"]["model"], codec.net.M, codec.net.N)
    probe = train_rate(model_config, train_cfg, codec, warmup=1, steps=TRAIN_REPS, time_box_s=TRAIN_TIME_BOX_S)
    steps = max(1, math.floor(probe["it_per_s"] * minutes * 60))
    start = time.perf_counter()
    _bench(
        "train-decoder",
        "--config",
        config_path,
        "--quality",
        layout.quality,
        "--msh-checkpoint",
        layout.msh,
        "--data",
        layout.train_images,
        "--out",
        layout.decoder,
        "--steps",
        steps,
        "--device",
        device,
    )
    train_s = time.perf_counter() - start
    batch = decode_batch_size or config["sampling"]["batch_size"]
    summaries, per_images, folders = decode_and_measure(layout, config_path, config, device=device, batch_size=batch)
    tables = work / "tables"
    _bench(
        "tables",
        "--summaries",
        *summaries,
        "--per-image",
        *per_images,
        "--reconstructions",
        *folders,
        "--out-per-image",
        tables / "per_image.csv",
        "--out-summary",
        tables / "summary.csv",
    )
    config_steps = train_cfg.steps
    return pd.read_csv(tables / "summary.csv").assign(
        train_steps=steps,
        train_s=train_s,
        train_minutes_asked=minutes,
        config_train_steps=config_steps,
        compute_ratio=steps / config_steps,
        train_batch=train_cfg.batch_size,
        train_images=len(list_images(layout.train_images)),
        probe_it_per_s=probe["it_per_s"],
        check_device=device_description(torch_device),
    )


# ---------------------------------------------------------------------------------------------- CLI


def _cmd_gpu_check(args: argparse.Namespace) -> int:
    if args.mode == "perf":
        table = run_perf_check(
            args.paper_config,
            device=args.device,
            shrink=args.shrink,
            compile_model=args.compile,
            budget_s=args.budget_s,
            mirror=args.mirror,
        )
    else:
        table = run_train_default(
            args.config,
            work=args.work,
            device=args.device,
            minutes=args.minutes,
            msh_checkpoint=args.msh_checkpoint,
            train_images=args.train_images,
            eval_images=args.eval_images,
            mirror=args.mirror,
            decode_batch_size=args.decode_batch_size,
        )
    write_tables({args.out: table})
    print(f"{len(table)} rows -> {args.out}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gpu-check``."""
    parser = subparsers.add_parser(
        "gpu-check",
        help="GPU perf table of the paper-size decoder, or the default decoder trained on the GPU",
        description="--mode perf: UNet call timings (bf16/fp32, eager/compiled, batch sizes), peak memory, MFU, "
        "training it/s, determinism of the decode. --mode train-default: train the default config's decoder for "
        "--minutes on this device and decode its grid. Check the install first: python -m bench.preflight",
    )
    parser.add_argument("--mode", choices=["perf", "train-default"], default="perf", help="default: perf")
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="cuda",
        help="default cuda: a missing GPU is an error, not a silent CPU run",
    )
    parser.add_argument("--out", required=True, metavar="CSV", help="e.g. results/gpu_check.csv")
    parser.add_argument("--mirror", help="dataset mirror (default: $BENCH_DATA_MIRROR or the config's data_mirror)")
    perf_group = parser.add_argument_group("--mode perf")
    perf_group.add_argument(
        "--paper-config",
        default=CONFIGS / "paper.yaml",
        help="config of the decoder, sizes and batches (default: configs/paper.yaml)",
    )
    perf_group.add_argument("--shrink", action="store_true", help="tiny sizes and UNet: a CPU smoke test in seconds")
    perf_group.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time torch.compile too (default on; minutes of compilation on a CPU)",
    )
    perf_group.add_argument(
        "--budget-s",
        type=float,
        default=200.0,
        help="measurements that would start later are skipped rows (default 200 s)",
    )
    train_group = parser.add_argument_group("--mode train-default")
    train_group.add_argument("--config", default=CONFIGS / "default.yaml", help="default: configs/default.yaml")
    train_group.add_argument("--minutes", type=float, default=4.0, help="decoder training wall clock (default 4)")
    train_group.add_argument("--work", default="work/gpu_check", help="outputs (default: %(default)s)")
    train_group.add_argument("--msh-checkpoint", help="MSH codec to use (default: train-msh with the config)")
    train_group.add_argument("--train-images", help="folder of training PNGs (default: fetch the config's train set)")
    train_group.add_argument("--eval-images", help="folder of evaluation PNGs as `datasets prepare` writes them")
    train_group.add_argument("--decode-batch-size", type=int, help="images per decode call (default: the config's)")
    parser.set_defaults(func=_cmd_gpu_check)
