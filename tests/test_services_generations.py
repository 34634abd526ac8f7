"""chat/services/generations.py called directly: the worker's claim, checkpoints, lease renewal, finish,
the usage ledger, and the reaping of replies whose worker vanished."""

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import selectors, services
from chat.errors import ChatError
from chat.limits import tokens_used_today
from chat.models import Attachment, Conversation, DailyUsage, Message, ModelPrice
from chat.prompts import reply_budget
from chat.providers import registry
from chat.providers.base import ChatTurn, StreamResult
from tests.engine_fixtures import TEST_MODEL

pytestmark = pytest.mark.usefixtures("db", "engine")


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def conversation(user) -> Conversation:
    return services.conversation_create(owner=user, model=TEST_MODEL, system_prompt="Be brief.")


def pending_reply(conversation: Conversation, content: str = "Plan a trip") -> Message:
    return services.message_send(conversation=conversation, client_id=uuid.uuid4().hex, content=content).reply


def claimed(conversation: Conversation, worker_id: str = "w-1") -> services.GenerationContext:
    """A reply a worker took: it streams under the context's lease holder."""
    context = services.generation_begin(message_id=pending_reply(conversation).pk, worker_id=worker_id)
    assert context is not None
    return context


def row(message: Message) -> Message:
    return Message.objects.get(pk=message.pk)


def checkpoint(context: services.GenerationContext, content: str, seq: int) -> services.Checkpoint:
    return services.generation_checkpoint(
        message_id=context.reply.pk, parts=[("text", content)], seq=seq, lease_holder=context.lease_holder
    )


def finish(context: services.GenerationContext, *, content: str = "", seq: int = 0, **kwargs) -> Message | None:
    kwargs.setdefault("result", StreamResult())
    kwargs.setdefault("parts", [("text", content)])
    return services.generation_finish(message_id=context.reply.pk, seq=seq, lease_holder=context.lease_holder, **kwargs)


# --- generation_begin ----------------------------------------------------------------------------


def test_a_pending_reply_is_claimed_exactly_once(conversation, settings, frozen_now):
    reply = pending_reply(conversation)

    first = services.generation_begin(message_id=reply.pk, worker_id="w-1")
    second = services.generation_begin(message_id=reply.pk, worker_id="w-2")

    assert first is not None and second is None
    taken = row(reply)
    assert (taken.status, taken.started_at, taken.lease_holder) == ("streaming", frozen_now, first.lease_holder)
    assert taken.lease_expires_at == frozen_now + timedelta(seconds=settings.CHAT_LEASE_SECONDS)
    assert first.lease_holder.startswith("w-1/")
    assert (first.reply.pk, first.reply.status, first.conversation.pk) == (reply.pk, "streaming", conversation.pk)


def test_each_claim_holds_its_own_lease_even_from_the_same_worker(user):
    first = claimed(services.conversation_create(owner=user), worker_id="w-1")
    second = claimed(services.conversation_create(owner=user), worker_id="w-1")

    assert first.lease_holder != second.lease_holder


def test_a_reply_cancelled_before_a_worker_took_it_is_never_claimed(conversation):
    reply = pending_reply(conversation)
    services.generation_cancel(conversation=conversation)

    assert services.generation_begin(message_id=reply.pk) is None
    assert (row(reply).status, row(reply).started_at) == ("cancelled", None)


def test_a_reply_that_ended_or_does_not_exist_is_not_claimed(conversation):
    reply = pending_reply(conversation)
    services.reply_refuse_job(message_id=reply.pk, code="unavailable")

    assert services.generation_begin(message_id=reply.pk) is None
    assert services.generation_begin(message_id=reply.pk + 1000) is None
    assert row(reply).status == "failed"


@pytest.mark.cluster
def test_the_claim_comes_with_the_prompt_of_the_current_branch_and_its_resolved_provider(conversation, settings):
    settings.CHAT_MAX_OUTPUT_TOKENS = 100
    first = Message.objects.create(conversation=conversation, role="user", content="First question")
    answer = Message.objects.create(conversation=conversation, parent=first, role="assistant", content="First answer.")
    second = Message.objects.create(conversation=conversation, parent=answer, role="user", content="Second question")
    Message.objects.create(conversation=conversation, parent=second, role="assistant", status="failed", content="")
    services.reply_regenerate(conversation=conversation, client_id="r-1")  # a sibling of the failed reply
    Message.objects.filter(status="pending").update(status="cancelled", content="A partial ")
    reply = services.reply_continue(conversation=conversation, client_id="k-1").reply

    context = services.generation_begin(message_id=reply.pk)

    provider, model = registry.resolve(TEST_MODEL)
    assert context.provider is provider
    assert context.request.model == "gpt-test"
    assert context.request.system == "Be brief."
    assert context.request.max_output_tokens == reply_budget(model, 100)
    assert context.request.turns == [
        ChatTurn(role="user", content="First question"),
        ChatTurn(role="assistant", content="First answer."),
        ChatTurn(role="user", content="Second question"),
        ChatTurn(role="assistant", content="A partial "),
    ]


