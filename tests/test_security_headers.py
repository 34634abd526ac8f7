"""Security headers on every kind of response, CSRF on every state-changing endpoint, and the
production settings: `check --deploy` clean, cookies Secure and HttpOnly."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from chat import services
from chat.middleware import CONTENT_SECURITY_POLICY
from chat.models import Conversation, Message
from tests.engine_fixtures import TEST_MODEL
from tests.review_helpers import join_groups, make_reviewer

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def staff(django_user_model, user):
    """A reviewer of `user`'s group."""
    join_groups(user, ["Reviewed"])
    return make_reviewer(django_user_model.objects.create_user("staff-member", password="pw"), ["Reviewed"])


@pytest.fixture
def conversation(user):
    conversation = services.conversation_create(owner=user, model=TEST_MODEL, title="Mine")
    question = Message.objects.create(conversation=conversation, role="user", content="hi")
    Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content="hello", status="cancelled"
    )
    return conversation


# --- headers ----------------------------------------------------------------------------------------

EXPECTED_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def test_the_policy_is_strict():
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "unsafe-eval" not in CONTENT_SECURITY_POLICY
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/c/{pk}/",
        "/accounts/login/",
        "/accounts/signup/",
        "/api/conversations",
        "/api/conversations/{pk}",
        "/api/conversations/987654",
        "/admin/",
        "/admin/chat/conversation/",
        "/admin/chat/conversation/{pk}/change/",
        "/no-such-page/",
    ],
)
def test_every_kind_of_response_carries_the_security_headers(user, staff, conversation, url):
    client = Client()
    if not url.startswith("/accounts/"):
        client.force_login(staff if url.startswith("/admin") else user)
    response = client.get(url.format(pk=conversation.pk))
    assert response.status_code in {200, 404}, (url, response.status_code)
    for name, value in EXPECTED_HEADERS.items():
        assert response.get(name) == value, (url, name, response.get(name))


async def test_the_sse_stream_carries_the_security_headers(user, conversation):
    from django.test import AsyncClient

    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.get(f"/api/conversations/{conversation.pk}/events")
    await response.streaming_content.aclose()
    for name, value in EXPECTED_HEADERS.items():
        assert response.get(name) == value, name


# --- CSRF -------------------------------------------------------------------------------------------


def _all_views(resolver: URLResolver | None = None):
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            yield from _all_views(entry)
        elif isinstance(entry, URLPattern):
            yield str(entry.pattern), entry.callback


def test_no_view_in_the_project_is_exempt_from_csrf_but_the_bearer_only_api():
    """The OpenAI-compatible API (/v1/) reads no cookie: its only credential is an `Authorization: Bearer`
    header, which a hostile page cannot make a browser send, so CSRF does not apply to it
    (tests/test_api_keys.py: `test_a_logged_in_session_is_not_a_key`)."""
    exempt = [route for route, view in _all_views() if getattr(view, "csrf_exempt", False)]
    assert exempt == ["v1/models", "v1/models/<path:ref>", "v1/chat/completions", "^v1/(?P<path>.*)$"]


STATE_CHANGES = [
    ("post", "/api/conversations", {"title": "new"}),
    ("patch", "/api/conversations/{pk}", {"title": "renamed"}),
    ("delete", "/api/conversations/{pk}", None),
    ("post", "/api/conversations/{pk}/messages", {"client_id": "c1", "content": "hello"}),
    ("post", "/api/conversations/{pk}/regenerate", {"client_id": "c2"}),
    ("post", "/api/conversations/{pk}/edit", {"client_id": "c3", "content": "edited"}),
    ("post", "/api/conversations/{pk}/continue", {"client_id": "c4"}),
    ("post", "/api/conversations/{pk}/cancel", {}),
    ("post", "/accounts/logout/", None),
    (
        "post",
        "/accounts/password_change/",
        {"old_password": "pw", "new_password1": "x" * 20, "new_password2": "x" * 20},
    ),
]


def _state() -> list:
    return [
        *Conversation.objects.order_by("pk").values_list("pk", "title"),
        *Message.objects.order_by("pk").values_list("pk", "status", "content", "superseded_at"),
    ]


