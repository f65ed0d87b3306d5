"""Progress lines written to a file or CI log (no terminal): counts, percent, elapsed, ETA."""

from __future__ import annotations

import io

from morse_exp.progress import Progress


def test_log_lines_every_few_percent_with_whole_counts_and_an_eta():
    stream = io.StringIO()
    progress = Progress("evaluate sweep", 1_164_690, stream=stream, every_percent=25, every_seconds=1e9)
    for _ in range(10):
        progress.update(116_469, "a point done")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4  # at 30 %, 60 %, 90 % (>= 25 % apart) and at the end
    assert lines[0].startswith("evaluate sweep: 349407/1164690 (30%), 0:00 elapsed, ETA ")
    assert lines[-1].startswith("evaluate sweep: 1164690/1164690 (100%)") and lines[-1].endswith("; a point done")
    assert "e+" not in stream.getvalue()