@pytest.mark.cluster
def test_the_prompt_is_the_path_to_the_reply_and_only_that_path(conversation):
    """Q1 → A1 → Q2 → A2, then Q1 edited (Q1b → A1b) and A2 regenerated beside itself; a reply on each
    branch is sent its own path: never a sibling, never a message of another branch, never a newer one."""
    q1 = Message.objects.create(conversation=conversation, role="user", content="Q1")
    a1 = Message.objects.create(conversation=conversation, parent=q1, role="assistant", content="A1")
    q2 = Message.objects.create(conversation=conversation, parent=a1, role="user", content="Q2")
    Message.objects.create(conversation=conversation, parent=q2, role="assistant", content="A2")
    q1b = Message.objects.create(conversation=conversation, role="user", content="Q1b")
    Message.objects.create(conversation=conversation, parent=q1b, role="assistant", content="A1b")
    regenerated = services.reply_regenerate(conversation=conversation, client_id="r-1", message=q2.pk + 1).reply
    later = Message.objects.create(conversation=conversation, parent=q1b, role="user", content="A later branch")

    context = services.generation_begin(message_id=regenerated.pk)

    assert later.pk > regenerated.pk
    assert [(turn.role, turn.content) for turn in context.request.turns] == [
        ("user", "Q1"),
        ("assistant", "A1"),
        ("user", "Q2"),
    ]


def test_a_reply_whose_model_the_server_stopped_offering_fails_as_unknown_model(conversation, settings, frozen_now):
    reply = pending_reply(conversation)
    settings.OPENAI_MODELS = ["gpt-other"]
    registry.reset()

    assert services.generation_begin(message_id=reply.pk) is None

    failed = row(reply)
    assert (failed.status, failed.error_code) == ("failed", "unknown_model")
    assert failed.error_message == ChatError("unknown_model").message
    assert (failed.lease_expires_at, failed.lease_holder, failed.finished_at) == (None, "", frozen_now)
    assert services.generation_begin(message_id=reply.pk) is None


def attach(message: Message, name: str, text: str = "a,b\n1,2\n") -> Attachment:
    """A text file on a message (sent to the model as its text: no storage read)."""
    conversation = message.conversation
    return Attachment.objects.create(
        owner=conversation.owner,
        conversation=conversation,
        message=message,
        kind="text",
        mime="text/csv",
        name=name,
        storage_name=f"u1/{name}",
        size=len(text),
        text=text,
    )


def answered(conversation: Conversation, asked: str, answer: str) -> Message:
    """An exchange sent and answered (its reply complete): the next send follows it."""
    reply = pending_reply(conversation, asked)
    Message.objects.filter(pk=reply.pk).update(status="complete", content=answer)
    return reply


@pytest.mark.cluster
def test_a_claim_with_files_reads_the_reply_its_path_and_their_files_in_four_statements(
    conversation, django_assert_num_queries
):
    reply = pending_reply(conversation, "Sum this table")
    attach(Message.objects.get(pk=reply.parent_id), "table.csv")

    # The claim, the reply with its conversation, its path (one walk up), the path's files; the owner's
    # group policies were read by the send, within the cache's window (chat/teams.py).
    with django_assert_num_queries(4):
        context = services.generation_begin(message_id=reply.pk)

    assert "table.csv" in context.request.turns[-1].content and context.price is None


@pytest.mark.cluster
def test_a_claim_reads_the_models_price_only_for_an_owner_with_a_money_budget(
    conversation, settings, django_assert_num_queries
):
    settings.CHAT_DAILY_COST_BUDGET = Decimal("5")
    ModelPrice.objects.create(
        model=TEST_MODEL, effective_from=datetime(2020, 1, 1, tzinfo=UTC), input_per_million=1, output_per_million=2
    )
    reply = pending_reply(conversation)

    with django_assert_num_queries(4):  # the claim, the reply, its path, the price
        context = services.generation_begin(message_id=reply.pk)

    assert context.price is not None and context.limits.has_money_budget


