"""Uploading files: the type comes from the content, every limit has its code, and a refused file
leaves no row and no stored file behind."""

import pytest
from django.test import Client

from chat.models import Attachment
from tests.attachment_files import decompression_bomb, jpeg_with_exif, pdf, png, stored_files

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("engine")]

HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"


def refused(response, code: str, status: int, root) -> None:
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert Attachment.objects.count() == 0, "a refused file leaves no row"
    assert stored_files(root) == [], "a refused file leaves no stored file"


def test_a_png_is_stored_with_a_thumbnail_and_described_by_its_content(files_chat, upload, attachments_root):
    response = upload(files_chat, "photo.png", png((800, 600)))

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "image" and body["mime"] == "image/png"
    assert (body["width"], body["height"]) == (800, 600)
    assert body["url"] == f"/api/attachments/{body['id']}/file"
    assert body["thumbnail_url"] == f"/api/attachments/{body['id']}/thumbnail"
    row = Attachment.objects.get()
    assert row.message is None and row.name == "photo.png" and len(row.sha256) == 64
    assert len(stored_files(attachments_root)) == 2  # the image and its thumbnail


def test_exif_is_stripped_from_the_stored_image_and_its_thumbnail(files_chat, upload, owner_client, attachments_root):
    body = upload(files_chat, "holiday.jpg", jpeg_with_exif()).json()

    for url in (body["url"], body["thumbnail_url"]):
        served = b"".join(owner_client.get(url))
        assert b"SecretCam" not in served and b"51.5007" not in served


def test_a_pdf_has_its_text_extracted_once_at_upload(files_chat, upload, attachments_root):
    body = upload(files_chat, "report.pdf", pdf("Revenue grew 12 percent.")).json()

    assert body["kind"] == "pdf" and body["thumbnail_url"] is None
    assert "Revenue grew 12 percent." in Attachment.objects.get().text


@pytest.mark.parametrize(
    ("name", "data", "mime"),
    [
        ("notes.md", b"# Title\n\nSome *notes*.", "text/markdown"),
        ("table.csv", b"a,b\n1,2\n", "text/csv"),
        ("data.json", b'{"a": 1}', "application/json"),
        ("main.py", "print('héllo')\n".encode(), "text/plain"),
    ],
)
def test_text_files_are_accepted_when_their_content_is_utf8(files_chat, upload, attachments_root, name, data, mime):
    body = upload(files_chat, name, data).json()

    assert (body["kind"], body["mime"]) == ("text", mime)
    assert Attachment.objects.get().text == data.decode()


def test_a_png_renamed_pdf_is_an_image(files_chat, upload, attachments_root):
    body = upload(files_chat, "invoice.pdf", png()).json()

    assert (body["kind"], body["mime"]) == ("image", "image/png")


def test_an_html_file_renamed_png_is_refused(files_chat, upload, attachments_root):
    refused(upload(files_chat, "cat.png", HTML), "unsupported_file", 415, attachments_root)


def test_an_html_or_svg_file_is_never_text(files_chat, upload, attachments_root):
    refused(upload(files_chat, "page.html", HTML), "unsupported_file", 415, attachments_root)
    refused(upload(files_chat, "page.txt", HTML), "unsupported_file", 415, attachments_root)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
    refused(upload(files_chat, "logo.svg", svg), "unsupported_file", 415, attachments_root)


def test_an_empty_file_is_refused(files_chat, upload, attachments_root):
    refused(upload(files_chat, "empty.txt", b""), "unsupported_file", 415, attachments_root)


