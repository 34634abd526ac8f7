"""The HTTP API: JSON endpoints (session auth, CSRF); the SSE stream is in chat.sse.

A person with curl can chat through these alone (docs/protocol.md shows how).
"""

import logging
import re
from collections.abc import Awaitable, Callable
from functools import partial, wraps
from typing import Any

import orjson
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from chat import actions, events, limits, selectors, services
from chat.errors import ChatError
from chat.models import Conversation

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
# What an outage answer tells clients to wait: long enough not to hammer a database that is coming back.
OUTAGE_RETRY_SECONDS = 2

STATUS_FOR_CODE = {
    "unauthenticated": 401,
    "csrf_failed": 403,
    "model_not_allowed": 403,
    "not_found": 404,
    "busy": 409,
    "not_running": 409,
    "nothing_to_regenerate": 409,
    "nothing_to_continue": 409,
    "message_too_long": 413,
    "import_too_large": 413,
    "frame_too_large": 413,
    "too_many_running": 429,
    "queue_full": 429,
    "rate_limited": 429,
    "budget_exhausted": 429,
    "budget_exceeded": 429,
    "unavailable": 503,
    "file_too_large": 413,
    "storage_full": 413,
    "unsupported_file": 415,
    "attachment_not_found": 404,
    "attachment_used": 409,
}

View = Callable[..., Awaitable[HttpResponse]]


def is_api_request(request: HttpRequest) -> bool:
    """Whether the request is for the JSON API (its answers, errors included, are JSON)."""
    return request.path_info.startswith(API_PREFIX)


def unavailable() -> ChatError:
    """The refusal of a request the database cannot serve right now."""
    return ChatError("unavailable", retry_after=OUTAGE_RETRY_SECONDS)


def error_response(error: ChatError) -> JsonResponse:
    """The JSON error shape, with the HTTP status of its code and `Retry-After` when it says when."""
    body: dict[str, Any] = {"error": {"code": error.code, "message": error.message}}
    if error.field is not None:
        body["error"]["field"] = error.field
    response = JsonResponse(body, status=STATUS_FOR_CODE.get(error.code, 400))
    if error.retry_after is not None:
        response["Retry-After"] = str(int(error.retry_after + 0.999))
    return response


def api_view(view: View | None = None, *, raw_body: bool = False) -> Any:
    """Session auth, JSON errors with stable codes, and the request body parsed as a JSON object
    (`raw_body`: left unread, for an upload the view reads itself)."""
    if view is None:
        return partial(api_view, raw_body=raw_body)

    @wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            # Loading the session and user is the first database work of every request: inside the try.
            user = await request.auser()
            if not user.is_authenticated:
                return error_response(ChatError("unauthenticated"))
            body = json_body(request) if request.method in {"POST", "PATCH", "PUT"} and not raw_body else {}
            return await view(request, user, body, *args, **kwargs)
        except ChatError as error:
            return error_response(error)
        except DatabaseError as error:
            logger.warning("database unavailable on %s: %s", request.path, error)
            return error_response(unavailable())

    return wrapper


