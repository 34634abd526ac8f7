"""Search (chat/search.py, chat/services/search_index.py, GET /api/search): ranking, snippets, isolation,
and the index kept in step by the services on send, a reply's end, edit, rename and delete.

Marked for cluster mode: the same tests run on SQLite's FTS5 tables and on PostgreSQL's GIN indexes.
"""

import pytest
from django.db import connection
from django.test import Client

from chat import services
from chat.models import Conversation, Message
from chat.providers.base import StreamResult
from chat.search import search_for, segments
from tests.engine_fixtures import TEST_MODEL
from tests.engine_helpers import finished_reply

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("db", "engine")]


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


def chat(owner, title: str = "", *exchange: tuple[str, str]) -> Conversation:
    """A conversation of finished exchanges (user text, reply text), written through the services."""
    conversation = services.conversation_create(owner=owner, model=TEST_MODEL, title=title)
    for asked, answered in exchange:
        answer(conversation, asked, [("text", answered)])
    return conversation


def answer(conversation: Conversation, asked: str, parts: list[tuple[str, str]]) -> Message:
    return finished_reply(conversation, asked, parts)


def found(user, query: str, **kwargs) -> list[tuple[int, int | None]]:
    return [(hit.conversation_id, hit.message_id) for hit in search_for(user=user, query=query, **kwargs)]


def marked(snippet: list[dict]) -> list[str]:
    return [piece["text"] for piece in snippet if piece["mark"]]


# --- Ranking and snippets --------------------------------------------------------------------------


def test_messages_are_found_by_their_words_and_the_better_match_ranks_first(alice):
    weak = chat(alice, "Shopping", ("a list", "buy bread and a volcano poster"))
    strong = chat(alice, "Geology", ("tell me about volcanoes", "A volcano erupts; volcano lava cools."))

    hits = search_for(user=alice, query="volcano")

    assert [hit.conversation_id for hit in hits][:1] == [strong.pk]
    assert weak.pk in {hit.conversation_id for hit in hits}
    assert all(hit.score > 0 for hit in hits)


def test_a_title_match_lifts_its_conversation_and_a_title_alone_is_a_hit(alice):
    in_text = chat(alice, "Misc", ("what is a quokka", "a small marsupial"))
    in_title = chat(alice, "Quokka facts")

    hits = search_for(user=alice, query="quokka")

    assert [(hit.conversation_id, hit.message_id) for hit in hits][0] == (in_title.pk, None)
    assert marked(hits[0].title_snippet) == ["Quokka"]
    assert in_text.pk in {hit.conversation_id for hit in hits}


def test_every_word_must_match_and_the_last_one_also_as_a_prefix(alice):
    both = chat(alice, "", ("pasta recipes", "boil the pasta with tomatoes"))
    chat(alice, "", ("pasta only", "nothing else here"))

    assert {c for c, _ in found(alice, "pasta tomat")} == {both.pk}
    assert found(alice, "   ") == [] and found(alice, "!!") == []


def test_the_snippet_marks_the_matches_and_keeps_markup_as_plain_text(alice):
    chat(alice, "", ("html?", "the zebra wrote <script>alert(1)</script>"))

    [hit] = search_for(user=alice, query="zebra")

    assert marked(hit.snippet) == ["zebra"]
    assert "<script>alert(1)</script>" in "".join(piece["text"] for piece in hit.snippet)


def test_segments_split_on_the_markers_only():
    assert segments("a \ue000b\ue001 c") == [
        {"text": "a ", "mark": False},
        {"text": "b", "mark": True},
        {"text": " c", "mark": False},
    ]


def test_reasoning_is_searched_only_when_asked(alice):
    conversation = services.conversation_create(owner=alice, model=TEST_MODEL)
    reply = answer(conversation, "think", [("reasoning", "pondering the armadillo"), ("text", "done")])

    assert found(alice, "armadillo") == []
    assert found(alice, "armadillo", reasoning=True) == [(conversation.pk, reply.pk)]


# --- Isolation ------------------------------------------------------------------------------------


def test_another_users_words_and_titles_never_match(alice, bob):
    chat(alice, "Alice's narwhal", ("narwhal secrets", "the narwhal lives north"))
    mine = chat(bob, "Bob", ("hello", "hi"))

    assert found(bob, "narwhal") == []
    assert found(bob, "narwhal", reasoning=True) == []
    assert {c for c, _ in found(bob, "hello")} == {mine.pk}


# --- The index in step with the services ------------------------------------------------------------


def test_a_sent_message_is_found_before_its_reply_ends(alice):
    conversation = services.conversation_create(owner=alice, model=TEST_MODEL)
    sent = services.message_send(
        conversation=conversation, client_id="c1", content="where is the platypus"
    ).user_message

    assert found(alice, "platypus") == [(conversation.pk, sent.pk)]


