"""The worker's side of a reply: claim it, checkpoint it, finish it, reap it when its worker vanished."""

import logging
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from chat import costs, limits, rows, selectors, teams
from chat.errors import ChatError
from chat.files import read_file
from chat.models import Attachment, Conversation, DailyUsage, Message, ModelPrice, ReplyPart, stored_parts
from chat.prompts import build_request
from chat.providers import registry
from chat.providers.base import GenerationRequest, Provider, StreamResult
from chat.services.attachments import attachments_check_model
from chat.services.conversations import conversation_touch
from chat.services.parameters import parameters_for_request
from chat.services.search_index import search_index_columns, search_index_messages, search_index_written
from chat.teams import EffectiveLimits

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationContext:
    """A claimed reply with everything the engine needs to generate it: the prompt, its provider, and
    the lease holder that every later write of the reply must present."""

    reply: Message
    conversation: Conversation
    request: GenerationRequest
    provider: Provider
    lease_holder: str
    # For the money budget's checkpoints: the owner's limits and the price of the reply's model.
    limits: EffectiveLimits | None = None
    price: ModelPrice | None = None

    def running_cost(self, parts: Sequence[tuple[str, str]]) -> Decimal:
        """The estimated cost so far of the reply: its prompt and the parts it has written."""
        request = self.request
        return costs.running_cost(
            price=self.price,
            provider=self.reply.provider,
            prompt_chars=len(request.system) + sum(len(turn.content) for turn in request.turns),
            output_chars=sum(len(text) for _, text in parts),
            reasoning_chars=sum(len(text) for kind, text in parts if kind == "reasoning"),
        )


class Checkpoint(StrEnum):
    """What a checkpoint found: the reply is still this worker's, the user asked to stop, or the lease is gone."""

    SAVED = "saved"
    STOP_REQUESTED = "stop_requested"
    LEASE_LOST = "lease_lost"
    BUDGET_EXCEEDED = "budget_exceeded"  # saved, but the owner's money budget is spent: stop


@dataclass(frozen=True)
class BudgetProbe:
    """What a checkpoint needs to check a running reply against its owner's money budgets."""

    user_id: int
    limits: EffectiveLimits
    running: Decimal

    def exceeded(self) -> bool:
        try:
            limits.money_check(user_id=self.user_id, limits=self.limits, running=self.running)
        except ChatError:
            return True
        return False


def _lease_deadline() -> datetime:
    return timezone.now() + timedelta(seconds=settings.CHAT_LEASE_SECONDS)


def _held(*, message_id: int, lease_holder: str) -> "QuerySet[Message]":
    """The reply, only while it streams under this lease: the fence of every write a worker makes."""
    return Message.objects.filter(pk=message_id, status=Message.Status.STREAMING, lease_holder=lease_holder)


# `_waiting_replies()` (chat/services/replies.py), written out; and `_held`'s fence, the same way.
_PENDING = "status = %s AND NOT cancel_requested"
_HELD = "status = %s AND lease_holder = %s"


