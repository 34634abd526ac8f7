"""Full-text search of a user's own conversations: their titles and message text (the reasoning only
when asked), ranked, each hit with a highlighted snippet. One query per database, both raw SQL: the
PostgreSQL one reads the tsvector columns through their GIN indexes, the SQLite one the FTS5 tables
(the index is kept in step by chat/services/search_index.py).

A query is its words (letters and digits), every one required, the last also as a prefix (results
while typing). Snippets mark matches with two private-use characters, turned into segments
`{"text", "mark"}` here, so no client ever parses markup out of the user's or a model's text.
"""

import re
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.utils.translation import gettext as _

from chat.errors import ChatError

QUERY_MAX_CHARS = 200
QUERY_MAX_WORDS = 12
START, STOP = "\ue000", "\ue001"
# PostgreSQL's headline drops what its parser takes for an HTML tag: `<` is swapped for this, and back.
LESS_THAN = "\ue002"
WORD = re.compile(r"[^\W_]+")
SNIPPET_WORDS = 24


@dataclass(frozen=True)
class SearchHit:
    """One result: a message (or a conversation whose title matched, `message_id` None), its rank,
    and highlighted text as segments."""

    conversation_id: int
    title: str
    message_id: int | None
    role: str | None
    score: float
    snippet: list[dict[str, object]] = field(default_factory=list)
    title_snippet: list[dict[str, object]] = field(default_factory=list)


def segments(highlighted: str) -> list[dict[str, object]]:
    """Text with START/STOP markers -> [{"text", "mark"}], marked segments being the matches."""
    pieces = []
    for index, piece in enumerate(re.split(f"[{START}{STOP}]", highlighted)):
        if piece:
            pieces.append({"text": piece.replace(LESS_THAN, "<"), "mark": index % 2 == 1})
    return pieces


def query_words(query: object) -> list[str]:
    if not isinstance(query, str) or len(query) > QUERY_MAX_CHARS:
        raise ChatError("invalid", _("`q` must be text of at most %(max)s characters.") % {"max": QUERY_MAX_CHARS})
    return [word.lower() for word in WORD.findall(query)][:QUERY_MAX_WORDS]


def search_for(*, user: AbstractBaseUser, query: object, reasoning: bool = False) -> list[SearchHit]:
    """The user's best matches for `query`, best first (at most CHAT_SEARCH_RESULTS); none for no words."""
    words = query_words(query)
    if not words or not user.is_authenticated:
        return []
    backend = _postgresql if connection.vendor == "postgresql" else _sqlite
    messages, titles = backend(words, user.pk, reasoning, settings.CHAT_SEARCH_RESULTS)
    return _ranked(messages, titles, settings.CHAT_SEARCH_RESULTS)


Row = tuple  # (conversation id, title, message id, role, score, highlighted text)


def _ranked(messages: list[Row], titles: list[Row], limit: int) -> list[SearchHit]:
    """Message hits, each lifted by its conversation's title matching, and title-only hits, best first."""
    title_hits = {row[0]: row for row in titles}
    hits = [
        SearchHit(
            conversation_id=conversation_id,
            title=title,
            message_id=message_id,
            role=role,
            score=score + (title_hits[conversation_id][4] if conversation_id in title_hits else 0),
            snippet=segments(text),
            title_snippet=segments(title_hits[conversation_id][5]) if conversation_id in title_hits else [],
        )
        for conversation_id, title, message_id, role, score, text in messages
    ]
    found = {hit.conversation_id for hit in hits}
    hits += [
        SearchHit(
            conversation_id=pk, title=title, message_id=None, role=None, score=score, title_snippet=segments(text)
        )
        for pk, title, _, _, score, text in titles
        if pk not in found
    ]
    hits.sort(key=lambda hit: (-hit.score, -(hit.message_id or 0), -hit.conversation_id))
    return hits[:limit]


def _fetch(sql: str, params: list[object]) -> list[Row]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]


