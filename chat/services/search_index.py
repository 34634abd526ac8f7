"""The search index, kept in step by the services that write what it covers (send, edit, a reply's end,
rename, delete, import), inside their transactions. Not triggers: this module is the one place that
knows how each database indexes, and chat/search.py the one that queries it.

PostgreSQL: the tsvector columns of messages and conversations (CHAT_SEARCH_CONFIG). SQLite: the FTS5
tables chat_message_fts and chat_conversation_fts, whose rowid is the message's or conversation's id
(migration 0020). A row the admin deleted leaves an FTS5 row behind, which search never returns: it
joins the index with the messages that exist.
"""

from collections.abc import Iterable

from django.conf import settings
from django.db import connection

from chat.models import Conversation, Message


def _reasoning(parts: list[dict]) -> str:
    return " ".join(part["text"] for part in parts if part.get("kind") == "reasoning")


def search_index_messages(*, message_ids: Iterable[int]) -> None:
    """(Re)index these messages' answer and reasoning as they are stored now."""
    rows = [
        (pk, content, _reasoning(parts))
        for pk, content, parts in Message.objects.filter(pk__in=list(message_ids)).values_list("pk", "content", "parts")
    ]
    if not rows:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            config = settings.CHAT_SEARCH_CONFIG
            cursor.executemany(
                "UPDATE chat_message SET search_vector = to_tsvector(%s::regconfig, %s),"
                " search_reasoning = to_tsvector(%s::regconfig, %s) WHERE id = %s",
                [(config, content, config, reasoning, pk) for pk, content, reasoning in rows],
            )
        else:
            cursor.executemany("DELETE FROM chat_message_fts WHERE rowid = %s", [(pk,) for pk, _, _ in rows])
            cursor.executemany("INSERT INTO chat_message_fts (rowid, content, reasoning) VALUES (%s, %s, %s)", rows)


def search_index_columns(*, content: str, parts: list[dict]) -> dict[str, tuple[str, list[str]]]:
    """On PostgreSQL, a message's index columns for this answer and these parts, as SQL expressions (with
    their parameters) of the INSERT or UPDATE that writes them (chat/rows.py's `computed`): one
    statement, nothing read back. {} on SQLite (search_index_written)."""
    if connection.vendor != "postgresql":
        return {}
    config = settings.CHAT_SEARCH_CONFIG
    return {
        "search_vector": ("to_tsvector(%s::regconfig, %s)", [config, content]),
        "search_reasoning": ("to_tsvector(%s::regconfig, %s)", [config, _reasoning(parts)]),
    }


def search_index_written(*, message_id: int, content: str, parts: list[dict]) -> None:
    """Index a message just written with this answer and these parts, without reading it back: on SQLite
    its FTS5 row, replaced in one statement; on PostgreSQL nothing, the INSERT or UPDATE that wrote the
    text wrote its columns too (search_index_columns)."""
    if connection.vendor == "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT OR REPLACE INTO chat_message_fts (rowid, content, reasoning) VALUES (%s, %s, %s)",
            [message_id, content, _reasoning(parts)],
        )


def search_index_conversation_title(*, conversation_id: int, title: str) -> None:
    """(Re)index a conversation's title as just written, without reading it back."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "UPDATE chat_conversation SET search_vector = to_tsvector(%s::regconfig, %s) WHERE id = %s",
                [settings.CHAT_SEARCH_CONFIG, title, conversation_id],
            )
        else:
            cursor.execute("DELETE FROM chat_conversation_fts WHERE rowid = %s", [conversation_id])
            cursor.execute("INSERT INTO chat_conversation_fts (rowid, title) VALUES (%s, %s)", [conversation_id, title])


def search_index_conversations(*, conversation_ids: Iterable[int]) -> None:
    """(Re)index these conversations' titles as they are stored now."""
    rows = list(Conversation.objects.filter(pk__in=list(conversation_ids)).values_list("pk", "title"))
    if not rows:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.executemany(
                "UPDATE chat_conversation SET search_vector = to_tsvector(%s::regconfig, %s) WHERE id = %s",
                [(settings.CHAT_SEARCH_CONFIG, title, pk) for pk, title in rows],
            )
        else:
            cursor.executemany("DELETE FROM chat_conversation_fts WHERE rowid = %s", [(pk,) for pk, _ in rows])
            cursor.executemany("INSERT INTO chat_conversation_fts (rowid, title) VALUES (%s, %s)", rows)


def search_index_forget(*, conversation: Conversation) -> None:
    """Take a conversation about to be deleted, and its messages, out of the index (PostgreSQL's
    columns go with the rows; SQLite's FTS5 rows must be deleted)."""
    if connection.vendor == "postgresql":
        return
    message_ids = [(pk,) for pk in conversation.messages.values_list("pk", flat=True)]
    with connection.cursor() as cursor:
        cursor.executemany("DELETE FROM chat_message_fts WHERE rowid = %s", message_ids)
        cursor.execute("DELETE FROM chat_conversation_fts WHERE rowid = %s", [conversation.pk])


# A reply's reasoning text, from its parts, in each database's SQL (for rebuilding in one statement).
REASONING_SQL = {
    "postgresql": "coalesce((SELECT string_agg(p->>'text', ' ') FROM jsonb_array_elements(CASE WHEN"
    " jsonb_typeof(parts) = 'array' THEN parts ELSE '[]' END) p WHERE p->>'kind' = 'reasoning'), '')",
    "sqlite": "coalesce((SELECT group_concat(json_extract(p.value, '$.text'), ' ') FROM json_each(chat_message.parts) p"
    " WHERE json_extract(p.value, '$.kind') = 'reasoning'), '')",
}


def search_index_rebuild() -> int:
    """Index every message and conversation again, set-based (migration 0020, `manage.py search_reindex`
    after CHAT_SEARCH_CONFIG changed, rows written past the services); returns how many messages."""
    reasoning = REASONING_SQL[connection.vendor]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            config = settings.CHAT_SEARCH_CONFIG
            cursor.execute(
                "UPDATE chat_message SET search_vector = to_tsvector(%s::regconfig, content),"
                f" search_reasoning = to_tsvector(%s::regconfig, {reasoning})",
                [config, config],
            )
            cursor.execute("UPDATE chat_conversation SET search_vector = to_tsvector(%s::regconfig, title)", [config])
        else:
            cursor.execute("DELETE FROM chat_message_fts")
            cursor.execute(
                f"INSERT INTO chat_message_fts (rowid, content, reasoning) SELECT id, content, {reasoning}"
                " FROM chat_message"
            )
            cursor.execute("DELETE FROM chat_conversation_fts")
            cursor.execute("INSERT INTO chat_conversation_fts (rowid, title) SELECT id, title FROM chat_conversation")
    return Message.objects.count()
