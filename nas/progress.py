"""Progress output that stays readable in logs: off a terminal, tqdm refreshes at most every 30 s, one line each."""

from __future__ import annotations

import os
import re
import sys

LOG_INTERVAL_S = 30


class LineStream:
    """A text stream for logs: tqdm's in-place refreshes (carriage returns, cursor-up codes) become whole lines,
    without the blank lines they would leave; other text passes through unchanged."""

    def __init__(self, stream):
        self._stream = stream
        self._at_line_start = True

    def write(self, text: str) -> int:
        text = re.sub(r"\n[ \t]*(?=\n)", "", text.replace("\x1b[A", "").replace("\r", "\n"))
        if self._at_line_start:
            text = text.lstrip("\n")
        if text:
            self._at_line_start = text.endswith("\n")
            self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name):
        return getattr(self._stream, name)


def configure_for_logs() -> None:
    """When stderr is not a terminal: progress bars refresh every LOG_INTERVAL_S seconds (tqdm reads TQDM_*
    variables), and stderr turns each refresh into a line of its own."""
    if sys.stderr.isatty() or isinstance(sys.stderr, LineStream):
        return
    os.environ.setdefault("TQDM_MININTERVAL", str(LOG_INTERVAL_S))
    os.environ.setdefault("TQDM_NCOLS", "110")
    sys.stderr = LineStream(sys.stderr)
