"""Files under the team rules: a reviewer fetches only the files of the members they may review (any
other file answers like a missing one, unrecorded), and a purge deletes a conversation's stored files
with it and counts them in its record."""

import io

import pytest
from django.test import Client

from chat import services
from chat.models import Attachment, TranscriptView
from chat.services.attachments import attachment_create
from tests.attachment_files import png
from tests.review_helpers import join_groups, make_reviewer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("engine", "attachments_root", "vision")]


def stored(conversation, name: str) -> Attachment:
    data = png()
    return attachment_create(
        owner=conversation.owner, conversation=conversation, upload=io.BytesIO(data), name=name, size=len(data)
    )


def files_of(root) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


@pytest.fixture
def support_reviewer(make_user) -> Client:
    client = Client()
    client.force_login(make_reviewer(make_user("support-lead"), ["Support"]))
    return client


def admin_file(client: Client, attachment: Attachment, query: str = ""):
    return client.get(f"/admin/chat/conversation/attachments/{attachment.pk}/{query}")


def test_a_support_reviewer_gets_a_support_members_file_and_it_is_recorded(support_reviewer, files_chat, owner):
    join_groups(owner, ["Support"])
    image = stored(files_chat, "screen.png")

    answer = admin_file(support_reviewer, image)

    assert answer.status_code == 200
    assert list(TranscriptView.objects.values_list("via", "conversation_id")) == [("attachment", files_chat.pk)]


@pytest.mark.parametrize("query", ["", "?inline=1", "?thumbnail=1"])
def test_a_support_reviewer_gets_404_for_a_sales_members_file_and_nothing_is_recorded(
    support_reviewer, files_chat, owner, query
):
    join_groups(owner, ["Sales"])
    image = stored(files_chat, "sales-secret.png")

    theirs = admin_file(support_reviewer, image, query)
    missing = support_reviewer.get(f"/admin/chat/conversation/attachments/987654321/{query}")

    assert theirs.status_code == missing.status_code == 404
    assert TranscriptView.objects.count() == 0


def test_a_purge_deletes_the_conversations_files_and_counts_them(
    files_chat, attachments_root, django_capture_on_commit_callbacks
):
    stored(files_chat, "one.png")
    stored(files_chat, "two.png")
    assert len(files_of(attachments_root)) == 4  # each image and its thumbnail

    with django_capture_on_commit_callbacks(execute=True):
        counts = services.conversation_purge(conversation_ids=[files_chat.pk])

    assert counts.conversations == 1 and counts.extra == {"attachments": 2}
    assert files_of(attachments_root) == [] and Attachment.objects.count() == 0
