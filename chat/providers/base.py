"""The one interface every provider implements: a stream of deltas (answer text, or a thinking
model's reasoning), then a final result."""

import base64
import math
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from chat.providers.parameters import (
    MAX_OUTPUT_TOKENS,
    STOP,
    TEMPERATURE,
    TOP_P,
    GenerationParameters,
    ParameterRule,
)

Role = Literal["user", "assistant"]
PartKind = Literal["text", "reasoning"]  # a reply's parts (docs/protocol.md); tool calls may join later
PART_KINDS: tuple[PartKind, ...] = ("text", "reasoning")

ERROR_CODES = (
    "auth",
    "rate_limited",
    "overloaded",
    "timeout",
    "connection",
    "bad_request",
    "truncated",
    "refused",
    "upstream_error",
)


class ProviderError(Exception):
    """A provider failure in the app's own terms: a stable code and a message a user can act on."""

    DEFAULT_MESSAGES: ClassVar[dict[str, str]] = {
        "auth": "The provider rejected the API key configured on this server. Ask an administrator to check it.",
        "rate_limited": "The provider is rate limiting requests. Try again in a moment.",
        "overloaded": "The provider is overloaded right now. Try again in a moment.",
        "timeout": "The provider took too long to answer.",
        "connection": "Could not reach the provider.",
        "bad_request": "The provider refused the request (it may be too long for this model).",
        "truncated": "The provider's reply was cut off before it finished.",
        "refused": "The model declined to answer this request.",
        "upstream_error": "The provider failed while answering. Try again.",
    }
    RETRYABLE: ClassVar[frozenset[str]] = frozenset({"rate_limited", "overloaded", "connection", "upstream_error"})

    def __init__(self, code: str, message: str = "", *, retry_after: float | None = None) -> None:
        assert code in ERROR_CODES, code
        self.code = code
        self.message = message or self.DEFAULT_MESSAGES[code]
        self.retry_after = retry_after
        super().__init__(f"{code}: {self.message}")

    @property
    def retryable(self) -> bool:
        return self.code in self.RETRYABLE


@dataclass(frozen=True)
class TurnFile:
    """A file that goes to the model as itself, not as text: an image (vision models) or a PDF (models
    that take documents). Text files and other PDFs are already in the turn's `content` (chat.prompts)."""

    kind: Literal["image", "pdf"]
    mime: str
    name: str
    data: bytes

    @property
    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    @property
    def data_url(self) -> str:
        return f"data:{self.mime};base64,{self.base64}"


@dataclass(frozen=True)
class ChatTurn:
    """One message of the prompt. `content` is its answer text; `blocks`, when a provider needs more
    than the text back (Anthropic's signed thinking blocks), the content blocks to send as they were
    received. Providers that know no blocks send `content`. `files`: a user turn's images and PDFs,
    each provider sends them in its own format."""

    role: Role
    content: str
    blocks: tuple[dict[str, str], ...] = ()
    files: tuple[TurnFile, ...] = ()


@dataclass(frozen=True)
class GenerationRequest:
    model: str
    system: str
    turns: list[ChatTurn]
    max_output_tokens: int
    # The conversation's own, only those the model accepts (chat.services.parameters).
    parameters: GenerationParameters = GenerationParameters()


@dataclass
class StreamResult:
    """What a finished stream reports besides its text.

    Token counts are kept as each provider reports them (docs/protocol.md says what `input_tokens`
    covers for each); None where the provider reported nothing. `output_tokens` includes the
    `reasoning_tokens`, as both providers count them.
    """

    finish_reason: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    tokens_estimated: bool = False
    time_to_first_token_ms: int | None = None
    duration_ms: int | None = None

    def estimate_missing(self, request: GenerationRequest, *, output_chars: int, reasoning_chars: int) -> None:
        """Fill in the counts a provider did not report (a reply cut short, a server that sends no usage)
        at four characters a token, and say so. `output_chars` counts every part, reasoning included."""
        if self.output_tokens is None:
            self.output_tokens = tokens_for_chars(output_chars)
            self.tokens_estimated = True
            if reasoning_chars and self.reasoning_tokens is None:
                self.reasoning_tokens = tokens_for_chars(reasoning_chars)
        if self.input_tokens is None:
            self.input_tokens = estimate_tokens(request.system + "".join(turn.content for turn in request.turns))
            self.tokens_estimated = True