@pytest.mark.cluster
def test_a_claim_without_files_costs_three_statements_however_long_its_history(conversation, django_assert_num_queries):
    for turn in range(12):
        answered(conversation, f"Question {turn}", f"Answer {turn}.")
    reply = pending_reply(conversation, "And the last one?")

    # The claim, the reply with its conversation, its path: no tree, no second read of the path, no files.
    with django_assert_num_queries(3):
        context = services.generation_begin(message_id=reply.pk)

    assert len(context.request.turns) == 25
    assert context.request.turns[-1] == ChatTurn(role="user", content="And the last one?")


@pytest.mark.cluster
def test_a_reply_deep_on_a_branch_the_owner_left_is_sent_its_own_path_as_the_tree_has_it(conversation, settings):
    """Twenty exchanges, an edit at the 5th question, a regenerate at the 15th reply on the old branch,
    then the owner back on the edited branch: a reply claimed deep on the old branch gets exactly its path."""
    settings.CHAT_MESSAGES_PER_MINUTE = 0  # 22 replies started within the test's minute
    replies = [answered(conversation, f"Q{turn}", f"A{turn}") for turn in range(20)]
    question_5 = Message.objects.get(pk=replies[5].parent_id)
    edited = services.message_edit(conversation=conversation, client_id="e-1", message=question_5.pk, content="Q5b")
    Message.objects.filter(pk=edited.reply.pk).update(status="complete", content="A5b")
    old_branch = services.reply_regenerate(conversation=conversation, client_id="r-1", message=replies[15].pk).reply
    Message.objects.filter(pk=old_branch.pk).update(status="pending")
    services.conversation_switch(conversation=conversation, message=edited.reply.pk)

    history = selectors.history_for(reply=row(old_branch))
    context = services.generation_begin(message_id=old_branch.pk)

    tree_path = selectors.path_for(conversation=conversation, leaf=old_branch.parent_id).messages
    assert [m.pk for m in history.messages] == [m.pk for m in tree_path]
    assert [m.content for m in history.messages][-3:] == ["Q14", "A14", "Q15"]
    assert "Q5b" not in [turn.content for turn in context.request.turns]
    assert len(context.request.turns) == 31 and context.request.turns[-1].content == "Q15"
    assert Conversation.objects.get(pk=conversation.pk).current_leaf_id != old_branch.pk


@pytest.mark.cluster
def test_the_files_of_earlier_turns_on_the_path_come_with_them_and_no_other_branchs(
    conversation, django_assert_num_queries
):
    first = answered(conversation, "Here are two tables", "Got them.")
    attach(Message.objects.get(pk=first.parent_id), "one.csv")
    attach(Message.objects.get(pk=first.parent_id), "two.csv", "c,d\n3,4\n")
    second = answered(conversation, "And a note", "Noted.")
    sibling = services.message_edit(
        conversation=conversation, client_id="e-1", message=second.parent_id, content="Another note"
    ).user_message
    attach(sibling, "elsewhere.csv")
    Message.objects.filter(conversation=conversation, status="pending").update(status="complete", content="Ok.")
    services.conversation_switch(conversation=conversation, message=second.pk)
    reply = pending_reply(conversation, "Sum them")

    with django_assert_num_queries(4):  # the claim, the reply, its path, the files of its first question
        context = services.generation_begin(message_id=reply.pk)

    sent = [turn.content for turn in context.request.turns]
    assert len(sent) == 5 and sent[0].index("one.csv") < sent[0].index("two.csv")
    assert not any("elsewhere.csv" in text for text in sent)
    assert sent[2:] == ["And a note", "Noted.", "Sum them"]


# --- generation_checkpoint / generation_leases_renew ---------------------------------------------


def test_a_checkpoint_saves_the_text_and_seq_and_renews_the_lease(conversation, settings, frozen_now, monkeypatch):
    context = claimed(conversation)
    later = frozen_now + timedelta(seconds=7)
    monkeypatch.setattr("django.utils.timezone.now", lambda: later)

    outcome = services.generation_checkpoint(
        message_id=context.reply.pk, parts=[("text", "Lisbon is")], seq=3, lease_holder=context.lease_holder
    )

    assert outcome == services.Checkpoint.SAVED
    saved = row(context.reply)
    assert (saved.status, saved.content, saved.seq) == ("streaming", "Lisbon is", 3)
    assert saved.lease_expires_at == later + timedelta(seconds=settings.CHAT_LEASE_SECONDS)