def generation_begin(*, message_id: int, worker_id: str = "") -> GenerationContext | None:
    """Claim a pending reply for this worker and build its prompt; None if it is no longer pending."""
    lease_holder = f"{worker_id}/{uuid.uuid4().hex[:12]}"
    # The claim answers the reply as claimed (written out, see chat/rows.py: a statement every reply makes).
    claim = {"status": Message.Status.STREAMING, "started_at": timezone.now(), "lease_expires_at": _lease_deadline()}
    claim["lease_holder"] = lease_holder
    reply = rows.update_returning(Message, message_id, claim, where=_PENDING, params=[Message.Status.PENDING])
    conversation = reply and rows.read_one(Conversation, "id = %s", [reply.conversation_id])
    if conversation is None:  # taken by another worker, stopped, or gone
        return None
    reply.conversation = conversation
    try:
        provider, model = registry.resolve(reply.model)
    except registry.UnknownModel:
        generation_finish(
            message_id=message_id,
            seq=0,
            status=Message.Status.FAILED,
            result=StreamResult(),
            error=ChatError("unknown_model"),
            lease_holder=lease_holder,
        )
        return None
    history = selectors.history_for(reply=reply)
    attachments = history.attachments
    question = next((m for m in reversed(history.messages) if m.role == Message.Role.USER), None)
    parameters, conversation_max_output = parameters_for_request(
        provider=provider, model=model, values=conversation.parameters
    )
    try:
        # Guards a reply whose model changed since the send (a regenerate with another model, say).
        attachments_check_model(model_ref=reply.model, attachments=attachments.get(question.pk, []) if question else [])
        request = build_request(
            conversation=conversation,
            history=history.messages,
            model=model,
            max_output_tokens=settings.CHAT_MAX_OUTPUT_TOKENS,
            parameters=parameters,
            conversation_max_output=conversation_max_output,
            attachments=attachments,
            read=_read_attachment,
        )
    except ChatError as error:
        generation_finish(
            message_id=message_id,
            seq=0,
            status=Message.Status.FAILED,
            result=StreamResult(),
            error=error,
            lease_holder=lease_holder,
        )
        return None
    limits = teams.limits_for(user_id=conversation.owner_id)
    return GenerationContext(
        reply=reply,
        conversation=conversation,
        request=request,
        provider=provider,
        lease_holder=lease_holder,
        limits=limits,
        # The price serves the money budget's checkpoints only: no query for an owner without one.
        price=costs.price_at(model_ref=reply.model_reference, moment=reply.created_at)
        if limits.has_money_budget
        else None,
    )


def _read_attachment(attachment: Attachment) -> bytes:
    """A file's bytes for the prompt; a storage that cannot give them fails the reply, now and clearly."""
    try:
        return read_file(attachment.storage_name)
    except Exception as exc:  # noqa: BLE001 - any storage backend's failure (OSError, botocore's own)
        logger.warning("attachment %s unreadable (%s)", attachment.pk, type(exc).__name__)
        raise ChatError("attachment_unavailable") from exc


def generation_leases_renew(*, lease_holders: Collection[str]) -> int:
    """One query renews every lease a worker holds, whether or not text is flowing; returns how many."""
    if not lease_holders:
        return 0
    return Message.objects.filter(lease_holder__in=list(lease_holders), status=Message.Status.STREAMING).update(
        lease_expires_at=_lease_deadline()
    )


def generation_checkpoint(
    *,
    message_id: int,
    seq: int,
    lease_holder: str,
    parts: Sequence[ReplyPart],
    part_ms: Sequence[int] | None = None,
    response_id: str = "",
    cursor: int | None = None,
    budget: "BudgetProbe | None" = None,
) -> Checkpoint:
    """Save the parts so far (with how long each took, if known) and renew the lease, if the reply is
    still this worker's and no stop was asked. A reply streaming from a response its provider keeps saves
    that response's id and the cursor its parts reach, for another worker to take it up from there.
    With a `budget`, BUDGET_EXCEEDED once the owner's spend and this reply's so far reach a money budget.
    The worker saves its replies' checkpoints in batches (`generation_checkpoints`): this is a batch of one."""
    progress = {"message_id": message_id, "seq": seq, "lease_holder": lease_holder, "parts": parts}
    progress.update(part_ms=part_ms, response_id=response_id, cursor=cursor, budget=budget)
    (outcome,) = generation_checkpoints([progress])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


# At most this many checkpoints in one statement (8 parameters each: far below SQLite's 32,766).
CHECKPOINTS_PER_STATEMENT = 500


