"""Long commands are never silent: a plain line with rate and ETA every few seconds when piped."""

from __future__ import annotations

import io

from mtlhar.progress import Progress, progress_bar


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_piped_progress_prints_rate_and_eta_every_few_seconds(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("mtlhar.progress.time.monotonic", clock)
    out = io.StringIO()
    p = Progress("train run", 100, stream=out, every=5.0)
    for step in range(1, 101):
        clock.t += 0.5  # 2 steps per second
        p.update(step, f"loss={1 / step:.3f}")
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # one every 5 s over 50 s, and a last one
    assert lines[0] == "train run: 10/100 (10%) 2.00/s, ETA 0:45, 0:05 elapsed  loss=0.100"
    assert lines[-1].startswith("train run: 100/100 (100%) 2.00/s, 0:50 elapsed")


def test_a_short_loop_prints_nothing_and_resumed_counts_only_new_work(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("mtlhar.progress.time.monotonic", clock)
    out = io.StringIO()
    update = progress_bar("caching", stream=out)
    for i in range(1, 4):
        clock.t += 0.1
        update(i, 3)
    assert out.getvalue() == ""
    p = Progress("train", 100, start=50, stream=out, every=1.0)
    clock.t += 2.0
    p.update(60)
    assert "60/100 (60%) 5.00/s, ETA 0:08" in out.getvalue()
