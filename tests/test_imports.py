"""Export and import (chat/export.py, chat/services/imports.py, import_formats.py): the ZIP holds
everything and imports back equal, field by field; a ChatGPT export becomes our tree; importing
twice creates nothing new; a malformed or oversized file imports nothing and says where it is wrong."""

import asyncio
import io
import json
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, Client
from django.utils import timezone

from chat import selectors, services
from chat.errors import ChatError
from chat.export import export_zip
from chat.models import Conversation, ImportJob, Message
from chat.search import search_for
from chat.services.import_formats import CONVERSATION_FIELDS, MESSAGE_FIELDS
from tests.engine_fixtures import TEST_MODEL

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]

CHATGPT = Path(__file__).parent / "data" / "chatgpt_conversations.json"


@pytest.fixture
def alice(make_user):
    return make_user("alice-exporter")


@pytest.fixture
def bob(make_user):
    return make_user("bob-importer")


def history_of(alice) -> list[Conversation]:
    """Two conversations with everything a row can hold: branches, reasoning with a signature, a
    stopped reply with an error, usage and timings, pinned, archived, a user's own title."""
    now = timezone.now().replace(microsecond=123456)
    trip = services.conversation_create(owner=alice, model=TEST_MODEL, title="Trip", system_prompt="Be brief.")
    asked = Message.objects.create(conversation=trip, role="user", content="Where to?", client_id="c-1")
    first = Message.objects.create(
        conversation=trip,
        parent=asked,
        role="assistant",
        provider="openai",
        model=TEST_MODEL,
        content="Lisbon.",
        parts=[
            {"kind": "reasoning", "text": "Mild in May.", "signature": "sig-1", "duration_ms": 120},
            {"kind": "text", "text": "Lisbon.", "duration_ms": 40},
        ],
        input_tokens=12,
        output_tokens=30,
        cached_input_tokens=4,
        reasoning_tokens=9,
        time_to_first_token_ms=210,
        send_to_first_token_ms=260,
        duration_ms=900,
        seq=7,
        finish_reason="stop",
        started_at=now,
        finished_at=now + timedelta(seconds=1),
    )
    Message.objects.create(
        conversation=trip,
        parent=asked,
        role="assistant",
        status="cancelled",
        content="Por",
        error_code="cancelled",
        error_message="Stopped.",
        tokens_estimated=True,
        superseded_at=now,
    )
    follow = Message.objects.create(conversation=trip, parent=first, role="user", content="And then?")
    trip.current_leaf = follow
    trip.title_by_user = True
    trip.pinned_at = now
    trip.save()
    old = services.conversation_create(owner=alice, model=TEST_MODEL, title="Old <b>one</b>")
    Message.objects.create(conversation=old, role="user", content="hi")
    Conversation.objects.filter(pk=old.pk).update(archived_at=now, updated_at=now - timedelta(days=40))
    return list(Conversation.objects.filter(owner=alice).order_by("created_at", "id"))


def imported(owner, payload: bytes, filename: str = "export.zip") -> ImportJob:
    job = services.import_job_create(owner=owner, filename=filename, payload=payload)
    return services.import_job_run(job_id=job.pk)


def comparable(conversation: Conversation) -> dict:
    """Every exported field of the conversation and its messages, with parents and the current
    leaf as positions (ids differ between the two accounts)."""
    messages = list(conversation.messages.order_by("id"))
    position = {message.pk: index for index, message in enumerate(messages)}
    return {
        **{name: getattr(conversation, name) for name in CONVERSATION_FIELDS},
        "current_leaf": position.get(conversation.current_leaf_id),
        "messages": [
            {
                **{name: getattr(message, name) for name in MESSAGE_FIELDS},
                "parts": message.parts,
                "parent": position.get(message.parent_id),
            }
            for message in messages
        ],
    }


# --- Export ----------------------------------------------------------------------------------------