def test_a_checkpoint_after_a_stop_was_requested_says_so_and_saves_nothing(conversation):
    context = claimed(conversation)
    checkpoint(context, "Lisbon is", 3)
    services.generation_cancel(conversation=conversation)

    assert checkpoint(context, "Lisbon is lovely", 5) == services.Checkpoint.STOP_REQUESTED

    kept = row(context.reply)
    assert (kept.content, kept.seq, kept.cancel_requested, kept.status) == ("Lisbon is", 3, True, "streaming")


def test_a_checkpoint_of_a_reply_that_was_reaped_finds_its_lease_lost_and_keeps_the_reaped_state(
    conversation, frozen_now
):
    context = claimed(conversation)
    Message.objects.filter(pk=context.reply.pk).update(lease_expires_at=frozen_now - timedelta(seconds=1))
    services.replies_interrupt_stale()

    assert checkpoint(context, "late text", 9) == services.Checkpoint.LEASE_LOST
    assert (row(context.reply).status, row(context.reply).content) == ("interrupted", "")


def test_a_checkpoint_under_another_lease_holder_finds_its_lease_lost_and_saves_nothing(conversation):
    context = claimed(conversation)
    stale = dataclasses.replace(context, lease_holder="w-1/an-older-claim")

    assert checkpoint(stale, "not mine", 9) == services.Checkpoint.LEASE_LOST
    assert (row(context.reply).content, row(context.reply).seq) == ("", 0)


def test_renewing_leases_extends_every_lease_the_worker_holds_and_nothing_else(user, settings, frozen_now):
    mine = [claimed(services.conversation_create(owner=user)) for _ in range(2)]
    another_workers = claimed(services.conversation_create(owner=user), worker_id="w-2")
    old = frozen_now - timedelta(seconds=1)
    Message.objects.update(lease_expires_at=old)

    renewed = services.generation_leases_renew(lease_holders={c.lease_holder for c in mine} | {"w-1/gone"})

    deadline = frozen_now + timedelta(seconds=settings.CHAT_LEASE_SECONDS)
    assert renewed == 2
    assert [row(c.reply).lease_expires_at for c in mine] == [deadline, deadline]
    assert row(another_workers.reply).lease_expires_at == old


def test_a_lease_is_not_renewed_once_its_reply_ended(conversation, frozen_now):
    context = claimed(conversation)
    finish(context, status="complete")

    assert services.generation_leases_renew(lease_holders=[context.lease_holder]) == 0
    assert row(context.reply).lease_expires_at is None


def test_renewing_no_leases_costs_no_query(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert services.generation_leases_renew(lease_holders=[]) == 0


# --- generation_finish / usage_add ---------------------------------------------------------------


def test_finishing_a_reply_saves_everything_and_adds_its_tokens_to_the_days_ledger(user, conversation, frozen_now):
    context = claimed(conversation)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=frozen_now - timedelta(hours=1))
    result = StreamResult(
        finish_reason="stop", input_tokens=12, output_tokens=30, time_to_first_token_ms=150, duration_ms=900
    )

    final = finish(
        context, content="Lisbon is lovely.", seq=8, status="complete", result=result, send_to_first_token_ms=400
    )

    saved = row(context.reply)
    assert (saved.status, saved.content, saved.seq, saved.finish_reason) == ("complete", "Lisbon is lovely.", 8, "stop")
    assert (saved.input_tokens, saved.output_tokens, saved.tokens_estimated) == (12, 30, False)
    assert (saved.time_to_first_token_ms, saved.send_to_first_token_ms, saved.duration_ms) == (150, 400, 900)
    assert (saved.error_code, saved.error_message) == ("", "")
    assert (saved.lease_expires_at, saved.lease_holder, saved.finished_at) == (None, "", frozen_now)
    assert (final.pk, final.status, final.conversation.pk) == (context.reply.pk, "complete", conversation.pk)
    assert Conversation.objects.get(pk=conversation.pk).updated_at == frozen_now
    assert list(DailyUsage.objects.values_list("user_id", "day", "tokens")) == [(user.pk, frozen_now.date(), 42)]


def test_finishing_a_reply_saves_its_cache_and_reasoning_counts_and_budgets_reasoning_once(user, conversation):
    context = claimed(conversation)
    result = StreamResult(
        finish_reason="stop",
        input_tokens=321,
        output_tokens=100,
        cached_input_tokens=200,
        cache_write_tokens=50,
        reasoning_tokens=40,
    )

    finish(context, parts=[("reasoning", "Hmm."), ("text", "Four.")], status="complete", result=result)

    saved = row(context.reply)
    assert (saved.cached_input_tokens, saved.cache_write_tokens, saved.reasoning_tokens) == (200, 50, 40)
    # Reasoning is in the output (both providers count it there), cached reads in the input: no extra.
    assert tokens_used_today(user_id=user.pk) == 321 + 100


