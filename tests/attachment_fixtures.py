"""Fixtures for the attachment tests: a filesystem storage of the test's own, a logged-in owner with a
conversation, and an upload helper."""

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from chat import services


@pytest.fixture
def attachments_root(settings, tmp_path) -> Path:
    """Attachments stored on the filesystem under a folder of this test's; in cluster mode the folder the
    test cluster's worker process was started with (emptied for each test)."""
    root = tmp_path / "attachments"
    if settings.REDIS_URL:
        from tests.cluster_fixtures import CLUSTER_ATTACHMENTS_DIR

        root = CLUSTER_ATTACHMENTS_DIR
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": root}},
    }
    return root


@pytest.fixture
def owner(make_user) -> Any:
    return make_user("owner")


@pytest.fixture
def owner_client(owner) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def files_chat(owner, engine) -> Any:
    """The owner's conversation with the engine's test model."""
    from tests.engine_fixtures import TEST_MODEL

    return services.conversation_create(owner=owner, model=TEST_MODEL)


@pytest.fixture
def upload(owner_client) -> Callable[..., Any]:
    """`upload(conversation, name, data, client=owner_client)`: POST one file; the response."""

    def post(conversation: Any, name: str, data: bytes, client: Client | None = None) -> Any:
        file = SimpleUploadedFile(name, data, content_type="application/octet-stream")
        return (client or owner_client).post(f"/api/conversations/{conversation.pk}/attachments", {"file": file})

    return post


@pytest.fixture
def vision(settings, engine) -> None:
    """The engine's test model sees images; `openai:gpt-other` does not."""
    from chat.providers import registry
    from tests.engine_fixtures import TEST_MODEL

    settings.CHAT_VISION_MODELS = [TEST_MODEL]
    registry.reset()
