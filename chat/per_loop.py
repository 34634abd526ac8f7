"""One object per event loop: a client's pooled connections belong to the loop that opened them.

Daphne, the worker and the tests each run more than one loop in a process (the sync-to-async
bridge, a test's own loop), so a client kept in a module global would be used from the wrong loop.
"""

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """`get()` returns this loop's object, made by `factory` on first use in that loop."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._objects: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        found = self._objects.get(loop)
        if found is None:
            found = self._objects[loop] = self._factory()
        return found