def test_a_reply_whose_provider_reported_no_details_keeps_them_unknown(conversation):
    context = claimed(conversation)

    finish(context, status="complete", result=StreamResult(finish_reason="stop", input_tokens=12, output_tokens=30))

    saved = row(context.reply)
    assert (saved.cached_input_tokens, saved.cache_write_tokens, saved.reasoning_tokens) == (None, None, None)


def test_a_failed_reply_keeps_its_partial_text_and_the_errors_code_and_message(conversation):
    context = claimed(conversation)

    finish(context, content="Lisbon", seq=2, status="failed", error=ChatError("upstream_error", "The provider: 502."))

    saved = row(context.reply)
    assert (saved.status, saved.content, saved.seq) == ("failed", "Lisbon", 2)
    assert (saved.error_code, saved.error_message) == ("upstream_error", "The provider: 502.")


def test_a_cancelled_reply_without_a_finish_reason_is_finished_as_cancelled(conversation):
    context = claimed(conversation)

    finish(context, content="Lis", seq=1, status="cancelled")

    assert (row(context.reply).status, row(context.reply).finish_reason) == ("cancelled", "cancelled")


def test_a_reply_that_reported_no_tokens_adds_nothing_to_the_ledger(conversation):
    finish(claimed(conversation), status="failed")

    assert not DailyUsage.objects.exists()


def test_a_worker_whose_lease_was_reaped_finishes_nothing_and_adds_no_usage(conversation, frozen_now):
    context = claimed(conversation)
    checkpoint(context, "Lisbon is", 3)
    Message.objects.filter(pk=context.reply.pk).update(lease_expires_at=frozen_now - timedelta(seconds=1))
    services.replies_interrupt_stale()
    reaped = row(context.reply)

    result = StreamResult(finish_reason="stop", input_tokens=12, output_tokens=30)
    assert finish(context, content="Lisbon is lovely.", seq=8, status="complete", result=result) is None

    after = row(context.reply)
    assert (after.status, after.content, after.seq, after.finished_at) == (
        "interrupted",
        "Lisbon is",
        3,
        reaped.finished_at,
    )
    assert not DailyUsage.objects.exists()


def test_a_finish_under_another_lease_holder_saves_nothing(conversation):
    context = claimed(conversation)

    assert finish(dataclasses.replace(context, lease_holder="w-1/an-older-claim"), status="complete") is None
    assert row(context.reply).status == "streaming"


def test_a_finish_of_a_reply_deleted_meanwhile_saves_nothing_and_adds_no_usage(conversation):
    context = claimed(conversation)
    Message.objects.filter(pk=context.reply.pk).delete()

    assert finish(context, status="complete") is None
    assert not DailyUsage.objects.exists()


@pytest.mark.cluster
def test_a_final_save_reads_nothing_back_five_statements_on_postgresql_six_on_sqlite(user, conversation):
    context = claimed(conversation)
    services.usage_add(user_id=user.pk, tokens=1)  # the day's ledger row, as after the owner's first reply
    result = StreamResult(finish_reason="stop", input_tokens=3, output_tokens=4)

    with CaptureQueriesContext(connection) as queries:
        finish(context, parts=[("reasoning", "Hmm."), ("text", "Four.")], status="complete", result=result)

    # The reply with its conversation, its model's price, the fenced UPDATE (with the index's columns on
    # PostgreSQL), SQLite's FTS5 row, the ledger, the sidebar's touch.
    run = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]
    assert len(run) == (5 if connection.vendor == "postgresql" else 6), run
    assert [sql.split()[0] for sql in run[:2]] == ["SELECT", "SELECT"]
    assert not any(sql.startswith("SELECT") for sql in run[2:])
    assert tokens_used_today(user_id=user.pk) == 8


def test_usage_creates_one_row_a_user_and_day_and_adds_to_it_after(user, make_user, frozen_now):
    other = make_user()
    yesterday = (frozen_now - timedelta(days=1)).date()

    services.usage_add(user_id=user.pk, tokens=10)
    services.usage_add(user_id=user.pk, tokens=5)
    services.usage_add(user_id=user.pk, tokens=7, day=yesterday)
    services.usage_add(user_id=other.pk, tokens=3)
    services.usage_add(user_id=other.pk, tokens=0)
    services.usage_add(user_id=other.pk, tokens=-4)

    rows = set(DailyUsage.objects.values_list("user_id", "day", "tokens"))
    assert rows == {(user.pk, frozen_now.date(), 15), (user.pk, yesterday, 7), (other.pk, frozen_now.date(), 3)}


