"""channels' test communicators, made safe to wait on several at once.

`channels.testing.ApplicationCommunicator` turns `channels.db.close_old_connections` into a no-op
while a test waits on the application, with a `mock.patch` around each `send_input` and
`receive_output`. Waits that overlap (several sockets followed in one `asyncio.gather`) interleave
those patches, and the last one out "restores" the no-op it found: from then on, for the rest of the
run, no `database_sync_to_async` call hands its connection back, and in cluster mode every thread
that touched the database keeps a connection of the pool. Here the switch is counted instead: off
while any communicator waits, back on when the last wait ends.

"On" is channels' cleanup with one difference: a connection inside a test's wrapping transaction is left
open. That connection's autocommit differs from the settings', which the cleanup takes for a broken
connection; SQLite in memory ignored the close, but the tests' database is a file, like production's,
where it would really close the test's connection. Django's test client keeps that connection open
around its requests for the same reason (it disconnects close_old_connections).
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import channels.db
from asgiref.testing import ApplicationCommunicator as AsgirefCommunicator
from channels.testing import application
from django.db import connections


def close_old_connections_outside_test_transactions() -> None:
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


_real_close_old_connections = close_old_connections_outside_test_transactions
_lock = threading.Lock()
_waiting = 0


@contextmanager
def connections_kept_open() -> Iterator[None]:
    """channels' rule while a test waits on the application, counted across overlapping waits."""
    global _waiting
    with _lock:
        _waiting += 1
        channels.db.close_old_connections = application.no_op
    try:
        yield
    finally:
        with _lock:
            _waiting = max(0, _waiting - 1)
            if _waiting == 0:
                channels.db.close_old_connections = _real_close_old_connections


def reset() -> None:
    """Forget waits left by earlier tests' event loops (their tasks may never finish): cleanup on."""
    global _waiting
    with _lock:
        _waiting = 0
        channels.db.close_old_connections = _real_close_old_connections


async def send_input(self: AsgirefCommunicator, message: dict[str, Any]) -> None:
    with connections_kept_open():
        return await AsgirefCommunicator.send_input(self, message)


async def receive_output(self: AsgirefCommunicator, timeout: float = 1) -> dict[str, Any]:
    with connections_kept_open():
        return await AsgirefCommunicator.receive_output(self, timeout)


def install() -> None:
    """Replace channels' patching methods with the counted ones, for every communicator class."""
    application.ApplicationCommunicator.send_input = send_input
    application.ApplicationCommunicator.receive_output = receive_output


def connections_are_closed_again() -> bool:
    """True when no wait holds the switch and database calls hand their connections back."""
    return _waiting == 0 and channels.db.close_old_connections is _real_close_old_connections
