"""How a conversation becomes a prompt, and the trimming rule that fits it into a model's context.

The history is the path from the conversation's root to the reply's parent (chat.selectors.history_for):
never a sibling, never another branch. Rule: the system prompt and the newest user message are always
sent. Older messages are added newest first while the estimate (4 characters a token) stays within the
model's context minus the reply budget; the first message that does not fit, and every older one, is
left out, so the model always sees an unbroken recent stretch of the path. Replies that failed before
any text are never sent; a stopped or interrupted reply is sent with the text it has (a continuation
follows it, as the next assistant turn).
A reply whose provider gave it signed thinking blocks (Anthropic) carries them back as they came, in
order with its answer text (`replay_blocks`); other providers send the answer text alone.
The reply budget is the model's own output limit where one is configured, else CHAT_MAX_OUTPUT_TOKENS,
and never more than half the model's context; a conversation's `max_output_tokens` parameter lowers it.
"""

from chat.models import Conversation, Message
from chat.providers.base import ChatTurn, GenerationRequest, ModelInfo, estimate_tokens
from chat.providers.parameters import GenerationParameters

# Room for the chat template's own tokens around each message.
PER_MESSAGE_OVERHEAD_TOKENS = 4


def reply_budget(model: ModelInfo, max_output_tokens: int) -> int:
    """Output tokens a reply may use: the model's own limit if it has one, else the server's
    `max_output_tokens`; at most half of a small model's context."""
    return max(16, min(model.max_output_tokens or max_output_tokens, model.context_tokens // 2))


def build_request(
    *,
    conversation: Conversation,
    history: list[Message],
    model: ModelInfo,
    max_output_tokens: int,
    parameters: GenerationParameters | None = None,
    conversation_max_output: int | None = None,
) -> GenerationRequest:
    """`history` is the path up to (not including) the reply being generated;
    `max_output_tokens` is the budget of a model with no limit of its own (CHAT_MAX_OUTPUT_TOKENS);
    `parameters` and `conversation_max_output` what the conversation sets that the model accepts."""
    budget = reply_budget(model, max_output_tokens)
    if conversation_max_output:
        budget = min(budget, conversation_max_output)
    available = model.context_tokens - budget - estimate_tokens(conversation.system_prompt)
    turns: list[ChatTurn] = []
    for message in reversed(history):
        if message.role == Message.Role.ASSISTANT and not message.content:
            continue
        cost = estimate_tokens(message.content) + PER_MESSAGE_OVERHEAD_TOKENS
        if turns and cost > available:
            break
        available -= cost
        turns.append(ChatTurn(role=message.role, content=message.content, blocks=replay_blocks(message)))
    turns.reverse()
    return GenerationRequest(
        model=model.name,
        system=conversation.system_prompt,
        turns=turns,
        max_output_tokens=budget,
        parameters=parameters or GenerationParameters(),
    )


def replay_blocks(message: Message) -> tuple[dict[str, str], ...]:
    """The content blocks a reply's provider needs back, unchanged and in order: each signed thinking
    block, each redacted one, and the answer text. None for a reply without signed blocks: its text is
    enough, and reasoning without a signature (a reply stopped mid-thought) cannot be sent back."""
    if not any("signature" in part or "redacted" in part for part in message.parts):
        return ()
    blocks: list[dict[str, str]] = []
    for part in message.parts:
        if "redacted" in part:
            blocks.append({"type": "redacted_thinking", "data": part["redacted"]})
        elif "signature" in part:
            blocks.append({"type": "thinking", "thinking": part["text"], "signature": part["signature"]})
        elif part["kind"] == "text" and part["text"]:
            blocks.append({"type": "text", "text": part["text"]})
    return tuple(blocks)
