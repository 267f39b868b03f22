"""The one download helper of the suite: datasets, their archives, compressai's zoo weights and the
metrics' backbone weights.

:func:`download` streams ``URL`` into ``DEST.part``, resumes a cut transfer with an HTTP Range
request (again within the call, up to :data:`ATTEMPTS` times, and on a later run from the
``.part`` left behind), bounds every wait on the server by a timeout so a server that stops
answering fails instead of hanging, runs the caller's check on the complete file and only then
renames it onto ``DEST``. Every failure is one BenchError line naming the URL and the fix; a file
that fails its check is deleted, so nothing unverified is ever left under its real name.
"""

from __future__ import annotations

import http.client
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from bench.utils import BenchError, sha256_file

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 60.0  # longest wait for the server's next byte (and for its answer)
ATTEMPTS = 3  # transfers of one file per call; each one after a cut resumes where it stopped
CHUNK = 1 << 20

# A check gets the complete downloaded file and returns None when it is right, else what is wrong
# with it and what to do (without the URL, which the helper adds).
Check = Callable[[Path], str | None]


class NotFound(BenchError):
    """The server answered 404: it does not have the file (a mirror then falls back to upstream)."""


class ChecksumMismatch(BenchError):
    """The file came in full but failed its check (it was deleted): unlike an unreachable server, retrying
    the same source will not help, so callers that fall back on a failed download stop on this one."""


class _Cut(Exception):
    """The transfer stopped early (connection dropped, or no data within the timeout); the .part keeps what came."""


class _Refused(Exception):
    """The server or the network refused the request; retrying will not help."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


def is_url(value: str | os.PathLike) -> bool:
    """Whether ``value`` is an ``http://`` or ``https://`` URL (rather than a local path)."""
    return str(value).startswith(("http://", "https://"))


def sha256_is(expected: str) -> Check:
    """A check accepting a file whose sha256 starts with ``expected`` (a full digest or torch.hub's prefix)."""

    def check(path: Path) -> str | None:
        digest = sha256_file(path)
        return None if digest.startswith(expected) else f"its sha256 is {digest}, expected {expected}"

    return check


def download(url: str, dest: Path, *, fix: str, check: Check | None = None, timeout: float | None = None) -> None:
    """Fetch ``url`` into ``dest`` through ``dest.part`` (resumable), check it, then rename it into place.

    ``fix`` ends the error line when the server cannot be reached or keeps cutting the transfer
    (say where else the file can come from); a check's own message says what to do on a mismatch.
    Raises :class:`NotFound` on HTTP 404 and BenchError on every other failure.
    """
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    wait = timeout or DOWNLOAD_TIMEOUT_S
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _transfer(url, part, wait)
            break
        except _Refused as err:
            error = NotFound if err.status == 404 else BenchError
            raise error(f"could not download {url} ({err}); {fix}") from None
        except _Cut as cut:
            if attempt == ATTEMPTS:
                kept = part.stat().st_size if part.exists() else 0
                raise BenchError(
                    f"could not download {url}: {cut}, {ATTEMPTS} times ({kept} bytes kept in {part}; "
                    f"a rerun resumes from there); {fix}"
                ) from None
            log.warning("%s: %s; resuming (attempt %d of %d)", url, cut, attempt + 1, ATTEMPTS)
    problem = check(part) if check is not None else None
    if problem is not None:
        part.unlink()
        raise ChecksumMismatch(f"checksum mismatch for {url} (the download was deleted): {problem}")
    os.replace(part, dest)


def _transfer(url: str, part: Path, timeout: float) -> None:
    """One request: append to ``part`` from its current size (Range), or rewrite it when the server ignores that."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and offset:  # the .part is not a prefix of what the server has now
            part.unlink()
            raise _Cut("the server cannot resume the partial file; starting over") from None
        raise _Refused(f"HTTP {err.code} {err.reason}", err.code) from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            raise _Cut(f"no answer within {timeout:g} s") from None
        raise _Refused(str(err.reason)) from None
    except TimeoutError:
        raise _Cut(f"no answer within {timeout:g} s") from None
    with response:
        resumed = offset > 0 and response.status == 206
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            part.unlink()
            raise _Cut(f"the server resumed at the wrong offset ({response.headers.get('Content-Range')})")
        start = offset if resumed else 0
        length = response.headers.get("Content-Length")
        _stream(response, part, start, int(length) if length else None, timeout)


def _stream(response: http.client.HTTPResponse, part: Path, start: int, length: int | None, timeout: float) -> None:
    """Write the body to ``part`` (appending after ``start`` bytes); a short or stalled body is a _Cut."""
    got = 0
    with (
        open(part, "ab" if start else "wb") as out,
        tqdm(
            total=start + length if length is not None else None,
            initial=start,
            unit="B",
            unit_scale=True,
            desc=part.name[: -len(".part")],
        ) as bar,
    ):
        try:
            while block := response.read1(CHUNK):  # what has arrived, so a stall keeps it in the .part
                out.write(block)
                got += len(block)
                bar.update(len(block))
        except TimeoutError:
            raise _Cut(f"no data for {timeout:g} s after {start + got} bytes") from None
        except (OSError, http.client.HTTPException) as err:
            raise _Cut(f"connection lost after {start + got} bytes ({type(err).__name__})") from None
    if length is not None and got < length:
        raise _Cut(f"connection closed after {start + got} of {start + length} bytes")
