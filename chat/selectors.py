"""Reads: every query the chat features make, each scoped to its owner."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from chat import rows
from chat.errors import ChatError
from chat.models import ApiKey, Attachment, Conversation, Feedback, ImportJob, Message, ShareLink
from chat.tree import Tree


def _active_replies() -> QuerySet[Message]:
    return Message.objects.filter(status__in=Message.ACTIVE_STATUSES)


def conversation_list_for(*, user: AbstractBaseUser, source: str | None = None) -> QuerySet[Conversation]:
    """The user's conversations (of one source, if given), most recent activity first, each marked `running`."""
    running = _active_replies().filter(conversation=OuterRef("pk"))
    conversations = Conversation.objects.filter(owner=user)
    if source is not None:
        conversations = conversations.filter(source=source)
    return conversations.annotate(running=Exists(running)).order_by("-updated_at", "-pk")


SIDEBAR_PAGE = 50  # conversations the sidebar shows at first and loads at each scroll to its end


@dataclass(frozen=True)
class SidebarPage:
    """One page of the sidebar: `conversations` in its order, and the cursor of the next page (None: the end)."""

    conversations: list[Conversation]
    next: str | None


def _cursor_of(conversation: Conversation) -> str:
    return f"{conversation.updated_at.isoformat()}|{conversation.pk}"


def _after_cursor(cursor: object) -> Q:
    """The conversations after `cursor` in the sidebar's order (older activity, then lower id)."""
    try:
        moment, pk = str(cursor).rsplit("|", 1)
        updated_at, pk_value = datetime.fromisoformat(moment.replace(" ", "+")), int(pk)
    except ValueError:
        raise ChatError("invalid", "`before` must be the `next` cursor of a previous page.") from None
    if updated_at.tzinfo is None:
        raise ChatError("invalid", "`before` must be the `next` cursor of a previous page.")
    return Q(updated_at__lt=updated_at) | Q(updated_at=updated_at, pk__lt=pk_value)


