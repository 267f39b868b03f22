"""Config schema: every shipped config validates; bad keys fail with a message naming them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bench.config import config_hash, load_config, validate_config
from bench.utils import BenchError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_validate(path: Path) -> None:
    config = load_config(path)
    assert config["name"] == path.stem
    assert config["sampling"]["grid"], "every config decodes at least one sampler point"


def test_defaults_are_filled() -> None:
    config = validate_config({})
    assert config["datasets"]["eval"] == ["kodak"]
    assert config["decoder"]["train"]["p_uncond"] == 0.1
    assert config["sampling"]["grid"][0]["eta"] == [0.0]


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"datasets": {"eval": ["imagenet"]}}, "imagenet"),
        ({"sampling": {"grid": [{"sampler": "euler", "steps": [10]}]}}, "euler"),
        ({"sampling": {"grid": [{"sampler": "ddim", "steps": [-5]}]}}, "-5"),
        ({"decoder": {"train": {"steps": -1}}}, "steps"),
        ({"msh": {"qualities": [9]}}, "9"),
        ({"no_such_key": 1}, "no_such_key"),
    ],
)
def test_bad_configs_name_the_key(bad: dict, named: str) -> None:
    with pytest.raises(BenchError, match="invalid configuration") as err:
        validate_config(bad)
    assert named in str(err.value)


def test_paper_config_forbids_random_backbones() -> None:
    assert load_config(CONFIGS[[p.stem for p in CONFIGS].index("paper")])["allow_random_backbones"] is False


def test_paper_config_trains_as_the_papers_command() -> None:
    """The paper's command: --timestep_respacing 1000 of a 4000-step cosine schedule, p_guidance at its
    default 0 (guidance is our deviation, named in the config's comment), no gradient clipping."""
    config = load_config(CONFIGS[[p.stem for p in CONFIGS].index("paper")])
    model, train = config["decoder"]["model"], config["decoder"]["train"]
    assert (model["schedule"], model["train_timesteps"], model["respacing"]) == ("cosine", 4000, 1000)
    assert train["p_uncond"] == 0.0 and train["grad_clip"] is None


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(BenchError, match="mapping"):
        load_config(tmp_path / "list.yaml")


def test_config_hash_tracks_content() -> None:
    a = validate_config({})
    b = validate_config({"seed": 1})
    assert config_hash(a) == config_hash(validate_config({}))
    assert config_hash(a) != config_hash(b)
