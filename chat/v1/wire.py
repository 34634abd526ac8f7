"""OpenAI's wire format, as the official SDK reads and writes it: a request body parsed into an
ApiCall, and the answers built: completions, chunks, model lists and errors (docs/api.md).

The chat's own frames are built in chat.events; these are the other protocol's, built only here.
"""

import time
from collections.abc import Mapping
from typing import Any

import orjson

from chat import api
from chat.errors import ChatError
from chat.models import Message
from chat.providers.base import ModelInfo
from chat.services import ApiCall

Body = dict[str, Any]

# Fields of OpenAI's Chat Completions request this server takes, besides `model` and `messages`.
PARAMETER_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "stop": "stop",
}
ACCEPTED_FIELDS = {"model", "messages", "stream", "stream_options", "n", "user", *PARAMETER_FIELDS}
# Fields of OpenAI's request this server knows but does not offer: named as unsupported, not unknown.
UNSUPPORTED_FIELDS = {
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "metadata",
    "modalities",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "reasoning_effort",
    "response_format",
    "seed",
    "service_tier",
    "store",
    "tool_choice",
    "tools",
    "top_logprobs",
    "web_search_options",
}
SYSTEM_ROLES = ("system", "developer")

# HTTP statuses as the chat's JSON API answers them (chat.api), and these besides.
STATUS_FOR_CODE = {
    **api.STATUS_FOR_CODE,
    "invalid_api_key": 401,
    "model_not_allowed": 403,
    "unknown_model": 404,
    "method_not_allowed": 405,
}
# OpenAI's error `type` by status (others: invalid_request_error) and by code, and its names for two codes.
TYPE_FOR_STATUS = {403: "permission_error", 429: "rate_limit_error", 503: "server_error"}
TYPE_FOR_CODE = {"budget_exhausted": "insufficient_quota", "budget_exceeded": "insufficient_quota"}
OPENAI_CODES = {"unknown_model": "model_not_found", "frame_too_large": "request_too_large"}
# A reply that failed after the call was accepted (the provider, a timeout, a lost worker).
REPLY_FAILED = (503, "server_error")


def _invalid(field: str, message: str, code: str = "invalid") -> ChatError:
    return ChatError(code, message, field=field)


def _text_of(content: object, where: str) -> str:
    """A message's `content`: a string, or a list of text parts (joined)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(f"{where}.content", f"`{where}.content` must be a string or a list of text parts.")
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            kind = part.get("type") if isinstance(part, dict) else None
            message = f"`{where}.content[{index}]`: only text parts are supported, not {kind or 'this'}."
            raise _invalid(f"{where}.content[{index}]", message)
        texts.append(part["text"])
    return "".join(texts)


def _messages(value: object) -> tuple[str, list[tuple[str, str]]]:
    """(system prompt, turns): system and developer messages come first and are joined."""
    if not isinstance(value, list) or not value:
        raise _invalid("messages", "`messages` must be a non-empty list.")
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _invalid(where, f"`{where}` must be an object with `role` and `content`.")
        for key in message:
            if key not in {"role", "content", "name"}:
                raise _invalid(f"{where}.{key}", f"`{where}.{key}` is not supported by this server.")
        role = message.get("role")
        if role not in (*SYSTEM_ROLES, "user", "assistant"):
            raise _invalid(f"{where}.role", f"`{where}.role` must be system, developer, user or assistant.")
        text = _text_of(message.get("content"), where)
        if role in SYSTEM_ROLES:
            if turns:
                raise _invalid(f"{where}.role", "System messages must come before the conversation's messages.")
            system.append(text)
        else:
            turns.append((role, text))
    return "\n\n".join(system), turns


def _parameters(body: Mapping[str, Any]) -> dict[str, Any]:
    if "max_tokens" in body and "max_completion_tokens" in body:
        raise _invalid("max_tokens", "Give `max_tokens` or `max_completion_tokens`, not both.")
    parameters: dict[str, Any] = {}
    for name, ours in PARAMETER_FIELDS.items():
        value = body.get(name)
        if value is None:
            continue
        parameters[ours] = [value] if name == "stop" and isinstance(value, str) else value
    return parameters


def request_field(body: Mapping[str, Any], field: str | None) -> str | None:
    """The request's name for a field a service named (its `max_output_tokens` is `max_tokens` here)."""
    if field == "max_output_tokens":
        return "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    return field


