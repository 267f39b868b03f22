"""Progress bars in job logs: one line per update, no carriage-return redraws."""

from __future__ import annotations

import io
import time

from tqdm import tqdm

from bench import utils


def test_bars_write_whole_lines_into_a_log_file(monkeypatch) -> None:
    log = io.StringIO()  # not a tty, like Snakemake's `> {log} 2>&1`
    monkeypatch.setattr(utils.sys, "stderr", log)
    monkeypatch.setattr(utils, "LOG_PROGRESS_INTERVAL_S", 0.0)
    with tqdm(total=3, desc="train", unit="it", **utils.progress_options()) as bar:
        for _ in range(3):
            time.sleep(0.01)
            bar.update(1)
            bar.set_postfix(loss="0.5", refresh=False)
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) >= 2 and all(line.startswith("train:") for line in lines)
    assert "3/3" in lines[-1] and "loss=0.5" in lines[-1]


def test_a_nested_bar_writes_nothing_into_a_log_file(monkeypatch) -> None:
    """A sampler's step bar inside a decode's image bar: in a log, only the outer bar's lines (tqdm's
    cursor-up codes for a nested bar would be control characters in the file)."""
    log = io.StringIO()
    monkeypatch.setattr(utils.sys, "stderr", log)
    monkeypatch.setattr(utils, "LOG_PROGRESS_INTERVAL_S", 0.0)
    with tqdm(total=2, desc="decode", unit="img", **utils.progress_options()) as images:
        for _ in range(2):
            for _ in tqdm(range(3), desc="steps", leave=False, **utils.progress_options(nested=True)):
                time.sleep(0.001)
            images.update(1)
    text = log.getvalue()
    assert "\x1b" not in text and "steps" not in text
    assert "2/2" in text.splitlines()[-1]