def test_usage_counts_the_day_in_utc_whatever_the_servers_time_zone(user, monkeypatch):
    # 23:30 UTC is already the next day in Tokyo: the ledger still books it on the UTC day.
    instant = datetime(2030, 6, 1, 23, 30, tzinfo=UTC)
    monkeypatch.setattr("django.utils.timezone.now", lambda: instant.astimezone(ZoneInfo("Asia/Tokyo")))

    services.usage_add(user_id=user.pk, tokens=10)

    assert DailyUsage.objects.get().day == instant.date()


def test_usage_added_while_another_process_creates_the_days_row_is_added_to_that_row(user, frozen_now):
    created_by_another = []

    def another_process_creates_the_row_after_our_update(execute, sql, params, many, context):
        outcome = execute(sql, params, many, context)
        if not created_by_another and sql.startswith('UPDATE "chat_dailyusage"'):
            created_by_another.append(True)
            DailyUsage.objects.bulk_create([DailyUsage(user_id=user.pk, day=frozen_now.date(), tokens=5)])
        return outcome

    with connection.execute_wrapper(another_process_creates_the_row_after_our_update):
        services.usage_add(user_id=user.pk, tokens=7)

    assert created_by_another
    assert list(DailyUsage.objects.values_list("user_id", "tokens")) == [(user.pk, 12)]


# --- replies_interrupt_stale / replies_requeue_lost / reply_mark_interrupted -----------------------


def test_a_streaming_reply_whose_lease_ran_out_is_interrupted_with_its_last_checkpoint(conversation, frozen_now):
    context = claimed(conversation)
    checkpoint(context, "Lisbon is", 3)
    Message.objects.filter(pk=context.reply.pk).update(lease_expires_at=frozen_now - timedelta(microseconds=1))

    reaped = services.replies_interrupt_stale()

    assert [(m.pk, m.conversation.pk) for m in reaped] == [(context.reply.pk, conversation.pk)]
    saved = row(context.reply)
    assert (saved.status, saved.error_code, saved.content, saved.seq) == ("interrupted", "interrupted", "Lisbon is", 3)
    assert (saved.lease_expires_at, saved.lease_holder, saved.finished_at) == (None, "", frozen_now)
    assert saved.duration_ms is None
    assert services.reply_continue(conversation=conversation, client_id="k-1").created


def test_a_streaming_reply_whose_lease_still_runs_is_left_alone(conversation, frozen_now):
    context = claimed(conversation)
    Message.objects.filter(pk=context.reply.pk).update(lease_expires_at=frozen_now)

    assert services.replies_interrupt_stale() == []
    assert (row(context.reply).status, row(context.reply).lease_holder) == ("streaming", context.lease_holder)


def test_a_pending_reply_older_than_the_expiry_is_interrupted_and_a_younger_one_is_left_waiting(
    user, settings, frozen_now
):
    expiry = timedelta(seconds=settings.CHAT_PENDING_EXPIRY_SECONDS)
    lost = pending_reply(services.conversation_create(owner=user))
    waiting = pending_reply(services.conversation_create(owner=user))
    Message.objects.filter(pk=lost.pk).update(created_at=frozen_now - expiry - timedelta(microseconds=1))
    Message.objects.filter(pk=waiting.pk).update(created_at=frozen_now - expiry)

    reaped = services.replies_interrupt_stale()

    assert [m.pk for m in reaped] == [lost.pk]
    assert (row(lost).status, row(lost).error_code, row(lost).finished_at) == ("interrupted", "interrupted", frozen_now)
    assert row(waiting).status == "pending"


def test_replies_that_ended_are_never_reaped_however_old(conversation, frozen_now):
    long_ago = frozen_now - timedelta(days=30)
    context = claimed(conversation)
    finish(context, content="Done.", seq=1, status="complete")
    Message.objects.update(created_at=long_ago, lease_expires_at=long_ago)

    assert services.replies_interrupt_stale() == []
    assert row(context.reply).status == "complete"


def test_pending_replies_sent_before_the_job_queue_was_new_are_sent_again_once(user, frozen_now):
    restart = frozen_now - timedelta(seconds=30)
    lost = pending_reply(services.conversation_create(owner=user))
    cancelled = pending_reply(services.conversation_create(owner=user))
    services.generation_cancel(conversation=cancelled.conversation)
    taken = claimed(services.conversation_create(owner=user)).reply
    Message.objects.update(created_at=restart - timedelta(seconds=1))
    after_restart = pending_reply(services.conversation_create(owner=user))

    first = services.replies_requeue_lost(created_before=restart)
    second = services.replies_requeue_lost(created_before=restart)

    assert ([m.pk for m in first], second) == ([lost.pk], [])
    assert row(lost).requeued_at == frozen_now
    assert [row(m).requeued_at for m in (cancelled, taken, after_restart)] == [None, None, None]