def conversation_sidebar_for(
    *,
    user: AbstractBaseUser,
    archived: bool = False,
    before: object = None,
    limit: int | None = SIDEBAR_PAGE,
    source: str | None = None,
) -> SidebarPage:
    """The sidebar's conversations (of one source, if given: the chat's, or the API's): pinned ones first
    (all, on the first page), then the rest by last activity, `limit` at a time after the cursor `before`;
    archived ones only, and unpinned, with `archived`. `limit` None: every one."""
    rows = conversation_list_for(user=user, source=source).filter(archived_at__isnull=not archived)
    pinned: list[Conversation] = []
    if not archived and before is None:
        pinned = list(rows.filter(pinned_at__isnull=False).order_by("-pinned_at", "-pk"))
    rest = rows if archived else rows.filter(pinned_at__isnull=True)
    if before is not None:
        rest = rest.filter(_after_cursor(before))
    if limit is None:
        return SidebarPage(conversations=pinned + list(rest), next=None)
    page = list(rest[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return SidebarPage(conversations=pinned + page, next=_cursor_of(page[-1]) if more else None)


# `Conversation.objects` (VisibleConversations) filtered by id and owner, written out (chat/rows.py): every
# send reads its conversation so, on its Daphne process's one database thread.
_VISIBLE_OF_OWNER = "id = %s AND owner_id = %s AND deleted_by_owner_at IS NULL"
_TREE_ROWS = f"SELECT id, parent_id, role FROM {Message._meta.db_table} WHERE conversation_id = %s"  # noqa: S608


def conversation_get_for(*, user: AbstractBaseUser, conversation_id: object) -> Conversation:
    """The user's conversation, or `not_found`: another user's conversation answers exactly like a missing one.
    An id that is not an integer is `invalid` (its type says nothing about anyone's conversations)."""
    if not isinstance(conversation_id, int) or isinstance(conversation_id, bool):
        raise ChatError("invalid", "`conversation` must be an integer id.")
    if not rows.storable_id(Conversation, conversation_id):  # as the ORM's lookup: no such row
        raise ChatError("not_found")
    conversation = rows.read_one(Conversation, _VISIBLE_OF_OWNER, [conversation_id, user.pk])
    if conversation is None or not user.is_authenticated:
        raise ChatError("not_found")
    return conversation


def tree_for(*, conversation: Conversation) -> Tree:
    """The conversation's messages as a tree (one query, no text; written out, see chat/rows.py)."""
    with connection.cursor() as cursor:
        cursor.execute(_TREE_ROWS, [conversation.pk])
        return Tree.of(cursor.fetchall())


def current_leaf_in(conversation: Conversation, tree: Tree) -> int | None:
    """The leaf of the branch the owner is on: the conversation's own, else the newest one."""
    if conversation.current_leaf_id in tree:
        return conversation.current_leaf_id
    return tree.newest_leaf()


@dataclass(frozen=True)
class Path:
    """The branch a conversation shows: its messages from the root to `leaf`, and the whole tree."""

    leaf: int | None
    messages: list[Message]
    tree: Tree


def path_for(*, conversation: Conversation, leaf: int | None = None) -> Path:
    """The messages from the root to `leaf` (default: the current leaf), in order, with their files;
    three queries."""
    tree = tree_for(conversation=conversation)
    leaf = current_leaf_in(conversation, tree) if leaf is None else leaf
    ids = tree.path_to(leaf) if leaf is not None else []
    found = conversation.messages.prefetch_related("attachments").in_bulk(ids)
    return Path(leaf=leaf, messages=[found[pk] for pk in ids], tree=tree)


@dataclass(frozen=True)
class History:
    """What a reply answers: the messages from the root to its parent, in order, and the files of its
    user messages by message id (in upload order; a message without files has no entry)."""

    messages: list[Message]
    attachments: dict[int, list[Attachment]]


# Every field of a message on a reply's path but its search columns (deferred: nothing reads them).
_PATH_FIELDS = tuple(field.name for field in Message._meta.concrete_fields if not field.name.startswith("search_"))


@cache
def _path_up_sql() -> str:
    """The messages from one (the parameter) up to its conversation's root, root first, each with
    `has_files`; the search columns left out (deferred: nothing reads them).

    Written out: the ORM has no recursive CTE. One walk up `parent_id` reads the path alone, where
    path_for reads the whole tree of the conversation, then the path's rows, then their files; and it
    costs no ORM compile (the worker's claim spent more CPU compiling those three than running them)."""
    table, attachments = Message._meta.db_table, Attachment._meta.db_table
    pk, parent = Message._meta.pk.column, Message._meta.get_field("parent").column
    message = Attachment._meta.get_field("message").column
    columns = ", ".join(f"m.{Message._meta.get_field(name).column}" for name in _PATH_FIELDS)
    return (
        f"WITH RECURSIVE up (id, depth) AS (SELECT {pk}, 0 FROM {table} WHERE {pk} = %s"
        f" UNION ALL SELECT m.{parent}, up.depth + 1 FROM {table} m JOIN up ON m.{pk} = up.id"
        f" WHERE m.{parent} IS NOT NULL)"
        f" SELECT {columns}, EXISTS (SELECT 1 FROM {attachments} a WHERE a.{message} = m.{pk}) AS has_files"
        f" FROM {table} m JOIN up ON m.{pk} = up.id ORDER BY up.depth DESC"
    )


def history_for(*, reply: Message) -> History:
    """What a reply answers: the messages from the root to its parent, in order, on whichever branch,
    with their files; one statement, and one more only when a user message on the path has files."""
    if reply.parent_id is None:
        return History(messages=[], attachments={})
    messages = rows.read_sql(Message, _path_up_sql(), [reply.parent_id], fields=_PATH_FIELDS, extra=["has_files"])
    with_files = [m.pk for m in messages if m.role == Message.Role.USER and m.has_files]
    return History(messages=messages, attachments=attachments_by_message(message_ids=with_files) if with_files else {})


def message_get_in(*, conversation: Conversation, message_id: object) -> Message:
    """A message of this conversation, or `not_found` (another conversation's answers like a missing one)."""
    if not isinstance(message_id, int) or isinstance(message_id, bool):
        raise ChatError("invalid", "`message` must be an integer id.")
    message = conversation.messages.filter(pk=message_id).first()
    if message is None:
        raise ChatError("not_found", "No such message in this conversation.")
    return message


def feedback_for(*, user_id: int, messages: list[Message]) -> dict[int, Feedback]:
    """The user's feedback on these messages, by message id: one query."""
    rows = Feedback.objects.filter(user_id=user_id, message_id__in=[message.pk for message in messages])
    return {row.message_id: row for row in rows}


def catch_up_reply_for(*, conversation_id: int) -> Message | None:
    """The reply a subscriber catches up on: the running one, on whichever branch, else the last
    reply of the current path."""
    running = active_reply_for(conversation_id=conversation_id)
    if running is not None:
        return running
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None:  # deleted since it was checked
        return None
    replies = [m for m in path_for(conversation=conversation).messages if m.role == Message.Role.ASSISTANT]
    return replies[-1] if replies else None


def active_reply_for(*, conversation_id: int) -> Message | None:
    return _active_replies().filter(conversation_id=conversation_id).first()


def message_by_client_id(*, conversation: Conversation, client_id: str) -> Message | None:
    return conversation.messages.filter(client_id=client_id).first()


def reply_after(*, message: Message) -> Message | None:
    """The reply that answers a user message (its first child), if any."""
    return message.children.filter(role=Message.Role.ASSISTANT).order_by("id").first()


# How many of a key's recent conversations a call is compared with when looking for the one it continues.
CONTINUATION_CANDIDATES = 20


@dataclass(frozen=True)
class Continued:
    """The conversation an API call continues: `held` of the call's messages are its current path,
    which ends at `leaf`."""

    conversation: Conversation
    held: int
    leaf: int


def api_conversation_continued_by(
    *, api_key_id: int, system_prompt: str, turns: Sequence[tuple[str, str]]
) -> Continued | None:
    """The conversation an API call continues: one of the same key's, with the same system prompt and no
    reply running, whose current path (`path_for`) is, role and text, the first messages of `turns` and
    fewer than all of them. The longest such wins, then the most recent."""
    if len(turns) < 2:
        return None  # a call of one message extends nothing: spare the lookup (most scripted calls)
    first_role, first_text = turns[0]
    candidates = (
        Conversation.objects.filter(api_key_id=api_key_id, system_prompt=system_prompt)
        .exclude(Exists(_active_replies().filter(conversation=OuterRef("pk"))))
        .filter(messages__parent=None, messages__role=first_role, messages__content=first_text)
        .distinct()
        .order_by("-updated_at", "-pk")[:CONTINUATION_CANDIDATES]
    )
    best: Continued | None = None
    for conversation in candidates:
        path = path_for(conversation=conversation)
        stored = [(message.role, message.content) for message in path.messages]
        extended = 0 < len(stored) < len(turns) and stored == list(turns[: len(stored)])
        if extended and (best is None or len(stored) > best.held):
            best = Continued(conversation, len(stored), path.leaf)
    return best


def api_keys_for(*, user: AbstractBaseUser) -> QuerySet[ApiKey]:
    """The user's API keys, newest first, revoked ones included (they say when)."""
    return ApiKey.objects.filter(user=user).order_by("-created_at", "-pk")


def api_key_get_for(*, user: AbstractBaseUser, key_id: object) -> ApiKey:
    """The user's key, or `not_found` (another user's key answers exactly like a missing one)."""
    key = ApiKey.objects.filter(pk=key_id, user=user).first() if str(key_id).isdigit() else None
    if key is None:
        raise ChatError("not_found", "No such API key.")
    return key


def share_get_public(*, token: object) -> ShareLink | None:
    """The link behind a shared page's token, None if unknown, revoked or expired (all alike)."""
    if not isinstance(token, str) or not token:
        return None
    live = Q(expires_at=None) | Q(expires_at__gt=timezone.now())
    return ShareLink.objects.filter(live, token=token, revoked_at=None).first()


def share_list_for(*, user: AbstractBaseUser) -> QuerySet[ShareLink]:
    """The user's share links, newest first, revoked and expired ones included (marked so)."""
    return ShareLink.objects.filter(owner=user).order_by("-created_at", "-pk")


def share_get_for(*, user: AbstractBaseUser, share_id: object) -> ShareLink:
    """The user's link by id, or `not_found` (another user's answers like a missing one)."""
    if not isinstance(share_id, int) or isinstance(share_id, bool):
        raise ChatError("invalid", "`share` must be an integer id.")
    share = ShareLink.objects.filter(pk=share_id, owner=user).first()
    if share is None or not user.is_authenticated:
        raise ChatError("not_found")
    return share


def import_job_get_for(*, user: AbstractBaseUser, job_id: object) -> ImportJob:
    """The user's import job, or `not_found` (another user's answers like a missing one)."""
    job = ImportJob.objects.filter(pk=job_id, owner=user).defer("payload").first() if isinstance(job_id, int) else None
    if job is None or not user.is_authenticated:
        raise ChatError("not_found")
    return job


def attachments_by_message(*, message_ids: Iterable[int]) -> dict[int, list[Attachment]]:
    """The files of these messages, by message id, in upload order; one query."""
    found: dict[int, list[Attachment]] = {}
    for attachment in Attachment.objects.filter(message_id__in=list(message_ids)).order_by("id"):
        found.setdefault(attachment.message_id, []).append(attachment)
    return found


def attachment_get_for(*, user: AbstractBaseUser, attachment_id: int) -> Attachment:
    """The user's own attachment, or `not_found` (another user's answers like a missing one)."""
    attachment = Attachment.objects.filter(pk=attachment_id, owner_id=user.pk).first()
    if attachment is None:
        raise ChatError("not_found", _("No such attachment."))
    return attachment


def attachments_pending_for(*, conversation: Conversation) -> list[Attachment]:
    """Files uploaded into the conversation that no message has named yet (the composer's tray)."""
    return list(Attachment.objects.filter(conversation=conversation, message__isnull=True).order_by("id"))
