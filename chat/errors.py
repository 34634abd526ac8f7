"""The app's own errors: a stable code for clients and a message a person can act on."""

from typing import ClassVar

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


class ChatError(Exception):
    """A refused request. `code` is stable (docs/protocol.md lists every one)."""

    MESSAGES: ClassVar[dict[str, Promise]] = {
        "bad_json": _("The frame is not valid JSON."),
        "invalid": _("The request is missing a field or has one of the wrong type."),
        "invalid_parameter": _("A generation parameter is not accepted by this conversation's model."),
        "unknown_type": _("Unknown frame type."),
        "frame_too_large": _("The frame is too large."),
        "empty_message": _("The message is empty."),
        "message_too_long": _("The message is too long."),
        "not_found": _("No such conversation."),
        "unknown_model": _("That model is not offered on this server."),
        "busy": _("A reply is still running in this conversation. Wait for it or stop it first."),
        "nothing_to_regenerate": _("There is no finished reply to regenerate."),
        "nothing_to_continue": _("There is no stopped or interrupted reply to continue."),
        "not_running": _("No reply is running in this conversation."),
        "unauthenticated": _("Log in first."),
        "queue_full": _("Too many of your replies are waiting for the model. Wait for one to start, then try again."),
        "unavailable": _("The server cannot reach its database right now. Try again in a few seconds."),
        "too_many_running": _("Too many of your replies are running. Wait for one to finish, then try again."),
        "rate_limited": _("You are starting replies too fast. Try again in a minute."),
        "budget_exhausted": _("You have used today's token budget. It renews at midnight UTC."),
        "too_many_frames": _("Too many frames in too little time. Slow down."),
        "session_ended": _("Your session ended. Log in again."),
        "invalid_api_key": _("Incorrect API key provided."),
        "model_not_allowed": _("You may not use that model (your API key or your groups do not allow it)."),
        "budget_exceeded": _("Your money budget is spent. It renews at midnight UTC (daily) or on the 1st (monthly)."),
        "file_too_large": _("The file is larger than this server accepts."),
        "unsupported_file": _("This kind of file cannot be attached."),
        "storage_full": _("Your files use all the storage you have on this server."),
        "too_many_files": _("Too many files for one message."),
        "attachment_not_found": _("No such attachment in this conversation."),
        "attachment_used": _("That file was already sent with a message."),
        "attachment_unavailable": _("A file of this conversation cannot be read from storage right now. Try again."),
        "unsupported_attachment": _("This conversation's model cannot take one of these files."),
        "not_a_reply": _("Feedback is given on a reply of the assistant, not on a message of yours."),
        "comment_too_long": _("The comment is too long."),
        "csrf_failed": _("The CSRF check failed. Send the csrftoken cookie's value in an X-CSRFToken header."),
    }

    def __init__(
        self, code: str, message: str | Promise = "", *, retry_after: float | None = None, field: str | None = None
    ) -> None:
        self.code = code
        # Kept lazy: the message is put in the language of whoever reads it (a request, a socket).
        self._message = message or self.MESSAGES.get(code, code)
        self.retry_after = retry_after
        self.field = field  # the request field at fault, where one is (`invalid_parameter`)
        super().__init__(code)

    @property
    def message(self) -> str:
        return str(self._message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
