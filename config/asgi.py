"""The ASGI application: HTTP (pages, JSON API, SSE) and WebSocket; embedded, the in-process worker too."""

import os

import django
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from channels.auth import AuthMiddlewareStack  # noqa: E402 - Django must be set up first
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.api import is_reply_start_path  # noqa: E402
from chat.engine.jobs import with_in_process_worker  # noqa: E402
from chat.middleware import UploadSizeGuard, WebSocketOriginValidator, WebSocketOutageGuard  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from chat.sse import is_stream_path  # noqa: E402


class StreamingASGIHandler(ASGIHandler):
    """Django's handler, but a request that may stream for hours (chat.sse.is_stream_path) is served
    outside its ThreadSensitiveContext: inside one, the request's first sync call (a session load, a
    query) gets a thread of its own, kept until the response ends, so every open stream held a thread.
    Outside it, those brief calls share the process's one sync thread and a stream holds none.

    So is a request that starts a reply (chat.api.is_reply_start_path): its sync work (the session,
    the send's one trip to the database) runs on the thread a WebSocket `send` uses, and a burst of
    200 sends over HTTP makes no thread each (it made 200)."""

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] == "http" and _shares_the_sync_thread(scope.get("path", "")):
            await self.handle(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def _shares_the_sync_thread(path: str) -> bool:
    return is_stream_path(path) or is_reply_start_path(path)


django_asgi_app = StreamingASGIHandler()

application = with_in_process_worker(
    ProtocolTypeRouter(
        {
            "http": UploadSizeGuard(django_asgi_app),
            "websocket": WebSocketOriginValidator(
                WebSocketOutageGuard(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
            ),
        }
    )
)