def test_the_export_is_a_zip_with_the_json_document_and_a_markdown_file_per_conversation(alice):
    conversations = history_of(alice)

    response = Client()
    response.force_login(alice)
    answer = response.get("/api/export")

    assert answer.status_code == 200 and answer["Content-Type"] == "application/zip"
    assert answer["Content-Disposition"].startswith('attachment; filename="streamchat-export-')
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    names = archive.namelist()
    assert names[0] == "conversations.json"
    assert sorted(names[1:]) == ["markdown/00001-trip.md", "markdown/00002-old-b-one-b.md"]
    document = json.loads(archive.read("conversations.json"))
    assert (document["format"], document["version"]) == ("streamchat-export", 1)
    assert [c["title"] for c in document["conversations"]] == [c.title for c in conversations]
    assert len(document["conversations"][0]["messages"]) == 4
    assert "Mild in May." in archive.read("markdown/00001-trip.md").decode()
    assert "Old \\<b\\>one\\</b\\>" in archive.read("markdown/00002-old-b-one-b.md").decode()


@pytest.mark.cluster  # PostgreSQL keeps times and JSON its own way: the round trip must hold there too
def test_export_then_import_equals_the_original_in_every_field(alice, bob):
    originals = history_of(alice)

    job = imported(bob, export_zip(user=alice, exported_at=timezone.now()))

    assert (job.status, job.kind, job.created, job.skipped, job.error_code) == ("done", "streamchat", 2, 0, "")
    copies = list(Conversation.objects.filter(owner=bob).order_by("created_at", "id"))
    assert [comparable(c) for c in copies] == [comparable(c) for c in originals]
    assert not job.payload


def test_importing_the_same_file_twice_creates_nothing_new(alice, bob):
    history_of(alice)
    archive = export_zip(user=alice, exported_at=timezone.now())
    imported(bob, archive)
    counts = (Conversation.objects.count(), Message.objects.count())

    again = imported(bob, archive)

    assert (again.status, again.created, again.skipped) == ("done", 0, 2)
    assert (Conversation.objects.count(), Message.objects.count()) == counts


def test_importing_ones_own_export_skips_the_conversations_it_came_from(alice):
    history_of(alice)

    job = imported(alice, export_zip(user=alice, exported_at=timezone.now()))

    assert (job.created, job.skipped) == (0, 2) and Conversation.objects.count() == 2


def test_a_reexport_of_an_import_keeps_its_key_so_a_third_account_imports_it_once(alice, bob, make_user):
    history_of(alice)
    imported(bob, export_zip(user=alice, exported_at=timezone.now()))
    carol = make_user("carol")
    imported(carol, export_zip(user=alice, exported_at=timezone.now()))

    again = imported(carol, export_zip(user=bob, exported_at=timezone.now()))

    assert (again.created, again.skipped) == (0, 2)


def test_imported_messages_and_titles_are_in_the_search_index(alice, bob):
    history_of(alice)
    imported(bob, export_zip(user=alice, exported_at=timezone.now()))

    [hit] = search_for(user=bob, query="lisbon")

    assert hit.title == "Trip" and Conversation.objects.get(pk=hit.conversation_id).owner_id == bob.pk


# --- ChatGPT -----------------------------------------------------------------------------------


@pytest.mark.cluster
def test_a_chatgpt_export_becomes_our_tree_with_its_branches_system_prompt_and_current_node(bob):
    job = imported(bob, CHATGPT.read_bytes(), filename="conversations.json")

    assert (job.status, job.kind, job.created, job.total) == ("done", "chatgpt", 2, 2)
    sourdough = Conversation.objects.get(owner=bob, title="Sourdough starter help")
    assert sourdough.system_prompt == "You are a patient baking teacher."
    assert sourdough.imported_from == "chatgpt:6631f2a0-1b2c-4d3e-8f90-a1b2c3d4e5f6"
    assert sourdough.created_at.timestamp() == pytest.approx(1714557600.123456)
    tree = selectors.tree_for(conversation=sourdough)
    roots = [Message.objects.get(pk=pk) for pk in tree.children[None]]
    assert [m.content for m in roots] == [
        "My starter smells like acetone. Is it dead?",
        "Here is a photo. It smells like acetone and has grey liquid on top.",
    ]
    path = selectors.path_for(conversation=sourdough).messages
    assert [(m.role, m.content) for m in path] == [
        ("user", "Here is a photo. It smells like acetone and has grey liquid on top."),
        ("assistant", '```\nsearch("sourdough hooch grey liquid")\n```'),
        ("assistant", "That grey layer is hooch, a sign of hunger. Stir it in or pour it off, then feed."),
    ]
    assert path[-1].model == "openai:gpt-4o-mini" and len(tree.siblings(path[-1].pk)) == 2
    first_answer = Message.objects.get(conversation=sourdough, content__startswith="Not dead")
    assert first_answer.content == "Not dead: it is **hungry**. Feed it twice a day."  # the null part skipped
    assert sourdough.messages.count() == 6  # root, system and tool nodes left out
    archived = Conversation.objects.get(owner=bob, title="Old archived chat")
    assert archived.archived_at is not None
    assert archived.messages.get(role="assistant").status == "interrupted"


