"""Progress of long jobs: a tqdm bar on a terminal or in a notebook, short lines in a log.

In a log (stderr not a terminal: CI, ``nohup``) a line is printed at most every
``log_seconds`` and at the end, so that logs stay short.
"""

import sys
import time

from tqdm.auto import tqdm


def live_display(stream=None) -> bool:
    """Whether a bar can redraw in place: a terminal, or a notebook."""
    stream = stream or sys.stderr
    return getattr(stream, "isatty", lambda: False)() or "ipykernel" in sys.modules


class ProgressBar:
    """``total`` items of ``unit``; ``update(increment, extra)`` as they finish.

    ``desc`` labels the bar and its log lines, ``initial`` items are done already, and
    with ``leave=False`` the bar vanishes when closed and a log gets no closing line (the
    caller prints its own summary).
    """

    def __init__(
        self, total, unit="items", stream=None, log_seconds=10.0, desc="", initial=0, leave=True
    ):
        self.total = max(int(total), 0)
        self.unit = unit
        self.stream = stream or sys.stderr
        self.count = initial
        self.start = self.last_line = time.monotonic()
        self.log_seconds = log_seconds
        self.prefix = f"{desc}: " if desc else ""
        self.leave = leave
        self.bar = None
        if live_display(self.stream):
            self.bar = tqdm(
                total=self.total,
                initial=initial,
                desc=desc or None,
                unit=f" {unit}",
                file=self.stream,
                dynamic_ncols=True,
                leave=leave,
            )

    def elapsed(self):
        return time.monotonic() - self.start

    def update(self, increment=1, extra=""):
        self.count += increment
        if self.bar is not None:
            self.bar.update(increment)
            if extra:
                self.bar.set_postfix_str(extra, refresh=False)
            return
        now = time.monotonic()
        closing = self.leave and self.count >= self.total
        if now - self.last_line >= self.log_seconds or closing:
            self.last_line = now
            line = f"{self.prefix}{self.count}/{self.total} {self.unit}, {self.elapsed():.0f} s"
            self.stream.write(f"{line}  {extra}".rstrip() + "\n")
            self.stream.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()
