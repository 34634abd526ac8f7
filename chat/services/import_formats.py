"""The files a user can import, read into one neutral shape, every field checked before anything is
written. A malformed file raises ChatError("invalid_import") naming the conversation and the field.

streamchat export (docs/protocol.md, "Export and import"): a ZIP whose conversations.json is
{"format": "streamchat-export", "version": 1, "conversations": [...]}, every message with its parent.
ChatGPT: its data export's conversations.json (alone or in its ZIP), a list of conversations whose
`mapping` is a tree of nodes. System messages become the system prompt, tool messages and content
that is not text are left out (their children move up to the nearest message kept), null parts are
skipped, every branch is kept and `current_node` becomes the current leaf.
"""

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chat.errors import ChatError
from chat.models import PROVIDER_KEYS, Message, stored_parts

FORMAT, VERSION = "streamchat-export", 1
DOCUMENT = "conversations.json"
ROLES = {Message.Role.USER, Message.Role.ASSISTANT}
STATUSES = set(Message.Status.values)
PART_KINDS = {"text", "reasoning"}
# The schema of an exported message besides `id`, `parent` and `parts`: each with the check of its value.
TEXT, OPTIONAL_INT, MOMENT, OPTIONAL_MOMENT = "text", "int?", "moment", "moment?"
MESSAGE_FIELDS: dict[str, str] = {
    "role": TEXT,
    "content": TEXT,
    "status": TEXT,
    "client_id": TEXT,
    "provider": TEXT,
    "model": TEXT,
    "finish_reason": TEXT,
    "error_code": TEXT,
    "error_message": TEXT,
    "input_tokens": OPTIONAL_INT,
    "output_tokens": OPTIONAL_INT,
    "cached_input_tokens": OPTIONAL_INT,
    "cache_write_tokens": OPTIONAL_INT,
    "reasoning_tokens": OPTIONAL_INT,
    "tokens_estimated": "bool",
    "time_to_first_token_ms": OPTIONAL_INT,
    "send_to_first_token_ms": OPTIONAL_INT,
    "duration_ms": OPTIONAL_INT,
    "seq": "int",
    "created_at": MOMENT,
    "updated_at": MOMENT,
    "started_at": OPTIONAL_MOMENT,
    "finished_at": OPTIONAL_MOMENT,
    "superseded_at": OPTIONAL_MOMENT,
}
CONVERSATION_FIELDS: dict[str, str] = {
    "title": TEXT,
    "title_by_user": "bool",
    "model": TEXT,
    "system_prompt": TEXT,
    "created_at": MOMENT,
    "updated_at": MOMENT,
    "pinned_at": OPTIONAL_MOMENT,
    "archived_at": OPTIONAL_MOMENT,
}


def export_key(conversation: Any) -> str:
    """A conversation's identity in exports: where it was imported from, else this server's row (so
    importing one's own export skips the conversations it came from)."""
    return conversation.imported_from or f"streamchat:{conversation.pk}:{conversation.created_at.isoformat()}"


@dataclass
class ImportedMessage:
    ref: str  # the message's id in the file
    parent: str | None
    fields: dict[str, Any]


@dataclass
class ImportedConversation:
    key: str  # what makes importing it twice create nothing new
    fields: dict[str, Any]
    messages: list[ImportedMessage] = field(default_factory=list)  # parents before children
    current_leaf: str | None = None


class Rejected:
    """Builds the error of one conversation: which one (number and title) and which field."""

    def __init__(self, number: int, title: object) -> None:
        self.where = f"Conversation {number}" + (f" (“{title[:80]}”)" if isinstance(title, str) and title else "")

    def __call__(self, field_name: str, problem: str) -> ChatError:
        return ChatError("invalid_import", f"{self.where}: `{field_name}` {problem}.")


def _file_error(problem: str) -> ChatError:
    return ChatError("invalid_import", problem)


def read_document(payload: bytes, *, max_bytes: int) -> Any:
    """The JSON document of an upload: a ZIP's conversations.json, or the bytes themselves."""
    if payload[:4] == b"PK\x03\x04":
        try:
            archive = zipfile.ZipFile(io.BytesIO(payload))
            info = archive.getinfo(DOCUMENT)
        except (zipfile.BadZipFile, KeyError):
            raise _file_error(f"The ZIP file has no {DOCUMENT}.") from None
        if info.file_size > max_bytes:  # a small ZIP may unpack to a huge file
            raise ChatError("import_too_large", f"{DOCUMENT} unpacks to more than {max_bytes:,} bytes.")
        payload = archive.read(info)
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise _file_error("The file is neither a ZIP with conversations.json nor valid JSON.") from None


Progress = Callable[[int, int], None]  # (conversations checked, conversations in the file)
PROGRESS_EVERY = 50


