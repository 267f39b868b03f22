"""``train-msh``: a few real steps, checkpoints that load as codecs, resume after a kill."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bench.codec.train as train_module
from bench.cli import main
from bench.codec import decode_latent, encode, load_codec, synthesize
from bench.codec.checkpoints import ZOO_LAMBDAS, zoo_size
from bench.codec.train import MSHTrainConfig, partial_path
from bench.config import validate_config, with_overrides
from bench.utils import BenchError


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "train"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (80 + 8 * i, 96, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def train_args(data: Path, out: Path, steps: int = 3, **extra: str) -> list[str]:
    """A small ``train-msh`` command line (N = M = 8 on 64 px crops); ``extra`` adds or overrides flags."""
    args = {
        "--quality": "1",
        "--data": str(data),
        "--out": str(out),
        "--steps": str(steps),
        "--N": "8",
        "--M": "8",
        "--batch-size": "2",
        "--crop": "64",
        "--checkpoint-every": "2",
        "--device": "cpu",
        **extra,
    }
    return ["train-msh", *(item for pair in args.items() for item in pair)]


def kill_during_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Make training die (as if killed) when it reaches ``step``; undo with ``monkeypatch.undo()``."""
    real_step = train_module._train_step
    calls = itertools.count(1)

    def dying(*args, **kwargs):
        if next(calls) == step:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "_train_step", dying)


def test_trained_checkpoint_is_a_working_codec(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "q1.pt"
    assert main(train_args(data_dir, out, steps=3)) == 0
    state = torch.load(out, weights_only=True)
    expected_keys = {"state_dict", "arch", "quality", "N", "M", "lmbda", "step", "optimizer", "aux_optimizer", "rng"}
    assert expected_keys <= set(state)
    assert (state["arch"], state["quality"], state["N"], state["M"], state["step"]) == ("mbt2018-mean", 1, 8, 8, 3)
    assert state["lmbda"] == ZOO_LAMBDAS[1]
    assert not partial_path(out).exists()
    codec = load_codec(1, checkpoint=out, device="cpu")
    x = torch.rand(1, 3, 64, 64)
    assert synthesize(codec, decode_latent(codec, encode(codec, x)[0])).shape == x.shape


def test_resume_after_kill_gives_the_uninterrupted_result(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = tmp_path / "straight.pt"
    assert main(train_args(data_dir, straight, steps=5)) == 0

    resumed = tmp_path / "resumed.pt"
    kill_during_step(monkeypatch, 4)  # after the step-2 checkpoint
    with pytest.raises(KeyboardInterrupt):
        main(train_args(data_dir, resumed, steps=5))
    assert not resumed.exists()
    assert torch.load(partial_path(resumed), weights_only=True)["step"] == 2

    monkeypatch.undo()
    assert main(train_args(data_dir, resumed, steps=5)) == 0
    a, b = torch.load(straight, weights_only=True), torch.load(resumed, weights_only=True)
    assert b["step"] == 5 and not partial_path(resumed).exists()
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name


def test_resume_with_other_settings_is_refused(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "q1.pt"
    kill_during_step(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        main(train_args(data_dir, out, steps=4))
    monkeypatch.undo()
    assert main(train_args(data_dir, out, steps=4, **{"--lr": "0.01"})) == 2
    assert not out.exists()


def test_config_supplies_defaults_and_flags_win() -> None:
    config = validate_config({"seed": 3, "msh": {"train": {"lr": 0.002, "steps": 7}}})
    cfg = MSHTrainConfig.from_config(with_overrides(config, {"msh.train.steps": 9, "msh.train.lmbda": None}), 5)
    assert (cfg.lr, cfg.steps, cfg.seed) == (0.002, 9, 3)
    assert (cfg.lmbda, (cfg.N, cfg.M)) == (ZOO_LAMBDAS[5], zoo_size(5))


def test_training_images_smaller_than_the_crop_are_refused(tmp_path: Path) -> None:
    (tmp_path / "small").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "small" / "a.png")
    cfg = MSHTrainConfig.from_config(
        validate_config({"msh": {"train": {"N": 8, "M": 8, "steps": 1, "batch_size": 1}}}), 1
    )
    with pytest.raises(BenchError, match="smaller than the 64px crop"):
        train_module.train_msh(cfg, [tmp_path / "small" / "a.png"], tmp_path / "q1.pt", device="cpu")
