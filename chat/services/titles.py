"""Titles written by a model (CHAT_TITLE_MODEL, off by default): after a conversation's first reply,
one short request asks for a title. Its tokens count in the owner's daily budget; a failure keeps
the title derived from the first message; a title the owner gave (a rename) is never replaced."""

from django.conf import settings

from chat import costs, limits, teams
from chat.models import Conversation, Message
from chat.providers import registry
from chat.providers.base import ChatTurn, GenerationRequest, Provider
from chat.services.conversations import title_from
from chat.services.generations import usage_add
from chat.services.search_index import search_index_conversations

TITLE_INSTRUCTIONS = (
    "Write a title for the conversation below: at most six words, in its language, naming what it is "
    "about. Answer with the title alone: no quotes, no full stop."
)
TITLE_MAX_OUTPUT_TOKENS = 24
EXCERPT_CHARS = 2000  # of the question and of the answer: enough to name the topic, cheap to send


def title_request_for(*, reply: Message) -> tuple[Provider, GenerationRequest] | None:
    """The request for a title, when one is wanted: a title model is set and offered, this complete
    reply is the conversation's first, the owner did not name it, and their budget has room."""
    if not settings.CHAT_TITLE_MODEL or reply.status != Message.Status.COMPLETE or reply.parent_id is None:
        return None
    conversation = Conversation.objects.get(pk=reply.conversation_id)  # as it is now, not as the reply saw it
    if conversation.title_by_user or conversation.messages.filter(role=Message.Role.ASSISTANT).count() != 1:
        return None
    budget = teams.limits_for(user_id=conversation.owner_id).daily_token_budget
    if budget and limits.tokens_used_today(user_id=conversation.owner_id) >= budget:
        return None
    try:
        provider, model = registry.resolve(settings.CHAT_TITLE_MODEL)
    except registry.UnknownModel:
        return None
    question = conversation.messages.get(pk=reply.parent_id).content[:EXCERPT_CHARS]
    excerpt = f"User: {question}\n\nAssistant: {reply.content[:EXCERPT_CHARS]}"
    request = GenerationRequest(
        model=model.name,
        system=TITLE_INSTRUCTIONS,
        turns=[ChatTurn(role="user", content=excerpt)],
        max_output_tokens=TITLE_MAX_OUTPUT_TOKENS,
    )
    return provider, request


def conversation_title_by_model(
    *, conversation_id: int, title: str, tokens: int, usage: costs.Usage | None = None
) -> Conversation | None:
    """Set the model's title unless the owner named the conversation meanwhile (then None); the tokens,
    and their cost at CHAT_TITLE_MODEL's price (from `usage`), count in the owner's budgets either way."""
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None:
        return None
    cost = costs.reply_cost(model_ref=settings.CHAT_TITLE_MODEL, usage=usage) if usage is not None else None
    usage_add(user_id=conversation.owner_id, tokens=tokens, cost=cost)
    cleaned = title_from(title.strip().strip("\"'“”«»").rstrip("."))
    if not cleaned or "\x00" in cleaned:
        return None
    if not Conversation.objects.filter(pk=conversation_id, title_by_user=False).update(title=cleaned):
        return None
    search_index_conversations(conversation_ids=[conversation_id])
    conversation.title = cleaned
    return conversation
