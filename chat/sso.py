"""Single sign-on with OpenID Connect (mozilla-django-oidc), configured from CHAT_OIDC_* settings.

The endpoints come from the variables, else from the issuer's discovery document (read once, then
cached). An account is matched by the provider's `sub` (OidcIdentity), created on first login, and its
groups set from CHAT_OIDC_GROUPS_CLAIM at every login. Logging out also ends the provider's session
when it offers RP-initiated logout (`end_session_endpoint`).
"""

import functools
import logging
from typing import Any
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AbstractBaseUser, Group
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django.views.decorators.http import require_POST
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from chat.models import OidcIdentity

logger = logging.getLogger(__name__)

# mozilla-django-oidc's setting -> ours, or the discovery document's key when ours is empty.
CLIENT_SETTINGS = {
    "OIDC_RP_CLIENT_ID": "CHAT_OIDC_CLIENT_ID",
    "OIDC_RP_CLIENT_SECRET": "CHAT_OIDC_CLIENT_SECRET",
    "OIDC_RP_SCOPES": "CHAT_OIDC_SCOPES",
    "OIDC_RP_SIGN_ALGO": "CHAT_OIDC_SIGN_ALGO",
    "OIDC_TIMEOUT": "CHAT_OIDC_TIMEOUT",
}
ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": ("CHAT_OIDC_AUTHORIZATION_ENDPOINT", "authorization_endpoint"),
    "OIDC_OP_TOKEN_ENDPOINT": ("CHAT_OIDC_TOKEN_ENDPOINT", "token_endpoint"),
    "OIDC_OP_USER_ENDPOINT": ("CHAT_OIDC_USERINFO_ENDPOINT", "userinfo_endpoint"),
    "OIDC_OP_JWKS_ENDPOINT": ("CHAT_OIDC_JWKS_ENDPOINT", "jwks_uri"),
    "OIDC_OP_LOGOUT_ENDPOINT": ("CHAT_OIDC_LOGOUT_ENDPOINT", "end_session_endpoint"),
}
FIXED = {
    "OIDC_USE_PKCE": True,
    "OIDC_USE_NONCE": True,
    "OIDC_STORE_ID_TOKEN": True,  # the id_token_hint of the provider's logout
    "OIDC_CREATE_USER": True,
    "LOGIN_REDIRECT_URL_FAILURE": "/accounts/login/?sso=failed",
}


def sso_enabled() -> bool:
    return bool(settings.CHAT_OIDC_CLIENT_ID and (settings.CHAT_OIDC_ISSUER or settings.CHAT_OIDC_TOKEN_ENDPOINT))


@functools.cache
def _discovery(issuer: str) -> dict[str, Any]:
    url = f"{issuer}/.well-known/openid-configuration"
    response = requests.get(url, timeout=settings.CHAT_OIDC_TIMEOUT)
    response.raise_for_status()
    return response.json()


def oidc_setting(attr: str, *default: Any) -> Any:
    """mozilla-django-oidc's settings, read from ours (so they can change without a restart in tests)."""
    if attr in FIXED:
        return FIXED[attr]
    if attr in CLIENT_SETTINGS:
        return getattr(settings, CLIENT_SETTINGS[attr])
    if attr in ENDPOINTS:
        ours, key = ENDPOINTS[attr]
        value = getattr(settings, ours) or (
            settings.CHAT_OIDC_ISSUER and _discovery(settings.CHAT_OIDC_ISSUER).get(key)
        )
        return value or (default[0] if default else "")
    return import_from_settings(attr, *default)


def issuer() -> str:
    return settings.CHAT_OIDC_ISSUER or oidc_setting("OIDC_OP_TOKEN_ENDPOINT")


class PasswordBackend(ModelBackend):
    """Django's username and password, unless CHAT_PASSWORD_LOGIN is off (sessions and permissions still work)."""

    def authenticate(self, request: HttpRequest | None, **credentials: Any) -> AbstractBaseUser | None:
        if not settings.CHAT_PASSWORD_LOGIN:
            return None
        return super().authenticate(request, **credentials)


