"""Load and validate run configurations against the one schema (``bench/schema.yaml``).

The Snakefile validates its config with ``snakemake.utils.validate`` and the same schema file, and
the CLI goes through :func:`load_config`, which calls the same function: both reject the same bad
keys with the same message and fill in the same defaults.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from bench.utils import BenchError

SCHEMA_PATH = Path(__file__).with_name("schema.yaml")


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Return a validated copy of ``config`` with every schema default filled in.

    Raises :class:`BenchError` whose message names the offending key (e.g. ``'datasets'``,
    ``'eval'``, ``0``) and the rule it broke.
    """
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    checked = copy.deepcopy(config) if config is not None else {}
    try:
        validate(checked, str(SCHEMA_PATH), set_default=True)
    except WorkflowError as err:
        raise BenchError(f"invalid configuration: {err}") from None
    return checked


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it (defaults filled)."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"config file not found: {path} (see configs/ for examples)")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise BenchError(f"config file {path} must hold a mapping at the top level, got {type(raw).__name__}")
    return validate_config(raw)


def config_hash(config: dict[str, Any]) -> str:
    """Short hash of a validated config (canonical JSON), recorded in every table as provenance."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
