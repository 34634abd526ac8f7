from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import path, re_path

from chat import api, attachments_api, history_api, sse, views
from chat.v1 import views as v1

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("c/<int:pk>/", views.conversation_page, name="conversation"),
    path("api-keys/", views.api_keys, name="api-keys"),
    path("settings/", views.account_settings, name="settings"),
    path("manifest.webmanifest", views.web_app_manifest, name="manifest"),
    path("api/models", api.models, name="api-models"),
    path("api/usage", api.usage, name="api-usage"),
    path("api/conversations", api.conversations, name="api-conversations"),
    path("api/conversations/<int:pk>", api.conversation, name="api-conversation"),
    path("api/conversations/<int:pk>/messages", api.messages, name="api-messages"),
    path("api/conversations/<int:pk>/regenerate", api.regenerate, name="api-regenerate"),
    path("api/conversations/<int:pk>/edit", api.edit, name="api-edit"),
    path("api/conversations/<int:pk>/continue", api.continue_, name="api-continue"),
    path("api/conversations/<int:pk>/switch", api.switch, name="api-switch"),
    path("api/conversations/<int:pk>/cancel", api.cancel, name="api-cancel"),
    path(
        "api/conversations/<int:pk>/attachments",
        attachments_api.conversation_attachments,
        name="api-conversation-attachments",
    ),
    path("api/attachments/<int:pk>", attachments_api.attachment, name="api-attachment"),
    path("api/attachments/<int:pk>/file", attachments_api.attachment_file, name="api-attachment-file"),
    path("api/attachments/<int:pk>/thumbnail", attachments_api.attachment_thumbnail, name="api-attachment-thumbnail"),
    path("api/conversations/<int:pk>/messages/<int:message>/feedback", api.feedback, name="api-feedback"),
    path("s/<str:token>/", views.share_page, name="share"),
    path("s/<str:token>/continue", views.share_continue, name="share-continue"),
    path("api/search", history_api.search_view, name="api-search"),
    path("api/export", history_api.export, name="api-export"),
    path("api/imports", history_api.imports, name="api-imports"),
    path("api/imports/<int:pk>", history_api.import_job, name="api-import"),
    path("api/shares", history_api.shares, name="api-shares"),
    path("api/shares/<int:pk>", history_api.share_detail, name="api-share"),
    path("api/conversations/<int:pk>/share", history_api.share_create, name="api-share-create"),
    path("api/conversations/<int:pk>/events", sse.conversation_stream, name="api-events"),
    re_path(r"^api/(?P<path>.*)$", api.unknown_route, name="api-unknown"),
    path("v1/models", v1.models, name="v1-models"),
    path("v1/models/<path:ref>", v1.model, name="v1-model"),
    path("v1/chat/completions", v1.chat_completions, name="v1-chat-completions"),
    re_path(r"^v1/(?P<path>.*)$", v1.unknown_route, name="v1-unknown"),
]

# Static files (the chat's JS and CSS) when DEBUG is on: Daphne, unlike runserver, serves none itself.
# In production a proxy or WhiteNoise serves STATIC_ROOT and this adds nothing.
urlpatterns += staticfiles_urlpatterns()
