"""Accounts, mounted at /accounts/: Django's auth views (login, logout, password change) and sign-up."""

from django.urls import include, path

from chat import views

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("signup/", views.signup, name="signup"),
    path("", include("django.contrib.auth.urls")),
]
