"""Accounts, mounted at /accounts/: Django's auth views (login, password change), sign-up, logout (here and at
the single sign-on provider) and the OpenID Connect login (chat/sso.py)."""

from django.urls import include, path

from chat import sso, views

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", sso.logout, name="logout"),
    path("signup/", views.signup, name="signup"),
    path("oidc/authenticate/", sso.LoginStart.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", sso.LoginCallback.as_view(), name="oidc_authentication_callback"),
    path("", include("django.contrib.auth.urls")),
]
