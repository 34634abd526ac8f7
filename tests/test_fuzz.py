"""Fuzzing both transports from a fixed seed: hundreds of WebSocket frames and HTTP requests, each one
invalid by construction (random types and nesting, huge numbers, NULs, unicode, wrong field types,
foreign and missing ids, unknown types, broken JSON, oversized and mis-typed bodies).

Every answer must be a refusal with a code documented in docs/protocol.md (over HTTP with the status
documented for it, never a 5xx), nothing may be written, and the socket must still answer a ping.
"""

import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from chat import services
from chat.consumers import HANDLERS
from chat.models import Conversation, DailyUsage, Message
from tests.engine_fixtures import TEST_MODEL

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]

SEED = 20_261_212
FRAMES = 1000
REQUESTS = 600
MAX_FRAME_BYTES = 4096  # small, so oversized frames and bodies are cheap to make
MAX_MESSAGE_CHARS = 200
CSRF_TOKEN = "f" * 32
CONVERSATION_TYPES = ["subscribe", "unsubscribe", "send", "regenerate", "retry", "edit", "continue", "cancel"]
UNICODE = ["é", "中文", "🙂", "\u202e", "\u200b", "\x00", "\ufeff", "𝕏", "\n", "\\", '"', "\U0010ffff"]


def documented_codes() -> dict[str, int | None]:
    """The refusal codes in docs/protocol.md's error table, with their HTTP status (None: WebSocket only)."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    table = doc.split("## Error codes", 1)[1].split("A reply that fails", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (\d{3}|—) \|", table, flags=re.MULTILINE)
    return {code: int(status) if status.isdigit() else None for code, status in rows}


class Junk:
    """Random JSON values and invalid field values, all from one seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def text(self) -> str:
        parts = [self.rng.choice(UNICODE + ["a", "type", "send", " ", "0"]) for _ in range(self.rng.randint(0, 12))]
        return "".join(parts)

    def number(self) -> int | float:
        # Up to the largest integer JSON encoders write; larger ones are sent as raw text (`huge_number_frame`).
        return self.rng.choice(
            [0, -1, 1.5, -0.0, 1e308, -1e-308, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), 7.0]
        )

    def value(self, depth: int = 0) -> Any:
        kind = self.rng.choice(["text", "number", "bool", "null"] + (["list", "object"] if depth < 4 else []))
        if kind == "list":
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        if kind == "object":
            return {self.text(): self.value(depth + 1) for _ in range(self.rng.randint(0, 4))}
        if kind == "text":
            return self.text()
        if kind == "number":
            return self.number()
        return self.rng.choice([True, False, None])

    def not_an_object(self) -> Any:
        while isinstance(value := self.value(), dict):
            pass
        return value

    def unknown_type(self) -> str:
        while (
            name := self.rng.choice([self.text(), "SEND", "send ", "ping\x00", "on_send", "chat.frame"])
        ) in HANDLERS:
            pass
        return name

    def not_an_int(self) -> Any:
        while isinstance(value := self.value(), int) and not isinstance(value, bool):
            pass
        return value

    def not_a_str(self) -> Any:
        while isinstance(value := self.value(), str):
            pass
        return value

    def bad_client_id(self) -> dict[str, Any]:
        wrong = [self.not_a_str(), "", "x" * 65, "a\x00b"]
        return self.rng.choice([{}, *({"client_id": value} for value in wrong)])

    def bad_content(self) -> Any:
        return self.rng.choice([self.not_a_str(), "", " \n\t ", "x" * (MAX_MESSAGE_CHARS + 1), "hi\x00there"])

    def client_id(self) -> str:
        return "fuzz-" + "".join(self.rng.choice("abcdef0123456789") for _ in range(12))

    def extras(self) -> dict[str, Any]:
        """Unknown fields, which are ignored."""
        return {f"x-{self.text()}": self.value() for _ in range(self.rng.randint(0, 2))}


