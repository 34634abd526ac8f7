"""Single sign-on against a real OpenID Connect provider: django-oauth-toolkit's, in the small project
tests/oidc_provider/, run as a subprocess on a free loopback port with an RS256 key made here. The browser
is played by two HTTP clients following every redirect: a requests session at the provider, Django's test
client at the app (whose back channel to the provider, the code exchange and the keys, is real HTTP)."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model
from django.test import Client

from chat import sso
from chat.models import OidcIdentity
from tests.harness.ports import free_port, wait_until_answering
from tests.harness.processes import ROOT, Process

pytestmark = pytest.mark.django_db

User = get_user_model()
APP = "http://testserver"
CLIENT_ID, CLIENT_SECRET = "streamchat-test", "a-client-secret-for-tests"
ADA = {"username": "ada", "email": "ada@example.com", "password": "provider-pass-1", "groups": ["Support"]}


@dataclass
class Provider:
    issuer: str
    env: dict[str, str]

    def set_person(self, **person: object) -> None:
        """Create or update a person at the provider (their groups replaced)."""
        provider_script(self.env, {"people": [{**ADA, **person}]})


def provider_script(env: dict[str, str], spec: dict) -> None:
    command = [sys.executable, "-m", "tests.oidc_provider.setup_provider"]
    subprocess.run(command, env=env, cwd=ROOT, input=json.dumps(spec).encode(), check=True, timeout=120)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("oidc-provider")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (home / "key.pem").write_bytes(pem)
    env = {
        **{name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "REDIS_URL")},
        "DJANGO_SETTINGS_MODULE": "tests.oidc_provider.settings",
        "OIDC_PROVIDER_DB": str(home / "provider.sqlite3"),
        "OIDC_PROVIDER_KEY": str(home / "key.pem"),
    }
    migrate = [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"]
    subprocess.run(migrate, env=env, cwd=ROOT, check=True, timeout=120)
    provider_script(
        env,
        {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": f"{APP}/accounts/oidc/callback/",
            "post_logout_redirect_uri": f"{APP}/accounts/login/",
            "people": [ADA],
        },
    )
    port = free_port()
    server = [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload"]
    process = Process(server, Path(home / "provider.log"), env=env)
    issuer = f"http://127.0.0.1:{port}/o"
    try:
        wait_until_answering(f"{issuer}/.well-known/openid-configuration", process)
        yield Provider(issuer=issuer, env=env)
    finally:
        process.stop()


@pytest.fixture
def configured(provider: Provider, settings) -> Provider:
    settings.CHAT_OIDC_ISSUER = provider.issuer
    settings.CHAT_OIDC_CLIENT_ID = CLIENT_ID
    settings.CHAT_OIDC_CLIENT_SECRET = CLIENT_SECRET
    settings.CHAT_OIDC_NAME = "Example ID"
    sso._discovery.cache_clear()
    provider.set_person()  # Ada as ADA says, whatever an earlier test changed
    return provider


class Browser:
    """One person's browser: cookies at the provider (a requests session) and at the app (a test client)."""

    def __init__(self) -> None:
        self.provider = requests.Session()
        self.app = Client()
        self.saw_login_form = False

    def go(self, url: str, *, method: str = "get", data: dict | None = None) -> str:
        """Follow redirects across both sites; the URL of the first page that is not a redirect."""
        url = urljoin(APP, url)
        while True:
            parts = urlsplit(url)
            if url.startswith(APP):
                path = f"{parts.path}?{parts.query}" if parts.query else parts.path
                response = getattr(self.app, method)(path, data or {})
                status, location = response.status_code, response.get("Location")
            else:
                response = self.provider.request(method, url, data=data, allow_redirects=False, timeout=30)
                status, location = response.status_code, response.headers.get("Location")
                if status == 200 and "Provider login" in response.text:
                    return self.sign_in_at_provider(url)
            if status not in (301, 302, 303):
                assert status == 200, (url, status)
                return url.removeprefix(APP)
            url, method, data = urljoin(url, location), "get", None

    def sign_in_at_provider(self, login_url: str, person: dict = ADA) -> str:
        self.saw_login_form = True
        token = self.provider.cookies["provider_csrf"]
        next_url = dict(item.split("=", 1) for item in urlsplit(login_url).query.split("&"))["next"]
        form = {"username": person["username"], "password": person["password"], "csrfmiddlewaretoken": token}
        return self.go(login_url, method="post", data={**form, "next": requests.utils.unquote(next_url)})

    def sign_in(self) -> str:
        return self.go("/accounts/oidc/authenticate/")


