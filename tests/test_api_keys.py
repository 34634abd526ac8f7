"""API keys: made on the user's page and shown once, stored only as a hash, refused the moment they are
revoked or expire (with no hint which), limited to their models, and never a way into another user's data."""

import logging
import re
from datetime import timedelta

import httpx2 as httpx
import openai
import pytest
from django.apps import apps
from django.test import Client
from django.utils import timezone

from chat import services
from chat.errors import ChatError
from chat.models import ApiKey, Conversation
from chat.services.api_keys import api_key_digest
from tests.engine_fixtures import TEST_MODEL
from tests.fake_upstream import Scenario

pytestmark = [pytest.mark.django_db(transaction=True)]

HI = [{"role": "user", "content": "Hi"}]
PAGE = "/api-keys/"


def every_row_of_every_table() -> str:
    return "\n".join(repr(list(model.objects.values())) for model in apps.get_models())


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def created_key(page: str) -> str:
    found = re.search(r'value="(sc-[^"]+)"', page)
    assert found, "the new key is not on the page"
    return found.group(1)


# --- The page -----------------------------------------------------------------------------------


def test_a_key_made_on_the_page_is_shown_once_and_listed_by_its_prefix_after(make_user, engine):
    browser = logged_in(make_user())
    made = browser.post(PAGE, {"action": "create", "name": "laptop", "expires_in_days": "30"})
    assert made.status_code == 200 and made["Cache-Control"] == "no-store"
    secret = created_key(made.content.decode())
    key = ApiKey.objects.get()
    assert (key.name, key.prefix) == ("laptop", secret[:10])
    assert timedelta(days=29) < key.expires_at - timezone.now() <= timedelta(days=30)
    later = browser.get(PAGE).content.decode()
    assert secret not in later and f"{key.prefix}…" in later


def test_the_create_form_sent_again_by_a_reload_makes_no_second_key(make_user, engine):
    browser = logged_in(make_user())
    nonce = re.search(r'name="nonce" value="([^"]+)"', browser.get(PAGE).content.decode()).group(1)
    form = {"action": "create", "name": "laptop", "nonce": nonce}
    first = browser.post(PAGE, form)

    again = browser.post(PAGE, form).content.decode()

    secret = created_key(first.content.decode())
    assert ApiKey.objects.count() == 1
    assert "This form was already sent" in again and secret not in again
    assert browser.post(PAGE, {**form, "nonce": "another form"}).status_code == 200
    assert ApiKey.objects.count() == 2


def test_the_chat_links_to_the_api_keys_page(make_user, engine):
    assert f'href="{PAGE}"' in logged_in(make_user()).get("/").content.decode()


@pytest.mark.parametrize(
    "fields",
    [
        {"name": ""},
        {"name": "x" * 101},
        {"name": "ok", "expires_in_days": "0"},
        {"name": "ok", "expires_in_days": "soon"},
        {"name": "ok", "allowed_models": ["openai:gpt-nope"]},
    ],
)
def test_bad_input_on_the_page_says_what_is_wrong_and_makes_no_key(make_user, engine, fields):
    answer = logged_in(make_user()).post(PAGE, {"action": "create", **fields})
    assert answer.status_code == 400 and 'class="form-error"' in answer.content.decode()
    assert not ApiKey.objects.exists()


def test_the_page_lists_only_the_users_own_keys_and_cannot_revoke_anothers(make_user, engine):
    owner, other = make_user(), make_user()
    services.api_key_create(user=owner, name="owners key")
    answer = logged_in(other).get(PAGE).content.decode()
    assert "owners key" not in answer
    key = ApiKey.objects.get()
    assert logged_in(other).post(PAGE, {"action": "revoke", "key": str(key.pk)}).status_code == 400
    key.refresh_from_db()
    assert key.revoked_at is None


def test_the_page_needs_a_login(engine):
    assert Client().get(PAGE).status_code == 302


def test_only_the_keys_hash_and_prefix_are_stored(make_user, engine):
    made = services.api_key_create(user=make_user(), name="k")
    stored = ApiKey.objects.values().get()
    assert stored["digest"] == api_key_digest(made.secret) and stored["prefix"] == made.secret[:10]
    assert made.secret not in repr(stored) and made.secret[10:] not in repr(stored)
    assert services.api_key_authenticate(secret=made.secret) == made.api_key


