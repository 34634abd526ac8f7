"""chat/services/conversations.py called directly: create, update, switch, delete, touch, and the title rule."""

from datetime import timedelta

import pytest
from django.utils import timezone

from chat import selectors, services
from chat.errors import ChatError
from chat.models import Conversation, Message
from chat.services.conversations import TITLE_MAX_CHARS, conversation_touch
from tests.engine_fixtures import TEST_MODEL

pytestmark = pytest.mark.usefixtures("db", "engine")

OTHER_MODEL = "openai:gpt-other"


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def conversation(user) -> Conversation:
    return services.conversation_create(owner=user, model=TEST_MODEL, system_prompt="Be brief.", title="Plans")


def refused(code: str, call, **kwargs) -> ChatError:
    with pytest.raises(ChatError) as caught:
        call(**kwargs)
    assert caught.value.code == code, caught.value
    return caught.value


def stored(conversation: Conversation) -> Conversation:
    return Conversation.objects.get(pk=conversation.pk)


# --- conversation_create -------------------------------------------------------------------------


def test_a_new_conversation_takes_the_servers_default_model_and_starts_empty(user):
    conversation = services.conversation_create(owner=user)

    row = stored(conversation)
    assert (row.owner_id, row.model, row.system_prompt, row.title) == (user.pk, TEST_MODEL, "", "")
    assert not row.messages.exists()


def test_a_new_conversation_keeps_the_model_system_prompt_and_title_it_was_given(user):
    conversation = services.conversation_create(owner=user, model=OTHER_MODEL, system_prompt="Be kind.", title="Trip")

    row = stored(conversation)
    assert (row.model, row.system_prompt, row.title) == (OTHER_MODEL, "Be kind.", "Trip")


@pytest.mark.parametrize("model", ["openai:gpt-missing", "gpt-test", "anthropic:claude-sonnet-4-5", "openai:"])
def test_a_model_the_server_does_not_offer_is_refused_as_unknown_model_and_creates_nothing(user, model):
    refused("unknown_model", services.conversation_create, owner=user, model=model)

    assert not Conversation.objects.exists()


@pytest.mark.parametrize("model", [1, 1.5, True, False, 0, ["x"], [], {}, {"ref": TEST_MODEL}])
def test_a_model_that_is_not_a_string_is_refused_as_invalid_and_creates_nothing(user, model):
    error = refused("invalid", services.conversation_create, owner=user, model=model)

    assert "model" in error.message
    assert not Conversation.objects.exists()