def broken_json(junk: Junk) -> str:
    rng = junk.rng
    whole = orjson.dumps({"type": rng.choice(CONVERSATION_TYPES + ["ping"]), "conversation": 1, **junk.extras()})
    return rng.choice(
        [
            whole.decode()[:-1],  # an object without its closing brace is never JSON
            whole.decode() + " x",
            "NaN",
            "{'type': 'ping'}",
            '{"type": "ping",}',
            '{"type": "ping"}{"type": "ping"}',
            '{"type": "ping", "a": "\\ud800"}',  # a lone surrogate
            '{"type": "ping", "a": "\x00"}',  # a raw control character
            "[" * 1100 + "]" * 1100,  # deeper than the parser allows
            "",
            "\ufeff{}",
        ]
    )


def huge_number_frame(junk: Junk) -> tuple[str, set[str]]:
    """A conversation id written as a number no 64-bit integer holds: it parses as a float (or infinity)."""
    kind = junk.rng.choice(CONVERSATION_TYPES)
    number, codes = junk.rng.choice([(str(10**30), {"invalid"}), (str(-(2**64)), {"invalid"}), ("1e999", {"bad_json"})])
    return f'{{"type": "{kind}", "conversation": {number}, "client_id": "c", "content": "hi"}}', codes


def ws_frame(junk: Junk, own: int, foreign: int) -> tuple[str, set[str]]:
    """One invalid frame and the codes it may be answered with."""
    rng = junk.rng
    kinds = ["broken", "not_object", "bad_type", "unknown", "wrong_id", "huge", "foreign", "own", "own", "large"]
    kind = rng.choice(kinds)
    missing = rng.choice([foreign, 0, -1, 2**63 - 1, 2**64 - 1, -(2**63), 987_654_321])
    if kind == "broken":
        return broken_json(junk) or " ", {"bad_json"}
    if kind == "not_object":
        return orjson.dumps(junk.not_an_object()).decode(), {"invalid"}
    if kind == "bad_type":
        return orjson.dumps({"type": junk.not_a_str(), "conversation": own}).decode(), {"invalid"}
    if kind == "unknown":
        return orjson.dumps({"type": junk.unknown_type(), "conversation": own, **junk.extras()}).decode(), {
            "unknown_type"
        }
    if kind == "huge":
        return huge_number_frame(junk)
    if kind == "large":
        pad = "\U0001f600" * (MAX_FRAME_BYTES // 4 + 1)
        return orjson.dumps({"type": "ping", "pad": pad}).decode(), {"frame_too_large"}
    frame: dict[str, Any] = {"type": rng.choice(CONVERSATION_TYPES), **junk.extras()}
    if kind == "wrong_id":
        frame.update(conversation=junk.not_an_int(), client_id=junk.client_id(), content="hi")
        return orjson.dumps(frame).decode(), {"invalid"}
    if kind == "foreign":
        frame.update(conversation=missing, client_id=junk.client_id(), content="hi")
        return orjson.dumps(frame).decode(), {"not_found"}
    return orjson.dumps(own_frame(junk, frame, own)).decode(), OWN_REFUSALS


# What a frame about the user's own (empty) conversation may be refused with.
OWN_REFUSALS = {
    "invalid",
    "empty_message",
    "message_too_long",
    "nothing_to_regenerate",
    "nothing_to_continue",
    "not_running",
}


def own_frame(junk: Junk, frame: dict[str, Any], own: int) -> dict[str, Any]:
    """A frame about the user's own conversation that must be refused: a valid one would write, or subscribe."""
    rng = junk.rng
    frame["conversation"] = own
    kind = frame["type"]
    if kind in {"subscribe", "unsubscribe"}:
        # `after` present but wrong (an absent one would make a valid subscribe); unsubscribe asks for nothing wrong.
        frame["type"] = "subscribe"
        frame["after"] = rng.choice([junk.not_an_int(), {"message": junk.not_an_int(), "seq": 1}, {"seq": 0}])
        if frame["after"] is None:
            frame["after"] = []
    elif kind in {"send", "edit"}:
        if rng.random() < 0.5:
            frame.update(junk.bad_client_id(), content="hi")
        else:
            frame.update(client_id=junk.client_id(), content=junk.bad_content())
    elif kind in {"regenerate", "retry", "continue"}:
        frame.update(rng.choice([junk.bad_client_id(), {"client_id": junk.client_id()}]))
    return frame


# Routes about a conversation, tried with ids of other users' conversations and of none.
MISSING_ROUTES = [
    ("get", ""),
    ("delete", ""),
    ("patch", ""),
    ("get", "/events"),
    *(("post", f"/{action}") for action in ("messages", "regenerate", "edit", "continue", "cancel")),
]


def http_request(junk: Junk, own: int, foreign: int) -> tuple[str, str, bytes | None, str, set[str]]:
    """One invalid request: (method, path, body, content type, the codes it may be answered with)."""
    rng = junk.rng
    target = rng.choice(["create", "own", "own", "missing"])
    action = rng.choice(["messages", "regenerate", "edit", "continue", "cancel", "patch"])
    if target == "missing":
        missing = rng.choice([foreign, 0, 2**63 - 1, 10**30, 987_654_321])
        method, suffix = rng.choice(MISSING_ROUTES)
        path = f"/api/conversations/{missing}{suffix}"
        body = {"client_id": junk.client_id(), "content": "hi", "title": "t"}
        codes = {"not_found"}
    elif target == "create":
        method, path = "post", "/api/conversations"
        body, codes = bad_conversation_fields(junk), {"invalid", "unknown_model"}
    elif action == "patch":
        method, path = "patch", f"/api/conversations/{own}"
        body, codes = bad_conversation_fields(junk), {"invalid", "unknown_model"}
    else:
        method, path = "post", f"/api/conversations/{own}/{action}"
        frame = own_frame(junk, {"type": {"messages": "send"}.get(action, action)}, own)
        body = {name: value for name, value in frame.items() if name not in {"type", "conversation"}}
        codes = OWN_REFUSALS
    content_type = rng.choice(["application/json"] * 4 + ["application/x-www-form-urlencoded", "text/plain"])
    raw = None if method in {"get", "delete"} else orjson.dumps(body)
    if raw is not None and rng.random() < 0.35:
        raw, content_type, codes = broken_body(junk)
    return method, path, raw, content_type, codes


def bad_conversation_fields(junk: Junk) -> dict[str, Any]:
    """Fields of a conversation with at least one of them wrong (a create or patch with none wrong would write)."""
    rng = junk.rng
    wrong = rng.choice(
        [
            {"model": junk.not_a_str()},
            {"model": rng.choice(["nope:model", "openai:", ":", "openai:gpt-test\x00", junk.text() + "x"])},
            {"title": junk.not_a_str()},
            {"title": "a\x00b"},
            {"system_prompt": junk.not_a_str()},
            {"system_prompt": "s" * (MAX_MESSAGE_CHARS + 1)},
            {"system_prompt": "be\x00kind"},
        ]
    )
    if "model" in wrong and wrong["model"] is None:
        wrong["model"] = []  # null means "the default model", which is valid
    if "title" in wrong and wrong["title"] is None or "system_prompt" in wrong and wrong["system_prompt"] is None:
        wrong = {"title": 1}  # null means "unchanged" on PATCH
    return {**rng.choice([{}, {"title": "fine"}, {"model": TEST_MODEL}]), **wrong}


def broken_body(junk: Junk) -> tuple[bytes, str, set[str]]:
    rng = junk.rng
    choice = rng.randrange(6)
    if choice == 0:
        return broken_json(junk).encode() or b"{", "application/json", {"bad_json"}
    if choice == 1:
        return b'\xff\xfe{"client_id": "x"}', "application/json", {"bad_json"}  # not UTF-8
    if choice == 2:
        return orjson.dumps(rng.choice([[], "text", 1, None, [{"client_id": "x"}]])), "application/json", {"invalid"}
    if choice == 3:
        return b"x" * (MAX_FRAME_BYTES + 1), "application/json", {"frame_too_large"}
    if choice == 4:
        body = b'--b\r\nContent-Disposition: form-data; name="content"\r\n\r\nhi\r\n--b--\r\n'
        boundary = rng.choice(
            ["multipart/form-data; boundary=", "multipart/form-data", "multipart/form-data; boundary=b"]
        )
        return body, boundary, {"bad_json"}
    return b"client_id=x&content=hi&" + b"a=1&" * 1100, "application/x-www-form-urlencoded", {"frame_too_large"}


@database_sync_to_async
def database_state(conversation_id: int) -> tuple[Any, ...]:
    own = Conversation.objects.values_list("title", "model", "system_prompt", "updated_at").get(pk=conversation_id)
    return Conversation.objects.count(), Message.objects.count(), DailyUsage.objects.count(), own


@pytest.fixture
def fuzz_settings(settings):
    settings.CHAT_WS_FRAMES_PER_SECOND = 0  # off: the fuzzer sends far faster than a person
    settings.CHAT_WS_MAX_FRAME_BYTES = MAX_FRAME_BYTES
    settings.CHAT_MAX_MESSAGE_CHARS = MAX_MESSAGE_CHARS
    return settings


@pytest.fixture
async def targets(make_user):
    """(user, their empty conversation, another user's conversation)."""

    @database_sync_to_async
    def make():
        user, stranger = make_user(), make_user()
        own = services.conversation_create(owner=user, model=TEST_MODEL, title="Mine")
        theirs = services.conversation_create(owner=stranger, model=TEST_MODEL, title="Theirs")
        return user, own.pk, theirs.pk

    return await make()


async def test_hundreds_of_invalid_frames_are_each_refused_with_a_documented_code_and_write_nothing(
    connect, fuzz_settings, targets
):
    user, own, foreign = targets
    documented = documented_codes()
    junk = Junk(random.Random(SEED))
    before = await database_state(own)
    async with connect(user) as ws:
        for number in range(FRAMES):
            text, expected = ws_frame(junk, own, foreign)
            await ws.send_raw(text)
            answer = await ws.receive(timeout=20)
            assert answer["type"] == "error", (number, text[:300], answer)
            assert answer["code"] in documented and answer["code"] in expected, (number, text[:300], answer)
        await ws.send({"type": "ping"})
        assert (await ws.receive())["type"] == "pong"
    assert await database_state(own) == before


async def test_hundreds_of_invalid_http_requests_are_each_refused_with_a_documented_code_and_write_nothing(
    fuzz_settings, targets
):
    user, own, foreign = targets
    documented = documented_codes()
    junk = Junk(random.Random(SEED + 1))
    client = AsyncClient(enforce_csrf_checks=True, raise_request_exception=False)
    await client.aforce_login(user)
    client.cookies["csrftoken"] = CSRF_TOKEN
    anonymous = AsyncClient(enforce_csrf_checks=True, raise_request_exception=False)
    anonymous.cookies["csrftoken"] = CSRF_TOKEN
    before = await database_state(own)
    for number in range(REQUESTS):
        method, path, raw, content_type, expected = http_request(junk, own, foreign)
        sender, headers = client, {"X-CSRFToken": CSRF_TOKEN}
        if junk.rng.random() < 0.1:
            sender, expected = anonymous, {"unauthenticated"}
        if method != "get" and junk.rng.random() < 0.1:
            headers, expected = {}, {"csrf_failed"}
        arguments = () if raw is None else (raw,)
        response = await getattr(sender, method)(path, *arguments, content_type=content_type, headers=headers)
        context = (number, method, path, (raw or b"")[:300], content_type, response.content[:300])
        assert response.status_code < 500 and response["Content-Type"] == "application/json", context
        code = response.json()["error"]["code"]
        assert code in documented and code in expected, context
        assert response.status_code == documented[code], context
    assert await database_state(own) == before
