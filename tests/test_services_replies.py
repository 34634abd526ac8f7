"""chat/services/replies.py called directly: send, regenerate, edit, continue, cancel, the queue, the limits."""

import uuid
from datetime import timedelta

import pytest

from chat import limits, selectors, services
from chat.errors import ChatError
from chat.models import Conversation, Message
from chat.prompts import build_request
from chat.providers.base import ModelInfo
from tests.engine_fixtures import TEST_MODEL

pytestmark = pytest.mark.usefixtures("db", "engine")


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def conversation(user) -> Conversation:
    return services.conversation_create(owner=user, model=TEST_MODEL)


def new_id() -> str:
    return uuid.uuid4().hex


def send(conversation: Conversation, content: object = "Plan a trip", client_id: object = None) -> services.SendResult:
    return services.message_send(
        conversation=conversation, client_id=new_id() if client_id is None else client_id, content=content
    )


def ended(reply: Message, status: str = "complete", content: str = "An answer.") -> Message:
    """The reply as its worker leaves it."""
    Message.objects.filter(pk=reply.pk).update(status=status, content=content)
    reply.refresh_from_db()
    return reply


def answered(conversation: Conversation, content: str = "Plan a trip", answer: str = "An answer.") -> Message:
    """A turn that is over: the user's message and its finished reply. Returns the reply."""
    return ended(send(conversation, content).reply, content=answer)


def refused(code: str, call, **kwargs) -> ChatError:
    with pytest.raises(ChatError) as caught:
        call(**kwargs)
    assert caught.value.code == code, caught.value
    return caught.value


def snapshot() -> list[tuple]:
    """Every message row and every conversation's title, to show a refused request wrote nothing."""
    messages = Message.objects.order_by("pk").values_list("pk", "parent_id", "status", "content", "cancel_requested")
    conversations = Conversation.objects.order_by("pk").values_list("pk", "title", "updated_at", "current_leaf_id")
    return [*messages, *conversations]


def visible(conversation: Conversation) -> list[tuple[str, str, str]]:
    """The current branch, root first."""
    conversation.refresh_from_db()
    return [(m.role, m.status, m.content) for m in selectors.path_for(conversation=conversation).messages]


# --- message_send --------------------------------------------------------------------------------


def test_sending_creates_the_users_message_and_a_pending_reply_with_the_conversations_model(conversation):
    result = send(conversation, "Plan a trip to Lisbon", client_id="c-1")

    assert result.created
    user_message = Message.objects.get(pk=result.user_message.pk)
    reply = Message.objects.get(pk=result.reply.pk)
    assert (user_message.role, user_message.status, user_message.content) == (
        "user",
        "complete",
        "Plan a trip to Lisbon",
    )
    assert user_message.client_id == "c-1"
    assert (reply.role, reply.status, reply.content, reply.client_id) == ("assistant", "pending", "", "")
    assert (reply.provider, reply.model) == ("openai", TEST_MODEL)
    assert reply.pk > user_message.pk
    assert list(conversation.messages.values_list("pk", flat=True)) == [user_message.pk, reply.pk]


def test_the_first_message_titles_an_untitled_conversation_and_touches_it(conversation, frozen_now):
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=frozen_now - timedelta(days=1))

    send(conversation, "Plan a trip to Lisbon\nwith three stops")

    row = Conversation.objects.get(pk=conversation.pk)
    assert (row.title, row.updated_at) == ("Plan a trip to Lisbon", frozen_now)


def test_a_send_keeps_the_title_a_conversation_already_has(user):
    conversation = services.conversation_create(owner=user, title="Holidays")

    send(conversation, "Plan a trip to Lisbon")

    assert Conversation.objects.get(pk=conversation.pk).title == "Holidays"


def test_the_same_client_id_again_answers_the_same_messages_and_creates_nothing(conversation):
    first = send(conversation, "Plan a trip", client_id="c-1")
    before = snapshot()

    again = send(conversation, "a different text, sent by a confused client", client_id="c-1")

    assert not again.created
    assert (again.user_message.pk, again.reply.pk) == (first.user_message.pk, first.reply.pk)
    assert again.user_message.content == "Plan a trip"
    assert snapshot() == before


