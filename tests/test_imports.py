"""What the Snakefile parse and a light CLI call import: every job pays it, so torch stays out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli, utils
from bench.commands import requested_command

# What workflow/rules/*.smk import at parse time, plus the CLI module every job runs through.
PARSE_TIME_MODULES = ("bench.points", "bench.config", "bench.utils", "bench.data", "bench.baselines.byo", "bench.cli")
HEAVY = ("torch", "torch_fidelity", "lpips", "matplotlib")


def _heavy_after(code: str) -> list[str]:
    """The heavy packages a fresh interpreter holds after running ``code`` (this one has torch loaded)."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_parse_time_modules_do_not_import_torch():
    assert _heavy_after("\n".join(f"import {name}" for name in PARSE_TIME_MODULES)) == []


@pytest.mark.parametrize("command", ["tables", "datasets", "byo-check"])
def test_light_commands_build_their_parser_without_torch(command):
    assert _heavy_after(f"from bench.cli import build_parser\nbuild_parser({command!r})") == []


def test_command_map_names_each_command_of_the_full_parser():
    """COMMAND_MODULE must name every subcommand, and the module that registers it."""
    full = cli.build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001 (argparse has no public accessor)
    assert set(full) == set(cli.COMMAND_MODULE)
    for command, module in cli.COMMAND_MODULE.items():
        assert module in cli.COMMAND_MODULES
        assert command in cli.build_parser(command)._subparsers._group_actions[0].choices  # noqa: SLF001


def test_main_runs_a_command_through_its_own_module(capsys):
    assert cli.main(["datasets", "list"]) == 0
    assert "kodak" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, command", [(["--threads", "1", "tables"], "tables"), (["-v", "--threads=2", "datasets", "list"], "datasets")]
)
def test_global_options_before_the_command_keep_the_import_light(argv, command):
    """Every workflow rule calls ``python -m bench --threads N CMD``: the option's value is not the command."""
    assert requested_command(argv) == command
    code = f"from bench.commands import build_parser, requested_command\nbuild_parser(requested_command({argv!r}))"
    assert _heavy_after(code) == []


def test_portable_numerics_reach_torch_before_it_loads():
    """``--portable-numerics`` (config key portable_numerics, on in the CI config) must be in the
    environment before the command's module imports torch: ATen then runs its non-vectorised kernels."""
    code = (
        "from bench.commands import requested_command\n"
        "requested_command(['--portable-numerics', '--threads', '1', 'decode'])\n"
        "import torch\nfrom bench.utils import cpu_numerics, pin_portable_kernels\n"
        "print(torch.backends.cpu.get_cpu_capability(), cpu_numerics())\n"
        "pin_portable_kernels()\nprint(cpu_numerics())"
    )
    env = {k: v for k, v in os.environ.items() if k not in utils.PORTABLE_NUMERICS_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    # Until the convolutions leave oneDNN the process is not portable yet, and says so.
    assert out.stdout.split() == ["DEFAULT", "mixed", "portable"]
    native = subprocess.run(
        [sys.executable, "-c", "from bench.utils import cpu_numerics; print(cpu_numerics())"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert native.stdout.strip() == "native"


def test_every_command_handler_lives_in_bench_commands():
    """One pattern for every part: its handlers in ``bench/commands/PART.py``, no argparse code in a library module."""
    assert all(module.startswith("bench.commands.") for module in cli.COMMAND_MODULES)
    package = Path(cli.__file__).parent
    library = [path for path in package.rglob("*.py") if package / "commands" not in path.parents]
    holding_argparse = [str(path.relative_to(package)) for path in library if "argparse" in path.read_text()]
    assert holding_argparse == ["cli.py"]


@pytest.mark.parametrize("portable", [True, False])
def test_portable_numerics_keep_convolutions_off_onednn(portable):
    """oneDNN blocks its loops by the CPU's cache sizes (another summation order on another CPU
    model): a portable process must run convolutions on ATen's kernels; a native one keeps oneDNN
    and is not made to import torch."""
    code = (
        "import sys\nfrom bench.utils import pin_portable_kernels\npin_portable_kernels()\n"
        "print('torch' in sys.modules)\n"
        "import torch\nprint(torch.backends.mkldnn.enabled, torch._C._get_nnpack_enabled())"
    )
    env = {k: v for k, v in os.environ.items() if k not in utils.PORTABLE_NUMERICS_ENV}
    if portable:
        env |= utils.PORTABLE_NUMERICS_ENV
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == (["True", "False", "False"] if portable else ["False", "True", "True"])


def test_the_diffusion_face_loads_a_name_with_its_module_only():
    """``from bench.diffusion import load_decoder`` must not pull in the samplers' diffusers; the
    samplers' names load them when asked for."""
    probe = (
        "import sys\nfrom bench.diffusion import load_decoder\nprint('diffusers' in sys.modules)\n"
        "from bench.diffusion import plan_sampling\nprint('diffusers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_the_diffusion_face_names_exist_in_their_modules():
    import importlib

    import bench.diffusion

    for name, module in bench.diffusion._FACE.items():  # noqa: SLF001 (the face's own table)
        assert hasattr(importlib.import_module(f"bench.diffusion.{module}"), name), name
    with pytest.raises(AttributeError, match="no_such_name"):
        bench.diffusion.no_such_name  # noqa: B018