def test_a_system_prompt_within_the_message_limit_is_kept(user, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 50

    conversation = services.conversation_create(owner=user, system_prompt="x" * 50)

    assert stored(conversation).system_prompt == "x" * 50


@pytest.mark.parametrize("system_prompt", ["x" * 51, 7, None, ["Be brief."]])
def test_a_system_prompt_too_long_or_not_text_is_refused_as_invalid_and_creates_nothing(user, settings, system_prompt):
    settings.CHAT_MAX_MESSAGE_CHARS = 50

    refused("invalid", services.conversation_create, owner=user, system_prompt=system_prompt)

    assert not Conversation.objects.exists()


def test_a_title_is_cleaned_of_extra_whitespace_and_cut_to_200_characters(user):
    spaced = services.conversation_create(owner=user, title="  Trip \n\t  plans  ")
    long = services.conversation_create(owner=user, title="a" * 300)

    assert stored(spaced).title == "Trip plans"
    assert stored(long).title == "a" * 200


def test_a_title_that_is_not_a_string_is_refused_as_invalid_and_creates_nothing(user):
    refused("invalid", services.conversation_create, owner=user, title=["Trip"])

    assert not Conversation.objects.exists()


# --- conversation_update -------------------------------------------------------------------------


def test_renaming_changes_only_the_title(conversation):
    services.conversation_update(conversation=conversation, title="  New   name ")

    row = stored(conversation)
    assert (row.title, row.model, row.system_prompt) == ("New name", TEST_MODEL, "Be brief.")


def test_switching_the_model_changes_only_the_model(conversation):
    services.conversation_update(conversation=conversation, model=OTHER_MODEL)

    row = stored(conversation)
    assert (row.title, row.model, row.system_prompt) == ("Plans", OTHER_MODEL, "Be brief.")


def test_changing_the_system_prompt_changes_only_the_system_prompt_and_may_clear_it(conversation):
    services.conversation_update(conversation=conversation, system_prompt="")

    row = stored(conversation)
    assert (row.title, row.model, row.system_prompt) == ("Plans", TEST_MODEL, "")


def test_an_update_naming_no_field_writes_nothing(conversation, django_assert_num_queries):
    with django_assert_num_queries(0):
        services.conversation_update(conversation=conversation)


def test_an_update_of_one_field_keeps_what_another_request_changed_in_the_others(conversation):
    stale = stored(conversation)
    services.conversation_update(conversation=conversation, model=OTHER_MODEL)

    services.conversation_update(conversation=stale, title="Renamed")

    row = stored(conversation)
    assert (row.title, row.model) == ("Renamed", OTHER_MODEL)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"title": "Renamed", "model": "openai:gpt-missing"}, "unknown_model"),
        ({"title": "Renamed", "model": 3}, "invalid"),
        ({"model": OTHER_MODEL, "system_prompt": "x" * 51}, "invalid"),
        ({"system_prompt": "New", "title": 42}, "invalid"),
    ],
)
def test_an_update_with_one_bad_field_changes_nothing_at_all(conversation, settings, fields, code):
    settings.CHAT_MAX_MESSAGE_CHARS = 50

    refused(code, services.conversation_update, conversation=conversation, **fields)

    for row in (stored(conversation), conversation):
        assert (row.title, row.model, row.system_prompt) == ("Plans", TEST_MODEL, "Be brief.")


# --- conversation_delete -------------------------------------------------------------------------


def test_deleting_a_conversation_removes_it_and_its_messages(conversation):
    Message.objects.create(conversation=conversation, role="user", content="hi")
    Message.objects.create(conversation=conversation, role="assistant", content="hello")

    services.conversation_delete(conversation=conversation)

    assert not Conversation.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.parametrize("status", ["pending", "streaming"])
def test_a_conversation_is_busy_and_kept_while_a_reply_runs_in_it(conversation, status):
    Message.objects.create(conversation=conversation, role="user", content="hi")
    Message.objects.create(conversation=conversation, role="assistant", status=status)

    refused("busy", services.conversation_delete, conversation=conversation)

    assert Conversation.objects.filter(pk=conversation.pk).exists()
    assert conversation.messages.count() == 2


def test_a_conversation_whose_reply_ended_can_be_deleted(conversation):
    Message.objects.create(conversation=conversation, role="assistant", status="interrupted", content="part")

    services.conversation_delete(conversation=conversation)

    assert not Conversation.objects.exists()


def test_deleting_one_conversation_leaves_the_users_others(user, conversation):
    other = services.conversation_create(owner=user)

    services.conversation_delete(conversation=conversation)

    assert list(Conversation.objects.values_list("pk", flat=True)) == [other.pk]


# --- conversation_touch --------------------------------------------------------------------------


def test_touching_a_conversation_marks_it_active_now_and_first_in_the_sidebar(user, conversation, frozen_now):
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=frozen_now - timedelta(hours=1))
    newer = services.conversation_create(owner=user)
    Conversation.objects.filter(pk=newer.pk).update(updated_at=frozen_now - timedelta(minutes=1))
    stale = stored(conversation)

    conversation_touch(conversation=stale)

    assert stale.updated_at == stored(conversation).updated_at == timezone.now()
    assert [c.pk for c in selectors.conversation_list_for(user=user)] == [conversation.pk, newer.pk]
    assert (stored(conversation).title, stored(conversation).model) == ("Plans", TEST_MODEL)


