"""Share links (chat/services/shares.py, the /s/<token>/ page, /api/shares): an anonymous reader sees
the snapshot of the shared branch and nothing else, revoked and expired links are 404 like unknown
ones, the owner lists and revokes, and "continue in my account" copies the snapshot."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from chat import services
from chat.models import Conversation, Message, ShareLink
from tests.engine_fixtures import TEST_MODEL
from tests.review_helpers import join_groups, make_reviewer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]


@pytest.fixture
def alice(make_user):
    return make_user("alice-sharer")


@pytest.fixture
def bob(make_user):
    return make_user("bob-reader")


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def conversation(alice) -> Conversation:
    """Two exchanges, the first question edited: the current branch is the edit and its reply."""
    conversation = services.conversation_create(owner=alice, model=TEST_MODEL, title="Trip plans")
    first = Message.objects.create(conversation=conversation, role="user", content="old question")
    Message.objects.create(conversation=conversation, parent=first, role="assistant", content="old answer")
    edited = Message.objects.create(conversation=conversation, role="user", content="Where to go in **May**?")
    reply = Message.objects.create(
        conversation=conversation,
        parent=edited,
        role="assistant",
        content="Try Lisbon.",
        parts=[{"kind": "reasoning", "text": "Spring, mild."}, {"kind": "text", "text": "Try Lisbon."}],
        model=TEST_MODEL,
        provider="openai",
    )
    conversation.current_leaf = reply
    conversation.save()
    return conversation


def shared(client: Client, conversation: Conversation, **body) -> dict:
    response = client.post(f"/api/conversations/{conversation.pk}/share", body, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def page_data(html: str) -> str:
    return re.search(r'<script id="share-data" type="application/json">(.*?)</script>', html, re.S).group(1)


def test_an_anonymous_reader_sees_the_shared_branch_and_no_ids_of_anything(alice, conversation):
    link = shared(logged_in(alice), conversation)

    response = Client().get(link["url"])

    assert response.status_code == 200
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert response["Referrer-Policy"] == "same-origin"
    html = response.content.decode()
    assert '<meta name="robots" content="noindex, nofollow">' in html
    data = page_data(html)
    assert "Where to go in **May**?" in data and "Try Lisbon." in data and "Spring, mild." in data
    assert "old question" not in html and "old answer" not in html
    assert '"id"' not in data and "parent" not in data
    assert alice.username not in html
    assert f"/c/{conversation.pk}/" not in html and "/api/" not in html
    assert 'id="sidebar"' not in html and "conversation-list" not in html
    hrefs = set(re.findall(r'(?:href|action|src)="([^"]+)"', html))
    assert all(h.startswith(("/static/", "/jsi18n/", "#main", f"/s/{link['url'].split('/s/')[1]}")) for h in hrefs), (
        hrefs
    )


def test_the_snapshot_is_the_branch_as_it_was_when_shared(alice, conversation):
    link = shared(logged_in(alice), conversation)
    Message.objects.create(
        conversation=conversation, parent=conversation.current_leaf, role="user", content="a later secret"
    )
    services.conversation_update(conversation=conversation, title="Renamed later")

    html = Client().get(link["url"]).content.decode()

    assert "a later secret" not in html and "Renamed later" not in html
    assert "Trip plans" in html


def test_tokens_are_long_and_random(alice, conversation):
    client = logged_in(alice)
    tokens = {shared(client, conversation)["url"].rstrip("/").rsplit("/", 1)[1] for _ in range(3)}

    assert len(tokens) == 3 and all(len(token) >= 40 for token in tokens)


def test_a_revoked_link_answers_404_like_an_unknown_one(alice, conversation):
    client = logged_in(alice)
    link = shared(client, conversation)

    assert client.delete(f"/api/shares/{link['id']}").status_code == 204

    revoked, unknown = Client().get(link["url"]), Client().get("/s/no-such-token-at-all/")
    assert revoked.status_code == unknown.status_code == 404
    assert revoked.content == unknown.content
    assert Client().post(link["url"] + "continue").status_code == 404


def test_an_expired_link_answers_404(alice, conversation):
    link = shared(logged_in(alice), conversation, expires_in_days=1)
    assert Client().get(link["url"]).status_code == 200

    ShareLink.objects.filter(pk=link["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert Client().get(link["url"]).status_code == 404


@pytest.mark.parametrize("days", [0, 366, -1, 1.5, "7", True])
def test_an_expiry_that_is_not_1_to_365_days_is_refused_and_creates_nothing(alice, conversation, days):
    response = logged_in(alice).post(
        f"/api/conversations/{conversation.pk}/share", {"expires_in_days": days}, content_type="application/json"
    )

    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"
    assert not ShareLink.objects.exists()


def test_an_empty_conversation_has_nothing_to_share(alice):
    empty = services.conversation_create(owner=alice, model=TEST_MODEL)

    response = logged_in(alice).post(f"/api/conversations/{empty.pk}/share", {}, content_type="application/json")

    assert response.status_code == 400 and not ShareLink.objects.exists()


def test_the_owner_lists_their_links_and_nobody_else_sees_or_revokes_them(alice, bob, conversation):
    link = shared(logged_in(alice), conversation)

    mine = logged_in(alice).get("/api/shares").json()["shares"]
    theirs = logged_in(bob).get("/api/shares").json()["shares"]
    bobs_revoke = logged_in(bob).delete(f"/api/shares/{link['id']}")
    bobs_share = logged_in(bob).post(f"/api/conversations/{conversation.pk}/share", {}, content_type="application/json")

    assert [item["id"] for item in mine] == [link["id"]] and mine[0]["revoked_at"] is None
    assert theirs == []
    assert bobs_revoke.status_code == 404 and bobs_share.status_code == 404
    assert Client().get(link["url"]).status_code == 200


@pytest.mark.cluster
def test_continue_in_my_account_copies_the_snapshot_into_a_new_conversation_of_the_reader(alice, bob, conversation):
    link = shared(logged_in(alice), conversation)

    response = logged_in(bob).post(link["url"] + "continue")

    copy = Conversation.objects.get(owner=bob)
    assert response.status_code == 302 and response["Location"] == f"/c/{copy.pk}/"
    messages = list(copy.messages.order_by("id"))
    assert [(m.role, m.content) for m in messages] == [
        ("user", "Where to go in **May**?"),
        ("assistant", "Try Lisbon."),
    ]
    assert messages[1].parent_id == messages[0].pk and copy.current_leaf_id == messages[1].pk
    assert messages[1].reasoning == "Spring, mild."
    assert copy.title == "Trip plans"
    assert Conversation.objects.filter(owner=alice).count() == 1


def test_continue_when_logged_out_asks_to_log_in_first(alice, conversation):
    link = shared(logged_in(alice), conversation)

    response = Client().post(link["url"] + "continue")

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=/s/")
    assert Conversation.objects.count() == 1


def test_deleting_the_conversation_deletes_its_links(alice, conversation):
    link = shared(logged_in(alice), conversation)

    services.conversation_delete(conversation=conversation)

    assert Client().get(link["url"]).status_code == 404 and not ShareLink.objects.exists()


def test_staff_see_shares_in_the_admin(alice, conversation, django_user_model):
    shared(logged_in(alice), conversation)
    staff = make_reviewer(django_user_model.objects.create_user("staff", password="pw"), ["Travel"])
    join_groups(alice, ["Travel"])

    response = logged_in(staff).get("/admin/chat/sharelink/")

    assert response.status_code == 200 and "Trip plans" in response.content.decode()
