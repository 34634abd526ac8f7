"""Writes: every change to conversations and messages goes through these functions.

conversations.py  the user's conversations
api_keys.py       keys to the OpenAI-compatible API: make, check, revoke
completions.py    calls to that API, stored as conversations
parameters.py     a conversation's generation parameters, checked against its model's provider
replies.py        starting and stopping replies (what clients ask for)
generations.py    the worker's side: claim, checkpoint, finish, reap
search_index.py   the search index, kept in step by the writes above
shares.py         share links: create, revoke, copy a snapshot into one's own conversation
titles.py         titles written by a model (CHAT_TITLE_MODEL)
imports.py        importing an export or a ChatGPT conversations.json (import_formats.py reads them)
retention.py      how long conversations are kept, legal holds, and the purge of expired ones
feedback.py       a user's thumbs up / down and comment on a reply: set, change, clear
"""

from chat.services.api_keys import (
    NewApiKey,
    api_key_authenticate,
    api_key_create,
    api_key_model_check,
    api_key_revoke,
)
from chat.services.completions import ApiCall, CallStarted, completion_start
from chat.services.conversations import (
    conversation_create,
    conversation_delete,
    conversation_switch,
    conversation_update,
    default_model_for,
    title_from,
)
from chat.services.feedback import feedback_clear, feedback_set
from chat.services.generations import (
    BudgetProbe,
    Checkpoint,
    GenerationContext,
    generation_begin,
    generation_checkpoint,
    generation_checkpoints,
    generation_finish,
    generation_leases_renew,
    replies_hand_off_stale,
    replies_interrupt_stale,
    replies_requeue_lost,
    reply_hand_off,
    reply_mark_interrupted,
    usage_add,
)
from chat.services.imports import import_job_create, import_job_run, import_jobs_fail_lost
from chat.services.parameters import parameters_by_model
from chat.services.replies import (
    SendResult,
    generation_cancel,
    message_edit,
    message_send,
    reply_continue,
    reply_mark_queued,
    reply_queue_position,
    reply_refuse_job,
    reply_regenerate,
)
from chat.services.retention import (
    PurgeCounts,
    conversation_purge,
    conversations_expired,
    conversations_purging,
    purge_expired,
    purge_expired_batch,
    retention_days_for,
)
from chat.services.search_index import search_index_rebuild
from chat.services.shares import share_copy, share_create, share_revoke
from chat.services.titles import conversation_title_by_model

__all__ = [
    "ApiCall",
    "CallStarted",
    "Checkpoint",
    "GenerationContext",
    "NewApiKey",
    "PurgeCounts",
    "SendResult",
    "api_key_authenticate",
    "api_key_create",
    "api_key_model_check",
    "api_key_revoke",
    "completion_start",
    "BudgetProbe",
    "Checkpoint",
    "GenerationContext",
    "SendResult",
    "conversation_create",
    "feedback_clear",
    "feedback_set",
    "conversation_delete",
    "conversation_purge",
    "conversation_switch",
    "conversation_title_by_model",
    "conversation_update",
    "default_model_for",
    "conversations_expired",
    "conversations_purging",
    "generation_begin",
    "generation_cancel",
    "generation_checkpoint",
    "generation_checkpoints",
    "generation_finish",
    "generation_leases_renew",
    "import_job_create",
    "import_job_run",
    "import_jobs_fail_lost",
    "message_edit",
    "message_send",
    "parameters_by_model",
    "purge_expired",
    "purge_expired_batch",
    "replies_hand_off_stale",
    "replies_interrupt_stale",
    "replies_requeue_lost",
    "reply_continue",
    "reply_hand_off",
    "reply_mark_interrupted",
    "reply_mark_queued",
    "reply_queue_position",
    "reply_refuse_job",
    "reply_regenerate",
    "retention_days_for",
    "search_index_rebuild",
    "share_copy",
    "share_create",
    "share_revoke",
    "title_from",
    "usage_add",
]
