"""Waiting for a condition in an async test: poll it under a generous deadline, never sleep-then-assert."""

import asyncio
import time
from collections.abc import Awaitable, Callable


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 20, interval: float = 0.1) -> float:
    """Poll an async predicate; returns the seconds it took."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(interval)
    return time.monotonic() - started