def test_a_truncated_pdf_is_refused(files_chat, upload, attachments_root):
    whole = pdf()
    refused(upload(files_chat, "cut.pdf", whole[: len(whole) // 2]), "unsupported_file", 415, attachments_root)


def test_a_truncated_image_is_refused(files_chat, upload, attachments_root):
    whole = png((300, 300), "green")
    refused(upload(files_chat, "cut.png", whole[: len(whole) - 40]), "unsupported_file", 415, attachments_root)


@pytest.mark.parametrize("side", [8_000, 30_000])  # over our limit; over Pillow's own bomb limit too
def test_a_decompression_bomb_is_refused_before_it_is_decoded(files_chat, upload, attachments_root, side):
    bomb = decompression_bomb(side)
    assert len(bomb) < 1000

    refused(upload(files_chat, "bomb.png", bomb), "unsupported_file", 415, attachments_root)


def test_binary_that_is_no_known_type_is_refused(files_chat, upload, attachments_root):
    refused(
        upload(files_chat, "tool.exe", b"MZ\x90\x00\x03" + bytes(range(256))), "unsupported_file", 415, attachments_root
    )


def test_a_kind_the_server_does_not_accept_is_refused(files_chat, upload, attachments_root, settings):
    settings.CHAT_ATTACHMENT_KINDS = ["image"]

    refused(upload(files_chat, "report.pdf", pdf()), "unsupported_file", 415, attachments_root)


def test_a_file_over_the_size_limit_is_refused_while_it_streams(files_chat, upload, attachments_root, settings):
    settings.CHAT_ATTACHMENT_MAX_BYTES = 1000

    refused(upload(files_chat, "big.txt", b"x" * 5000), "file_too_large", 413, attachments_root)


def test_a_file_that_would_fill_the_users_storage_is_refused(files_chat, upload, attachments_root, settings):
    settings.CHAT_ATTACHMENT_STORAGE_PER_USER = 100

    refused(upload(files_chat, "notes.txt", b"y" * 200), "storage_full", 413, attachments_root)


def test_more_files_than_a_message_takes_are_refused(files_chat, upload, attachments_root, settings):
    settings.CHAT_ATTACHMENTS_PER_MESSAGE = 2
    for index in range(2):
        assert upload(files_chat, f"n{index}.txt", b"note").status_code == 201
    before = stored_files(attachments_root)

    response = upload(files_chat, "third.txt", b"one too many")

    assert response.status_code == 400 and response.json()["error"]["code"] == "too_many_files"
    assert Attachment.objects.count() == 2 and stored_files(attachments_root) == before


def test_a_request_without_a_file_is_invalid(files_chat, owner_client, attachments_root):
    response = owner_client.post(f"/api/conversations/{files_chat.pk}/attachments", {"other": "x"})

    refused(response, "invalid", 400, attachments_root)


def test_the_file_name_is_sanitised(files_chat, upload, attachments_root):
    body = upload(files_chat, '../../etc/<b onmouseover="x">notes.txt', b"hello").json()

    assert body["name"] == "_b onmouseover=_x__notes.txt"
    assert all(".." not in name for name in stored_files(attachments_root))


def test_pending_uploads_are_listed_and_can_be_removed(
    files_chat, upload, owner_client, attachments_root, django_capture_on_commit_callbacks
):
    first = upload(files_chat, "a.txt", b"first").json()
    upload(files_chat, "b.txt", b"second")

    listed = owner_client.get(f"/api/conversations/{files_chat.pk}/attachments").json()["attachments"]
    assert [item["name"] for item in listed] == ["a.txt", "b.txt"]

    with django_capture_on_commit_callbacks(execute=True):
        assert owner_client.delete(f"/api/attachments/{first['id']}").status_code == 204
    assert [a.name for a in Attachment.objects.all()] == ["b.txt"]
    assert len(stored_files(attachments_root)) == 1


def test_logged_out_uploads_are_refused(files_chat, attachments_root):
    response = Client().post(f"/api/conversations/{files_chat.pk}/attachments", {"file": b"x"})

    refused(response, "unauthenticated", 401, attachments_root)


async def _call_guarded(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, dict, int]:
    """POST through the ASGI guard in front of Django's own handler; (status, JSON body, chunks read)."""
    import orjson
    from django.core.asgi import get_asgi_application

    from chat.middleware import UploadSizeGuard

    app = UploadSizeGuard(get_asgi_application())
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/conversations/1/attachments",
        "headers": headers,
        "query_string": b"",
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
        "root_path": "",
    }
    read = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal read
        read += 1
        if read > len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, orjson.loads(body), read


async def test_a_body_that_says_it_is_too_large_is_refused_before_it_is_read(settings):
    settings.CHAT_ATTACHMENT_MAX_BYTES = 1000

    status, body, read = await _call_guarded([(b"content-length", b"50000000")], [b"x" * 1000] * 5)

    assert (status, body["error"]["code"], read) == (413, "file_too_large", 0)


async def test_a_body_without_a_length_is_cut_off_once_it_passes_the_limit(settings):
    settings.CHAT_ATTACHMENT_MAX_BYTES = 1000

    status, body, read = await _call_guarded([], [b"x" * 40_000] * 100)

    assert (status, body["error"]["code"]) == (413, "file_too_large")
    assert read < 100, "the rest of the body is never read"


@pytest.mark.parametrize(
    ("image_format", "mime"), [("WEBP", "image/webp"), ("GIF", "image/gif"), ("JPEG", "image/jpeg")]
)
def test_webp_gif_and_jpeg_images_are_accepted(files_chat, upload, attachments_root, image_format, mime):
    import io

    from PIL import Image

    data = io.BytesIO()
    Image.new("RGB", (30, 20), "purple").save(data, format=image_format)

    body = upload(files_chat, "picture.bin", data.getvalue()).json()

    assert (body["kind"], body["mime"], body["width"], body["height"]) == ("image", mime, 30, 20)
    assert body["thumbnail_url"]


def test_a_malformed_multipart_body_is_invalid(files_chat, owner_client, attachments_root):
    response = owner_client.post(
        f"/api/conversations/{files_chat.pk}/attachments",
        data=b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nno end',
        content_type="multipart/form-data; boundary=",
    )

    refused(response, "invalid", 400, attachments_root)


def test_a_json_body_is_not_an_upload(files_chat, owner_client, attachments_root):
    response = owner_client.post(
        f"/api/conversations/{files_chat.pk}/attachments", {"file": "x"}, content_type="application/json"
    )

    refused(response, "invalid", 400, attachments_root)
