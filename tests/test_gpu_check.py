"""``python -m bench gpu-check`` on the CPU, shrunk: both modes end to end, the budget, the preflight.

The GPU numbers themselves are not tested here (CI has no GPU); these tests check that each mode
writes the table it promises, that its checks can fail, and that bad input is one line.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from bench import preflight
from bench.cli import build_parser, main
from bench.commands import decode, gpu_check
from bench.points import diffusion_point, grid_points, parse_point

REPO = Path(__file__).resolve().parents[1]


def run_perf(tmp_path: Path, *extra: str) -> pd.DataFrame:
    out = tmp_path / "gpu_check.csv"
    assert main(["gpu-check", "--device", "cpu", "--shrink", "--no-compile", "--out", str(out), *extra]) == 0
    return pd.read_csv(out)


def test_perf_mode_writes_every_check(tmp_path: Path) -> None:
    table = run_perf(tmp_path)
    unet = table[table["check"] == "unet_call"]
    assert sorted(zip(unet["batch"], unet["precision"], strict=True)) == [
        (1, "bf16"),
        (1, "fp32"),
        (2, "bf16"),
        (2, "fp32"),
    ]
    assert (unet["s_per_call"] > 0).all() and (unet["peak_mem_mb"] > 0).all()
    assert (unet["unet_gflop_per_image"] > 0).all()
    assert unet["mfu"].isna().all() and unet["note"].str.contains("not a GPU").all()  # no bf16 peak on a CPU
    # bf16 really ran at lower precision: a decoder whose outputs are all zero would show 0 here
    assert (unet.loc[unet["precision"] == "bf16", "max_abs_diff"] > 0).all()
    assert (unet.loc[unet["precision"] == "fp32", "max_abs_diff"] == 0).all()
    train = table[table["check"] == "train_step"].iloc[0]
    assert train["it_per_s"] > 0 and train["timed_steps"] >= 1
    determinism = table[table["check"] == "determinism"]
    assert determinism["identical_png"].all()
    assert sorted(determinism["cudnn_deterministic"]) == [False, True]
    assert determinism["png_sha256"].nunique() == 1  # same seed, same bits: the same PNG either way


def test_fresh_decoder_is_made_to_depend_on_its_layers() -> None:
    """A fresh decoder's zero-init output layer hides every other layer; the check's model must not."""
    check = gpu_check.PerfCheck.from_paper(
        gpu_check.load_config(REPO / "configs" / "paper.yaml"), shrink=True, compile_model=False
    )
    ctx = gpu_check.paper_context(check, torch.device("cpu"), clip=True)
    assert all(parameter.any() for parameter in ctx.model.parameters())


def test_spent_budget_gives_skipped_rows_not_a_lost_table(tmp_path: Path) -> None:
    table = run_perf(tmp_path, "--budget-s", "0")
    assert len(table) == 4 + 1 + 2  # every row is there
    assert table["note"].str.startswith("skipped: the 0 s budget").all()


def test_cuda_without_a_gpu_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["gpu-check", "--out", str(tmp_path / "x.csv")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert not (tmp_path / "x.csv").exists()


def tiny_config(tmp_path: Path) -> Path:
    """The CI config shrunk further: 64 px crops, 2 MSH steps, a two-point grid, LPIPS only."""
    config = yaml.safe_load((REPO / "configs" / "ci.yaml").read_text())
    config["datasets"]["eval_crop"] = 64
    config["msh"]["train"].update(steps=2, batch_size=2)
    config["decoder"]["train"].update(batch_size=2)
    config["sampling"]["grid"] = [{"sampler": "ddim", "steps": [2]}, {"sampler": "ddpm", "steps": [2]}]
    config["metrics"].update(fid=False, dists=False, swd=False, niqe=False, bootstrap=100)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_default_mode_trains_decodes_and_tabulates(tmp_path: Path, mirror: Path) -> None:
    config = tiny_config(tmp_path)
    out = tmp_path / "train_default.csv"
    assert (
        main(
            [
                "gpu-check",
                "--mode",
                "train-default",
                "--config",
                str(config),
                "--device",
                "cpu",
                "--minutes",
                "0.02",
                "--work",
                str(tmp_path / "work"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = pd.read_csv(out)
    points = ["msh", *(p.id for p in grid_points(gpu_check.load_config(config)["sampling"]))]
    assert sorted(table["point"]) == sorted(points)
    assert (table["train_steps"] >= 1).all() and table["train_steps"].nunique() == 1
    assert (table["compute_ratio"] == table["train_steps"] / 100).all()  # ci.yaml's decoder.train.steps
    checkpoint = torch.load(tmp_path / "work" / "models" / "decoder_q1.pt", map_location="cpu", weights_only=False)
    assert checkpoint["step"] == table["train_steps"].iloc[0]  # the budgeted steps are what was trained
    assert table["psnr"].notna().all() and table["lpips"].notna().all()


def test_train_default_rejects_a_non_positive_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "gpu-check",
                "--mode",
                "train-default",
                "--device",
                "cpu",
                "--minutes",
                "0",
                "--out",
                str(tmp_path / "x.csv"),
            ]
        )
        == 2
    )
    assert "--minutes must be > 0" in capsys.readouterr().err


@pytest.mark.parametrize("point_id", ["ddim-k5-eta0-w2-s3", "ddpm-k4-t0.5-n2-s1", "dpmpp-k3-s0"])
def test_decode_point_sets_every_sampler_setting(point_id: str) -> None:
    """The workflow and gpu-check decode with ``--point ID``: the settings are those the id holds."""
    args = build_parser().parse_args(
        [
            "decode",
            "in",
            "out",
            "--decoder",
            "diffusion",
            "--decoder-checkpoint",
            "d.pt",
            "--pretrained",
            "--point",
            point_id,
        ]
    )
    decode.DECODERS["diffusion"].resolve(args)
    point = parse_point(point_id)
    assert (args.sampler, args.steps, args.eta, args.t0, args.guidance, args.n_avg, args.seeds) == (
        point.sampler,
        point.steps,
        point.eta or 0.0,
        point.t0,
        point.guidance,
        point.n_avg,
        [point.seed],
    )
    assert (
        diffusion_point(
            args.sampler,
            args.steps,
            args.seeds[0],
            args.eta if point.eta is not None else None,
            t0=args.t0,
            guidance=args.guidance,
            n_avg=args.n_avg,
        ).id
        == point_id
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--point", "ddim-k5-eta0-s0", "--steps", "4"], "drop --steps"),
        (["--point", "ddim-k5-eta0-s0", "--seed", "1", "--n-avg", "2"], "drop --n-avg, --seed"),
        (["--point", "msh"], "is not a diffusion point"),
        (["--point", "ddim-k5"], "ddim-k5"),
        (["--eta", "0.5"], "needs --sampler"),
    ],
)
def test_decode_point_conflicts_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = [
        "decode",
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        "--decoder",
        "diffusion",
        "--decoder-checkpoint",
        "d.pt",
        "--pretrained",
        *extra,
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_preflight_names_what_is_missing(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert preflight.main() == 0  # this environment has everything
    monkeypatch.setattr(preflight, "REQUIRED", (*preflight.REQUIRED, ("no_such_module_xyz", "no-such-dist")))
    assert preflight.main() == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no-such-dist (ModuleNotFoundError" in err


def test_given_inputs_are_used_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU recipe carries prepared folders and maybe an MSH: nothing is fetched or trained for them."""
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(gpu_check, "_bench", lambda *argv: calls.append(argv))
    config_path = REPO / "configs" / "default.yaml"
    given = {"eval_images": tmp_path / "kodak", "train_images": tmp_path / "wiki", "msh_checkpoint": tmp_path / "m.pt"}
    layout = gpu_check.prepare_inputs(
        config_path, gpu_check.load_config(config_path), tmp_path / "work", device="cpu", mirror=None, **given
    )
    assert calls == []
    assert (layout.eval_images, layout.train_images, layout.msh) == tuple(given.values())
    layout = gpu_check.prepare_inputs(
        config_path,
        gpu_check.load_config(config_path),
        tmp_path / "work",
        device="cpu",
        mirror=None,
        eval_images=None,
        train_images=None,
        msh_checkpoint=None,
    )
    assert [call[:2] for call in calls] == [("datasets", "prepare"), ("datasets", "fetch"), ("train-msh", "--config")]
    assert layout.msh.parent == tmp_path / "work" / "models"
