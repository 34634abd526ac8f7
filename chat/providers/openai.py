"""OpenAI Chat Completions, and every OpenAI-compatible server (Ollama, vLLM, llama.cpp) by base URL,
with the reasoning these servers stream besides the answer."""

from collections.abc import AsyncIterator, Collection
from dataclasses import replace
from typing import Any

import openai
import orjson

from chat.providers.base import ChatTurn, Delta, GenerationRequest, ModelInfo, Provider, ReplyStream
from chat.providers.openai_responses import ResponsesReplyStream, reasoning_efforts
from chat.providers.parameters import MAX_OUTPUT_TOKENS, REASONING_EFFORT, GenerationParameters, ParameterRule
from chat.providers.sdk import SDKReplyStream
from chat.providers.think_tags import ThinkTagSplitter
from chat.providers.transport import error_for_kind, http_client, loop_client, request_timeout, sse_data

# Context windows of OpenAI's models; other servers' models get the conservative default unless their
# entry in the settings gives their own (`llama3.1:8b@131072/8192`: chat.providers.registry.models_of).
CONTEXT_TOKENS = {"gpt-4o": 128_000, "gpt-4o-mini": 128_000, "gpt-4.1": 1_047_576, "gpt-4.1-mini": 1_047_576}
DEFAULT_CONTEXT_TOKENS = 8_192
# OpenAI's models that see images (by name prefix); a compatible server's only when CHAT_VISION_MODELS names them.
VISION_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4")
# Where compatible servers stream reasoning in a delta: vLLM, DeepSeek and llama.cpp say
# `reasoning_content`, Ollama, OpenRouter and newer vLLM `reasoning`, others `reasoning_text`. Only the
# first one present counts: vLLM, while renaming its field, sent the same text under both names.
REASONING_FIELDS = ("reasoning_content", "reasoning", "reasoning_text")


class OpenAIProvider(Provider):
    """Streams from the Chat Completions API of OpenAI or of a compatible server; OpenAI's models named in
    `responses_models` from its Responses API instead (chat.providers.openai_responses), those of them
    in `background_models` in background mode."""

    def __init__(
        self,
        *,
        name: str,
        label: str,
        api_key: str,
        base_url: str | None,
        model_names: list[str],
        responses_models: Collection[str] = (),
        background_models: Collection[str] = (),
    ) -> None:
        self.name = name
        self.label = label
        self.model_names = list(model_names)
        self.responses_models = frozenset(responses_models)
        self.background_models = frozenset(background_models) & self.responses_models
        # OpenAI wants the newer field (its reasoning models refuse `max_tokens`); compatible servers
        # such as llama.cpp's only know `max_tokens` and silently ignore the other.
        self.token_limit_field = "max_completion_tokens" if name == "openai" else "max_tokens"
        # Some models on compatible servers write their reasoning inline as <think>…</think>; OpenAI's
        # own never do, and their answers keep any such text untouched.
        self.inline_reasoning = name != "openai"
        self._api_key = api_key
        self._base_url = base_url

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo.of(
                self.name,
                model,
                context_tokens=CONTEXT_TOKENS.get(model, DEFAULT_CONTEXT_TOKENS),
                vision=self.name == "openai" and model.startswith(VISION_PREFIXES),
            )
            for model in self.model_names
        ]

    @property
    def client(self) -> openai.AsyncOpenAI:
        """This event loop's client."""
        return loop_client(self, self._new_client)

    def _new_client(self) -> openai.AsyncOpenAI:
        # The worker retries before the first token itself, so the SDK must not.
        return openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self._base_url,
            max_retries=0,
            timeout=request_timeout(),
            http_client=http_client(),
        )

    def stream(self, request: GenerationRequest) -> ReplyStream:
        if request.model in self.responses_models:
            return ResponsesReplyStream(request, client=self.client, background=request.model in self.background_models)
        return OpenAIReplyStream(request, provider=self)

    def parameter_rules(self, model: ModelInfo) -> dict[str, ParameterRule]:
        """A chat model's sampling parameters, or a reasoning model's effort (OpenAI's own models only:
        compatible servers differ too much in what they take besides sampling)."""
        efforts = reasoning_efforts(model.name) if self.name == "openai" else ()
        if efforts:  # on either API
            return {
                "max_output_tokens": MAX_OUTPUT_TOKENS,
                "reasoning_effort": replace(REASONING_EFFORT, choices=efforts),
            }
        rules = super().parameter_rules(model)
        if model.name in self.responses_models:
            del rules["stop"]  # the Responses API has no stop sequences
        return rules

    def reattach(self, request: GenerationRequest, *, response_id: str, after: int | None) -> ReplyStream:
        return ResponsesReplyStream(request, client=self.client, background=True, reattach=(response_id, after))

    async def cancel(self, response_id: str) -> None:
        await self.client.responses.cancel(response_id, timeout=request_timeout())

    def open_response(self, request: GenerationRequest) -> Any:
        """The SDK's streaming-response context manager: the SDK sends, we parse the raw events."""
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": turn.role, "content": chat_content(turn)} for turn in request.turns]
        return self.client.chat.completions.with_streaming_response.create(
            model=request.model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            timeout=request_timeout(),
            **{self.token_limit_field: request.max_output_tokens},
            **_parameters(request.parameters),
        )