def signed_in_user(browser: Browser):
    user_id = browser.app.session.get("_auth_user_id")
    return User.objects.get(pk=user_id) if user_id else None


def test_the_first_login_through_the_provider_creates_the_account_with_its_groups(configured):
    browser = Browser()

    landed = browser.sign_in()

    assert browser.saw_login_form and landed == "/", landed
    user = signed_in_user(browser)
    assert (user.username, user.email) == ("ada", "ada@example.com") and not user.has_usable_password()
    assert list(user.groups.values_list("name", flat=True)) == ["Support"]
    assert OidcIdentity.objects.get(user=user).issuer == configured.issuer
    assert browser.app.get("/").status_code == 200


def test_groups_follow_the_claim_at_every_login_and_the_account_stays_the_same(configured):
    first = Browser()
    first.sign_in()
    account = signed_in_user(first)
    configured.set_person(groups=["Sales", "Reviewers"], email="ada@new.example.com")

    second = Browser()
    second.sign_in()

    assert signed_in_user(second) == account and User.objects.count() == 1
    account.refresh_from_db()
    assert sorted(account.groups.values_list("name", flat=True)) == ["Reviewers", "Sales"]
    assert account.email == "ada@new.example.com"


def test_a_local_account_of_the_same_name_is_never_taken_over(configured):
    local = User.objects.create_user("ada", password="local-password")
    browser = Browser()
    browser.sign_in()
    user = signed_in_user(browser)
    assert user != local and user.username == "ada-2"


def test_logout_ends_the_session_here_and_at_the_provider(configured):
    browser = Browser()
    browser.sign_in()
    response = browser.app.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"].startswith(f"{configured.issuer}/logout/")
    assert "id_token_hint=" in response["Location"]

    landed = browser.go(response["Location"])

    assert landed == "/accounts/login/" and signed_in_user(browser) is None
    assert browser.app.get("/").status_code == 302
    browser.saw_login_form = False
    browser.sign_in()
    assert browser.saw_login_form  # the provider's session ended too: it asks again


def test_the_login_page_offers_the_provider_by_name_when_configured(configured, settings):
    page = Client().get("/accounts/login/").content.decode()
    assert "Sign in with Example ID" in page and 'name="password"' in page
    settings.CHAT_OIDC_CLIENT_ID = ""
    page = Client().get("/accounts/login/").content.decode()
    assert "Sign in with" not in page
    assert Client().get("/accounts/oidc/authenticate/").status_code == 404


def test_password_login_can_be_switched_off(configured, settings):
    User.objects.create_user("local", password="local-password")
    settings.CHAT_PASSWORD_LOGIN = False
    client = Client()
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with Example ID" in page and 'name="password"' not in page and "Sign up" not in page
    refused = client.post("/accounts/login/", {"username": "local", "password": "local-password"})
    assert refused.status_code == 404 and "_auth_user_id" not in client.session
    assert client.get("/accounts/signup/").status_code == 404
    admin_login = client.get("/admin/login/?next=/admin/")
    assert admin_login.status_code == 302 and admin_login["Location"] == "/accounts/login/?next=/admin/"


def test_password_login_still_works_by_default(configured):
    User.objects.create_user("local", password="local-password")
    client = Client()
    response = client.post("/accounts/login/", {"username": "local", "password": "local-password"})
    assert response.status_code == 302 and "_auth_user_id" in client.session
    assert client.post("/accounts/logout/")["Location"] == "/accounts/login/"
