"""OpenAI's Responses API: typed events, each with a `sequence_number`; reasoning summaries stream as
the reply's reasoning part. In background mode OpenAI keeps the response, generating on whether or not
anyone reads it, so a reply whose worker died can be taken up by another worker from the event after
the last one it published (`retrieve(id, stream=True, starting_after=N)`).

Parsed like Chat Completions (chat.providers.openai): the SDK sends the request, orjson reads the raw
events, with no SDK model object built per event.
"""

from collections.abc import AsyncIterator
from typing import Any

import openai
import orjson

from chat.providers.base import ChatTurn, Delta, GenerationRequest, ProviderError
from chat.providers.sdk import SDKReplyStream
from chat.providers.transport import error_for_kind, request_timeout, sse_data

# Events whose text is a delta of the reply, by the part it belongs to.
DELTA_KINDS = {
    "response.output_text.delta": "text",
    "response.refusal.delta": "text",  # the model's explanation of a refusal is its answer
    "response.reasoning_summary_text.delta": "reasoning",
    "response.reasoning_text.delta": "reasoning",
}
# Events that carry the response itself, with its id (and, at the end, its usage).
RESPONSE_EVENTS = ("response.created", "response.queued", "response.in_progress")
# Summaries of one reasoning item come as parts; in the reply they are paragraphs of one reasoning part.
SUMMARY_SEPARATOR = "\n\n"
# Why a response ended `incomplete`, when that is not just the reply budget spent (finish "length").
INCOMPLETE_ERRORS = {
    "content_filter": ("refused", "The provider's content filter stopped the reply."),
}


# OpenAI's reasoning models take a reasoning effort and refuse temperature, top_p and stop sequences;
# the efforts each family accepts (the SDK's type names them all: none … max). Its keys are the
# families of settings.OPENAI_REASONING_FAMILIES, which go to this API by default.
REASONING_EFFORTS = {
    "o1": ("low", "medium", "high"),
    "o3": ("low", "medium", "high"),
    "o4": ("low", "medium", "high"),
    "gpt-5.": ("none", "low", "medium", "high", "xhigh"),  # gpt-5.1 and later
    "gpt-5": ("minimal", "low", "medium", "high"),
}


def reasoning_efforts(name: str) -> tuple[str, ...]:
    """The efforts an OpenAI reasoning model accepts; none for a chat model (gpt-4o, gpt-5-chat-latest)."""
    if "-chat" in name:
        return ()
    return next((efforts for prefix, efforts in REASONING_EFFORTS.items() if name.startswith(prefix)), ())


def _input_content(turn: ChatTurn) -> str | list[dict[str, Any]]:
    """A turn's input for the Responses API: its text, or `input_text` and `input_image` items (data URLs)."""
    if not turn.files:
        return turn.content
    items: list[dict[str, Any]] = [{"type": "input_text", "text": turn.content}] if turn.content else []
    items += [{"type": "input_image", "image_url": file.data_url} for file in turn.files if file.kind == "image"]
    return items


def request_body(request: GenerationRequest, *, background: bool) -> dict[str, Any]:
    """The create call's arguments. A background response must be stored (that is what lets it be read
    again); any other is not, so OpenAI keeps nothing of it."""
    body: dict[str, Any] = {
        "model": request.model,
        "input": [{"role": turn.role, "content": _input_content(turn)} for turn in request.turns],
        "max_output_tokens": request.max_output_tokens,
        "stream": True,
        "store": background,
    }
    if request.system:
        body["instructions"] = request.system
    parameters = request.parameters
    body |= {name: value for name, value in parameters.sampling().items() if name != "stop"}  # it has no stop
    if reasoning_efforts(request.model):
        body["reasoning"] = {"summary": "auto"}
        if parameters.reasoning_effort:
            body["reasoning"]["effort"] = parameters.reasoning_effort
    if background:
        body["background"] = True
    return body


class ResponsesReplyStream(SDKReplyStream):
    """One response of the Responses API, from its creation or, given `reattach` (response id, cursor),
    again from the event after the cursor."""

    sdk = openai
    sdk_error = openai.OpenAIError
    undecodable = (orjson.JSONDecodeError,)

    def __init__(
        self,
        request: GenerationRequest,
        *,
        client: openai.AsyncOpenAI,
        background: bool,
        reattach: tuple[str, int | None] | None = None,
    ) -> None:
        super().__init__(request)
        self._client = client
        self._background = background
        self._reattach = reattach
        if reattach is not None:
            self.response_id = reattach[0]

    def open(self) -> Any:
        responses = self._client.responses.with_streaming_response
        if self._reattach is None:
            return responses.create(
                **request_body(self.request, background=self._background), timeout=request_timeout()
            )
        response_id, after = self._reattach
        optional = {} if after is None else {"starting_after": after}
        return responses.retrieve(response_id, stream=True, timeout=request_timeout(), **optional)

    async def texts(self, response: Any) -> AsyncIterator[Delta]:
        async for payload in sse_data(response):
            if self._complete:
                continue  # read on to the end of the body, so the connection goes back to the pool
            if delta := self._take(orjson.loads(payload)):
                yield delta

    def _take(self, event: dict[str, Any]) -> Delta | None:
        """Record what the event reports; return its delta, if it adds to the reply. Unknown events
        (tool calls, annotations, the `.done` events repeating the text) are ignored."""
        kind = event.get("type")
        cursor = event.get("sequence_number")
        if kind in DELTA_KINDS:
            return Delta(event.get("delta") or "", DELTA_KINDS[kind], cursor=cursor)
        if kind == "response.reasoning_summary_part.added" and event.get("summary_index"):
            return Delta(SUMMARY_SEPARATOR, "reasoning", cursor=cursor)
        if kind in RESPONSE_EVENTS and self._background:
            self.response_id = (event.get("response") or {}).get("id") or self.response_id
        elif kind == "response.completed":
            self._end(event["response"], "stop")
        elif kind == "response.incomplete":
            response = event["response"]
            reason = (response.get("incomplete_details") or {}).get("reason") or ""
            self._end(response, "length" if reason == "max_output_tokens" else reason)
            if error := INCOMPLETE_ERRORS.get(reason):
                raise ProviderError(*error)
            if reason != "max_output_tokens":
                raise ProviderError("truncated")
        elif kind == "response.failed":
            response = event["response"]
            self._take_usage(response.get("usage"))
            error = response.get("error") or {}
            raise error_for_kind(error.get("code"))
        elif kind == "error":
            details = event.get("error") if isinstance(event.get("error"), dict) else event
            raise error_for_kind(details.get("code"), details.get("type"))
        return None

    def _end(self, response: dict[str, Any], finish_reason: str) -> None:
        self.result.finish_reason = finish_reason
        self._take_usage(response.get("usage"))
        self._complete = True

    def _take_usage(self, usage: dict[str, Any] | None) -> None:
        """`input_tokens` includes the cached ones, `output_tokens` the reasoning ones."""
        if not usage:
            return
        self.result.input_tokens = usage.get("input_tokens")
        self.result.output_tokens = usage.get("output_tokens")
        details = usage.get("input_tokens_details") or {}
        self.result.cached_input_tokens = details.get("cached_tokens")
        self.result.cache_write_tokens = details.get("cache_write_tokens")
        self.result.reasoning_tokens = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
