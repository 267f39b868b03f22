"""Names of the patch-metric summary columns, in a module light enough for the report to import.

FID and KID on patches depend on the patch protocol and size (see :mod:`bench.metrics.distribution`),
so their columns say both: ``fid_hific_p256`` is HiFiC's FID/256, ``fid_hific_p128`` the same grids
on 128 px patches, ``fid_nonoverlap_p256`` the paper's single grid. A value on 128 px patches is on
another scale than FID/256, and no column may pass for it.
"""

from __future__ import annotations

import re

PROTOCOLS: tuple[str, ...] = ("hific", "nonoverlap")
PATCH_METRICS: tuple[str, ...] = ("fid", "kid", "kid_std")
_PROTOCOL_COLUMN = re.compile(rf"^({'|'.join(PATCH_METRICS)})_({'|'.join(PROTOCOLS)})_p([1-9][0-9]*)$")


def protocol_column(metric: str, protocol: str, patch_size: int) -> str:
    """The summary column of a patch metric: ``fid_hific_p256`` (HiFiC's FID/256), ``fid_hific_p128``, ..."""
    return f"{metric}_{protocol}_p{patch_size}"


def parse_protocol_column(name: str) -> tuple[str, str, int] | None:
    """``"kid_hific_p128"`` → ``("kid", "hific", 128)``; None for any other column name."""
    match = _PROTOCOL_COLUMN.match(name)
    return (match.group(1), match.group(2), int(match.group(3))) if match else None


def patch_label(protocol: str, patch_size: int) -> str:
    """How a protocol reads in a label: ``/256`` for HiFiC's FID/256, else ``(128 px, hific)``."""
    return "/256" if (protocol, patch_size) == ("hific", 256) else f" ({patch_size} px, {protocol})"
