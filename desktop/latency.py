"""Event-loop latency probe: a 10 ms QTimer that records how late each tick arrives.

A stall is the gap between two ticks minus the timer interval: the time the UI thread was busy
and could not repaint or react to input. Use it in tests and benchmarks::

    probe = LatencyProbe(); probe.start()
    ...  # drive the app
    probe.stop(); print(probe.summary())
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt, QTimer


@dataclass(frozen=True)
class LatencySummary:
    ticks: int
    seconds: float
    max_stall_ms: float
    p99_stall_ms: float
    stalls_over_50ms: int

    def __str__(self) -> str:
        return (
            f"{self.ticks} ticks over {self.seconds:.1f} s: max stall {self.max_stall_ms:.1f} ms, "
            f"p99 {self.p99_stall_ms:.1f} ms, {self.stalls_over_50ms} stalls > 50 ms"
        )


class LatencyProbe(QObject):
    def __init__(
        self,
        interval_ms: int = 10,
        parent: QObject | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ):
        super().__init__(parent)
        self.interval_ms = interval_ms
        self._clock = clock  # seconds
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last: float | None = None
        self._started = 0.0
        self._stopped: float | None = None
        self.stalls_ms: list[float] = []

    def start(self) -> None:
        self.stalls_ms = []
        self._started = self._last = self._clock()
        self._stopped = None
        self._timer.start()

    def stop(self) -> LatencySummary:
        self._timer.stop()
        self._tick()
        self._stopped = self._clock()
        return self.summary()

    def _tick(self) -> None:
        now = self._clock()
        if self._last is not None:
            self.stalls_ms.append(max(0.0, (now - self._last) * 1000.0 - self.interval_ms))
        self._last = now

    @property
    def max_stall_ms(self) -> float:
        return max(self.stalls_ms, default=0.0)

    def summary(self) -> LatencySummary:
        stalls = sorted(self.stalls_ms)
        p99 = stalls[min(len(stalls) - 1, int(0.99 * len(stalls)))] if stalls else 0.0
        end = self._stopped or self._clock()
        return LatencySummary(
            ticks=len(stalls),
            seconds=end - self._started,
            max_stall_ms=stalls[-1] if stalls else 0.0,
            p99_stall_ms=p99,
            stalls_over_50ms=sum(1 for s in stalls if s > 50.0),
        )


class StallWatchdog:
    """Diagnosis: a plain thread that, whenever the UI thread's heartbeat is late, records what
    every thread is running (Python stacks). Use with a :class:`LatencyProbe` or on its own::

        dog = StallWatchdog(); dog.start(); ...; dog.stop(); print(dog.report())
    """

    def __init__(self, threshold_ms: float = 40.0, depth: int = 6):
        import collections
        import threading

        self.threshold = threshold_ms / 1000.0
        self.depth = depth
        self.samples: collections.Counter[str] = collections.Counter()
        self._beat = time.perf_counter()
        self._main = threading.get_ident()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._timer = QTimer()
        self._timer.setInterval(5)
        self._timer.timeout.connect(self._heartbeat)

    def _heartbeat(self) -> None:
        self._beat = time.perf_counter()

    def start(self) -> None:
        import threading

        self._beat = time.perf_counter()
        self._timer.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._timer.stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        import sys
        import threading
        import traceback
        from pathlib import Path

        me = threading.get_ident()
        names = {}
        while not self._stop.wait(0.01):
            if time.perf_counter() - self._beat < self.threshold:
                continue
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                stack = traceback.extract_stack(frame)[-self.depth :][::-1]
                where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in stack)
                who = "UI" if ident == self._main else names.get(ident, str(ident))
                self.samples[f"[{who}] {where}"] += 1

    def report(self, top: int = 20) -> str:
        return "\n".join(f"{n:4d}  {key}" for key, n in self.samples.most_common(top))
