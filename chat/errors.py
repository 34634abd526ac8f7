"""The app's own errors: a stable code for clients and a message a person can act on."""

from typing import ClassVar


class ChatError(Exception):
    """A refused request. `code` is stable (docs/protocol.md lists every one)."""

    MESSAGES: ClassVar[dict[str, str]] = {
        "bad_json": "The frame is not valid JSON.",
        "invalid": "The request is missing a field or has one of the wrong type.",
        "invalid_parameter": "A generation parameter is not accepted by this conversation's model.",
        "unknown_type": "Unknown frame type.",
        "frame_too_large": "The frame is too large.",
        "empty_message": "The message is empty.",
        "message_too_long": "The message is too long.",
        "not_found": "No such conversation.",
        "unknown_model": "That model is not offered on this server.",
        "busy": "A reply is still running in this conversation. Wait for it or stop it first.",
        "nothing_to_regenerate": "There is no finished reply to regenerate.",
        "nothing_to_continue": "There is no stopped or interrupted reply to continue.",
        "not_running": "No reply is running in this conversation.",
        "unauthenticated": "Log in first.",
        "queue_full": "Too many of your replies are waiting for the model. Wait for one to start, then try again.",
        "unavailable": "The server cannot reach its database right now. Try again in a few seconds.",
        "too_many_running": "Too many of your replies are running. Wait for one to finish, then try again.",
        "rate_limited": "You are starting replies too fast. Try again in a minute.",
        "budget_exhausted": "You have used today's token budget. It renews at midnight UTC.",
        "too_many_frames": "Too many frames in too little time. Slow down.",
        "session_ended": "Your session ended. Log in again.",
        "invalid_api_key": "Incorrect API key provided.",
        "model_not_allowed": "This API key may not use that model.",
        "file_too_large": "The file is larger than this server accepts.",
        "unsupported_file": "This kind of file cannot be attached.",
        "storage_full": "Your files use all the storage you have on this server.",
        "too_many_files": "Too many files for one message.",
        "attachment_not_found": "No such attachment in this conversation.",
        "attachment_used": "That file was already sent with a message.",
        "attachment_unavailable": "A file of this conversation cannot be read from storage right now. Try again.",
        "unsupported_attachment": "This conversation's model cannot take one of these files.",
        "csrf_failed": "The CSRF check failed. Send the csrftoken cookie's value in an X-CSRFToken header.",
    }

    def __init__(
        self, code: str, message: str = "", *, retry_after: float | None = None, field: str | None = None
    ) -> None:
        self.code = code
        self.message = message or self.MESSAGES.get(code, code)
        self.retry_after = retry_after
        self.field = field  # the request field at fault, where one is (`invalid_parameter`)
        super().__init__(f"{code}: {self.message}")