def _request(client: Client, method: str, url: str, body, **headers):
    if body is None:
        return getattr(client, method)(url, headers=headers)
    if url.startswith("/api/"):
        return getattr(client, method)(url, json.dumps(body), content_type="application/json", headers=headers)
    return getattr(client, method)(url, body, headers=headers)


@pytest.mark.parametrize(("method", "url", "body"), STATE_CHANGES, ids=[f"{m} {u}" for m, u, _ in STATE_CHANGES])
def test_a_state_change_without_the_csrf_token_is_refused_and_changes_nothing(user, conversation, method, url, body):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/")  # the CSRF cookie, which alone is not enough
    before, password = _state(), user.password
    response = _request(client, method, url.format(pk=conversation.pk), body)
    assert response.status_code == 403
    assert _state() == before
    user.refresh_from_db()
    assert user.password == password
    assert client.get("/api/conversations").status_code == 200, "still logged in"


@pytest.mark.parametrize(("method", "url", "body"), STATE_CHANGES, ids=[f"{m} {u}" for m, u, _ in STATE_CHANGES])
def test_the_same_state_change_with_the_csrf_token_passes_the_check(user, conversation, method, url, body):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/")
    token = client.cookies["csrftoken"].value
    response = _request(client, method, url.format(pk=conversation.pk), body, **{"X-CSRFToken": token})
    assert response.status_code != 403, response.content[:300]


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/accounts/login/", {"username": "someone", "password": "pw"}),
        ("/accounts/signup/", {"username": "fresh", "password1": "x" * 20, "password2": "x" * 20}),
    ],
)
def test_login_and_signup_forms_need_the_csrf_token(url, data, django_user_model):
    client = Client(enforce_csrf_checks=True)
    assert client.post(url, data).status_code == 403
    assert not django_user_model.objects.filter(username="fresh").exists()


@pytest.mark.parametrize("action", ["export_json", "export_markdown", "delete_selected"])
def test_admin_actions_need_the_csrf_token(staff, conversation, action):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    data = {"action": action, "_selected_action": [conversation.pk], "post": "yes"}
    response = client.post("/admin/chat/conversation/", data)
    assert response.status_code == 403 and b"hello" not in response.content


# --- production settings -------------------------------------------------------------------------


def production_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_DEBUG"}}
    env.update(
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="chat.example.com",
        DJANGO_SETTINGS_MODULE="config.settings",
        SQLITE_PATH=str(tmp_path / "production.sqlite3"),
        LOCAL_MODEL_ENABLED="false",
    )
    return env


def test_check_deploy_is_clean_in_production_mode(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=production_env(tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = production_env(tmp_path)
    del env["DJANGO_SECRET_KEY"]
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "DJANGO_SECRET_KEY must be set" in result.stderr


COOKIES_IN_PRODUCTION = """
import json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from django.test import Client
get_user_model().objects.create_user("prod-user", password="a-long-pass-phrase-42")
client = Client(HTTP_HOST="chat.example.com", HTTP_X_FORWARDED_PROTO="https")  # behind the TLS proxy
page = client.get("/accounts/login/")
client.post("/accounts/login/", {"username": "prod-user", "password": "a-long-pass-phrase-42",
            "csrfmiddlewaretoken": client.cookies["csrftoken"].value})
insecure = Client(HTTP_HOST="chat.example.com").get("/accounts/login/")
cookies = {name: {k: bool(client.cookies[name][k]) for k in ("secure", "httponly")} | {"samesite": client.cookies[name]["samesite"]}
           for name in ("sessionid", "csrftoken")}
print(json.dumps({"cookies": cookies, "hsts": page.get("Strict-Transport-Security"),
                  "http": [insecure.status_code, insecure.get("Location")]}))
"""


def test_production_cookies_are_secure_and_http_only_and_http_redirects_to_https(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", COOKIES_IN_PRODUCTION],
        env=production_env(tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("sessionid", "csrftoken"):
        assert report["cookies"][name] == {"secure": True, "httponly": True, "samesite": "Lax"}, name
    assert report["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert report["http"] == [301, "https://chat.example.com/accounts/login/"]