class OpenAIReplyStream(SDKReplyStream):
    """Parses the SSE bytes with orjson: no SDK model object per chunk."""

    sdk = openai
    sdk_error = openai.OpenAIError
    undecodable = (orjson.JSONDecodeError,)

    def __init__(self, request: GenerationRequest, *, provider: OpenAIProvider) -> None:
        super().__init__(request)
        self._provider = provider
        self._think_tags = ThinkTagSplitter() if provider.inline_reasoning else None

    def open(self) -> Any:
        return self._provider.open_response(self.request)

    async def texts(self, response: Any) -> AsyncIterator[Delta]:
        async for payload in sse_data(response):
            if payload == b"[DONE]":
                # Keep reading to the end of the body, so the connection goes back to the pool.
                self._complete = True
            elif not self._complete:
                for delta in self._take(orjson.loads(payload)):
                    yield delta

    def _take(self, chunk: dict[str, Any]) -> list[Delta]:
        """Record what the chunk reports; return its deltas, reasoning first (it comes before the answer)."""
        if error := chunk.get("error"):
            # vLLM and others report a failure mid-stream as an event with an "error" object.
            details = error if isinstance(error, dict) else {}
            raise error_for_kind(details.get("code"), details.get("type"))
        if usage := chunk.get("usage"):
            self._take_usage(usage)
        choices = chunk.get("choices")
        if not choices:
            return []
        choice = choices[0]
        delta = choice.get("delta") or {}
        deltas = [Delta(reasoning, "reasoning")] if (reasoning := _reasoning_in(delta)) else []
        deltas += self._answer(delta.get("content") or "")
        if finish_reason := choice.get("finish_reason"):
            self.result.finish_reason = finish_reason
            if self._think_tags is not None:  # the content ended: what the splitter held back is out
                deltas += self._think_tags.flush()
        return deltas

    def _take_usage(self, usage: dict[str, Any]) -> None:
        """`prompt_tokens` includes the cached ones, `completion_tokens` the reasoning ones."""
        prompt = usage.get("prompt_tokens_details") or {}
        completion = usage.get("completion_tokens_details") or {}
        self.result.input_tokens = usage.get("prompt_tokens")
        self.result.output_tokens = usage.get("completion_tokens")
        self.result.cached_input_tokens = prompt.get("cached_tokens")
        self.result.cache_write_tokens = prompt.get("cache_write_tokens")
        self.result.reasoning_tokens = completion.get("reasoning_tokens")

    def _answer(self, content: str) -> list[Delta]:
        if self._think_tags is not None:
            return self._think_tags.feed(content)
        return [Delta(content)] if content else []


def chat_content(turn: ChatTurn) -> str | list[dict[str, Any]]:
    """A turn's content for Chat Completions: its text, or text and `image_url` parts (data URLs)."""
    if not turn.files:
        return turn.content
    parts: list[dict[str, Any]] = [{"type": "text", "text": turn.content}] if turn.content else []
    parts += [{"type": "image_url", "image_url": {"url": file.data_url}} for file in turn.files if file.kind == "image"]
    return parts


def _parameters(parameters: GenerationParameters) -> dict[str, Any]:
    """The request fields of a conversation's parameters (only those set; the rules kept the others out)."""
    fields = parameters.sampling()
    if parameters.reasoning_effort:
        fields["reasoning_effort"] = parameters.reasoning_effort
    return fields


def _reasoning_in(delta: dict[str, Any]) -> str:
    """The reasoning text a delta carries, under whichever field its server uses."""
    for name in REASONING_FIELDS:
        if (text := delta.get(name)) and isinstance(text, str):
            return text
    return ""
