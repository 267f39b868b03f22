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
