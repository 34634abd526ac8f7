"""Writes made by transcript review in the admin: the audit trail of who read which transcript."""

from collections.abc import Iterable

from django.contrib.auth.base_user import AbstractBaseUser

from chat.models import Conversation, TranscriptView


def transcript_view_record(
    *, viewer: AbstractBaseUser, conversations: Iterable[Conversation], via: TranscriptView.Via
) -> list[TranscriptView]:
    """Record that `viewer` opened or exported these transcripts: one insert however many."""
    return TranscriptView.objects.bulk_create(
        TranscriptView(
            viewer=viewer,
            viewer_username=viewer.get_username(),
            conversation=conversation,
            conversation_label=f"#{conversation.pk} {conversation}"[:250],
            via=via,
        )
        for conversation in conversations
    )
