"""Anthropic's Messages API."""

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic

from chat.per_loop import PerLoop
from chat.providers.base import ChatTurn, GenerationRequest, ModelInfo, Provider, ProviderError, ReplyStream
from chat.providers.sdk import SDKReplyStream
from chat.providers.transport import error_for_kind, error_for_status, request_timeout

CONTEXT_TOKENS = 200_000


class AnthropicProvider(Provider):
    """Streams from Anthropic's Messages API."""

    name = "anthropic"
    label = "Anthropic"

    def __init__(self, *, api_key: str, base_url: str | None, model_names: list[str]) -> None:
        self.model_names = list(model_names)
        # The worker retries before the first token itself, so the SDK must not.
        self._clients = PerLoop(
            lambda: anthropic.AsyncAnthropic(
                api_key=api_key, base_url=base_url, max_retries=0, timeout=request_timeout()
            )
        )

    def models(self) -> list[ModelInfo]:
        return [ModelInfo.of(self.name, model, context_tokens=CONTEXT_TOKENS) for model in self.model_names]

    def stream(self, request: GenerationRequest) -> ReplyStream:
        return AnthropicReplyStream(request, provider=self)

    def open_stream(self, request: GenerationRequest) -> Any:
        """The SDK's stream manager; entering it sends the request."""
        optional = {"system": request.system} if request.system else {}
        return self._clients.get().messages.stream(
            model=request.model,
            messages=[{"role": turn.role, "content": turn.content} for turn in alternating_turns(request.turns)],
            max_tokens=request.max_output_tokens,
            timeout=request_timeout(),
            **optional,
        )


def alternating_turns(turns: list[ChatTurn]) -> list[ChatTurn]:
    """What the API accepts: non-empty turns alternating from a user turn to a final user turn.

    Merges consecutive turns of one role (say, a user message left without a reply) and drops
    assistant turns before the first and after the last user turn.
    """
    merged: list[ChatTurn] = []
    for turn in turns:
        if not turn.content or (not merged and turn.role != "user"):
            continue
        if merged and merged[-1].role == turn.role:
            merged[-1] = ChatTurn(turn.role, f"{merged[-1].content}\n\n{turn.content}")
        else:
            merged.append(turn)
    while merged and merged[-1].role != "user":
        merged.pop()
    return merged


class AnthropicReplyStream(SDKReplyStream):
    sdk = anthropic
    sdk_error = anthropic.AnthropicError
    undecodable = (json.JSONDecodeError,)  # the SDK parses each event with json.loads

    def __init__(self, request: GenerationRequest, *, provider: AnthropicProvider) -> None:
        super().__init__(request)
        self._provider = provider

    def open(self) -> Any:
        return self._provider.open_stream(self.request)

    async def texts(self, response: Any) -> AsyncIterator[str]:
        async for event in response:
            if text := self._take(event):
                yield text

    def status_error(self, exc: Any) -> ProviderError:
        """An HTTP error status, or (status 200) an `event: error` received mid-stream."""
        if exc.status_code != 200:
            return error_for_status(exc.status_code, exc.response.headers)
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error", body)
        return error_for_kind(error.get("type") if isinstance(error, dict) else None)

    def _take(self, event: Any) -> str:
        """Record what the event reports; return its text. Unknown event types are ignored."""
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            return event.delta.text
        if event.type == "message_start":
            usage = event.message.usage  # its output_tokens is a placeholder: a cut-short reply gets an estimate
            self.result.input_tokens = usage.input_tokens  # the uncached ones only
            self.result.cached_input_tokens = usage.cache_read_input_tokens
            self.result.cache_write_tokens = usage.cache_creation_input_tokens
        elif event.type == "message_delta":
            self.result.finish_reason = event.delta.stop_reason or ""
            usage = event.usage
            self.result.output_tokens = usage.output_tokens  # cumulative, thinking included
            # Newer API versions repeat the (cumulative) input counts here: these win where present.
            if usage.input_tokens is not None:
                self.result.input_tokens = usage.input_tokens
            if usage.cache_read_input_tokens is not None:
                self.result.cached_input_tokens = usage.cache_read_input_tokens
            if usage.cache_creation_input_tokens is not None:
                self.result.cache_write_tokens = usage.cache_creation_input_tokens
            if usage.output_tokens_details is not None:
                self.result.reasoning_tokens = usage.output_tokens_details.thinking_tokens
        return ""