class OidcBackend(OIDCAuthenticationBackend):
    """The provider's code flow; accounts by `sub`, groups from the claim. Settings are read when used."""

    get_settings = staticmethod(oidc_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # the library reads every setting here: not yet
        self.UserModel = get_user_model()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("OIDC_"):
            return oidc_setting(name, None)
        raise AttributeError(name)

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> AbstractBaseUser | None:
        if not sso_enabled() or request is None or "code" not in request.GET:
            return None
        return super().authenticate(request, **kwargs)

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return bool(claims.get("sub"))

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        return self.UserModel.objects.filter(oidc_identities__issuer=issuer(), oidc_identities__subject=claims["sub"])

    def create_user(self, claims: dict[str, Any]) -> AbstractBaseUser:
        with transaction.atomic():
            user = self.UserModel.objects.create_user(_free_username(claims), email=claims.get("email", ""))
            user.set_unusable_password()
            user.save(update_fields=["password"])
            OidcIdentity.objects.create(user=user, issuer=issuer(), subject=claims["sub"])
        return self.update_user(user, claims)

    def update_user(self, user: AbstractBaseUser, claims: dict[str, Any]) -> AbstractBaseUser:
        if claims.get("email") and user.email != claims["email"]:
            user.email = claims["email"]
            user.save(update_fields=["email"])
        groups_sync(user=user, claims=claims)
        return user


def _free_username(claims: dict[str, Any]) -> str:
    """The provider's name for the person, made unique here (a local account may already have it)."""
    wanted = (claims.get("preferred_username") or claims.get("email", "").split("@")[0] or claims["sub"])[:140]
    taken = set(get_user_model().objects.filter(username__startswith=wanted).values_list("username", flat=True))
    candidate, number = wanted, 1
    while candidate in taken:
        number += 1
        candidate = f"{wanted}-{number}"
    return candidate


def groups_sync(*, user: AbstractBaseUser, claims: dict[str, Any]) -> None:
    """The user's groups become exactly those the groups claim names (created if missing)."""
    claim = settings.CHAT_OIDC_GROUPS_CLAIM
    if not claim or claim not in claims:
        return
    names = claims[claim] if isinstance(claims[claim], list) else [claims[claim]]
    names = sorted({str(name)[:150] for name in names if str(name).strip()})
    user.groups.set([Group.objects.get_or_create(name=name)[0] for name in names])


class SsoDisabledMixin:
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not sso_enabled():
            raise Http404("Single sign-on is not configured on this server.")
        return super().dispatch(request, *args, **kwargs)


class LoginStart(SsoDisabledMixin, OIDCAuthenticationRequestView):
    """Sends the browser to the provider's login."""

    get_settings = staticmethod(oidc_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        self.OIDC_OP_AUTH_ENDPOINT = oidc_setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
        self.OIDC_RP_CLIENT_ID = oidc_setting("OIDC_RP_CLIENT_ID")
        return super().get(request)


class LoginCallback(SsoDisabledMixin, OIDCAuthenticationCallbackView):
    """Where the provider sends the browser back: the code is exchanged, the account found or made."""

    get_settings = staticmethod(oidc_setting)


def provider_logout_url(request: HttpRequest) -> str | None:
    """The provider's RP-initiated logout for this session, coming back to our login page; None if it has none."""
    endpoint = oidc_setting("OIDC_OP_LOGOUT_ENDPOINT") if sso_enabled() else ""
    id_token = request.session.get("oidc_id_token")
    if not endpoint or not id_token:
        return None
    back = request.build_absolute_uri(reverse("login"))
    query = {"id_token_hint": id_token, "post_logout_redirect_uri": back, "client_id": settings.CHAT_OIDC_CLIENT_ID}
    return f"{endpoint}?{urlencode(query)}"


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's login form, or with CHAT_PASSWORD_LOGIN off the site's login page (single sign-on)."""
    from django.contrib import admin

    if settings.CHAT_PASSWORD_LOGIN:
        return admin.site.login(request)
    return redirect_to_login(request.GET.get("next", reverse("admin:index")))


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    """Log out here, and at the provider too when this session signed in through it and it allows that."""
    at_provider = provider_logout_url(request)
    auth_logout(request)
    return HttpResponseRedirect(at_provider or resolve_url(settings.LOGOUT_REDIRECT_URL))
