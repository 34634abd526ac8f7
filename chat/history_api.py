"""The JSON endpoints of the history features: search, share links, export and import (chat.api
holds the conversation and reply endpoints, and the decorator all of them share)."""

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from chat import actions, events, search, selectors, services
from chat.api import api_view
from chat.errors import ChatError
from chat.export import export_zip


@database_sync_to_async
def _search(user: Any, query: object, reasoning: bool) -> list[dict[str, Any]]:
    return [events.search_hit_payload(hit) for hit in search.search_for(user=user, query=query, reasoning=reasoning)]


@require_http_methods(["GET"])
@api_view
async def search_view(request: HttpRequest, user: Any, body: dict[str, Any]) -> HttpResponse:
    """`?q=words` (and `reasoning=1` to search the reasoning too): the user's own best matches."""
    query = request.GET.get("q")
    if query is None:
        raise ChatError("invalid", _("Give the words to search for as `q`."))
    reasoning = request.GET.get("reasoning", "0") in {"1", "true"}
    return JsonResponse({"query": query, "results": await _search(user, query, reasoning)})


def _share_payload(request: HttpRequest, share: Any) -> dict[str, Any]:
    url = request.build_absolute_uri(reverse("chat:share", args=[share.token]))
    return events.share_payload(share, url=url)


@require_http_methods(["POST"])
@api_view
async def share_create(request: HttpRequest, user: Any, body: dict[str, Any], pk: int) -> HttpResponse:
    """A new link to the conversation's current path as it is now (`expires_in_days` optional)."""
    target = await actions.conversation_for(user, pk)
    share = await database_sync_to_async(services.share_create)(
        conversation=target, expires_in_days=body.get("expires_in_days")
    )
    return JsonResponse(_share_payload(request, share), status=201)


@database_sync_to_async
def _share_list(request: HttpRequest, user: Any) -> list[dict[str, Any]]:
    return [_share_payload(request, share) for share in selectors.share_list_for(user=user)]


@require_http_methods(["GET"])
@api_view
async def shares(request: HttpRequest, user: Any, body: dict[str, Any]) -> HttpResponse:
    return JsonResponse({"shares": await _share_list(request, user)})


@database_sync_to_async
def _share_revoke(user: Any, share_id: int) -> None:
    services.share_revoke(share=selectors.share_get_for(user=user, share_id=share_id))


@require_http_methods(["DELETE"])
@api_view
async def share_detail(request: HttpRequest, user: Any, body: dict[str, Any], pk: int) -> HttpResponse:
    """Revoke the link: it answers 404 from now on."""
    await _share_revoke(user, pk)
    return HttpResponse(status=204)


@require_http_methods(["GET"])
@api_view
async def export(request: HttpRequest, user: Any, body: dict[str, Any]) -> HttpResponse:
    """Every conversation of the user's as one ZIP (docs/protocol.md, "Export and import")."""
    now = timezone.now()
    archive = await database_sync_to_async(export_zip)(user=user, exported_at=now)
    response = HttpResponse(archive, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="streamchat-export-{now:%Y%m%d-%H%M%S}.zip"'
    return response


_imports_running: set[asyncio.Task[Any]] = set()


def _read_upload(request: HttpRequest) -> bytes:
    """The raw request body, up to CHAT_IMPORT_MAX_BYTES (read past Django's form-size limit, which
    is for forms; one byte more says the file is too large)."""
    return request.read(settings.CHAT_IMPORT_MAX_BYTES + 1)


@require_http_methods(["POST"])
@api_view(raw_body=True)
async def imports(request: HttpRequest, user: Any, body: dict[str, Any]) -> HttpResponse:
    """Upload a file to import (the body is the file; `?filename=` names it); the import runs in the
    background and `GET /api/imports/<id>` tells how far it got."""
    payload = _read_upload(request)
    job = await database_sync_to_async(services.import_job_create)(
        owner=user, filename=request.GET.get("filename", ""), payload=payload
    )
    # Runs on this process's event loop; the job row is the truth the page polls.
    task = asyncio.get_running_loop().create_task(database_sync_to_async(services.import_job_run)(job_id=job.pk))
    _imports_running.add(task)
    task.add_done_callback(_imports_running.discard)
    return JsonResponse(events.import_job_payload(job), status=202)


@require_http_methods(["GET"])
@api_view
async def import_job(request: HttpRequest, user: Any, body: dict[str, Any], pk: int) -> HttpResponse:
    await database_sync_to_async(services.import_jobs_fail_lost)(owner=user)
    job = await database_sync_to_async(selectors.import_job_get_for)(user=user, job_id=pk)
    return JsonResponse(events.import_job_payload(job))
