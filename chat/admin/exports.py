"""Transcript exports for staff: every field as JSON, or a readable Markdown document in which no
user- or model-written text can become markup."""

import json
import re
from datetime import date, datetime

from django.utils import timezone

from chat.admin.selectors import TranscriptEntry, model_label, transcript_tree
from chat.models import Conversation, Message


def _message_record(entry: TranscriptEntry) -> dict[str, object]:
    message = entry.message
    record = {field.attname: field.value_from_object(message) for field in Message._meta.concrete_fields}
    record["on_current_path"] = entry.current
    record["sibling_index"] = entry.index
    record["sibling_count"] = entry.count
    record["superseded"] = message.superseded_at is not None
    record["tokens_per_second"] = message.tokens_per_second
    # Files are referenced, not embedded: staff fetch each through the admin (audited).
    record["attachments"] = [
        {"id": a.pk, "name": a.name, "kind": a.kind, "mime": a.mime, "size": a.size, "sha256": a.sha256}
        for a in message.attachments.all()
    ]
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
        "current_leaf_id": conversation.current_leaf_id,
        # In id order; each has its `parent_id`, so the whole tree can be rebuilt.
        "messages": [_message_record(entry) for entry in sorted(_tree(conversation), key=lambda e: e.message.pk)],
    }


def _tree(conversation: Conversation) -> list[TranscriptEntry]:
    return transcript_tree(conversation=conversation, messages=conversation.transcript)


def _json_value(value: object) -> str:
    """Full-precision ISO 8601 timestamps (DjangoJSONEncoder would cut them to milliseconds)."""
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def transcript_export_json(*, conversations: list[Conversation], exported_by: str, exported_at: datetime) -> str:
    """Every field of every message (its parent too), in order, as one JSON document."""
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


def _message_markdown(label: str, entry: TranscriptEntry) -> str:
    message = entry.message
    heading = [message.get_role_display(), message.get_status_display()]
    if message.model or message.provider:
        heading.append(_inline(entry.model_label))
    if entry.count > 1:
        heading.append(f"version {entry.index} of {entry.count}")
    if message.superseded_at:
        heading.append("superseded")
    lines = [f"### {label} " + " · ".join(heading), "", f"- Id: {message.pk} · after: {message.parent_id or '-'}"]
    lines.append(f"- Created: {_stamp(message.created_at)}")
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
    """The current path, numbered; then every other branch, each from where it leaves the path."""
    entries = _tree(conversation)
    path = [entry for entry in entries if entry.current]
    others = [entry for entry in entries if not entry.current]
    parts = [
        f"# Conversation {conversation.pk}: {_inline(conversation.title or 'untitled')}",
        "",
        f"- Owner: {_inline(conversation.owner.get_username())} (id {conversation.owner_id})",
        f"- Model: {_inline(model_label(conversation.model))} · {_inline(conversation.model)}",
        f"- Parameters: {_inline(conversation.parameter_summary or 'defaults')}",
        f"- Started: {_stamp(conversation.created_at)} · last activity: {_stamp(conversation.updated_at)}",
        f"- Messages: {len(entries)} ({len(path)} on the current path, {len(others)} on other branches)",
    ]
    if conversation.system_prompt:
        parts += ["", "## System prompt", "", _literal_block(conversation.system_prompt)]
    parts += ["", "## Messages"]
    for number, entry in enumerate(path, start=1):
        parts += ["", _message_markdown(f"{number}.", entry)]
    if others:
        parts += ["", "## Other branches"]
    off_path = {entry.message.pk for entry in others}
    for entry in others:
        if entry.message.parent_id not in off_path:
            start = f"after message {entry.message.parent_id}" if entry.message.parent_id else "as a first message"
            parts += ["", f"### A branch {start}"]
        parts += ["", _message_markdown(f"#{entry.message.pk}", entry)]
    return "\n".join(parts)


def transcript_export_markdown(*, conversations: list[Conversation], exported_by: str, exported_at: datetime) -> str:
    """A readable transcript; every user- or model-written text is inert plain text."""
    header = f"Exported by {_inline(exported_by)} at {_stamp(exported_at)}."
    return "\n\n---\n\n".join([header, *(_conversation_markdown(c) for c in conversations)]) + "\n"
