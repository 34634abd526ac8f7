"""Attachments: upload (checked, then stored), attach to the message a `send` or `edit` makes, and the
files deleted with their rows (a conversation, an account). Every refusal writes nothing."""

import hashlib
import io
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import IO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.db import transaction
from django.db.models import Sum
from django.utils.translation import gettext as _

from chat import files
from chat.errors import ChatError
from chat.files import attachment_storage
from chat.models import Attachment, Conversation, Message
from chat.providers import registry

logger = logging.getLogger(__name__)


def storage_used_by(*, owner_id: int) -> int:
    """Bytes of attachments (thumbnails aside) the user has stored."""
    return Attachment.objects.filter(owner_id=owner_id).aggregate(total=Sum("size"))["total"] or 0


def too_many_files(limit: int) -> ChatError:
    return ChatError("too_many_files", _("A message takes at most %(limit)s files.") % {"limit": limit})


def file_too_large(limit: int) -> ChatError:
    return ChatError(
        "file_too_large", _("Files are limited to %(size)s MB each.") % {"size": round(limit / 1024 / 1024, 1)}
    )


def _check_room(*, owner_id: int, conversation: Conversation, size: int) -> None:
    """The upload may be stored: under the per-file size, the per-message count, the user's storage."""
    if size > settings.CHAT_ATTACHMENT_MAX_BYTES:
        raise file_too_large(settings.CHAT_ATTACHMENT_MAX_BYTES)
    limit = settings.CHAT_ATTACHMENTS_PER_MESSAGE
    if Attachment.objects.filter(conversation=conversation, message__isnull=True).count() >= limit:
        raise too_many_files(limit)
    quota = settings.CHAT_ATTACHMENT_STORAGE_PER_USER
    if storage_used_by(owner_id=owner_id) + size > quota:
        raise ChatError(
            "storage_full",
            _("Your files use all of your %(size)s MB. Delete conversations with files to make room.")
            % {"size": round(quota / 1024 / 1024)},
        )


def _sha256(content: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    content.seek(0)
    while chunk := content.read(1024 * 1024):
        digest.update(chunk)
        size += len(chunk)
    content.seek(0)
    return digest.hexdigest(), size


def attachment_create(
    *, owner: AbstractBaseUser, conversation: Conversation, upload: IO[bytes], name: str, size: int
) -> Attachment:
    """Check an uploaded file (limits, then its content) and store it, pending until a message names it."""
    _check_room(owner_id=owner.pk, conversation=conversation, size=size)
    inspected = files.inspect(
        upload,
        name=name,
        size=size,
        kinds=settings.CHAT_ATTACHMENT_KINDS,
        max_text_chars=settings.CHAT_ATTACHMENT_TEXT_MAX_CHARS,
    )
    sha256, stored_size = _sha256(inspected.content)
    storage = attachment_storage()
    key = f"u{owner.pk}/{uuid.uuid4().hex}"
    written: list[str] = []
    try:
        written.append(storage.save(key + inspected.extension, File(inspected.content)))
        if inspected.thumbnail:
            written.append(storage.save(f"{key}-thumb.png", File(io.BytesIO(inspected.thumbnail))))
        return Attachment.objects.create(
            owner=owner,
            conversation=conversation,
            kind=inspected.kind,
            mime=inspected.mime,
            size=stored_size,
            sha256=sha256,
            name=files.safe_name(name),
            storage_name=written[0],
            thumbnail_name=written[1] if len(written) > 1 else "",
            width=inspected.width,
            height=inspected.height,
            text=inspected.text,
        )
    except BaseException:
        _delete_files(written)  # nothing half-stored: the row failed, its files go too
        raise


def attachment_delete(*, attachment: Attachment) -> None:
    """Remove a pending attachment (the composer's remove button); a sent one stays with its message."""
    if attachment.message_id is not None:
        raise ChatError("attachment_used", _("This file was already sent with a message."))
    attachment.delete()  # its files go once the transaction commits (files_forget_on_delete)


def attachments_for_message(
    *, conversation: Conversation, ids: object, kept_from: Message | None = None
) -> list[Attachment]:
    """The attachments a new message names: pending ones of this conversation, or (an edit) those of the
    message it edits, which the copy keeps. `attachment_not_found` for ids that are neither."""
    if ids is None:
        return list(kept_from.attachments.all()) if kept_from is not None else []
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ChatError("invalid", _("`attachments` must be a list of attachment ids."))
    limit = settings.CHAT_ATTACHMENTS_PER_MESSAGE
    if len(set(ids)) > limit:
        raise too_many_files(limit)
    found = {a.pk: a for a in Attachment.objects.filter(pk__in=ids, conversation=conversation)}
    for pk in ids:
        attachment = found.get(pk)
        if attachment is None:
            raise ChatError("attachment_not_found", _("No such attachment in this conversation: %(id)s.") % {"id": pk})
        if attachment.message_id is not None and (kept_from is None or attachment.message_id != kept_from.pk):
            raise ChatError("attachment_used", _("Attachment %(id)s was already sent with a message.") % {"id": pk})
    return [found[pk] for pk in dict.fromkeys(ids)]


def attachments_check_model(*, model_ref: str, attachments: Iterable[Attachment]) -> None:
    """`unsupported_attachment`, naming the model, when it cannot take one of these files (before any call)."""
    try:
        model = registry.resolve(model_ref)[1]
    except registry.UnknownModel:
        return  # model_validate refuses it
    for attachment in attachments:
        if attachment.kind == Attachment.Kind.IMAGE and not model.vision:
            message = _("%(model)s does not see images. Choose a model that does, or remove %(name)s.")
            raise ChatError("unsupported_attachment", message % {"model": model.label, "name": attachment.name})


def attachments_attach(*, message: Message, attachments: Sequence[Attachment]) -> None:
    """Give a new user message its files: pending ones move to it, kept ones (an edit) are copied."""
    pending = [a.pk for a in attachments if a.message_id is None]
    if pending and Attachment.objects.filter(pk__in=pending, message__isnull=True).update(message=message) != len(
        pending
    ):
        raise ChatError("attachment_used", _("One of these files was just sent with another message."))
    for attachment in attachments:
        if attachment.message_id is not None:
            attachment.pk = None  # a copy that shares the stored files (they go with the last row)
            attachment.message = message
            attachment.save()


def attachments_counted_for_purge(sender: type, conversation_ids: list[int], **kwargs: object) -> dict[str, int]:
    """A purge's record counts the files it deletes (their rows go with the conversations' cascade, and
    the stored bytes after the commit, by `files_forget_on_delete`)."""
    return {"attachments": Attachment.objects.filter(conversation_id__in=conversation_ids).count()}


def files_forget_on_delete(sender: type, instance: Attachment, **kwargs: object) -> None:
    """post_delete of an Attachment (a conversation or account deleted too): its files go after the commit,
    unless another row (an edited copy) still uses them."""
    names = [instance.storage_name, instance.thumbnail_name]

    def forget() -> None:
        if not Attachment.objects.filter(storage_name=instance.storage_name).exists():
            _delete_files([name for name in names if name])

    transaction.on_commit(forget)


def _delete_files(names: Iterable[str]) -> None:
    storage = attachment_storage()
    for name in names:
        try:
            storage.delete(name)
        except Exception as exc:  # noqa: BLE001 - a file left behind is logged, never a failed delete
            logger.warning("could not delete attachment file %s (%s)", name, type(exc).__name__)