def test_a_chatgpt_export_inside_its_zip_imports_too_and_only_once(bob):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("conversations.json", CHATGPT.read_bytes())
        archive.writestr("chat.html", "<html></html>")

    first, second = imported(bob, buffer.getvalue()), imported(bob, CHATGPT.read_bytes())

    assert (first.created, second.created, second.skipped) == (2, 0, 2)


# --- Malformed files import nothing ----------------------------------------------------------------


def chatgpt_with(change) -> bytes:
    document = json.loads(CHATGPT.read_text())
    change(document)
    return json.dumps(document).encode()


def export_with(alice, change) -> bytes:
    history_of(alice)
    document = json.loads(
        zipfile.ZipFile(io.BytesIO(export_zip(user=alice, exported_at=timezone.now()))).read("conversations.json")
    )
    change(document)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("conversations.json", json.dumps(document))
    return buffer.getvalue()


MALFORMED_CHATGPT = {
    "no mapping": (lambda d: d[1].pop("mapping"), "Conversation 2 (“Old archived chat”): `mapping`"),
    "a missing parent": (
        lambda d: d[1]["mapping"]["a-2"].update(parent="nowhere"),
        "Conversation 2 (“Old archived chat”): `mapping.a-2.parent`",
    ),
    "a loop": (
        lambda d: d[1]["mapping"]["root-2"].update(parent="a-2"),
        "Conversation 2 (“Old archived chat”): `mapping.",
    ),
    "an unknown role": (
        lambda d: d[1]["mapping"]["u-2"]["message"]["author"].update(role="robot"),
        "`mapping.u-2.message.author.role`",
    ),
    "parts that are not a list": (
        lambda d: d[1]["mapping"]["u-2"]["message"]["content"].update(parts="hi"),
        "`mapping.u-2.message.content.parts`",
    ),
    "a bad time": (lambda d: d[1].update(create_time="yesterday"), "`create_time`"),
    "a NUL character": (
        lambda d: d[1]["mapping"]["u-2"]["message"]["content"].update(parts=["a\x00b"]),
        "`mapping.u-2.message.content.parts[0]`",
    ),
}


@pytest.mark.parametrize("case", MALFORMED_CHATGPT, ids=list(MALFORMED_CHATGPT))
def test_a_malformed_chatgpt_file_imports_nothing_and_names_the_conversation_and_field(bob, case):
    change, named = MALFORMED_CHATGPT[case]

    job = imported(bob, chatgpt_with(change))

    assert (job.status, job.error_code) == ("failed", "invalid_import")
    assert named in job.error_message
    assert not Conversation.objects.filter(owner=bob).exists() and not Message.objects.exists()


MALFORMED_EXPORTS = {
    "a bad role": (lambda d: d["conversations"][1]["messages"][0].update(role="system"), "`messages[0].role`"),
    "a parent listed later": (lambda d: d["conversations"][1]["messages"][0].update(parent=99), "`messages[0].parent`"),
    "a naive time": (lambda d: d["conversations"][1].update(created_at="2024-01-01T10:00:00"), "`created_at`"),
    "a bad part": (
        lambda d: d["conversations"][1]["messages"][0].update(parts=[{"kind": "image"}]),
        "`messages[0].parts[0].kind`",
    ),
    "a negative count": (lambda d: d["conversations"][1]["messages"][0].update(seq=-1), "`messages[0].seq`"),
    "a leaf of nothing": (lambda d: d["conversations"][1].update(current_leaf=5), "`current_leaf`"),
}


