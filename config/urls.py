from django.contrib import admin
from django.urls import include, path

from chat import health, sso

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/login/", sso.admin_login),
    path("admin/", admin.site.urls),
    path("accounts/", include("chat.accounts_urls")),
    path("", include("chat.urls")),
]
