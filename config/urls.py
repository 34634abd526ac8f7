from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("chat.accounts_urls")),
    path("", include("chat.urls")),
]