def generation_checkpoints(batch: Sequence[Mapping[str, Any]]) -> list[Checkpoint | Exception]:
    """Every checkpoint of a batch (each the keyword arguments of `generation_checkpoint`), in one
    UPDATE over a VALUES list, with the same fence per reply (streaming, this lease, no stop asked),
    and its outcome per reply as `generation_checkpoint` gives it. A reply the UPDATE did not save is
    told apart (stop requested, else lease lost) by one more query, only when there is one.

    Written SQL, not one ORM update per reply: at 200 replies a second, the ORM's compile of each
    UPDATE was most of a checkpoint's cost. The values go through each field's own adaptation
    (`get_db_prep_save`), so they are stored exactly as the ORM stores them. A checkpoint whose values
    cannot be made (a bug) has its exception as its outcome, and the others are saved; a database error
    fails the whole batch (raised)."""
    outcomes: list[Checkpoint | Exception] = []
    for start in range(0, len(batch), CHECKPOINTS_PER_STATEMENT):
        outcomes += _checkpoints(batch[start : start + CHECKPOINTS_PER_STATEMENT])
    return outcomes


def _checkpoint_values(progress: Mapping[str, Any], lease_deadline: datetime) -> list[Any]:
    field = Message._meta.get_field
    stored = stored_parts(progress["parts"], progress.get("part_ms"))
    response_id = progress.get("response_id") or ""
    return [
        progress["message_id"],
        progress["lease_holder"],
        field("content").get_db_prep_save(stored["content"], connection),
        field("parts").get_db_prep_save(stored["parts"], connection),
        progress["seq"],
        field("lease_expires_at").get_db_prep_save(lease_deadline, connection),
        response_id,
        progress.get("cursor") if response_id else None,
    ]


def _checkpoints(batch: Sequence[Mapping[str, Any]]) -> list[Checkpoint | Exception]:
    deadline = _lease_deadline()
    values: list[list[Any] | Exception] = []
    for progress in batch:
        try:
            values.append(_checkpoint_values(progress, deadline))
        except Exception as exc:  # noqa: BLE001 - reported by its own reply
            values.append(exc)
    rows = [row for row in values if not isinstance(row, Exception)]
    saved = _save_checkpoints(rows) if rows else set()
    unsaved = [row for row in rows if row[0] not in saved]
    still_held: set[int] = set()
    if unsaved:  # a stop request (still ours, flagged), or the lease is gone (reaped, or another holder)
        held = Q()
        for message_id, lease_holder, *_ in unsaved:
            held |= Q(pk=message_id, lease_holder=lease_holder)
        still_held = set(Message.objects.filter(held, status=Message.Status.STREAMING).values_list("pk", flat=True))
    outcomes: list[Checkpoint | Exception] = []
    for progress, row in zip(batch, values, strict=True):
        message_id, budget = progress["message_id"], progress.get("budget")
        if isinstance(row, Exception):
            outcomes.append(row)
        elif message_id in saved:
            try:
                exceeded = budget is not None and budget.exceeded()
            except DatabaseError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported by its own reply
                outcomes.append(exc)
                continue
            outcomes.append(Checkpoint.BUDGET_EXCEEDED if exceeded else Checkpoint.SAVED)
        else:
            outcomes.append(Checkpoint.STOP_REQUESTED if message_id in still_held else Checkpoint.LEASE_LOST)
    return outcomes


