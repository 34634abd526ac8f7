"""The OpenAI-compatible endpoints under /v1/: parse, authorise by API key, delegate, answer in
OpenAI's wire format (docs/api.md). Bearer keys only: no session, no cookies, so no CSRF."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from chat import actions, services, teams
from chat.api import json_body, unavailable
from chat.errors import ChatError
from chat.models import ApiKey, Message
from chat.providers import registry
from chat.v1 import wire
from chat.v1.follow import Delta, follow_reply

logger = logging.getLogger(__name__)

View = Callable[..., Awaitable[HttpResponse]]
# A reply that ended so, whole or stopped (from the chat, by its owner), is an answer; any other end is an error.
ANSWERED = {Message.Status.COMPLETE, Message.Status.CANCELLED}


def error_response(error: ChatError, *, body: dict[str, Any] | None = None) -> JsonResponse:
    """OpenAI's error shape with the status of its code, `retry-after` when it says when."""
    status, payload = wire.error_body(error, param=wire.request_field(body or {}, error.field))
    response = JsonResponse(payload, status=status)
    if error.retry_after is not None:
        response["Retry-After"] = str(int(error.retry_after + 0.999))
    if status == 401:
        response["WWW-Authenticate"] = "Bearer"
    return response


def _bearer_key(request: HttpRequest) -> str:
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ChatError("invalid_api_key", "Send your API key in an `Authorization: Bearer sc-…` header.")
    return secret.strip()


def v1_view(*methods: str) -> Callable[[View], View]:
    """The API key checked on every call, the body parsed as a JSON object, every refusal in OpenAI's shape."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            body: dict[str, Any] = {}
            try:
                if request.method not in methods:
                    raise ChatError("method_not_allowed", f"Use {' or '.join(methods)} here.")
                secret = _bearer_key(request)
                api_key = await database_sync_to_async(services.api_key_authenticate)(secret=secret)
                if request.method == "POST":
                    body = json_body(request, limit=settings.CHAT_API_MAX_BODY_BYTES)
                return await view(request, api_key, body, *args, **kwargs)
            except ChatError as error:
                return error_response(error, body=body)
            except DatabaseError as error:
                logger.warning("database unavailable on %s: %s", request.path, error)
                return error_response(unavailable())

        return wrapper

    return decorate


@database_sync_to_async
def _models_for(api_key: ApiKey) -> list[Any]:
    """The models both the key and its owner's groups allow."""
    offered = teams.models_allowed(user_id=api_key.user_id, offered=registry.available_models())
    return [model for model in offered if not api_key.allowed_models or model.ref in api_key.allowed_models]


@v1_view("GET")
async def models(request: HttpRequest, api_key: ApiKey, body: dict[str, Any]) -> HttpResponse:
    return JsonResponse(wire.model_list(await _models_for(api_key)))


@v1_view("GET")
async def model(request: HttpRequest, api_key: ApiKey, body: dict[str, Any], ref: str) -> HttpResponse:
    for offered in await _models_for(api_key):
        if offered.ref == ref:
            return JsonResponse(wire.model_object(offered))
    raise ChatError("unknown_model", f"The model `{ref}` does not exist or this key may not use it.")


@v1_view("POST")
async def chat_completions(request: HttpRequest, api_key: ApiKey, body: dict[str, Any]) -> HttpResponse:
    call = wire.api_call_from(body)
    include_usage = wire.stream_usage(body)
    started = await actions.start_api_call(api_key, call)
    if body.get("stream"):
        response = StreamingHttpResponse(_streamed(api_key, started, include_usage), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
    try:
        reply = await _saved_reply(started)
    except asyncio.CancelledError:
        # The client went away (Django cancels the view): stop the upstream, keep the partial reply.
        await _stop(api_key, started)
        raise
    if not _answered(reply):
        return JsonResponse(wire.reply_error_body(reply), status=wire.REPLY_FAILED[0])
    return JsonResponse(wire.completion(reply))


async def _saved_reply(started: actions.ReplyStarted) -> Message:
    async for item in follow_reply(conversation_id=started.conversation_id, reply_id=started.reply.pk):
        if isinstance(item, Message):
            return item
    raise AssertionError("follow_reply ends with the saved reply")


async def _streamed(api_key: ApiKey, started: actions.ReplyStarted, include_usage: bool) -> AsyncIterator[bytes]:
    chunks = wire.Chunks(started.reply)
    reply: Message | None = None
    try:
        yield chunks.opening()
        async for item in follow_reply(conversation_id=started.conversation_id, reply_id=started.reply.pk):
            if item is None:
                yield wire.KEEP_ALIVE
            elif isinstance(item, Delta):
                yield chunks.delta(item.kind, item.text)
            else:
                reply = item
    except DatabaseError:
        # The database went away mid-stream: say so in OpenAI's shape and end the stream.
        logger.warning("database error in an API stream; ending it with `unavailable`")
        yield wire.event(wire.error_body(unavailable())[1])
        return
    except ChatError as error:
        # Redis did not confirm the subscription to the reply's frames (chat.fanout): the same, in its terms.
        logger.warning("could not follow an API stream's reply: %s", error.code)
        yield wire.event(wire.error_body(error)[1])
        return
    finally:
        if reply is None:
            # The client closed the stream (Django cancels this generator) or the relay failed: stop the
            # upstream now; the worker saves the partial reply as `cancelled`.
            await _stop(api_key, started)
    if _answered(reply):
        yield chunks.finish(reply)
        if include_usage:
            yield chunks.usage(reply)
        yield wire.DONE
    else:
        # A provider failure mid-stream: an error event, as OpenAI sends one, and the stream ends.
        yield wire.event(wire.reply_error_body(reply))


def _answered(reply: Message) -> bool:
    """Complete, or stopped by its client; not a reply stopped by its owner's money budget (`budget_exceeded`)."""
    return reply.status in ANSWERED and not reply.error_code


async def _stop(api_key: ApiKey, started: actions.ReplyStarted) -> None:
    try:
        await actions.stop_reply(api_key.user, started.conversation_id)
    except ChatError:
        pass  # it had ended meanwhile
    except Exception:  # noqa: BLE001 - the worker's lease and the reply's deadline still bound it
        logger.warning("could not stop reply %s of a closed API stream", started.reply.pk, exc_info=True)


@csrf_exempt  # writes nothing; answers in OpenAI's shape, not with the CSRF page
async def unknown_route(request: HttpRequest, path: str = "") -> JsonResponse:
    return error_response(ChatError("not_found", f"Unknown endpoint: /v1/{path}"))
