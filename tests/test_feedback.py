"""Feedback on a reply: thumbs up or down with an optional comment, one per user and reply, changed
or removed over the WebSocket (every tab of the user sees it) or HTTP; bad input refused with a code,
writing nothing; shown in the page's data so a reload keeps it."""

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chat import services
from chat.models import Feedback, Message
from tests.engine_fixtures import TEST_MODEL

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine"), pytest.mark.cluster]


@pytest.fixture
def user(make_user):
    return make_user("rater")


@pytest.fixture
def exchange(user):
    """A conversation of the user's with a question and its reply: (conversation, question, reply)."""
    conversation = services.conversation_create(owner=user, model=TEST_MODEL, title="Rated")
    question = Message.objects.create(conversation=conversation, role="user", content="2+2?")
    reply = Message.objects.create(conversation=conversation, parent=question, role="assistant", content="Four.")
    return conversation, question, reply


@pytest.fixture
def client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def url(conversation, message_id) -> str:
    return f"/api/conversations/{conversation.pk}/messages/{message_id}/feedback"


def put(client, conversation, message_id, **body):
    return client.put(url(conversation, message_id), body, content_type="application/json")


def test_a_thumbs_up_with_a_comment_is_stored_and_answered_as_a_feedback_frame(client, user, exchange):
    conversation, _, reply = exchange
    answer = put(client, conversation, reply.pk, rating="up", comment="  Right on.  ")

    assert answer.status_code == 200
    frame = answer.json()
    assert (frame["type"], frame["conversation"], frame["message"]) == ("feedback", conversation.pk, reply.pk)
    assert (frame["feedback"]["rating"], frame["feedback"]["comment"]) == ("up", "Right on.")
    stored = Feedback.objects.get()
    assert (stored.user, stored.message, stored.rating, stored.comment) == (user, reply, "up", "Right on.")


def test_rating_again_changes_the_one_feedback_and_delete_removes_it(client, exchange):
    conversation, _, reply = exchange
    put(client, conversation, reply.pk, rating="up")
    put(client, conversation, reply.pk, rating="down", comment="Wrong after all.")

    assert list(Feedback.objects.values_list("rating", "comment")) == [("down", "Wrong after all.")]
    assert client.delete(url(conversation, reply.pk)).status_code == 204
    assert not Feedback.objects.exists()
    assert client.delete(url(conversation, reply.pk)).status_code == 204  # removing none is the same end state


def test_the_page_and_the_conversation_carry_the_users_feedback_on_each_reply(client, exchange):
    conversation, question, reply = exchange
    put(client, conversation, reply.pk, rating="down", comment="Too short.")

    messages = {m["id"]: m for m in client.get(f"/api/conversations/{conversation.pk}").json()["messages"]}
    assert (
        messages[reply.pk]["feedback"]["rating"] == "down" and messages[reply.pk]["feedback"]["comment"] == "Too short."
    )
    assert "feedback" not in messages[question.pk]
    page = client.get(f"/c/{conversation.pk}/").content.decode()
    assert '"feedback": {"rating": "down", "comment": "Too short."' in page


@pytest.mark.parametrize(
    "body, code",
    [
        ({"rating": "sideways"}, "invalid"),
        ({"rating": None}, "invalid"),
        ({"rating": 1}, "invalid"),
        ({"rating": "up", "comment": 12}, "invalid"),
        ({"rating": "up", "comment": "nul \x00 inside"}, "invalid"),
        ({"rating": "up", "comment": "x" * 2001}, "comment_too_long"),
    ],
)
def test_bad_input_is_refused_with_a_code_and_writes_nothing(client, exchange, body, code):
    conversation, _, reply = exchange
    answer = put(client, conversation, reply.pk, **body)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == code
    assert not Feedback.objects.exists()


def test_feedback_on_a_users_own_message_is_refused(client, exchange):
    conversation, question, _ = exchange
    answer = put(client, conversation, question.pk, rating="up")

    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "not_a_reply")
    assert not Feedback.objects.exists()


def test_another_users_reply_or_conversation_answers_like_a_missing_one(client, make_user, exchange):
    conversation, _, reply = exchange
    theirs = services.conversation_create(owner=make_user("other"), model=TEST_MODEL)
    their_reply = Message.objects.create(conversation=theirs, role="assistant", content="Theirs.")

    for target, message_id in [(theirs, their_reply.pk), (conversation, their_reply.pk), (conversation, 999_999)]:
        answer = put(client, target, message_id, rating="up")
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_found")
        assert client.delete(url(target, message_id)).status_code == 404
    assert not Feedback.objects.exists()


