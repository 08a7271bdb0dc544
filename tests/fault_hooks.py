"""Faults the training and sweep tests inject, plugged in by import path (``configuration.plugins.Plugin``)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback


class DieOnceAfterStep:
    """``after_checkpoint`` hook of a Ray Train worker: the last rank's process dies once after ``step``'s checkpoint.

    It dies a few seconds after the checkpoint, as a real crash would: Ray Train's controller
    collects reports when it polls the workers (every 2 s by default), and a worker that dies
    before that poll takes its last report with it. ``marker`` remembers that it died.
    """

    def __init__(self, step: int, marker: str):
        self.step, self.marker = step, Path(marker)

    def __call__(self, *, step: int, rank: int, world: int) -> None:
        if step != self.step or rank != world - 1 or self.marker.exists():
            return
        self.marker.write_text("failed once\n")
        time.sleep(5)
        os._exit(1)


class FailAtPoints:
    """``before_trial`` hook of a sweep: a trial whose point matches one of ``points`` raises."""

    def __init__(self, points: list[dict[str, Any]]):
        self.points = points

    def __call__(self, *, point: dict[str, Any]) -> None:
        for failing in self.points:
            if all(point.get(key) == value for key, value in failing.items()):
                raise RuntimeError(f"injected failure for {point} (test hook)")


class InterruptAfter(Callback):
    """A Tune callback: press Ctrl-C (SIGUSR1, which Tune treats alike) once ``count`` trials completed; once per marker.

    Tune pickles its callbacks with the experiment and restores them on resume; the marker
    file keeps the restored copy from interrupting the resumed run.
    """

    def __init__(self, count: int, marker: Path):
        self.count, self.marker, self.completed = count, str(marker), 0

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.completed += 1
        if self.completed >= self.count and not os.path.exists(self.marker):
            Path(self.marker).write_text(f"interrupted after {self.completed} trials\n")
            os.kill(os.getpid(), signal.SIGUSR1)