def conversations_in(document: Any, *, progress: Progress | None = None) -> tuple[str, list[ImportedConversation]]:
    """(kind, conversations) of a document, every conversation checked; `progress` is told every
    PROGRESS_EVERY conversations and at the end."""
    if isinstance(document, dict) and document.get("format") == FORMAT:
        if document.get("version") != VERSION:
            raise _file_error(
                f"This export is version {document.get('version')!r}; this server reads version {VERSION}."
            )
        items = document.get("conversations")
        read: Callable[[Any, Rejected], ImportedConversation] = _streamchat_conversation
        kind = "streamchat"
    elif isinstance(document, list):
        items, read, kind = document, _chatgpt_conversation, "chatgpt"
    else:
        raise _file_error("The file is neither a streamchat export nor a ChatGPT conversations.json.")
    if not isinstance(items, list):
        raise _file_error("`conversations` must be a list.")
    conversations = []
    for number, item in enumerate(items, start=1):
        reject = Rejected(number, item.get("title") if isinstance(item, dict) else None)
        if not isinstance(item, dict):
            raise reject("conversation", "must be an object")
        conversations.append(read(item, reject))
        if progress is not None and (number % PROGRESS_EVERY == 0 or number == len(items)):
            progress(number, len(items))
    return kind, conversations


# --- Checking values ----------------------------------------------------------------------------


def _moment(value: object) -> datetime | None:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        return moment if moment.tzinfo is not None else None
    return None


def _checked(value: object, kind: str, name: str, reject: Rejected) -> Any:
    optional = kind.endswith("?")
    if optional and value is None:
        return None
    base = kind.rstrip("?")
    if base == TEXT and isinstance(value, str):
        if "\x00" in value:
            raise reject(name, "must not contain the NUL character")
        return value
    if base in {"int"} and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if base == "bool" and isinstance(value, bool):
        return value
    if base == "moment" and (moment := _moment(value)) is not None:
        return moment
    expected = {
        TEXT: "text",
        "int": "a whole number ≥ 0",
        "bool": "true or false",
        "moment": "an ISO 8601 time with its offset",
    }
    raise reject(name, f"must be {expected[base]}{' or null' if optional else ''}")


def _parts(value: object, name: str, reject: Rejected) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise reject(name, "must be a list")
    parts = []
    for index, part in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(part, dict) or part.get("kind") not in PART_KINDS:
            raise reject(f"{where}.kind", "must be text or reasoning")
        allowed = {"kind", "text", "duration_ms", *PROVIDER_KEYS}
        if set(part) - allowed:
            raise reject(where, f"may only hold {', '.join(sorted(allowed))}")
        _checked(part.get("text"), TEXT, f"{where}.text", reject)
        if "duration_ms" in part:
            _checked(part["duration_ms"], OPTIONAL_INT, f"{where}.duration_ms", reject)
        parts.append(part)
    return parts


# --- streamchat exports ---------------------------------------------------------------------------


def _streamchat_conversation(item: dict[str, Any], reject: Rejected) -> ImportedConversation:
    key = _checked(item.get("key"), TEXT, "key", reject)
    if not key or len(key) > 200:
        raise reject("key", "must be 1 to 200 characters")
    fields = {name: _checked(item.get(name), kind, name, reject) for name, kind in CONVERSATION_FIELDS.items()}
    messages = item.get("messages")
    if not isinstance(messages, list):
        raise reject("messages", "must be a list")
    seen: set[str] = set()
    imported = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise reject(where, "must be an object")
        ref, parent = str(message.get("id")), message.get("parent")
        if not isinstance(message.get("id"), int) or ref in seen:
            raise reject(f"{where}.id", "must be a whole number, once per conversation")
        if parent is not None and str(parent) not in seen:
            raise reject(f"{where}.parent", "must be null or the id of a message listed before it")
        values = {
            name: _checked(message.get(name), kind, f"{where}.{name}", reject) for name, kind in MESSAGE_FIELDS.items()
        }
        if values["role"] not in ROLES:
            raise reject(f"{where}.role", "must be user or assistant")
        if values["status"] not in STATUSES:
            raise reject(f"{where}.status", f"must be one of {', '.join(sorted(STATUSES))}")
        values["parts"] = _parts(message.get("parts", []), f"{where}.parts", reject)
        seen.add(ref)
        imported.append(ImportedMessage(ref=ref, parent=None if parent is None else str(parent), fields=values))
    leaf = item.get("current_leaf")
    if leaf is not None and str(leaf) not in seen:
        raise reject("current_leaf", "must be null or the id of one of its messages")
    return ImportedConversation(
        key=key, fields=fields, messages=imported, current_leaf=None if leaf is None else str(leaf)
    )


# --- ChatGPT exports ------------------------------------------------------------------------------


def _epoch(value: object, name: str, reject: Rejected) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 32503680000:
        return datetime.fromtimestamp(value, tz=UTC)
    raise reject(name, "must be a time in seconds since 1970, or null")


