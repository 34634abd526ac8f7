from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog

from chat import health, sso

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/login/", sso.admin_login),
    path("admin/", admin.site.urls),
    path("accounts/", include("chat.accounts_urls")),
    # i18n: the language switch (POST, sets the django_language cookie) and the JS catalog, a script
    # from 'self' that defines window.gettext (the CSP needs nothing more).
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("", include("chat.urls")),
]
