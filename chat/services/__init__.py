"""Writes: every change to conversations and messages goes through these functions.

conversations.py  the user's conversations
api_keys.py       keys to the OpenAI-compatible API: make, check, revoke
completions.py    calls to that API, stored as conversations
parameters.py     a conversation's generation parameters, checked against its model's provider
replies.py        starting and stopping replies (what clients ask for)
generations.py    the worker's side: claim, checkpoint, finish, reap
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
    title_from,
)
from chat.services.generations import (
    Checkpoint,
    GenerationContext,
    generation_begin,
    generation_checkpoint,
    generation_finish,
    generation_leases_renew,
    replies_hand_off_stale,
    replies_interrupt_stale,
    replies_requeue_lost,
    reply_hand_off,
    reply_mark_interrupted,
    usage_add,
)
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

__all__ = [
    "ApiCall",
    "CallStarted",
    "NewApiKey",
    "api_key_authenticate",
    "api_key_create",
    "api_key_model_check",
    "api_key_revoke",
    "completion_start",
    "Checkpoint",
    "GenerationContext",
    "SendResult",
    "conversation_create",
    "conversation_delete",
    "conversation_switch",
    "conversation_update",
    "generation_begin",
    "generation_cancel",
    "generation_checkpoint",
    "generation_finish",
    "generation_leases_renew",
    "message_edit",
    "message_send",
    "parameters_by_model",
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
    "title_from",
    "usage_add",
]
