"""Decode performance: ``python -m bench perf`` times every decoder point and the speed-ups of the UNet call.

The package: ``settings`` (the config section), ``timing``, ``flops``, ``inputs`` (the image timed on),
``measure`` (the rows: MSH and each point), ``variants`` (the speed-up switches), ``table`` (all of it).

What one run measures, for each configured image size (``perf.sizes``) and batch size
(``perf.batch_sizes``), on the device the decode runs on:

- **MSH** (``msh``): the synthesis transform ``g_s`` from ``y_hat`` to the image.
- **Every diffusion point of the sampling grid** (``bench.points.grid_points``): the production
  decode path ``bench.diffusion.pipeline.decode_batch`` (MSH image when the decoder reads it,
  conditioning, the sampler loop with its progress bar, the final scaling), from ``y_hat`` to the
  image. Entropy decoding is the same for every point; it is its own column (``entropy_decode_s``).
- **One bare UNet forward** at the same size on the rows one network call of that point carries
  (``unet_s``, per image row): the batch, doubled under guidance (conditional and unconditional rows
  in one call) and times N under sample averaging, so that the *overhead ratio*
  ``s_per_image / (nfe × unet_s)`` says how much of a decode is not the network (conditioning,
  scheduler updates, noise, progress bar, Python), not how well the network batches.

Timing is wall-clock (``time.perf_counter``, CUDA synchronised), warm-up calls excluded, ``perf.repetitions``
repetitions; a row holds the median and the min/max over them. All times are per image (a batch
call's time ÷ batch). Inputs are a real image crop (Kodak from the mirror, else a generated one)
encoded and entropy-decoded by the MSH codec, repeated ``batch`` times.

**Truncated chains.** A 768×512 DDPM-50 on a CPU takes minutes per repetition. With
``perf.max_steps_timed = k`` a point with more network evaluations is timed as a *complete* decode
of the same sampler with ``k`` steps (the network and the scheduler update cost the same at every
timestep); its time per step is ``(chain − setup) / k`` with ``setup`` (MSH image + conditioning)
timed in the same repetitions, and the full decode time is ``setup + nfe × s_per_step``: such rows
say ``extrapolated = True`` and ``timed_steps = k``. The chain's other fixed costs (building the
scheduler, 2-3 ms on a CPU; the initial noise) are scaled with the steps, so extrapolation
overestimates by that much times ``nfe / k``.

**Peak memory per measurement.** CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats``.
CPU: the RSS high-water mark (``VmHWM``) after resetting it through ``/proc/self/clear_refs`` (Linux),
i.e. the peak resident size of the whole process (weights and libraries included) during that
measurement; measurements run from the smallest size and batch up, because memory the allocator kept
from an earlier, larger one would count too. Where the reset is impossible the column falls back to
``ru_maxrss`` (process lifetime) and ``peak_mem_kind`` says so.

**FLOP/s.** The UNet's FLOPs are counted once per size (``torch.utils.flop_counter.FlopCounterMode``:
convolutions, matmuls, attention); ``achieved_tflops`` is ``nfe × flops × images / time`` over the
whole decode, ``peak_fraction`` divides it by the device's dense bf16 tensor-core peak
(:data:`PEAK_BF16_FLOPS`; NaN on CPUs and unknown GPUs, with a note). The decode runs in float32
unless a row's ablation says otherwise, so the fraction is against a peak it does not aim at.

**Speed-up comparison** (``perf.compare``): at each size and batch 1, one network call
``model(x_t, t, cond)`` (the unit every sampler step repeats) under each switch of :data:`VARIANTS`
against the plain call (the model as loaded), measured in the same run: ``speedup`` = plain time ÷
switch time and ``max_abs_diff`` = largest output difference from the plain call (0 = bit-identical).
The point rows run what ``decode`` runs, switches it made its default included
(``bench.diffusion.pipeline.inference_layout``: channels-last on the CPU).
"""

from bench.perf.flops import PEAK_BF16_FLOPS, peak_bf16_flops, peak_note, unet_flops
from bench.perf.inputs import input_image, synthetic_image
from bench.perf.measure import Context, SizeInputs, prepare_size
from bench.perf.settings import PerfSettings
from bench.perf.table import COLUMNS, measure_all, run_perf
from bench.perf.timing import synchronize, time_calls
from bench.perf.variants import (
    VARIANTS,
    StepInputs,
    Variant,
    compare_variants,
    comparison_variants,
    step_inputs,
    time_variant,
)

__all__ = [
    "COLUMNS",
    "Context",
    "PEAK_BF16_FLOPS",
    "PerfSettings",
    "SizeInputs",
    "StepInputs",
    "VARIANTS",
    "Variant",
    "compare_variants",
    "comparison_variants",
    "input_image",
    "measure_all",
    "peak_bf16_flops",
    "peak_note",
    "prepare_size",
    "run_perf",
    "step_inputs",
    "synchronize",
    "synthetic_image",
    "time_calls",
    "time_variant",
    "unet_flops",
]
