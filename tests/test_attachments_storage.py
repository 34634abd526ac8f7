"""Attachment storage through Django's storage API: the local filesystem (embedded), and an
S3-compatible store through django-storages, here a real S3 server (moto's server mode) on loopback.
Either way a file is stored, served back, and deleted with its conversation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from chat.models import Attachment
from tests.attachment_files import png, stored_files
from tests.harness.ports import free_port

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("engine")]

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "chat-files"
CREDENTIALS = {"aws_access_key_id": "test-key", "aws_secret_access_key": "test-secret", "region_name": "us-east-1"}


@pytest.fixture(scope="module")
def s3_server():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_server, settings):
    """The attachments storage set as production sets it from CHAT_S3_*: S3Storage on the loopback server."""
    client = boto3.client("s3", endpoint_url=s3_server, **CREDENTIALS)
    client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": s3_server,
                "region_name": "us-east-1",
                "access_key": CREDENTIALS["aws_access_key_id"],
                "secret_key": CREDENTIALS["aws_secret_access_key"],
                "location": "attachments",
                "file_overwrite": False,
            },
        },
    }
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def objects(client) -> list[str]:
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_an_upload_is_stored_in_the_bucket_and_served_back(bucket, files_chat, upload, owner_client):
    image = png((40, 30))

    body = upload(files_chat, "chart.png", image).json()

    row = Attachment.objects.get()
    assert objects(bucket) == sorted([f"attachments/{row.storage_name}", f"attachments/{row.thumbnail_name}"])
    served = owner_client.get(body["url"] + "?inline=1")
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    assert served.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_deleting_the_conversation_deletes_its_objects(
    bucket, files_chat, upload, owner_client, django_capture_on_commit_callbacks
):
    upload(files_chat, "chart.png", png())
    upload(files_chat, "notes.txt", b"some notes")
    assert len(objects(bucket)) == 3

    with django_capture_on_commit_callbacks(execute=True):
        assert owner_client.delete(f"/api/conversations/{files_chat.pk}").status_code == 204

    assert objects(bucket) == []


def test_a_refused_upload_leaves_no_object(bucket, files_chat, upload, settings):
    settings.CHAT_ATTACHMENT_STORAGE_PER_USER = 10

    assert upload(files_chat, "notes.txt", b"more than ten bytes").json()["error"]["code"] == "storage_full"

    assert objects(bucket) == [] and Attachment.objects.count() == 0


def test_the_filesystem_storage_keeps_files_under_its_folder_and_deletes_them(
    attachments_root, files_chat, upload, owner_client, django_capture_on_commit_callbacks
):
    upload(files_chat, "chart.png", png())
    assert len(stored_files(attachments_root)) == 2

    with django_capture_on_commit_callbacks(execute=True):
        owner_client.delete(f"/api/conversations/{files_chat.pk}")

    assert stored_files(attachments_root) == []


def test_settings_switch_to_s3_when_a_bucket_is_configured():
    script = "import json, config.settings as s; print(json.dumps(s.STORAGES['attachments']))"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    environment.update(
        CHAT_S3_BUCKET="prod-files", CHAT_S3_ENDPOINT_URL="https://s3.example.test", CHAT_S3_REGION="eu-1"
    )

    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True)

    backend = json.loads(result.stdout)
    assert backend["BACKEND"] == "storages.backends.s3.S3Storage"
    assert backend["OPTIONS"]["bucket_name"] == "prod-files"
    assert backend["OPTIONS"]["endpoint_url"] == "https://s3.example.test"
    assert backend["OPTIONS"]["region_name"] == "eu-1"
