"""API keys: made on the user's page and shown once, stored only as a hash, revoked there."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from chat import services
from chat.errors import ChatError
from chat.models import ApiKey
from chat.services.api_keys import api_key_digest

pytestmark = [pytest.mark.django_db(transaction=True)]

PAGE = "/api-keys/"


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