@pytest.mark.parametrize("case", MALFORMED_EXPORTS, ids=list(MALFORMED_EXPORTS))
def test_a_malformed_export_imports_nothing_even_of_its_valid_conversations(alice, bob, case):
    change, named = MALFORMED_EXPORTS[case]

    job = imported(bob, export_with(alice, change))

    assert (job.status, job.error_code) == ("failed", "invalid_import"), job.error_message
    assert job.error_message.startswith("Conversation 2 (“Old <b>one</b>”): ") and named in job.error_message
    assert not Conversation.objects.filter(owner=bob).exists()


@pytest.mark.parametrize(
    "payload, says",
    [
        (b"not json at all", "neither a ZIP"),
        (b'{"format": "streamchat-export", "version": 9, "conversations": []}', "version 9"),
        (b'{"some": "object"}', "neither a streamchat export nor a ChatGPT"),
        (b"PK\x03\x04 truncated zip", "no conversations.json"),
        (b"[1]", "Conversation 1: `conversation` must be an object"),
    ],
)
def test_a_file_that_is_not_an_export_is_refused_with_a_clear_error(bob, payload, says):
    job = imported(bob, payload)

    assert job.status == "failed" and says in job.error_message
    assert not Conversation.objects.filter(owner=bob).exists()


def test_a_file_over_the_size_cap_is_refused_before_it_is_stored(bob, settings):
    settings.CHAT_IMPORT_MAX_BYTES = 100

    with pytest.raises(ChatError) as caught:
        services.import_job_create(owner=bob, filename="big.json", payload=b"[" + b" " * 200 + b"]")

    assert caught.value.code == "import_too_large" and not ImportJob.objects.exists()


def test_a_small_zip_that_unpacks_over_the_cap_is_refused(bob, settings):
    settings.CHAT_IMPORT_MAX_BYTES = 10_000
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conversations.json", "[" + " " * 100_000 + "]")

    job = imported(bob, buffer.getvalue())

    assert (job.status, job.error_code) == ("failed", "import_too_large")


# --- Over HTTP --------------------------------------------------------------------------------------


async def test_an_upload_runs_in_the_background_and_its_progress_is_polled(bob, make_user):
    client = AsyncClient()
    await client.aforce_login(bob)

    answer = await client.post(
        "/api/imports?filename=conversations.json", CHATGPT.read_bytes(), content_type="application/octet-stream"
    )

    assert answer.status_code == 202
    job = answer.json()
    assert job["status"] in {"queued", "running", "saving", "done"} and job["filename"] == "conversations.json"
    for _ in range(600):
        state = (await client.get(f"/api/imports/{job['id']}")).json()
        if state["status"] in {"done", "failed"}:
            break
        await asyncio.sleep(0.05)
    assert (state["status"], state["created"], state["total"], state["done"]) == ("done", 2, 2, 2)
    stranger = AsyncClient()
    await stranger.aforce_login(await sync_to_async(make_user)("eve"))
    assert (await stranger.get(f"/api/imports/{job['id']}")).status_code == 404


def test_a_job_left_unfinished_by_a_restart_fails_when_polled_and_imported_nothing(bob):
    job = services.import_job_create(owner=bob, filename="c.json", payload=CHATGPT.read_bytes())
    ImportJob.objects.filter(pk=job.pk).update(status="running", created_at=timezone.now() - timedelta(hours=2))
    client = Client()
    client.force_login(bob)

    state = client.get(f"/api/imports/{job.pk}").json()

    assert (state["status"], state["error"]["code"]) == ("failed", "interrupted")
    assert not Conversation.objects.filter(owner=bob).exists()


async def test_an_upload_over_the_cap_answers_413(bob, settings):
    settings.CHAT_IMPORT_MAX_BYTES = 10
    client = AsyncClient()
    await client.aforce_login(bob)

    answer = await client.post("/api/imports", b"x" * 11, content_type="application/octet-stream")

    assert answer.status_code == 413 and answer.json()["error"]["code"] == "import_too_large"