def _sqlite(words: list[str], owner_id: int, reasoning: bool, limit: int) -> tuple[list[Row], list[Row]]:
    terms = " AND ".join([f'"{word}"' for word in words[:-1]] + [f'"{words[-1]}"*'])
    match = f"({terms})" if reasoning else f"{{content}} : ({terms})"
    messages = _fetch(
        "SELECT c.id, c.title, m.id, m.role, -bm25(chat_message_fts, 1.0, 0.5),"
        " snippet(chat_message_fts, -1, %s, %s, '…', %s)"
        " FROM chat_message_fts JOIN chat_message m ON m.id = chat_message_fts.rowid"
        " JOIN chat_conversation c ON c.id = m.conversation_id"
        " WHERE chat_message_fts MATCH %s AND c.owner_id = %s AND c.deleted_by_owner_at IS NULL ORDER BY bm25(chat_message_fts, 1.0, 0.5) LIMIT %s",
        [START, STOP, SNIPPET_WORDS, match, owner_id, limit],
    )
    titles = _fetch(
        "SELECT c.id, c.title, NULL, NULL, -bm25(chat_conversation_fts) * 2,"
        " highlight(chat_conversation_fts, 0, %s, %s)"
        " FROM chat_conversation_fts JOIN chat_conversation c ON c.id = chat_conversation_fts.rowid"
        " WHERE chat_conversation_fts MATCH %s AND c.owner_id = %s AND c.deleted_by_owner_at IS NULL ORDER BY bm25(chat_conversation_fts) LIMIT %s",
        [START, STOP, f"({terms})", owner_id, limit],
    )
    return messages, titles


HEADLINE = f"StartSel={START}, StopSel={STOP}, MaxWords={SNIPPET_WORDS}, MinWords=8"
REASONING_TEXT = (
    "coalesce((SELECT string_agg(p->>'text', ' ') FROM jsonb_array_elements(CASE WHEN"
    " jsonb_typeof(m.parts) = 'array' THEN m.parts ELSE '[]' END) p WHERE p->>'kind' = 'reasoning'), '')"
)


def _postgresql(words: list[str], owner_id: int, reasoning: bool, limit: int) -> tuple[list[Row], list[Row]]:
    config = settings.CHAT_SEARCH_CONFIG
    tsquery = " & ".join(words[:-1] + [f"{words[-1]}:*"])
    vector = "m.search_vector || coalesce(m.search_reasoning, '')" if reasoning else "m.search_vector"
    matches = (
        "(m.search_vector @@ q.query OR m.search_reasoning @@ q.query)" if reasoning else "m.search_vector @@ q.query"
    )
    messages = _fetch(
        "WITH q AS (SELECT to_tsquery(%s::regconfig, %s) AS query)"
        " SELECT hit.conversation_id, hit.title, hit.id, hit.role, hit.score,"
        " ts_headline(%s::regconfig, replace(CASE WHEN hit.in_answer THEN hit.content ELSE hit.reasoning END,"
        " '<', %s), q.query, %s)"
        " FROM q, (SELECT m.conversation_id, c.title, m.id, m.role, m.content,"
        f" {REASONING_TEXT} AS reasoning, m.search_vector @@ q.query AS in_answer,"
        f" ts_rank({vector}, q.query) AS score"
        " FROM q, chat_message m JOIN chat_conversation c ON c.id = m.conversation_id"
        f" WHERE c.owner_id = %s AND c.deleted_by_owner_at IS NULL AND {matches} ORDER BY score DESC, m.id DESC LIMIT %s) hit"
        " ORDER BY hit.score DESC, hit.id DESC",
        [config, tsquery, config, LESS_THAN, HEADLINE, owner_id, limit],
    )
    titles = _fetch(
        "WITH q AS (SELECT to_tsquery(%s::regconfig, %s) AS query)"
        " SELECT c.id, c.title, NULL, NULL, ts_rank(c.search_vector, q.query) * 2,"
        " ts_headline(%s::regconfig, replace(c.title, '<', %s), q.query, %s)"
        " FROM q, chat_conversation c WHERE c.owner_id = %s AND c.deleted_by_owner_at IS NULL AND c.search_vector @@ q.query"
        " ORDER BY 5 DESC LIMIT %s",
        [config, tsquery, config, LESS_THAN, f"StartSel={START}, StopSel={STOP}, HighlightAll=true", owner_id, limit],
    )
    return messages, titles
