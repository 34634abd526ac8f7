"""A user's data, taken out: one ZIP with conversations.json (every conversation, message, part and
branch, in the schema chat/services/import_formats.py reads back) and one Markdown transcript per
conversation (the admin's inert Markdown: no text in it can become markup)."""

import io
import json
import re
import zipfile
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from chat.admin.exports import transcript_export_markdown
from chat.admin.selectors import transcripts_for_export
from chat.models import Conversation, Message
from chat.services.import_formats import CONVERSATION_FIELDS, DOCUMENT, FORMAT, MESSAGE_FIELDS, VERSION, export_key


def _value(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def _message_record(message: Message) -> dict[str, Any]:
    record: dict[str, Any] = {"id": message.pk, "parent": message.parent_id}
    record.update({name: _value(getattr(message, name)) for name in MESSAGE_FIELDS})
    record["parts"] = message.parts
    return record


def conversation_record(conversation: Conversation) -> dict[str, Any]:
    """One conversation in the export schema; its messages (`transcript`, in id order) each with its parent."""
    record: dict[str, Any] = {"key": export_key(conversation)}
    record.update({name: _value(getattr(conversation, name)) for name in CONVERSATION_FIELDS})
    record["current_leaf"] = conversation.current_leaf_id
    record["messages"] = [_message_record(message) for message in conversation.transcript]
    return record


def _filename(number: int, conversation: Conversation) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", conversation.title.lower()).strip("-")[:60] or "untitled"
    return f"markdown/{number:05d}-{slug}.md"


def export_zip(*, user: AbstractBaseUser, exported_at: datetime) -> bytes:
    """The ZIP of every conversation of the user's (two queries for the rows)."""
    conversations = transcripts_for_export(conversations=Conversation.objects.filter(owner=user))
    document = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": exported_at.isoformat(),
        "conversations": [conversation_record(conversation) for conversation in conversations],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(DOCUMENT, json.dumps(document, ensure_ascii=False, indent=1))
        for number, conversation in enumerate(conversations, start=1):
            markdown = transcript_export_markdown(
                conversations=[conversation], exported_by=user.get_username(), exported_at=exported_at
            )
            archive.writestr(_filename(number, conversation), markdown)
    return buffer.getvalue()
