"""The worker's side of a reply: claim it, checkpoint it, finish it, reap it when its worker vanished."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from chat import selectors
from chat.errors import ChatError
from chat.models import Conversation, DailyUsage, Message
from chat.prompts import build_request
from chat.providers import registry
from chat.providers.base import GenerationRequest, Provider, StreamResult
from chat.services.conversations import conversation_touch


@dataclass(frozen=True)
class GenerationContext:
    """A claimed reply with everything the engine needs to generate it: the prompt and its provider."""

    reply: Message
    conversation: Conversation
    request: GenerationRequest
    provider: Provider


def _lease_deadline() -> datetime:
    return timezone.now() + timedelta(seconds=settings.CHAT_LEASE_SECONDS)


def generation_begin(*, message_id: int) -> GenerationContext | None:
    """Claim a pending reply for this worker and build its prompt; None if it is no longer pending."""
    claimed = Message.objects.filter(pk=message_id, status=Message.Status.PENDING, cancel_requested=False).update(
        status=Message.Status.STREAMING, started_at=timezone.now(), lease_expires_at=_lease_deadline()
    )
    if not claimed:
        return None
    reply = Message.objects.select_related("conversation").get(pk=message_id)
    conversation = reply.conversation
    try:
        provider, model = registry.resolve(reply.model)
    except registry.UnknownModel:
        generation_finish(
            message_id=message_id,
            content="",
            seq=0,
            status=Message.Status.FAILED,
            result=StreamResult(),
            error=ChatError("unknown_model"),
        )
        return None
    history = list(selectors.messages_for(conversation=conversation).filter(pk__lt=reply.pk))
    request = build_request(
        conversation=conversation, history=history, model=model, max_output_tokens=settings.CHAT_MAX_OUTPUT_TOKENS
    )
    return GenerationContext(reply=reply, conversation=conversation, request=request, provider=provider)


def generation_leases_renew(*, message_ids: list[int]) -> None:
    """One query renews the lease of every reply a worker runs, whether or not text is flowing."""
    if message_ids:
        Message.objects.filter(pk__in=message_ids, status=Message.Status.STREAMING).update(
            lease_expires_at=_lease_deadline()
        )


def generation_checkpoint(*, message_id: int, content: str, seq: int) -> bool:
    """Save the text so far and renew the lease. False when a stop was requested meanwhile."""
    saved = Message.objects.filter(pk=message_id, status=Message.Status.STREAMING, cancel_requested=False).update(
        content=content, seq=seq, lease_expires_at=_lease_deadline()
    )
    return bool(saved)


def generation_finish(
    *, message_id: int, content: str, seq: int, status: str, result: StreamResult, error: object | None = None
) -> Message:
    """Save the final state of a reply, whatever ended it."""
    code = getattr(error, "code", "")
    fields = {
        "content": content,
        "seq": seq,
        "status": status,
        "finish_reason": result.finish_reason or ("cancelled" if status == Message.Status.CANCELLED else ""),
        "error_code": code,
        "error_message": getattr(error, "message", "") if code else "",
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "tokens_estimated": result.tokens_estimated,
        "time_to_first_token_ms": result.time_to_first_token_ms,
        "duration_ms": result.duration_ms,
        "lease_expires_at": None,
        "finished_at": timezone.now(),
    }
    with transaction.atomic():
        Message.objects.filter(pk=message_id).update(**fields)
        reply = Message.objects.select_related("conversation").get(pk=message_id)
        usage_add(user_id=reply.conversation.owner_id, tokens=(result.input_tokens or 0) + (result.output_tokens or 0))
    conversation_touch(conversation=reply.conversation)
    return reply


def usage_add(*, user_id: int, tokens: int, day: date | None = None) -> None:
    """Add a reply's tokens to the user's ledger for the day (UTC), atomically across processes."""
    if tokens <= 0:
        return
    day = day or timezone.now().astimezone(UTC).date()
    if DailyUsage.objects.filter(user_id=user_id, day=day).update(tokens=F("tokens") + tokens):
        return
    try:
        with transaction.atomic():
            DailyUsage.objects.create(user_id=user_id, day=day, tokens=tokens)
    except IntegrityError:  # another process created the row first
        DailyUsage.objects.filter(user_id=user_id, day=day).update(tokens=F("tokens") + tokens)


def replies_interrupt_stale() -> list[Message]:
    """Mark replies whose worker vanished as `interrupted`, keeping their last checkpoint.

    A streaming reply whose lease ran out lost its worker; a pending one older than the job
    expiry was never taken (its job was lost with a restart).
    """
    now = timezone.now()
    stale = Q(status=Message.Status.STREAMING, lease_expires_at__lt=now) | Q(
        status=Message.Status.PENDING, created_at__lt=now - timedelta(seconds=settings.CHAT_PENDING_EXPIRY_SECONDS)
    )
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
                finished_at=now,
                duration_ms=None,
            )
        )
        if updated:
            interrupted.append(Message.objects.select_related("conversation").get(pk=reply.pk))
    return interrupted


def reply_mark_interrupted(*, message_id: int, content: str, seq: int, result: StreamResult) -> Message:
    """A worker shutting down saves what it has of a reply it could not finish."""
    error = ChatError("interrupted", "The reply was interrupted (its worker shut down). Continue or retry it.")
    return generation_finish(
        message_id=message_id, content=content, seq=seq, status=Message.Status.INTERRUPTED, result=result, error=error
    )
