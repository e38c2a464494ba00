"""Progress of long loops: a rich bar on a terminal, a plain line with rate and ETA when piped.

Used by the CLI and by library entry points that report progress (`mtlhar.demo`, the trainer); it imports
nothing from either, so both can use it. When the output is not a terminal (a log file, CI, `| tee`),
a line `label: done/total (pct) rate/s, ETA m:ss  extra` is printed every `every` seconds, and once at
the end if any line was printed, so a short loop prints nothing and a long one is never silent.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """`update(done, extra="")` as work advances, `close()` at the end (also after an error)."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        start: int = 0,
        stream: IO[str] | None = None,
        every: float = 5.0,
        enabled: bool = True,
    ):
        self.label, self.total, self.every = label, total, every
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.bar = None
        self.start_done, self.done, self.extra = start, start, ""
        self.t0 = self.last = time.monotonic()
        self.printed = False
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[extra]}"),
                console=Console(file=self.stream),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(label, total=total, completed=start, extra="")

    def update(self, done: int, extra: str = "") -> None:
        self.done, self.extra = done, extra
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=done, extra=extra)
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line(now)

    def line(self) -> str:
        """The plain progress line as it reads now."""
        return self._text(time.monotonic())

    def _text(self, now: float) -> str:
        elapsed = now - self.t0
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = (
            f", ETA {_clock((self.total - self.done) / rate)}" if rate > 0 and self.done < self.total else ""
        )
        speed = f"{rate:.2f}/s" if rate < 10 else f"{rate:.0f}/s"
        text = f"{self.label}: {self.done}/{self.total}{pct} {speed}{eta}, {_clock(elapsed)} elapsed"
        return text + (f"  {self.extra}" if self.extra else "")

    def _line(self, now: float) -> None:
        print(self._text(now), file=self.stream, flush=True)
        self.printed = True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        elif self.enabled and self.printed:
            self._line(time.monotonic())
        self.enabled = False


def progress_bar(
    label: str, *, stream: IO[str] | None = None, every: float = 5.0
) -> Callable[[int, int], None]:
    """A progress callback (done, total) for loops that report that way; it closes itself once
    `done >= total`:

        update = progress_bar("generating clips")
        for i in range(n):
            update(i + 1, n)
    """
    state: dict = {}

    def update(done: int, total: int) -> None:
        if "p" not in state:
            state["p"] = Progress(label, total, stream=stream, every=every)
        state["p"].total = total
        state["p"].update(done)
        if done >= total:
            state["p"].close()

    return update
