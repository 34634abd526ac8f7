"""The JSON endpoints of attachments: upload into a conversation (multipart, one file a request, streamed
to a temporary file with the size limit enforced as it arrives), list the pending ones, remove one, and
serve a file to its owner. Images (re-encoded at upload) and thumbnails may be shown inline; everything
else is a download (docs/security.md)."""

from typing import Any
from urllib.parse import quote

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from chat import events, selectors
from chat.api import api_view
from chat.errors import ChatError
from chat.files import read_file
from chat.models import Attachment
from chat.services import attachments as service

# Served inline: only images we decoded and saved again ourselves; never SVG, never HTML.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})


class LimitedUploadHandler(TemporaryFileUploadHandler):
    """Writes the upload to a temporary file, and stops it the moment it passes the size limit."""

    def __init__(self, request: HttpRequest | None = None, *, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.too_large = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.too_large = True
            raise StopUpload(connection_reset=False)  # the temporary file is closed (and deleted)
        return super().receive_data_chunk(raw_data, start)


def _upload(request: HttpRequest, user: Any, conversation_id: int) -> Attachment:
    conversation = selectors.conversation_get_for(user=user, conversation_id=conversation_id)
    limit = settings.CHAT_ATTACHMENT_MAX_BYTES
    handler = LimitedUploadHandler(request, limit=limit)
    request.upload_handlers = [handler]
    try:
        uploads = request.FILES.getlist("file")
    except MultiPartParserError:
        raise ChatError("invalid", _("The upload is not a well-formed multipart body.")) from None
    if handler.too_large:
        raise service.file_too_large(limit)
    if len(uploads) != 1:
        raise ChatError("invalid", _("Send one file a request, in the multipart field `file`."))
    (upload,) = uploads
    try:
        return service.attachment_create(
            owner=user, conversation=conversation, upload=upload.file, name=upload.name or "", size=upload.size
        )
    finally:
        upload.close()


@database_sync_to_async
def _upload_payload(request: HttpRequest, user: Any, conversation_id: int) -> dict[str, Any]:
    return events.attachment_payload(_upload(request, user, conversation_id))


@database_sync_to_async
def _pending(user: Any, conversation_id: int) -> list[dict[str, Any]]:
    conversation = selectors.conversation_get_for(user=user, conversation_id=conversation_id)
    return [events.attachment_payload(a) for a in selectors.attachments_pending_for(conversation=conversation)]


@require_http_methods(["GET", "POST"])
@api_view(raw_body=True)
async def conversation_attachments(request: HttpRequest, user: Any, body: dict[str, Any], pk: int) -> HttpResponse:
    """POST: upload a file (multipart field `file`); GET: the files uploaded but not sent yet."""
    if request.method == "GET":
        return JsonResponse({"attachments": await _pending(user, pk)})
    return JsonResponse(await _upload_payload(request, user, pk), status=201)


@database_sync_to_async
def _remove(user: Any, attachment_id: int) -> None:
    service.attachment_delete(attachment=selectors.attachment_get_for(user=user, attachment_id=attachment_id))


@database_sync_to_async
def _payload(user: Any, attachment_id: int) -> dict[str, Any]:
    return events.attachment_payload(selectors.attachment_get_for(user=user, attachment_id=attachment_id))


@require_http_methods(["GET", "DELETE"])
@api_view
async def attachment(request: HttpRequest, user: Any, body: dict[str, Any], pk: int) -> HttpResponse:
    """GET: what the file is; DELETE: remove a file not sent yet (the composer's remove button)."""
    if request.method == "DELETE":
        await _remove(user, pk)
        return HttpResponse(status=204)
    return JsonResponse(await _payload(user, pk))


def file_response(attachment: Attachment, *, thumbnail: bool = False, inline: bool = False) -> HttpResponse:
    """A stored file as a response that no browser runs: a download, but for our own re-encoded images
    asked for inline (the lightbox) and thumbnails; always `nosniff`, never cached by shared caches."""
    if thumbnail:
        response = HttpResponse(read_file(attachment.thumbnail_name), content_type="image/png")
        response["Content-Disposition"] = "inline"
    else:
        response = HttpResponse(read_file(attachment.storage_name), content_type=attachment.mime)
        shown = inline and attachment.is_image and attachment.mime in INLINE_TYPES
        disposition = "inline" if shown else "attachment"
        response["Content-Disposition"] = f"{disposition}; filename*=UTF-8''{quote(attachment.name, safe='')}"
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    return response


@database_sync_to_async
def _file(user: Any, attachment_id: int, *, thumbnail: bool, inline: bool) -> HttpResponse:
    found = selectors.attachment_get_for(user=user, attachment_id=attachment_id)
    if thumbnail and not found.thumbnail_name:
        raise ChatError("not_found", _("This file has no thumbnail."))
    return file_response(found, thumbnail=thumbnail, inline=inline)


@require_http_methods(["GET"])
@api_view
async def attachment_file(request: HttpRequest, user: Any, body: dict[str, Any], pk: int) -> HttpResponse:
    """The file itself, to its owner only (`?inline=1`: an image shown in the lightbox)."""
    return await _file(user, pk, thumbnail=False, inline=request.GET.get("inline") == "1")


@require_http_methods(["GET"])
@api_view
async def attachment_thumbnail(request: HttpRequest, user: Any, body: dict[str, Any], pk: int) -> HttpResponse:
    """An image's thumbnail (made at upload, without metadata), to its owner only."""
    return await _file(user, pk, thumbnail=True, inline=True)