@dataclass(frozen=True)
class ModelInfo:
    ref: str  # "provider:model", what conversations store
    provider: str
    name: str
    label: str
    context_tokens: int
    # The model's own reply budget, configured with its context (settings.MODEL_LIMITS, applied by the
    # registry); None: the server's CHAT_MAX_OUTPUT_TOKENS. Either way at most half the context (chat.prompts).
    max_output_tokens: int | None = None
    # What it takes besides text, as its provider declares it (or CHAT_VISION_MODELS / CHAT_PDF_MODELS):
    # images, and PDFs as documents (without, a PDF goes as its extracted text).
    vision: bool = False
    pdf: bool = False

    @classmethod
    def of(
        cls, provider: str, name: str, *, context_tokens: int, label: str = "", vision: bool = False, pdf: bool = False
    ) -> "ModelInfo":
        """The model `name` of `provider`, labelled by its name unless told otherwise."""
        return cls(f"{provider}:{name}", provider, name, label or name, context_tokens, vision=vision, pdf=pdf)


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of a reply as the provider streams it: answer `text`, or the model's `reasoning`.

    A reasoning delta may instead carry what the provider needs back on the next turn and no client
    sees: the `signature` that ends the thinking block being streamed, or the opaque data of a
    `redacted` thinking block (each with empty text).

    A provider that numbers its events (OpenAI's Responses API) gives the delta's event number as its
    `cursor`: the stream can be taken up again after it (`Provider.reattach`).
    """

    text: str
    kind: PartKind = "text"
    signature: str = ""
    redacted: str = ""
    cursor: int | None = None

    @property
    def keeps(self) -> bool:
        """It carries provider data to store with the reply (besides any text)."""
        return bool(self.signature or self.redacted)


def tokens_for_chars(count: int) -> int:
    """About four characters a token: the one estimate, used only where no count is reported (yet)."""
    return math.ceil(count / 4)


def estimate_tokens(text: str) -> int:
    return tokens_for_chars(len(text))


@dataclass
class ReplyStream(ABC):
    """One generation in flight. Iterate it for `Delta`s; `result` is set once it ends.

    Use it as `async with`: leaving the block early closes the upstream response, so the
    provider stops generating (and billing).
    """

    request: GenerationRequest
    result: StreamResult = field(default_factory=StreamResult)
    # The id of a response the provider keeps (background mode), once known: another worker can
    # reattach to it. Empty for a response that lives only as long as this stream.
    response_id: str = ""
    _started: float = field(default_factory=time.monotonic)
    _text_chars: int = 0  # every part's, reasoning included
    _reasoning_chars: int = 0

    async def __aenter__(self) -> "ReplyStream":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[Delta]:
        return self._deltas()

    async def _deltas(self) -> AsyncIterator[Delta]:
        async for piece in self.deltas():
            delta = Delta(piece) if isinstance(piece, str) else piece
            if not delta.text:
                if delta.keeps:
                    yield delta  # stored with the reply, never shown: no first token, no output chars
                continue
            if self.result.time_to_first_token_ms is None:
                self.result.time_to_first_token_ms = self._elapsed_ms()
            self._text_chars += len(delta.text)  # reasoning is output too: it counts in the estimate
            if delta.kind == "reasoning":
                self._reasoning_chars += len(delta.text)
            yield delta
        self._finish()

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)

    def _finish(self) -> None:
        self.result.duration_ms = self._elapsed_ms()
        if not self.result.finish_reason:
            raise ProviderError("truncated")
        self.result.estimate_missing(self.request, output_chars=self._text_chars, reasoning_chars=self._reasoning_chars)

    @abstractmethod
    def deltas(self) -> AsyncIterator[str | Delta]:
        """Yield deltas (a plain str is answer text); set `self.result.finish_reason` and usage as the
        provider reports them."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the upstream response (idempotent)."""


class Provider(ABC):
    """A configured provider: which models it offers, and how to stream a reply from one."""

    name: str
    label: str
    # Whether the reported input tokens include those read from and written to the prompt cache
    # (OpenAI's do; Anthropic's `input_tokens` are the uncached ones only): chat/costs.py prices them.
    input_includes_cache: bool = True

    @abstractmethod
    def models(self) -> list[ModelInfo]: ...

    @abstractmethod
    def stream(self, request: GenerationRequest) -> ReplyStream: ...

    def parameter_rules(self, model: ModelInfo) -> dict[str, ParameterRule]:
        """The parameters `model` accepts and their ranges (chat.providers.parameters); these four by default."""
        return {"temperature": TEMPERATURE, "top_p": TOP_P, "max_output_tokens": MAX_OUTPUT_TOKENS, "stop": STOP}

    def check_parameters(self, model: ModelInfo, values: dict[str, Any], *, reply_budget: int) -> None:
        """Raise ParameterError for a combination `model` refuses (each value is already in its range);
        most providers refuse none."""
        return

    def reattach(self, request: GenerationRequest, *, response_id: str, after: int | None) -> ReplyStream:
        """Stream again a response the provider keeps (see `ReplyStream.response_id`), from the event after
        the `after` cursor (from its start if None)."""
        raise ProviderError("upstream_error", f"{self.label} cannot take up a reply again.")

    async def cancel(self, response_id: str) -> None:
        """Stop a response the provider keeps: closing its stream does not stop it."""
        return  # a provider that keeps no responses has none to stop
