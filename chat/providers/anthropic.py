"""Anthropic's Messages API, its stream parsed like Chat Completions (chat.providers.openai): the SDK sends
the request, orjson reads the raw events."""

from collections.abc import AsyncIterator, Collection
from dataclasses import replace
from typing import Any

import anthropic
import orjson

from chat.providers.base import (
    ChatTurn,
    Delta,
    GenerationRequest,
    ModelInfo,
    Provider,
    ProviderError,
    ReplyStream,
    TurnFile,
)
from chat.providers.parameters import MAX_OUTPUT_TOKENS, REASONING_EFFORT, STOP, ParameterError, ParameterRule
from chat.providers.sdk import SDKReplyStream
from chat.providers.transport import error_for_kind, http_client, loop_client, request_timeout, sse_data

CONTEXT_TOKENS = 200_000
EFFORTS = ("low", "medium", "high", "xhigh", "max")  # output_config.effort
# Anthropic's floor for a thinking budget; 0 switches thinking off for the conversation.
THINKING_BUDGET = ParameterRule(
    "integer",
    "Thinking budget (tokens)",
    1024,
    None,
    allow_zero=True,
    default=0,
    help="How long the model may think before it answers; 0 switches thinking off.",
)

# Stop reasons that end a reply without a whole answer: the error (code, message) the reply fails with,
# keeping what it streamed. `max_tokens` is not one: the reply used its budget, as OpenAI's `length`.
STOP_ERRORS = {
    "refusal": ("refused", "The model declined to answer this request and stopped."),
    "pause_turn": ("truncated", "The provider paused the reply before it finished. Retry it."),
    "model_context_window_exceeded": (
        "truncated",
        "The reply filled the model's context window and was cut off. Start a new conversation to go on.",
    ),
}


class AnthropicProvider(Provider):
    """Streams from Anthropic's Messages API."""

    name = "anthropic"
    label = "Anthropic"
    input_includes_cache = False

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        model_names: list[str],
        thinking_budget: int = 0,
        thinking_models: Collection[str] = (),
        adaptive_models: Collection[str] = (),
    ) -> None:
        self.model_names = list(model_names)
        # Extended thinking: these models may think, by default for up to `thinking_budget` tokens (0: off
        # unless a conversation sets its own budget). The settings check that a default budget is at
        # least 1024 and below every such model's reply budget.
        self.thinking_budget = thinking_budget
        # These think as long as they judge best (adaptive thinking, summarized), steered by the effort:
        # no budget for them.
        self.adaptive_models = frozenset(adaptive_models)
        self.thinking_models = frozenset(thinking_models) - self.adaptive_models
        self._api_key = api_key
        self._base_url = base_url

    def _new_client(self) -> anthropic.AsyncAnthropic:
        # The worker retries before the first token itself, so the SDK must not.
        return anthropic.AsyncAnthropic(
            api_key=self._api_key,
            base_url=self._base_url,
            max_retries=0,
            timeout=request_timeout(),
            http_client=http_client(),
        )

    def models(self) -> list[ModelInfo]:
        # Every current Claude model sees images and reads PDFs as documents.
        return [
            ModelInfo.of(self.name, model, context_tokens=CONTEXT_TOKENS, vision=True, pdf=True)
            for model in self.model_names
        ]

    def stream(self, request: GenerationRequest) -> ReplyStream:
        return AnthropicReplyStream(request, provider=self)

    def parameter_rules(self, model: ModelInfo) -> dict[str, ParameterRule]:
        """The Messages API takes no sampling parameters (the SDK has no temperature or top_p): the output
        limit, up to 8 stop sequences, an effort, and a thinking budget on thinking models."""
        rules = {
            "max_output_tokens": MAX_OUTPUT_TOKENS,
            "stop": replace(STOP, max_items=8),
            "reasoning_effort": replace(REASONING_EFFORT, choices=EFFORTS),
        }
        if model.name in self.thinking_models:
            rules["thinking_budget"] = replace(THINKING_BUDGET, default=self.thinking_budget)
        return rules

    def check_parameters(self, model: ModelInfo, values: dict[str, Any], *, reply_budget: int) -> None:
        """Anthropic counts thinking in `max_tokens`: the budget must stay below it."""
        budget = self.thinking_budget_of(model.name, values.get("thinking_budget"))
        max_output = values.get("max_output_tokens") or reply_budget
        if budget and budget >= max_output:
            field = "thinking_budget" if "thinking_budget" in values else "max_output_tokens"
            raise ParameterError(
                field, f"`thinking_budget` ({budget}) must be below `max_output_tokens` ({max_output})."
            )

    def thinking_budget_of(self, model_name: str, conversation_budget: int | None) -> int:
        """How many tokens `model_name` may think for: the conversation's budget, else the default; 0: off."""
        if model_name not in self.thinking_models:
            return 0
        return self.thinking_budget if conversation_budget is None else conversation_budget

    def open_stream(self, request: GenerationRequest) -> Any:
        """The SDK's streaming-response context manager: the SDK sends, we parse the raw events."""
        optional: dict[str, Any] = {"system": request.system} if request.system else {}
        if request.parameters.stop:
            optional["stop_sequences"] = list(request.parameters.stop)
        if request.parameters.reasoning_effort:
            optional["output_config"] = {"effort": request.parameters.reasoning_effort}
        if request.model in self.adaptive_models:
            optional["thinking"] = {"type": "adaptive", "display": "summarized"}
        elif budget := self.thinking_budget_of(request.model, request.parameters.thinking_budget):
            optional["thinking"] = {"type": "enabled", "budget_tokens": budget}
        return loop_client(self, self._new_client).messages.with_streaming_response.create(
            model=request.model,
            messages=[_message(turn) for turn in alternating_turns(request.turns)],
            max_tokens=request.max_output_tokens,
            stream=True,
            timeout=request_timeout(),
            **optional,
        )