def test_the_same_client_id_is_answered_while_its_reply_runs_and_the_users_limits_are_reached(conversation, settings):
    first = send(conversation, client_id="c-1")
    settings.CHAT_MAX_CONCURRENT_PER_USER = 1
    settings.CHAT_MAX_QUEUED_PER_USER = 1
    settings.CHAT_MESSAGES_PER_MINUTE = 1

    again = send(conversation, client_id="c-1")

    assert (again.created, again.reply.pk) == (False, first.reply.pk)


def test_a_client_id_is_only_unique_within_its_conversation(user, conversation):
    other = services.conversation_create(owner=user)
    first = send(conversation, client_id="c-1")

    second = send(other, client_id="c-1")

    assert second.created
    assert second.reply.pk != first.reply.pk
    assert second.reply.conversation_id == other.pk


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ("", "empty_message"),
        (" \n\t ", "empty_message"),
        ("x" * 101, "message_too_long"),
        (1, "invalid"),
        (None, "invalid"),
        (True, "invalid"),
        (["hello"], "invalid"),
        ({"text": "hello"}, "invalid"),
    ],
)
def test_a_message_that_is_empty_too_long_or_not_text_is_refused_and_writes_nothing(
    conversation, settings, content, code
):
    settings.CHAT_MAX_MESSAGE_CHARS = 100
    answered(conversation)
    before = snapshot()

    refused(code, send, conversation=conversation, content=content)

    assert snapshot() == before


