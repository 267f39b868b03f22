"""What the two trainers (``train-msh``, ``train-decoder``) share: the resumable loop around their steps.

Kill-safe training: every ``checkpoint_every`` steps, and at once on SIGTERM (after the step that
is running), the whole training state goes to ``OUT.partial``; a rerun with the same settings
resumes from it and produces the same weights as an uninterrupted run, because the crop stream is
a pure function of the seed (a resumed run skips the batches already used) and the RNG state is
saved with the weights. ``OUT`` itself is written once, at the end, by the trainer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from bench.images import load_rgb
from bench.utils import BenchError, Terminated, deferred_sigterm, interrupted_message, progress_options

if TYPE_CHECKING:
    import torch
    from torch import Tensor

# Settings that may change between a kill and the resumed run without changing the result.
RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every"})


def partial_path(out: Path) -> Path:
    """Where the resumable training state of ``out`` lives while training runs."""
    return out.with_name(out.name + ".partial")


class RandomCrops:
    """An endless, deterministic stream of random ``crop``×``crop`` RGB crops in [0, 1] (CHW float).

    Images are decoded once and kept in memory (training sets here are small); the crop positions
    and image choices come from a generator seeded with ``seed``, so the same seed gives the same
    stream. Images smaller than the crop are rejected up front with their names.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], crop: int, seed: int = 0) -> None:
        if not paths:
            raise BenchError("no training images given")
        self.images = [load_rgb(p) for p in paths]
        small = [str(p) for p, im in zip(paths, self.images, strict=True) if min(im.shape[:2]) < crop]
        if small:
            raise BenchError(f"training images smaller than the {crop}px crop: {', '.join(small)}")
        self.crop = crop
        self.seed = seed

    def __iter__(self) -> Iterator[torch.Tensor]:
        import torch  # here, not at module level: bench.training stays torch-free to import

        rng = np.random.default_rng(self.seed)
        while True:
            image = self.images[rng.integers(len(self.images))]
            top = rng.integers(image.shape[0] - self.crop + 1)
            left = rng.integers(image.shape[1] - self.crop + 1)
            patch = image[top : top + self.crop, left : left + self.crop]
            yield torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1).float().div(255.0)


def crop_batches(dataset: RandomCrops, batch_size: int) -> Iterator[torch.Tensor]:
    """Group a crop stream into ``[batch_size, 3, crop, crop]`` tensors."""
    import torch

    stream = iter(dataset)
    while True:
        yield torch.stack([next(stream) for _ in range(batch_size)])


def crop_stream(images: Sequence[Path], crop: int, batch_size: int, seed: int, skip: int) -> Iterator[Tensor]:
    """The seeded crop-batch stream, ``skip`` batches in (what a resumed run has already seen)."""
    batches = crop_batches(RandomCrops(images, crop, seed=seed), batch_size)
    for _ in range(skip):
        next(batches)
    return batches


def load_partial(path: Path, keys: Sequence[str], *, weights_only: bool) -> dict[str, Any]:
    """A partial checkpoint's state, which must hold ``keys``; a torn or foreign file is one error
    saying how to start over."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=weights_only)
        missing = [key for key in keys if key not in state]
        if missing:
            raise KeyError(missing[0])
    except Exception as err:  # torch raises many types for torn files
        raise BenchError(f"cannot resume from {path} ({type(err).__name__}: {err}); delete it to start over") from None
    return state


def settings_changes(
    saved: Mapping[str, Any], now: Mapping[str, Any], prefix: str = "", ignore: Collection[str] = RESUMABLE_CHANGES
) -> list[str]:
    """``PREFIXkey: old -> new`` for each setting of ``now`` that ``saved`` differs in, but those in
    ``ignore`` (by default those a resume may change, :data:`RESUMABLE_CHANGES`)."""
    return [
        f"{prefix}{key}: {saved.get(key)!r} -> {value!r}"
        for key, value in now.items()
        if saved.get(key) != value and key not in ignore
    ]


def refuse_changed_settings(path: Path, changes: Sequence[str]) -> None:
    """Stop a resume from ``path`` when the settings changed since it was saved (naming each change)."""
    if changes:
        raise BenchError(f"{path} was trained with other settings ({', '.join(changes)}); delete it to start over")


def run_steps(
    *,
    step: int,
    total: int,
    desc: str,
    train_step: Callable[[], dict[str, float]],
    save_partial: Callable[[int], None],
    partial: Path,
    checkpoint_every: int,
    postfix: Callable[[dict[str, float]], dict[str, str]],
) -> int:
    """Run ``train_step`` from ``step`` to ``total`` with a progress bar (its ``postfix`` from the
    step's stats), saving the resumable state every ``checkpoint_every`` steps and, on SIGTERM, after
    the current step before stopping with :class:`Terminated`; returns the last step."""
    with (
        tqdm(initial=step, total=total, desc=desc, unit="it", **progress_options()) as bar,
        deferred_sigterm() as terminated,
    ):
        while step < total:
            stats = train_step()
            step += 1
            bar.update(1)
            bar.set_postfix(postfix(stats), refresh=False)
            if (step % checkpoint_every == 0 or terminated()) and step < total:
                save_partial(step)
            if terminated() and step < total:
                raise Terminated(interrupted_message(step, partial))
    return step
