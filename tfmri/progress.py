"""A dependency-free progress bar for long command-line jobs.

On a terminal it redraws one line; otherwise (logs, CI) it prints a line at every
10 % so that logs stay short.
"""

import sys
import time


class ProgressBar:
    def __init__(self, total, unit="items", stream=None, width=30):
        self.total = max(int(total), 0)
        self.unit = unit
        self.stream = stream or sys.stderr
        self.width = width
        self.count = 0
        self.extra = ""
        self.start = time.monotonic()
        self._interactive = getattr(self.stream, "isatty", lambda: False)()
        self._last_decile = -1

    def elapsed(self):
        return time.monotonic() - self.start

    def update(self, increment=1, extra=""):
        self.count += increment
        self.extra = extra
        fraction = self.count / self.total if self.total else 1.0
        if not self._interactive:
            decile = int(fraction * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
        filled = int(self.width * min(fraction, 1.0))
        elapsed = time.monotonic() - self.start
        remaining = elapsed / fraction - elapsed if fraction > 0 else 0.0
        line = (
            f"[{'=' * filled}{'.' * (self.width - filled)}] {self.count}/{self.total} {self.unit}"
            f"  {elapsed:.0f}s elapsed, {remaining:.0f}s left  {extra}"
        )
        if self._interactive:
            self.stream.write("\r" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        if self._interactive:
            self.stream.write("\n")
            self.stream.flush()