def _chatgpt_text(message: dict[str, Any], where: str, reject: Rejected) -> str:
    content = message.get("content")
    if not isinstance(content, dict):
        raise reject(f"{where}.content", "must be an object")
    kind = content.get("content_type")
    if kind == "code":
        code = _checked(content.get("text", ""), TEXT, f"{where}.content.text", reject)
        return f"```\n{code}\n```" if code.strip() else ""
    if kind not in {"text", "multimodal_text"}:
        return ""  # browsing results, images, execution output...: not text we can show
    parts = content.get("parts")
    if not isinstance(parts, list):
        raise reject(f"{where}.content.parts", "must be a list")
    texts = []
    for index, part in enumerate(parts):
        if isinstance(part, str):
            texts.append(_checked(part, TEXT, f"{where}.content.parts[{index}]", reject))
        elif part is not None and not isinstance(part, dict):  # null parts are skipped; objects are attachments
            raise reject(f"{where}.content.parts[{index}]", "must be text, an object or null")
    return "\n\n".join(text for text in texts if text)


def _chatgpt_conversation(item: dict[str, Any], reject: Rejected) -> ImportedConversation:
    key = item.get("conversation_id") or item.get("id")
    if not isinstance(key, str) or not key or len(key) > 190:
        raise reject("conversation_id", "must be the conversation's id (text)")
    mapping = item.get("mapping")
    if not isinstance(mapping, dict) or not mapping:
        raise reject("mapping", "must be an object of nodes")
    created = _epoch(item.get("create_time"), "create_time", reject) or datetime.now(tz=UTC)
    updated = _epoch(item.get("update_time"), "update_time", reject) or created
    title = _checked(item.get("title") or "", TEXT, "title", reject)[:200]
    kept: dict[str, str | None] = {}  # node id -> the id of the nearest kept message above it (or itself)
    messages: list[ImportedMessage] = []
    system_prompts: list[str] = []
    for node_id, node in _nodes_in_order(mapping, reject):
        where = f"mapping.{node_id}"
        parent = node.get("parent")
        above = kept.get(parent) if parent is not None else None
        message = node.get("message")
        if message is None:
            kept[node_id] = above
            continue
        if not isinstance(message, dict):
            raise reject(f"{where}.message", "must be an object or null")
        author = message.get("author")
        role = author.get("role") if isinstance(author, dict) else None
        if role not in {"system", "user", "assistant", "tool"}:
            raise reject(f"{where}.message.author.role", "must be system, user, assistant or tool")
        text = _chatgpt_text(message, f"{where}.message", reject)
        if role in {"system", "tool"} or not text.strip():
            if role == "system" and text.strip():
                system_prompts.append(text)
            kept[node_id] = above
            continue
        moment = _epoch(message.get("create_time"), f"{where}.message.create_time", reject) or created
        metadata = message.get("metadata") if isinstance(message.get("metadata"), dict) else {}
        slug = metadata.get("model_slug") if isinstance(metadata.get("model_slug"), str) else ""
        fields = {
            "role": role,
            **stored_parts([("text", text)]),
            "status": Message.Status.COMPLETE
            if message.get("status", "finished_successfully") == "finished_successfully"
            else Message.Status.INTERRUPTED,
            "provider": "openai" if role == "assistant" and slug else "",
            "model": f"openai:{slug}" if role == "assistant" and slug else "",
            "created_at": moment,
            "updated_at": moment,
        }
        messages.append(ImportedMessage(ref=node_id, parent=above, fields=fields))
        kept[node_id] = node_id
    current = item.get("current_node")
    fields = {
        "title": title,
        "title_by_user": False,
        "system_prompt": "\n\n".join(system_prompts),
        "created_at": created,
        "updated_at": updated,
        "archived_at": updated if item.get("is_archived") is True else None,
    }
    return ImportedConversation(
        key=f"chatgpt:{key}", fields=fields, messages=messages, current_leaf=kept.get(current) if current else None
    )


def _nodes_in_order(mapping: dict[str, Any], reject: Rejected) -> list[tuple[str, dict[str, Any]]]:
    """Every node, parents before children; a parent that is not in the mapping, or a loop, is an error."""
    for node_id, node in mapping.items():
        if not isinstance(node, dict):
            raise reject(f"mapping.{node_id}", "must be an object")
        parent = node.get("parent")
        if parent is not None and parent not in mapping:
            raise reject(f"mapping.{node_id}.parent", "must be null or the id of a node in the mapping")
    children: dict[str | None, list[str]] = {}
    for node_id, node in mapping.items():
        children.setdefault(node.get("parent"), []).append(node_id)
    ordered = []
    pending = list(reversed(children.get(None, [])))
    while pending:
        node_id = pending.pop()
        ordered.append((node_id, mapping[node_id]))
        pending.extend(reversed(children.get(node_id, [])))
    if len(ordered) != len(mapping):
        loop = next(node_id for node_id in mapping if node_id not in dict(ordered))
        raise reject(f"mapping.{loop}.parent", "makes a loop: the node is its own ancestor")
    return ordered