def test_the_comment_limit_is_a_setting(client, exchange, settings):
    settings.CHAT_FEEDBACK_COMMENT_MAX_CHARS = 5
    conversation, _, reply = exchange
    assert (
        put(client, conversation, reply.pk, rating="up", comment="sixsix").json()["error"]["code"] == "comment_too_long"
    )
    assert put(client, conversation, reply.pk, rating="up", comment="five!").status_code == 200


# --- Over the WebSocket: the asking tab gets the answer, a second tab the same frame ---------------


async def test_feedback_over_the_socket_reaches_a_second_tab_and_null_removes_it(connect, user, exchange):
    conversation, _, reply = exchange
    async with connect(user) as first, connect(user) as second:
        for ws in (first, second):
            await ws.send({"type": "subscribe", "conversation": conversation.pk})
            await ws.receive_type("snapshot")

        await first.send(
            {
                "type": "feedback",
                "conversation": conversation.pk,
                "message": reply.pk,
                "rating": "up",
                "comment": "Nice",
            }
        )
        answer = await first.receive_type("feedback")
        seen = await second.receive_type("feedback")
        assert answer == seen and seen["feedback"]["rating"] == "up" and seen["feedback"]["comment"] == "Nice"

        await first.send({"type": "feedback", "conversation": conversation.pk, "message": reply.pk, "rating": None})
        assert (await first.receive_type("feedback"))["feedback"] is None
        assert (await second.receive_type("feedback"))["feedback"] is None
    assert not await database_sync_to_async(Feedback.objects.exists)()


async def test_a_bad_feedback_frame_is_an_error_frame_with_its_code(connect, user, exchange):
    conversation, question, _ = exchange
    async with connect(user) as ws:
        await ws.send({"type": "feedback", "conversation": conversation.pk, "message": question.pk, "rating": "up"})
        error = await ws.receive_type("error")
        assert error["code"] == "not_a_reply"
        await ws.send({"type": "feedback", "conversation": conversation.pk, "message": question.pk})
        assert (await ws.receive_type("error"))["code"] == "invalid"
    assert not await database_sync_to_async(Feedback.objects.exists)()


# --- In the admin: the transcript, the message list's filter, the usage summary ----------------


@pytest.fixture
def admin_client(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "x"))
    return client


@pytest.fixture
def rated(user, make_user, exchange):
    """The exchange's reply rated down with a comment; a second reply, of another model, rated up; a third not rated."""
    conversation, _, reply = exchange
    Message.objects.filter(pk=reply.pk).update(model="fake:echo")
    services.feedback_set(
        user=user, conversation=conversation, message_id=reply.pk, rating="down", comment="<b>Wrong</b>"
    )
    other = Message.objects.create(
        conversation=conversation, parent=reply, role="assistant", content="Five.", model="fake:other"
    )
    services.feedback_set(user=user, conversation=conversation, message_id=other.pk, rating="up")
    unrated = Message.objects.create(conversation=conversation, parent=other, role="assistant", content="Six.")
    return conversation, reply, other, unrated


def test_the_admin_transcript_shows_who_rated_a_reply_and_their_comment(admin_client, rated):
    conversation, *_ = rated
    page = admin_client.get(f"/admin/chat/conversation/{conversation.pk}/change/").content.decode()

    assert (
        '<p class="transcript-feedback transcript-feedback-down"><strong>Feedback:</strong> Thumbs down · rater' in page
    )
    assert '<span class="transcript-feedback-comment">&lt;b&gt;Wrong&lt;/b&gt;</span>' in page
    assert "transcript-feedback-up" in page


@pytest.mark.parametrize(
    "value, expected", [("down", ["reply"]), ("up", ["other"]), ("any", ["reply", "other"]), ("none", ["unrated"])]
)
def test_the_message_list_filters_by_feedback(admin_client, rated, value, expected):
    _, reply, other, unrated = rated
    names = {reply.pk: "reply", other.pk: "other", unrated.pk: "unrated"}
    response = admin_client.get("/admin/chat/message/", {"feedback": value, "role": "assistant"})
    assert sorted(names[m.pk] for m in response.context["cl"].result_list) == sorted(expected)


def test_the_usage_summary_counts_thumbs_per_model(admin_client, rated):
    page = admin_client.get("/admin/chat/conversation/usage/").content.decode()
    table = page[page.index('class="usage-table usage-feedback"') :]
    assert '<th scope="row">fake:echo</th><td>0</td><td>1</td>' in table
    assert '<th scope="row">fake:other</th><td>1</td><td>0</td>' in table
