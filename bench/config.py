"""Load and validate run configurations against the one schema (``bench/schema.yaml``).

The Snakefile validates its config through :func:`validate_config` too: both reject the same bad
keys with the same one-line message and fill in the same defaults. The schema file leaves the names
of the samplers and prediction types to :mod:`bench.sampler_facts` (:func:`load_schema` fills them
in). Command-line flags that stand for config keys are merged in by :func:`with_overrides` and
validated again, so ``--steps -5`` gets the message a ``steps: -5`` in the file would.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bench.data import DATASETS
from bench.sampler_facts import PREDICTION_TYPES, SAMPLER_NAMES
from bench.utils import BenchError, atomic_path

SCHEMA_PATH = Path(__file__).with_name("schema.yaml")
_LONG_VALUE = 80  # characters of a value's repr beyond which a message says "the value" instead


def schema_error_message(err: Any) -> str:
    """One line for a jsonschema ``ValidationError``: the dotted key, its value and what is allowed.

    e.g. ``config key 'msh.train.steps': -5 is less than the minimum of 1``. An unknown key names
    the keys allowed there; a value long enough to flood the terminal is not repeated.
    """
    key = ".".join(str(part) for part in err.absolute_path)
    if err.validator == "additionalProperties":
        known = err.schema.get("properties", {})
        unknown = [f"'{key}.{name}'" if key else f"'{name}'" for name in sorted(set(err.instance) - set(known))]
        verb = "is" if len(unknown) == 1 else "are"
        return f"config key {', '.join(unknown)} {verb} unknown; allowed there: {', '.join(sorted(known))}"
    message = err.message
    if len(repr(err.instance)) > _LONG_VALUE:
        message = message.replace(repr(err.instance), "the value", 1)
    if err.validator in ("oneOf", "anyOf"):
        message += " (allowed: " + " | ".join(json.dumps(s, sort_keys=True) for s in err.validator_value) + ")"
    return f"config key '{key or '<top level>'}': {message}"


def _registry_enums() -> list[tuple[tuple[str, ...], list[str]]]:
    """The allowed values the schema file leaves to the code's registries: (path in the schema, values)."""
    datasets = [
        (("$defs", f"{role}_dataset"), [n for n, s in DATASETS.items() if s.role == role]) for role in ("eval", "train")
    ]
    return [
        (("$defs", "sampler_point", "properties", "sampler"), sorted(SAMPLER_NAMES)),
        (("properties", "decoder", "properties", "model", "properties", "prediction_type"), list(PREDICTION_TYPES)),
        *datasets,
    ]


@functools.cache
def load_schema() -> dict[str, Any]:
    """The config schema: ``bench/schema.yaml`` with the sampler and prediction-type names filled in
    from :mod:`bench.sampler_facts` and the dataset names of each role from the dataset registry, so a
    new sampler or dataset needs no second list in the schema file."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    for path, values in _registry_enums():
        node = schema
        for key in path:
            node = node[key]
        node["enum"] = values
    return schema


def _with_defaults(validator_class: Any) -> Any:
    """``validator_class`` that also fills every missing property that has a ``default`` (jsonschema's
    FAQ recipe, as ``snakemake.utils.validate(set_default=True)`` does), a fresh copy each time."""
    from jsonschema import validators

    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: dict[str, Any], instance: Any, schema: dict[str, Any]) -> Any:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def validate_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """Return a validated copy of ``config`` with every schema default filled in.

    Raises :class:`BenchError` with :func:`schema_error_message`'s one line.
    """
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

    checked = copy.deepcopy(config) if config is not None else {}
    try:
        _with_defaults(Draft202012Validator)(load_schema()).validate(checked)
    except ValidationError as err:
        raise BenchError(schema_error_message(err)) from None
    return checked


def with_overrides(config: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with each dotted key of ``overrides`` (``"msh.train.steps"``) set to its value, validated.

    ``None`` values (a flag not given) are skipped. This is how every command-line flag that stands
    for a config key enters the configuration: one schema, one message for a bad value.
    """
    merged = copy.deepcopy(config)
    for dotted, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        section = merged
        for name in parents:
            section = section.setdefault(name, {})
        section[leaf] = value
    return validate_config(merged)


def typed_config_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Snakemake's ``--config KEY=VALUE`` overrides with the scalars inside nested values typed as YAML.

    Snakemake parses a value that is not a plain number or boolean with YAML's BaseLoader, which
    keeps every scalar a string: ``--config decoder='{train: {steps: 3}}'`` arrives as
    ``{"train": {"steps": "3"}}`` and fails the schema ('3' is not of type 'integer'). Each string
    inside a mapping or list is read again as a YAML scalar (``"3"`` → 3, ``"null"`` → None,
    ``"kodak"`` stays a string); top-level values are left as Snakemake typed them.
    """

    def typed(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: typed(item) for key, item in value.items()}
        if isinstance(value, list):
            return [typed(item) for item in value]
        if isinstance(value, str):
            parsed = yaml.safe_load(value) if value.strip() else value
            return parsed if parsed is None or isinstance(parsed, (bool, int, float, str)) else value
        return value

    return {key: typed(value) if isinstance(value, (Mapping, list)) else value for key, value in overrides.items()}


def _read_yaml(path: Path) -> Any:
    """The YAML document of ``path``; a syntax error is one ``FILE:LINE:COL: problem`` line."""
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except yaml.MarkedYAMLError as err:
        mark, context = err.problem_mark, err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        started = f" ({err.context} at {context.line + 1}:{context.column + 1})" if context and err.context else ""
        raise BenchError(f"{where}: YAML syntax error: {err.problem}{started}") from None
    except yaml.YAMLError as err:
        raise BenchError(f"{path}: YAML syntax error: {err}") from None


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it (defaults filled).

    An empty file is refused, as Snakemake refuses it for ``--configfile`` ("Config file must be
    given as JSON or YAML with keys at top level"): a config names at least one key.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"config file not found: {path} (see configs/ for examples)")
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else type(raw).__name__
        raise BenchError(
            f"config file {path} must hold a mapping of config keys at the top level, got {got} "
            "(see configs/ for examples)"
        )
    return validate_config(raw)


def config_hash(config: dict[str, Any]) -> str:
    """Short hash of a validated config (canonical JSON), recorded in every table as provenance."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def write_config(config: dict[str, Any], *paths: str | Path) -> None:
    """Write ``config`` as sorted YAML to each of ``paths``, atomically (the workflow's config snapshot)."""
    text = yaml.safe_dump(config, sort_keys=True)
    for path in paths:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
