"""Staff review of the API: every user's keys (never a key itself) with a revoke action, and API calls'
conversations filtered by source and by key."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from chat import services
from chat.errors import ChatError
from chat.models import ApiKey, Conversation

pytestmark = [pytest.mark.django_db, pytest.mark.cluster]

User = get_user_model()
KEYS = reverse("admin:chat_apikey_changelist")
CONVERSATIONS = reverse("admin:chat_conversation_changelist")


@pytest.fixture
def staff_client() -> Client:
    """A superuser: they review every user (a scoped reviewer's view is tests/test_review_scopes.py)."""
    client = Client()
    client.force_login(User.objects.create_superuser("staff", password="pw"))
    return client


def api_conversation(key: ApiKey, title: str) -> Conversation:
    return Conversation.objects.create(
        owner=key.user, model="openai:gpt-4o", title=title, source="api", api_key=key, api_key_name=key.name
    )


def listed(response) -> list:
    return list(response.context["cl"].result_list)


def test_staff_see_every_users_keys_by_prefix_never_the_key(staff_client):
    made = services.api_key_create(user=User.objects.create_user("alice"), name="alice's laptop")
    page = staff_client.get(KEYS).content.decode()
    assert "alice&#x27;s laptop" in page and f"{made.api_key.prefix}…" in page
    detail = staff_client.get(reverse("admin:chat_apikey_change", args=[made.api_key.pk])).content.decode()
    for text in (page, detail):
        assert made.secret not in text and made.api_key.digest not in text


def test_staff_revoke_keys_with_the_admin_action(staff_client):
    made = services.api_key_create(user=User.objects.create_user("alice"), name="k")
    answer = staff_client.post(KEYS, {"action": "revoke", "_selected_action": [made.api_key.pk]}, follow=True)
    assert answer.status_code == 200
    made.api_key.refresh_from_db()
    assert made.api_key.revoked_at is not None
    with pytest.raises(ChatError):
        services.api_key_authenticate(secret=made.secret)


def test_members_see_no_keys(client):
    client.force_login(User.objects.create_user("member", password="pw"))
    assert client.get(KEYS).status_code == 302


def test_conversations_filter_by_source_and_by_key(staff_client):
    alice = User.objects.create_user("alice")
    one = services.api_key_create(user=alice, name="one").api_key
    two = services.api_key_create(user=alice, name="two").api_key
    chat = Conversation.objects.create(owner=alice, model="openai:gpt-4o", title="typed in the chat")
    by_one, by_two = api_conversation(one, "call one"), api_conversation(two, "call two")
    assert set(listed(staff_client.get(CONVERSATIONS, {"source__exact": "api"}))) == {by_one, by_two}
    assert listed(staff_client.get(CONVERSATIONS, {"source__exact": "chat"})) == [chat]
    assert listed(staff_client.get(CONVERSATIONS, {"api_key": str(two.pk)})) == [by_two]
    page = staff_client.get(CONVERSATIONS).content.decode()
    assert "API · one" in page and "API · two" in page
