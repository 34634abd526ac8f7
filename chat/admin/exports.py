"""Transcript exports for staff: every field as JSON, or a readable Markdown document in which no
user- or model-written text can become markup."""

import json
import re
from datetime import date, datetime

from django.utils import timezone

from chat.models import Conversation, Message


def _message_record(message: Message) -> dict[str, object]:
    record = {field.attname: field.value_from_object(message) for field in Message._meta.concrete_fields}
    record["superseded"] = message.superseded_at is not None
    record["tokens_per_second"] = message.tokens_per_second
    return record


def _conversation_record(conversation: Conversation) -> dict[str, object]:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "owner": {"id": conversation.owner_id, "username": conversation.owner.get_username()},
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "parameters": conversation.parameters,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "messages": [_message_record(message) for message in conversation.transcript],
    }


def _json_value(value: object) -> str:
    """Full-precision ISO 8601 timestamps (DjangoJSONEncoder would cut them to milliseconds)."""
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def transcript_export_json(*, conversations: list[Conversation], exported_by: str, exported_at: datetime) -> str:
    """Every field of every message, in order, as one JSON document."""
    document = {
        "exported_at": exported_at,
        "exported_by": exported_by,
        "conversations": [_conversation_record(conversation) for conversation in conversations],
    }
    return json.dumps(document, default=_json_value, indent=2, ensure_ascii=False)


_MARKDOWN_INLINE_SPECIALS = re.compile(r"([\\`*_\[\]<>&!~|#])")


def _inline(value: object) -> str:
    """Plain text on one Markdown line: no emphasis, links, HTML or entities can come of it."""
    return _MARKDOWN_INLINE_SPECIALS.sub(r"\\\1", " ".join(str(value).split()))


def _literal_block(text: str) -> str:
    """A fenced block longer than any backtick run inside, so the text can neither close it nor render."""
    longest_run = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest_run + 1)
    return f"{fence}text\n{text}\n{fence}"


def _stamp(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z") if moment else "-"


def _message_markdown(number: int, message: Message) -> str:
    heading = [message.get_role_display(), message.get_status_display()]
    if message.model or message.provider:
        heading.append(_inline(message.model_reference))
    if message.superseded_at:
        heading.append("superseded")
    lines = [f"### {number}. " + " · ".join(heading), "", f"- Created: {_stamp(message.created_at)}"]
    if message.started_at or message.finished_at:
        lines.append(f"- Started: {_stamp(message.started_at)} · finished: {_stamp(message.finished_at)}")
    if message.superseded_at:
        lines.append(f"- Superseded: {_stamp(message.superseded_at)}")
    if message.finish_reason:
        lines.append(f"- Finish reason: {_inline(message.finish_reason)}")
    if message.error_code or message.error_message:
        error = " ".join(_inline(part) for part in (message.error_code, message.error_message) if part)
        lines.append(f"- Error: {error}")
    if message.input_tokens is not None or message.output_tokens is not None:
        estimated = " (estimated)" if message.tokens_estimated else ""
        details = "".join(f", {label} {count}" for label, count in message.token_details)
        lines.append(f"- Tokens: in {message.input_tokens or 0}, out {message.output_tokens or 0}{details}{estimated}")
    if message.duration_ms is not None:
        lines.append(
            f"- Time to first token: {message.time_to_first_token_ms or 0} ms · duration: {message.duration_ms} ms"
            f" · {message.tokens_per_second or 0} tokens/s"
        )
    reasoning = ["", "Reasoning:", "", _literal_block(message.reasoning), "", "Answer:"] if message.reasoning else []
    return "\n".join([*lines, *reasoning, "", _literal_block(message.content)])


def _conversation_markdown(conversation: Conversation) -> str:
    parts = [
        f"# Conversation {conversation.pk}: {_inline(conversation.title or 'untitled')}",
        "",
        f"- Owner: {_inline(conversation.owner.get_username())} (id {conversation.owner_id})",
        f"- Model: {_inline(conversation.model)}",
        f"- Parameters: {_inline(conversation.parameter_summary or 'defaults')}",
        f"- Started: {_stamp(conversation.created_at)} · last activity: {_stamp(conversation.updated_at)}",
        f"- Messages: {len(conversation.transcript)}",
    ]
    if conversation.system_prompt:
        parts += ["", "## System prompt", "", _literal_block(conversation.system_prompt)]
    parts += ["", "## Messages"]
    for number, message in enumerate(conversation.transcript, start=1):
        parts += ["", _message_markdown(number, message)]
    return "\n".join(parts)


def transcript_export_markdown(*, conversations: list[Conversation], exported_by: str, exported_at: datetime) -> str:
    """A readable transcript; every user- or model-written text is inert plain text."""
    header = f"Exported by {_inline(exported_by)} at {_stamp(exported_at)}."
    return "\n\n---\n\n".join([header, *(_conversation_markdown(c) for c in conversations)]) + "\n"
