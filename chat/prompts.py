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
A user message's files come along as the model takes them (chat.models.Attachment): an image as an
image to a vision model (else a line saying it is not shown), a PDF as a document to a model that takes
them, else (and a text file) as its text between clear markers. Files of earlier turns on the path are
sent again with their message. The newest message's file text is trimmed to fit, with a marker saying
how much was left out; an older message goes whole or, with everything older, not at all.
The reply budget is the model's own output limit where one is configured, else CHAT_MAX_OUTPUT_TOKENS,
and never more than half the model's context; a conversation's `max_output_tokens` parameter lowers it.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from chat.models import Attachment, Conversation, Message
from chat.providers.base import ChatTurn, GenerationRequest, ModelInfo, TurnFile, estimate_tokens
from chat.providers.parameters import GenerationParameters

# Room for the chat template's own tokens around each message.
PER_MESSAGE_OVERHEAD_TOKENS = 4
# What an image or a PDF document costs, about, besides a PDF's text: providers count them their own way.
FILE_TOKENS = 1_000
FILE_START = "[Attached file: {name} ({kind})]"
FILE_END = "[End of {name}]"
FILE_TRIMMED = "[… {count:,} more characters of {name} were left out to fit the model's context]"
MARKER_TOKENS = 40  # a file's start, end and trimmed lines
IMAGE_UNSEEN = "[Attached image: {name}. This model does not see images.]"

ReadFile = Callable[[Attachment], bytes]


@dataclass(frozen=True)
class _Plan:
    """How a message's files go: as files (read when the message is sent), or as text."""

    files: tuple[Attachment, ...]
    texts: tuple[tuple[Attachment | None, str], ...]  # (attachment, text), or (None, a line) for an unseen image
    cost: int
    text_cost: int  # of `cost`, what the texts take (the part trimmed to fit)

    def turn_text(self, content: str, room_chars: int | None = None) -> str:
        """The message's text with its files' text after it, each trimmed to what room is left."""
        pieces = [content] if content else []
        for attachment, text in self.texts:
            if attachment is None:
                pieces.append(text)
                continue
            shown = text if room_chars is None else text[: max(room_chars, 0)]
            if room_chars is not None:
                room_chars -= len(shown)
            block = [FILE_START.format(name=attachment.name, kind=attachment.get_kind_display()), shown]
            if len(shown) < len(text):
                block.append(FILE_TRIMMED.format(count=len(text) - len(shown), name=attachment.name))
            block.append(FILE_END.format(name=attachment.name))
            pieces.append("\n".join(block))
        return "\n\n".join(pieces)


def _plan(attachments: Sequence[Attachment], model: ModelInfo) -> _Plan:
    files: list[Attachment] = []
    texts: list[tuple[Attachment | None, str]] = []
    cost = 0
    for attachment in attachments:
        if attachment.kind == Attachment.Kind.IMAGE:
            if model.vision:
                files.append(attachment)
                cost += FILE_TOKENS
            else:
                texts.append((None, IMAGE_UNSEEN.format(name=attachment.name)))
        elif attachment.kind == Attachment.Kind.PDF and model.pdf:
            files.append(attachment)
            cost += FILE_TOKENS + estimate_tokens(attachment.text)
        else:
            texts.append((attachment, attachment.text))
    text_cost = sum(estimate_tokens(text) + MARKER_TOKENS for _, text in texts)
    return _Plan(tuple(files), tuple(texts), cost + text_cost, text_cost)


def _turn_files(plan: _Plan, read: ReadFile | None) -> tuple[TurnFile, ...]:
    if read is None:
        return ()
    return tuple(
        TurnFile("image" if a.kind == Attachment.Kind.IMAGE else "pdf", a.mime, a.name, read(a)) for a in plan.files
    )


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
    attachments: Mapping[int, Sequence[Attachment]] | None = None,
    read: ReadFile | None = None,
) -> GenerationRequest:
    """`history` is the path up to (not including) the reply being generated;
    `max_output_tokens` is the budget of a model with no limit of its own (CHAT_MAX_OUTPUT_TOKENS);
    `parameters` and `conversation_max_output` what the conversation sets that the model accepts;
    `attachments` the files of its user messages by message id, `read` what gives a file's bytes."""
    budget = reply_budget(model, max_output_tokens)
    if conversation_max_output:
        budget = min(budget, conversation_max_output)
    available = model.context_tokens - budget - estimate_tokens(conversation.system_prompt)
    turns: list[ChatTurn] = []
    for message in reversed(history):
        if message.role == Message.Role.ASSISTANT and not message.content:
            continue
        plan = _plan((attachments or {}).get(message.pk, ()), model)
        cost = estimate_tokens(message.content) + PER_MESSAGE_OVERHEAD_TOKENS + plan.cost
        if turns and cost > available:
            break
        # The newest message is always sent: its files' text is trimmed to the room there is.
        room = None if turns or cost <= available else (available - cost + plan.text_cost) * 4
        available -= cost
        content = plan.turn_text(message.content, room) if plan.texts else message.content
        turns.append(
            ChatTurn(
                role=message.role,
                content=content,
                blocks=replay_blocks(message),
                files=_turn_files(plan, read),
            )
        )
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