def test_an_edit_is_found_and_the_branch_it_replaced_still_is(alice):
    conversation = chat(alice, "", ("about the wombat", "wombats dig"))
    original = conversation.messages.get(role="user")
    edited = services.message_edit(conversation=conversation, client_id="e1", content="about the capybara").user_message

    assert found(alice, "capybara") == [(conversation.pk, edited.pk)]
    assert (conversation.pk, original.pk) in found(alice, "wombat")


def test_a_rename_replaces_the_title_in_the_index(alice):
    conversation = chat(alice, "Old pelican title")
    services.conversation_update(conversation=conversation, title="New flamingo title")

    assert found(alice, "pelican") == []
    assert found(alice, "flamingo") == [(conversation.pk, None)]


def test_a_derived_title_is_indexed(alice):
    conversation = chat(alice, "", ("Iguana care basics", "warmth"))

    assert (conversation.pk, None) not in found(alice, "iguana")  # its message matched: one hit, lifted
    assert search_for(user=alice, query="iguana")[0].title_snippet


def test_a_deleted_conversation_leaves_nothing_in_the_index(alice):
    conversation = chat(alice, "Lemur", ("lemur?", "lemur!"))
    services.conversation_delete(conversation=conversation)

    assert found(alice, "lemur") == []
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM chat_message_fts WHERE chat_message_fts MATCH 'lemur'")
            assert cursor.fetchone()[0] == 0
            cursor.execute("SELECT count(*) FROM chat_conversation_fts WHERE rowid = %s", [conversation.pk])
            assert cursor.fetchone()[0] == 0


def test_rebuilding_the_index_finds_what_was_written_past_the_services(alice):
    conversation = chat(alice, "", ("first", "reply"))
    Message.objects.filter(conversation=conversation, role="user").update(content="an ocelot appeared")
    assert found(alice, "ocelot") == []

    services.search_index_rebuild()

    assert len(found(alice, "ocelot")) == 1


def indexed(message: Message) -> list[tuple]:
    """What the index holds for a message: PostgreSQL's two columns, or SQLite's FTS5 rows."""
    if connection.vendor == "postgresql":
        return list(Message.objects.filter(pk=message.pk).values_list("search_vector", "search_reasoning"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT content, reasoning FROM chat_message_fts WHERE rowid = %s", [message.pk])
        return cursor.fetchall()


def test_a_finished_reply_is_indexed_as_a_rebuild_indexes_it_from_the_text_the_worker_held(alice):
    conversation = chat(alice, "Fauna")
    reply = answer(conversation, "think", [("reasoning", "pondering the pangolin"), ("text", "Tapirs swim.")])

    written = indexed(reply)
    services.search_index_rebuild()

    assert written == indexed(reply) and len(written) == 1
    assert found(alice, "tapirs") == [(conversation.pk, reply.pk)]
    assert found(alice, "pangolin") == [] and found(alice, "pangolin", reasoning=True) == [(conversation.pk, reply.pk)]


def test_a_reply_indexed_while_it_streamed_is_found_by_its_final_text_only(alice):
    """A rebuild (`manage.py search_reindex`) while a reply streams indexes its checkpoint; the final
    save replaces that, on SQLite its FTS5 row too: one row, the final words."""
    conversation = chat(alice, "Fauna")
    pending = services.message_send(conversation=conversation, client_id="c-1", content="go").reply
    context = services.generation_begin(message_id=pending.pk, worker_id="test")
    services.generation_checkpoint(
        message_id=pending.pk, parts=[("text", "quokka")], seq=1, lease_holder=context.lease_holder
    )
    services.search_index_rebuild()
    assert found(alice, "quokka") == [(conversation.pk, pending.pk)]

    services.generation_finish(
        message_id=pending.pk,
        seq=2,
        status=Message.Status.COMPLETE,
        result=StreamResult(),
        lease_holder=context.lease_holder,
        parts=[("text", "wombat")],
    )

    assert found(alice, "quokka") == [] and found(alice, "wombat") == [(conversation.pk, pending.pk)]
    assert len(indexed(pending)) == 1


# --- GET /api/search --------------------------------------------------------------------------------


@pytest.fixture
def client(alice, transactional_db) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_the_api_answers_the_users_results_as_json(client, alice):
    conversation = chat(alice, "Trip", ("a trip to <b>Lisbon</b>", "Lisbon is lovely"))

    body = client.get("/api/search", {"q": "lisbon"}).json()

    assert body["query"] == "lisbon"
    assert {hit["conversation"] for hit in body["results"]} == {conversation.pk}
    first = body["results"][0]
    assert set(first) == {"conversation", "title", "message", "role", "score", "snippet", "title_snippet"}
    assert marked(first["snippet"]) == ["Lisbon"]


@pytest.mark.parametrize("params", [{}, {"q": "x" * 201}])
def test_a_missing_or_too_long_query_is_invalid(client, params):
    response = client.get("/api/search", params)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_search_needs_a_login(transactional_db):
    response = Client().get("/api/search", {"q": "x"})

    assert response.status_code == 401