def json_body(request: HttpRequest, *, limit: int | None = None) -> dict[str, Any]:
    """The request body as a JSON object, at most `limit` bytes (the largest frame by default)."""
    limit = settings.CHAT_WS_MAX_FRAME_BYTES if limit is None else limit
    too_large = ChatError("frame_too_large", f"Request bodies are limited to {limit:,} bytes.")
    try:
        raw = request.body
    except RequestDataTooBig:  # over Django's DATA_UPLOAD_MAX_MEMORY_SIZE, far over ours
        raise too_large from None
    if len(raw) > limit:
        raise too_large
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ChatError("bad_json", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ChatError("invalid", "The request body must be a JSON object.")
    return body


def _limit(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 200:
        raise ChatError("invalid", "`limit` must be a whole number from 1 to 200.")
    return int(value)


@database_sync_to_async
def _conversation_list(user: Any, query: Any) -> dict[str, Any]:
    page = selectors.conversation_sidebar_for(
        user=user,
        archived=query.get("archived", "0") in {"1", "true"},
        before=query.get("before"),
        limit=_limit(query.get("limit")),
        source=_source(query.get("source")),
    )
    conversations = [events.conversation_payload(c, running=c.running) for c in page.conversations]
    return {"conversations": conversations, "next": page.next}


def _source(value: str | None) -> str | None:
    """`?source=`: the chat's conversations, or the API's; every one without it."""
    if value is None or value in Conversation.Source.values:
        return value
    raise ChatError("invalid", f"`source` must be one of {', '.join(Conversation.Source.values)}.")


@database_sync_to_async
def _conversation_detail(user: Any, conversation_id: int) -> dict[str, Any]:
    conversation = selectors.conversation_list_for(user=user).filter(pk=conversation_id).first()
    if conversation is None:
        raise ChatError("not_found")
    path = selectors.path_for(conversation=conversation)
    feedback = selectors.feedback_for(user_id=user.pk, messages=path.messages)
    return {
        "conversation": events.conversation_payload(conversation, running=conversation.running),
        "leaf": path.leaf,
        "messages": [events.message_payload(m, tree=path.tree, feedback=feedback) for m in path.messages],
    }


@require_http_methods(["GET", "POST"])
@api_view
async def conversations(request: HttpRequest, user: Any, body: dict[str, Any]) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse(await _conversation_list(user, request.GET))
    conversation = await database_sync_to_async(services.conversation_create)(
        owner=user,
        model="" if body.get("model") is None else body["model"],  # null, like no model, means the default
        system_prompt=body.get("system_prompt", ""),
        title=body.get("title", ""),
        parameters=body.get("parameters"),
    )
    await events.publish_to_user(user.pk, events.conversation_frame(conversation, running=False))
    return JsonResponse(events.conversation_payload(conversation, running=False), status=201)


@require_http_methods(["GET", "PATCH", "DELETE"])
@api_view
async def conversation(request: HttpRequest, user: Any, body: dict[str, Any], pk: int) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse(await _conversation_detail(user, pk))
    target = await actions.conversation_for(user, pk)
    if request.method == "DELETE":
        await database_sync_to_async(services.conversation_delete)(conversation=target)
        await events.publish_to_user(user.pk, events.conversation_deleted_frame(pk))
        return HttpResponse(status=204)
    await database_sync_to_async(services.conversation_update)(
        conversation=target,
        title=body.get("title"),
        model=body.get("model"),
        system_prompt=body.get("system_prompt"),
        parameters=body.get("parameters"),
        pinned=body.get("pinned"),
        archived=body.get("archived"),
    )
    updated = (await _conversation_detail(user, pk))["conversation"]
    await events.publish_to_user(user.pk, events.conversation_frame_of(updated))
    return JsonResponse(updated)


def _reply_starter(kind: str) -> View:
    """The endpoint of one way of starting a reply (actions.REPLY_STARTERS)."""

    @require_http_methods(["POST"])
    @api_view
    async def start(request: HttpRequest, user: Any, body: dict[str, Any], pk: int) -> HttpResponse:
        started = await actions.start_reply(user, pk, kind=kind, fields=body)
        return JsonResponse(started.frame(client_id=body["client_id"]), status=200 if started.duplicate else 202)

    return start


# The reply starters' paths (the four views below): config.asgi serves them outside Django's per-request thread.
REPLY_START_PATH = re.compile(r"/api/conversations/\d+/(?:messages|regenerate|edit|continue)")


def is_reply_start_path(path: str) -> bool:
    """Whether a request starts a reply: one brief trip to the database thread, as a WebSocket `send` makes."""
    return REPLY_START_PATH.fullmatch(path) is not None


messages = _reply_starter("send")
regenerate = _reply_starter("regenerate")
edit = _reply_starter("edit")
continue_ = _reply_starter("continue")


@require_http_methods(["POST"])
@api_view
async def switch(request: HttpRequest, user: Any, body: dict[str, Any], pk: int) -> HttpResponse:
    frame = await actions.switch_branch(user, pk, message=body.get("message"))
    return JsonResponse(frame)


@require_http_methods(["POST"])
@api_view
async def cancel(request: HttpRequest, user: Any, body: dict[str, Any], pk: int) -> HttpResponse:
    reply = await actions.stop_reply(user, pk)
    return JsonResponse({"conversation": pk, "message": reply.pk, "stopping": True}, status=202)


@require_http_methods(["PUT", "DELETE"])
@api_view
async def feedback(request: HttpRequest, user: Any, body: dict[str, Any], pk: int, message: int) -> HttpResponse:
    if request.method == "DELETE":
        await actions.give_feedback(user, pk, message=message, rating=None)
        return HttpResponse(status=204)
    if body.get("rating") is None:
        raise ChatError("invalid", _("`rating` must be up or down."), field="rating")
    frame = await actions.give_feedback(user, pk, message=message, rating=body["rating"], comment=body.get("comment"))
    return JsonResponse(frame)


@require_http_methods(["GET"])
@api_view
async def models(request: HttpRequest, user: Any, body: dict[str, Any]) -> HttpResponse:
    """The models offered, with the parameters each accepts (for a conversation's `parameters`)."""
    offered, default = await _models_for(user.pk)
    return JsonResponse({"models": offered, "default": default})


@database_sync_to_async
def _models_for(user_id: int) -> tuple[list[dict[str, Any]], str]:
    """The models the user's groups allow, with the parameters each accepts, and their default."""
    offered = [events.model_payload(model, rules) for model, rules in services.parameters_by_model(user_id=user_id)]
    return offered, services.default_model_for(user_id=user_id)


@require_http_methods(["GET"])
@api_view
async def usage(request: HttpRequest, user: Any, body: dict[str, Any]) -> HttpResponse:
    """What the user spent today and this month, and what is left of their money budgets."""
    status = await database_sync_to_async(limits.budget_status_for)(user_id=user.pk)
    return JsonResponse(status.payload())


async def unknown_route(request: HttpRequest, path: str = "") -> JsonResponse:
    """Any other /api/ URL: the JSON error shape, like every answer of the API."""
    return error_response(ChatError("not_found", "No such API endpoint."))
