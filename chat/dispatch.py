"""Channels' consumer dispatch, without its database connection cleanup before every message.

`AsyncConsumer.dispatch` awaits `aclose_old_connections()` before each handler: a trip to the process's one
thread-sensitive thread, the one every send's database work runs on, so under a burst each message would
queue there twice. The consumers that mix this in touch the database only through
`database_sync_to_async`, which cleans up around each call itself.
"""

from typing import Any

from channels.consumer import get_handler_name


class DispatchWithoutCleanup:
    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
