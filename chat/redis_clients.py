"""The Redis clients of this process, one per event loop, and the prefix of every key this deployment
writes (several deployments can share a Redis). redis is imported lazily: embedded mode needs none."""

from typing import Any

from django.conf import settings

from chat.per_loop import PerLoop

PROBE_TIMEOUT_SECONDS = 3.0


def key(*parts: object) -> str:
    """A Redis key of this deployment: `<CHAT_REDIS_PREFIX>:<part>:<part>…`."""
    return ":".join([settings.CHAT_REDIS_PREFIX, *map(str, parts)])


def _probe_client() -> Any:
    import redis.asyncio as redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=PROBE_TIMEOUT_SECONDS, socket_connect_timeout=2)


def _log_client() -> Any:
    import redis.asyncio as redis

    # retry_on_error: after a Redis restart, retry once on a fresh connection.
    return redis.Redis.from_url(
        settings.REDIS_URL, health_check_interval=10, retry_on_timeout=True, retry_on_error=[redis.ConnectionError]
    )


# Short timeouts, for the readiness probe and the worker heartbeat: a slow answer is an answer "no".
probe_client: PerLoop[Any] = PerLoop(_probe_client)
# The live log's: it retries a command once through a reconnect.
log_client: PerLoop[Any] = PerLoop(_log_client)
