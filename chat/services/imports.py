"""Importing a user's history: an upload becomes an ImportJob, run in the background
(import_job_run), whose progress the page polls. A file is checked whole before anything is
written, then written in one transaction: a file that fails imports nothing. Importing is idempotent:
a conversation whose key (its id in the file) the user already imported is skipped.

Progress: `total` is known once the file is read; `done` counts the conversations checked (committed
as it goes, so the page sees it move), then the status says `saving` while the one transaction runs.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.errors import ChatError
from chat.models import Conversation, ImportJob, Message
from chat.providers import registry
from chat.services.import_formats import ImportedConversation, conversations_in, export_key, read_document
from chat.services.search_index import search_index_conversations, search_index_messages

IMPORT_LOST_AFTER = timedelta(hours=1)  # far longer than the largest file allowed takes


def import_job_create(*, owner: AbstractBaseUser, filename: object, payload: bytes) -> ImportJob:
    """A queued job for an uploaded file; `import_too_large` over CHAT_IMPORT_MAX_BYTES, `invalid` if empty."""
    limit = settings.CHAT_IMPORT_MAX_BYTES
    if len(payload) > limit:
        raise ChatError(
            "import_too_large",
            _("The file is %(size)s bytes; imports are limited to %(limit)s.")
            % {"size": f"{len(payload):,}", "limit": f"{limit:,}"},
        )
    if not payload:
        raise ChatError("invalid", _("The upload is empty: send the file as the request body."))
    name = filename if isinstance(filename, str) else ""
    return ImportJob.objects.create(owner=owner, kind="", filename=name.replace("\x00", "")[:255], payload=payload)


def import_job_run(*, job_id: int) -> ImportJob:
    """Run a queued job to its end (done or failed); a job already taken is left to whoever took it."""
    if not ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(status=ImportJob.Status.RUNNING):
        return ImportJob.objects.get(pk=job_id)
    job = ImportJob.objects.select_related("owner").get(pk=job_id)
    try:
        document = read_document(bytes(job.payload), max_bytes=settings.CHAT_IMPORT_MAX_BYTES)
        kind, conversations = conversations_in(document, progress=lambda done, total: _progress(job_id, done, total))
        ImportJob.objects.filter(pk=job_id).update(kind=kind, status=ImportJob.Status.SAVING)
        created, skipped = _write(job.owner, conversations)
    except ChatError as error:
        _end(job_id, status=ImportJob.Status.FAILED, error_code=error.code, error_message=error.message)
    else:
        _end(job_id, status=ImportJob.Status.DONE, created=created, skipped=skipped)
    return ImportJob.objects.get(pk=job_id)


def import_jobs_fail_lost(*, owner: AbstractBaseUser) -> int:
    """The owner's jobs still unfinished IMPORT_LOST_AFTER after their upload lost the server process
    that ran them (a restart): they fail, so the page stops waiting. Nothing of them was written (one
    transaction). Returns how many."""
    lost = ImportJob.objects.filter(owner=owner, finished_at=None, created_at__lt=timezone.now() - IMPORT_LOST_AFTER)
    return lost.exclude(status__in=[ImportJob.Status.DONE, ImportJob.Status.FAILED]).update(
        status=ImportJob.Status.FAILED,
        error_code="interrupted",
        error_message="The import was interrupted (the server restarted). Nothing was imported: upload the file again.",
        payload=b"",
        finished_at=timezone.now(),
    )


def _progress(job_id: int, done: int, total: int) -> None:
    ImportJob.objects.filter(pk=job_id).update(done=done, total=total)


def _end(job_id: int, **fields: object) -> None:
    # The uploaded bytes are not kept once the job has ended.
    ImportJob.objects.filter(pk=job_id).update(payload=b"", finished_at=timezone.now(), **fields)


def _write(owner: AbstractBaseUser, conversations: list[ImportedConversation]) -> tuple[int, int]:
    """Every conversation not imported before, in one transaction; returns (created, skipped)."""
    known = {
        export_key(row) for row in Conversation.objects.filter(owner=owner).only("pk", "imported_from", "created_at")
    }
    created = skipped = 0
    with transaction.atomic():
        for conversation in conversations:
            if conversation.key in known:
                skipped += 1
                continue
            known.add(conversation.key)
            _write_one(owner, conversation)
            created += 1
    return created, skipped


def _write_one(owner: AbstractBaseUser, imported: ImportedConversation) -> Conversation:
    fields = dict(imported.fields)
    # The file's model is kept as it was, offered here or not (the user may switch it); ChatGPT's: ours.
    fields["model"] = fields.get("model") or registry.default_model_ref()
    conversation = Conversation.objects.create(owner=owner, title=fields["title"], model=fields["model"])
    ids: dict[str, int] = {}
    stamps = []
    for message in imported.messages:
        values = dict(message.fields)
        moments = {name: values.pop(name) for name in ("created_at", "updated_at")}
        if values["status"] in Message.ACTIVE_STATUSES:  # no worker will ever finish it here
            values["status"] = Message.Status.INTERRUPTED
        row = Message.objects.create(conversation=conversation, parent_id=ids.get(message.parent or ""), **values)
        ids[message.ref] = row.pk
        stamps.append(Message(pk=row.pk, **moments))
    # auto_now(_add) fields take the file's times only through an update.
    Message.objects.bulk_update(stamps, ["created_at", "updated_at"], batch_size=500)
    leaf = ids.get(imported.current_leaf or "")
    Conversation.objects.filter(pk=conversation.pk).update(imported_from=imported.key, current_leaf_id=leaf, **fields)
    search_index_messages(message_ids=ids.values())
    search_index_conversations(conversation_ids=[conversation.pk])
    return conversation
