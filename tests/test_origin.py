"""The WebSocket Origin check matches the full origin (scheme, host and port): the request's own origin,
with its host in ALLOWED_HOSTS, or one listed in CSRF_TRUSTED_ORIGINS. Driven through the real ASGI
application; a refused handshake is a close before accept (HTTP 403 on a real server)."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import ApplicationCommunicator

from tests.engine_fixtures import session_cookie_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]


async def handshake(user, *, origin: bytes | None, host: bytes, scheme: str = "ws", headers=()) -> bool:
    """Open a socket as a browser would (scope scheme `ws` or `wss`); True if it was accepted."""
    from config.asgi import application

    sent = [(b"host", host), (b"cookie", await session_cookie_for(user)), *headers]
    if origin is not None:
        sent.append((b"origin", origin))
    scope = {"type": "websocket", "path": "/ws/chat/", "query_string": b"", "headers": sent, "subprotocols": []}
    communicator = ApplicationCommunicator(application, {**scope, "scheme": scheme})
    await communicator.send_input({"type": "websocket.connect"})
    answer = await communicator.receive_output(timeout=10)
    if answer["type"] == "websocket.accept":
        hello = await communicator.receive_output(timeout=10)
        assert '"hello"' in hello["text"]
    else:
        assert answer["type"] == "websocket.close"
    await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
    await communicator.wait(timeout=10)
    return answer["type"] == "websocket.accept"


@pytest.fixture
async def user(make_user):
    return await database_sync_to_async(make_user)()


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        (b"http://127.0.0.1:8000", b"127.0.0.1:8000", "ws"),
        (b"http://localhost", b"localhost", "ws"),
        (b"https://localhost", b"localhost", "wss"),
        (b"http://[::1]:8000", b"[::1]:8000", "ws"),
    ],
)
async def test_a_socket_from_the_pages_own_origin_is_accepted(user, origin, host, scheme):
    assert await handshake(user, origin=origin, host=host, scheme=scheme)


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        (b"http://127.0.0.1:6666", b"127.0.0.1:8000", "ws"),  # another port of the same host
        (b"http://127.0.0.1", b"127.0.0.1:8000", "ws"),  # the default port is another port
        (b"https://localhost", b"localhost", "ws"),  # another scheme
        (b"http://localhost", b"localhost", "wss"),  # a plain-HTTP page talking to the HTTPS site
        (b"https://127.0.0.1:8000", b"127.0.0.1:8000", "ws"),
        (b"http://evil.example", b"evil.example", "ws"),  # same origin, but a host not in ALLOWED_HOSTS
        (b"http://localhost.evil.example", b"localhost", "ws"),
        (b"http://evil.example", b"localhost", "ws"),
        (b"null", b"localhost", "ws"),
        (b"", b"localhost", "ws"),
        (None, b"localhost", "ws"),
    ],
)
async def test_a_socket_from_any_other_origin_is_refused(user, origin, host, scheme):
    assert not await handshake(user, origin=origin, host=host, scheme=scheme)


async def test_an_origin_listed_in_csrf_trusted_origins_is_accepted_exactly(user, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com"]
    assert await handshake(user, origin=b"https://chat.example.com", host=b"127.0.0.1:8000")
    assert not await handshake(user, origin=b"http://chat.example.com", host=b"127.0.0.1:8000")
    assert not await handshake(user, origin=b"https://chat.example.com:8443", host=b"127.0.0.1:8000")


async def test_behind_a_tls_proxy_the_origin_scheme_follows_secure_proxy_ssl_header(user, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = [(b"x-forwarded-proto", b"https")]
    assert await handshake(user, origin=b"https://localhost", host=b"localhost", headers=proxied)
    assert not await handshake(user, origin=b"http://localhost", host=b"localhost", headers=proxied)
