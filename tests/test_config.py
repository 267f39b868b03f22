"""Config schema: every shipped config validates; bad keys fail with a message naming them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from bench import config as config_module
from bench import data
from bench.config import config_hash, load_config, validate_config, with_overrides
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


def test_dataset_names_come_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dataset added to the registry is a valid name of its role (and of no other) with no schema edit."""
    schema = config_module.load_schema()
    for role in ("eval", "train"):
        names = [name for name, spec in data.DATASETS.items() if spec.role == role]
        assert schema["$defs"][f"{role}_dataset"]["enum"] == names
    added = dataclasses.replace(data.get_dataset("kodak"), name="tecnick")
    monkeypatch.setitem(data.DATASETS, "tecnick", added)
    config_module.load_schema.cache_clear()
    try:
        assert validate_config({"datasets": {"eval": ["kodak", "tecnick"]}})["datasets"]["eval"][1] == "tecnick"
        with pytest.raises(BenchError, match="tecnick"):
            validate_config({"datasets": {"train": "tecnick"}})
    finally:
        monkeypatch.undo()
        config_module.load_schema.cache_clear()


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
    with pytest.raises(BenchError, match="^config key '") as err:
        validate_config(bad)
    assert named in str(err.value)
    assert "\n" not in str(err.value), "one line, not jsonschema's dump of the schema"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"msh": {"train": {"steps": -5}}}, "config key 'msh.train.steps': -5 is less than the minimum of 1"),
        ({"decoder": {"train": {"steps": 0}}}, "config key 'decoder.train.steps': 0 is less than the minimum of 1"),
        ({"msh": {"train": {"crop": 96}}}, "config key 'msh.train.crop': 96 is not a multiple of 64"),
        ({"msh": {"train": {"bogus": 1}}}, "config key 'msh.train.bogus' is unknown; allowed there: M, N, aux_lr,"),
        ({"sampling": {"grid": [{"steps": [1]}]}}, "config key 'sampling.grid.0': 'sampler' is a required property"),
    ],
)
def test_schema_errors_are_one_line_with_key_value_and_rule(bad: dict, message: str) -> None:
    with pytest.raises(BenchError) as err:
        validate_config(bad)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_long_value_is_not_repeated_in_the_message() -> None:
    with pytest.raises(BenchError) as err:
        validate_config({"baselines": {"byo": [{"name": "a", "dataset": "kodak", "reconstructions": "r" * 200}]}})
    assert "r" * 200 not in str(err.value) and "config key 'baselines.byo.0'" in str(err.value)


def test_flag_overrides_get_the_config_files_message(tmp_path: Path) -> None:
    """``--steps -5`` and ``steps: -5`` in the file: same schema, same words."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"msh": {"train": {"steps": -5}}}))
    with pytest.raises(BenchError) as from_file:
        load_config(path)
    with pytest.raises(BenchError) as from_flag:
        with_overrides(validate_config({}), {"msh.train.steps": -5, "seed": None})
    assert str(from_flag.value) == str(from_file.value)
    merged = with_overrides(validate_config({"seed": 2}), {"msh.train.steps": 7, "seed": None})
    assert (merged["msh"]["train"]["steps"], merged["seed"]) == (7, 2)


def test_yaml_syntax_error_is_one_line_with_file_line_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("seed: 1\nmsh:\n  train: {steps: 3\n")
    with pytest.raises(BenchError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}:4:1: YAML syntax error") and "\n" not in str(err.value)


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


def test_empty_config_file_is_refused_as_snakemake_refuses_it(tmp_path: Path) -> None:
    """Snakemake's --configfile stops on an empty file ("must be given as JSON or YAML with keys at
    top level"); the CLI used to train 5,000 steps on the defaults instead."""
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(BenchError, match="empty.yaml must hold a mapping of config keys.*got an empty file"):
        load_config(tmp_path / "empty.yaml")


def test_config_hash_tracks_content() -> None:
    a = validate_config({})
    b = validate_config({"seed": 1})
    assert config_hash(a) == config_hash(validate_config({}))
    assert config_hash(a) != config_hash(b)
