"""Feedback on a reply: a thumbs up or down, with an optional comment, one per user; set again to
change it, clear it to remove it. A refusal writes nothing."""

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils.translation import gettext as _

from chat import selectors
from chat.errors import ChatError
from chat.models import Conversation, Feedback, Message


def _reply_in(conversation: Conversation, message_id: object) -> Message:
    message = selectors.message_get_in(conversation=conversation, message_id=message_id)
    if message.role != Message.Role.ASSISTANT:
        raise ChatError("not_a_reply", field="message")
    return message


def _checked_comment(comment: object) -> str:
    if comment is None:
        return ""
    if not isinstance(comment, str) or "\x00" in comment:
        raise ChatError("invalid", _("`comment` must be text without the NUL character."), field="comment")
    limit = settings.CHAT_FEEDBACK_COMMENT_MAX_CHARS
    if len(comment) > limit:
        message = _("The comment is %(length)s characters; the limit is %(limit)s.") % {
            "length": f"{len(comment):,}",
            "limit": f"{limit:,}",
        }
        raise ChatError("comment_too_long", message, field="comment")
    return comment.strip()


def feedback_set(
    *, user: AbstractBaseUser, conversation: Conversation, message_id: object, rating: object, comment: object = None
) -> Feedback:
    """The user's rating ("up" or "down") and comment on a reply of their conversation, made or replaced."""
    if rating not in Feedback.Rating.values:
        raise ChatError("invalid", _("`rating` must be up or down."), field="rating")
    text = _checked_comment(comment)
    message = _reply_in(conversation, message_id)
    feedback, _created = Feedback.objects.update_or_create(
        message=message, user=user, defaults={"rating": rating, "comment": text}
    )
    return feedback


def feedback_clear(*, user: AbstractBaseUser, conversation: Conversation, message_id: object) -> Message:
    """Remove the user's feedback on a reply (none there is fine: the same end state)."""
    message = _reply_in(conversation, message_id)
    Feedback.objects.filter(message=message, user=user).delete()
    return message