def _save_checkpoints(rows: Sequence[Sequence[Any]]) -> set[int]:
    """The one UPDATE of a batch; the ids it saved."""
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    bare = {name: quote(Message._meta.get_field(name).column) for name in _CHECKPOINTED}
    column = {name: f"{table}.{quoted}" for name, quoted in bare.items()}
    # PostgreSQL types a VALUES list by its literals: say what each column is.
    casts = ("::bigint", "", "", "::jsonb", "::integer", "::timestamptz", "", "::integer")
    if connection.vendor != "postgresql":
        casts = ("",) * len(casts)
    row = "(" + ", ".join(f"%s{cast}" for cast in casts) + ")"
    sql = (
        "WITH v (id, holder, content, parts, seq, lease, response_id, cursor) AS "
        f"(VALUES {', '.join([row] * len(rows))}) "
        f"UPDATE {table} SET {bare['content']} = v.content, {bare['parts']} = v.parts, {bare['seq']} = v.seq, "
        f"{bare['lease_expires_at']} = v.lease, "
        f"{bare['upstream_response_id']} = CASE WHEN v.response_id <> '' THEN v.response_id "
        f"ELSE {column['upstream_response_id']} END, "
        f"{bare['upstream_cursor']} = CASE WHEN v.response_id <> '' THEN v.cursor ELSE {column['upstream_cursor']} END "
        f"FROM v WHERE {column['id']} = v.id AND {column['status']} = %s AND {column['lease_holder']} = v.holder "
        f"AND NOT {column['cancel_requested']} RETURNING {column['id']}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for values in rows for value in values] + [Message.Status.STREAMING])
        return {found for (found,) in cursor.fetchall()}


_CHECKPOINTED = (
    "id",
    "content",
    "parts",
    "seq",
    "lease_expires_at",
    "upstream_response_id",
    "upstream_cursor",
    "status",
    "lease_holder",
    "cancel_requested",
)


def generation_finish(
    *,
    message_id: int,
    seq: int,
    status: str,
    result: StreamResult,
    lease_holder: str,
    error: object | None = None,
    send_to_first_token_ms: int | None = None,
    parts: Sequence[ReplyPart] = (),
    part_ms: Sequence[int] | None = None,
) -> Message | None:
    """Save the final state of a reply, whatever ended it (its text as in generation_checkpoint); None
    (nothing saved) if the lease was lost."""
    code = getattr(error, "code", "")
    fields = {
        **stored_parts(parts, part_ms),
        "seq": seq,
        "status": status,
        "finish_reason": result.finish_reason or ("cancelled" if status == Message.Status.CANCELLED else ""),
        "error_code": code,
        "error_message": getattr(error, "message", "") if code else "",
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "cached_input_tokens": result.cached_input_tokens,
        "cache_write_tokens": result.cache_write_tokens,
        "reasoning_tokens": result.reasoning_tokens,
        "tokens_estimated": result.tokens_estimated,
        "time_to_first_token_ms": result.time_to_first_token_ms,
        "send_to_first_token_ms": send_to_first_token_ms,
        "duration_ms": result.duration_ms,
        "lease_expires_at": None,
        "lease_holder": "",
        "finished_at": timezone.now(),
    }
    with transaction.atomic():
        # The reply read first, so that its cost (its model's price when it was sent) goes in the one
        # fenced UPDATE of the final save instead of a second UPDATE after it.
        reply = rows.read_one_with(Message, "conversation", f"{Message._meta.db_table}.id = %s", [message_id])
        if reply is None:  # deleted meanwhile (its conversation was): nothing to save, as a lost lease
            return None
        fields.update(cost=_cost_of(reply, result), cost_estimated=result.tokens_estimated)
        # The index from the text in hand: on PostgreSQL in the same UPDATE, on SQLite one FTS5 statement.
        text = {"content": fields["content"], "parts": fields["parts"]}
        fence = [Message.Status.STREAMING, lease_holder]
        if not rows.update(
            Message, message_id, fields, computed=search_index_columns(**text), where=_HELD, params=fence
        ):
            return None
        for name, value in fields.items():
            setattr(reply, name, value)
        search_index_written(message_id=message_id, **text)
        # Reasoning and cached tokens are already in these two counts: adding them would count them twice.
        tokens = (result.input_tokens or 0) + (result.output_tokens or 0)
        usage_add(user_id=reply.conversation.owner_id, tokens=tokens, cost=reply.cost)
    conversation_touch(conversation=reply.conversation)
    return reply


# `DailyUsage.objects.filter(user_id=..., day=...).update(tokens=F("tokens") + ..., cost=F("cost") + ...)`,
# written out (chat/rows.py): every reply's last write.
_ADD_USAGE = (
    f'UPDATE "{DailyUsage._meta.db_table}" SET tokens = tokens + %s, cost = cost + %s'  # noqa: S608 (names only)
    " WHERE user_id = %s AND day = %s"
)


def _usage_added(*, user_id: int, day: date, tokens: int, cost: Decimal) -> bool:
    """Added to the user's row for the day; False if there is none yet."""
    cost_field, day_field = DailyUsage._meta.get_field("cost"), DailyUsage._meta.get_field("day")
    params = [
        tokens,
        cost_field.get_db_prep_save(cost, connection),
        user_id,
        day_field.get_db_prep_save(day, connection),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_ADD_USAGE, params)
        return cursor.rowcount > 0


def usage_add(*, user_id: int, tokens: int, day: date | None = None, cost: Decimal | None = None) -> None:
    """Add a reply's tokens and cost to the user's ledger for the day (UTC), atomically across processes."""
    cost = cost or Decimal(0)
    if tokens <= 0 and cost <= 0:
        return
    usage = {"user_id": user_id, "day": day or timezone.now().astimezone(UTC).date(), "tokens": max(tokens, 0)}
    usage["cost"] = cost
    if _usage_added(**usage):
        return
    try:
        with transaction.atomic():
            DailyUsage.objects.create(**usage)
    except IntegrityError:  # another process created the row first
        _usage_added(**usage)


def _cost_of(reply: Message, result: StreamResult) -> Decimal | None:
    """The reply's cost at the price of its model when it was sent (None: no price known)."""
    usage = costs.Usage.of(result)
    return costs.reply_cost(model_ref=reply.model_reference, usage=usage, moment=reply.created_at)


def _lost_worker(now: datetime) -> Q:
    """Streaming replies whose lease ran out: their worker vanished."""
    return Q(status=Message.Status.STREAMING, lease_expires_at__lt=now)


def _handed_off(now: datetime) -> dict[str, object]:
    """The fields of a reply handed to another worker: waiting again, under no lease, taken up once more."""
    return {
        "status": Message.Status.PENDING,
        "lease_expires_at": None,
        "lease_holder": "",
        "resumes": F("resumes") + 1,
        "resumed_at": now,
    }


def _resumable() -> Q:
    """Replies another worker can take up: a response their provider keeps, no stop asked, not taken up
    CHAT_RESUME_ATTEMPTS times yet."""
    return Q(resumes__lt=settings.CHAT_RESUME_ATTEMPTS, cancel_requested=False) & ~Q(upstream_response_id="")


def replies_hand_off_stale() -> list[Message]:
    """Hand the replies whose worker vanished, and that can be taken up where they were, to another worker:
    those streaming from a response their provider keeps (background mode), taken up fewer than
    CHAT_RESUME_ATTEMPTS times so far. Each waits again (pending) for the job the caller sends.

    Clearing the lease holder fences the old worker out, as in replies_interrupt_stale; the new worker
    goes on from the live log or the last checkpoint (chat.engine.resume).
    """
    now = timezone.now()
    resumable = _lost_worker(now) & _resumable()
    handed = []
    for reply in Message.objects.filter(resumable).only("pk"):
        if Message.objects.filter(pk=reply.pk).filter(resumable).update(**_handed_off(now)):
            handed.append(Message.objects.only("pk", "conversation_id", "resumes").get(pk=reply.pk))
    return handed


def reply_hand_off(
    *,
    message_id: int,
    seq: int,
    lease_holder: str,
    parts: Sequence[ReplyPart],
    part_ms: Sequence[int] | None = None,
    response_id: str,
    cursor: int | None,
) -> bool:
    """A worker shutting down hands a reply it could not finish, one streaming from a response its provider
    keeps, to another worker, with what it has (as a checkpoint saves it). False (nothing saved) if its
    lease was lost, a stop was asked, or the reply was taken up as often as allowed: the caller ends it as
    usual."""
    fields = {**stored_parts(parts, part_ms), "seq": seq, "upstream_response_id": response_id}
    fields.update(upstream_cursor=cursor, **_handed_off(timezone.now()))
    held = _held(message_id=message_id, lease_holder=lease_holder)
    return bool(held.filter(resumes__lt=settings.CHAT_RESUME_ATTEMPTS, cancel_requested=False).update(**fields))


def replies_interrupt_stale() -> list[Message]:
    """Mark replies whose worker vanished as `interrupted`, keeping their last checkpoint.

    A streaming reply whose lease ran out lost its worker (those that can be taken up elsewhere were
    handed off first: replies_hand_off_stale); a pending one waiting longer than the job expiry, since its
    job was last sent (the send, a hand-off or a requeue), was never taken (its job was lost with a
    restart). A requeue counts: the job it sent waits in the queue, and the reply is answered however
    long the server was down. Clearing the lease holder fences the old worker out: should it come back,
    none of its writes lands.
    """
    now = timezone.now()
    expired = now - timedelta(seconds=settings.CHAT_PENDING_EXPIRY_SECONDS)
    # The latest of the send, the last hand-off and the requeue is before `expired` when each of them is.
    job_sent_long_ago = (
        Q(created_at__lt=expired)
        & (Q(resumed_at=None) | Q(resumed_at__lt=expired))
        & (Q(requeued_at=None) | Q(requeued_at__lt=expired))
    )
    stale = _lost_worker(now) | Q(job_sent_long_ago, status=Message.Status.PENDING)
    interrupted = []
    for reply in Message.objects.filter(stale).only("pk", "status"):
        updated = (
            Message.objects.filter(pk=reply.pk, status=reply.status)
            .filter(stale)
            .update(
                status=Message.Status.INTERRUPTED,
                error_code="interrupted",
                error_message="The reply was interrupted (its worker stopped). Continue or retry it.",
                lease_expires_at=None,
                lease_holder="",
                finished_at=now,
                duration_ms=None,
            )
        )
        if updated:
            search_index_messages(message_ids=[reply.pk])
            interrupted.append(Message.objects.select_related("conversation").get(pk=reply.pk))
    return interrupted


def replies_requeue_lost(*, created_before: datetime) -> list[Message]:
    """The pending replies, sent before the job queue was new, whose job must be sent again (each at most once).

    A worker calls this when it finds the job queue new (Redis restarted): the jobs of replies that
    waited then were lost with it. A reply whose job survived gets a second one, which is harmless:
    the claim is a conditional update, so only one job runs it.
    """
    waiting = Message.objects.filter(
        status=Message.Status.PENDING, cancel_requested=False, requeued_at=None, created_at__lt=created_before
    )
    requeued = []
    for reply in waiting.only("pk", "conversation_id"):
        if Message.objects.filter(pk=reply.pk, status=Message.Status.PENDING, requeued_at=None).update(
            requeued_at=timezone.now()
        ):
            requeued.append(reply)
    return requeued


def reply_mark_interrupted(
    *,
    message_id: int,
    seq: int,
    result: StreamResult,
    lease_holder: str,
    send_to_first_token_ms: int | None = None,
    parts: Sequence[ReplyPart] = (),
    part_ms: Sequence[int] | None = None,
    error: ChatError | None = None,
) -> Message | None:
    """A worker shutting down saves what it has of a reply it could not finish (None if its lease was lost);
    `error` says why, if not for the shutdown."""
    error = error or ChatError(
        "interrupted", _("The reply was interrupted (its worker shut down). Continue or retry it.")
    )
    return generation_finish(
        message_id=message_id,
        parts=parts,
        part_ms=part_ms,
        seq=seq,
        status=Message.Status.INTERRUPTED,
        result=result,
        error=error,
        lease_holder=lease_holder,
        send_to_first_token_ms=send_to_first_token_ms,
    )