def _message(turn: ChatTurn) -> dict[str, Any]:
    """A turn as the API takes it: its content blocks, as received, where it has them (its files as
    `image` and `document` blocks first); else its text."""
    if not (turn.blocks or turn.files):
        return {"role": turn.role, "content": turn.content}
    return {"role": turn.role, "content": [dict(block) for block in _blocks(turn)]}


def _file_block(file: TurnFile) -> dict[str, Any]:
    """An image or a PDF as a content block with a base64 source."""
    block_type = "image" if file.kind == "image" else "document"
    return {"type": block_type, "source": {"type": "base64", "media_type": file.mime, "data": file.base64}}


def _blocks(turn: ChatTurn) -> tuple[dict[str, Any], ...]:
    text = turn.blocks or (({"type": "text", "text": turn.content},) if turn.content else ())
    return (*(_file_block(file) for file in turn.files), *text)


def _merged(first: ChatTurn, second: ChatTurn) -> ChatTurn:
    """Two turns of one role as one; a turn with content blocks keeps them (signed blocks must go back
    unchanged), so the merge is then a list of blocks, not a string; so is one with files."""
    content = f"{first.content}\n\n{second.content}"
    if not (first.blocks or second.blocks or first.files or second.files):
        return ChatTurn(first.role, content)
    return ChatTurn(first.role, content, (*_blocks(first), *_blocks(second)))


def alternating_turns(turns: list[ChatTurn]) -> list[ChatTurn]:
    """What the API accepts: non-empty turns alternating from a user turn to a final user turn.

    Merges consecutive turns of one role (say, a user message left without a reply) and drops
    assistant turns before the first and after the last user turn.
    """
    merged: list[ChatTurn] = []
    for turn in turns:
        if not (turn.content or turn.blocks or turn.files) or (not merged and turn.role != "user"):
            continue
        if merged and merged[-1].role == turn.role:
            merged[-1] = _merged(merged[-1], turn)
        else:
            merged.append(turn)
    while merged and merged[-1].role != "user":
        merged.pop()
    return merged


class AnthropicReplyStream(SDKReplyStream):
    """Parses the SSE bytes with orjson, as Chat Completions does: no SDK model object per event, and no
    message snapshot rebuilt by the SDK's stream helper at every delta."""

    sdk = anthropic
    sdk_error = anthropic.AnthropicError
    undecodable = (orjson.JSONDecodeError,)

    def __init__(self, request: GenerationRequest, *, provider: AnthropicProvider) -> None:
        super().__init__(request)
        self._provider = provider

    def open(self) -> Any:
        return self._provider.open_stream(self.request)

    async def texts(self, response: Any) -> AsyncIterator[str | Delta]:
        async for payload in sse_data(response):
            if self._complete:
                continue  # read on to the end of the body, so the connection goes back to the pool
            if delta := self._take(orjson.loads(payload)):
                yield delta
        if error := STOP_ERRORS.get(self.result.finish_reason):
            raise ProviderError(*error)

    def _take(self, event: dict[str, Any]) -> str | Delta:
        """Record what the event reports; return its delta. Unknown event types (ping, tool input,
        citations) are ignored."""
        kind = event.get("type")
        if kind == "content_block_delta":
            return _delta(event.get("delta") or {})
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            return (
                Delta("", "reasoning", redacted=block.get("data") or "")
                if block.get("type") == "redacted_thinking"
                else ""
            )
        if kind == "message_start":
            # Its output_tokens is a placeholder: a cut-short reply gets an estimate.
            usage = (event.get("message") or {}).get("usage") or {}
            self.result.input_tokens = usage.get("input_tokens")  # the uncached ones only
            self.result.cached_input_tokens = usage.get("cache_read_input_tokens")
            self.result.cache_write_tokens = usage.get("cache_creation_input_tokens")
        elif kind == "message_delta":
            self.result.finish_reason = (event.get("delta") or {}).get("stop_reason") or ""
            self._take_usage(event.get("usage") or {})
        elif kind == "message_stop":
            self._complete = True
        elif kind == "error":  # mid-stream, e.g. overloaded_error
            error = event.get("error")
            raise error_for_kind(error.get("type") if isinstance(error, dict) else None)
        return ""

    def _take_usage(self, usage: dict[str, Any]) -> None:
        """message_delta's usage: output_tokens cumulative, thinking included. Newer API versions repeat
        the (cumulative) input counts here: these win where present."""
        self.result.output_tokens = usage.get("output_tokens")
        for field, name in (
            ("input_tokens", "input_tokens"),
            ("cached_input_tokens", "cache_read_input_tokens"),
            ("cache_write_tokens", "cache_creation_input_tokens"),
        ):
            if (count := usage.get(name)) is not None:
                setattr(self.result, field, count)
        if (details := usage.get("output_tokens_details")) is not None:
            self.result.reasoning_tokens = details.get("thinking_tokens")


def _delta(delta: dict[str, Any]) -> str | Delta:
    """What a content block's delta adds to the reply: answer text, thinking text, or the signature that
    ends a thinking block."""
    kind = delta.get("type")
    if kind == "text_delta":
        return delta.get("text") or ""
    if kind == "thinking_delta":
        return Delta(delta.get("thinking") or "", "reasoning")
    if kind == "signature_delta":
        return Delta("", "reasoning", signature=delta.get("signature") or "")
    return ""
