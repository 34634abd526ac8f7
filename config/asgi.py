"""The ASGI application: HTTP (pages, JSON API, SSE) and WebSocket; embedded, the in-process worker too."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - Django must be set up first
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.engine.jobs import with_in_process_worker  # noqa: E402
from chat.middleware import UploadSizeGuard, WebSocketOriginValidator, WebSocketOutageGuard  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

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