# --- title_from ----------------------------------------------------------------------------------


def test_a_short_first_message_is_the_title_as_it_is():
    assert services.title_from("Plan a trip to Lisbon") == "Plan a trip to Lisbon"


def test_the_title_is_the_first_line_with_its_whitespace_collapsed():
    assert services.title_from("\n  Plan   a\ttrip  \nwith three stops\nand a budget") == "Plan a trip"


def test_a_title_exactly_at_the_limit_is_kept_whole():
    text = "word " * 11 + "exact"  # 60 characters

    assert len(text) == TITLE_MAX_CHARS
    assert services.title_from(text) == text


def test_a_long_first_line_is_cut_at_the_last_word_that_fits_and_marked_with_an_ellipsis():
    text = "Please help me plan a long weekend trip to Lisbon with my family and our dog"

    title = services.title_from(text)

    assert title == "Please help me plan a long weekend trip to Lisbon with my…"
    assert len(title) <= TITLE_MAX_CHARS + 1


def test_a_word_that_ends_exactly_at_the_limit_is_kept_when_the_line_goes_on():
    first_sixty = "a" * 29 + " " + "b" * 30

    assert services.title_from(first_sixty + " and more") == first_sixty + "…"


def test_a_single_word_longer_than_the_limit_is_cut_at_the_limit():
    assert services.title_from("x" * 100) == "x" * TITLE_MAX_CHARS + "…"


def test_a_message_of_only_whitespace_gives_an_empty_title():
    assert services.title_from(" \n\t ") == ""


# --- conversation_switch -------------------------------------------------------------------------


def turn(conversation: Conversation, parent: Message | None, question: str) -> tuple[Message, Message]:
    """A question under `parent` and its finished answer."""
    asked = Message.objects.create(conversation=conversation, parent=parent, role="user", content=question)
    answer = Message.objects.create(conversation=conversation, parent=asked, role="assistant", content=f"{question}!")
    return asked, answer


def test_switching_to_a_message_shows_the_branch_written_last_below_it(conversation):
    first, first_answer = turn(conversation, None, "A")
    _, old_leaf = turn(conversation, first_answer, "B")
    _, newer_leaf = turn(conversation, first_answer, "B2")
    edited, edited_answer = turn(conversation, None, "A2")

    path = services.conversation_switch(conversation=conversation, message=first.pk)

    assert path.leaf == newer_leaf.pk
    assert [m.content for m in path.messages] == ["A", "A!", "B2", "B2!"]
    assert stored(conversation).current_leaf_id == newer_leaf.pk
    assert services.conversation_switch(conversation=conversation, message=old_leaf.pk).leaf == old_leaf.pk
    assert services.conversation_switch(conversation=conversation, message=edited.pk).leaf == edited_answer.pk


def test_switching_while_a_reply_runs_on_another_branch_leaves_it_running_where_it_is(conversation):
    first, _ = turn(conversation, None, "A")
    edited = Message.objects.create(conversation=conversation, role="user", content="A2")
    running = Message.objects.create(conversation=conversation, parent=edited, role="assistant", status="streaming")

    path = services.conversation_switch(conversation=conversation, message=first.pk)

    assert [m.content for m in path.messages] == ["A", "A!"]
    assert Message.objects.get(pk=running.pk).status == "streaming"
    assert selectors.catch_up_reply_for(conversation_id=conversation.pk) == running


def test_switching_to_a_message_of_another_conversation_is_not_found_and_changes_nothing(user, conversation):
    _, leaf = turn(conversation, None, "A")
    services.conversation_switch(conversation=conversation, message=leaf.pk)
    other = services.conversation_create(owner=user)
    _, foreign = turn(other, None, "Theirs")

    refused("not_found", services.conversation_switch, conversation=conversation, message=foreign.pk)
    refused("invalid", services.conversation_switch, conversation=conversation, message="1")

    assert stored(conversation).current_leaf_id == leaf.pk