def test_a_requeued_reply_waits_the_pending_expiry_from_its_requeue_not_from_its_send(user, settings, frozen_now):
    # The server was down longer than the pending expiry: the reply's job, sent again now, waits in the queue.
    expiry = timedelta(seconds=settings.CHAT_PENDING_EXPIRY_SECONDS)
    reply = pending_reply(services.conversation_create(owner=user))
    Message.objects.filter(pk=reply.pk).update(created_at=frozen_now - 2 * expiry)
    assert [m.pk for m in services.replies_requeue_lost(created_before=frozen_now)] == [reply.pk]

    assert services.replies_interrupt_stale() == []
    assert row(reply).status == "pending"
    Message.objects.filter(pk=reply.pk).update(requeued_at=frozen_now - expiry - timedelta(microseconds=1))
    assert [m.pk for m in services.replies_interrupt_stale()] == [reply.pk]


def test_a_worker_shutting_down_saves_what_it_has_of_a_reply_as_interrupted(user, conversation, frozen_now):
    context = claimed(conversation)
    result = StreamResult(input_tokens=10, output_tokens=4, tokens_estimated=True, duration_ms=300)

    final = services.reply_mark_interrupted(
        message_id=context.reply.pk,
        parts=[("text", "Lisbon is")],
        seq=3,
        result=result,
        lease_holder=context.lease_holder,
    )

    saved = row(context.reply)
    assert (final.pk, saved.status, saved.content, saved.seq) == (context.reply.pk, "interrupted", "Lisbon is", 3)
    assert (saved.error_code, saved.tokens_estimated, saved.lease_expires_at) == ("interrupted", True, None)
    assert "shut down" in saved.error_message
    assert tokens_used_today(user_id=user.pk) == 14


def test_a_worker_shutting_down_after_its_lease_was_reaped_saves_nothing(conversation, frozen_now):
    context = claimed(conversation)
    Message.objects.filter(pk=context.reply.pk).update(lease_expires_at=frozen_now - timedelta(seconds=1))
    services.replies_interrupt_stale()

    final = services.reply_mark_interrupted(
        message_id=context.reply.pk,
        parts=[("text", "late")],
        seq=3,
        result=StreamResult(),
        lease_holder=context.lease_holder,
    )

    assert final is None
    kept = row(context.reply)
    assert (kept.status, kept.content, kept.seq) == ("interrupted", "", 0)
    assert "worker stopped" in kept.error_message  # the reaper's words, not the shutdown's


# --- replies_hand_off_stale: background-mode replies go to another worker -------------------------


def background_progress(context: services.GenerationContext, content: str, seq: int, cursor: int) -> dict:
    """What a worker saves of a reply streaming from a response its provider keeps."""
    return {
        "message_id": context.reply.pk,
        "parts": [("text", content)],
        "seq": seq,
        "lease_holder": context.lease_holder,
        "response_id": "resp_kept",
        "cursor": cursor,
    }


def background_checkpoint(context: services.GenerationContext, content: str, seq: int, cursor: int) -> None:
    saved = services.generation_checkpoint(**background_progress(context, content, seq, cursor))
    assert saved == services.Checkpoint.SAVED


def lease_runs_out(context: services.GenerationContext, now: datetime) -> None:
    Message.objects.filter(pk=context.reply.pk).update(lease_expires_at=now - timedelta(microseconds=1))


def test_a_checkpoint_of_a_background_reply_saves_its_response_id_and_cursor_with_its_text(conversation):
    context = claimed(conversation)

    background_checkpoint(context, "Lisbon is", 3, cursor=17)

    saved = row(context.reply)
    assert (saved.content, saved.seq, saved.upstream_response_id, saved.upstream_cursor) == (
        "Lisbon is",
        3,
        "resp_kept",
        17,
    )