def test_a_revoked_or_expired_key_no_longer_authenticates(make_user, engine):
    revoked = services.api_key_create(user=make_user(), name="r")
    services.api_key_revoke(api_key=revoked.api_key)
    expired = services.api_key_create(user=make_user(), name="e", expires_in_days=1)
    ApiKey.objects.filter(pk=expired.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    for secret in (revoked.secret, expired.secret, "sc-wrong"):
        with pytest.raises(ChatError) as excinfo:
            services.api_key_authenticate(secret=secret)
        assert excinfo.value.code == "invalid_api_key"


# --- Hashing ------------------------------------------------------------------------------------


@pytest.mark.cluster
def test_the_key_is_in_no_database_row_and_no_log(sdk, make_user, upstream, caplog):
    caplog.set_level(logging.DEBUG)
    upstream.script(Scenario.text("Fine."), Scenario.text("Fine again."))
    user = make_user()
    made = logged_in(user).post(PAGE, {"action": "create", "name": "ci"})
    secret = created_key(made.content.decode())
    client = sdk(secret)
    client.chat.completions.create(model=TEST_MODEL, messages=HI)
    list(client.chat.completions.create(model=TEST_MODEL, messages=HI, stream=True))
    with pytest.raises(openai.AuthenticationError):
        sdk(secret + "x").models.list()
    rows, logs = every_row_of_every_table(), caplog.text
    for fragment in (secret, secret[3:], secret[10:], secret[-16:]):
        assert fragment not in rows, "the key is in the database"
        assert fragment not in logs, "the key is in the logs"
    assert ApiKey.objects.get().digest == api_key_digest(secret)
    assert ApiKey.objects.get().last_used_at is not None


# --- Refusals -------------------------------------------------------------------------------------


@pytest.mark.cluster
def test_a_revoked_key_is_refused_at_once(sdk, make_user, upstream):
    upstream.script(Scenario.text("Still fine."))
    user = make_user()
    made = services.api_key_create(user=user, name="soon revoked")
    client = sdk(made.secret)
    client.chat.completions.create(model=TEST_MODEL, messages=HI)
    logged_in(user).post(PAGE, {"action": "revoke", "key": str(made.api_key.pk)})
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=TEST_MODEL, messages=HI)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


@pytest.mark.cluster
def test_wrong_revoked_expired_and_deactivated_keys_get_the_same_401(v1_url, make_user):
    revoked = services.api_key_create(user=make_user(), name="r")
    services.api_key_revoke(api_key=revoked.api_key)
    expired = services.api_key_create(user=make_user(), name="e", expires_in_days=1)
    ApiKey.objects.filter(pk=expired.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    inactive_user = make_user()
    inactive = services.api_key_create(user=inactive_user, name="i")
    inactive_user.is_active = False
    inactive_user.save()
    answers = []
    for secret in ("sc-" + "A" * 43, revoked.secret, expired.secret, inactive.secret):
        answer = httpx.get(f"{v1_url}/models", headers={"Authorization": f"Bearer {secret}"})
        answers.append((answer.status_code, answer.json()))
    assert answers[0][0] == 401
    assert all(answer == answers[0] for answer in answers), answers


def test_only_a_bearer_header_carries_the_key(v1_url, make_user):
    made = services.api_key_create(user=make_user(), name="k")
    attempts = [
        {"headers": {"Authorization": f"Basic {made.secret}"}},
        {"headers": {"X-Api-Key": made.secret}},
        {"params": {"api_key": made.secret}},
        {"cookies": {"api_key": made.secret}},
    ]
    for attempt in attempts:
        assert httpx.get(f"{v1_url}/models", **attempt).status_code == 401, attempt
    assert httpx.get(f"{v1_url}/models", headers={"Authorization": f"Bearer {made.secret}"}).status_code == 200


def test_a_logged_in_session_is_not_a_key(v1_url, make_user):
    session = logged_in(make_user())
    cookie = session.cookies["sessionid"].value
    answer = httpx.get(f"{v1_url}/models", cookies={"sessionid": cookie})
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "invalid_api_key")


@pytest.mark.cluster
def test_a_key_limited_to_some_models_lists_and_uses_only_those(sdk, make_key):
    client = sdk(make_key(allowed_models=["openai:gpt-other"]))
    assert [model.id for model in client.models.list()] == ["openai:gpt-other"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("openai:gpt-test")
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model=TEST_MODEL, messages=HI)


# --- Isolation ----------------------------------------------------------------------------------


@pytest.mark.cluster
def test_another_users_key_never_reaches_this_users_conversations(sdk, make_user, upstream):
    upstream.script(Scenario.text("For Alice."), Scenario.text("For Bob."))
    alice, bob = make_user("alice"), make_user("bob")
    alice_key = services.api_key_create(user=alice, name="alice's").secret
    bob_key = services.api_key_create(user=bob, name="bob's").secret
    sdk(alice_key).chat.completions.create(model=TEST_MODEL, messages=[{"role": "user", "content": "Alice asks"}])
    # Bob sends exactly Alice's conversation, grown by one message: it must not continue hers.
    sdk(bob_key).chat.completions.create(
        model=TEST_MODEL,
        messages=[
            {"role": "user", "content": "Alice asks"},
            {"role": "assistant", "content": "For Alice."},
            {"role": "user", "content": "Bob asks"},
        ],
    )
    alices, bobs = Conversation.objects.get(owner=alice), Conversation.objects.get(owner=bob)
    assert alices.messages.count() == 2 and bobs.messages.count() == 4
    assert "Bob asks" not in logged_in(alice).get("/?source=api").content.decode()
    assert logged_in(bob).get(f"/c/{alices.pk}/").status_code == 404
