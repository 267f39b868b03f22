"""``python -m bench report rdp|tradeoff|samples|cost``: one figure (PDF + PNG) per call."""

from __future__ import annotations

import argparse

from bench.data import list_images
from bench.report.build import write_rdp_figure, write_samples_figure, write_tradeoff_figure
from bench.report.cost import COST_METRICS, write_cost_figure
from bench.report.figures import PERCEPTION_METRICS, RDP_METRICS
from bench.report.samples import Crop
from bench.report.style import METRICS


def _cmd_rdp(args: argparse.Namespace) -> int:
    write_rdp_figure(
        args.summary, args.out, dataset=args.dataset, metrics=args.metrics, published=not args.no_published
    )
    return 0


def _cmd_tradeoff(args: argparse.Namespace) -> int:
    write_tradeoff_figure(
        args.summary, args.out, dataset=args.dataset, perception=args.perception, distortion=args.distortion
    )
    return 0


def _cmd_samples(args: argparse.Namespace) -> int:
    left, top, size = args.crop
    image = args.image or list_images(args.reference)[0].stem
    write_samples_figure(
        args.summary,
        args.out,
        reference=args.reference,
        work=args.work,
        image=image,
        crop=Crop(left, top, size),
        dataset=args.dataset,
        quality=args.quality,
        points=args.points,
    )
    return 0


def _cmd_cost(args: argparse.Namespace) -> int:
    write_cost_figure(args.summary, args.out, dataset=args.dataset, metrics=args.metrics)
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summary", required=True, metavar="CSV", help="results/{dataset}/summary.csv")
    parser.add_argument("--dataset", help="dataset to draw (needed when the table holds several)")
    parser.add_argument("--out", required=True, metavar="PDF", help="figure path (.pdf; a .png is written beside it)")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``report rdp|tradeoff|samples|cost``."""
    parser = subparsers.add_parser("report", help="figures from summary tables (PDF + PNG)")
    sub = parser.add_subparsers(dest="report_command", metavar="FIGURE", required=True)

    rdp = sub.add_parser("rdp", help="rate against distortion and realism, published baselines as markers")
    _common(rdp)
    rdp.add_argument(
        "--metrics", nargs="+", choices=sorted(METRICS), default=list(RDP_METRICS), help="panels, in order"
    )
    rdp.add_argument("--no-published", action="store_true", help="leave out the published baseline points")
    rdp.set_defaults(func=_cmd_rdp)

    tradeoff = sub.add_parser("tradeoff", help="the distortion-realism plane at each bitrate, points sized by NFE")
    _common(tradeoff)
    tradeoff.add_argument(
        "--perception",
        nargs="+",
        choices=sorted(METRICS),
        default=list(PERCEPTION_METRICS),
        help="realism measures on the x axes",
    )
    tradeoff.add_argument("--distortion", choices=sorted(METRICS), default="psnr", help="the y axis (default psnr)")
    tradeoff.set_defaults(func=_cmd_tradeoff)

    samples = sub.add_parser("samples", help="the same crop from the original and several decoders")
    _common(samples)
    samples.add_argument("--reference", required=True, metavar="DIR", help="folder of the original PNGs")
    samples.add_argument(
        "--work", default="work", metavar="DIR", help="WORK/{dataset}/q{quality}/{point}/ (default work)"
    )
    samples.add_argument("--image", help="image name without .png, e.g. kodim23 (default: the first reference image)")
    samples.add_argument(
        "--crop",
        nargs=3,
        type=int,
        required=True,
        metavar=("LEFT", "TOP", "SIZE"),
        help="square crop: top-left corner and side in pixels",
    )
    samples.add_argument("--quality", type=int, help="default: the lowest quality with diffusion points")
    samples.add_argument(
        "--points", nargs="+", metavar="POINT", help="default: msh, the fewest-step DDIM and the most-step DDPM point"
    )
    samples.set_defaults(func=_cmd_samples)

    cost = sub.add_parser("cost", help="quality against decode seconds per image, one curve per sampler")
    _common(cost)
    cost.add_argument(
        "--metrics",
        nargs="+",
        choices=sorted(METRICS),
        default=list(COST_METRICS),
        help="quality measures on the y axes, in order",
    )
    cost.set_defaults(func=_cmd_cost)
