"""The send path's cost in SQL statements: what one `send` runs on the database thread, from the
conversation's ownership check to its reply stored (chat.actions.start_reply's one trip there).
bench/send_path.py measures the same with its CPU; these pin the counts so no lever silently regresses."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import actions, selectors, services, teams
from chat.models import GroupPolicy, Message
from tests.engine_fixtures import TEST_MODEL

pytestmark = pytest.mark.usefixtures("db", "engine")


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def conversation(user):
    return services.conversation_create(owner=user, model=TEST_MODEL)


def statements(queries: CaptureQueriesContext) -> int:
    """Statements but the savepoints a test's own transaction turns the service's transaction into."""
    return sum(not query["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT")) for query in queries.captured_queries)


def sent(user, conversation, kind: str = "send", **fields) -> tuple[int, services.SendResult]:
    """A start as the WebSocket and HTTP interfaces run it, and the statements it cost."""
    service, _ = actions.REPLY_STARTERS[kind]
    with CaptureQueriesContext(connection) as queries:
        _, result = actions._owned_and_started(user, conversation.pk, service, client_id=uuid.uuid4().hex, **fields)
    assert isinstance(result, services.SendResult), result
    return statements(queries), result


def finished(result: services.SendResult) -> None:
    Message.objects.filter(pk=result.reply.pk).update(status="complete", content="An answer.")


def test_a_first_send_in_a_new_conversation_costs_at_most_nine_statements(user, conversation):
    # Ownership, the start check, the tree, two inserts, the index (in the insert on PostgreSQL), the
    # conversation, its title's index (2 on SQLite).
    count, _ = sent(user, conversation, content="Plan a trip")
    assert count <= 9


def test_a_follow_up_send_costs_at_most_seven_statements(user, conversation):
    finished(sent(user, conversation, content="Plan a trip")[1])
    count, _ = sent(user, conversation, content="And the way back?")
    assert count <= 7


def test_a_repeated_client_id_costs_a_read_of_what_it_created_and_nothing_more(user, conversation):
    service, _ = actions.REPLY_STARTERS["send"]
    first = service(conversation=conversation, client_id="same", content="Plan a trip")
    with CaptureQueriesContext(connection) as queries:
        _, again = actions._owned_and_started(user, conversation.pk, service, client_id="same", content="Plan a trip")
    assert (again.created, again.user_message.pk, again.reply.pk) == (False, first.user_message.pk, first.reply.pk)
    assert statements(queries) <= 6  # ownership, the start check, the message, its reply, its files, the tree


def test_the_group_policies_are_read_once_per_cache_window_not_per_send(user, conversation):
    teams.policies_forget()
    cold, result = sent(user, conversation, content="Plan a trip")
    finished(result)
    warm, _ = sent(user, conversation, content="And the way back?")
    assert cold == warm + 3  # the first send also read its title's index; the policies one more


def test_a_policy_saved_in_this_process_applies_to_the_next_send(user, conversation, make_user):
    from django.contrib.auth.models import Group

    finished(sent(user, conversation, content="Plan a trip")[1])
    group = Group.objects.create(name="strict")
    GroupPolicy.objects.create(group=group, allowed_models=["openai:gpt-other"])
    user.groups.add(group)
    service, _ = actions.REPLY_STARTERS["send"]
    _, refusal = actions._owned_and_started(user, conversation.pk, service, client_id="x", content="Again")
    assert refusal.code == "model_not_allowed"


@pytest.mark.parametrize("kind", ["send", "regenerate", "continue"])
def test_the_tree_a_start_returns_is_the_conversations_tree_as_stored(user, conversation, kind):
    result = sent(user, conversation, content="Plan a trip")[1]
    Message.objects.filter(pk=result.reply.pk).update(status="cancelled", content="A partial answer")
    fields = {"send": {"content": "More"}, "regenerate": {}, "continue": {}}[kind]
    _, again = sent(user, conversation, kind, **fields)
    stored = selectors.tree_for(conversation=conversation)
    assert (again.tree.parents, again.tree.roles, again.tree.children) == (
        stored.parents,
        stored.roles,
        stored.children,
    )
