"""Who may fetch a file: its owner, through every attachment route; anyone else gets exactly the answer
for an id that does not exist, and nothing changes. Staff fetch files through the admin, audited. What
is served is never run by a browser: downloads, `nosniff`, inline only for our own re-encoded images."""

import io
import json

import pytest
from django.test import Client

from chat import services
from chat.models import Attachment, TranscriptView
from chat.services.attachments import attachment_create
from tests.attachment_files import pdf, png

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("engine", "attachments_root", "vision")]

MISSING = 987_654_321


def stored(conversation, name: str, data: bytes) -> Attachment:
    return attachment_create(
        owner=conversation.owner, conversation=conversation, upload=io.BytesIO(data), name=name, size=len(data)
    )


@pytest.fixture
def image(files_chat) -> Attachment:
    return stored(files_chat, "secret.png", png())


@pytest.fixture
def intruder(make_user) -> Client:
    client = Client()
    client.force_login(make_user("intruder"))
    return client


def state() -> list[tuple]:
    return list(Attachment.objects.order_by("pk").values_list("pk", "message_id", "conversation_id", "storage_name"))


ROUTES = [
    ("get", "/api/attachments/{id}"),
    ("delete", "/api/attachments/{id}"),
    ("get", "/api/attachments/{id}/file"),
    ("get", "/api/attachments/{id}/file?inline=1"),
    ("get", "/api/attachments/{id}/thumbnail"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_another_users_attachment_answers_like_a_missing_one(intruder, image, method, route):
    before = state()

    theirs = getattr(intruder, method)(route.format(id=image.pk))
    missing = getattr(intruder, method)(route.format(id=MISSING))

    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    assert b"secret" not in theirs.content
    assert state() == before


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_users_conversation_takes_no_uploads_and_lists_none(intruder, files_chat, image, method):
    before = state()
    data = {"file": io.BytesIO(png())} if method == "post" else None
    url = "/api/conversations/{id}/attachments"

    theirs = getattr(intruder, method)(url.format(id=files_chat.pk), data)
    missing = getattr(intruder, method)(url.format(id=MISSING), {"file": io.BytesIO(png())} if data else None)

    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    assert state() == before


@pytest.mark.parametrize("route", ["/api/attachments/{id}", "/api/attachments/{id}/file"])
def test_logged_out_requests_get_nothing(image, route):
    answer = Client().get(route.format(id=image.pk))

    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthenticated"


def test_the_owner_gets_a_download_that_no_browser_runs(owner_client, files_chat):
    document = stored(files_chat, 'report"<x>.pdf', pdf())

    answer = owner_client.get(f"/api/attachments/{document.pk}/file?inline=1")

    assert answer.status_code == 200 and answer["Content-Type"] == "application/pdf"
    assert answer["Content-Disposition"] == "attachment; filename*=UTF-8''report__x_.pdf"
    assert answer["X-Content-Type-Options"] == "nosniff"
    assert answer.content == pdf()


def test_a_text_file_is_a_download_as_text_plain(owner_client, files_chat):
    note = stored(files_chat, "notes.txt", b"plain words")

    answer = owner_client.get(f"/api/attachments/{note.pk}/file?inline=1")

    assert answer["Content-Type"] == "text/plain" and answer["Content-Disposition"].startswith("attachment;")


def test_an_image_is_inline_only_when_asked_and_its_thumbnail_always(owner_client, image):
    shown = owner_client.get(f"/api/attachments/{image.pk}/file?inline=1")
    downloaded = owner_client.get(f"/api/attachments/{image.pk}/file")
    thumbnail = owner_client.get(f"/api/attachments/{image.pk}/thumbnail")

    assert shown["Content-Disposition"].startswith("inline;") and shown["Content-Type"] == "image/png"
    assert downloaded["Content-Disposition"].startswith("attachment;")
    assert thumbnail["Content-Type"] == "image/png" and thumbnail["Content-Disposition"] == "inline"
    assert all(answer["X-Content-Type-Options"] == "nosniff" for answer in (shown, downloaded, thumbnail))


def test_the_content_security_policy_is_unchanged_on_files(owner_client, image):
    from chat.middleware import CONTENT_SECURITY_POLICY

    assert owner_client.get(f"/api/attachments/{image.pk}/file")["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_a_sent_attachment_cannot_be_removed(owner_client, files_chat, image):
    sent = services.message_send(conversation=files_chat, client_id="c1", content="look", attachments=[image.pk])
    assert sent.user_message is not None

    answer = owner_client.delete(f"/api/attachments/{image.pk}")

    assert answer.status_code == 409 and answer.json()["error"]["code"] == "attachment_used"


@pytest.fixture
def superuser_client(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_staff_fetch_a_file_through_the_admin_and_it_is_audited(superuser_client, image, files_chat):
    answer = superuser_client.get(f"/admin/chat/conversation/attachments/{image.pk}/")

    assert answer.status_code == 200 and answer["Content-Disposition"].startswith("attachment;")
    (view,) = TranscriptView.objects.all()
    assert (view.via, view.conversation_id) == ("attachment", files_chat.pk)


def test_a_user_without_staff_rights_gets_no_file_through_the_admin(owner_client, image):
    answer = owner_client.get(f"/admin/chat/conversation/attachments/{image.pk}/")

    assert answer.status_code == 302 and "/login/" in answer["Location"]
    assert TranscriptView.objects.count() == 0


def test_the_admin_transcript_shows_files_with_their_extracted_text(superuser_client, files_chat, image):
    document = stored(files_chat, "budget.pdf", pdf("The budget is 4 million."))
    services.message_send(conversation=files_chat, client_id="c1", content="look", attachments=[image.pk, document.pk])

    page = superuser_client.get(f"/admin/chat/conversation/{files_chat.pk}/change/").content.decode()

    assert f"/admin/chat/conversation/attachments/{image.pk}/?thumbnail=1" in page
    assert "secret.png" in page and "budget.pdf" in page
    assert "<summary>Extracted text (24 characters)</summary>" in page
    assert "The budget is 4 million." in page


def test_the_json_export_references_the_files(superuser_client, files_chat, image):
    services.message_send(conversation=files_chat, client_id="c1", content="look", attachments=[image.pk])

    answer = superuser_client.post(
        "/admin/chat/conversation/", {"action": "export_json", "_selected_action": [files_chat.pk]}
    )

    exported = json.loads(answer.content)
    (user_message,) = [m for m in exported["conversations"][0]["messages"] if m["role"] == "user"]
    assert user_message["attachments"] == [
        {
            "id": image.pk,
            "name": "secret.png",
            "kind": "image",
            "mime": "image/png",
            "size": image.size,
            "sha256": image.sha256,
        }
    ]


def test_the_usage_summary_shows_storage_per_user(superuser_client, files_chat, image):
    services.message_send(conversation=files_chat, client_id="c1", content="look", attachments=[image.pk])

    page = superuser_client.get("/admin/chat/conversation/usage/").content.decode()

    assert "Files stored" in page
    assert f"<td>{image.size}\xa0bytes</td>" in page


def test_the_model_picker_and_the_models_api_say_which_models_see_images(owner_client):
    page = owner_client.get("/").content.decode()
    models = {m["ref"]: m["vision"] for m in owner_client.get("/api/models").json()["models"]}

    assert "gpt-test · sees images</option>" in page and "gpt-other</option>" in page
    assert models == {"openai:gpt-test": True, "openai:gpt-other": False}
