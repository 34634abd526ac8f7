"""A controlled clock for code that takes one (chat.engine.frames.Clock): time moves only when a test says so."""

import asyncio
from collections.abc import Callable


class ManualTimer:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """`time()` is what the test set; `call_at` timers fire, in order, when `advance` passes them."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._timers: list[ManualTimer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object], /) -> ManualTimer:
        timer = ManualTimer(when, callback)
        self._timers.append(timer)
        return timer

    def move(self, seconds: float) -> None:
        """Move time on and fire the timers now due, without letting the tasks they start run yet."""
        self.now += seconds
        due = sorted((t for t in self._timers if t.when <= self.now and not t.cancelled), key=lambda t: t.when)
        self._timers = [t for t in self._timers if t not in due and not t.cancelled]
        for timer in due:
            timer.callback()

    async def advance(self, seconds: float) -> None:
        """Move time on, fire the timers now due, and let the tasks they started run."""
        self.move(seconds)
        for _ in range(3):  # a timer's callback starts a task; that task awaits the live log and the layer
            await asyncio.sleep(0)
