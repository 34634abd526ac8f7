from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import path, re_path

from chat import api, sse, views

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("c/<int:pk>/", views.conversation_page, name="conversation"),
    path("api-keys/", views.api_keys, name="api-keys"),
    path("api/models", api.models, name="api-models"),
    path("api/conversations", api.conversations, name="api-conversations"),
    path("api/conversations/<int:pk>", api.conversation, name="api-conversation"),
    path("api/conversations/<int:pk>/messages", api.messages, name="api-messages"),
    path("api/conversations/<int:pk>/regenerate", api.regenerate, name="api-regenerate"),
    path("api/conversations/<int:pk>/edit", api.edit, name="api-edit"),
    path("api/conversations/<int:pk>/continue", api.continue_, name="api-continue"),
    path("api/conversations/<int:pk>/cancel", api.cancel, name="api-cancel"),
    path("api/conversations/<int:pk>/events", sse.conversation_stream, name="api-events"),
    re_path(r"^api/(?P<path>.*)$", api.unknown_route, name="api-unknown"),
]

# Static files (the chat's JS and CSS) when DEBUG is on: Daphne, unlike runserver, serves none itself.
# In production a proxy or WhiteNoise serves STATIC_ROOT and this adds nothing.
urlpatterns += staticfiles_urlpatterns()