def test_a_background_reply_whose_worker_vanished_is_handed_off_fenced_and_waits_again(conversation, frozen_now):
    context = claimed(conversation)
    background_checkpoint(context, "Lisbon is", 3, cursor=17)
    lease_runs_out(context, frozen_now)

    handed = services.replies_hand_off_stale()

    assert [(m.pk, m.conversation_id, m.resumes) for m in handed] == [(context.reply.pk, conversation.pk, 1)]
    saved = row(context.reply)
    assert (saved.status, saved.lease_holder, saved.lease_expires_at) == ("pending", "", None)
    assert (saved.content, saved.seq, saved.upstream_cursor, saved.resumed_at) == ("Lisbon is", 3, 17, frozen_now)
    assert services.replies_interrupt_stale() == [], "it is not interrupted too"
    assert checkpoint(context, "late text of the old worker", 4) == services.Checkpoint.LEASE_LOST
    again = services.generation_begin(message_id=context.reply.pk, worker_id="w-2")
    assert again is not None and again.reply.resumes == 1 and again.reply.upstream_response_id == "resp_kept"


def test_a_reply_handed_off_as_often_as_allowed_is_interrupted_the_next_time(conversation, settings, frozen_now):
    settings.CHAT_RESUME_ATTEMPTS = 2
    context = claimed(conversation)
    background_checkpoint(context, "Lisbon", 1, cursor=5)
    for attempt in range(2):
        lease_runs_out(context, frozen_now)
        assert [m.resumes for m in services.replies_hand_off_stale()] == [attempt + 1]
        context = services.generation_begin(message_id=context.reply.pk, worker_id=f"w-{attempt + 2}")
    lease_runs_out(context, frozen_now)

    assert services.replies_hand_off_stale() == []
    assert [m.pk for m in services.replies_interrupt_stale()] == [context.reply.pk]
    saved = row(context.reply)
    assert (saved.status, saved.error_code, saved.content, saved.resumes) == ("interrupted", "interrupted", "Lisbon", 2)


def test_a_reply_without_a_kept_response_is_still_interrupted_not_handed_off(conversation, frozen_now):
    context = claimed(conversation)
    checkpoint(context, "Lisbon is", 3)
    lease_runs_out(context, frozen_now)

    assert services.replies_hand_off_stale() == []
    assert [m.pk for m in services.replies_interrupt_stale()] == [context.reply.pk]
    assert row(context.reply).status == "interrupted"


def test_a_stopped_background_reply_whose_worker_vanished_is_interrupted_not_handed_off(conversation, frozen_now):
    context = claimed(conversation)
    background_checkpoint(context, "Lisbon is", 3, cursor=17)
    services.generation_cancel(conversation=conversation)
    lease_runs_out(context, frozen_now)

    assert services.replies_hand_off_stale() == []
    assert row(services.replies_interrupt_stale()[0]).status == "interrupted"


def test_a_handed_off_reply_waits_the_pending_expiry_from_its_hand_off_not_from_its_send(
    conversation, settings, frozen_now
):
    context = claimed(conversation)
    background_checkpoint(context, "Lisbon is", 3, cursor=17)
    expiry = timedelta(seconds=settings.CHAT_PENDING_EXPIRY_SECONDS)
    Message.objects.filter(pk=context.reply.pk).update(created_at=frozen_now - 2 * expiry)
    lease_runs_out(context, frozen_now)
    services.replies_hand_off_stale()

    assert services.replies_interrupt_stale() == []
    Message.objects.filter(pk=context.reply.pk).update(resumed_at=frozen_now - expiry - timedelta(microseconds=1))
    assert [m.pk for m in services.replies_interrupt_stale()] == [context.reply.pk]


def hand_off(context: services.GenerationContext, content: str, seq: int, cursor: int) -> bool:
    return services.reply_hand_off(**background_progress(context, content, seq, cursor))


def test_a_worker_shutting_down_hands_a_background_reply_over_with_all_it_has(conversation, frozen_now):
    context = claimed(conversation)
    background_checkpoint(context, "Lisbon", 1, cursor=5)

    assert hand_off(context, "Lisbon is the capital", 4, cursor=21)

    saved = row(context.reply)
    assert (saved.status, saved.lease_holder, saved.resumes, saved.resumed_at) == ("pending", "", 1, frozen_now)
    assert (saved.content, saved.seq, saved.upstream_cursor) == ("Lisbon is the capital", 4, 21)
    assert saved.finished_at is None and saved.error_code == ""
    assert not hand_off(context, "again", 5, cursor=22), "the old lease holds nothing any more"


def test_a_reply_stopped_or_taken_up_as_often_as_allowed_is_not_handed_over_at_shutdown(conversation, settings):
    settings.CHAT_RESUME_ATTEMPTS = 0
    context = claimed(conversation)
    assert not hand_off(context, "Lisbon", 1, cursor=5)
    settings.CHAT_RESUME_ATTEMPTS = 3
    services.generation_cancel(conversation=conversation)
    assert not hand_off(context, "Lisbon", 1, cursor=5)
    assert row(context.reply).status == "streaming", "the worker ends it as usual"