def test_a_message_exactly_at_the_size_limit_is_sent(conversation, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 100

    result = send(conversation, "x" * 100)

    assert Message.objects.get(pk=result.user_message.pk).content == "x" * 100


@pytest.mark.parametrize("client_id", ["", "x" * 65, 7, None, ["c-1"]])
def test_a_client_id_that_is_empty_too_long_or_not_text_is_refused_as_invalid_and_writes_nothing(
    conversation, client_id
):
    with pytest.raises(ChatError) as caught:
        services.message_send(conversation=conversation, client_id=client_id, content="hello")

    assert caught.value.code == "invalid"
    assert not Message.objects.exists()


def test_a_client_id_of_64_characters_is_accepted(conversation):
    assert send(conversation, client_id="x" * 64).created


@pytest.mark.parametrize("status", ["pending", "streaming"])
def test_a_new_message_is_busy_while_a_reply_runs_and_writes_nothing(conversation, status):
    Message.objects.filter(pk=send(conversation).reply.pk).update(status=status)
    before = snapshot()

    refused("busy", send, conversation=conversation)

    assert snapshot() == before


def test_a_send_that_races_another_past_the_start_check_is_busy_and_leaves_no_user_message(conversation, monkeypatch):
    check = limits.reply_start_check

    def another_process_starts_a_reply_right_after_the_check(**kwargs):
        figures = check(**kwargs)
        Message.objects.create(conversation=conversation, role="assistant", status="pending", client_id="theirs")
        return figures

    monkeypatch.setattr(limits, "reply_start_check", another_process_starts_a_reply_right_after_the_check)

    refused("busy", send, conversation=conversation, content="mine")

    assert list(conversation.messages.values_list("client_id", "role")) == [("theirs", "assistant")]


def test_a_message_to_a_conversation_whose_model_is_no_longer_offered_is_refused_and_writes_nothing(conversation):
    Conversation.objects.filter(pk=conversation.pk).update(model="openai:gpt-retired")
    conversation.refresh_from_db()

    refused("unknown_model", send, conversation=conversation)

    assert not Message.objects.exists()


# --- the user's limits ---------------------------------------------------------------------------


def test_one_more_reply_than_may_run_at_once_is_refused_with_a_retry_and_writes_nothing(user, make_user, settings):
    settings.CHAT_MAX_CONCURRENT_PER_USER = 2
    for _ in range(2):
        send(services.conversation_create(owner=user))
    for _ in range(3):  # another user's replies are not counted
        send(services.conversation_create(owner=make_user()))
    third = services.conversation_create(owner=user)
    before = snapshot()

    error = refused("too_many_running", send, conversation=third)

    assert error.retry_after == limits.SLOT_RETRY_AFTER_SECONDS
    assert snapshot() == before


def test_a_reply_that_ended_no_longer_counts_as_running(user, settings):
    settings.CHAT_MAX_CONCURRENT_PER_USER = 1
    answered(services.conversation_create(owner=user))

    assert send(services.conversation_create(owner=user)).created


def test_one_more_reply_than_may_start_in_a_minute_is_refused_until_the_oldest_leaves_the_minute(
    user, conversation, settings, frozen_now
):
    settings.CHAT_MESSAGES_PER_MINUTE = 2
    for seconds_ago in (50, 40):
        reply = answered(conversation)
        Message.objects.filter(pk=reply.pk).update(created_at=frozen_now - timedelta(seconds=seconds_ago))
    before = snapshot()

    error = refused("rate_limited", send, conversation=conversation)

    assert error.retry_after == 10  # the reply of 50 s ago leaves the minute in 10 s
    assert snapshot() == before


def test_a_reply_started_more_than_a_minute_ago_does_not_count_against_the_rate(
    user, conversation, settings, frozen_now
):
    settings.CHAT_MESSAGES_PER_MINUTE = 2
    for seconds_ago in (61, 40):
        reply = answered(conversation)
        Message.objects.filter(pk=reply.pk).update(created_at=frozen_now - timedelta(seconds=seconds_ago))

    assert send(conversation).created


def test_a_user_who_spent_todays_budget_is_refused_until_midnight_utc_and_writes_nothing(
    user, conversation, settings, frozen_now
):
    settings.CHAT_DAILY_TOKEN_BUDGET = 100
    services.usage_add(user_id=user.pk, tokens=100)
    before = snapshot()

    error = refused("budget_exhausted", send, conversation=conversation)

    assert error.retry_after == 3600  # the clock stands at 23:00 UTC
    assert snapshot() == before


def test_tokens_spent_yesterday_or_by_another_user_leave_todays_budget_whole(
    user, make_user, conversation, settings, frozen_now
):
    settings.CHAT_DAILY_TOKEN_BUDGET = 100
    services.usage_add(user_id=user.pk, tokens=1000, day=(frozen_now - timedelta(days=1)).date())
    services.usage_add(user_id=make_user().pk, tokens=1000)
    services.usage_add(user_id=user.pk, tokens=99)

    assert send(conversation).created


def test_one_more_reply_than_may_wait_for_a_free_worker_is_refused_as_queue_full_and_writes_nothing(user, settings):
    settings.CHAT_MAX_QUEUED_PER_USER = 2
    queued = [send(services.conversation_create(owner=user)).reply for _ in range(2)]
    for reply in queued:
        services.reply_mark_queued(message_id=reply.pk)
    third = services.conversation_create(owner=user)
    before = snapshot()

    error = refused("queue_full", send, conversation=third)
    assert error.retry_after == limits.SLOT_RETRY_AFTER_SECONDS
    assert snapshot() == before

    Message.objects.filter(pk=queued[0].pk).update(status="streaming")  # a worker took one: it no longer waits
    assert send(third).created


def test_pending_replies_a_free_worker_is_about_to_take_do_not_fill_the_queue(user, settings):
    settings.CHAT_MAX_QUEUED_PER_USER = 1
    send(services.conversation_create(owner=user))

    assert send(services.conversation_create(owner=user)).created


# --- reply_regenerate ----------------------------------------------------------------------------


def test_regenerating_keeps_the_last_reply_as_a_sibling_and_starts_a_new_one_in_its_place(conversation):
    old = answered(conversation, "Plan a trip", "A first answer.")

    result = services.reply_regenerate(conversation=conversation, client_id="r-1")

    assert result.created and result.user_message is None
    reply = Message.objects.get(pk=result.reply.pk)
    assert (reply.status, reply.client_id, reply.model) == ("pending", "r-1", TEST_MODEL)
    old.refresh_from_db()
    assert old.content == "A first answer."
    assert reply.parent_id == old.parent_id
    assert result.tree.siblings(reply.pk) == [old.pk, reply.pk]
    assert visible(conversation) == [("user", "complete", "Plan a trip"), ("assistant", "pending", "")]


def test_regenerating_with_the_same_client_id_again_answers_the_same_reply(conversation):
    answered(conversation)
    first = services.reply_regenerate(conversation=conversation, client_id="r-1")
    before = snapshot()

    again = services.reply_regenerate(conversation=conversation, client_id="r-1")

    assert (again.created, again.user_message, again.reply.pk) == (False, None, first.reply.pk)
    assert snapshot() == before


def test_regenerating_a_conversation_without_a_reply_is_refused_as_nothing_to_regenerate(conversation):
    refused("nothing_to_regenerate", services.reply_regenerate, conversation=conversation, client_id="r-1")
    Message.objects.create(conversation=conversation, role="user", content="a message left without a reply")

    refused("nothing_to_regenerate", services.reply_regenerate, conversation=conversation, client_id="r-2")

    assert conversation.messages.count() == 1


def test_regenerating_while_the_reply_runs_is_busy_and_writes_nothing(conversation):
    send(conversation)
    before = snapshot()

    refused("busy", services.reply_regenerate, conversation=conversation, client_id="r-1")

    assert snapshot() == before


def test_regenerating_with_a_model_no_longer_offered_is_refused_and_writes_nothing(conversation):
    answered(conversation)
    Conversation.objects.filter(pk=conversation.pk).update(model="openai:gpt-retired")
    conversation.refresh_from_db()
    before = snapshot()

    refused("unknown_model", services.reply_regenerate, conversation=conversation, client_id="r-1")

    assert snapshot() == before


def test_a_regenerate_refused_by_a_full_queue_leaves_the_last_reply_in_the_conversation(user, conversation, settings):
    answered(conversation)
    settings.CHAT_MAX_QUEUED_PER_USER = 1
    services.reply_mark_queued(message_id=send(services.conversation_create(owner=user)).reply.pk)
    before = snapshot()

    refused("queue_full", services.reply_regenerate, conversation=conversation, client_id="r-1")

    assert snapshot() == before


# --- message_edit ------------------------------------------------------------------------------


def test_editing_puts_a_new_last_message_beside_the_old_one_and_answers_the_new_text(conversation):
    answered(conversation, "First question", "First answer.")
    old = answered(conversation, "Second question", "Second answer.")

    result = services.message_edit(conversation=conversation, client_id="e-1", content="Second, better")

    assert result.created
    assert (result.user_message.content, result.user_message.client_id) == ("Second, better", "e-1")
    assert visible(conversation) == [
        ("user", "complete", "First question"),
        ("assistant", "complete", "First answer."),
        ("user", "complete", "Second, better"),
        ("assistant", "pending", ""),
    ]
    assert result.tree.siblings(result.user_message.pk) == [old.parent_id, result.user_message.pk]
    assert Message.objects.get(pk=old.pk).content == "Second answer."


def test_editing_after_a_continued_reply_replaces_the_message_and_every_part_of_its_reply(conversation):
    answered(conversation, "Question", "A stopped ")
    Message.objects.filter(role="assistant").update(status="cancelled")
    ended(services.reply_continue(conversation=conversation, client_id="k-1").reply, content="answer.")

    services.message_edit(conversation=conversation, client_id="e-1", content="Better question")

    assert visible(conversation) == [("user", "complete", "Better question"), ("assistant", "pending", "")]


def test_editing_with_the_same_client_id_again_answers_the_same_messages(conversation):
    answered(conversation)
    first = services.message_edit(conversation=conversation, client_id="e-1", content="Edited")
    before = snapshot()

    again = services.message_edit(conversation=conversation, client_id="e-1", content="Edited")

    assert (again.created, again.user_message.pk, again.reply.pk) == (False, first.user_message.pk, first.reply.pk)
    assert snapshot() == before


def test_editing_a_conversation_without_messages_is_refused_as_nothing_to_regenerate(conversation):
    error = refused(
        "nothing_to_regenerate", services.message_edit, conversation=conversation, client_id="e-1", content="x"
    )

    assert error.message == "There is no message to edit."
    assert not Message.objects.exists()


def test_editing_while_the_reply_runs_is_busy_and_writes_nothing(conversation):
    send(conversation)
    before = snapshot()

    refused("busy", services.message_edit, conversation=conversation, client_id="e-1", content="Edited")

    assert snapshot() == before


@pytest.mark.parametrize(
    ("content", "code"), [("  ", "empty_message"), ("x" * 101, "message_too_long"), (5, "invalid")]
)
def test_an_edit_that_is_empty_too_long_or_not_text_is_refused_and_writes_nothing(
    conversation, settings, content, code
):
    settings.CHAT_MAX_MESSAGE_CHARS = 100
    answered(conversation)
    before = snapshot()

    refused(code, services.message_edit, conversation=conversation, client_id="e-1", content=content)

    assert snapshot() == before


# --- reply_continue ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["cancelled", "interrupted", "failed"])
def test_continuing_a_stopped_reply_keeps_its_text_and_starts_a_reply_under_it(conversation, status):
    stopped = ended(send(conversation, "Question").reply, status=status, content="A partial ")

    result = services.reply_continue(conversation=conversation, client_id="k-1")

    assert result.created and result.user_message is None
    assert (result.reply.status, result.reply.client_id) == ("pending", "k-1")
    assert visible(conversation) == [
        ("user", "complete", "Question"),
        ("assistant", status, "A partial "),
        ("assistant", "pending", ""),
    ]
    assert result.reply.parent_id == stopped.pk


def test_a_reply_stopped_while_still_reasoning_can_be_continued_and_its_reasoning_is_not_sent_back(conversation):
    stopped = ended(send(conversation, "Question").reply, status="cancelled", content="")
    Message.objects.filter(pk=stopped.pk).update(parts=[{"kind": "reasoning", "text": "Let me think about"}])

    result = services.reply_continue(conversation=conversation, client_id="k-1")

    assert result.reply.parent_id == stopped.pk
    history = selectors.history_for(reply=result.reply).messages
    model = ModelInfo.of("openai", "gpt-test", context_tokens=8192)
    request = build_request(conversation=conversation, history=history, model=model, max_output_tokens=64)
    assert [(turn.role, turn.content) for turn in request.turns] == [("user", "Question")]


@pytest.mark.parametrize(
    ("status", "content"),
    [("complete", "A whole answer."), ("failed", ""), ("cancelled", ""), ("pending", ""), ("streaming", "So far")],
)
def test_continuing_a_reply_that_is_whole_empty_or_running_is_refused_as_nothing_to_continue(
    conversation, status, content
):
    ended(send(conversation).reply, status=status, content=content)
    before = snapshot()

    refused("nothing_to_continue", services.reply_continue, conversation=conversation, client_id="k-1")

    assert snapshot() == before


def test_continuing_a_conversation_without_a_reply_is_refused_as_nothing_to_continue(conversation):
    refused("nothing_to_continue", services.reply_continue, conversation=conversation, client_id="k-1")
    Message.objects.create(conversation=conversation, role="user", content="a message left without a reply")

    refused("nothing_to_continue", services.reply_continue, conversation=conversation, client_id="k-2")

    assert conversation.messages.count() == 1


def test_continuing_with_a_model_no_longer_offered_is_refused_and_writes_nothing(conversation):
    stopped = ended(send(conversation).reply, status="interrupted", content="A partial ")
    Message.objects.filter(pk=stopped.pk).update(model="openai:gpt-retired")
    before = snapshot()

    refused("unknown_model", services.reply_continue, conversation=conversation, client_id="k-1")

    assert snapshot() == before


def test_continuing_with_the_same_client_id_again_answers_the_same_reply(conversation):
    ended(send(conversation).reply, status="interrupted", content="A partial ")
    first = services.reply_continue(conversation=conversation, client_id="k-1")

    again = services.reply_continue(conversation=conversation, client_id="k-1")

    assert (again.created, again.reply.pk) == (False, first.reply.pk)


# --- generation_cancel ---------------------------------------------------------------------------


def test_cancelling_a_reply_no_worker_took_yet_cancels_it_here_and_now(conversation):
    reply = send(conversation).reply

    cancelled = services.generation_cancel(conversation=conversation)

    assert cancelled.pk == reply.pk
    row = Message.objects.get(pk=reply.pk)
    assert (row.status, row.cancel_requested, row.finish_reason) == ("cancelled", True, "cancelled")
    assert row.finished_at is not None


def test_cancelling_a_streaming_reply_asks_its_worker_to_stop_and_leaves_it_streaming(conversation):
    reply = send(conversation).reply
    Message.objects.filter(pk=reply.pk).update(status="streaming", content="So far")

    asked = services.generation_cancel(conversation=conversation)

    assert (asked.status, asked.cancel_requested, asked.content) == ("streaming", True, "So far")
    assert asked.finished_at is None


def test_cancelling_when_no_reply_runs_is_refused_as_not_running(conversation):
    refused("not_running", services.generation_cancel, conversation=conversation)
    answered(conversation)
    before = snapshot()

    refused("not_running", services.generation_cancel, conversation=conversation)

    assert snapshot() == before


# --- reply_mark_queued / reply_queue_position / reply_refuse_job ------------------------------------


def test_a_reply_marked_queued_records_when_and_learns_its_place_in_the_queue(make_user, frozen_now):
    ahead = send(services.conversation_create(owner=make_user())).reply
    reply = send(services.conversation_create(owner=make_user())).reply

    assert services.reply_mark_queued(message_id=reply.pk) == 1
    assert (Message.objects.get(pk=reply.pk).queued_at, Message.objects.get(pk=ahead.pk).queued_at) == (
        frozen_now,
        None,
    )


def test_a_reply_a_worker_took_or_that_was_cancelled_is_not_marked_queued(user):
    taken = send(services.conversation_create(owner=user)).reply
    Message.objects.filter(pk=taken.pk).update(status="streaming")
    cancelled = send(services.conversation_create(owner=user)).reply
    services.generation_cancel(conversation=cancelled.conversation)

    assert services.reply_mark_queued(message_id=taken.pk) is None
    assert services.reply_mark_queued(message_id=cancelled.pk) is None
    assert not Message.objects.filter(queued_at__isnull=False).exists()


def test_a_waiting_reply_knows_how_many_replies_of_any_user_wait_ahead_of_it(make_user):
    first, second, third = (send(services.conversation_create(owner=make_user())).reply for _ in range(3))

    assert [services.reply_queue_position(message_id=r.pk) for r in (first, second, third)] == [0, 1, 2]

    Message.objects.filter(pk=first.pk).update(status="streaming")  # a worker took it
    services.generation_cancel(conversation=second.conversation)

    positions = [services.reply_queue_position(message_id=r.pk) for r in (first, second, third)]
    assert positions == [None, None, 0]


def test_a_reply_that_never_waited_or_does_not_exist_has_no_queue_position(conversation):
    reply = answered(conversation)

    assert services.reply_queue_position(message_id=reply.pk) is None
    assert services.reply_queue_position(message_id=reply.pk + 1000) is None


@pytest.mark.parametrize("code", ["queue_full", "unavailable"])
def test_a_reply_whose_job_could_not_be_queued_fails_at_once_with_the_reason(conversation, code):
    reply = send(conversation).reply

    failed = services.reply_refuse_job(message_id=reply.pk, code=code)

    assert (failed.pk, failed.conversation.pk) == (reply.pk, conversation.pk)
    row = Message.objects.get(pk=reply.pk)
    assert (row.status, row.error_code, row.error_message) == ("failed", code, ChatError(code).message)
    assert row.finished_at is not None
    assert send(conversation).created  # the conversation is free again


def test_refusing_the_job_of_a_reply_a_worker_already_took_leaves_it_running(conversation):
    reply = send(conversation).reply
    Message.objects.filter(pk=reply.pk).update(status="streaming", content="So far")

    row = services.reply_refuse_job(message_id=reply.pk, code="unavailable")

    assert (row.status, row.error_code, row.content, row.finished_at) == ("streaming", "", "So far", None)


# --- the tree: every operation on a three-level tree ---------------------------------------------


@pytest.fixture
def three_turns(conversation) -> list[Message]:
    """Question 1, Answer 1, Question 2, Answer 2, Question 3, Answer 3: one branch, three levels deep."""
    turns = []
    for number in (1, 2, 3):
        reply = answered(conversation, f"Question {number}", f"Answer {number}")
        turns += [Message.objects.get(pk=reply.parent_id), reply]
    return turns


def contents(conversation: Conversation) -> list[str]:
    return [content for _, _, content in visible(conversation)]


def test_each_message_follows_the_one_before_it_and_the_last_reply_is_the_current_leaf(conversation, three_turns):
    assert [m.parent_id for m in three_turns] == [None, *(m.pk for m in three_turns[:-1])]
    conversation.refresh_from_db()
    assert conversation.current_leaf_id == three_turns[-1].pk


def test_editing_the_first_message_starts_a_new_root_and_keeps_the_old_branch_whole(conversation, three_turns):
    first = three_turns[0]

    result = services.message_edit(
        conversation=conversation, client_id="e-1", content="Question 1, again", message=first.pk
    )

    assert result.user_message.parent_id is None
    assert result.reply.parent_id == result.user_message.pk
    assert result.tree.siblings(first.pk) == [first.pk, result.user_message.pk]
    assert contents(conversation) == ["Question 1, again", ""]
    assert result.tree.path_to(three_turns[-1].pk) == [m.pk for m in three_turns]


def test_editing_a_middle_message_branches_there_and_keeps_what_came_before(conversation, three_turns):
    second = three_turns[2]

    result = services.message_edit(
        conversation=conversation, client_id="e-1", content="Question 2, again", message=second.pk
    )

    assert result.user_message.parent_id == three_turns[1].pk
    assert contents(conversation) == ["Question 1", "Answer 1", "Question 2, again", ""]


def test_regenerating_a_middle_reply_answers_its_question_again_beside_it(conversation, three_turns):
    middle = three_turns[3]

    result = services.reply_regenerate(conversation=conversation, client_id="r-1", message=middle.pk)

    assert result.reply.parent_id == three_turns[2].pk
    assert result.tree.position(result.reply.pk) == {
        "parent": three_turns[2].pk,
        "siblings": [middle.pk, result.reply.pk],
        "index": 1,
        "count": 2,
    }
    assert contents(conversation) == ["Question 1", "Answer 1", "Question 2", ""]


def test_regenerating_with_another_model_uses_it_for_that_reply_only(conversation, three_turns):
    result = services.reply_regenerate(conversation=conversation, client_id="r-1", model="openai:gpt-other")

    assert (result.reply.model, result.reply.provider) == ("openai:gpt-other", "openai")
    conversation.refresh_from_db()
    assert conversation.model == TEST_MODEL


def test_regenerating_with_a_model_not_offered_is_refused_and_writes_nothing(conversation, three_turns):
    before = snapshot()

    refused("unknown_model", services.reply_regenerate, conversation=conversation, client_id="r-1", model="openai:nope")

    assert snapshot() == before


def test_regenerating_a_continued_reply_replaces_the_whole_answer(conversation):
    stopped = ended(send(conversation, "Question").reply, status="cancelled", content="A stopped ")
    continued = ended(services.reply_continue(conversation=conversation, client_id="k-1").reply, content="answer.")
    assert contents(conversation) == ["Question", "A stopped ", "answer."]

    for client_id, message in (("r-1", None), ("r-2", continued.pk)):
        Message.objects.filter(status="pending").update(status="complete")
        result = services.reply_regenerate(conversation=conversation, client_id=client_id, message=message)

        assert result.reply.parent_id == stopped.parent_id
        assert contents(conversation) == ["Question", ""]


def test_editing_after_a_continued_reply_branches_at_its_question(conversation):
    stopped = ended(send(conversation, "Question").reply, status="cancelled", content="A stopped ")
    ended(services.reply_continue(conversation=conversation, client_id="k-1").reply, content="answer.")

    result = services.message_edit(conversation=conversation, client_id="e-1", content="Better question")

    assert result.tree.siblings(stopped.parent_id) == [stopped.parent_id, result.user_message.pk]
    assert contents(conversation) == ["Better question", ""]


def test_continuing_twice_in_a_row_is_refused_until_the_first_continuation_stopped(conversation):
    ended(send(conversation).reply, status="cancelled", content="A stopped ")
    services.reply_continue(conversation=conversation, client_id="k-1")

    refused("nothing_to_continue", services.reply_continue, conversation=conversation, client_id="k-2")


def test_a_send_after_a_switch_continues_the_branch_switched_to(conversation, three_turns):
    services.reply_regenerate(conversation=conversation, client_id="r-1", message=three_turns[3].pk)
    Message.objects.filter(status="pending").update(status="complete", content="Answer 2, again")
    services.conversation_switch(conversation=conversation, message=three_turns[3].pk)

    result = send(conversation, "Question 4")

    assert result.user_message.parent_id == three_turns[-1].pk
    assert contents(conversation)[-2:] == ["Question 4", ""]


@pytest.mark.parametrize("operation", ["regenerate", "edit", "switch"])
def test_a_message_of_another_conversation_or_none_at_all_is_not_found_and_writes_nothing(
    user, conversation, three_turns, operation
):
    elsewhere = answered(services.conversation_create(owner=user, model=TEST_MODEL))
    calls = {
        "regenerate": lambda pk: services.reply_regenerate(conversation=conversation, client_id="x-1", message=pk),
        "edit": lambda pk: services.message_edit(conversation=conversation, client_id="x-1", content="x", message=pk),
        "switch": lambda pk: services.conversation_switch(conversation=conversation, message=pk),
    }
    before = snapshot()

    for message_id in (elsewhere.pk, elsewhere.pk + 1000):
        refused("not_found", calls[operation], pk=message_id)

    assert snapshot() == before


@pytest.mark.parametrize(
    ("operation", "wrong"), [("regenerate", "a question"), ("edit", "a reply"), ("edit", "1"), ("regenerate", True)]
)
def test_a_message_id_of_the_wrong_role_or_type_is_invalid_and_writes_nothing(
    conversation, three_turns, operation, wrong
):
    message = {"a question": three_turns[0].pk, "a reply": three_turns[1].pk}.get(wrong, wrong)
    before = snapshot()

    if operation == "regenerate":
        refused("invalid", services.reply_regenerate, conversation=conversation, client_id="x-1", message=message)
    else:
        refused(
            "invalid", services.message_edit, conversation=conversation, client_id="x-1", content="x", message=message
        )

    assert snapshot() == before


def test_a_reply_running_on_one_branch_makes_every_branch_busy(conversation, three_turns):
    services.reply_regenerate(conversation=conversation, client_id="r-1", message=three_turns[1].pk)
    services.conversation_switch(conversation=conversation, message=three_turns[1].pk)
    before = snapshot()

    refused("busy", services.reply_regenerate, conversation=conversation, client_id="r-2")
    refused(
        "busy",
        services.message_edit,
        conversation=conversation,
        client_id="e-1",
        content="x",
        message=three_turns[2].pk,
    )
    refused("busy", send, conversation=conversation)

    assert snapshot() == before


def test_the_same_client_id_again_answers_the_same_branch_and_creates_nothing(conversation, three_turns):
    first = services.message_edit(
        conversation=conversation, client_id="e-1", content="Again", message=three_turns[0].pk
    )
    Message.objects.filter(pk=first.reply.pk).update(status="complete")
    before = snapshot()

    again = services.message_edit(
        conversation=conversation, client_id="e-1", content="Again", message=three_turns[2].pk
    )

    assert (again.created, again.user_message.pk, again.reply.pk) == (False, first.user_message.pk, first.reply.pk)
    assert again.tree.siblings(first.user_message.pk) == [three_turns[0].pk, first.user_message.pk]
    assert snapshot() == before
