"""Pin and archive (PATCH /api/conversations/<id>) and the sidebar's pages (GET /api/conversations):
pinned conversations first, archived ones out of the list but in the Archived view and in search,
pages of `limit` after a cursor."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from chat import selectors, services
from chat.models import Conversation
from chat.search import search_for
from tests.engine_fixtures import TEST_MODEL

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]


@pytest.fixture
def user(make_user):
    return make_user("pinner")


@pytest.fixture
def client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def five(user) -> list[Conversation]:
    """Five conversations, the first the oldest, each an hour apart."""
    now = timezone.now()
    made = []
    for number in range(5):
        conversation = services.conversation_create(owner=user, model=TEST_MODEL, title=f"Chat {number} walrus")
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=now - timedelta(hours=5 - number))
        made.append(conversation)
    return made


def listed(client: Client, **params) -> dict:
    response = client.get("/api/conversations", params)
    assert response.status_code == 200, response.content
    return response.json()


def titles(page: dict) -> list[str]:
    return [conversation["title"] for conversation in page["conversations"]]


def patch(client: Client, conversation: Conversation, **body):
    return client.patch(f"/api/conversations/{conversation.pk}", body, content_type="application/json")


def test_a_pinned_conversation_heads_the_list_and_unpinning_puts_it_back(client, five):
    answer = patch(client, five[0], pinned=True).json()

    assert answer["pinned_at"] is not None
    assert titles(listed(client))[:2] == ["Chat 0 walrus", "Chat 4 walrus"]

    patch(client, five[0], pinned=False)
    assert titles(listed(client))[-1] == "Chat 0 walrus"


def test_an_archived_conversation_leaves_the_list_but_not_the_archived_view_or_search(client, user, five):
    answer = patch(client, five[2], archived=True).json()

    assert answer["archived_at"] is not None
    assert "Chat 2 walrus" not in titles(listed(client))
    assert titles(listed(client, archived="1")) == ["Chat 2 walrus"]
    assert five[2].pk in {hit.conversation_id for hit in search_for(user=user, query="walrus")}
    assert client.get(f"/api/conversations/{five[2].pk}").status_code == 200

    patch(client, five[2], archived=False)
    assert "Chat 2 walrus" in titles(listed(client)) and listed(client, archived="1")["conversations"] == []


def test_pages_follow_each_other_to_the_end_without_gaps_or_repeats(client, five):
    patch(client, five[1], pinned=True)
    seen, page = [], listed(client, limit="2")
    seen += titles(page)
    while page["next"]:
        page = listed(client, limit="2", before=page["next"])
        seen += titles(page)

    assert seen == ["Chat 1 walrus", "Chat 4 walrus", "Chat 3 walrus", "Chat 2 walrus", "Chat 0 walrus"]


def test_without_a_limit_every_conversation_but_the_archived_comes_at_once(client, five):
    patch(client, five[3], archived=True)

    page = listed(client)

    assert len(page["conversations"]) == 4 and page["next"] is None


@pytest.mark.parametrize(
    "body", [{"pinned": "yes"}, {"archived": 1}, {"pinned": None, "archived": "true"}], ids=["str", "int", "mixed"]
)
def test_pinned_and_archived_must_be_true_or_false_and_nothing_changes_otherwise(client, five, body):
    response = patch(client, five[0], title="Changed", **body)

    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"
    row = Conversation.objects.get(pk=five[0].pk)
    assert (row.title, row.pinned_at, row.archived_at) == ("Chat 0 walrus", None, None)


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "201"}, {"limit": "x"}, {"before": "garbage"}, {"before": "2024-01-01T00:00:00|1"}],
)
def test_a_bad_limit_or_cursor_is_invalid(client, five, params):
    response = client.get("/api/conversations", params)

    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"


def test_the_page_renders_the_first_page_and_the_cursor_of_the_next(client, five, monkeypatch):
    monkeypatch.setattr(selectors, "SIDEBAR_PAGE", 2)
    monkeypatch.setattr(
        selectors.conversation_sidebar_for, "__kwdefaults__", {"archived": False, "before": None, "limit": 2}
    )

    html = client.get("/").content.decode()

    assert len(re.findall(r'<li class="conv[^"]*" data-id="\d+"', html)) == 2
    assert "Chat 4 walrus" in html and "Chat 2 walrus" not in html
    assert '"sidebar_next": "' in html