def _checked_fields(body: Mapping[str, Any]) -> None:
    for name in body:
        if name in UNSUPPORTED_FIELDS:
            raise _invalid(name, f"`{name}` is not supported by this server.", "unsupported_parameter")
        if name not in ACCEPTED_FIELDS:
            raise _invalid(name, f"Unrecognized request argument supplied: {name}", "unknown_parameter")
    if body.get("n", 1) != 1:
        raise _invalid("n", "Only `n` = 1 is supported.", "unsupported_parameter")
    if not isinstance(body.get("stream", False), bool):
        raise _invalid("stream", "`stream` must be true or false.")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise _invalid("user", "`user` must be a string.")


def stream_usage(body: Mapping[str, Any]) -> bool:
    """Whether a streamed answer ends with a usage chunk (`stream_options.include_usage`)."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not body.get("stream"):
        raise _invalid("stream_options", "`stream_options` is only allowed with `stream` true.")
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise _invalid("stream_options", "`stream_options` takes only `include_usage`.")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise _invalid("stream_options.include_usage", "`stream_options.include_usage` must be true or false.")
    return include


def api_call_from(body: Mapping[str, Any]) -> ApiCall:
    """The call a Chat Completions body asks for, or `invalid` naming the field at fault."""
    _checked_fields(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "`model` must be a model id such as `openai:gpt-4o-mini` (see GET /v1/models).")
    system_prompt, turns = _messages(body.get("messages"))
    return ApiCall(model=model, turns=turns, system_prompt=system_prompt, parameters=_parameters(body))


# --- Answers ------------------------------------------------------------------------------------


def error_body(error: ChatError, *, param: str | None = None) -> tuple[int, Body]:
    """(HTTP status, OpenAI's error object) for a refusal; `param` names the request field at fault."""
    status = STATUS_FOR_CODE.get(error.code, 400)
    kind = TYPE_FOR_CODE.get(error.code) or TYPE_FOR_STATUS.get(status, "invalid_request_error")
    code = OPENAI_CODES.get(error.code, error.code)
    return status, {"error": {"message": error.message, "type": kind, "param": param, "code": code}}


def reply_error_body(reply: Message) -> Body:
    """OpenAI's error object for a reply that failed or was cut short after the call was accepted."""
    code = reply.error_code or reply.status
    message = reply.error_message or f"The reply ended early ({reply.status})."
    return {"error": {"message": message, "type": REPLY_FAILED[1], "param": None, "code": code}}


def finish_reason(reply: Message) -> str:
    if reply.finish_reason in {"length", "max_tokens"}:
        return "length"
    if reply.finish_reason == "content_filter":
        return "content_filter"
    return "stop"


def usage(reply: Message) -> Body:
    prompt, completion = reply.input_tokens or 0, reply.output_tokens or 0
    body: Body = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if reply.cached_input_tokens is not None:
        body["prompt_tokens_details"] = {"cached_tokens": reply.cached_input_tokens}
    if reply.reasoning_tokens is not None:
        body["completion_tokens_details"] = {"reasoning_tokens": reply.reasoning_tokens}
    return body


def completion_id(reply: Message) -> str:
    return f"chatcmpl-{reply.pk}"


def _created(reply: Message) -> int:
    return int(reply.created_at.timestamp()) if reply.created_at else int(time.time())


def completion(reply: Message) -> Body:
    """The answer to a call with `stream` false."""
    message: Body = {"role": "assistant", "content": reply.content}
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    choice = {"index": 0, "message": message, "finish_reason": finish_reason(reply), "logprobs": None}
    return {
        "id": completion_id(reply),
        "object": "chat.completion",
        "created": _created(reply),
        "model": reply.model,
        "choices": [choice],
        "usage": usage(reply),
    }


class Chunks:
    """The `chat.completion.chunk` events of one streamed reply, as SSE bytes."""

    def __init__(self, reply: Message) -> None:
        self.head = {
            "id": completion_id(reply),
            "object": "chat.completion.chunk",
            "created": _created(reply),
            "model": reply.model,
        }

    def _chunk(self, delta: Body, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return event({**self.head, "choices": [choice]})

    def opening(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def delta(self, kind: str, text: str) -> bytes:
        return self._chunk({"reasoning_content" if kind == "reasoning" else "content": text})

    def finish(self, reply: Message) -> bytes:
        return self._chunk({}, finish_reason(reply))

    def usage(self, reply: Message) -> bytes:
        return event({**self.head, "choices": [], "usage": usage(reply)})


def event(data: Body) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


DONE = b"data: [DONE]\n\n"
KEEP_ALIVE = b": keep-alive\n\n"


def model_object(model: ModelInfo) -> Body:
    return {"id": model.ref, "object": "model", "created": 0, "owned_by": model.provider}


def model_list(models: list[ModelInfo]) -> Body:
    return {"object": "list", "data": [model_object(model) for model in models]}
